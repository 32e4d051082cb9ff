package proxy_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
)

const logoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// sidStand signs in through the hostile OP (behaving well) whose ID tokens
// carry a sid of their own per sign-in.
func sidStand(t *testing.T, edit ...func(*config.Config)) (*stand, *hostileOP, func() string) {
	var mu sync.Mutex
	var sids []string
	s, op := hostileStand(t, behaviour{claims: func(o *hostileOP, c map[string]any) {
		mu.Lock()
		defer mu.Unlock()
		sid := "sid-" + o.lastNonce()[:8]
		sids = append(sids, sid)
		c["sid"] = sid
	}}, edit...)
	s.WaitReady()
	return s, op, func() string { mu.Lock(); defer mu.Unlock(); return sids[len(sids)-1] }
}

func logoutClaims(op *hostileOP, jti string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": op.issuer, "aud": []string{"memos"}, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": jti, "sub": "user-1", "events": map[string]any{logoutEvent: map[string]any{}},
	}
}

func postLogout(t *testing.T, s *stand, token string) int {
	t.Helper()
	resp, err := http.PostForm(s.URL+"/oauth2/backchannel_logout", url.Values{"logout_token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func signedInHostile(t *testing.T, s *stand) *http.Client {
	c := s.Browser()
	if resp, _ := navigate(t, c, s.URL+"/"); resp.StatusCode != 200 {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	return c
}

func TestBackchannelLogoutBySubject(t *testing.T) {
	s, op, _ := sidStand(t)
	a, b := signedInHostile(t, s), signedInHostile(t, s)
	if code := postLogout(t, s, op.sign(logoutClaims(op, "jti-1"))); code != 200 {
		t.Fatalf("logout token refused: %d\n%s", code, s.Logs.String())
	}
	for _, c := range []*http.Client{a, b} {
		if code := statusOf(t, c, s.URL+"/api"); code != http.StatusUnauthorized {
			t.Errorf("session after a logout of its subject: %d", code)
		}
	}
	if code := postLogout(t, s, op.sign(logoutClaims(op, "jti-1"))); code != http.StatusBadRequest {
		t.Errorf("replayed logout token: %d", code)
	}
	// Signing in again after the logout works.
	if code := statusOf(t, signedInHostile(t, s), s.URL+"/api"); code != 200 {
		t.Errorf("a new session after the logout: %d", code)
	}
}

func TestBackchannelLogoutBySID(t *testing.T) {
	s, op, lastSID := sidStand(t)
	a := signedInHostile(t, s)
	sidA := lastSID()
	b := signedInHostile(t, s)
	c := logoutClaims(op, "jti-sid")
	delete(c, "sub")
	c["sid"] = sidA
	if code := postLogout(t, s, op.sign(c)); code != 200 {
		t.Fatalf("logout token refused: %d", code)
	}
	if code := statusOf(t, a, s.URL+"/api"); code != http.StatusUnauthorized {
		t.Errorf("the session of that sid: %d", code)
	}
	if code := statusOf(t, b, s.URL+"/api"); code != 200 {
		t.Errorf("another session of the same user: %d", code)
	}
}

func TestBackchannelLogoutRefusals(t *testing.T) {
	s, op, _ := sidStand(t)
	c := signedInHostile(t, s)
	tests := []struct {
		name   string
		edit   func(map[string]any)
		signer string
	}{
		{"nonce present", func(c map[string]any) { c["nonce"] = "n" }, ""},
		{"no events", func(c map[string]any) { delete(c, "events") }, ""},
		{"other event", func(c map[string]any) { c["events"] = map[string]any{"http://example.com/other": map[string]any{}} }, ""},
		{"audience of another client", func(c map[string]any) { c["aud"] = []string{"other"} }, ""},
		{"issuer of another provider", func(c map[string]any) { c["iss"] = "https://evil.example.com" }, ""},
		{"no jti", func(c map[string]any) { delete(c, "jti") }, ""},
		{"neither sub nor sid", func(c map[string]any) { delete(c, "sub") }, ""},
		{"expired", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }, ""},
		{"issued an hour ago", func(c map[string]any) { c["iat"] = time.Now().Add(-time.Hour).Unix() }, ""},
		{"issued in the future", func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() }, ""},
		{"azp of another client", func(c map[string]any) { c["azp"] = "other" }, ""},
		{"signed with a key not published", nil, "rogue"},
		{"alg none", nil, "none"},
		{"HS256 with the client secret", nil, "hs-secret"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims := logoutClaims(op, "jti-r-"+strings.Repeat("x", i))
			if tt.edit != nil {
				tt.edit(claims)
			}
			op.b.signer = tt.signer
			token := op.sign(claims)
			op.b.signer = ""
			if code := postLogout(t, s, token); code != http.StatusBadRequest {
				t.Errorf("accepted: %d", code)
			}
			if code := statusOf(t, c, s.URL+"/api"); code != 200 {
				t.Errorf("the session ended: %d", code)
			}
		})
	}
	if code := postLogout(t, s, ""); code != http.StatusBadRequest {
		t.Errorf("no token: %d", code)
	}
	if !strings.Contains(s.Logs.String(), "back-channel logout refused") {
		t.Errorf("no log line")
	}
}

