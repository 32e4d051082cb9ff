package proxy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/config"
)

func TestAccessRules(t *testing.T) {
	tests := []struct {
		name    string
		access  config.Access
		allowed bool
	}{
		{"no rules", config.Access{}, true},
		{"user listed", config.Access{AllowedUsers: []string{"bob", "alice"}}, true},
		{"user not listed", config.Access{AllowedUsers: []string{"Alice", "alice2"}}, false},
		{"group listed", config.Access{AllowedGroups: []string{"admins"}}, true},
		{"group not listed", config.Access{AllowedGroups: []string{"staff", "admin"}}, false},
		{"email domain", config.Access{AllowedEmailDomains: []string{"EXAMPLE.com"}}, true},
		{"email domain is no suffix match", config.Access{AllowedEmailDomains: []string{"ample.com"}}, false},
		{"email parent domain", config.Access{AllowedEmailDomains: []string{"com"}}, false},
		{"one of several lists", config.Access{AllowedUsers: []string{"bob"}, AllowedGroups: []string{"users"}}, true},
		{"none of several lists", config.Access{AllowedUsers: []string{"bob"}, AllowedGroups: []string{"staff"}, AllowedEmailDomains: []string{"example.org"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStand(t, func(c *cfg) { c.Access = tt.access }, nil)
			c := s.Browser()
			resp, _ := navigate(t, c, s.URL+"/notes")
			resp, body := login(t, c, resp, "alice", alicePassword)
			if tt.allowed {
				if resp.StatusCode != 200 || !strings.Contains(body, "hello alice") {
					t.Fatalf("allowed user: %d %s", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `<strong id="user">alice</strong>`) || !strings.Contains(body, `action="/oauth2/sign_out"`) {
				t.Fatalf("denied user: %d %s", resp.StatusCode, body)
			}
			if s.SeenCount() != 0 {
				t.Errorf("the upstream was reached")
			}
			resp, body = do(t, c, mustReq(http.MethodGet, s.URL+"/api/v1/memos"))
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"user":"alice"`) {
				t.Errorf("API call of a denied user: %d %s", resp.StatusCode, body)
			}
			if !strings.Contains(s.Logs.String(), "access denied by the access rules") {
				t.Errorf("no audit line")
			}
			// Sign-out still works for them.
			resp, _ = do(t, noRedirect(c), mustReq(http.MethodPost, s.URL+"/oauth2/sign_out"))
			if resp.StatusCode != http.StatusFound {
				t.Errorf("sign-out: %d", resp.StatusCode)
			}
		})
	}
}

// TestAccessOddClaims: an unverified email matches no domain, and a group
// claim that is one string holding a comma is one group, not two (403);
// claims the rules read in a form the proxy cannot use refuse the sign-in
// (502, see TestUnusableClaims). Nothing reaches the upstream.
func TestAccessOddClaims(t *testing.T) {
	tests := []struct {
		name   string
		claims func(*hostileOP, map[string]any)
		access config.Access
		status int
	}{
		{"unverified email", func(_ *hostileOP, c map[string]any) {
			c["email"] = "mallory@example.com"
			c["email_verified"] = false
		}, config.Access{AllowedEmailDomains: []string{"example.com"}}, 403},
		{"group name with a comma", func(_ *hostileOP, c map[string]any) { c["groups"] = "staff,admins" },
			config.Access{AllowedGroups: []string{"admins"}}, 403},
		{"groups as an object", func(_ *hostileOP, c map[string]any) { c["groups"] = map[string]any{"admins": true} },
			config.Access{AllowedGroups: []string{"admins"}}, 502},
		{"username as a list", func(_ *hostileOP, c map[string]any) { c["preferred_username"] = []string{"alice"} },
			config.Access{AllowedUsers: []string{"alice"}}, 502},
		{"email_verified as a string", func(_ *hostileOP, c map[string]any) {
			c["email"] = "mallory@example.com"
			c["email_verified"] = "false"
		}, config.Access{AllowedEmailDomains: []string{"example.com"}}, 502},
		{"email with a second @", func(_ *hostileOP, c map[string]any) { c["email"] = "x@example.com@evil.com" },
			config.Access{AllowedEmailDomains: []string{"example.com"}}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := hostileStand(t, behaviour{userinfoClaims: tt.claims}, func(c *config.Config) { c.Access = tt.access })
			s.WaitReady()
			resp, _ := navigate(t, s.Browser(), s.URL+"/")
			if resp.StatusCode != tt.status || s.SeenCount() != 0 {
				t.Errorf("status %d, upstream reached %v", resp.StatusCode, s.SeenCount() != 0)
			}
		})
	}
}

// TestPagesEscapeText: a username that is HTML shows as text on the
// access-denied page, never as markup.
func TestPagesEscapeText(t *testing.T) {
	s := newStand(t, func(c *cfg) { c.Access = config.Access{AllowedUsers: []string{"bob"}} }, nil)
	evil := `"><script>alert(1)</script>&`
	s.Alice.Username = evil
	c := s.Browser()
	resp, _ := navigate(t, c, s.URL+"/")
	resp, body := login(t, c, resp, evil, alicePassword)
	if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "<script>") ||
		!strings.Contains(body, `<strong id="user">&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;</strong>`) {
		t.Errorf("access-denied page: %d %s", resp.StatusCode, body)
	}
}
