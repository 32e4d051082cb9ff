package proxy_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// callbackURL runs a sign-in up to the point where the OP sends the browser
// back, and returns that callback URL without visiting it.
func callbackURL(s *stand, c *http.Client) string {
	s.T.Helper()
	resp, _ := navigate(s.T, c, s.URL+"/")
	stop := noRedirect(c)
	stop.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == "/oauth2/callback" {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, _ = login(s.T, stop, resp, "alice", alicePassword)
	loc := resp.Header.Get("Location")
	if !strings.Contains(loc, "/oauth2/callback?") {
		s.T.Fatalf("OP did not redirect to the callback: %d %q", resp.StatusCode, loc)
	}
	return loc
}

func TestCallbackRefusals(t *testing.T) {
	s := newStand(t, nil, nil)
	tests := []struct {
		name   string
		mangle func(t *testing.T, cb string, c *http.Client) (string, *http.Client)
	}{
		{"state missing", func(t *testing.T, cb string, c *http.Client) (string, *http.Client) {
			return setQuery(cb, "state", ""), c
		}},
		{"state wrong", func(t *testing.T, cb string, c *http.Client) (string, *http.Client) {
			return setQuery(cb, "state", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), c
		}},
		{"state from another browser", func(t *testing.T, cb string, c *http.Client) (string, *http.Client) {
			return cb, s.Browser()
		}},
		{"iss of another issuer", func(t *testing.T, cb string, c *http.Client) (string, *http.Client) {
			return setQuery(cb, "iss", "https://evil.example.com"), c
		}},
		{"iss missing though announced", func(t *testing.T, cb string, c *http.Client) (string, *http.Client) {
			return setQuery(cb, "iss", ""), c
		}},
		{"code missing", func(t *testing.T, cb string, c *http.Client) (string, *http.Client) {
			return setQuery(cb, "code", ""), c
		}},
		{"code forged", func(t *testing.T, cb string, c *http.Client) (string, *http.Client) {
			return setQuery(cb, "code", "forged-code"), c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := s.Browser()
			cb, c2 := tt.mangle(t, callbackURL(s, c), c)
			before := s.SeenCount()
			req := mustReq(http.MethodGet, cb)
			req.Header.Set("Accept", "text/html")
			resp, body := do(t, noRedirect(c2), req)
			if resp.StatusCode < 400 {
				t.Fatalf("callback accepted: %d %s", resp.StatusCode, resp.Header.Get("Location"))
			}
			if !strings.Contains(body, "Sign-in failed") || strings.Contains(body, "code=") {
				t.Errorf("error page: %s", body)
			}
			if len(sessionCookies(c2, s.URL)) != 0 {
				t.Errorf("a session cookie was issued")
			}
			for _, h := range resp.Header.Values("Set-Cookie") {
				if strings.HasPrefix(h, "oidc_proxy=") && !strings.Contains(h, "Max-Age=0") {
					t.Errorf("session cookie set: %s", h)
				}
			}
			if s.SeenCount() != before {
				t.Errorf("the upstream was called")
			}
		})
	}
	if !strings.Contains(s.Logs.String(), "reason=iss_mismatch") {
		t.Errorf("the log does not say why")
	}
}

func setQuery(u, k, v string) string {
	pu, _ := url.Parse(u)
	q := pu.Query()
	if v == "" {
		q.Del(k)
	} else {
		q.Set(k, v)
	}
	pu.RawQuery = q.Encode()
	return pu.String()
}

func TestCallbackReplayRefused(t *testing.T) {
	s := newStand(t, nil, nil)
	c := s.Browser()
	cb := callbackURL(s, c)
	resp, _ := do(t, noRedirect(c), mustReq(http.MethodGet, cb))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("first callback: %d", resp.StatusCode)
	}
	// Replayed by the same browser (its login cookie is gone) and by an
	// attacker who kept the login cookie.
	resp, _ = do(t, noRedirect(s.Browser()), mustReq(http.MethodGet, cb))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("replay in a fresh browser: %d", resp.StatusCode)
	}
	resp, _ = do(t, noRedirect(c), mustReq(http.MethodGet, cb))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("replay in the same browser: %d", resp.StatusCode)
	}
}

