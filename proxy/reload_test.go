package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
)

func metricsOf(t *testing.T, s *stand) string {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Proxy.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// TestReloadTakesEffectForHeldSessions: a reload that adds a public path
// and changes an access rule applies to the next request of a session
// already held, with no new sign-in and no new discovery.
func TestReloadTakesEffectForHeldSessions(t *testing.T) {
	s := newStand(t, nil, nil)
	alice := s.SignIn("/")
	anon := s.Browser()
	if resp, _ := navigate(t, noRedirect(anon), s.URL+"/explore"); resp.StatusCode != http.StatusFound {
		t.Fatalf("/explore before the reload: %d", resp.StatusCode)
	}
	restart, err := s.Proxy.Reload(s.Config(func(c *config.Config) {
		c.PublicPaths = []string{"/explore"}
		c.Access.AllowedGroups = []string{"staff"} // alice is in admins and users
	}))
	if err != nil || len(restart) != 0 {
		t.Fatalf("reload: %v %v", restart, err)
	}
	if resp, body := navigate(t, anon, s.URL+"/explore"); resp.StatusCode != 200 || !strings.Contains(body, "hello") {
		t.Errorf("/explore after the reload: %d %s", resp.StatusCode, body)
	}
	if resp, _ := navigate(t, alice, s.URL+"/"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("alice after the rule changed: %d", resp.StatusCode)
	}
	// And back: the same session passes again.
	if _, err := s.Proxy.Reload(s.Config(func(c *config.Config) { c.Access.AllowedGroups = []string{"users"} })); err != nil {
		t.Fatal(err)
	}
	if resp, body := navigate(t, alice, s.URL+"/"); resp.StatusCode != 200 || !strings.Contains(body, "hello alice") {
		t.Errorf("alice after the second reload: %d %s", resp.StatusCode, body)
	}
	// The provider client's settings apply too: a wrong client secret
	// fails the next sign-in at the token endpoint, the right one again
	// lets it through; discovery is kept all along.
	if _, err := s.Proxy.Reload(s.Config(func(c *config.Config) { c.OIDC.ClientSecret = "not-the-secret" })); err != nil {
		t.Fatal(err)
	}
	c := s.Browser()
	resp, _ := navigate(t, c, s.URL+"/")
	if resp, _ := login(t, c, resp, "alice", alicePassword); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("a sign-in with the wrong client secret: %d", resp.StatusCode)
	}
	if _, err := s.Proxy.Reload(s.Config()); err != nil {
		t.Fatal(err)
	}
	s.SignIn("/")
	m := metricsOf(t, s)
	for _, want := range []string{
		`oidc_proxy_config_reloads_total{result="success"} 4`,
		`oidc_proxy_config_reloads_total{result="failure"} 0`,
		`oidc_proxy_idp_request_duration_seconds_count{endpoint="discovery"} 1`,
		`oidc_proxy_config_last_reload_success_timestamp_seconds 1.`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestReloadRefusedChangesNothing: a configuration that cannot be built
// (here an identity JWT key file that is not there) is refused whole and
// counted; the running one serves on. Settings that need a restart keep
// their running value and are named, and the rest applies.
func TestReloadRefusedChangesNothing(t *testing.T) {
	s := newStand(t, nil, nil)
	alice := s.SignIn("/")
	_, err := s.Proxy.Reload(s.Config(func(c *config.Config) {
		c.PublicPaths = []string{"/explore"}
		c.IdentityJWT = &config.IdentityJWT{Header: "X-Id", Algorithm: "ES256", Lifetime: config.DefaultIdentityJWTLifetime,
			KeyFiles: []string{"/nonexistent/key.pem"}, Claims: config.DefaultIdentityJWTClaims(), Audience: "x"}
	}))
	if err == nil {
		t.Fatal("a configuration with a missing key file was taken")
	}
	if resp, _ := navigate(t, noRedirect(s.Browser()), s.URL+"/explore"); resp.StatusCode != http.StatusFound {
		t.Errorf("the refused configuration's public path applies: %d", resp.StatusCode)
	}
	if resp, _ := navigate(t, alice, s.URL+"/"); resp.StatusCode != 200 {
		t.Errorf("alice after the refused reload: %d", resp.StatusCode)
	}
	if m := metricsOf(t, s); !strings.Contains(m, `oidc_proxy_config_reloads_total{result="failure"} 1`) {
		t.Errorf("the failure is not counted")
	}
	restart, err := s.Proxy.Reload(s.Config(func(c *config.Config) {
		c.Listen = "127.0.0.1:1"
		c.Session.CookieName = "other"
		c.PublicPaths = []string{"/explore"}
	}))
	if err != nil || strings.Join(restart, ",") != "listen,session.cookie_name" {
		t.Fatalf("restart-only settings: %v %v", restart, err)
	}
	if got := s.Proxy.Config().Session.CookieName; got != config.DefaultCookieName {
		t.Errorf("the cookie name changed in a running process: %q", got)
	}
	if resp, _ := navigate(t, alice, s.URL+"/"); resp.StatusCode != 200 {
		t.Errorf("alice's cookie after the reload: %d", resp.StatusCode)
	}
	if resp, _ := navigate(t, s.Browser(), s.URL+"/explore"); resp.StatusCode != 200 {
		t.Errorf("the rest of the reload did not apply: %d", resp.StatusCode)
	}
}

// TestReloadRotatesSecretsLive: a new first secret writes new cookies,
// the old one still opens old cookies; taking the old one out closes
// them, without a restart.
func TestReloadRotatesSecretsLive(t *testing.T) {
	s := newStand(t, nil, nil)
	old := s.SignIn("/")
	const next = "the-next-session-secret-0123456789abcdef"
	if _, err := s.Proxy.Reload(s.Config(func(c *config.Config) { c.Session.Secret = config.Secrets{next, sessionSecret} })); err != nil {
		t.Fatal(err)
	}
	if resp, body := navigate(t, old, s.URL+"/"); resp.StatusCode != 200 || !strings.Contains(body, "hello alice") {
		t.Fatalf("an old cookie after the rotation: %d", resp.StatusCode)
	}
	fresh := s.SignIn("/")
	// Only the new secret now: the fresh cookie works, the old one not.
	if _, err := s.Proxy.Reload(s.Config(func(c *config.Config) { c.Session.Secret = config.Secrets{next} })); err != nil {
		t.Fatal(err)
	}
	if resp, _ := navigate(t, fresh, s.URL+"/"); resp.StatusCode != 200 {
		t.Errorf("a cookie written after the rotation: %d", resp.StatusCode)
	}
	if resp, _ := navigate(t, noRedirect(old), s.URL+"/"); resp.StatusCode != http.StatusFound {
		t.Errorf("a cookie of the removed secret: %d", resp.StatusCode)
	}
}

// TestReloadAddsARoute: a whole application added by a reload is served,
// and the sessions held serve it at once.
func TestReloadAddsARoute(t *testing.T) {
	rs := newRoutesStand(t, "")
	c := rs.browser()
	rs.signIn(c, "grafana.localhost", "/", "alice", alicePassword)
	if resp, _ := navigate(t, c, rs.url("new.localhost", "/")); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("new.localhost before the reload: %d", resp.StatusCode)
	}
	extra := newApp(t, "new")
	rs.yaml += "  - {name: new, host: new.localhost, upstream: " + extra.srv.URL + "}\n"
	cfg, err := config.Parse("routes.yaml", []byte(rs.yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.proxy.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if resp, body := navigate(t, c, rs.url("new.localhost", "/")); resp.StatusCode != 200 || onLoginForm(resp) || !strings.Contains(body, `new for "alice"`) {
		t.Errorf("new.localhost after the reload: %d %s", resp.StatusCode, body)
	}
	// The Memos bridge of the new configuration signs into Memos.
	if resp, _ := navigate(t, c, rs.url("notes.localhost", "/")); resp.StatusCode != 200 {
		t.Errorf("notes after the reload: %d", resp.StatusCode)
	}
	if user, _ := memosWhoAmI(t, c, rs.url("notes.localhost", "")); user != "alice" {
		t.Errorf("Memos after the reload: %q", user)
	}
}

// TestReloadKeepsConnections: a WebSocket opened before five reloads
// still echoes after them, and a slow request that was in flight during
// one completes; new requests follow the new configuration.
func TestReloadKeepsConnections(t *testing.T) {
	s := newStand(t, nil, nil)
	c := s.SignIn("/")
	s.Handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(500 * time.Millisecond)
			io.WriteString(w, "slow done")
			return
		}
		wsEcho(w, r)
	})
	conn, br := openWebSocket(t, s, c)
	br.ReadString('\n')
	slow := make(chan string, 1)
	go func() {
		resp, err := c.Get(s.URL + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- fmt.Sprint(resp.StatusCode, " ", string(b))
	}()
	time.Sleep(100 * time.Millisecond)
	for i := range 5 {
		if _, err := s.Proxy.Reload(s.Config(func(c *config.Config) {
			c.PublicPaths = []string{fmt.Sprintf("/p%d", i)}
		})); err != nil {
			t.Fatal(err)
		}
	}
	if got := <-slow; got != "200 slow done" {
		t.Errorf("the request in flight during the reloads: %s", got)
	}
	fmt.Fprint(conn, "after the reloads\n")
	if line, err := br.ReadString('\n'); line != "after the reloads\n" {
		t.Errorf("the WebSocket after the reloads: %q %v", line, err)
	}
}
