package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// The browser journeys with the real programs: Authelia 4.39.20 (its
// real portal, rotating refresh tokens of 66 s), Memos 0.30.0 (its real
// web app, empty at start) and Chromium, with two apps on *.localhost
// names behind one sign-in (sso.localhost): Memos with the bridge, and
// an app that gets the identity headers and the signed identity.

type appsStand struct {
	*stand
	rs       *redisServer
	a        *proxytest.Authelia
	m        *proxytest.Memos
	port     string // the proxy's port, on every *.localhost name
	yaml     string
	keyFile  string
	tokenDir string
}

func (as *appsStand) origin(host string) string { return "http://" + host + ".localhost:" + as.port }

// config is the stand's configuration with the app route's access edit.
func (as *appsStand) config(t *testing.T, appAccess string) *config.Config {
	t.Helper()
	text := strings.Replace(as.yaml, "{{APP_ACCESS}}", appAccess, 1)
	cfg, err := config.Parse("apps.yaml", []byte(text), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	useRedis(as.rs)(cfg) // every host's cookie names one session: refreshed on any
	return cfg
}

func newAppsStand(t *testing.T) *appsStand {
	t.Helper()
	ln, bridgeLn := listen(t), listen(t)
	_, port, _ := strings.Cut(ln.Addr().String(), ":")
	as := &appsStand{stand: &stand{T: t, Logs: &syncBuffer{}}, port: port, tokenDir: t.TempDir()}
	as.a = proxytest.StartAuthelia(t, proxytest.AutheliaOptions{
		Users: []proxytest.AutheliaUser{
			{Name: "alice", Password: alicePassword, DisplayName: "Alice Liddell", Email: "alice@example.test", Groups: []string{"admins"}},
			{Name: "bob", Password: bobPassword, DisplayName: "Bob", Email: "bob@example.test", Groups: []string{"users"}},
			{Name: "carol", Password: "carol-password", DisplayName: "Carol"}, // no email
		},
		Clients: []proxytest.AutheliaClient{{ID: "apps", Secret: realSecret, Lifespan: "medium",
			RedirectURIs: []string{as.origin("sso") + "/oauth2/callback"}}},
	})
	as.m = proxytest.StartMemos(t, nil)
	as.rs = startRedis(t)
	as.StartUpstream()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	as.keyFile = filepath.Join(t.TempDir(), "jwt.pem")
	os.WriteFile(as.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	as.yaml = fmt.Sprintf(`
external_url: %q
oidc:
  issuer: %q
  client_id: apps
  client_secret: %q
  scopes: [openid, profile, email, groups, offline_access]
  logout_url: %q
session:
  secret: %q
routes:
  - name: notes
    host: memos.localhost
    upstream: %q
    memos:
      bridge: true
      admin_token_file: %q
      admin_groups: [admins]
      bridge_listen: %q
  - name: app
    host: app.localhost
    upstream: %q
    identity_jwt:
      key_files: [%q]
    access: {{APP_ACCESS}}
`, as.origin("sso"), as.a.Issuer, realSecret, as.a.Issuer+"/logout", sessionSecret, as.m.URL,
		filepath.Join(as.tokenDir, "memos-admin-token"), bridgeLn.Addr().String(), as.Upstream.URL, as.keyFile)
	as.Issuer, as.URL = as.a.Issuer, as.origin("sso")
	as.Proxy = startReplica(t, as.config(t, "{}"), proxy.Options{Logger: as.Logger(), Now: as.Clock, IdPClient: as.a.IdPClient()}, ln)
	serveOn(t, bridgeLn, as.Proxy.BridgeHandler())
	as.WaitReady()
	return as
}

// browserAt drives Chromium through a page of the stack: it signs in at
// Authelia's portal as user when the portal shows, accepts its consent
// when asked, and waits until done says the page is there.
func browserAt(t *testing.T, ctx context.Context, url, user, password string, done func() bool) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(45 * time.Second)
	typed := false
	for !done() {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		portal, _ := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!document.getElementById('username-textfield')"))
		consent, _ := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!document.getElementById('openid-consent-accept')"))
		switch {
		case portal && !typed && user != "":
			typed = true
			proxytest.Fill(ctx, map[string]string{"username-textfield": user, "password-textfield": password}, "sign-in-button")
		case consent:
			proxytest.Click(ctx, "openid-consent-accept")
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
			t.Fatalf("%s (as %s): not there; at %s\n%.600s", url, user, loc, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// memosMe is Memos's current user as Memos's web app in the page sees it.
func memosMe(ctx context.Context) string {
	js := `fetch('/memos.api.v1.AuthService/GetCurrentUser', {method: 'POST', headers: {'Content-Type': 'application/json',
		'Authorization': 'Bearer ' + (localStorage.getItem('memos_access_token') || '')}, body: '{}'}).then(r => r.text())`
	out, _ := chromedp.Run(ctx, chromedp.Evaluate[string](js, func(p *runtime.EvaluateParams) { yes := true; p.AwaitPromise = &yes }))
	return strings.ReplaceAll(out, " ", "")
}

// memosJS runs a Connect call from the page with its access token.
func memosJS(ctx context.Context, method, body string) string {
	js := fmt.Sprintf(`fetch('/memos.api.v1.%s', {method: 'POST', headers: {'Content-Type': 'application/json',
		'Authorization': 'Bearer ' + (localStorage.getItem('memos_access_token') || '')}, body: %q}).then(r => r.text())`, method, body)
	out, _ := chromedp.Run(ctx, chromedp.Evaluate[string](js, func(p *runtime.EvaluateParams) { yes := true; p.AwaitPromise = &yes }))
	return out
}

func pageText(ctx context.Context) string {
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
	return s
}

// TestRealBrowserJourneys: in Chromium, with the real Authelia and Memos.
func TestRealBrowserJourneys(t *testing.T) {
	if testing.Short() {
		t.Skip("the real programs in a browser")
	}
	as := newAppsStand(t)
	ctx := proxytest.Chromium(t, 4*time.Minute,
		[2]string{"host-resolver-rules", "MAP " + as.a.Host + " 127.0.0.1"}, [2]string{"ignore-certificate-errors", "true"})
	as.Handle(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "<!doctype html><title>app</title><p id=who>app for %s</p>", r.Header.Get("Remote-User"))
	})

	// Memos: its first run by the proxy, then alice signs in once and lands
	// on her own account, an admin by her group; she writes a note.
	browserAt(t, ctx, as.origin("memos")+"/", "alice", alicePassword, func() bool { return strings.Contains(memosMe(ctx), `"username":"alice"`) })
	if me := memosMe(ctx); !strings.Contains(me, `"role":"ADMIN"`) {
		t.Errorf("alice (admins) in Memos: %s", me)
	}
	if out := memosJS(ctx, "MemoService/CreateMemo", `{"memo":{"content":"alice's private note","visibility":"PRIVATE"}}`); !strings.Contains(out, "alice's private note") {
		t.Errorf("alice's note: %s", out)
	}

	// The other app, same browser: no second sign-in; the identity and
	// the signed identity, verified with the proxy's key set.
	browserAt(t, ctx, as.origin("app")+"/", "", "", func() bool { return strings.Contains(pageText(ctx), "app for alice") })
	seen := as.LastSeen()
	token := seen.Header.Get(config.DefaultIdentityJWTHeader)
	keys := oidc.NewRemoteKeySet(t.Context(), "http://127.0.0.1:"+as.port+"/oauth2/jwks.json")
	v := oidc.NewVerifier(as.origin("sso"), keys, &oidc.Config{ClientID: as.origin("app"), SupportedSigningAlgs: []string{oidc.ES256}})
	idt, err := v.Verify(t.Context(), token)
	var claims struct {
		User string `json:"preferred_username"`
	}
	if err != nil || idt.Claims(&claims) != nil || claims.User != "alice" {
		t.Errorf("the signed identity: %v %+v", err, claims)
	}

	// A live reload changes the app's rule: alice is kept out at once,
	// and let in again, without signing in again.
	if _, err := as.Proxy.Reload(as.config(t, "{allowed_groups: [nobody]}")); err != nil {
		t.Fatal(err)
	}
	browserAt(t, ctx, as.origin("app")+"/", "", "", func() bool {
		return strings.Contains(pageText(ctx), "Access denied") || strings.Contains(pageText(ctx), "not allowed")
	})
	if _, err := as.Proxy.Reload(as.config(t, "{}")); err != nil {
		t.Fatal(err)
	}
	browserAt(t, ctx, as.origin("app")+"/", "", "", func() bool { return strings.Contains(pageText(ctx), "app for alice") })

	// Authelia's tokens last 200 s here, and the proxy renews a minute
	// before (and not within 30 s of the last renewal): past that (the
	// proxy's clock moved on, within the renewed tokens' life), the
	// session is renewed with the rotating refresh token. Twice: the
	// second spends the refresh token the first got (Authelia refuses,
	// and revokes the family, on a reused one).
	for i, skew := range []time.Duration{145 * time.Second, 180 * time.Second} {
		before := metricValue(metricsText(as.stand), `oidc_proxy_refreshes_total{result="success"}`)
		as.Skew.Store(int64(skew))
		browserAt(t, ctx, as.origin("app")+fmt.Sprintf("/again/%d", i), "", "", func() bool { return strings.Contains(pageText(ctx), "app for alice") })
		m := metricsText(as.stand)
		if got := metricValue(m, `oidc_proxy_refreshes_total{result="success"}`); got <= before ||
			metricValue(m, `oidc_proxy_refreshes_total{result="refused"}`)+metricValue(m, `oidc_proxy_refreshes_total{result="failed"}`) != 0 {
			t.Errorf("refresh %d: %s", i+1, grepLines(m, "refreshes_total"))
		}
	}

	as.Skew.Store(0)

	// Sign-out, then Authelia's own sign-out, and bob on the same browser:
	// his own new account (a plain user), none of alice's notes.
	signOut := func() {
		// The proxy's logout_url is Authelia's portal logout, which ends
		// Authelia's session from the page (it then stays on its own
		// sign-in page: it returns only to https URLs in its cookie
		// domain).
		browserAt(t, ctx, as.origin("memos")+"/oauth2/sign_out", "", "", func() bool {
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			state, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("fetch('/api/state').then(r => r.text())",
				func(p *runtime.EvaluateParams) { yes := true; p.AwaitPromise = &yes }))
			return strings.HasPrefix(loc, as.a.Issuer) && strings.Contains(state, `"authentication_level":0`)
		})
	}
	signOut()
	browserAt(t, ctx, as.origin("memos")+"/", "bob", bobPassword, func() bool { return strings.Contains(memosMe(ctx), `"username":"bob"`) })
	if me := memosMe(ctx); !strings.Contains(me, `"role":"USER"`) {
		t.Errorf("bob in Memos: %s", me)
	}
	if memos := memosJS(ctx, "MemoService/ListMemos", `{}`); strings.Contains(memos, "alice's private note") {
		t.Errorf("bob sees alice's note: %s", memos)
	}
	browserAt(t, ctx, as.origin("app")+"/", "", "", func() bool { return strings.Contains(pageText(ctx), "app for bob") })

	// carol has no email at Authelia: she signs in all the same.
	signOut()
	browserAt(t, ctx, as.origin("memos")+"/", "carol", "carol-password", func() bool { return strings.Contains(memosMe(ctx), `"username":"carol"`) })
}

// TestRealAutheliaTwoReplicasOnRedis: two replicas of the proxy share the
// Redis store in front of the real Authelia (rotating refresh tokens of
// 200 s): a session signed in on one is served by the other; the refresh
// happens on the second, and the next one on the first spends the token
// the second stored (a reused token would be refused, and the session
// ended).
func TestRealAutheliaTwoReplicasOnRedis(t *testing.T) {
	rs := startRedis(t)
	a := proxytest.StartAuthelia(t, proxytest.AutheliaOptions{
		Users: []proxytest.AutheliaUser{{Name: "alice", Password: alicePassword, DisplayName: "Alice", Email: "alice@example.test"}},
		Clients: []proxytest.AutheliaClient{{ID: "memos", Secret: realSecret, Lifespan: "medium",
			RedirectURIs: []string{"http://127.0.0.1/oauth2/callback"}}},
	})
	s := &stand{T: t, Logs: &syncBuffer{}}
	lnA, lnB := listen(t), listen(t)
	s.Issuer, s.URL = a.Issuer, "http://"+lnA.Addr().String()
	s.StartUpstream()
	yaml := fmt.Sprintf("external_url: %q\nupstream: %q\noidc:\n  issuer: %q\n  client_id: memos\n  client_secret: %q\nsession:\n  secret: %q\n",
		s.URL, s.Upstream.URL, a.Issuer, realSecret, sessionSecret)
	s.Proxy = realReplica(s, a, yaml, lnA, useRedis(rs))
	replicaB := realReplica(s, a, yaml, lnB, useRedis(rs))
	s.WaitReady()
	for !replicaB.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	urlB := "http://" + lnB.Addr().String()

	c := a.Browser("")
	resp, body, err := a.SignIn(c, s.URL+"/", "alice", alicePassword)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello alice") {
		t.Fatalf("sign-in on replica A: %v %v %s", err, resp, body)
	}
	cookie := cookieHeader(c, s.URL)
	refreshes := func(result string) int {
		return metricValue(metricsText(s), `oidc_proxy_refreshes_total{result="`+result+`"}`) +
			metricValue(func() string {
				rec := httptest.NewRecorder()
				replicaB.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
				return rec.Body.String()
			}(), `oidc_proxy_refreshes_total{result="`+result+`"}`)
	}
	if resp, body := get(t, urlB, "/on-b", cookie); resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello alice") {
		t.Fatalf("replica B: %d %s", resp.StatusCode, body)
	}
	for i, step := range []struct {
		base string
		skew time.Duration
	}{{urlB, 145 * time.Second}, {s.URL, 180 * time.Second}} {
		s.Skew.Store(int64(step.skew))
		before := refreshes("success")
		if resp, body := get(t, step.base, fmt.Sprintf("/refresh/%d", i), cookie); resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello alice") {
			t.Fatalf("refresh %d: %d %s", i+1, resp.StatusCode, body)
		}
		if refreshes("success") != before+1 || refreshes("refused")+refreshes("failed") != 0 {
			t.Errorf("refresh %d on %s: success %d → %d, refused %d, failed %d", i+1, step.base, before, refreshes("success"), refreshes("refused"), refreshes("failed"))
		}
	}
}

