package proxy_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
)

// redisServer is a real redis-server on a loopback port, its data kept in
// an append-only file so that it survives a restart.
type redisServer struct {
	t     *testing.T
	bin   string
	dir   string
	addr  string
	cmd   *exec.Cmd
	extra []string // more arguments (a config file first, for a sentinel)
}

func startRedis(t *testing.T, extra ...string) *redisServer {
	t.Helper()
	rs := &redisServer{t: t, bin: need(t, "redis-server"), dir: t.TempDir(), extra: extra}
	ln := listen(t)
	rs.addr = ln.Addr().String()
	ln.Close()
	rs.start()
	t.Cleanup(rs.stop)
	return rs
}

func (rs *redisServer) start() {
	rs.t.Helper()
	_, port, _ := net.SplitHostPort(rs.addr)
	args := []string{"--port", port, "--bind", "127.0.0.1", "--dir", rs.dir}
	if len(rs.extra) > 0 && !strings.HasPrefix(rs.extra[0], "--") {
		args = append([]string{rs.extra[0]}, args...) // the config file comes first
		args = append(args, rs.extra[1:]...)
	} else {
		args = append(args, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
		args = append(args, rs.extra...)
	}
	rs.cmd = exec.Command(rs.bin, args...)
	if err := rs.cmd.Start(); err != nil {
		rs.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if rs.command("PING") == "+PONG" {
			return
		}
		if time.Now().After(deadline) {
			rs.t.Fatal("redis-server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (rs *redisServer) stop() {
	if rs.cmd == nil {
		return
	}
	rs.cmd.Process.Signal(syscall.SIGTERM)
	rs.cmd.Wait()
	rs.cmd = nil
}

func readRESP(t *testing.T, r *bufio.Reader) []string {
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	line = strings.TrimRight(line, "\r\n")
	switch line[0] {
	case '+', ':', '-':
		return []string{line[1:]}
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return []string{""}
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatal(err)
		}
		return []string{string(b[:n])}
	case '*':
		n, _ := strconv.Atoi(line[1:])
		var out []string
		for range n {
			out = append(out, readRESP(t, r)...)
		}
		return out
	}
	t.Fatalf("unexpected RESP line %q", line)
	return nil
}

// useRedis configures the Redis store at rs, with offline_access so that
// sessions hold refresh tokens.
func useRedis(rs *redisServer) func(*config.Config) {
	return func(c *config.Config) {
		c.Session.Store = "redis"
		c.Session.Redis = config.Redis{Address: rs.addr, KeyPrefix: "oidc-proxy:", Timeout: time.Second}
		c.OIDC.Scopes = []string{"openid", "profile", "email", "groups", "offline_access"}
	}
}

// redisStand is a stand with the Redis store, and a second replica of the
// proxy (same configuration and external URL) at replica.
func redisStand(t *testing.T, edits ...func(*config.Config)) (s *stand, rs *redisServer, replica string) {
	rs = startRedis(t)
	edit := func(c *config.Config) {
		useRedis(rs)(c)
		for _, e := range edits {
			e(c)
		}
	}
	s = newStand(t, edit, nil)
	return s, rs, s.replica(edit)
}

// replica serves another proxy with the stand's external URL and returns
// its address; it shares the stand's clock, OP and upstream.
func (s *stand) replica(edit func(*config.Config)) string {
	s.t.Helper()
	ln := listen(s.t)
	p := s.serveProxy(ln, s.url, edit)
	deadline := time.Now().Add(10 * time.Second)
	for !p.Ready() {
		if time.Now().After(deadline) {
			s.t.Fatal("replica never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "http://" + ln.Addr().String()
}

// get sends a request with a cookie header to base+path.
func get(t *testing.T, base, path, cookie string) (*http.Response, string) {
	t.Helper()
	req := mustReq(http.MethodGet, base+path)
	req.Header.Set("Cookie", cookie)
	return do(t, noRedirect(http.DefaultClient), req)
}

// eventually retries check for up to 3 s.
func eventually(t *testing.T, what string, check func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !check(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

func TestRedisSessionIsATicket(t *testing.T) {
	s, rs, replica := redisStand(t, func(c *config.Config) {
		c.Headers = map[string]string{"Remote-User": "preferred_username", "Remote-Groups": "groups"}
	})
	for i := range 500 {
		s.alice.Groups = append(s.alice.Groups, fmt.Sprintf("group-with-a-long-name-%03d", i))
	}
	c := s.signIn("/")
	cookie := cookieHeader(c, s.url)
	if len(cookie) > 300 || strings.Contains(cookie, "_1=") {
		t.Errorf("the ticket cookie is %d bytes: %s", len(cookie), cookie)
	}
	// Every replica knows the session, with all 500 groups.
	resp, body := get(t, replica, "/x", cookie)
	if resp.StatusCode != 200 || !strings.Contains(body, "hello alice") {
		t.Fatalf("replica: %d %s", resp.StatusCode, body)
	}
	if got := strings.Count(s.lastSeen().Header.Get("Remote-Groups"), ","); got != 501 {
		t.Errorf("groups through the replica: %d commas", got)
	}
	// Redis alone reveals nothing of the session.
	dump := rs.dump()
	for _, secret := range []string{"alice", "Alice", "example.com", "admins", "group-with", s.alice.Subject()} {
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
	c := s.signIn("/")
	cookie := cookieHeader(c, s.url)
	get(t, replica, "/warm", cookie) // both replicas have it cached
	s.alice.Name = "Alice Renewed"
	s.skew.Store(int64(4*time.Minute + 30*time.Second))
	burst(t, cookie, 50, s.url, replica)
	if n := refreshRequests(s); n != 1 {
		t.Errorf("%d refresh requests for 50 concurrent requests on 2 replicas, want 1", n)
	}
	s.mu.Lock()
	for _, r := range s.seen[len(s.seen)-50:] {
		if got := r.Header.Get("Remote-Name"); got != "Alice Renewed" {
			t.Errorf("a request went upstream as %q", got)
		}
	}
	s.mu.Unlock()
	// Later requests on either replica: renewed, no more token requests.
	for _, base := range []string{s.url, replica, s.url} {
		get(t, base, "/later", cookie)
		if got := s.lastSeen().Header.Get("Remote-Name"); got != "Alice Renewed" {
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
	c := s.signIn("/")
	cookie := cookieHeader(c, s.url)
	get(t, replica, "/warm", cookie)
	s.op.RevokeRefreshTokens()
	s.skew.Store(int64(4*time.Minute + 30*time.Second))
	if resp, _ := get(t, s.url, "/api", cookie); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("refused refresh: %d", resp.StatusCode)
	}
	eventually(t, "the replica still serves the ended session", func() bool {
		resp, _ := get(t, replica, "/api", cookie)
		return resp.StatusCode == http.StatusUnauthorized
	})
	if !strings.Contains(s.logs.String(), "refresh refused: session ended") {
		t.Errorf("no audit line")
	}
}

// TestRedisRefreshWithProviderDown keeps the session, with a warning.
func TestRedisRefreshWithProviderDown(t *testing.T) {
	s, _, replica := redisStand(t)
	c := s.signIn("/")
	cookie := cookieHeader(c, s.url)
	s.opDown.Store(true)
	s.skew.Store(int64(4*time.Minute + 30*time.Second))
	for _, base := range []string{s.url, replica} {
		if resp, body := get(t, base, "/x", cookie); resp.StatusCode != 200 || !strings.Contains(body, "hello alice") {
			t.Fatalf("%s with the provider down: %d", base, resp.StatusCode)
		}
	}
	if !strings.Contains(s.logs.String(), "refresh failed; the session goes on") {
		t.Errorf("no warning in the log")
	}
}

// TestRedisRestart: with Redis down, a signed-in user gets a clear 503
// (not a sign-in loop) and readyz fails; when Redis is back, the same
// session works again by itself.
func TestRedisRestart(t *testing.T) {
	s, rs, replica := redisStand(t)
	c := s.signIn("/")
	cookie := cookieHeader(c, s.url)
	get(t, replica, "/warm", cookie)
	rs.stop()
	for _, base := range []string{s.url, replica} {
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
	nc := s.browser()
	resp, _ := navigate(t, nc, s.url+"/")
	resp, body := login(t, nc, resp, "alice", alicePassword)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "cannot be stored") {
		t.Errorf("sign-in with Redis down: %d", resp.StatusCode)
	}
	rs.start()
	for _, base := range []string{s.url, replica} {
		eventually(t, base+" did not recover when Redis came back", func() bool {
			resp, _ := get(t, base, "/x", cookie)
			return resp.StatusCode == 200
		})
		if code := statusOf(t, http.DefaultClient, base+"/oauth2/readyz"); code != 200 {
			t.Errorf("%s readyz after Redis is back: %d", base, code)
		}
	}
	if !strings.Contains(s.logs.String(), "session store: lost Redis") {
		t.Errorf("no warning about Redis in the log")
	}
	metrics := func() string {
		rec := httptest.NewRecorder()
		s.proxy.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
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
	c := s.signIn("/")
	cookie := cookieHeader(c, s.url)
	get(t, replica, "/warm", cookie)
	if resp, _ := do(t, noRedirect(c), mustReq(http.MethodPost, s.url+"/oauth2/sign_out")); resp.StatusCode != http.StatusFound {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	for _, base := range []string{s.url, replica} {
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
	c := s.signIn("/")
	cookie := cookieHeader(c, s.url)
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
	if !strings.Contains(s.logs.String(), "does not open with the ticket") {
		t.Errorf("no log line for the tampered record")
	}
}

// TestRedisKeyRotation: a ticket cookie made with the old secret still
// works on a replica whose secrets list a new one first.
func TestRedisKeyRotation(t *testing.T) {
	s, rs, _ := redisStand(t)
	c := s.signIn("/")
	cookie := cookieHeader(c, s.url)
	rotated := s.replica(func(cfg *config.Config) {
		useRedis(rs)(cfg)
		cfg.Session.Secret = config.Secrets{"a-brand-new-secret-0123456789abcdef-0123", sessionSecret}
	})
	if resp, _ := get(t, rotated, "/x", cookie); resp.StatusCode != 200 {
		t.Errorf("old ticket after rotation: %d", resp.StatusCode)
	}
	dropped := s.replica(func(cfg *config.Config) {
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
	replica := s.replica(useRedis(rs))
	a := cookieHeader(signedInHostile(t, s), s.url)
	sidA := lastSID()
	b := cookieHeader(signedInHostile(t, s), s.url)
	for _, ck := range []string{a, b} {
		for _, base := range []string{s.url, replica} {
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
	for _, base := range []string{s.url, replica} {
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
	c := cookieHeader(signedInHostile(t, s), s.url)
	if resp, _ := get(t, replica, "/api", c); resp.StatusCode != 200 {
		t.Errorf("a new session after the logout: %d", resp.StatusCode)
	}
}

// TestRedisIdleTimeout: activity keeps a session with an idle timeout
// going on every replica; idleness ends it.
func TestRedisIdleTimeout(t *testing.T) {
	s, _, replica := redisStand(t, func(c *config.Config) { c.Session.IdleTimeout = 10 * time.Minute })
	c := s.signIn("/")
	cookie := cookieHeader(c, s.url)
	for _, step := range []struct {
		skew time.Duration
		base string
		want int
	}{
		{3 * time.Minute, s.url, 200},    // renews Seen in Redis
		{12 * time.Minute, replica, 200}, // 9 minutes after that
		{23 * time.Minute, s.url, http.StatusUnauthorized},
	} {
		s.skew.Store(int64(step.skew))
		if resp, _ := get(t, step.base, "/x", cookie); resp.StatusCode != step.want {
			t.Errorf("after %s at %s: %d, want %d", step.skew, step.base, resp.StatusCode, step.want)
		}
	}
}

// TestRedisRoundTrips: a session cached and valid costs no Redis command;
// a replica that has not seen it yet reads it once.
func TestRedisRoundTrips(t *testing.T) {
	s, rs, replica := redisStand(t)
	c := s.signIn("/")
	cookie := cookieHeader(c, s.url)
	get(t, s.url, "/warm", cookie)
	time.Sleep(100 * time.Millisecond) // the sign-in's announcement is handled
	rs.commands()
	for range 100 {
		get(t, s.url, "/x", cookie)
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
	sum := sha256.Sum256([]byte(s.alice.Subject()))
	index := "oidc-proxy:sub:" + hex.EncodeToString(sum[:16])
	var browsers []*http.Client
	for range 3 {
		browsers = append(browsers, s.signIn("/"))
	}
	do(t, noRedirect(browsers[0]), mustReq(http.MethodPost, s.url+"/oauth2/sign_out"))
	if n := rs.command("SCARD", index); n != ":2" {
		t.Fatalf("after 3 sign-ins and 1 sign-out the index holds %s", n)
	}
	for i := range 40 { // sessions that expired
		rs.command("SADD", index, fmt.Sprintf("%032x", i))
	}
	s.signIn("/")
	if n := rs.command("SCARD", index); n != ":3" {
		t.Errorf("after expired sessions and a new sign-in the index holds %s, want 3", n)
	}
	for _, c := range browsers[1:] {
		if code := statusOf(t, c, s.url+"/api"); code != 200 {
			t.Errorf("a live session was pruned: %d", code)
		}
	}
}

func freeLoopbackPort(t *testing.T) string {
	ln := listen(t)
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestRedisTopologies: the Redis store through Sentinel and through a
// Redis Cluster of three masters, all real redis-server processes: sign-in,
// a second replica, refresh, and sign-out everywhere.
func TestRedisTopologies(t *testing.T) {
	t.Run("sentinel", func(t *testing.T) {
		master := startRedis(t)
		_, mport, _ := net.SplitHostPort(master.addr)
		conf := filepath.Join(t.TempDir(), "sentinel.conf")
		os.WriteFile(conf, []byte("sentinel monitor mymaster 127.0.0.1 "+mport+" 1\n"), 0o600)
		sentinel := startRedis(t, conf, "--sentinel")
		eventually(t, "the sentinel does not know the master", func() bool {
			return strings.Contains(sentinel.bulk("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"), mport)
		})
		topologyCheck(t, master, func(c *config.Config) {
			c.Session.Redis = config.Redis{Addresses: []string{sentinel.addr}, MasterName: "mymaster", KeyPrefix: "oidc-proxy:", Timeout: time.Second}
		})
	})
	t.Run("cluster", func(t *testing.T) {
		var nodes []*redisServer
		for range 3 {
			nodes = append(nodes, startRedis(t, "--cluster-enabled", "yes", "--cluster-port", freeLoopbackPort(t),
				"--cluster-config-file", "nodes.conf"))
		}
		ranges := [][2]string{{"0", "5460"}, {"5461", "10922"}, {"10923", "16383"}}
		for i, n := range nodes {
			if got := n.command("CLUSTER", "ADDSLOTSRANGE", ranges[i][0], ranges[i][1]); got != "+OK" {
				t.Fatalf("ADDSLOTSRANGE: %s", got)
			}
		}
		for _, n := range nodes[1:] {
			host, port, _ := net.SplitHostPort(n.addr)
			busPort := strings.Fields(strings.ReplaceAll(n.bulk("CONFIG", "GET", "cluster-port"), "\n", " "))
			if got := nodes[0].command("CLUSTER", "MEET", host, port, busPort[len(busPort)-1]); got != "+OK" {
				t.Fatalf("MEET: %s", got)
			}
		}
		for _, n := range nodes {
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(n.bulk("CLUSTER", "INFO"), "cluster_state:ok") {
				if time.Now().After(deadline) {
					t.Fatalf("the cluster did not form: %s", n.bulk("CLUSTER", "INFO"))
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		// With the README's ACL user on every node (plus CLUSTER SLOTS, as
		// the README says for a cluster: without it the sign-in is a 503).
		for _, n := range nodes {
			if got := n.command("ACL", "SETUSER", "oidc-proxy", "on", ">proxy-password", "~oidc-proxy:*", "&oidc-proxy:*",
				"+@read", "+@write", "+@pubsub", "+@scripting", "+@connection", "-@dangerous", "+cluster|slots"); got != "+OK" {
				t.Fatalf("ACL SETUSER: %s", got)
			}
		}
		topologyCheck(t, nil, func(c *config.Config) {
			c.Session.Redis = config.Redis{Addresses: []string{nodes[0].addr}, Cluster: true, Username: "oidc-proxy", Password: "proxy-password",
				KeyPrefix: "oidc-proxy:", Timeout: time.Second}
		})
	})
}

// topologyCheck runs sign-in, refresh and sign-out against two replicas
// configured by redis; master, when known, must hold the session.
func topologyCheck(t *testing.T, master *redisServer, redis func(*config.Config)) {
	edit := func(c *config.Config) {
		c.Session.Store = "redis"
		c.OIDC.Scopes = []string{"openid", "profile", "email", "offline_access"}
		redis(c)
	}
	s := newStand(t, edit, nil)
	replica := s.replica(edit)
	c := s.signIn("/")
	cookie := cookieHeader(c, s.url)
	if resp, body := get(t, replica, "/x", cookie); resp.StatusCode != 200 || !strings.Contains(body, "hello alice") {
		t.Fatalf("replica: %d", resp.StatusCode)
	}
	if master != nil && !strings.Contains(master.bulk("KEYS", "oidc-proxy:s:*"), "oidc-proxy:s:") {
		t.Errorf("the master holds no session")
	}
	s.alice.Name = "Alice Renewed"
	s.skew.Store(int64(4*time.Minute + 30*time.Second))
	burst(t, cookie, 20, s.url, replica)
	if n := refreshRequests(s); n != 1 {
		t.Errorf("%d refresh requests, want 1", n)
	}
	do(t, noRedirect(c), mustReq(http.MethodPost, s.url+"/oauth2/sign_out"))
	eventually(t, "the replica still serves a signed-out session", func() bool {
		resp, _ := get(t, replica, "/api", cookie)
		return resp.StatusCode == http.StatusUnauthorized
	})
}

// redisConn is a plain RESP connection: the tests' own look into Redis.
type redisConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dial connects to rs, or returns nil when it does not answer.
func (rs *redisServer) dial() *redisConn {
	c, err := net.DialTimeout("tcp", rs.addr, time.Second)
	if err != nil {
		return nil
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	return &redisConn{t: rs.t, c: c, r: bufio.NewReader(c)}
}

// send writes one command.
func (c *redisConn) send(args ...string) *redisConn {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	c.c.Write([]byte(b.String()))
	return c
}

// reply reads one answer, arrays flattened.
func (c *redisConn) reply() []string { return readRESP(c.t, c.r) }

// command sends one command and returns the first line of the answer as
// Redis sent it ("+OK", ":2"...; "" when Redis cannot be reached).
func (rs *redisServer) command(args ...string) string {
	c := rs.dial()
	if c == nil {
		return ""
	}
	defer c.c.Close()
	line, _ := c.send(args...).r.ReadString('\n')
	return strings.TrimRight(line, "\r\n")
}

// bulk sends one command and returns its whole answer as text.
func (rs *redisServer) bulk(args ...string) string {
	c := rs.dial()
	if c == nil {
		return ""
	}
	defer c.c.Close()
	return strings.Join(c.send(args...).reply(), "\n")
}

// dump returns every key and its value, as strings or members, in one
// text: what someone holding a copy of Redis would see.
func (rs *redisServer) dump() string {
	c := rs.dial()
	if c == nil {
		rs.t.Fatal("Redis does not answer")
	}
	defer c.c.Close()
	var out strings.Builder
	for _, k := range c.send("KEYS", "*").reply() {
		out.WriteString(k + " = ")
		switch c.send("TYPE", k).reply()[0] {
		case "string":
			out.WriteString(strings.Join(c.send("GET", k).reply(), ""))
		case "set":
			out.WriteString(strings.Join(c.send("SMEMBERS", k).reply(), ","))
		}
		out.WriteString("\n")
	}
	return out.String()
}

// commands reports how many commands Redis processed since the last call,
// not counting connection handshakes (HELLO) and this call's own.
func (rs *redisServer) commands() int {
	c := rs.dial()
	if c == nil {
		rs.t.Fatal("Redis does not answer")
	}
	defer c.c.Close()
	info := c.send("INFO", "commandstats").reply()[0]
	c.send("CONFIG", "RESETSTAT").reply()
	n := 0
	for _, line := range strings.Split(info, "\r\n") {
		name, stats, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok || name == "hello" || name == "info" || name == "config|resetstat" {
			continue
		}
		calls, _, _ := strings.Cut(stats, ",")
		k, _ := strconv.Atoi(calls)
		n += k
	}
	return n
}

// TestRedisACL: the ACL the README gives the proxy's Redis user is enough
// for everything the proxy does (sign-in, a second replica, refresh with
// the lock, sign-out), and the default user is not needed.
func TestRedisACL(t *testing.T) {
	rs := startRedis(t)
	if got := rs.command("ACL", "SETUSER", "oidc-proxy", "on", ">proxy-password", "~oidc-proxy:*", "&oidc-proxy:*",
		"+@read", "+@write", "+@pubsub", "+@scripting", "+@connection", "-@dangerous"); got != "+OK" {
		t.Fatalf("ACL SETUSER: %s", got)
	}
	topologyCheck(t, nil, func(c *config.Config) {
		c.Session.Redis = config.Redis{Address: rs.addr, Username: "oidc-proxy", Password: "proxy-password", KeyPrefix: "oidc-proxy:", Timeout: time.Second}
	})
	if got := rs.command("ACL", "SETUSER", "default", "off"); got != "+OK" {
		t.Fatalf("ACL SETUSER default off: %s", got)
	}
	topologyCheck(t, nil, func(c *config.Config) {
		c.Session.Redis = config.Redis{Address: rs.addr, Username: "oidc-proxy", Password: "proxy-password", KeyPrefix: "oidc-proxy:", Timeout: time.Second}
	})
	// A wrong password is a store that cannot be reached: 503, not a
	// sign-in loop.
	s := newStand(t, func(c *config.Config) {
		c.Session.Store = "redis"
		c.Session.Redis = config.Redis{Address: rs.addr, Username: "oidc-proxy", Password: "wrong", KeyPrefix: "oidc-proxy:", Timeout: time.Second}
	}, nil)
	c := s.browser()
	resp, _ := navigate(t, c, s.url+"/")
	if resp, _ = login(t, c, resp, "alice", alicePassword); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("sign-in with a wrong Redis password: %d", resp.StatusCode)
	}
}
