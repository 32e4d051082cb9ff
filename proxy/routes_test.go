package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// app is an upstream that records what it receives and answers with its
// name and the identity headers it got.
type app struct {
	name string
	srv  *httptest.Server
	received
}

func newApp(t *testing.T, name string) *app {
	a := &app{name: name}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.Record(r)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>%[1]s</title><h1 id=\"app\">%[1]s for %[2]q %[3]q at %[4]s</h1>", a.name, r.Header.Get("Remote-User"), r.Header.Get("X-Webauth-User"), r.URL.Path)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// routesStand is one proxy (or replicas sharing a store) serving several
// apps on *.localhost names, the sign-in host auth.localhost, and the
// test OP. Every name is dialled at 127.0.0.1: the test clients resolve
// *.localhost to loopback as Chromium does.
type routesStand struct {
	t      *testing.T
	op     *proxytest.OP
	port   string // every host's port: the proxy's
	yaml   string
	apps   map[string]*app
	fm     *proxytest.FakeMemos
	logs   *syncBuffer
	proxy  replica
	extras map[string]string // host → another replica's address to dial
}

const routesYAML = `
listen: 127.0.0.1:%[1]s
external_url: http://auth.localhost:%[1]s
trusted_proxies: [10.9.9.9]
oidc:
  issuer: %[2]q
  client_id: memos
  client_secret: %[3]q
session:
  secret: %[4]q
%[5]s
routes:
  - name: notes
    host: notes.localhost
    upstream: %[6]q
    public_paths: ["/explore"]
    memos:
      bridge: true
      admin_token_file: %[7]q
      bridge_listen: %[8]q
  - name: grafana
    host: grafana.localhost
    upstream: %[9]q
    headers:
      X-WEBAUTH-USER: preferred_username
  - name: admin
    host: admin.localhost
    upstream: %[10]q
    access:
      allowed_groups: [admins]
  - name: apps
    host: "*.apps.localhost"
    upstream: %[11]q
  - name: tools-a
    host: tools.localhost
    path: /a
    upstream: %[12]q
  - name: tools-ab
    host: tools.localhost
    path: /a/b/
    upstream: %[13]q
`

// newRoutesStand starts the OP, the apps, fake Memos and the proxy;
// store is a session block line ("" for cookies).
func newRoutesStand(t *testing.T, store string, opEdits ...func(*proxytest.OPConfig)) *routesStand {
	t.Helper()
	return newRoutesStandYAML(t, store, nil, opEdits...)
}

// newRoutesStandYAML is newRoutesStand with edit applied to the
// configuration's text first.
func newRoutesStandYAML(t *testing.T, store string, edit func(string) string, opEdits ...func(*proxytest.OPConfig)) *routesStand {
	t.Helper()
	rs := &routesStand{t: t, logs: &syncBuffer{}, apps: map[string]*app{}, extras: map[string]string{}}
	proxyLn, opLn, bridgeLn := listen(t), listen(t), listen(t)
	_, rs.port, _ = net.SplitHostPort(proxyLn.Addr().String())
	issuer := "http://" + opLn.Addr().String()
	users := []*proxytest.OPUser{
		{Username: "alice", Password: alicePassword, Name: "Alice Liddell", Email: "alice@example.com", Groups: []string{"admins", "users"}},
		{Username: "bob", Password: bobPassword, Name: "Bob", Email: "bob@example.com", Groups: []string{"users"}},
	}
	opCfg := proxytest.OPConfig{ClientID: "memos", ClientSecret: clientSecret,
		RedirectURIs: []string{rs.url("auth.localhost", "/oauth2/callback")}, Users: users}
	for _, e := range opEdits {
		e(&opCfg)
	}
	op, err := proxytest.NewOP(issuer, opCfg)
	if err != nil {
		t.Fatal(err)
	}
	rs.op = op
	serveOn(t, opLn, op.Handler())
	for _, n := range []string{"grafana", "admin", "apps", "tools-a", "tools-ab"} {
		rs.apps[n] = newApp(t, n)
	}
	rs.fm = proxytest.NewFakeMemos()
	memosSrv := httptest.NewServer(rs.fm)
	t.Cleanup(memosSrv.Close)
	tokenFile := filepath.Join(t.TempDir(), "memos-admin-token")
	os.WriteFile(tokenFile, []byte(proxytest.MemosAdminPAT+"\n"), 0o600)
	rs.yaml = fmt.Sprintf(routesYAML, rs.port, issuer, clientSecret, sessionSecret, store,
		memosSrv.URL, tokenFile, bridgeLn.Addr().String(),
		rs.apps["grafana"].srv.URL, rs.apps["admin"].srv.URL, rs.apps["apps"].srv.URL,
		rs.apps["tools-a"].srv.URL, rs.apps["tools-ab"].srv.URL)
	if edit != nil {
		rs.yaml = edit(rs.yaml)
	}
	rs.proxy = rs.serve(proxyLn)
	serveOn(t, bridgeLn, rs.proxy.BridgeHandler())
	for deadline := time.Now().Add(10 * time.Second); !rs.proxy.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("proxy never became ready")
		}
	}
	eventually(t, "the bridge did not register itself in Memos", func() bool {
		return strings.Contains(rs.logs.String(), "registered as Memos's identity provider")
	})
	return rs
}

