package proxy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
)

func TestClientAuthMethods(t *testing.T) {
	tests := []struct {
		proxy, op string
		ok        bool
	}{
		{"client_secret_post", "client_secret_post", true},
		{"client_secret_basic", "client_secret_basic", true},
		{"client_secret_basic", "client_secret_post", false},
		{"client_secret_post", "client_secret_basic", false},
	}
	for _, tt := range tests {
		t.Run(tt.proxy+" to "+tt.op, func(t *testing.T) {
			s := newStand(t, func(c *cfg) { c.OIDC.ClientAuthMethod = tt.proxy }, func(o *opCfg) { o.ClientAuthMethod = tt.op })
			c := s.Browser()
			resp, _ := navigate(t, c, s.URL+"/")
			resp, body := login(t, c, resp, "alice", alicePassword)
			if got := resp.StatusCode == 200 && strings.Contains(body, "hello alice"); got != tt.ok {
				t.Fatalf("signed in: %v, want %v (%d %s)", got, tt.ok, resp.StatusCode, body)
			}
			// Never a second attempt with another method: Authelia counts
			// every refusal against the rate limit of all users.
			if n := s.OP.TokenRequests.Load(); n != 1 {
				t.Errorf("token requests = %d, want 1", n)
			}
			if !tt.ok && !strings.Contains(s.Logs.String(), "reason=token_exchange") {
				t.Errorf("the log does not say why")
			}
		})
	}
}

func TestSessionExpires(t *testing.T) {
	s := newStand(t, func(c *cfg) { c.Session.Lifetime = time.Hour }, nil)
	c := s.SignIn("/")
	s.Skew.Store(int64(59 * time.Minute))
	if resp, _ := do(t, c, mustReq(http.MethodGet, s.URL+"/api")); resp.StatusCode != 200 {
		t.Fatalf("before expiry: %d", resp.StatusCode)
	}
	s.Skew.Store(int64(61 * time.Minute))
	resp, _ := do(t, c, mustReq(http.MethodGet, s.URL+"/api"))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after expiry: %d", resp.StatusCode)
	}
	if !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "oidc_proxy=; Path=/; Max-Age=0") {
		t.Errorf("expired cookie not cleared: %q", resp.Header.Values("Set-Cookie"))
	}
}

func TestHTTPSExternalURLCookies(t *testing.T) {
	s := newStand(t, func(c *cfg) { c.ExternalURL = "https://memos.example.com" }, nil)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/notes", nil)
	req.Header.Set("Accept", "text/html")
	s.Proxy.ServeHTTP(rec, req)
	ck := rec.Header().Get("Set-Cookie")
	if !strings.HasPrefix(ck, "__Host-oidc_proxy_login_") || !strings.Contains(ck, "; Secure") || !strings.Contains(ck, "HttpOnly") ||
		!strings.Contains(ck, "SameSite=Lax") || !strings.Contains(ck, "Path=/") || strings.Contains(ck, "Domain") {
		t.Errorf("login cookie: %s", ck)
	}
	if loc := rec.Header().Get("Location"); !strings.Contains(loc, "redirect_uri=https%3A%2F%2Fmemos.example.com%2Foauth2%2Fcallback") {
		t.Errorf("redirect_uri in %s", loc)
	}
}

func TestPreserveHostOff(t *testing.T) {
	off := false
	s := newStand(t, func(c *cfg) { c.PreserveHost = &off }, nil)
	c := s.SignIn("/")
	do(t, c, mustReq(http.MethodGet, s.URL+"/x"))
	if got, want := s.LastSeen().Host, strings.TrimPrefix(s.Upstream.URL, "http://"); got != want {
		t.Errorf("Host = %q, want the upstream's %q", got, want)
	}
	if got := s.LastSeen().Header.Get("X-Forwarded-Host"); got != strings.TrimPrefix(s.URL, "http://") {
		t.Errorf("X-Forwarded-Host = %q", got)
	}
}

