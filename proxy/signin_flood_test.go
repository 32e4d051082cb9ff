package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// The sign-in gate against an anonymous flood of sign-in completions:
// the test provider limits its token endpoint as Authelia does by default
// (per client address, counting answers other than 200), the proxy sits
// behind a trusted front proxy (127.0.0.1) that names each client in
// X-Forwarded-For.

// floodStand is a stand with Authelia's limiter and refresh tokens, whose
// clients are named by X-Forwarded-For.
func floodStand(t *testing.T) *stand {
	return newStand(t, func(c *cfg) {
		c.TrustedProxies = []string{"127.0.0.1"}
		c.OIDC.Scopes = []string{"openid", "profile", "email", "offline_access"}
	}, func(o *proxytest.OPConfig) { o.RateLimit = true })
}

// fromAddr is c with every request sent as from addr (by the trusted
// front proxy's X-Forwarded-For).
func fromAddr(c *http.Client, addr string) *http.Client {
	cc := *c
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	cc.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("X-Forwarded-For", addr)
		return next.RoundTrip(r)
	})
	return &cc
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// attacker is a client that begins sign-ins and completes them with
// made-up codes, as anyone can.
type attacker struct {
	s *stand
	c *http.Client
}

func newAttacker(s *stand) *attacker {
	return &attacker{s: s, c: &http.Client{Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// begin starts a sign-in from addr: its state and login cookie.
func (a *attacker) begin(t *testing.T, addr string) (state, cookie string) {
	req, _ := http.NewRequest(http.MethodGet, a.s.URL+"/oauth2/start?rd=%2F", nil)
	req.Header.Set("X-Forwarded-For", addr)
	resp, err := a.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	var parts []string
	for _, ck := range resp.Cookies() {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return loc.Query().Get("state"), strings.Join(parts, "; ")
}

// complete sends the callback of state with a made-up code from addr.
func (a *attacker) complete(t *testing.T, addr, state, cookie string) *http.Response {
	q := url.Values{"state": {state}, "code": {"made-up-" + state[:8]}, "iss": {a.s.Issuer}}
	req, _ := http.NewRequest(http.MethodGet, a.s.URL+"/oauth2/callback?"+q.Encode(), nil)
	req.Header.Set("X-Forwarded-For", addr)
	req.Header.Set("Cookie", cookie)
	resp, err := a.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// parallel runs f(i) for i < n on workers goroutines.
func parallel(n, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}

// signInAs signs a browser in from addr, and fails the test unless it
// lands on the app at once.
func signInFrom(t *testing.T, s *stand, addr string) *http.Client {
	t.Helper()
	c := fromAddr(s.Browser(), addr)
	resp, _ := navigate(t, c, s.URL+"/")
	resp, body := login(t, c, resp, "alice", alicePassword)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello alice") {
		t.Fatalf("a real user's sign-in from %s ended at %s with %d", addr, resp.Request.URL, resp.StatusCode)
	}
	return c
}

const floodSize = 1000

func TestSignInFloodLeavesUsersIn(t *testing.T) {
	if testing.Short() {
		t.Skip("floods of 1,000 completions")
	}
	shapes := []struct {
		name string
		run  func(t *testing.T, a *attacker)
		// addrs are the attacker's addresses, for the provider's count;
		// perClient is what one client network may cost at most.
		addrs     func(i int) string
		perClient int
	}{
		{"fresh sign-ins from one address", func(t *testing.T, a *attacker) {
			parallel(floodSize, 8, func(int) {
				st, ck := a.begin(t, "198.51.100.7")
				a.complete(t, "198.51.100.7", st, ck)
			})
		}, func(int) string { return "198.51.100.7" }, 5},
		{"one state replayed", func(t *testing.T, a *attacker) {
			st, ck := a.begin(t, "198.51.100.8")
			parallel(floodSize, 8, func(int) { a.complete(t, "198.51.100.8", st, ck) })
		}, func(int) string { return "198.51.100.8" }, 1},
		{"many states in parallel", func(t *testing.T, a *attacker) {
			type flow struct{ st, ck string }
			flows := make([]flow, 200)
			for i := range flows {
				flows[i].st, flows[i].ck = a.begin(t, "198.51.100.9")
			}
			parallel(floodSize, 32, func(i int) { a.complete(t, "198.51.100.9", flows[i%200].st, flows[i%200].ck) })
		}, func(int) string { return "198.51.100.9" }, 5},
		{"one IPv6 network, many addresses", func(t *testing.T, a *attacker) {
			parallel(floodSize, 8, func(i int) {
				addr := fmt.Sprintf("2001:db8:0:1::%x", i+1)
				st, ck := a.begin(t, addr)
				a.complete(t, addr, st, ck)
			})
		}, func(i int) string { return fmt.Sprintf("2001:db8:0:1::%x", i+1) }, 5},
		{"many addresses behind the front proxy", func(t *testing.T, a *attacker) {
			parallel(floodSize, 8, func(i int) {
				addr := netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}).String()
				st, ck := a.begin(t, addr)
				a.complete(t, addr, st, ck)
			})
		}, nil, 5},
	}
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			s := floodStand(t)
			before := signInFrom(t, s, "203.0.113.5") // signed in before the flood
			a := newAttacker(s)
			start := time.Now()
			sh.run(t, a)
			total := s.OP.TokenFailuresTotal()
			t.Logf("%d completions in %s: the provider answered %d token requests other than 200 (%d requests in all)",
				floodSize, time.Since(start).Round(time.Millisecond), total, s.OP.TokenRequests.Load())
			if sh.addrs != nil {
				sum := 0
				seen := map[string]bool{}
				for i := range floodSize {
					if addr := sh.addrs(i); !seen[addr] {
						seen[addr] = true
						sum += s.OP.TokenFailures(addr)
					}
				}
				if sum > sh.perClient {
					t.Errorf("the provider saw %d failed token requests from the attacker's network, want at most %d", sum, sh.perClient)
				}
			} else if total > floodSize {
				t.Errorf("the provider saw %d failures for %d completions", total, floodSize)
			}
			if n := s.OP.TokenFailures("127.0.0.1"); n != 0 {
				t.Errorf("%d failures were charged to the proxy's own address", n)
			}
			for i := 0; i < floodSize && sh.addrs != nil; i++ {
				if n := s.OP.RateLimited(sh.addrs(i)); n > 0 {
					t.Errorf("the provider's limit was reached for %s (%d × 429)", sh.addrs(i), n)
					break
				}
			}
			// A real user signs in at once, and a signed-in one refreshes.
			signInFrom(t, s, "203.0.113.6")
			refreshes := refreshRequests(s)
			s.Skew.Store(int64(4*time.Minute + 30*time.Second))
			resp, _ := do(t, before, mustReq(http.MethodGet, s.URL+"/after"))
			if resp.StatusCode != http.StatusOK || refreshRequests(s) != refreshes+1 {
				t.Errorf("the signed-in user after the flood: %d, %d refreshes", resp.StatusCode, refreshRequests(s)-refreshes)
			}
		})
	}
}