// serve builds a proxy of the stand's configuration and serves it on ln.
func (rs *routesStand) serve(ln net.Listener) replica {
	t := rs.t
	cfg, err := config.Parse("routes.yaml", []byte(rs.yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(rs.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy log:\n%s", rs.logs.String())
		}
	})
	return startReplica(t, cfg, proxy.Options{Logger: log}, ln)
}

func (rs *routesStand) url(host, path string) string {
	return "http://" + host + ":" + rs.port + path
}

// browser is a cookie-keeping client that dials every *.localhost name at
// 127.0.0.1 (or at the replica the stand assigns the host to).
func (rs *routesStand) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	var d net.Dialer
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, _ := net.SplitHostPort(addr)
		if to, ok := rs.extras[host]; ok {
			return d.DialContext(ctx, network, to)
		}
		if strings.HasSuffix(strings.ToLower(host), ".localhost") {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return d.DialContext(ctx, network, addr)
	}}
	return &http.Client{Jar: jar, Transport: tr, Timeout: 20 * time.Second}
}

// signIn signs c in as user through a page of host and checks it lands.
func (rs *routesStand) signIn(c *http.Client, host, path, user, password string) (*http.Response, string) {
	rs.t.Helper()
	resp, _ := navigate(rs.t, c, rs.url(host, path))
	return login(rs.t, c, resp, user, password)
}

// onLoginForm reports whether resp ended at the OP's login form.
func onLoginForm(resp *http.Response) bool {
	return resp.Request.URL.Query().Get("authRequestID") != ""
}

