package proxy_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// refreshStand signs alice in with offline_access; the test OP's access
// tokens last 5 minutes, so the proxy renews after about 4.
func refreshStand(t *testing.T) (*stand, *http.Client) {
	s := newStand(t, func(c *cfg) { c.OIDC.Scopes = []string{"openid", "profile", "email", "offline_access"} }, nil)
	return s, s.SignIn("/")
}

func refreshRequests(s *stand) int {
	n := 0
	for _, f := range s.OP.TokenForms() {
		if f.Get("grant_type") == "refresh_token" {
			n++
		}
	}
	return n
}

func TestRefreshRenewsClaims(t *testing.T) {
	s, c := refreshStand(t)
	if n := refreshRequests(s); n != 0 {
		t.Fatalf("%d refreshes right after sign-in", n)
	}
	s.Alice.Name = "Alice Renamed"
	do(t, c, mustReq(http.MethodGet, s.URL+"/x"))
	if got := s.LastSeen().Header.Get("Remote-Name"); got != "Alice Liddell" {
		t.Fatalf("before the refresh is due: %q", got)
	}
	s.Skew.Store(int64(4*time.Minute + 30*time.Second))
	resp, _ := do(t, c, mustReq(http.MethodGet, s.URL+"/x"))
	if got := s.LastSeen().Header.Get("Remote-Name"); resp.StatusCode != 200 || got != "Alice Renamed" {
		t.Errorf("after the refresh: %d, Remote-Name %q", resp.StatusCode, got)
	}
	if n := refreshRequests(s); n != 1 {
		t.Errorf("%d refresh requests, want 1", n)
	}
	// The browser now holds the renewed cookie: no refresh until it is due.
	do(t, c, mustReq(http.MethodGet, s.URL+"/y"))
	if n := refreshRequests(s); n != 1 {
		t.Errorf("%d refresh requests after the renewal, want 1", n)
	}
}

// TestConcurrentRefreshSpendsTokenOnce: a page load fires many requests
// with the same cookie when the refresh is due; one token request serves
// them all, and every one carries the renewed identity.
func TestConcurrentRefreshSpendsTokenOnce(t *testing.T) {
	s, c := refreshStand(t)
	cookie := cookieHeader(c, s.URL)
	s.Alice.Name = "Alice Concurrent"
	s.Skew.Store(int64(4*time.Minute + 30*time.Second))
	burst(t, cookie, 50, s.URL)
	if n := refreshRequests(s); n != 1 {
		t.Errorf("%d refresh requests for 50 concurrent requests, want 1", n)
	}
	for _, r := range s.Seen.Since(s.SeenCount() - 50) {
		if got := r.Header.Get("Remote-Name"); got != "Alice Concurrent" {
			t.Errorf("a request went upstream as %q", got)
		}
	}
}

// TestRefreshRefusedEndsSession: an old cookie whose refresh token was
// already spent, replayed after the grace period, is refused by the
// provider (as Authelia does); the session ends at once.
func TestRefreshRefusedEndsSession(t *testing.T) {
	s, c := refreshStand(t)
	old := cookieHeader(c, s.URL)
	s.Skew.Store(int64(4*time.Minute + 30*time.Second))
	do(t, c, mustReq(http.MethodGet, s.URL+"/x")) // spends the refresh token
	s.Skew.Store(int64(4*time.Minute + 30*time.Second + 3*time.Minute))
	req := mustReq(http.MethodGet, s.URL+"/x")
	req.Header.Set("Cookie", old)
	resp, _ := do(t, noRedirect(http.DefaultClient), req)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("stale refresh token: %d", resp.StatusCode)
	}
	if !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "oidc_proxy=; Path=/; Max-Age=0") {
		t.Errorf("the cookie was not cleared")
	}
	if !strings.Contains(s.Logs.String(), "refresh refused: session ended") {
		t.Errorf("no audit line")
	}
}

// TestRefreshWithProviderDown keeps the session going, with a warning.
func TestRefreshWithProviderDown(t *testing.T) {
	s, c := refreshStand(t)
	s.OPDown.Store(true)
	s.Skew.Store(int64(4*time.Minute + 30*time.Second))
	for range 3 {
		resp, body := do(t, c, mustReq(http.MethodGet, s.URL+"/x"))
		if resp.StatusCode != 200 || !strings.Contains(body, "hello alice") {
			t.Fatalf("with the provider down: %d", resp.StatusCode)
		}
	}
	if !strings.Contains(s.Logs.String(), "refresh failed; the session goes on") {
		t.Errorf("no warning in the log")
	}
	// Retried after the back-off, once the provider is back.
	s.OPDown.Store(false)
	s.Skew.Store(int64(4*time.Minute + 30*time.Second + time.Minute))
	do(t, c, mustReq(http.MethodGet, s.URL+"/x"))
	if n := refreshRequests(s); n != 1 {
		t.Errorf("%d refreshes once the provider is back, want 1", n)
	}
}

// TestSignOutSpendsNoRefresh: signing out when a refresh is due ends the
// session without a token request first.
func TestSignOutSpendsNoRefresh(t *testing.T) {
	s, c := refreshStand(t)
	s.Skew.Store(int64(4*time.Minute + 30*time.Second))
	resp, _ := do(t, noRedirect(c), mustReq(http.MethodPost, s.URL+"/oauth2/sign_out"))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	if n := refreshRequests(s); n != 0 {
		t.Errorf("sign-out spent %d refresh request(s)", n)
	}
}

// burst sends n GETs of /api with cookie at once, spread over the bases in
// turn, and fails the test for each that does not get 200.
func burst(t *testing.T, cookie string, n int, bases ...string) {
	t.Helper()
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for i := range n {
		base := bases[i%len(bases)]
		wg.Go(func() {
			req := mustReq(http.MethodGet, base+"/api")
			req.Header.Set("Cookie", cookie)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 200 {
			t.Errorf("a request got %d", code)
		}
	}
}
