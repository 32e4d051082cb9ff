package proxy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
)

func TestRedisSessionIsATicket(t *testing.T) {
	s, rs, replica := redisStand(t, func(c *config.Config) {
		c.Headers = map[string]string{"Remote-User": "preferred_username", "Remote-Groups": "groups"}
	})
	for i := range 500 {
		s.Alice.Groups = append(s.Alice.Groups, fmt.Sprintf("group-with-a-long-name-%03d", i))
	}
	c := s.SignIn("/")
	cookie := cookieHeader(c, s.URL)
	if len(cookie) > 300 || strings.Contains(cookie, "_1=") {
		t.Errorf("the ticket cookie is %d bytes: %s", len(cookie), cookie)
	}
	// Every replica knows the session, with all 500 groups.
	resp, body := get(t, replica, "/x", cookie)
	if resp.StatusCode != 200 || !strings.Contains(body, "hello alice") {
		t.Fatalf("replica: %d %s", resp.StatusCode, body)
	}
	if got := strings.Count(s.LastSeen().Header.Get("Remote-Groups"), ","); got != 501 {
		t.Errorf("groups through the replica: %d commas", got)
	}
	// Redis alone reveals nothing of the session.
	dump := rs.dump()
	for _, secret := range []string{"alice", "Alice", "example.com", "admins", "group-with", s.Alice.Subject()} {
		if strings.Contains(dump, secret) {
			t.Errorf("Redis holds %q in the clear", secret)
		}
	}
	if !strings.Contains(dump, "oidc-proxy:s:") || !strings.Contains(dump, "oidc-proxy:sub:") {
		t.Errorf("no session record or index in Redis:\n%.500s", dump)
	}
}

// TestRedisRefreshAcrossReplicas: 50 concurrent requests of one user, half
// through each replica, when the refresh is due: exactly one token request
// reaches the provider, none fails, all carry the renewed identity.
func TestRedisRefreshAcrossReplicas(t *testing.T) {
	s, _, replica := redisStand(t)
	c := s.SignIn("/")
	cookie := cookieHeader(c, s.URL)
	get(t, replica, "/warm", cookie) // both replicas have it cached
	s.Alice.Name = "Alice Renewed"
	s.Skew.Store(int64(4*time.Minute + 30*time.Second))
	burst(t, cookie, 50, s.URL, replica)
	if n := refreshRequests(s); n != 1 {
		t.Errorf("%d refresh requests for 50 concurrent requests on 2 replicas, want 1", n)
	}
	for _, r := range s.Seen.Since(s.SeenCount() - 50) {
		if got := r.Header.Get("Remote-Name"); got != "Alice Renewed" {
			t.Errorf("a request went upstream as %q", got)
		}
	}
	// Later requests on either replica: renewed, no more token requests.
	for _, base := range []string{s.URL, replica, s.URL} {
		get(t, base, "/later", cookie)
		if got := s.LastSeen().Header.Get("Remote-Name"); got != "Alice Renewed" {
			t.Errorf("%s later: %q", base, got)
		}
	}
	if n := refreshRequests(s); n != 1 {
		t.Errorf("%d refresh requests in all, want 1", n)
	}
}

// TestRedisRefreshRefusedEndsSession: the provider refuses the refresh
// token (the user was revoked); the session ends on every replica.
func TestRedisRefreshRefusedEndsSession(t *testing.T) {
	s, _, replica := redisStand(t)
	c := s.SignIn("/")
	cookie := cookieHeader(c, s.URL)
	get(t, replica, "/warm", cookie)
	s.OP.RevokeRefreshTokens()
	s.Skew.Store(int64(4*time.Minute + 30*time.Second))
	if resp, _ := get(t, s.URL, "/api", cookie); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("refused refresh: %d", resp.StatusCode)
	}
	eventually(t, "the replica still serves the ended session", func() bool {
		resp, _ := get(t, replica, "/api", cookie)
		return resp.StatusCode == http.StatusUnauthorized
	})
	if !strings.Contains(s.Logs.String(), "refresh refused: session ended") {
		t.Errorf("no audit line")
	}
}

