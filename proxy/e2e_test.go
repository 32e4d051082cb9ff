package proxy_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

func TestSignInForwardsIdentity(t *testing.T) {
	s := newStand(t, nil, nil)
	c := s.Browser()
	resp, _ := navigate(t, c, s.URL+"/memos/42?view=full")
	if resp.Request.URL.Path != "/login/username" {
		t.Fatalf("navigation was not sent to the OP's login: %s", resp.Request.URL)
	}
	resp, body := login(t, c, resp, "alice", alicePassword)
	if resp.StatusCode != 200 || !strings.Contains(body, "hello alice") {
		t.Fatalf("after sign-in: %d %s", resp.StatusCode, body)
	}
	if got := resp.Request.URL.RequestURI(); got != "/memos/42?view=full" {
		t.Errorf("return URL = %q, want /memos/42?view=full", got)
	}

	// The authorization request: PKCE S256, state and nonce.
	authz := s.OP.AuthorizeRequests()
	if len(authz) != 1 {
		t.Fatalf("authorization requests = %d", len(authz))
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if authz[0].Get(k) == "" {
			t.Errorf("authorization request has no %s", k)
		}
	}
	if m := authz[0].Get("code_challenge_method"); m != "S256" {
		t.Errorf("code_challenge_method = %q", m)
	}
	// The token request: client_secret_post, with the PKCE verifier; one
	// request only (Authelia would have refused Basic).
	forms := s.OP.TokenForms()
	if len(forms) != 1 || s.OP.TokenRequests.Load() != 1 {
		t.Fatalf("token requests = %d", s.OP.TokenRequests.Load())
	}
	if forms[0].Get("client_secret") != clientSecret || forms[0].Get("client_id") != "memos" || forms[0].Get("code_verifier") == "" {
		t.Errorf("token request form lacks client_secret_post or code_verifier: %v", keys(forms[0]))
	}

	// Now a request with spoofed identity headers in every spelling.
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/memos.api.v1.MemoService/ListMemos", strings.NewReader("{}"))
	req.Header["Remote-User"] = []string{"admin", "root"}
	req.Header["remote-user"] = []string{"admin"}
	req.Header["Remote_User"] = []string{"admin"}
	req.Header["REMOTE.USER"] = []string{"admin"}
	req.Header["Remote-Email"] = []string{"admin@example.com"}
	req.Header.Set("Connection", "Remote-User, Remote-Groups")
	req.Header.Set("Authorization", "Bearer memos-access-token")
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(&http.Cookie{Name: "memos_refresh", Value: "r1"})
	resp, _ = do(t, c, req)
	if resp.StatusCode != 200 {
		t.Fatalf("signed-in API call: %d", resp.StatusCode)
	}
	up := s.LastSeen()
	want := map[string]string{
		"Remote-User":   "alice",
		"Remote-Name":   "Alice Liddell",
		"Remote-Email":  "alice@example.com",
		"Remote-Groups": "admins,users",
		"Authorization": "Bearer memos-access-token",
	}
	for k, v := range want {
		if got := up.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("upstream %s = %q, want exactly %q", k, got, v)
		}
	}
	for k := range up.Header {
		if n := strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(k)); strings.HasPrefix(n, "remote-") && up.Header.Get(k) != want[http.CanonicalHeaderKey(n)] {
			t.Errorf("spoofed header reached the upstream: %s: %q", k, up.Header[k])
		}
	}
	if cookie := up.Header.Get("Cookie"); cookie != "memos_refresh=r1" {
		t.Errorf("upstream Cookie = %q, want only memos_refresh", cookie)
	}
	if up.Host != strings.TrimPrefix(s.URL, "http://") {
		t.Errorf("upstream Host = %q, want the proxy's %q", up.Host, s.URL)
	}
	if up.Header.Get("X-Forwarded-Proto") != "http" || up.Header.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("X-Forwarded-*: %v", up.Header)
	}

	// /oauth2/userinfo shows the identity.
	resp, body = do(t, c, mustReq(http.MethodGet, s.URL+"/oauth2/userinfo"))
	if resp.StatusCode != 200 || !strings.Contains(body, `"preferred_username":"alice"`) || !strings.Contains(body, s.Alice.Subject()) {
		t.Errorf("userinfo: %d %s", resp.StatusCode, body)
	}

	// Nothing secret reached the log.
	logs := s.Logs.String()
	for _, secret := range []string{clientSecret, sessionSecret, alicePassword, authz[0].Get("state"), authz[0].Get("nonce"), forms[0].Get("code"), forms[0].Get("code_verifier")} {
		if secret != "" && strings.Contains(logs, secret) {
			t.Errorf("the log contains a secret %q", secret)
		}
	}
	if !strings.Contains(logs, `msg=sign-in user=alice`) {
		t.Errorf("no sign-in line naming the user in the log")
	}
}

