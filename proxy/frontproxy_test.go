package proxy_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
)

// need finds a program, or skips the test; under CI=true a missing program
// fails it instead.
func need(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if path, err := exec.LookPath(n); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed, and CI=true: .ci/run must install it", names[0])
	}
	t.Skipf("%s is not installed", names[0])
	return ""
}

// frontStand is a stand whose users come through a real front proxy at
// frontAddr, which asks oidc-proxy's /oauth2/auth.
func frontStand(t *testing.T, frontAddr string, edits ...func(*config.Config)) *stand {
	front := "http://" + frontAddr
	return newStand(t, func(c *config.Config) {
		c.ExternalURL = front
		c.TrustedProxies = []string{"127.0.0.1"}
		for _, e := range edits {
			e(c)
		}
	}, func(o *opCfg) { o.RedirectURIs = []string{front + "/oauth2/callback"} })
}

// startFront fills in an example configuration and runs the front proxy;
// its second application (APP2_HOST) is the stand's upstream too.
func startFront(t *testing.T, s *stand, example, frontAddr string, args func(dir, conf string) []string, bin string) {
	t.Helper()
	upstream := strings.TrimPrefix(s.Upstream.URL, "http://")
	startFrontWith(t, example, frontAddr, strings.TrimPrefix(s.URL, "http://"), upstream, "app2.invalid", upstream, args, bin)
}