// TestSignOutEndsCopiesOfTheCookie: after sign-out, a copy of the session
// cookie taken before no longer works at this proxy.
func TestSignOutEndsCopiesOfTheCookie(t *testing.T) {
	s := newStand(t, nil, nil)
	c := s.SignIn("/")
	other := s.SignIn("/") // another session of the same user
	stolen := cookieHeader(c, s.URL)
	do(t, noRedirect(c), mustReq(http.MethodPost, s.URL+"/oauth2/sign_out"))
	req := mustReq(http.MethodGet, s.URL+"/api")
	req.Header.Set("Cookie", stolen)
	if resp, _ := do(t, http.DefaultClient, req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the signed-out cookie still works: %d", resp.StatusCode)
	}
	if code := statusOf(t, other, s.URL+"/api"); code != 200 {
		t.Errorf("the user's other session ended too: %d", code)
	}
}

// TestLogoutFloodReadsKeysRarely: back-channel logout tokens anyone may
// post, naming keys the provider never published, make the proxy read
// the key set at most once every 10 s, all of them together; a token of
// a published key the proxy has not used yet still verifies.
func TestLogoutFloodReadsKeysRarely(t *testing.T) {
	s, op, _ := sidStand(t)
	c := signedInHostile(t, s)
	before := op.jwksFetches.Load()
	for i := range 50 {
		op.b.signer = fmt.Sprintf("made-up-kid-%d", i)
		claims := logoutClaims(op, fmt.Sprintf("jti-flood-%d", i))
		if code := postLogout(t, s, op.sign(claims)); code != http.StatusBadRequest {
			t.Fatalf("a token of a made-up key: %d", code)
		}
	}
	op.b.signer = "k1-nokid"
	for i := range 20 {
		if code := postLogout(t, s, op.sign(logoutClaims(op, fmt.Sprintf("jti-nokid-%d", i)))); code != http.StatusBadRequest {
			t.Fatalf("a token without kid (two keys published): %d", code)
		}
	}
	if n := op.jwksFetches.Load() - before; n > 1 {
		t.Errorf("70 made-up tokens made %d key set reads, want at most 1", n)
	}
	// k2 is published, and was never used to sign in.
	op.b.signer = "k2"
	if code := postLogout(t, s, op.sign(logoutClaims(op, "jti-k2"))); code != http.StatusOK {
		t.Errorf("a logout token of a published key: %d", code)
	}
	op.b.signer = ""
	if code := statusOf(t, noRedirect(c), s.URL+"/api"); code == 200 {
		t.Errorf("the session lives on after a valid logout token")
	}
}
