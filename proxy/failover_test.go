package proxy_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// sentinelRig is a real Redis Sentinel group on loopback: a master, a
// replica and three sentinels (quorum 2), with the README's ACL user on
// both data servers. Sentinel declares a master down after 2.5 s (1 s
// made a loaded CI machine fail over on its own now and then, promoting a
// replica that had just restarted from its stale file: a Sentinel hazard,
// not the proxy's). A sentinel that lost a failover's election may try
// again 10 s later (twice failover-timeout): waitHealthy lets that pass.
type sentinelRig struct {
	t         *testing.T
	failedAt  time.Time      // the last failover began
	servers   []*redisServer // the two data servers, master first at start
	sentinels []*redisServer
}

const rigMaster = "sessions"

func startSentinelRig(t *testing.T) *sentinelRig {
	t.Helper()
	g := &sentinelRig{t: t}
	m := startRedis(t, "--repl-diskless-sync-delay", "0")
	_, mport, _ := net.SplitHostPort(m.addr)
	r := startRedis(t, "--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", mport)
	g.servers = []*redisServer{m, r}
	for _, s := range g.servers {
		g.acl(s)
	}
	for range 3 {
		conf := filepath.Join(t.TempDir(), "sentinel.conf")
		os.WriteFile(conf, []byte(fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 2\n"+
			"sentinel down-after-milliseconds %[1]s 2500\nsentinel failover-timeout %[1]s 5000\n", rigMaster, mport)), 0o600)
		g.sentinels = append(g.sentinels, startRedis(t, conf, "--sentinel"))
	}
	g.waitHealthy()
	return g
}

// acl adds the README's user for the proxy (with +info, which Sentinel
// needs) to s: ACLs are not replicated.
func (g *sentinelRig) acl(s *redisServer) {
	if got := s.command("ACL", "SETUSER", "oidc-proxy", "on", ">proxy-password", "~oidc-proxy:*", "&oidc-proxy:*",
		"+@read", "+@write", "+@pubsub", "+@scripting", "+@connection", "-@dangerous", "+info"); got != "+OK" {
		g.t.Fatalf("ACL SETUSER: %s", got)
	}
}

// store configures the proxy's Redis store on the rig (the README's ACL
// user, every Redis step bounded by timeout), with offline_access so that
// sessions hold refresh tokens.
func (g *sentinelRig) store(timeout time.Duration) func(*config.Config) {
	var sentinels []string
	for _, s := range g.sentinels {
		sentinels = append(sentinels, s.addr)
	}
	return func(c *config.Config) {
		c.Session.Store = "redis"
		c.Session.Redis = config.Redis{Addresses: sentinels, MasterName: rigMaster, Username: "oidc-proxy", Password: "proxy-password",
			KeyPrefix: "oidc-proxy:", Timeout: timeout}
		c.OIDC.Scopes = []string{"openid", "profile", "email", "groups", "offline_access"}
	}
}

// master is the data server the sentinels name now.
func (g *sentinelRig) master() *redisServer {
	for _, sen := range g.sentinels {
		addr := strings.ReplaceAll(sen.bulk("SENTINEL", "GET-MASTER-ADDR-BY-NAME", rigMaster), "\n", ":")
		for _, s := range g.servers {
			if s.addr == addr {
				return s
			}
		}
	}
	return nil
}

func (g *sentinelRig) other(s *redisServer) *redisServer {
	if g.servers[0] == s {
		return g.servers[1]
	}
	return g.servers[0]
}

