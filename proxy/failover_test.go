package proxy_test

import (
	"fmt"
	"net"
	"net/http"
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
// both data servers. Sentinel declares a master down after 1 s.
type sentinelRig struct {
	t         *testing.T
	servers   []*redisServer // the two data servers, master first at start
	sentinels []*redisServer
}

const rigMaster = "sessions"

func startSentinelRig(t *testing.T) *sentinelRig {
	t.Helper()
	need(t, "redis-sentinel")
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
			"sentinel down-after-milliseconds %[1]s 1000\nsentinel failover-timeout %[1]s 5000\n", rigMaster, mport)), 0o600)
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
		for _, sen := range g.sentinels {
			if !strings.Contains(strings.ReplaceAll(sen.bulk("SENTINEL", "GET-MASTER-ADDR-BY-NAME", rigMaster), "\n", ":"), m.addr) {
				return false
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
	var sentinels []string
	for _, s := range g.sentinels {
		sentinels = append(sentinels, s.addr)
	}
	edit := func(c *config.Config) {
		c.Session.Store = "redis"
		c.Session.Redis = config.Redis{Addresses: sentinels, MasterName: rigMaster, Username: "oidc-proxy", Password: "proxy-password",
			KeyPrefix: "oidc-proxy:", Timeout: timeout}
		c.OIDC.Scopes = []string{"openid", "profile", "email", "groups", "offline_access"}
	}
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
		for _, base := range bases {
			eventuallyWithin(t, 10*time.Second, what+": the session does not work on "+base, func() bool {
				resp, _ := get(t, base, "/api/check", cookie)
				return resp.StatusCode == http.StatusOK
			})
		}
	}
	refused := func(what, cookie string) {
		t.Helper()
		for _, base := range bases {
			eventuallyWithin(t, 10*time.Second, what+": the signed-out session still works on "+base, func() bool {
				resp, _ := get(t, base, "/api/check", cookie)
				return resp.StatusCode == http.StatusUnauthorized
			})
		}
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
		c3 = signIn("alice", alicePassword)
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
