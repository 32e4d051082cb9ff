package proxy_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/examples/demo/testop"
)

const bobPassword = "bob-password"

// bridgeStand is a stand whose upstream is the Memos stand-in, with the
// bridge on and registered in Memos, and bob as a second user of the OP.
func bridgeStand(t *testing.T, edits ...func(*config.Config)) (*stand, *fakeMemos, *url.URL) {
	t.Helper()
	fm := newFakeMemos()
	bridgeLn := listen(t)
	s := newStandWith(t, fm.ServeHTTP, func(c *config.Config) {
		c.Memos = config.Memos{Bridge: true, AdminToken: memosAdminPAT, IdPID: "oidc-proxy", IdPTitle: "Single sign-on",
			BridgeListen: bridgeLn.Addr().String(), BridgeURL: "http://" + bridgeLn.Addr().String(), UsernameClaim: "preferred_username"}
		c.OIDC.LogoutURL = "https://auth.example.com/logout"
		for _, e := range edits {
			e(c)
		}
	}, func(o *testop.Config) {
		o.Users = append(o.Users, &testop.User{Username: "bob", Password: bobPassword, Name: "Bob", Email: "bob@example.com"})
	})
	serveOn(t, bridgeLn, s.proxy.BridgeHandler())
	// The proxy registers itself at start (admin_token_file); doing it
	// again is safe: the registration is updated.
	eventually(t, "the proxy did not register itself in Memos", func() bool {
		return strings.Contains(s.logs.String(), "registered as Memos's identity provider")
	})
	if !strings.Contains(s.logs.String(), "result=\"created identity-providers/oidc-proxy\"") {
		t.Errorf("the registration at start did not create the provider")
	}
	if did, err := s.proxy.RegisterWithMemos(t.Context()); err != nil || !strings.HasPrefix(did, "updated") {
		t.Fatalf("registration again: %q %v", did, err)
	}
	u, _ := url.Parse("http://" + bridgeLn.Addr().String())
	return s, fm, u
}

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
func (s *stand) recordingBrowser() (*http.Client, *responses) {
	c := s.browser()
	rec := &responses{next: http.DefaultTransport}
	c.Transport = rec
	return c, rec
}

// signInAs signs c in as user through path, and returns the last page.
func (s *stand) signInAs(c *http.Client, path, user, password string) (*http.Response, string) {
	s.t.Helper()
	resp, _ := navigate(s.t, c, s.url+path)
	return login(s.t, c, resp, user, password)
}

// memosCall POSTs a Connect call through the proxy with c's cookies.
func memosCall(t *testing.T, c *http.Client, base, method, bearer, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/memos.api.v1."+method, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, raw := do(t, c, req)
	var out map[string]any
	json.Unmarshal([]byte(raw), &out)
	return resp, out
}

// memosWhoAmI does what Memos's web app does at start through the proxy:
// RefreshToken with the browser's cookie, then GetCurrentUser. It returns
// the username and the access token, or "" when Memos has no session.
func memosWhoAmI(t *testing.T, c *http.Client, base string) (string, string) {
	t.Helper()
	resp, tok := memosCall(t, c, base, "AuthService/RefreshToken", "", "{}")
	if resp.StatusCode != 200 {
		return "", ""
	}
	access, _ := tok["accessToken"].(string)
	resp, me := memosCall(t, c, base, "AuthService/GetCurrentUser", access, "{}")
	if resp.StatusCode != 200 {
		return "", ""
	}
	user, _ := me["user"].(map[string]any)
	name, _ := user["username"].(string)
	return name, access
}