// waitHealthy waits until every sentinel names the same master, which has
// its replica connected, and the sentinels see that replica up: ready for
// the next failover.
func (g *sentinelRig) waitHealthy() *redisServer {
	g.t.Helper()
	var m *redisServer
	eventuallyWithin(g.t, 40*time.Second, "the Sentinel group did not settle", func() bool {
		m = g.master()
		if m == nil || !strings.Contains(m.bulk("INFO", "replication"), "connected_slaves:1") ||
			!strings.Contains(g.other(m).bulk("INFO", "replication"), "master_link_status:up") {
			return false
		}
		if time.Since(g.failedAt) < 11*time.Second { // no sentinel's retry left
			return false
		}
		for _, sen := range g.sentinels {
			if !strings.Contains(strings.ReplaceAll(sen.bulk("SENTINEL", "GET-MASTER-ADDR-BY-NAME", rigMaster), "\n", ":"), m.addr) {
				return false
			}
			if flags := sen.bulk("SENTINEL", "MASTER", rigMaster); !strings.Contains(flags, "flags\nmaster\n") {
				return false // down, or failing over, to this sentinel
			}
			reps := sen.bulk("SENTINEL", "REPLICAS", rigMaster)
			if !strings.Contains(reps, "\nslave\n") || strings.Contains(reps, "s_down") || strings.Contains(reps, "disconnected") {
				return false
			}
		}
		return true
	})
	return m
}

// failover starts a failover: planned (SENTINEL FAILOVER) or by killing
// the master. It returns the old master.
func (g *sentinelRig) failover(kill bool) *redisServer {
	g.t.Helper()
	old := g.master()
	g.failedAt = time.Now()
	if kill {
		old.cmd.Process.Signal(syscall.SIGKILL)
		old.cmd.Wait()
		old.cmd = nil
		return old
	}
	if got := g.sentinels[0].command("SENTINEL", "FAILOVER", rigMaster); got != "+OK" {
		g.t.Fatalf("SENTINEL FAILOVER: %s", got)
	}
	return old
}

// waitSwitched waits until the sentinels name a master other than old,
// and that server says it is a master.
func (g *sentinelRig) waitSwitched(old *redisServer) *redisServer {
	g.t.Helper()
	var m *redisServer
	eventuallyWithin(g.t, 30*time.Second, "the sentinels did not name a new master", func() bool {
		m = g.master()
		return m != nil && m != old && strings.Contains(m.bulk("ROLE"), "master")
	})
	return m
}

// recover brings a killed master back as a replica of the new one.
func (g *sentinelRig) recover(old *redisServer) {
	g.t.Helper()
	if old.cmd != nil {
		return
	}
	_, port, _ := net.SplitHostPort(g.other(old).addr)
	old.extra = []string{"--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", port}
	old.start()
	g.acl(old)
}

// answers waits, within d, until every replica at bases answers a request
// with cookie with status; msg says what went wrong when one does not.
func answers(t *testing.T, bases []string, cookie string, status int, d time.Duration, msg string) {
	t.Helper()
	for _, base := range bases {
		eventuallyWithin(t, d, msg+" on "+base, func() bool {
			resp, _ := get(t, base, "/api/check", cookie)
			return resp.StatusCode == status
		})
	}
}

func eventuallyWithin(t *testing.T, d time.Duration, msg string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// load sends a signed-in user's requests to both replicas, about 200 a
// second, and records what came back.
type load struct {
	mu      sync.Mutex
	codes   map[string]int // "200", "503 with Retry-After", anything else as it is
	slowest time.Duration
	stop    chan struct{}
	done    sync.WaitGroup
}

func startLoad(t *testing.T, cookie string, bases ...string) *load {
	l := &load{codes: map[string]int{}, stop: make(chan struct{})}
	for _, base := range bases {
		l.done.Go(func() {
			client := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				req := mustReq(http.MethodGet, base+"/api/load")
				req.Header.Set("Cookie", cookie)
				start := time.Now()
				resp, err := client.Do(req)
				took := time.Since(start)
				what := "error"
				if err == nil {
					resp.Body.Close()
					what = fmt.Sprint(resp.StatusCode)
					if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" {
						what = "503 with Retry-After"
					}
				}
				l.mu.Lock()
				l.codes[what]++
				l.slowest = max(l.slowest, took)
				l.mu.Unlock()
			}
		})
	}
	t.Cleanup(l.end)
	return l
}

func (l *load) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