func TestUnknownProxyPathIs404(t *testing.T) {
	s := newStand(t, nil, nil)
	c := s.SignIn("/")
	before := s.SeenCount()
	for _, r := range []struct{ method, path string }{
		{"GET", "/oauth2/nope"}, {"GET", "/oauth2/admin/nope"}, {"GET", "/oauth2/sessions/end"}, {"GET", "/oauth2/start/extra"}, {"DELETE", "/oauth2/sign_out"}, {"POST", "/oauth2/callback"},
	} {
		resp, _ := do(t, c, mustReq(r.method, s.URL+r.path))
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: %d", r.method, r.path, resp.StatusCode)
		}
	}
	if s.SeenCount() != before {
		t.Errorf("a path under /oauth2/ reached the upstream")
	}
}

func TestForwardedHeadersTrust(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprint("trusted=", trusted), func(t *testing.T) {
			s := newStand(t, func(c *cfg) {
				if trusted {
					c.TrustedProxies = []string{"127.0.0.0/8"}
				}
			}, nil)
			c := s.SignIn("/")
			addr := strings.TrimPrefix(s.URL, "http://")
			rawRequest(t, addr, "GET /x HTTP/1.1\r\nHost: "+addr+"\r\nCookie: "+cookieHeader(c, s.URL)+
				"\r\nX-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Host: front.example.com\r\nX-Forwarded-Proto: gopher\r\nConnection: close\r\n\r\n")
			h := s.LastSeen().Header
			wantFor, wantHost := "127.0.0.1", addr
			if trusted {
				wantFor, wantHost = "198.51.100.7, 127.0.0.1", "front.example.com"
			}
			if got := h.Get("X-Forwarded-For"); got != wantFor {
				t.Errorf("X-Forwarded-For = %q, want %q", got, wantFor)
			}
			if got := h.Get("X-Forwarded-Host"); got != wantHost {
				t.Errorf("X-Forwarded-Host = %q, want %q", got, wantHost)
			}
			if got := h.Get("X-Forwarded-Proto"); got != "http" {
				t.Errorf("X-Forwarded-Proto = %q: it comes from external_url", got)
			}
		})
	}
}

func TestAccessLog(t *testing.T) {
	s := newStand(t, nil, nil)
	c := s.SignIn("/")
	do(t, c, mustReq(http.MethodGet, s.URL+"/memos/7?token=secret-in-query"))
	do(t, http.DefaultClient, mustReq(http.MethodGet, s.URL+"/api/v1/memos"))
	logs := s.Logs.String()
	for _, want := range []string{
		`msg=request method=GET path=/memos/7 status=200 bytes=`,
		`user=alice upstream=`,
		`msg=request method=GET path=/api/v1/memos status=401`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("access log lacks %q", want)
		}
	}
	if strings.Contains(logs, "secret-in-query") {
		t.Errorf("the query string reached the log")
	}

	off := false
	quiet := newStand(t, func(c *cfg) { c.Log.Access = &off }, nil)
	quiet.SignIn("/")
	if strings.Contains(quiet.Logs.String(), "msg=request") {
		t.Errorf("log.access: false still logs requests")
	}
}