// TestSignInClientLimit: past its bound a client gets the proxy's own
// 429 with Retry-After, and the provider is not asked.
func TestSignInClientLimit(t *testing.T) {
	s := floodStand(t)
	a := newAttacker(s)
	var last *http.Response
	for range 8 {
		st, ck := a.begin(t, "198.51.100.20")
		last = a.complete(t, "198.51.100.20", st, ck)
	}
	if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") == "" {
		t.Fatalf("the 8th failed completion: %d, Retry-After %q", last.StatusCode, last.Header.Get("Retry-After"))
	}
	if n := s.OP.TokenFailures("198.51.100.20"); n != 5 {
		t.Errorf("the provider saw %d failures, want 5", n)
	}
	// The same state again, once the client may try again: spent.
	st, ck := a.begin(t, "198.51.100.21")
	a.complete(t, "198.51.100.21", st, ck)
	if resp := a.complete(t, "198.51.100.21", st, ck); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a replayed state: %d", resp.StatusCode)
	}
	if n := s.OP.TokenFailures("198.51.100.21"); n != 1 {
		t.Errorf("the provider saw %d exchanges of one state", n)
	}
	if m := metricsText(s); !strings.Contains(m, `oidc_proxy_sign_ins_total{reason="client_limit",result="failure"}`) ||
		!strings.Contains(m, `oidc_proxy_sign_ins_total{reason="state_replayed",result="failure"} 1`) {
		t.Errorf("metrics:\n%s", grepLines(m, "sign_ins"))
	}
	// One log line for the lot, not one per refusal.
	if n := strings.Count(s.Logs.String(), "sign-in completions are being limited"); n != 1 {
		t.Errorf("%d log lines about the limit", n)
	}
}

