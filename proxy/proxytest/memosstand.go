package proxytest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/config"
)

// The stand with the Memos bridge, in front of the Memos stand-in.

// BobPassword is the test provider's second user's password.
const BobPassword = "bob-password"

// BridgeStand is a Stand whose upstream is the Memos stand-in, with the
// bridge on and registered in Memos, and bob as a second user of the OP.
func BridgeStand(t *testing.T, edits ...func(*config.Config)) (*Stand, *FakeMemos, *url.URL) {
	t.Helper()
	fm := NewFakeMemos()
	bridgeLn := Listen(t)
	s := NewStandWith(t, fm.ServeHTTP, func(c *config.Config) {
		c.Memos = config.Memos{Bridge: true, AdminToken: MemosAdminPAT, IdPID: "oidc-proxy", IdPTitle: "Single sign-on",
			BridgeListen: bridgeLn.Addr().String(), BridgeURL: "http://" + bridgeLn.Addr().String(), UsernameClaim: "preferred_username"}
		c.OIDC.LogoutURL = "https://auth.example.com/logout"
		for _, e := range edits {
			e(c)
		}
	}, func(o *OPConfig) {
		o.Users = append(o.Users, &OPUser{Username: "bob", Password: BobPassword, Name: "Bob", Email: "bob@example.com"})
	})
	ServeOn(t, bridgeLn, s.Proxy.BridgeHandler())
	// The proxy registers itself at start (admin_token_file); doing it
	// again is safe: the registration is updated.
	Eventually(t, "the proxy did not register itself in Memos", func() bool {
		return strings.Contains(s.Logs.String(), "registered as Memos's identity provider")
	})
	if !strings.Contains(s.Logs.String(), "result=\"created identity-providers/oidc-proxy\"") {
		t.Errorf("the registration at start did not create the provider")
	}
	if did, err := s.Proxy.RegisterWithMemos(t.Context()); err != nil || !strings.HasPrefix(did, "updated") {
		t.Fatalf("registration again: %q %v", did, err)
	}
	u, _ := url.Parse("http://" + bridgeLn.Addr().String())
	return s, fm, u
}

// MemosCall POSTs a Connect call through the proxy with c's cookies.
func MemosCall(t *testing.T, c *http.Client, base, method, bearer, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/memos.api.v1."+method, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, raw := Do(t, c, req)
	var out map[string]any
	json.Unmarshal([]byte(raw), &out)
	return resp, out
}

// MemosWhoAmI does what Memos's web app does at start through the proxy:
// RefreshToken with the browser's cookie, then GetCurrentUser. It returns
// the username and the access token, or "" when Memos has no session.
func MemosWhoAmI(t *testing.T, c *http.Client, base string) (string, string) {
	t.Helper()
	resp, tok := MemosCall(t, c, base, "AuthService/RefreshToken", "", "{}")
	if resp.StatusCode != 200 {
		return "", ""
	}
	access, _ := tok["accessToken"].(string)
	resp, me := MemosCall(t, c, base, "AuthService/GetCurrentUser", access, "{}")
	if resp.StatusCode != 200 {
		return "", ""
	}
	user, _ := me["user"].(map[string]any)
	name, _ := user["username"].(string)
	return name, access
}

// FirstRun configures the bridge as a new user does: a token file (and
// so a password file) that do not exist yet, in dir.
func FirstRun(dir string, bridgeAddr string) func(*config.Config) {
	return func(c *config.Config) {
		c.Memos = config.Memos{Bridge: true, IdPID: "oidc-proxy", IdPTitle: "Single sign-on",
			AdminTokenFile: filepath.Join(dir, "memos-admin-token"), AdminPasswordFile: filepath.Join(dir, "memos-admin-token.password"),
			AdminUsername: config.DefaultMemosAdminUsername,
			BridgeListen:  bridgeAddr, BridgeURL: "http://" + bridgeAddr, UsernameClaim: "preferred_username"}
	}
}

// MemosStand is a Stand in front of fm with the bridge configured by
// bridge (and edits), its bridge endpoints served, and bob and carol (no
// email) as further users of the OP.
func MemosStand(t *testing.T, fm *FakeMemos, bridge func(dir, addr string) func(*config.Config), dir string, edits ...func(*config.Config)) *Stand {
	t.Helper()
	bridgeLn := Listen(t)
	s := NewStandWith(t, fm.ServeHTTP, func(c *config.Config) {
		bridge(dir, bridgeLn.Addr().String())(c)
		for _, e := range edits {
			e(c)
		}
	}, func(o *OPConfig) {
		o.Users = append(o.Users,
			&OPUser{Username: "bob", Password: BobPassword, Name: "Bob", Email: "bob@example.com"},
			&OPUser{Username: "carol", Password: "carol-password", Name: "Carol"})
	})
	ServeOn(t, bridgeLn, s.Proxy.BridgeHandler())
	return s
}

func PKCEPair() (verifier, challenge string) {
	verifier = strings.Repeat("v", 20) + RandomHex()
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// Authorize asks the bridge's authUrl for a code as Memos's sign-in button
// does, and returns the redirect's query.
func Authorize(t *testing.T, s *Stand, c *http.Client, q url.Values) (*http.Response, url.Values) {
	t.Helper()
	resp, _ := Navigate(t, NoRedirect(c), s.URL+"/oauth2/memos/authorize?"+q.Encode())
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil {
		return resp, nil
	}
	return resp, loc.Query()
}

func ButtonQuery(s *Stand, challenge string) url.Values {
	q := url.Values{"client_id": {"oidc-proxy"}, "redirect_uri": {s.URL + "/auth/callback"}, "state": {"memos-state-1"},
		"response_type": {"code"}, "scope": {"profile email"}}
	if challenge != "" {
		q.Set("code_challenge", challenge)
		q.Set("code_challenge_method", "S256")
	}
	return q
}

// SignInAs signs c in as user through path, and returns the last page.
func SignInAs(s *Stand, c *http.Client, path, user, password string) (*http.Response, string) {
	s.T.Helper()
	resp, _ := Navigate(s.T, c, s.URL+path)
	return Login(s.T, c, resp, user, password)
}