// TestRedisRefreshWithProviderDown keeps the session, with a warning.
func TestRedisRefreshWithProviderDown(t *testing.T) {
	s, _, replica := redisStand(t)
	c := s.SignIn("/")
	cookie := cookieHeader(c, s.URL)
	s.OPDown.Store(true)
	s.Skew.Store(int64(4*time.Minute + 30*time.Second))
	for _, base := range []string{s.URL, replica} {
		if resp, body := get(t, base, "/x", cookie); resp.StatusCode != 200 || !strings.Contains(body, "hello alice") {
			t.Fatalf("%s with the provider down: %d", base, resp.StatusCode)
		}
	}
	if !strings.Contains(s.Logs.String(), "refresh failed; the session goes on") {
		t.Errorf("no warning in the log")
	}
}

// TestRedisRestart: with Redis down, a signed-in user gets a clear 503
// (not a sign-in loop) and readyz fails; when Redis is back, the same
// session works again by itself.
func TestRedisRestart(t *testing.T) {
	s, rs, replica := redisStand(t)
	c := s.SignIn("/")
	cookie := cookieHeader(c, s.URL)
	get(t, replica, "/warm", cookie)
	rs.stop()
	for _, base := range []string{s.URL, replica} {
		eventually(t, base+" went on serving from its cache with Redis down", func() bool {
			resp, _ := get(t, base, "/x", cookie)
			return resp.StatusCode == http.StatusServiceUnavailable
		})
		resp, body := navigate(t, noRedirect(c), base+"/page")
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "try again") || resp.Header.Get("Location") != "" {
			t.Errorf("%s page with Redis down: %d %q", base, resp.StatusCode, resp.Header.Get("Location"))
		}
		if strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), ";"), "Max-Age=0") {
			t.Errorf("%s cleared the cookie while Redis was down", base)
		}
		if code := statusOf(t, http.DefaultClient, base+"/oauth2/readyz"); code != http.StatusServiceUnavailable {
			t.Errorf("%s readyz with Redis down: %d", base, code)
		}
	}
	// A new sign-in meanwhile cannot be stored: a clear 503 at the callback.
	nc := s.Browser()
	resp, _ := navigate(t, nc, s.URL+"/")
	resp, body := login(t, nc, resp, "alice", alicePassword)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "cannot be stored") {
		t.Errorf("sign-in with Redis down: %d", resp.StatusCode)
	}
	rs.start()
	for _, base := range []string{s.URL, replica} {
		eventually(t, base+" did not recover when Redis came back", func() bool {
			resp, _ := get(t, base, "/x", cookie)
			return resp.StatusCode == 200
		})
		if code := statusOf(t, http.DefaultClient, base+"/oauth2/readyz"); code != 200 {
			t.Errorf("%s readyz after Redis is back: %d", base, code)
		}
	}
	if !strings.Contains(s.Logs.String(), "session store: lost Redis") {
		t.Errorf("no warning about Redis in the log")
	}
	metrics := func() string {
		rec := httptest.NewRecorder()
		s.Proxy.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return rec.Body.String()
	}
	start := time.Now()
	eventually(t, "the proxy did not subscribe to Redis's announcements again", func() bool {
		return strings.Contains(metrics(), "oidc_proxy_session_store_up 1")
	})
	t.Logf("subscribed again %s after the requests passed", time.Since(start))
	if m := metrics(); strings.Contains(m, "oidc_proxy_session_store_errors_total 0") {
		t.Errorf("store metrics after the outage:\n%s", grepLines(m, "session_store"))
	}
}

// TestRedisSignOutEverywhere: a copy of the cookie stops working on every
// replica once the user signs out on one.
func TestRedisSignOutEverywhere(t *testing.T) {
	s, _, replica := redisStand(t)
	c := s.SignIn("/")
	cookie := cookieHeader(c, s.URL)
	get(t, replica, "/warm", cookie)
	if resp, _ := do(t, noRedirect(c), mustReq(http.MethodPost, s.URL+"/oauth2/sign_out")); resp.StatusCode != http.StatusFound {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	for _, base := range []string{s.URL, replica} {
		eventually(t, base+" still serves a signed-out session", func() bool {
			resp, _ := get(t, base, "/api", cookie)
			return resp.StatusCode == http.StatusUnauthorized
		})
	}
}

// TestRedisTamperedRecord: a record that does not open with the ticket's
// key (someone wrote Redis) is no session; it is not a 503. (A replica
// that read the record before keeps what it read, until a change is
// announced.)
func TestRedisTamperedRecord(t *testing.T) {
	s, rs, replica := redisStand(t)
	c := s.SignIn("/")
	cookie := cookieHeader(c, s.URL)
	for _, line := range strings.Split(rs.dump(), "\n") {
		if k, _, ok := strings.Cut(line, " = "); ok && strings.HasPrefix(k, "oidc-proxy:s:") {
			if got := rs.command("SET", k, strings.Repeat("x", 300)); got != "+OK" {
				t.Fatalf("SET: %q", got)
			}
		}
	}
	resp, _ := get(t, replica, "/api", cookie)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a tampered record: %d", resp.StatusCode)
	}
	if !strings.Contains(s.Logs.String(), "does not open with the ticket") {
		t.Errorf("no log line for the tampered record")
	}
}

