package proxy_test

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// realStand is the proxy (in this process) in front of the recording
// upstream, signing in at the real Authelia, its clients named by a
// trusted front proxy's X-Forwarded-For.
type realStand struct {
	*stand
	a *proxytest.Authelia
}

const realSecret = proxytest.RealSecret

func realReplica(s *stand, a *proxytest.Authelia, yaml string, ln net.Listener, edits ...func(*config.Config)) replica {
	return s.RealReplica(a, yaml, ln, edits...)
}

func newRealStand(t *testing.T, rateLimits bool, edit func(*config.Config)) *realStand {
	t.Helper()
	a := proxytest.StartAuthelia(t, proxytest.AutheliaOptions{
		RateLimits: rateLimits,
		Users: []proxytest.AutheliaUser{{Name: "alice", Password: alicePassword, DisplayName: "Alice Liddell",
			Email: "alice@example.test", Groups: []string{"admins", "users"}}},
		Clients: []proxytest.AutheliaClient{{ID: "memos", Secret: realSecret,
			RedirectURIs: []string{"http://127.0.0.1/oauth2/callback"}, Lifespan: "short"}},
	})
	s := &stand{T: t, Logs: &syncBuffer{}}
	ln := listen(t)
	s.Issuer = a.Issuer
	s.URL = "http://" + ln.Addr().String()
	s.StartUpstream()
	yaml := fmt.Sprintf(`
external_url: %q
upstream: %q
trusted_proxies: ["127.0.0.1"]
oidc:
  issuer: %q
  client_id: memos
  client_secret: %q
  scopes: [openid, profile, email, groups, offline_access]
session:
  secret: %q
`, s.URL, s.Upstream.URL, a.Issuer, realSecret, sessionSecret)
	s.YAML = yaml
	s.Proxy = realReplica(s, a, yaml, ln, edit)
	s.WaitReady()
	return &realStand{s, a}
}

// signIn signs alice in from addr through Authelia's portal; the test
// fails unless she lands on the app.
func (rs *realStand) signIn(t *testing.T, addr string) *http.Client {
	t.Helper()
	c := rs.a.Browser(addr)
	resp, body, err := rs.a.SignIn(c, rs.URL+"/", "alice", alicePassword)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello alice") {
		t.Fatalf("sign-in from %s through Authelia: %v %v %s", addr, err, resp, body)
	}
	return c
}

// TestRealAutheliaSignInFlood: the real Authelia with its default rate
// limits. Floods of anonymous sign-in completions (one address, one state
// replayed, many addresses) leave a real user able to sign in and a
// signed-in one able to refresh; the token requests the provider gets are
// counted (the proxy's metric).
func TestRealAutheliaSignInFlood(t *testing.T) {
	rs := newRealStand(t, true, nil)
	before := rs.signIn(t, "203.0.113.5")
	tokenCalls := func() int {
		return metricValue(metricsText(rs.stand), `oidc_proxy_idp_request_duration_seconds_count{endpoint="token"}`)
	}
	a := newAttacker(rs.stand)
	for _, shape := range []struct {
		name    string
		n       int
		run     func(i int)
		maxSent int
	}{
		{"fresh sign-ins from one address", floodSize, func(int) {
			st, ck := a.begin(t, "198.51.100.7")
			a.complete(t, "198.51.100.7", st, ck)
		}, 5},
		{"one state replayed", floodSize, nil, 1},
		// Sixty addresses: twice Authelia's per-minute budget, had it
		// charged them all to the proxy.
		{"sixty addresses", 60, func(i int) {
			addr := netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}).String()
			st, ck := a.begin(t, addr)
			a.complete(t, addr, st, ck)
		}, 60},
	} {
		start, calls := time.Now(), tokenCalls()
		if shape.run == nil {
			st, ck := a.begin(t, "198.51.100.8")
			shape.run = func(int) { a.complete(t, "198.51.100.8", st, ck) }
		}
		parallel(shape.n, 8, shape.run)
		sent := tokenCalls() - calls
		t.Logf("%s: %d anonymous completions in %s sent %d token requests to Authelia", shape.name, shape.n, time.Since(start).Round(time.Millisecond), sent)
		if sent > shape.maxSent {
			t.Errorf("%s: %d token requests reached Authelia, want at most %d", shape.name, sent, shape.maxSent)
		}
		// A real user signs in at once after each.
		rs.signIn(t, "203.0.113.6")
	}
	// The session signed in before the floods refreshes (Authelia rotates
	// its refresh token): its access token lasts 66 s, and the proxy
	// renews 30 s after sign-in at the earliest.
	refreshes := metricValue(metricsText(rs.stand), `oidc_proxy_refreshes_total{result="success"}`)
	rs.Skew.Store(int64(45 * time.Second))
	if resp, _ := do(t, before, mustReq(http.MethodGet, rs.URL+"/after")); resp.StatusCode != http.StatusOK {
		t.Errorf("the signed-in user after the floods: %d", resp.StatusCode)
	}
	if got := metricValue(metricsText(rs.stand), `oidc_proxy_refreshes_total{result="success"}`); got != refreshes+1 {
		t.Errorf("refreshes after the floods: %d, want %d", got, refreshes+1)
	}
	if strings.Contains(rs.a.Log(), "rate limit") && strings.Contains(rs.a.Log(), "203.0.113.6") {
		t.Errorf("Authelia limited the real user")
	}
}

// metricValue is the value of the series line (name and labels, exactly)
// in a metrics page, or 0.
func metricValue(page, series string) int {
	for _, l := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return int(f)
		}
	}
	return 0
}