// check fails the test for any answer other than 200 or a 503 with
// Retry-After, or a request slower than bound, and starts counting anew.
func (l *load) check(t *testing.T, what string, bound time.Duration) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for code, n := range l.codes {
		if code != "200" && code != "503 with Retry-After" {
			t.Errorf("%s: %d load request(s) got %s", what, n, code)
		}
	}
	if l.codes["200"] == 0 {
		t.Errorf("%s: no load request succeeded: %v", what, l.codes)
	}
	if l.slowest > bound {
		t.Errorf("%s: a load request took %v, over the bound %v", what, l.slowest, bound)
	}
	t.Logf("%s: load %v, slowest %v", what, l.codes, l.slowest.Round(time.Millisecond))
	l.codes, l.slowest = map[string]int{}, 0
}

// TestRedisFailoverLosesNothing: two proxy replicas on a real Sentinel
// group (master, replica, three sentinels), a signed-in user's requests
// on both all along, and the test provider with Authelia's rotation and
// reuse detection. A refresh, a sign-out and a sign-in are each timed
// into a failover, planned (SENTINEL FAILOVER) and unplanned (the master
// killed). After each: the refreshed session lives on through its next
// refresh (no refresh token is spent twice), the signed-out cookie is
// refused on both replicas, the new session works on both; the load saw
// only 200s and 503s with Retry-After, none slower than the bound, and
// nobody was sent to sign in.
func TestRedisFailoverLosesNothing(t *testing.T) {
	for _, kill := range []bool{false, true} {
		name := "planned"
		if kill {
			name = "master_killed"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			failoverJourney(t, kill)
		})
	}
}