func TestCallbackProviderError(t *testing.T) {
	s := newStand(t, nil, nil)
	for _, tc := range []struct{ code, shown string }{
		{"access_denied", "access_denied"},
		{"<script>alert(1)</script>", "unknown_error"},
	} {
		c := s.Browser()
		cb := setQuery(setQuery(callbackURL(s, c), "code", ""), "error", tc.code)
		cb = setQuery(cb, "error_description", "secret detail from the IdP")
		req := mustReq(http.MethodGet, cb)
		req.Header.Set("Accept", "text/html")
		resp, body := do(t, noRedirect(c), req)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, tc.shown) || strings.Contains(body, "secret detail") || strings.Contains(body, "<script>") {
			t.Errorf("error %q: %d %s", tc.code, resp.StatusCode, body)
		}
	}
}

func TestUnauthenticatedRequests(t *testing.T) {
	s := newStand(t, nil, nil)
	tests := []struct {
		name     string
		method   string
		headers  map[string]string
		redirect bool
	}{
		{"page load", "GET", map[string]string{"Accept": "text/html,*/*", "Sec-Fetch-Mode": "navigate"}, true},
		{"page load, old browser", "GET", map[string]string{"Accept": "text/html"}, true},
		{"HEAD page", "HEAD", map[string]string{"Accept": "text/html"}, true},
		{"navigate without Accept", "GET", map[string]string{"Sec-Fetch-Mode": "navigate"}, true},
		{"fetch asking for HTML", "GET", map[string]string{"Accept": "text/html", "Sec-Fetch-Mode": "cors"}, false},
		{"fetch JSON", "GET", map[string]string{"Accept": "application/json", "Sec-Fetch-Mode": "cors"}, false},
		{"Connect POST", "POST", map[string]string{"Content-Type": "application/json", "Connect-Protocol-Version": "1"}, false},
		{"gRPC-web POST", "POST", map[string]string{"Content-Type": "application/grpc-web+proto", "Accept": "*/*"}, false},
		{"form POST navigation", "POST", map[string]string{"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}, false},
		{"curl", "GET", map[string]string{"Accept": "*/*"}, false},
		{"no headers", "GET", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := mustReq(tt.method, s.URL+"/api/v1/memos?x=1")
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			resp, body := do(t, noRedirect(http.DefaultClient), req)
			if tt.redirect {
				loc, _ := url.Parse(resp.Header.Get("Location"))
				if resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(resp.Header.Get("Location"), s.OP.Issuer()+"/authorize?") {
					t.Fatalf("want a redirect to the OP, got %d %q", resp.StatusCode, resp.Header.Get("Location"))
				}
				return
			}
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Location") != "" {
				t.Fatalf("want 401 without redirect, got %d %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			if tt.method != "HEAD" && !strings.Contains(body, `"sign_in_url":"`+s.URL+`/oauth2/start"`) {
				t.Errorf("401 body: %s", body)
			}
		})
	}
	if n := s.SeenCount(); n != 0 {
		t.Errorf("the upstream received %d unauthenticated requests", n)
	}
}

func TestInvalidSessionCookieIsNoSession(t *testing.T) {
	s := newStand(t, nil, nil)
	for _, value := range []string{"garbage", "", strings.Repeat("A", 3000), "MTc5|bad|mac"} {
		req := mustReq(http.MethodGet, s.URL+"/api")
		req.AddCookie(&http.Cookie{Name: "oidc_proxy", Value: value})
		resp, _ := do(t, noRedirect(http.DefaultClient), req)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("cookie %.20q: %d", value, resp.StatusCode)
		}
		if value != "" && !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "oidc_proxy=; Path=/; Max-Age=0") {
			t.Errorf("cookie %.20q was not cleared: %q", value, resp.Header.Values("Set-Cookie"))
		}
	}
	// A real cookie, altered by one character, is refused too.
	c := s.SignIn("/")
	ck := sessionCookies(c, s.URL)[0]
	b := []byte(ck.Value)
	b[len(b)/2] ^= 1
	req := mustReq(http.MethodGet, s.URL+"/api")
	req.AddCookie(&http.Cookie{Name: ck.Name, Value: string(b)})
	if resp, _ := do(t, noRedirect(http.DefaultClient), req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("tampered cookie: %d", resp.StatusCode)
	}
}