func TestReadyzAsksTheUpstream(t *testing.T) {
	s := newStand(t, func(c *cfg) { c.UpstreamReadyPath = "/healthz" }, nil)
	readyz := func() int {
		resp, _ := do(t, http.DefaultClient, mustReq(http.MethodGet, s.URL+"/oauth2/readyz"))
		return resp.StatusCode
	}
	if got := readyz(); got != 200 || s.LastSeen().URL.Path != "/healthz" {
		t.Fatalf("readyz with a healthy upstream: %d", got)
	}
	var down atomic.Bool
	down.Store(true)
	s.Handle(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	if got := readyz(); got != 200 {
		t.Errorf("readyz within the 2 s the last answer is kept: %d", got)
	}
	s.Skew.Store(int64(3 * time.Second))
	if got := readyz(); got != http.StatusServiceUnavailable {
		t.Errorf("readyz with the upstream answering 503: %d", got)
	}
	down.Store(false)
	s.Skew.Store(int64(6 * time.Second))
	if got := readyz(); got != 200 {
		t.Errorf("readyz after the upstream recovered: %d", got)
	}
	s.Upstream.Close()
	s.Skew.Store(int64(9 * time.Second))
	if got := readyz(); got != http.StatusServiceUnavailable {
		t.Errorf("readyz with the upstream gone: %d", got)
	}
}

// TestSecretRotation: a proxy with [new, old] opens cookies made under the
// old secret and makes new ones under the new; a proxy with only the new
// secret no longer opens the old cookies.
func TestSecretRotation(t *testing.T) {
	const newSecret = "the-new-session-secret-0123456789abcdef-0123"
	old := newStand(t, nil, nil)
	oldCookie := cookieHeader(old.SignIn("/"), old.URL)
	rotated := newStand(t, func(c *cfg) { c.Session.Secret = config.Secrets{newSecret, sessionSecret} }, nil)
	dropped := newStand(t, func(c *cfg) { c.Session.Secret = config.Secrets{newSecret} }, nil)
	userinfo := func(s *stand, cookie string) int {
		req := mustReq(http.MethodGet, s.URL+"/oauth2/userinfo")
		req.Header.Set("Cookie", cookie)
		resp, _ := do(t, http.DefaultClient, req)
		return resp.StatusCode
	}
	if got := userinfo(rotated, oldCookie); got != 200 {
		t.Errorf("old cookie at the rotated proxy: %d", got)
	}
	if got := userinfo(dropped, oldCookie); got != http.StatusUnauthorized {
		t.Errorf("old cookie after the old secret was dropped: %d", got)
	}
	newCookie := cookieHeader(rotated.SignIn("/"), rotated.URL)
	if got := userinfo(dropped, newCookie); got != 200 {
		t.Errorf("new cookie at a proxy with only the new secret: %d", got)
	}
	if got := userinfo(old, newCookie); got != http.StatusUnauthorized {
		t.Errorf("new cookie at a proxy with only the old secret: %d", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	s := newStand(t, func(c *cfg) {
		c.Session.Lifetime = time.Hour
		c.Session.IdleTimeout = 10 * time.Minute
	}, nil)
	c := s.SignIn("/")
	at := func(d time.Duration) (int, bool) {
		s.Skew.Store(int64(d))
		resp, _ := do(t, c, mustReq(http.MethodGet, s.URL+"/api"))
		renewed := false
		for _, ck := range resp.Header.Values("Set-Cookie") {
			if strings.HasPrefix(ck, "oidc_proxy=") && !strings.Contains(ck, "Max-Age=0") {
				renewed = true
			}
		}
		return resp.StatusCode, renewed
	}
	if code, renewed := at(1 * time.Minute); code != 200 || renewed {
		t.Errorf("1 min in: %d, renewed %v (too early to renew)", code, renewed)
	}
	if code, renewed := at(3 * time.Minute); code != 200 || !renewed {
		t.Errorf("3 min in: %d, renewed %v", code, renewed)
	}
	// Active every 8 minutes: past 10 minutes after sign-in, still in.
	for _, m := range []time.Duration{11, 19, 27, 35, 43, 51, 59} {
		if code, _ := at(m * time.Minute); code != 200 {
			t.Fatalf("%d min in, active: %d", m, code)
		}
	}
	// The absolute lifetime holds however active the user is.
	if code, _ := at(61 * time.Minute); code != http.StatusUnauthorized {
		t.Errorf("61 min in: %d, want the session over", code)
	}

	s.Skew.Store(0)
	idle := s.SignIn("/")
	s.Skew.Store(int64(11 * time.Minute)) // 11 minutes without a request
	resp, _ := do(t, idle, mustReq(http.MethodGet, s.URL+"/api"))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after 11 idle minutes: %d", resp.StatusCode)
	}
}