func TestMemosBridgeSignsIntoMemos(t *testing.T) {
	s, fm, _ := bridgeStand(t)
	c, rec := s.recordingBrowser()
	resp, _ := s.signInAs(c, "/memos/1", "alice", alicePassword)
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/memos/1" {
		t.Fatalf("sign-in ended at %s with %d", resp.Request.URL, resp.StatusCode)
	}
	cb := rec.with("/oauth2/callback")
	if cb == nil || cb.Header.Get("Clear-Site-Data") != `"storage"` || !strings.Contains(strings.Join(cb.Header.Values("Set-Cookie"), "\n"), "memos_refresh=") {
		t.Fatalf("the callback's answer does not hand over the Memos session: %v", cb.Header)
	}
	// Memos's web app finds its session: no second sign-in.
	if user, _ := memosWhoAmI(t, c, s.url); user != "alice" {
		t.Fatalf("Memos says %q is signed in", user)
	}
	if u := fm.users["alice"]; u == nil || u.DisplayName != "Alice Liddell" || u.Email != "alice@example.com" {
		t.Errorf("Memos user: %+v", u)
	}
	// Memos's list of sessions names the browser, not the proxy.
	if got := fm.signInClients[0]; got != "test-browser/1 from 127.0.0.1" {
		t.Errorf("the SignIn came from %q", got)
	}
	// Memos authenticated with HTTP Basic, and it was accepted at once.
	if strings.Join(fm.tokenAuth, ",") != "basic" {
		t.Errorf("token requests: %v", fm.tokenAuth)
	}

	// A second sign-in (another browser) reuses the user.
	c2 := s.browser()
	s.signInAs(c2, "/", "alice", alicePassword)
	if user, _ := memosWhoAmI(t, c2, s.url); user != "alice" || fm.userCount() != 1 {
		t.Errorf("second sign-in: %q, %d users", user, fm.userCount())
	}
}

// TestMemosBridgeUserSwitch: alice signs out, bob signs in on the same
// browser; Memos's session follows, and alice's Memos session is over.
func TestMemosBridgeUserSwitch(t *testing.T) {
	s, fm, _ := bridgeStand(t)
	c, rec := s.recordingBrowser()
	s.signInAs(c, "/", "alice", alicePassword)
	var aliceRefresh string
	for _, ck := range c.Jar.Cookies(mustURL(s.url)) {
		if ck.Name == "memos_refresh" {
			aliceRefresh = ck.Value
		}
	}
	resp, _ := do(t, noRedirect(c), mustReq(http.MethodPost, s.url+"/oauth2/sign_out"))
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "https://auth.example.com/logout") {
		t.Fatalf("sign-out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp.Header.Get("Clear-Site-Data") != `"storage"` || !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "memos_refresh=;") {
		t.Errorf("sign-out does not clear Memos in the browser: %v", resp.Header)
	}
	// Memos ended that session too: its refresh cookie is refused.
	fm.mu.Lock()
	revoked := fm.refresh[aliceRefresh] == nil || fm.refresh[aliceRefresh].revoked
	fm.mu.Unlock()
	if !revoked {
		t.Errorf("alice's Memos session outlived the sign-out")
	}
	s.signInAs(c, "/", "bob", bobPassword)
	if cb := rec.with("/oauth2/callback"); cb.Header.Get("Clear-Site-Data") != `"storage"` {
		t.Errorf("bob's sign-in does not clear the storage alice's Memos left")
	}
	if user, _ := memosWhoAmI(t, c, s.url); user != "bob" {
		t.Errorf("after the switch Memos shows %q", user)
	}
}

// TestMemosBridgeSignInPage: Memos shows its sign-in page (its cookie
// expired, or was dropped) while the proxy session lives: the proxy signs
// the user into Memos again and returns them where Memos wanted.
func TestMemosBridgeSignInPage(t *testing.T) {
	s, fm, _ := bridgeStand(t)
	c := s.browser()
	s.signInAs(c, "/", "alice", alicePassword)
	// The Memos cookie is gone.
	c.Jar.SetCookies(mustURL(s.url), []*http.Cookie{{Name: "memos_refresh", Value: "", Path: "/", MaxAge: -1}})
	if user, _ := memosWhoAmI(t, c, s.url); user != "" {
		t.Fatalf("Memos still signed in without its cookie: %q", user)
	}
	resp, _ := navigate(t, noRedirect(c), s.url+"/auth?redirect=%2Fmemos%2F7")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/memos/7" || resp.Header.Get("Clear-Site-Data") != `"storage"` {
		t.Fatalf("/auth with a proxy session: %d %q %v", resp.StatusCode, resp.Header.Get("Location"), resp.Header)
	}
	c.Jar.SetCookies(mustURL(s.url), resp.Cookies())
	if user, _ := memosWhoAmI(t, c, s.url); user != "alice" {
		t.Errorf("after /auth Memos shows %q", user)
	}
	if fm.userCount() != 1 {
		t.Errorf("%d Memos users", fm.userCount())
	}
	// Password sign-in stays closed.
	if resp, _ := navigate(t, noRedirect(c), s.url+"/auth/admin"); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/auth" {
		t.Errorf("/auth/admin: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, body := range []string{`{"passwordCredentials":{"username":"admin","password":"x"}}`, `{"password_credentials":{}}`, `not json`} {
		if resp, _ := memosCall(t, c, s.url, "AuthService/SignIn", "", body); resp.StatusCode != http.StatusForbidden {
			t.Errorf("password SignIn %s: %d", body, resp.StatusCode)
		}
	}
}