func TestRoutesServeByHostAndPath(t *testing.T) {
	rs := newRoutesStand(t, "")
	c := rs.browser()
	resp, body := rs.signIn(c, "grafana.localhost", "/d/1", "alice", alicePassword)
	if resp.StatusCode != 200 || !strings.Contains(body, `grafana for "" "alice" at /d/1`) || resp.Request.URL.Host != "grafana.localhost:"+rs.port {
		t.Fatalf("sign-in at grafana ended at %s with %d: %s", resp.Request.URL, resp.StatusCode, body)
	}
	for _, tc := range []struct{ host, path, want string }{
		{"x.apps.localhost", "/", `apps for "alice" "" at /`},
		{"Y.Apps.Localhost", "/p", `apps for "alice" "" at /p`},
		{"tools.localhost", "/a", `tools-a for "alice" "" at /a`},
		{"tools.localhost", "/a/x", `tools-a for "alice" "" at /a/x`},
		{"tools.localhost", "/a/b", `tools-ab for "alice" "" at /a/b`},
		{"tools.localhost", "/a/b/c", `tools-ab for "alice" "" at /a/b/c`},
		{"tools.localhost", "/a/bc", `tools-a for "alice" "" at /a/bc`},
		{"admin.localhost", "/", `admin for "alice" "" at /`},
	} {
		resp, body := navigate(t, c, rs.url(tc.host, tc.path))
		if resp.StatusCode != 200 || !strings.Contains(body, tc.want) || onLoginForm(resp) {
			t.Errorf("%s%s: %d %s (at %s)", tc.host, tc.path, resp.StatusCode, body, resp.Request.URL)
		}
	}
	// Requests no route serves: 404 and nothing forwarded.
	before := 0
	for _, a := range rs.apps {
		before += a.Count()
	}
	for _, tc := range []struct{ host, path string }{
		{"unknown.localhost", "/"},
		{"a.b.apps.localhost", "/"}, // the wildcard is one label
		{"apps.localhost", "/"},
		{"tools.localhost", "/"},
		{"tools.localhost", "/ab"},
		{"tools.localhost", "/b/../x"},
		{"127.0.0.1", "/"},
		{"[::1]", "/"},
		{"grafana.localhost.", "/"},
		{"", "/"},
	} {
		for _, html := range []bool{true, false} {
			req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+rs.port+tc.path, nil)
			req.Host = tc.host
			if tc.host != "" && !strings.HasPrefix(tc.host, "[") && !strings.HasPrefix(tc.host, "127.") {
				req.Host = tc.host + ":" + rs.port
			}
			if html {
				req.Header.Set("Accept", "text/html")
				req.Header.Set("Sec-Fetch-Mode", "navigate")
			}
			resp, body := do(t, noRedirect(c), req)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%q%s (html %v): %d %s", tc.host, tc.path, html, resp.StatusCode, body)
			}
			if html != strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
				t.Errorf("%q%s (html %v): %s", tc.host, tc.path, html, resp.Header.Get("Content-Type"))
			}
		}
	}
	after := 0
	for _, a := range rs.apps {
		after += a.Count()
	}
	if after != before {
		t.Errorf("requests for no route reached an app: %d before, %d after", before, after)
	}
	// X-Forwarded-Host counts from a trusted proxy only: from anyone else
	// the Host routes.
	req, _ := http.NewRequest(http.MethodGet, rs.url("grafana.localhost", "/h"), nil)
	req.Header.Set("X-Forwarded-Host", "admin.localhost")
	if resp, body := do(t, c, req); !strings.Contains(body, "grafana for") {
		t.Errorf("an untrusted X-Forwarded-Host changed the route: %d %s", resp.StatusCode, body)
	}
	// From a trusted front proxy, X-Forwarded-Host routes: notes's public
	// /explore passes, grafana's would need a session.
	for _, tc := range []struct {
		peer string
		want int
	}{{"10.9.9.9:1", http.StatusOK}, {"10.9.9.8:1", http.StatusUnauthorized}} {
		req := httptest.NewRequest(http.MethodGet, "/explore", nil)
		req.Host, req.RemoteAddr = "grafana.localhost", tc.peer
		req.Header.Set("X-Forwarded-Host", "notes.localhost")
		rec := httptest.NewRecorder()
		rs.proxy.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("X-Forwarded-Host from %s: %d, want %d", tc.peer, rec.Code, tc.want)
		}
	}
	// The health checks answer on any host (a probe names the pod by its
	// address).
	req, _ = http.NewRequest(http.MethodGet, "http://127.0.0.1:"+rs.port+"/oauth2/healthz", nil)
	if resp, _ := do(t, c, req); resp.StatusCode != 200 {
		t.Errorf("healthz by address: %d", resp.StatusCode)
	}
	// So do back-channel logout (a bad token: 400, not 404) and the key
	// set (none configured: 404 from the proxy's own mux, as JSON).
	req, _ = http.NewRequest(http.MethodPost, "http://127.0.0.1:"+rs.port+"/oauth2/backchannel_logout", strings.NewReader("logout_token=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, _ := do(t, c, req); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("backchannel_logout by address: %d", resp.StatusCode)
	}
	// Other endpoints of the proxy are not served on a host no route has.
	req, _ = http.NewRequest(http.MethodGet, "http://127.0.0.1:"+rs.port+"/oauth2/userinfo", nil)
	if resp, _ := do(t, c, req); resp.StatusCode != http.StatusNotFound {
		t.Errorf("userinfo by address: %d", resp.StatusCode)
	}
}