func failoverJourney(t *testing.T, kill bool) {
	g := startSentinelRig(t)
	const timeout = time.Second
	// Every store step waits at most the timeout; a request that refreshes
	// takes at most four (lock, read, write, and the read of its cookie).
	bound := 4*timeout + time.Second
	edit := g.store(timeout)
	s := newStand(t, edit, func(o *opCfg) {
		o.Users = append(o.Users, &proxytest.OPUser{Username: "bob", Password: bobPassword, Name: "Bob", Email: "bob@example.com"})
	})
	replica := replicaOf(s, edit)
	bases := []string{s.URL, replica}
	step := int64(4*time.Minute + 30*time.Second)

	signIn := func(user, password string) string {
		t.Helper()
		c := s.Browser()
		resp, body := signInAs(s, c, "/", user, password)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello "+user) {
			t.Fatalf("sign-in of %s: %d %s", user, resp.StatusCode, body)
		}
		return cookieHeader(c, s.URL)
	}
	works := func(what, cookie string) {
		t.Helper()
		answers(t, bases, cookie, http.StatusOK, 10*time.Second, what+": the session does not work")
	}
	refused := func(what, cookie string) {
		t.Helper()
		answers(t, bases, cookie, http.StatusUnauthorized, 10*time.Second, what+": the signed-out session still works")
	}
	hookOnce := func(grant string, during func()) (fired chan struct{}) {
		fired = make(chan struct{})
		var once sync.Once
		f := func(g string) {
			if g == grant {
				once.Do(func() { during(); close(fired) })
			}
		}
		s.OP.OnToken.Store(&f)
		return fired
	}

	alice := signIn("alice", alicePassword)
	s.Skew.Add(step) // alice's refresh is due; bob signs in after it
	bob := signIn("bob", bobPassword)
	l := startLoad(t, bob, bases...)
	time.Sleep(300 * time.Millisecond)

	// 1. A refresh whose answer comes back after the failover began: the
	// provider has rotated the token, and the proxy stores the new one.
	var old *redisServer
	fired := hookOnce("refresh_token", func() {
		old = g.failover(kill)
		if !kill {
			g.waitSwitched(old) // the old master is still up, and takes writes
		}
	})
	if resp, _ := get(t, s.URL, "/api/refresh", alice); resp.StatusCode != http.StatusOK {
		for _, srv := range g.servers {
			t.Logf("%s %s:\n%s", srv.addr, srv.bulk("ROLE"), srv.bulk("KEYS", "*"))
		}
		t.Fatalf("the refresh timed into the failover: %d", resp.StatusCode)
	}
	<-fired
	g.waitSwitched(old)
	works("after the refresh", alice)
	g.recover(old)
	g.waitHealthy()
	s.Skew.Add(step) // alice's and bob's next refresh: alice's spends the stored token
	works("the next refresh", alice)
	works("the next refresh", bob)
	if n := s.OP.RefreshReplays.Load(); n != 0 {
		t.Fatalf("%d refresh token(s) spent twice: the provider revoked the session", n)
	}
	l.check(t, "refresh", bound)

	// 2. A sign-out while the failover runs.
	c2 := signIn("alice", alicePassword)
	old = g.failover(kill)
	resp, _ := do(t, noRedirect(http.DefaultClient), func() *http.Request {
		req := mustReq(http.MethodPost, s.URL+"/oauth2/sign_out")
		req.Header.Set("Cookie", c2)
		return req
	}())
	if resp.StatusCode != http.StatusFound {
		t.Errorf("sign-out during the failover: %d", resp.StatusCode)
	}
	if resp, _ := get(t, s.URL, "/api/check", c2); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the replica that signed the user out still serves the session: %d", resp.StatusCode)
	}
	g.waitSwitched(old)
	refused("sign-out", c2)
	g.recover(old)
	g.waitHealthy()
	refused("sign-out, once the old master is a replica", c2)
	l.check(t, "sign-out", bound)

	// 3. A sign-in whose code is exchanged while the failover runs: it
	// completes, or answers 503 with Retry-After and the next try does.
	fired = hookOnce("authorization_code", func() {
		old = g.failover(kill)
		if !kill {
			g.waitSwitched(old)
		}
	})
	c := s.Browser()
	resp, body := signInAs(s, c, "/", "alice", alicePassword)
	<-fired
	g.waitSwitched(old)
	var c3 string
	switch {
	case resp.StatusCode == http.StatusOK && strings.Contains(body, "hello alice"):
		c3 = cookieHeader(c, s.URL)
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		t.Logf("the sign-in during the failover: 503 with Retry-After; signing in again")
		// The proxies' Redis clients follow within the sentinels' own
		// gossip (about 2 s); until then a sign-in may get 503 again.
		eventuallyWithin(t, 10*time.Second, "no sign-in after the failover", func() bool {
			c := s.Browser()
			resp, body := signInAs(s, c, "/", "alice", alicePassword)
			if resp.StatusCode == http.StatusOK && strings.Contains(body, "hello alice") {
				c3 = cookieHeader(c, s.URL)
				return true
			}
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("a sign-in after the failover: %d %.300s", resp.StatusCode, body)
			}
			return false
		})
	default:
		t.Fatalf("the sign-in during the failover: %d %.300s", resp.StatusCode, body)
	}
	works("the new session", c3)
	g.recover(old)
	g.waitHealthy()
	works("the new session, once the old master is a replica", c3)
	works("the first session", alice)
	l.check(t, "sign-in", bound)

	l.end()
	logs := s.Logs.String()
	if !strings.Contains(logs, "the sentinels named a new Redis master") {
		t.Errorf("no replica logged the failover")
	}
	if lines := grepLines(logs, "refresh failed"); lines != "" {
		t.Errorf("a refresh reported as failed:\n%s", lines)
	}
	if n := s.OP.RefreshReplays.Load(); n != 0 {
		t.Errorf("%d refresh token(s) spent twice", n)
	}
	var about []string
	for _, line := range strings.Split(logs, "\n") {
		for _, w := range []string{"session store", "Redis did not", "stored now", "refresh postponed", "sign-out"} {
			if strings.Contains(line, w) {
				about = append(about, line)
				break
			}
		}
	}
	t.Logf("log lines about the store:\n%s", strings.Join(about, "\n"))
}