func TestManyGroupsChunkedCookie(t *testing.T) {
	s := newStand(t, nil, nil)
	for i := range 500 {
		s.Alice.Groups = append(s.Alice.Groups, "group-with-a-longish-name-"+strings.Repeat("x", i%7)+string(rune('a'+i%26)))
	}
	c := s.SignIn("/")
	if n := len(sessionCookies(c, s.URL)); n < 2 {
		t.Fatalf("expected a chunked session cookie, got %d chunk(s)", n)
	}
	for _, ck := range sessionCookies(c, s.URL) {
		if len(ck.Name)+len(ck.Value) > 4000 {
			t.Errorf("chunk %s is %d bytes", ck.Name, len(ck.Value))
		}
	}
	do(t, c, mustReq(http.MethodGet, s.URL+"/x"))
	if got := s.LastSeen().Header.Get("Remote-Groups"); strings.Count(got, ",") != len(s.Alice.Groups)-1 {
		t.Errorf("Remote-Groups has %d entries, want %d", strings.Count(got, ",")+1, len(s.Alice.Groups))
	}
	if ck := s.LastSeen().Header.Get("Cookie"); ck != "" {
		t.Errorf("proxy cookies reached the upstream: %.80s", ck)
	}
	if !strings.Contains(s.Logs.String(), "the session cookie is large") {
		t.Errorf("no warning about the cookie's size")
	}
}

// TestIdentityTooLargeForCookies: an identity past 10 chunks (three
// claims of 15 KB mapped to headers) fails the sign-in with the cookie
// store, with a clear page and a log line that names the Redis store; the
// Redis store takes it.
func TestIdentityTooLargeForCookies(t *testing.T) {
	big := func(c *cfg) {
		c.Headers = map[string]string{"Remote-User": "preferred_username", "X-Big-1": "big1", "X-Big-2": "big2", "X-Big-3": "big3"}
	}
	grow := func(s *stand) {
		s.Alice.ExtraClaims = map[string]any{}
		for i := 1; i <= 3; i++ {
			s.Alice.ExtraClaims[fmt.Sprintf("big%d", i)] = strings.Repeat(fmt.Sprintf("part-%d,", i), 15000/7)
		}
	}
	s := newStand(t, big, nil)
	grow(s)
	c := s.Browser()
	resp, _ := navigate(t, c, s.URL+"/")
	resp, body := login(t, c, resp, "alice", alicePassword)
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "too large to keep in a browser cookie") {
		t.Errorf("sign-in with 45 KB of claims: %d %.200s", resp.StatusCode, body)
	}
	if !strings.Contains(s.Logs.String(), "use session.store: redis") {
		t.Errorf("the log does not name the Redis store")
	}
	if len(sessionCookies(c, s.URL)) != 0 {
		t.Errorf("a partial session cookie was left: %d", len(sessionCookies(c, s.URL)))
	}

	rs := startRedis(t)
	s = newStand(t, func(c *cfg) { big(c); useRedis(rs)(c) }, nil)
	grow(s)
	c = s.SignIn("/")
	do(t, c, mustReq(http.MethodGet, s.URL+"/x"))
	if got := s.LastSeen().Header.Get("X-Big-3"); len(got) < 14000 {
		t.Errorf("with Redis, X-Big-3 is %d bytes", len(got))
	}
}