// startFrontWith runs the front proxy of an example in front of
// oidc-proxy at proxyAddr, with the first application at upstream and the
// second, on host app2, at upstream2.
func startFrontWith(t *testing.T, example, frontAddr, proxyAddr, upstream, app2, upstream2 string, args func(dir, conf string) []string, bin string) {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("..", "examples", "forward-auth", example))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bind, port, _ := net.SplitHostPort(frontAddr)
	conf := strings.NewReplacer("{{PREFIX}}", dir, "{{LISTEN}}", frontAddr, "{{BIND}}", bind, "{{PORT}}", port,
		"{{OIDC_PROXY}}", proxyAddr, "{{UPSTREAM}}", upstream,
		"{{APP2_HOST}}", app2, "{{UPSTREAM2}}", upstream2).Replace(string(tmpl))
	path := filepath.Join(dir, example)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args(dir, path)...)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", bin, out.String())
			if b, err := os.ReadFile(filepath.Join(dir, "error.log")); err == nil {
				t.Logf("error.log:\n%s", b)
			}
		}
	})
	for i := 0; ; i++ {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + frontAddr + "/oauth2/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if i > 200 {
			t.Fatalf("%s did not start: %v\n%s", bin, err, out.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// checkForwardAuth signs in through the front proxy and checks what the
// upstream receives.
func checkForwardAuth(t *testing.T, s *stand, frontAddr string) {
	front := "http://" + frontAddr
	// Without a session nothing reaches the upstream, however it is asked.
	for _, spoof := range []string{"", "admin"} {
		req := mustReq(http.MethodGet, front+"/memos/1")
		req.Header.Set("Remote-User", spoof)
		resp, _ := do(t, noRedirect(http.DefaultClient), req)
		if resp.StatusCode < 300 || s.SeenCount() != 0 {
			t.Fatalf("unauthenticated request: %d, upstream reached: %v", resp.StatusCode, s.SeenCount() != 0)
		}
	}
	// A page load goes to sign-in and comes back to the same page.
	c := s.Browser()
	resp, _ := navigate(t, c, front+"/memos/1?tab=all")
	if resp.Request.URL.Path != "/login/username" {
		t.Fatalf("page load was not sent to sign in: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	resp, body := login(t, c, resp, "alice", alicePassword)
	if resp.StatusCode != 200 || !strings.Contains(body, "hello alice") || resp.Request.URL.String() != front+"/memos/1?tab=all" {
		t.Fatalf("after sign-in: %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	// Signed in, with forged identity headers: the upstream sees alice.
	req := mustReq(http.MethodGet, front+"/api/v1/memos")
	req.Header.Set("Remote-User", "admin")
	req.Header.Set("Remote-Groups", "admins,root")
	do(t, c, req)
	h := s.LastSeen().Header
	if got := h.Values("Remote-User"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("upstream Remote-User = %q", got)
	}
	if got := h.Values("Remote-Groups"); len(got) != 1 || got[0] != "admins,users" {
		t.Errorf("upstream Remote-Groups = %q", got)
	}
	if got := h.Get("Remote-Email"); got != "alice@example.com" {
		t.Errorf("upstream Remote-Email = %q", got)
	}
}

func TestForwardAuthNginx(t *testing.T) {
	bin := need(t, "nginx", "/usr/sbin/nginx")
	frontAddr := freePort(t)
	s := frontStand(t, frontAddr, func(c *config.Config) {
		c.Session.Lifetime = time.Hour
		c.Session.IdleTimeout = 10 * time.Minute
	})
	startFront(t, s, "nginx.conf", frontAddr, func(dir, conf string) []string {
		return []string{"-p", dir, "-c", conf}
	}, bin)
	checkForwardAuth(t, s, frontAddr)

	// A renewed session cookie (here for the idle timeout) reaches the
	// browser through nginx.
	c := s.Browser()
	resp, _ := navigate(t, c, "http://"+frontAddr+"/")
	login(t, c, resp, "alice", alicePassword)
	s.Skew.Store(int64(3 * time.Minute))
	resp, _ = do(t, c, mustReq(http.MethodGet, "http://"+frontAddr+"/notes"))
	if resp.StatusCode != 200 || !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "oidc_proxy=") {
		t.Errorf("renewed cookie through nginx: %d %q", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
}

func TestForwardAuthCaddy(t *testing.T) {
	bin := need(t, "caddy")
	frontAddr := freePort(t)
	s := frontStand(t, frontAddr)
	startFront(t, s, "Caddyfile", frontAddr, func(dir, conf string) []string {
		return []string{"run", "--config", conf, "--adapter", "caddyfile"}
	}, bin)
	checkForwardAuth(t, s, frontAddr)
}

func TestForwardAuthEndpoint(t *testing.T) {
	s := newStand(t, func(c *config.Config) {
		c.TrustedProxies = []string{"10.0.0.1"}
		c.PublicPaths = []string{"/explore"}
	}, nil)
	c := s.SignIn("/")
	// Signed in: 202 and the identity headers.
	req := httptest.NewRequest(http.MethodGet, "/oauth2/auth", nil)
	req.Header.Set("Cookie", cookieHeader(c, s.URL))
	rec := httptest.NewRecorder()
	s.Proxy.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted || rec.Header().Get("Remote-User") != "alice" || rec.Header().Get("Remote-Groups") != "admins,users" {
		t.Errorf("signed in: %d %v", rec.Code, rec.Header())
	}
	tests := []struct {
		name, query, peer, accept, uri string
		status                         int
		location                       string
	}{
		{"public path from a trusted proxy", "", "10.0.0.1:1", "text/html", "/explore?x=1", 202, ""},
		{"public path from an untrusted peer", "", "10.0.0.2:1", "text/html", "/explore", 401, ""},
		{"public path, unclean", "", "10.0.0.1:1", "text/html", "/explore/../private", 401, ""},
		{"public path, encoded slash", "", "10.0.0.1:1", "text/html", "/explore%2F..%2Fprivate", 401, ""},
		{"nginx mode", "", "10.0.0.1:1", "text/html", "/memos/1", 401, ""},
		{"redirect mode, page load from a trusted proxy", "?redirect=true", "10.0.0.1:1", "text/html", "/memos/1", 302, "/memos/1"},
		{"redirect mode, API call", "?redirect=true", "10.0.0.1:1", "application/json", "/memos/1", 401, ""},
		{"redirect mode, untrusted peer", "?redirect=true", "10.0.0.2:1", "text/html", "/memos/1", 302, "/"},
		{"redirect mode, hostile original URI", "?redirect=true", "10.0.0.1:1", "text/html", "//evil.com/x", 302, "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/oauth2/auth"+tt.query, nil)
			req.RemoteAddr = tt.peer
			req.Header.Set("Accept", tt.accept)
			req.Header.Set("X-Forwarded-Uri", tt.uri)
			req.Header.Set("X-Forwarded-Method", "GET")
			rec := httptest.NewRecorder()
			s.Proxy.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if tt.status == http.StatusAccepted && rec.Header().Get("Remote-User") != "" {
				t.Errorf("a public answer carries an identity")
			}
			if tt.location == "" {
				return
			}
			// The return URL travels in the login cookie; follow the flow
			// far enough to see it: the cookie is encrypted, so check what
			// the callback returns to by completing a sign-in instead.
			if !strings.HasPrefix(rec.Header().Get("Location"), s.OP.Issuer()+"/authorize?") {
				t.Fatalf("redirect to %q", rec.Header().Get("Location"))
			}
			b := s.Browser()
			for _, ck := range rec.Result().Cookies() {
				b.Jar.SetCookies(mustURL(s.URL), []*http.Cookie{ck})
			}
			resp, _ := navigate(t, b, rec.Header().Get("Location"))
			resp, _ = login(t, b, resp, "alice", alicePassword)
			if got := resp.Request.URL.RequestURI(); got != tt.location {
				t.Errorf("returned to %q, want %q", got, tt.location)
			}
		})
	}
}

// freePort finds a loopback address for a server of another process.
func freePort(t *testing.T) string {
	ln := listen(t)
	defer ln.Close()
	return ln.Addr().String()
}