// TestProviderRateLimit: when the provider answers 429, the user gets a
// page that says so and when to come back, with Retry-After; the
// provider is not asked again for that client until then; sessions that
// need no refresh are served; a refresh the provider refuses with 429
// pauses refreshes, and the session is served meanwhile.
func TestProviderRateLimit(t *testing.T) {
	s := floodStand(t)
	signedIn := signInFrom(t, s, "203.0.113.5")
	s.OP.Exhaust("203.0.113.9")
	c := fromAddr(s.Browser(), "203.0.113.9")
	resp, _ := navigate(t, c, s.URL+"/")
	resp, body := login(t, c, resp, "alice", alicePassword)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "briefly unavailable") {
		t.Fatalf("sign-in at the provider's limit: %d %s", resp.StatusCode, body)
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("no Retry-After: %q", ra)
	}
	if !strings.Contains(body, "try again in about an hour") {
		t.Errorf("the page does not say when to try again: %s", body)
	}
	// Once more: the proxy knows, the provider is not asked.
	before := s.OP.RateLimited("203.0.113.9")
	resp, _ = navigate(t, c, s.URL+"/")
	resp, _ = login(t, c, resp, "alice", alicePassword)
	if resp.StatusCode != http.StatusTooManyRequests || s.OP.RateLimited("203.0.113.9") != before {
		t.Errorf("a second try: %d, the provider asked again (%d → %d)", resp.StatusCode, before, s.OP.RateLimited("203.0.113.9"))
	}
	// Others sign in; the signed-in user is served.
	signInFrom(t, s, "203.0.113.10")
	if resp, _ := do(t, signedIn, mustReq(http.MethodGet, s.URL+"/x")); resp.StatusCode != http.StatusOK {
		t.Errorf("a signed-in user: %d", resp.StatusCode)
	}
	// The proxy's own address (refreshes) limited: served, no retry into it.
	s.OP.Exhaust("127.0.0.1")
	s.Skew.Store(int64(4*time.Minute + 30*time.Second))
	for range 5 {
		if resp, _ := do(t, signedIn, mustReq(http.MethodGet, s.URL+"/y")); resp.StatusCode != http.StatusOK {
			t.Errorf("a session due for refresh with the provider limiting: %d", resp.StatusCode)
		}
	}
	if n := s.OP.RateLimited("127.0.0.1"); n != 1 {
		t.Errorf("%d refreshes sent into the provider's 429, want 1", n)
	}
	m := metricsText(s)
	for _, want := range []string{`oidc_proxy_idp_rate_limited_total{endpoint="token"} 2`, `oidc_proxy_sign_ins_total{reason="provider_limit",result="failure"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "oidc_proxy_"))
		}
	}
	if !strings.Contains(s.Logs.String(), "the provider is rate-limiting the proxy") {
		t.Errorf("no log line for the refresh's 429")
	}
}

func metricsText(s *stand) string {
	rec := httptest.NewRecorder()
	s.Proxy.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}