func keys(v url.Values) []string {
	var out []string
	for k := range v {
		out = append(out, k)
	}
	return out
}

func TestSignOut(t *testing.T) {
	s := newStand(t, nil, nil)
	c := s.SignIn("/")
	resp, _ := do(t, noRedirect(c), mustReq(http.MethodPost, s.URL+"/oauth2/sign_out?rd=/bye"))
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/bye" {
		t.Fatalf("sign-out: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = do(t, c, mustReq(http.MethodGet, s.URL+"/api/v1/memos"))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after sign-out an API call got %d", resp.StatusCode)
	}
}

func TestSignOutGoesToLogoutURL(t *testing.T) {
	s := newStand(t, func(c *cfg) { c.OIDC.LogoutURL = "https://auth.example.com/logout" }, nil)
	c := s.SignIn("/")
	resp, _ := do(t, noRedirect(c), mustReq(http.MethodGet, s.URL+"/oauth2/sign_out?rd=//evil.com"))
	want := "https://auth.example.com/logout?rd=" + url.QueryEscape(s.URL+"/")
	if loc := resp.Header.Get("Location"); loc != want {
		t.Errorf("sign-out went to %q, want %q", loc, want)
	}
}

func TestSignOutUsesEndSessionEndpoint(t *testing.T) {
	t.Run("cookie store", func(t *testing.T) { testEndSession(t, nil) })
	t.Run("redis store", func(t *testing.T) { testEndSession(t, useRedis(startRedis(t))) })
}

func testEndSession(t *testing.T, edit func(*cfg)) {
	s := newStand(t, edit, func(o *opCfg) { o.EndSession = true })
	c := s.SignIn("/")
	resp, _ := do(t, noRedirect(c), mustReq(http.MethodGet, s.URL+"/oauth2/sign_out?rd=/after"))
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasSuffix(loc.Path, "/end_session") {
		t.Fatalf("sign-out went to %q", resp.Header.Get("Location"))
	}
	q := loc.Query()
	if q.Get("post_logout_redirect_uri") != s.URL+"/after" || q.Get("id_token_hint") == "" || q.Get("client_id") != "memos" {
		t.Errorf("end_session parameters: %v", q)
	}
}

func TestConcurrentFlowsInOneBrowser(t *testing.T) {
	s := newStand(t, nil, nil)
	c := s.Browser()
	// Two tabs start a sign-in before either finishes.
	tab1, _ := navigate(t, c, s.URL+"/one")
	tab2, _ := navigate(t, c, s.URL+"/two")
	resp, _ := login(t, c, tab2, "alice", alicePassword)
	if resp.Request.URL.Path != "/two" || resp.StatusCode != 200 {
		t.Fatalf("tab 2 ended at %s with %d", resp.Request.URL, resp.StatusCode)
	}
	resp, _ = login(t, c, tab1, "alice", alicePassword)
	if resp.Request.URL.Path != "/one" || resp.StatusCode != 200 {
		t.Fatalf("tab 1 ended at %s with %d", resp.Request.URL, resp.StatusCode)
	}
}

func TestParallelSignIns(t *testing.T) {
	s := newStand(t, nil, nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { s.SignIn("/") })
	}
	wg.Wait()
}