func TestRoutesOneSignInPolicyPerRoute(t *testing.T) {
	rs := newRoutesStand(t, "")
	alice := rs.browser()
	resp, body := rs.signIn(alice, "notes.localhost", "/memos/1", "alice", alicePassword)
	if resp.StatusCode != 200 || resp.Request.URL.String() != rs.url("notes.localhost", "/memos/1") {
		t.Fatalf("sign-in at notes ended at %s with %d: %s", resp.Request.URL, resp.StatusCode, body)
	}
	if user, _ := memosWhoAmI(t, alice, rs.url("notes.localhost", "")); user != "alice" {
		t.Fatalf("the bridge did not sign alice into Memos: %q", user)
	}
	// Every other route: served without the sign-in page.
	for _, host := range []string{"grafana.localhost", "admin.localhost", "q.apps.localhost"} {
		resp, body := navigate(t, alice, rs.url(host, "/"))
		if resp.StatusCode != 200 || onLoginForm(resp) || !strings.Contains(body, `"alice"`) {
			t.Errorf("%s after signing in at notes: %d at %s: %s", host, resp.StatusCode, resp.Request.URL, body)
		}
	}
	if h := rs.apps["grafana"].Last().Header; h.Get("X-Webauth-User") != "alice" || h.Get("Remote-User") != "" {
		t.Errorf("grafana's headers are its own mapping: %v", h)
	}
	if h := rs.apps["admin"].Last().Header; h.Get("Remote-User") != "alice" || h.Get("Remote-Groups") != "admins,users" {
		t.Errorf("admin's headers are the default mapping: %v", h)
	}
	// bob: not in admins. 403 at admin, served elsewhere, one session.
	bob := rs.browser()
	resp, body = rs.signIn(bob, "admin.localhost", "/", "bob", bobPassword)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "bob") {
		t.Fatalf("bob at admin: %d %s", resp.StatusCode, body)
	}
	n := rs.apps["admin"].Count()
	for range 2 {
		if resp, _ := navigate(t, bob, rs.url("admin.localhost", "/x")); resp.StatusCode != http.StatusForbidden {
			t.Errorf("bob at admin again: %d", resp.StatusCode)
		}
	}
	if rs.apps["admin"].Count() != n {
		t.Errorf("a refused request reached admin")
	}
	resp, body = navigate(t, bob, rs.url("grafana.localhost", "/"))
	if resp.StatusCode != 200 || onLoginForm(resp) || !strings.Contains(body, `"bob"`) {
		t.Errorf("bob at grafana after the 403: %d %s", resp.StatusCode, body)
	}
	// An API call for a route the user may not use: 403 JSON.
	req, _ := http.NewRequest(http.MethodGet, rs.url("admin.localhost", "/api"), nil)
	if resp, body := do(t, bob, req); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"forbidden"`) {
		t.Errorf("bob's API call at admin: %d %s", resp.StatusCode, body)
	}
	// Public paths are per route.
	anon := rs.browser()
	if resp, body := navigate(t, anon, rs.url("notes.localhost", "/explore")); resp.StatusCode != 200 || onLoginForm(resp) {
		t.Errorf("notes /explore is public there: %d %s", resp.StatusCode, body)
	}
	if resp, _ := navigate(t, anon, rs.url("grafana.localhost", "/explore")); !onLoginForm(resp) {
		t.Errorf("grafana /explore is not public: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	// Sign-out at grafana: every route asks for sign-in again, and the
	// Memos session is over.
	if live := rs.memosSessions("alice"); live == 0 {
		t.Fatal("alice has no Memos session before signing out")
	}
	resp, _ = navigate(t, alice, rs.url("grafana.localhost", "/oauth2/sign_out"))
	if resp.StatusCode != 200 {
		t.Errorf("sign-out ended with %d at %s", resp.StatusCode, resp.Request.URL)
	}
	for _, host := range []string{"notes.localhost", "grafana.localhost", "admin.localhost", "q.apps.localhost", "auth.localhost"} {
		resp, _ := navigate(t, alice, rs.url(host, "/"))
		if host == "auth.localhost" {
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("the sign-in host serves no app: %d", resp.StatusCode)
			}
			continue
		}
		if !onLoginForm(resp) {
			t.Errorf("%s after sign-out: %d at %s", host, resp.StatusCode, resp.Request.URL)
		}
	}
	if live := rs.memosSessions("alice"); live != 0 {
		t.Errorf("alice still has %d Memos sessions after signing out at grafana", live)
	}
}

func TestRoutesHandoffRefusesWhatItShould(t *testing.T) {
	rs := newRoutesStand(t, "")
	alice := rs.browser()
	rs.signIn(alice, "grafana.localhost", "/", "alice", alicePassword)
	// A fresh code for admin.localhost, caught on its way.
	code := func(c *http.Client, host string) (string, *http.Response) {
		t.Helper()
		nr := noRedirect(c)
		resp, _ := navigate(t, nr, rs.url(host, "/page"))
		for i := 0; i < 5 && resp.StatusCode == http.StatusFound; i++ {
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if loc.Path == "/oauth2/handoff" {
				return loc.Query().Get("code"), resp
			}
			resp, _ = navigate(t, nr, resp.Request.URL.ResolveReference(loc).String())
		}
		t.Fatalf("no handoff on the way to %s: %d %s", host, resp.StatusCode, resp.Header.Get("Location"))
		return "", nil
	}
	redeem := func(c *http.Client, host, code string) *http.Response {
		resp, _ := navigate(t, noRedirect(c), rs.url(host, "/oauth2/handoff?code="+url.QueryEscape(code)))
		return resp
	}
	// Made for admin, redeemed at another host: refused.
	cd, _ := code(alice, "admin.localhost")
	if resp := redeem(alice, "q.apps.localhost", cd); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a code for admin at q.apps: %d", resp.StatusCode)
	}
	// That code is spent now, even at its own host.
	if resp := redeem(alice, "admin.localhost", cd); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a spent code: %d", resp.StatusCode)
	}
	// alice's code in another browser (a login CSRF): refused, no session.
	cd, _ = code(alice, "admin.localhost")
	victim := rs.browser()
	if resp := redeem(victim, "admin.localhost", cd); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("alice's code in a victim's browser: %d", resp.StatusCode)
	}
	if resp, _ := navigate(t, victim, rs.url("admin.localhost", "/")); !onLoginForm(resp) {
		t.Errorf("the victim is signed in: %d", resp.StatusCode)
	}
	// A code used once in the right browser works, then never again.
	cd, _ = code(alice, "admin.localhost")
	if resp := redeem(alice, "admin.localhost", cd); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/page" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("a good code: %d %s %v", resp.StatusCode, resp.Header.Get("Location"), resp.Header)
	}
	if resp := redeem(alice, "admin.localhost", cd); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("the good code again: %d", resp.StatusCode)
	}
	for _, bad := range []string{"", "x", strings.Repeat("A", 43), strings.Repeat("A", 44), "../../etc", "%00"} {
		if resp := redeem(alice, "admin.localhost", bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("code %q: %d", bad, resp.StatusCode)
		}
	}
	// The sign-in host redeems no code.
	if resp := redeem(alice, "auth.localhost", strings.Repeat("A", 43)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("handoff at the sign-in host: %d", resp.StatusCode)
	}
}

// TestRoutesReturnURLs: the sign-in host follows rd to a host a route
// serves, on its scheme and port, and nowhere else.
func TestRoutesReturnURLs(t *testing.T) {
	rs := newRoutesStand(t, "")
	c := noRedirect(rs.browser())
	start := func(rd string) string {
		t.Helper()
		resp, _ := navigate(t, c, rs.url("auth.localhost", "/oauth2/start?rd="+url.QueryEscape(rd)))
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("start %q: %d", rd, resp.StatusCode)
		}
		return resp.Header.Get("Location")
	}
	p := rs.port
	for _, rd := range []string{
		"http://grafana.localhost:" + p + "/d/1?x=1",
		"http://q.apps.localhost:" + p + "/",
		"http://grafana.localhost:" + p,
	} {
		loc, _ := url.Parse(start(rd))
		want, _ := url.Parse(rd)
		if loc.Host != want.Host || loc.Path != "/oauth2/start" {
			t.Errorf("rd %q: sent to %s", rd, loc)
		}
	}
	for _, rd := range []string{
		"http://evil.example:" + p + "/",
		"http://unknown.localhost:" + p + "/",
		"https://grafana.localhost:" + p + "/", // another scheme
		"http://grafana.localhost:1/",          // another port
		"http://grafana.localhost/",            // no port
		"http://user@grafana.localhost:" + p + "/",
		"http://grafana.localhost:" + p + "@evil.example/",
		"http://grafana.localhost:" + p + "\\@evil.example/",
		"http://grafana.localhost:" + p + "//evil.example",
		"http://grafana.localhost:" + p + "/%2F%2Fevil.example",
		"http://grafana.localhost:" + p + "/../x",
		"http://grafana.localhost:" + p + "/#x",
		"http://GRAFANA.localhost:" + p + "/",
		"http://grafana.localhost.:" + p + "/",
		"http://127.0.0.1:" + p + "/",
		"http://a.b.apps.localhost:" + p + "/",
		"//grafana.localhost:" + p + "/",
		"javascript://grafana.localhost:" + p + "/%0aalert(1)",
		"http:/grafana.localhost:" + p + "/",
		"http://grafana.localhost:" + p + "/\t",
		"http://[::1]:" + p + "/",
	} {
		loc := start(rd)
		if u, _ := url.Parse(loc); u.Host != rs.op.Issuer()[len("http://"):] {
			t.Errorf("rd %q: sent to %s, not the provider", rd, loc)
		}
	}
}

// memosSessions counts user's Memos sessions that are not over.
func (rs *routesStand) memosSessions(user string) int {
	rs.fm.Mu.Lock()
	defer rs.fm.Mu.Unlock()
	live := 0
	for _, r := range rs.fm.Refresh {
		if r.User == user && !r.Revoked {
			live++
		}
	}
	return live
}

// TestRoutesRedisReplicasServeDifferentRoutes: two replicas share one
// Redis; the browser reaches grafana and admin through the second and
// everything else through the first. One sign-in, one session, one
// sign-out.
func TestRoutesRedisReplicasServeDifferentRoutes(t *testing.T) {
	redis := startRedis(t)
	rs := newRoutesStand(t, fmt.Sprintf("  store: redis\n  redis:\n    address: %q\n    timeout: 1s", redis.addr))
	ln := listen(t)
	second := rs.serve(ln)
	for deadline := time.Now().Add(10 * time.Second); !second.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second replica never became ready")
		}
	}
	rs.extras["grafana.localhost"] = ln.Addr().String()
	rs.extras["admin.localhost"] = ln.Addr().String()
	c := rs.browser()
	resp, body := rs.signIn(c, "grafana.localhost", "/g", "alice", alicePassword)
	if resp.StatusCode != 200 || !strings.Contains(body, `grafana for "" "alice" at /g`) {
		t.Fatalf("sign-in at grafana (second replica): %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	for _, host := range []string{"admin.localhost", "q.apps.localhost", "notes.localhost"} {
		if resp, _ := navigate(t, c, rs.url(host, "/")); resp.StatusCode != 200 || onLoginForm(resp) {
			t.Errorf("%s: %d at %s", host, resp.StatusCode, resp.Request.URL)
		}
	}
	if n := strings.Count(redis.bulk("KEYS", "oidc-proxy:s:*"), "oidc-proxy:s:"); n != 1 {
		t.Errorf("%d session records in Redis, want one for every host", n)
	}
	// Sign-out through the first replica ends the session at the second.
	navigate(t, c, rs.url("notes.localhost", "/oauth2/sign_out"))
	eventually(t, "the second replica still serves the signed-out session", func() bool {
		resp, _ := navigate(t, c, rs.url("grafana.localhost", "/"))
		return onLoginForm(resp)
	})
}

// TestRoutesMetricsCheckAndCookies: metrics carry the route's name,
// -check asks every route's upstream, and a session cookie carried to
// another host is still judged by that host's route.
func TestRoutesMetricsCheckAndCookies(t *testing.T) {
	rs := newRoutesStand(t, "")
	bob := rs.browser()
	rs.signIn(bob, "grafana.localhost", "/", "bob", bobPassword)
	navigate(t, bob, rs.url("unknown.localhost", "/"))
	rec := httptest.NewRecorder()
	rs.proxy.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`oidc_proxy_requests_total{code="2xx",route="proxied",route_name="grafana"} 1`,
		`oidc_proxy_requests_total{code="4xx",route="proxied",route_name="none"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(rs.logs.String(), `path=/ status=200`) || !strings.Contains(rs.logs.String(), "route=grafana") {
		t.Errorf("the access log does not name the route")
	}
	// bob's grafana cookie, sent to admin: admin's rules still apply.
	u, _ := url.Parse(rs.url("grafana.localhost", "/"))
	thief := rs.browser()
	au, _ := url.Parse(rs.url("admin.localhost", "/"))
	for _, ck := range bob.Jar.Cookies(u) {
		thief.Jar.SetCookies(au, []*http.Cookie{{Name: ck.Name, Value: ck.Value}})
	}
	if resp, _ := navigate(t, thief, rs.url("admin.localhost", "/")); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob's cookie at admin: %d", resp.StatusCode)
	}
	// -check: every route's upstream, and which do not answer.
	rs.apps["tools-ab"].srv.Close()
	found, err := rs.proxy.Check(t.Context())
	all := strings.Join(found, "\n")
	for _, want := range []string{"route grafana: upstream " + rs.apps["grafana"].srv.URL + ": answers (200 OK)", "route tools-ab: upstream " + rs.apps["tools-ab"].srv.URL + ": does not answer"} {
		if !strings.Contains(all, want) {
			t.Errorf("check lacks %q:\n%s", want, all)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "route tools-ab") {
		t.Errorf("check error: %v", err)
	}
}