// TestMemosBridgePasswordSignInAllowed: the break-glass stays open when
// configured.
func TestMemosBridgePasswordSignInAllowed(t *testing.T) {
	s, fm, _ := bridgeStand(t, func(c *config.Config) { c.Memos.AllowPasswordSignIn = true })
	fm.users["root-admin"] = &fakeUser{Username: "root-admin", Password: "pw"}
	c := s.browser()
	s.signInAs(c, "/", "alice", alicePassword)
	if resp, _ := navigate(t, noRedirect(c), s.url+"/auth/admin"); resp.StatusCode != 200 {
		t.Errorf("/auth/admin: %d", resp.StatusCode)
	}
	if resp, _ := memosCall(t, c, s.url, "AuthService/SignIn", "", `{"passwordCredentials":{"username":"root-admin","password":"pw"}}`); resp.StatusCode != 200 {
		t.Errorf("password SignIn: %d", resp.StatusCode)
	}
	// Setting Memos up: before the bridge is registered, /auth shows
	// Memos's own page instead of an error.
	fm.mu.Lock()
	clear(fm.idps)
	fm.mu.Unlock()
	if resp, body := navigate(t, noRedirect(c), s.url+"/auth"); resp.StatusCode != 200 || !strings.Contains(body, "<title>Memos</title>") {
		t.Errorf("/auth with the bridge unregistered: %d", resp.StatusCode)
	}
}

