package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
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
	return s, rs, replicaOf(s, edit)
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
	replica := replicaOf(s, edit)
	c := s.SignIn("/")
	cookie := cookieHeader(c, s.URL)
	if resp, body := get(t, replica, "/x", cookie); resp.StatusCode != 200 || !strings.Contains(body, "hello alice") {
		t.Fatalf("replica: %d", resp.StatusCode)
	}
	if master != nil && !strings.Contains(master.bulk("KEYS", "oidc-proxy:s:*"), "oidc-proxy:s:") {
		t.Errorf("the master holds no session")
	}
	s.Alice.Name = "Alice Renewed"
	s.Skew.Store(int64(4*time.Minute + 30*time.Second))
	burst(t, cookie, 20, s.URL, replica)
	if n := refreshRequests(s); n != 1 {
		t.Errorf("%d refresh requests, want 1", n)
	}
	do(t, noRedirect(c), mustReq(http.MethodPost, s.URL+"/oauth2/sign_out"))
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
	c := s.Browser()
	resp, _ := navigate(t, c, s.URL+"/")
	if resp, _ = login(t, c, resp, "alice", alicePassword); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("sign-in with a wrong Redis password: %d", resp.StatusCode)
	}
}