// TestRedisKeyRotation: a ticket cookie made with the old secret still
// works on a replica whose secrets list a new one first.
func TestRedisKeyRotation(t *testing.T) {
	s, rs, _ := redisStand(t)
	c := s.SignIn("/")
	cookie := cookieHeader(c, s.URL)
	rotated := replicaOf(s, func(cfg *config.Config) {
		useRedis(rs)(cfg)
		cfg.Session.Secret = config.Secrets{"a-brand-new-secret-0123456789abcdef-0123", sessionSecret}
	})
	if resp, _ := get(t, rotated, "/x", cookie); resp.StatusCode != 200 {
		t.Errorf("old ticket after rotation: %d", resp.StatusCode)
	}
	dropped := replicaOf(s, func(cfg *config.Config) {
		useRedis(rs)(cfg)
		cfg.Session.Secret = config.Secrets{"a-brand-new-secret-0123456789abcdef-0123"}
	})
	if resp, _ := get(t, dropped, "/x", cookie); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("ticket after its secret was dropped: %d", resp.StatusCode)
	}
}

// TestRedisBackchannelLogout: a logout token posted to one replica ends
// the sessions of that subject, or of that sid, on every replica; the
// same token posted again, to the other replica, is a replay.
func TestRedisBackchannelLogout(t *testing.T) {
	rs := startRedis(t)
	s, op, lastSID := sidStand(t, useRedis(rs))
	replica := replicaOf(s, useRedis(rs))
	a := cookieHeader(signedInHostile(t, s), s.URL)
	sidA := lastSID()
	b := cookieHeader(signedInHostile(t, s), s.URL)
	for _, ck := range []string{a, b} {
		for _, base := range []string{s.URL, replica} {
			if resp, _ := get(t, base, "/warm", ck); resp.StatusCode != 200 {
				t.Fatalf("%s before the logout: %d", base, resp.StatusCode)
			}
		}
	}
	byID := logoutClaims(op, "jti-sid")
	delete(byID, "sub")
	byID["sid"] = sidA
	if code := postLogout(t, s, op.sign(byID)); code != 200 {
		t.Fatalf("logout by sid refused: %d", code)
	}
	eventually(t, "the replica still serves the session of the logged-out sid", func() bool {
		resp, _ := get(t, replica, "/api", a)
		return resp.StatusCode == http.StatusUnauthorized
	})
	if resp, _ := get(t, replica, "/api", b); resp.StatusCode != 200 {
		t.Errorf("the user's other session ended with the sid: %d", resp.StatusCode)
	}
	token := op.sign(logoutClaims(op, "jti-sub"))
	if code := postLogout(t, s, token); code != 200 {
		t.Fatalf("logout by subject refused: %d", code)
	}
	for _, base := range []string{s.URL, replica} {
		eventually(t, base+" still serves a session of the logged-out subject", func() bool {
			resp, _ := get(t, base, "/api", b)
			return resp.StatusCode == http.StatusUnauthorized
		})
	}
	resp, err := http.PostForm(replica+"/oauth2/backchannel_logout", url.Values{"logout_token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("the token replayed at the other replica: %d", resp.StatusCode)
	}
	// A new sign-in after the logout works everywhere.
	c := cookieHeader(signedInHostile(t, s), s.URL)
	if resp, _ := get(t, replica, "/api", c); resp.StatusCode != 200 {
		t.Errorf("a new session after the logout: %d", resp.StatusCode)
	}
}

// TestRedisIdleTimeout: activity keeps a session with an idle timeout
// going on every replica; idleness ends it.
func TestRedisIdleTimeout(t *testing.T) {
	s, _, replica := redisStand(t, func(c *config.Config) { c.Session.IdleTimeout = 10 * time.Minute })
	c := s.SignIn("/")
	cookie := cookieHeader(c, s.URL)
	for _, step := range []struct {
		skew time.Duration
		base string
		want int
	}{
		{3 * time.Minute, s.URL, 200},    // renews Seen in Redis
		{12 * time.Minute, replica, 200}, // 9 minutes after that
		{23 * time.Minute, s.URL, http.StatusUnauthorized},
	} {
		s.Skew.Store(int64(step.skew))
		if resp, _ := get(t, step.base, "/x", cookie); resp.StatusCode != step.want {
			t.Errorf("after %s at %s: %d, want %d", step.skew, step.base, resp.StatusCode, step.want)
		}
	}
}

// TestRedisRoundTrips: a session cached and valid costs no Redis command;
// a replica that has not seen it yet reads it once.
func TestRedisRoundTrips(t *testing.T) {
	s, rs, replica := redisStand(t)
	c := s.SignIn("/")
	cookie := cookieHeader(c, s.URL)
	get(t, s.URL, "/warm", cookie)
	time.Sleep(100 * time.Millisecond) // the sign-in's announcement is handled
	rs.commands()
	for range 100 {
		get(t, s.URL, "/x", cookie)
	}
	if n := rs.commands(); n != 0 {
		t.Errorf("100 requests of a cached session cost %d Redis commands", n)
	}
	for range 100 {
		get(t, replica, "/x", cookie)
	}
	if n := rs.commands(); n != 1 {
		t.Errorf("100 requests at a replica that had not seen the session cost %d Redis commands, want 1", n)
	}
}

// TestRedisIndexStaysSmall: the index of a subject's sessions (for
// back-channel logout) loses signed-out sessions at once and expired ones
// once it grows, so a user signing in every day does not grow it forever.
func TestRedisIndexStaysSmall(t *testing.T) {
	s, rs, _ := redisStand(t)
	sum := sha256.Sum256([]byte(s.Alice.Subject()))
	index := "oidc-proxy:sub:" + hex.EncodeToString(sum[:16])
	var browsers []*http.Client
	for range 3 {
		browsers = append(browsers, s.SignIn("/"))
	}
	do(t, noRedirect(browsers[0]), mustReq(http.MethodPost, s.URL+"/oauth2/sign_out"))
	if n := rs.command("SCARD", index); n != ":2" {
		t.Fatalf("after 3 sign-ins and 1 sign-out the index holds %s", n)
	}
	for i := range 40 { // sessions that expired
		rs.command("SADD", index, fmt.Sprintf("%032x", i))
	}
	s.SignIn("/")
	if n := rs.command("SCARD", index); n != ":3" {
		t.Errorf("after expired sessions and a new sign-in the index holds %s, want 3", n)
	}
	for _, c := range browsers[1:] {
		if code := statusOf(t, c, s.URL+"/api"); code != 200 {
			t.Errorf("a live session was pruned: %d", code)
		}
	}
}

// TestRedisLastSeenWrites: a session's last seen costs at most one Redis
// write a minute on each replica, in the background: 100 cached requests
// in a minute write nothing, and 100 more a minute later one SET each
// replica; the devices list then shows it.
func TestRedisLastSeenWrites(t *testing.T) {
	s, rs, replica := redisStand(t)
	c := s.SignIn("/")
	cookie := cookieHeader(c, s.URL)
	get(t, s.URL, "/warm", cookie)
	get(t, replica, "/warm", cookie)
	time.Sleep(100 * time.Millisecond)
	rs.commands()
	for range 100 {
		get(t, s.URL, "/x", cookie)
	}
	if n := rs.commands(); n != 0 {
		t.Errorf("100 cached requests within the first minute cost %d Redis commands", n)
	}
	s.Skew.Store(int64(61 * time.Second))
	for range 50 {
		get(t, s.URL, "/x", cookie)
		get(t, replica, "/x", cookie)
	}
	time.Sleep(200 * time.Millisecond) // the background writer
	if n := rs.commands(); n != 2 {
		t.Errorf("100 requests a minute later cost %d Redis commands, want 2 (one last-seen write per replica)", n)
	}
	if v := rs.bulk("KEYS", "oidc-proxy:seen:*"); !strings.Contains(v, "oidc-proxy:seen:") {
		t.Errorf("no last-seen record: %q", v)
	}
}
