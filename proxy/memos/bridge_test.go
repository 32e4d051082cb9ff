package memos_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// responses records every response a client receives, redirects included,
// and names the client "test-browser/1" in every request.
type responses struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen []*http.Response
}

func (r *responses) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("User-Agent", "test-browser/1")
	resp, err := r.next.RoundTrip(req)
	if err == nil {
		r.mu.Lock()
		r.seen = append(r.seen, resp)
		r.mu.Unlock()
	}
	return resp, err
}

// with returns the last response to a request for path.
func (r *responses) with(path string) *http.Response {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.seen) - 1; i >= 0; i-- {
		if r.seen[i].Request.URL.Path == path {
			return r.seen[i]
		}
	}
	return nil
}

// recordingBrowser is a browser whose responses are recorded.
func recordingBrowser(s *stand) (*http.Client, *responses) {
	c := s.Browser()
	rec := &responses{next: http.DefaultTransport}
	c.Transport = rec
	return c, rec
}

func TestMemosBridgeSignsIntoMemos(t *testing.T) {
	s, fm, _ := bridgeStand(t)
	c, rec := recordingBrowser(s)
	resp, _ := signInAs(s, c, "/memos/1", "alice", alicePassword)
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/memos/1" {
		t.Fatalf("sign-in ended at %s with %d", resp.Request.URL, resp.StatusCode)
	}
	cb := rec.with("/oauth2/callback")
	if cb == nil || cb.Header.Get("Clear-Site-Data") != `"storage"` || !strings.Contains(strings.Join(cb.Header.Values("Set-Cookie"), "\n"), "memos_refresh=") {
		t.Fatalf("the callback's answer does not hand over the Memos session: %v", cb.Header)
	}
	// Memos's web app finds its session: no second sign-in.
	if user, _ := memosWhoAmI(t, c, s.URL); user != "alice" {
		t.Fatalf("Memos says %q is signed in", user)
	}
	if u := fm.Users["alice"]; u == nil || u.DisplayName != "Alice Liddell" || u.Email != "alice@example.com" {
		t.Errorf("Memos user: %+v", u)
	}
	// Memos's list of sessions names the browser, not the proxy.
	if got := fm.SignInClients[0]; got != "test-browser/1 from 127.0.0.1" {
		t.Errorf("the SignIn came from %q", got)
	}
	// Memos authenticated with HTTP Basic, and it was accepted at once.
	if strings.Join(fm.TokenAuth, ",") != "basic" {
		t.Errorf("token requests: %v", fm.TokenAuth)
	}

	// A second sign-in (another browser) reuses the user.
	c2 := s.Browser()
	signInAs(s, c2, "/", "alice", alicePassword)
	if user, _ := memosWhoAmI(t, c2, s.URL); user != "alice" || fm.UserCount() != 1 {
		t.Errorf("second sign-in: %q, %d users", user, fm.UserCount())
	}
}

// TestMemosBridgeUserSwitch: alice signs out, bob signs in on the same
// browser; Memos's session follows, and alice's Memos session is over.
func TestMemosBridgeUserSwitch(t *testing.T) {
	s, fm, _ := bridgeStand(t)
	c, rec := recordingBrowser(s)
	signInAs(s, c, "/", "alice", alicePassword)
	var aliceRefresh string
	for _, ck := range c.Jar.Cookies(mustURL(s.URL)) {
		if ck.Name == "memos_refresh" {
			aliceRefresh = ck.Value
		}
	}
	resp, _ := do(t, noRedirect(c), mustReq(http.MethodPost, s.URL+"/oauth2/sign_out"))
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "https://auth.example.com/logout") {
		t.Fatalf("sign-out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp.Header.Get("Clear-Site-Data") != `"storage"` || !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "memos_refresh=;") {
		t.Errorf("sign-out does not clear Memos in the browser: %v", resp.Header)
	}
	// Memos ended that session too: its refresh cookie is refused.
	fm.Mu.Lock()
	revoked := fm.Refresh[aliceRefresh] == nil || fm.Refresh[aliceRefresh].Revoked
	fm.Mu.Unlock()
	if !revoked {
		t.Errorf("alice's Memos session outlived the sign-out")
	}
	signInAs(s, c, "/", "bob", bobPassword)
	if cb := rec.with("/oauth2/callback"); cb.Header.Get("Clear-Site-Data") != `"storage"` {
		t.Errorf("bob's sign-in does not clear the storage alice's Memos left")
	}
	if user, _ := memosWhoAmI(t, c, s.URL); user != "bob" {
		t.Errorf("after the switch Memos shows %q", user)
	}
}