// TestMemosBridgeMemosSignOutButton: Memos's own sign-out ends the proxy
// session, and the sign-in page it goes to next leads to the provider's
// sign-out instead of signing the user straight back in.
func TestMemosBridgeMemosSignOutButton(t *testing.T) {
	s, _, _ := bridgeStand(t)
	c := s.browser()
	s.signInAs(c, "/", "alice", alicePassword)
	_, access := memosWhoAmI(t, c, s.url)
	resp, _ := memosCall(t, c, s.url, "AuthService/SignOut", access, "{}")
	if resp.StatusCode != 200 {
		t.Fatalf("SignOut: %d", resp.StatusCode)
	}
	if code := statusOf(t, c, s.url+"/oauth2/userinfo"); code != http.StatusUnauthorized {
		t.Errorf("the proxy session outlived Memos's sign-out: %d", code)
	}
	resp, _ = navigate(t, noRedirect(c), s.url+"/auth")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "https://auth.example.com/logout") {
		t.Errorf("/auth after Memos's sign-out: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	c.Jar.SetCookies(mustURL(s.url), resp.Cookies())
	// Once through, /auth is an ordinary sign-in again.
	resp, _ = navigate(t, noRedirect(c), s.url+"/auth")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), s.issuer) {
		t.Errorf("/auth later: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func pkcePair() (verifier, challenge string) {
	verifier = strings.Repeat("v", 20) + randomHex()
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorize asks the bridge's authUrl for a code as Memos's sign-in button
// does, and returns the redirect's query.
func authorize(t *testing.T, s *stand, c *http.Client, q url.Values) (*http.Response, url.Values) {
	t.Helper()
	resp, _ := navigate(t, noRedirect(c), s.url+"/oauth2/memos/authorize?"+q.Encode())
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil {
		return resp, nil
	}
	return resp, loc.Query()
}

func buttonQuery(s *stand, challenge string) url.Values {
	q := url.Values{"client_id": {"oidc-proxy"}, "redirect_uri": {s.url + "/auth/callback"}, "state": {"memos-state-1"},
		"response_type": {"code"}, "scope": {"profile email"}}
	if challenge != "" {
		q.Set("code_challenge", challenge)
		q.Set("code_challenge_method", "S256")
	}
	return q
}

// TestMemosBridgeButton: Memos's sign-in button with PKCE, as its web app
// sends it; the code comes back with Memos's state, and Memos's SignIn with
// the verifier succeeds.
func TestMemosBridgeButton(t *testing.T) {
	s, _, _ := bridgeStand(t)
	verifier, challenge := pkcePair()

	// Without a proxy session the button signs in at the provider first,
	// then comes back to finish Memos's flow.
	c := s.browser()
	resp, _ := navigate(t, c, s.url+"/oauth2/memos/authorize?"+buttonQuery(s, challenge).Encode())
	resp, _ = login(t, c, resp, "alice", alicePassword)
	if resp.Request.URL.Path != "/auth/callback" || resp.Request.URL.Query().Get("state") != "memos-state-1" {
		t.Fatalf("the button's flow ended at %s", resp.Request.URL)
	}
	code := resp.Request.URL.Query().Get("code")
	body, _ := json.Marshal(map[string]any{"ssoCredentials": map[string]string{
		"idpName": "identity-providers/oidc-proxy", "code": code, "redirectUri": s.url + "/auth/callback", "codeVerifier": verifier}})
	if resp, out := memosCall(t, c, s.url, "AuthService/SignIn", "", string(body)); resp.StatusCode != 200 {
		t.Fatalf("Memos's SignIn with the button's code: %d %v", resp.StatusCode, out)
	}
	// The same code again is refused (Memos's SignIn fails).
	if resp, _ := memosCall(t, c, s.url, "AuthService/SignIn", "", string(body)); resp.StatusCode == 200 {
		t.Errorf("a code worked twice")
	}
	// Requests the bridge refuses, without redirecting anywhere.
	for name, edit := range map[string]func(url.Values){
		"another client":       func(q url.Values) { q.Set("client_id", "evil") },
		"another redirect_uri": func(q url.Values) { q.Set("redirect_uri", "https://evil.example.com/auth/callback") },
		"plain PKCE":           func(q url.Values) { q.Set("code_challenge_method", "plain") },
		"no state":             func(q url.Values) { q.Del("state") },
		"implicit":             func(q url.Values) { q.Set("response_type", "token") },
	} {
		q := buttonQuery(s, challenge)
		edit(q)
		if resp, _ := authorize(t, s, c, q); resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("%s: %d %q", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// TestMemosBridgeTokenEndpoint: the bridge's token endpoint, as an
// attacker holding a code would try it.
func TestMemosBridgeTokenEndpoint(t *testing.T) {
	s, fm, bridge := bridgeStand(t)
	c := s.browser()
	s.signInAs(c, "/", "alice", alicePassword)
	verifier, challenge := pkcePair()
	newCode := func(challenge string) string {
		_, q := authorize(t, s, c, buttonQuery(s, challenge))
		if q.Get("code") == "" {
			t.Fatal("no code")
		}
		return q.Get("code")
	}
	secret := fm.clientSecret()
	token := func(code, id, secret, verifier, redirect string, basic bool) (int, string) {
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}}
		if verifier != "" {
			form.Set("code_verifier", verifier)
		}
		if !basic {
			form.Set("client_id", id)
			form.Set("client_secret", secret)
		}
		req, _ := http.NewRequest(http.MethodPost, bridge.String()+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic {
			req.SetBasicAuth(id, secret)
		}
		resp, body := do(t, http.DefaultClient, req)
		var out struct {
			AccessToken string `json:"access_token"`
			Error       string `json:"error"`
		}
		json.Unmarshal([]byte(body), &out)
		if out.AccessToken != "" {
			return resp.StatusCode, out.AccessToken
		}
		return resp.StatusCode, out.Error
	}
	cb := s.url + "/auth/callback"

	// A stolen code with wrong client credentials is refused, and is not
	// spent: the real client still redeems it, once.
	code := newCode(challenge)
	for _, creds := range [][2]string{{"oidc-proxy", "wrong"}, {"evil", secret}, {"", ""}} {
		if status, got := token(code, creds[0], creds[1], verifier, cb, false); status != http.StatusUnauthorized || got != "invalid_client" {
			t.Errorf("credentials %v: %d %s", creds, status, got)
		}
	}
	status, access := token(code, "oidc-proxy", secret, verifier, cb, true)
	if status != 200 {
		t.Fatalf("the real client: %d %s", status, access)
	}
	if status, got := token(code, "oidc-proxy", secret, verifier, cb, false); status != http.StatusBadRequest || got != "invalid_grant" {
		t.Errorf("the code a second time: %d %s", status, got)
	}
	// Userinfo with the access token; refused without it.
	req, _ := http.NewRequest(http.MethodGet, bridge.String()+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	if resp, body := do(t, http.DefaultClient, req); resp.StatusCode != 200 || !strings.Contains(body, `"preferred_username":"alice"`) {
		t.Errorf("userinfo: %d %s", resp.StatusCode, body)
	}
	req.Header.Set("Authorization", "Bearer "+access+"x")
	if resp, _ := do(t, http.DefaultClient, req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("userinfo with a forged token: %d", resp.StatusCode)
	}
	// PKCE: no verifier, a wrong one, or a verifier for a code issued
	// without a challenge; another redirect URI; an expired code.
	for name, try := range map[string]func() (int, string){
		"no verifier": func() (int, string) { return token(newCode(challenge), "oidc-proxy", secret, "", cb, true) },
		"wrong verifier": func() (int, string) {
			v, _ := pkcePair()
			return token(newCode(challenge), "oidc-proxy", secret, v, cb, true)
		},
		"verifier, no PKCE": func() (int, string) { return token(newCode(""), "oidc-proxy", secret, verifier, cb, true) },
		"another redirect_uri": func() (int, string) {
			return token(newCode(challenge), "oidc-proxy", secret, verifier, "https://evil.example.com/", true)
		},
		"unknown code": func() (int, string) { return token("made-up", "oidc-proxy", secret, verifier, cb, true) },
		"expired after 1 minute": func() (int, string) {
			code := newCode(challenge)
			s.skew.Add(int64(61 * time.Second))
			defer s.skew.Add(-int64(61 * time.Second))
			return token(code, "oidc-proxy", secret, verifier, cb, true)
		},
	} {
		if status, got := try(); status != http.StatusBadRequest || got != "invalid_grant" {
			t.Errorf("%s: %d %s", name, status, got)
		}
	}
	// Both authentication methods at once, and another grant type.
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {"oidc-proxy"}, "client_secret": {secret}}
	resp, err := http.PostForm(bridge.String()+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("refresh_token grant: %d", resp.StatusCode)
	}
	// The bridge's endpoints are not on the public listener.
	if code := statusOf(t, http.DefaultClient, s.url+"/token"); code == 200 {
		t.Errorf("the public listener serves /token")
	}
}

// TestMemosBridgeUsernames: an identifier Memos cannot take as a username
// still signs in (Memos generates a name and links it), and the proxy says
// so in the log.
func TestMemosBridgeUsernames(t *testing.T) {
	s, fm, _ := bridgeStand(t)
	s.alice.Username = "alice.liddell" // "." is not allowed in Memos
	c := s.browser()
	s.signInAs(c, "/", "alice.liddell", alicePassword)
	user, _ := memosWhoAmI(t, c, s.url)
	if user == "" || user == "alice.liddell" {
		t.Fatalf("Memos user %q", user)
	}
	if !strings.Contains(s.logs.String(), "Memos gave the user another username") {
		t.Errorf("nothing in the log about the username")
	}
	// Signing in again finds the same (linked) user.
	c2 := s.browser()
	s.signInAs(c2, "/", "alice.liddell", alicePassword)
	if again, _ := memosWhoAmI(t, c2, s.url); again != user || fm.userCount() != 1 {
		t.Errorf("second sign-in: %q, %d users", again, fm.userCount())
	}
}

// TestMemosBridgeMemosRefuses: with registration closed in Memos the user
// still reaches the proxy, and Memos's sign-in page explains instead of
// looping.
func TestMemosBridgeMemosRefuses(t *testing.T) {
	s, fm, _ := bridgeStand(t)
	fm.closedRegistration = true
	c := s.browser()
	resp, _ := s.signInAs(c, "/", "alice", alicePassword)
	if resp.StatusCode != 200 {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	if !strings.Contains(s.logs.String(), "user registration is not allowed") {
		t.Errorf("the log does not say why")
	}
	resp, body := navigate(t, noRedirect(c), s.url+"/auth")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Memos did not accept") || strings.Contains(body, "registration") {
		t.Errorf("/auth with Memos refusing: %d %s", resp.StatusCode, body)
	}
}

// TestMemosBridgeStreamsAndRanges: the Memos web app's server-sent events
// arrive as they are sent, and attachments answer Range requests.
func TestMemosBridgeStreamsAndRanges(t *testing.T) {
	s, _, _ := bridgeStand(t)
	c := s.browser()
	s.signInAs(c, "/", "alice", alicePassword)
	_, access := memosWhoAmI(t, c, s.url)
	req := mustReq(http.MethodGet, s.url+"/api/v1/sse")
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 256)
	n, err := resp.Body.Read(buf)
	first := time.Now()
	if err != nil || !strings.Contains(string(buf[:n]), `"event":0`) {
		t.Fatalf("first event: %q %v", buf[:n], err)
	}
	rest, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(rest), `"event":2`) || time.Since(first) < 150*time.Millisecond {
		t.Errorf("the stream was buffered: the first event came with the rest")
	}

	req = mustReq(http.MethodGet, s.url+"/file/attachments/1/video.mp4")
	req.Header.Set("Range", "bytes=1000-1999")
	resp2, body := do(t, c, req) // the memos_refresh cookie authenticates
	if resp2.StatusCode != http.StatusPartialContent || len(body) != 1000 || body[0] != byte(1000%251) || resp2.Header.Get("Content-Range") != "bytes 1000-1999/65536" {
		t.Errorf("range: %d %d bytes %q", resp2.StatusCode, len(body), resp2.Header.Get("Content-Range"))
	}
}

// TestMemosBridgeAcrossReplicas: with the Redis store a code issued by one
// replica is redeemed at another's bridge, once; while it waits, Redis
// holds nothing readable of the user.
func TestMemosBridgeAcrossReplicas(t *testing.T) {
	rs := startRedis(t)
	s, fm, bridgeA := bridgeStand(t, useRedis(rs))
	ln, bridgeLn := listen(t), listen(t)
	other := s.serveProxy(ln, s.url, s.edit)
	serveOn(t, bridgeLn, other.BridgeHandler())
	bridgeB := "http://" + bridgeLn.Addr().String()
	c := s.browser()
	s.signInAs(c, "/", "alice", alicePassword)
	verifier, challenge := pkcePair()
	_, q := authorize(t, s, c, buttonQuery(s, challenge))
	code := q.Get("code")
	if code == "" {
		t.Fatal("no code")
	}
	if dump := rs.dump(); strings.Contains(dump, "alice") || strings.Contains(dump, code) {
		t.Errorf("Redis holds the user or the code in the clear while the code waits")
	}
	secret := fm.clientSecret()
	redeem := func(bridge string) int {
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {s.url + "/auth/callback"},
			"code_verifier": {verifier}, "client_id": {"oidc-proxy"}, "client_secret": {secret}}
		resp, err := http.PostForm(bridge+"/token", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := redeem(bridgeB); code != 200 {
		t.Fatalf("the code at the other replica: %d", code)
	}
	if code := redeem(bridgeA.String()); code != http.StatusBadRequest {
		t.Errorf("the code again at the first replica: %d", code)
	}
}

// TestMemosBridgePersonalAccessTokens: with the bridge and
// pass_bearer_tokens, an API client's personal access token reaches Memos
// once Memos confirms it, spoofed identity headers stripped; an unknown
// token never passes.
func TestMemosBridgePersonalAccessTokens(t *testing.T) {
	s, fm, _ := bridgeStand(t, func(c *config.Config) { c.Memos.PassBearerTokens = true })
	c := s.browser()
	s.signInAs(c, "/", "alice", alicePassword) // creates alice in Memos
	pat := "memos_pat_" + randomHex()
	fm.mu.Lock()
	fm.access[pat] = "alice"
	fm.mu.Unlock()
	call := func(token string) (*http.Response, string) {
		req := mustReq(http.MethodGet, s.url+"/api/v1/memos")
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Remote-User", "admin")
		req.Header.Set("Remote_User", "admin")
		return do(t, noRedirect(http.DefaultClient), req)
	}
	if resp, body := call(pat); resp.StatusCode != 200 || !strings.Contains(body, `"caller":"alice"`) || !strings.Contains(body, `"remoteUser":null`) {
		t.Errorf("a confirmed token: %d %s", resp.StatusCode, body)
	}
	before := s.seenCount()
	if resp, _ := call("memos_pat_" + randomHex()); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an unknown token: %d", resp.StatusCode)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.seen[before:] {
		if r.URL.Path == "/api/v1/memos" {
			t.Errorf("an unknown token reached Memos")
		}
	}
}
