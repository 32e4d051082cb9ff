package proxy_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// TestForwardAuthRoutes: the nginx and Caddy examples in front of two
// applications on two hosts, one oidc-proxy with a route each: one
// sign-in, each route's rules.
func TestForwardAuthRoutes(t *testing.T) {
	t.Run("nginx", func(t *testing.T) {
		bin := need(t, "nginx", "/usr/sbin/nginx")
		frontRoutes(t, "nginx.conf", bin, func(dir, conf string) []string { return []string{"-p", dir, "-c", conf} })
	})
	t.Run("caddy", func(t *testing.T) {
		bin := need(t, "caddy")
		frontRoutes(t, "Caddyfile", bin, func(dir, conf string) []string {
			return []string{"run", "--config", conf, "--adapter", "caddyfile"}
		})
	})
}

func frontRoutes(t *testing.T, example, bin string, args func(dir, conf string) []string) {
	frontAddr := freePort(t)
	_, port, _ := net.SplitHostPort(frontAddr)
	one, two := newApp(t, "one"), newApp(t, "two")
	opLn, proxyLn := listen(t), listen(t)
	issuer := "http://" + opLn.Addr().String()
	rs := &routesStand{t: t, logs: &syncBuffer{}, port: port, extras: map[string]string{}}
	op, err := proxytest.NewOP(issuer, proxytest.OPConfig{ClientID: "memos", ClientSecret: clientSecret,
		RedirectURIs: []string{rs.url("one.localhost", "/oauth2/callback")}, Users: []*proxytest.OPUser{
			{Username: "alice", Password: alicePassword, Name: "Alice", Email: "alice@example.com", Groups: []string{"admins"}},
			{Username: "bob", Password: bobPassword, Name: "Bob", Email: "bob@example.com", Groups: []string{"users"}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	rs.op = op
	serveOn(t, opLn, op.Handler())
	rs.yaml = fmt.Sprintf(`
external_url: http://one.localhost:%s
trusted_proxies: [127.0.0.1]
oidc: {issuer: %q, client_id: memos, client_secret: %q}
session: {secret: %q}
routes:
  - {name: one, host: one.localhost, upstream: %q}
  - {name: two, host: two.localhost, upstream: %q, access: {allowed_groups: [admins]}}
`, port, issuer, clientSecret, sessionSecret, one.srv.URL, two.srv.URL)
	p := rs.serve(proxyLn)
	eventually(t, "the proxy never became ready", p.Ready)
	startFrontWith(t, example, frontAddr, proxyLn.Addr().String(), strings.TrimPrefix(one.srv.URL, "http://"),
		"two.localhost", strings.TrimPrefix(two.srv.URL, "http://"), args, bin)
	alice := rs.browser()
	resp, body := rs.signIn(alice, "one.localhost", "/n?x=1", "alice", alicePassword)
	if resp.StatusCode != 200 || !strings.Contains(body, `one for "alice"`) || resp.Request.URL.String() != rs.url("one.localhost", "/n?x=1") {
		t.Fatalf("sign-in at one: %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	resp, body = navigate(t, alice, rs.url("two.localhost", "/t"))
	if resp.StatusCode != 200 || onLoginForm(resp) || !strings.Contains(body, `two for "alice"`) {
		t.Fatalf("two after one: %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	// Forged identity headers never reach an application.
	req, _ := http.NewRequest(http.MethodGet, rs.url("two.localhost", "/api"), nil)
	req.Header.Set("Remote-User", "admin")
	if resp, _ := do(t, alice, req); resp.StatusCode != 200 || two.Last().Header.Get("Remote-User") != "alice" {
		t.Errorf("two's Remote-User: %d %q", resp.StatusCode, two.Last().Header.Values("Remote-User"))
	}
	bob := rs.browser()
	resp, body = rs.signIn(bob, "one.localhost", "/", "bob", bobPassword)
	if resp.StatusCode != 200 || !strings.Contains(body, `one for "bob"`) {
		t.Fatalf("bob at one: %d %s", resp.StatusCode, body)
	}
	n := two.Count()
	resp, _ = navigate(t, bob, rs.url("two.localhost", "/t"))
	if resp.StatusCode != http.StatusForbidden || two.Count() != n {
		t.Errorf("bob at two: %d, reached: %v", resp.StatusCode, two.Count() != n)
	}
	// forward-auth for a host no route serves: 404, never 2xx.
	req = httptest.NewRequest(http.MethodGet, "/oauth2/auth", nil)
	req.RemoteAddr = "127.0.0.1:1"
	req.Header.Set("X-Forwarded-Host", "three.localhost")
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Errorf("forward-auth for an unknown host: %d", rec.Code)
	}
}