// TestRedisRefreshLockLeftBehind: a refresh lock that a failed replica
// left in Redis (for a minute) does not hold requests: one whose refresh
// is due is served at once with the session as it is, no refresh token
// is spent, and once the lock is gone the next request refreshes.
func TestRedisRefreshLockLeftBehind(t *testing.T) {
	s, rs, replica := redisStand(t)
	c := s.SignIn("/")
	cookie := cookieHeader(c, s.URL)
	var record string
	for _, k := range strings.Split(rs.bulk("KEYS", "oidc-proxy:s:*"), "\n") {
		record = strings.TrimPrefix(k, "oidc-proxy:s:")
	}
	if got := rs.command("SET", "oidc-proxy:lock:"+record, "someone-else", "PX", "60000"); got != "+OK" {
		t.Fatalf("SET lock: %s", got)
	}
	s.Skew.Store(int64(4*time.Minute + 30*time.Second))
	for _, base := range []string{s.URL, replica} {
		start := time.Now()
		resp, body := get(t, base, "/api/locked", cookie)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello alice") {
			t.Fatalf("%s with the lock held elsewhere: %d %s", base, resp.StatusCode, body)
		}
		// The store's timeout is 1 s: the wait for the lock, and nothing more.
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("%s: the request waited %v for a lock held elsewhere", base, took)
		}
	}
	if n := refreshRequests(s); n != 0 {
		t.Errorf("%d refresh request(s) while another replica held the lock", n)
	}
	rs.command("DEL", "oidc-proxy:lock:"+record)
	time.Sleep(1100 * time.Millisecond) // the failed flight's outcome is kept for a second
	get(t, s.URL, "/api/unlocked", cookie)
	if n := refreshRequests(s); n != 1 {
		t.Errorf("%d refresh request(s) once the lock was gone, want 1", n)
	}
	if lines := grepLines(s.Logs.String(), "refresh failed"); lines != "" {
		t.Errorf("a lock held elsewhere was reported as a failure:\n%s", lines)
	}
}