// TestRealBrowserTwoReplicas: Chromium behind one address that sends each
// request to the next of two replicas on Redis (a load balancer, round
// robin), with the real Authelia: the sign-in's steps and the pages after
// it land on both replicas, and every page is alice's, across a refresh.
func TestRealBrowserTwoReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("the real programs in a browser")
	}
	rs := startRedis(t)
	lb := listen(t)
	_, port, _ := strings.Cut(lb.Addr().String(), ":")
	external := "http://app.localhost:" + port
	a := proxytest.StartAuthelia(t, proxytest.AutheliaOptions{
		Users:   []proxytest.AutheliaUser{{Name: "alice", Password: alicePassword, DisplayName: "Alice", Email: "alice@example.test"}},
		Clients: []proxytest.AutheliaClient{{ID: "memos", Secret: realSecret, Lifespan: "medium", RedirectURIs: []string{external + "/oauth2/callback"}}},
	})
	s := &stand{T: t, Logs: &syncBuffer{}}
	s.Issuer, s.URL = a.Issuer, external
	s.StartUpstream()
	yaml := fmt.Sprintf("external_url: %q\nupstream: %q\noidc:\n  issuer: %q\n  client_id: memos\n  client_secret: %q\nsession:\n  secret: %q\n",
		external, s.Upstream.URL, a.Issuer, realSecret, sessionSecret)
	_, replicas, served := balanced(t, s, a, yaml, rs, lb)
	s.Handle(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "<!doctype html><title>app</title><p>app for %s</p>", r.Header.Get("Remote-User"))
	})
	ctx := proxytest.Chromium(t, 2*time.Minute, [2]string{"host-resolver-rules", "MAP " + a.Host + " 127.0.0.1"}, [2]string{"ignore-certificate-errors", "true"})
	browserAt(t, ctx, external+"/", "alice", alicePassword, func() bool { return strings.Contains(pageText(ctx), "app for alice") })
	for i, skew := range []time.Duration{0, 0, 0, 145 * time.Second, 145 * time.Second, 145 * time.Second} {
		s.Skew.Store(int64(skew))
		browserAt(t, ctx, fmt.Sprintf("%s/page/%d", external, i), "", "", func() bool { return strings.Contains(pageText(ctx), "app for alice") })
	}
	if served[0].Load() < 3 || served[1].Load() < 3 {
		t.Errorf("the replicas served %d and %d requests", served[0].Load(), served[1].Load())
	}
	success, refused := 0, 0
	for _, r := range replicas {
		rec := httptest.NewRecorder()
		r.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		success += metricValue(rec.Body.String(), `oidc_proxy_refreshes_total{result="success"}`)
		refused += metricValue(rec.Body.String(), `oidc_proxy_refreshes_total{result="refused"}`)
	}
	if success < 1 || refused != 0 {
		t.Errorf("refreshes across the replicas: %d succeeded, %d refused", success, refused)
	}
}

// balanced starts two replicas of the configuration yaml, signing in at
// the real Authelia a and sharing the Redis rs, and serves a round-robin
// balancer in front of them on lb (Host kept, no X-Forwarded-For): the
// replicas' addresses, the replicas, and how many requests each got.
func balanced(t *testing.T, s *stand, a *proxytest.Authelia, yaml string, rs *redisServer, lb net.Listener) ([]string, []replica, *[2]atomic.Int64) {
	t.Helper()
	var backends []string
	var replicas []replica
	for range 2 {
		ln := listen(t)
		r := realReplica(s, a, yaml, ln, useRedis(rs))
		if s.Proxy.Proxy == nil {
			s.Proxy = r
		}
		replicas = append(replicas, r)
		for !r.Ready() {
			time.Sleep(10 * time.Millisecond)
		}
		backends = append(backends, ln.Addr().String())
	}
	var served [2]atomic.Int64
	var next atomic.Int64
	serveOn(t, lb, &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		i := next.Add(1) % 2
		served[i].Add(1)
		pr.SetURL(&url.URL{Scheme: "http", Host: backends[i]})
		pr.Out.Host = pr.In.Host
		pr.Out.Header["X-Forwarded-For"] = nil
	}})
	return backends, replicas, &served
}