// TestUpstreamCannotSetTheProxysCookies: an application's Set-Cookie of
// the session cookie, a chunk of it or a login cookie is dropped (it could
// plant a session in a browser); its own cookies pass.
func TestUpstreamCannotSetTheProxysCookies(t *testing.T) {
	s := newStand(t, nil, nil)
	c := s.SignIn("/")
	s.Handle(func(w http.ResponseWriter, r *http.Request) {
		for _, v := range []string{"oidc_proxy=planted; Path=/", "OIDC_PROXY_1=planted", "oidc_proxy_login_abc=x; Domain=example.com", "app=kept; Path=/", "oidc_proxyx=kept"} {
			w.Header().Add("Set-Cookie", v)
		}
	})
	resp, _ := do(t, noRedirect(c), mustReq(http.MethodGet, s.URL+"/"))
	got := strings.Join(resp.Header.Values("Set-Cookie"), "\n")
	if strings.Contains(got, "planted") || strings.Contains(got, "oidc_proxy_login_abc") || !strings.Contains(got, "app=kept") || !strings.Contains(got, "oidc_proxyx=kept") {
		t.Errorf("Set-Cookie that reached the browser:\n%s", got)
	}
}

// TestRoutesSignOutReachesTheProvider: a sign-out that passes other hosts
// first still gives the provider's end_session_endpoint the ID token of
// the session it ended, and returns to the page's host.
func TestRoutesSignOutReachesTheProvider(t *testing.T) {
	rs := newRoutesStand(t, "", func(o *proxytest.OPConfig) { o.EndSession = true })
	c := rs.browser()
	rs.signIn(c, "grafana.localhost", "/", "alice", alicePassword)
	nr := noRedirect(c)
	next := rs.url("grafana.localhost", "/oauth2/sign_out?rd=%2Fbye")
	var hosts []string
	for range 5 {
		resp, _ := navigate(t, nr, next)
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("sign-out at %s: %d", next, resp.StatusCode)
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if strings.HasSuffix(loc.Path, "/end_session") {
			q := loc.Query()
			if q.Get("id_token_hint") == "" || q.Get("post_logout_redirect_uri") != rs.url("grafana.localhost", "/bye") {
				t.Errorf("end_session parameters: %v", q)
			}
			if strings.Join(hosts, " ") != "notes.localhost auth.localhost" {
				t.Errorf("the sign-out passed %v", hosts)
			}
			return
		}
		hosts = append(hosts, loc.Hostname())
		if strings.Contains(loc.RawQuery, "eyJ") {
			t.Errorf("an ID token in a URL: %s", loc)
		}
		next = loc.String()
	}
	t.Fatalf("the sign-out never reached the provider (passed %v)", hosts)
}