// TestRealAutheliaRedisFailover: the failover journey with the real
// Authelia 4.39 (rotating refresh tokens of 200 s, reuse revoking the
// session) and two replicas on a real Sentinel group, under load: a
// refresh started as a planned failover begins, and one as the master
// is killed; each next refresh spends the token the one before stored
// (Authelia would refuse a spent one and end the session); a sign-out
// during a failover holds on both replicas; a sign-in during one gives a
// session that works on both.
func TestRealAutheliaRedisFailover(t *testing.T) {
	g := startSentinelRig(t)
	a := proxytest.StartAuthelia(t, proxytest.AutheliaOptions{
		Users: []proxytest.AutheliaUser{{Name: "alice", Password: alicePassword, DisplayName: "Alice", Email: "alice@example.test"}},
		Clients: []proxytest.AutheliaClient{{ID: "memos", Secret: realSecret, Lifespan: "medium",
			RedirectURIs: []string{"http://127.0.0.1/oauth2/callback"}}},
	})
	const timeout = time.Second
	sentinel := g.store(timeout)
	s := &stand{T: t, Logs: &syncBuffer{}}
	lnA, lnB := listen(t), listen(t)
	s.Issuer, s.URL = a.Issuer, "http://"+lnA.Addr().String()
	s.StartUpstream()
	yaml := fmt.Sprintf("external_url: %q\nupstream: %q\noidc:\n  issuer: %q\n  client_id: memos\n  client_secret: %q\nsession:\n  secret: %q\n",
		s.URL, s.Upstream.URL, a.Issuer, realSecret, sessionSecret)
	s.Proxy = realReplica(s, a, yaml, lnA, sentinel)
	replicaB := realReplica(s, a, yaml, lnB, sentinel)
	s.WaitReady()
	for !replicaB.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	urlB := "http://" + lnB.Addr().String()
	bases := []string{s.URL, urlB}
	signIn := func() string {
		t.Helper()
		c := a.Browser("")
		resp, body, err := a.SignIn(c, s.URL+"/", "alice", alicePassword)
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello alice") {
			t.Fatalf("sign-in: %v %v %.300s", err, resp, body)
		}
		return cookieHeader(c, s.URL)
	}
	refreshes := func(result string) int {
		n := 0
		for _, p := range []replica{s.Proxy, replicaB} {
			rec := httptest.NewRecorder()
			p.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			n += metricValue(rec.Body.String(), `oidc_proxy_refreshes_total{result="`+result+`"}`)
		}
		return n
	}
	works := func(what, cookie string) {
		t.Helper()
		answers(t, bases, cookie, http.StatusOK, 15*time.Second, what+": the session does not work")
	}

	alice := signIn()
	l := startLoad(t, alice, bases...)
	time.Sleep(300 * time.Millisecond)
	// Authelia's tokens live 200 s: a refresh is due 60 s before, and never
	// sooner than 30 s after the last one (on the proxy's clock, which
	// must stay within the tokens' life: the ID token is checked on it).
	var last time.Time
	for i, step := range []struct {
		kill bool
		skew time.Duration
	}{{false, 145 * time.Second}, {true, 185 * time.Second}} {
		s.Skew.Store(int64(step.skew))
		before := refreshes("success")
		old := g.failover(step.kill)
		last = time.Now()
		resp, _ := get(t, bases[i], fmt.Sprintf("/api/refresh/%d", i), alice)
		if resp.StatusCode != http.StatusOK && (resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "") {
			t.Fatalf("refresh %d into the failover: %d", i+1, resp.StatusCode)
		}
		g.waitSwitched(old)
		works(fmt.Sprintf("refresh %d", i+1), alice)
		eventuallyWithin(t, 40*time.Second, "the refresh did not happen", func() bool { return refreshes("success") > before })
		last = time.Now()
		g.recover(old)
		g.waitHealthy()
		l.check(t, fmt.Sprintf("refresh %d (master killed: %v)", i+1, step.kill), 4*timeout+time.Second)
	}
	// The last refresh spends the token stored in the killed master's
	// failover: due 215 s after it on the proxy's clock.
	time.Sleep(time.Until(last.Add(25 * time.Second)))
	s.Skew.Store(int64(192 * time.Second))
	before := refreshes("success")
	works("the last refresh", alice)
	if refreshes("success") != before+1 || refreshes("refused")+refreshes("failed") != 0 {
		t.Errorf("the last refresh: success %d → %d, refused %d, failed %d", before, refreshes("success"), refreshes("refused"), refreshes("failed"))
	}
	l.check(t, "the last refresh", 4*timeout+time.Second)
	l.end()

	// A sign-out while the master is killed.
	c2 := signIn()
	old := g.failover(true)
	req := mustReq(http.MethodPost, urlB+"/oauth2/sign_out")
	req.Header.Set("Cookie", c2)
	if resp, _ := do(t, noRedirect(http.DefaultClient), req); resp.StatusCode != http.StatusFound {
		t.Errorf("sign-out during the failover: %d", resp.StatusCode)
	}
	g.waitSwitched(old)
	answers(t, bases, c2, http.StatusUnauthorized, 15*time.Second, "the signed-out session still works")
	works("the other session", alice)

	// A sign-in while a planned failover runs: it completes, or answers
	// 503 with Retry-After and the next try does; the session works on
	// both replicas.
	g.recover(old)
	g.waitHealthy()
	old = g.failover(false)
	c3 := a.Browser("")
	resp, body, err := a.SignIn(c3, s.URL+"/", "alice", alicePassword)
	var fresh string
	switch {
	case err == nil && resp.StatusCode == http.StatusOK && strings.Contains(body, "hello alice"):
		fresh = cookieHeader(c3, s.URL)
	case err == nil && resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		g.waitSwitched(old)
		eventuallyWithin(t, 15*time.Second, "no sign-in after the failover", func() bool {
			c := a.Browser("")
			resp, body, err := a.SignIn(c, s.URL+"/", "alice", alicePassword)
			if err == nil && resp.StatusCode == http.StatusOK && strings.Contains(body, "hello alice") {
				fresh = cookieHeader(c, s.URL)
				return true
			}
			return false
		})
	default:
		t.Fatalf("a sign-in during the failover: %v %v %.300s", err, resp, body)
	}
	g.waitSwitched(old)
	works("the session signed in during the failover", fresh)
}