// TestMemosBridgeSignInPage: Memos shows its sign-in page (its cookie
// expired, or was dropped) while the proxy session lives: the proxy signs
// the user into Memos again and returns them where Memos wanted.
func TestMemosBridgeSignInPage(t *testing.T) {
	s, fm, _ := bridgeStand(t)
	c := s.Browser()
	signInAs(s, c, "/", "alice", alicePassword)
	// The Memos cookie is gone.
	c.Jar.SetCookies(mustURL(s.URL), []*http.Cookie{{Name: "memos_refresh", Value: "", Path: "/", MaxAge: -1}})
	if user, _ := memosWhoAmI(t, c, s.URL); user != "" {
		t.Fatalf("Memos still signed in without its cookie: %q", user)
	}
	resp, _ := navigate(t, noRedirect(c), s.URL+"/auth?redirect=%2Fmemos%2F7")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/memos/7" || resp.Header.Get("Clear-Site-Data") != `"storage"` {
		t.Fatalf("/auth with a proxy session: %d %q %v", resp.StatusCode, resp.Header.Get("Location"), resp.Header)
	}
	c.Jar.SetCookies(mustURL(s.URL), resp.Cookies())
	if user, _ := memosWhoAmI(t, c, s.URL); user != "alice" {
		t.Errorf("after /auth Memos shows %q", user)
	}
	if fm.UserCount() != 1 {
		t.Errorf("%d Memos users", fm.UserCount())
	}
	// Password sign-in stays closed.
	if resp, _ := navigate(t, noRedirect(c), s.URL+"/auth/admin"); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/auth" {
		t.Errorf("/auth/admin: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, body := range []string{`{"passwordCredentials":{"username":"admin","password":"x"}}`, `{"password_credentials":{}}`, `not json`} {
		if resp, _ := memosCall(t, c, s.URL, "AuthService/SignIn", "", body); resp.StatusCode != http.StatusForbidden {
			t.Errorf("password SignIn %s: %d", body, resp.StatusCode)
		}
	}
}

// TestMemosBridgePasswordSignInAllowed: the break-glass stays open when
// configured.
func TestMemosBridgePasswordSignInAllowed(t *testing.T) {
	s, fm, _ := bridgeStand(t, func(c *config.Config) { c.Memos.AllowPasswordSignIn = true })
	fm.Users["root-admin"] = &proxytest.FakeUser{Username: "root-admin", Password: "pw"}
	c := s.Browser()
	signInAs(s, c, "/", "alice", alicePassword)
	if resp, _ := navigate(t, noRedirect(c), s.URL+"/auth/admin"); resp.StatusCode != 200 {
		t.Errorf("/auth/admin: %d", resp.StatusCode)
	}
	if resp, _ := memosCall(t, c, s.URL, "AuthService/SignIn", "", `{"passwordCredentials":{"username":"root-admin","password":"pw"}}`); resp.StatusCode != 200 {
		t.Errorf("password SignIn: %d", resp.StatusCode)
	}
	// Setting Memos up: before the bridge is registered, /auth shows
	// Memos's own page instead of an error.
	fm.Mu.Lock()
	clear(fm.IdPs)
	fm.Mu.Unlock()
	if resp, body := navigate(t, noRedirect(c), s.URL+"/auth"); resp.StatusCode != 200 || !strings.Contains(body, "<title>Memos</title>") {
		t.Errorf("/auth with the bridge unregistered: %d", resp.StatusCode)
	}
}

// TestMemosBridgeMemosSignOutButton: Memos's own sign-out ends the proxy
// session, and the sign-in page it goes to next leads to the provider's
// sign-out instead of signing the user straight back in.
func TestMemosBridgeMemosSignOutButton(t *testing.T) {
	s, _, _ := bridgeStand(t)
	c := s.Browser()
	signInAs(s, c, "/", "alice", alicePassword)
	_, access := memosWhoAmI(t, c, s.URL)
	resp, _ := memosCall(t, c, s.URL, "AuthService/SignOut", access, "{}")
	if resp.StatusCode != 200 {
		t.Fatalf("SignOut: %d", resp.StatusCode)
	}
	if code := statusOf(t, c, s.URL+"/oauth2/userinfo"); code != http.StatusUnauthorized {
		t.Errorf("the proxy session outlived Memos's sign-out: %d", code)
	}
	resp, _ = navigate(t, noRedirect(c), s.URL+"/auth")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "https://auth.example.com/logout") {
		t.Errorf("/auth after Memos's sign-out: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	c.Jar.SetCookies(mustURL(s.URL), resp.Cookies())
	// Once through, /auth is an ordinary sign-in again.
	resp, _ = navigate(t, noRedirect(c), s.URL+"/auth")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), s.Issuer) {
		t.Errorf("/auth later: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestMemosBridgePersonalAccessTokens: with the bridge and
// pass_bearer_tokens, an API client's personal access token reaches Memos
// once Memos confirms it, spoofed identity headers stripped; an unknown
// token never passes.
func TestMemosBridgePersonalAccessTokens(t *testing.T) {
	s, fm, _ := bridgeStand(t, func(c *config.Config) { c.Memos.PassBearerTokens = true })
	c := s.Browser()
	signInAs(s, c, "/", "alice", alicePassword) // creates alice in Memos
	pat := "memos_pat_" + proxytest.RandomHex()
	fm.Mu.Lock()
	fm.Access[pat] = "alice"
	fm.Mu.Unlock()
	call := func(token string) (*http.Response, string) {
		req := mustReq(http.MethodGet, s.URL+"/api/v1/memos")
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Remote-User", "admin")
		req.Header.Set("Remote_User", "admin")
		return do(t, noRedirect(http.DefaultClient), req)
	}
	if resp, body := call(pat); resp.StatusCode != 200 || !strings.Contains(body, `"caller":"alice"`) || !strings.Contains(body, `"remoteUser":null`) {
		t.Errorf("a confirmed token: %d %s", resp.StatusCode, body)
	}
	before := s.SeenCount()
	if resp, _ := call("memos_pat_" + proxytest.RandomHex()); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an unknown token: %d", resp.StatusCode)
	}
	for _, r := range s.Seen.Since(before) {
		if r.URL.Path == "/api/v1/memos" {
			t.Errorf("an unknown token reached Memos")
		}
	}
}
