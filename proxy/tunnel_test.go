package proxy_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
)

// laxUpstream is an upstream as careless as the h2c smuggling class
// needs: it answers 101 to any request that names an Upgrade (always:
// to any request at all), switching to whatever was asked, and then
// reads the connection as HTTP/1.1 again, recording every request that
// arrives through the tunnel.
type laxUpstream struct {
	always   bool
	mu       sync.Mutex
	tunneled []*http.Request
}

func (u *laxUpstream) handler(w http.ResponseWriter, r *http.Request) {
	up := r.Header.Get("Upgrade")
	if up == "" && !u.always {
		fmt.Fprintf(w, "hello %s", r.Header.Get("Remote-User"))
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	if up == "" {
		up = "h2c"
	}
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", up)
	rw.Flush()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	for {
		req, err := http.ReadRequest(rw.Reader)
		if err != nil {
			return
		}
		u.mu.Lock()
		u.tunneled = append(u.tunneled, req)
		u.mu.Unlock()
		fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\ntunneled")
		rw.Flush()
	}
}

func (u *laxUpstream) through() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.tunneled
}

// wsKeys are a valid WebSocket handshake's own headers.
const wsKeys = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

// refusedUpgrades are requests (their first line and upgrade headers)
// that must never switch a connection: every one of them is forwarded
// as a plain request, or refused.
var refusedUpgrades = []struct {
	name, head string
}{
	{"h2c with settings", "GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"},
	{"h2c without settings", "GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"},
	{"h2c upper case", "GET / HTTP/1.1\r\nUpgrade: H2C\r\nConnection: UPGRADE\r\n"},
	{"h2c on POST", "POST / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: keep-alive,upgrade\r\nContent-Length: 0\r\n"},
	{"h2c after websocket", "GET / HTTP/1.1\r\nUpgrade: websocket, h2c\r\nConnection: Upgrade\r\n" + wsKeys},
	{"h2c before websocket", "GET / HTTP/1.1\r\nUpgrade: h2c, websocket\r\nConnection: Upgrade\r\n" + wsKeys},
	{"two upgrade lines", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" + wsKeys},
	{"connection in two lines", "GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: keep-alive\r\nConnection: upgrade\r\n"},
	{"upgrade without connection", "GET / HTTP/1.1\r\nUpgrade: h2c\r\n"},
	{"unknown protocol", "GET / HTTP/1.1\r\nUpgrade: tunnel/1.0\r\nConnection: Upgrade\r\n"},
	{"tls upgrade", "GET / HTTP/1.1\r\nUpgrade: TLS/1.2\r\nConnection: Upgrade\r\n"},
	{"websocket on POST", "POST / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n" + wsKeys},
	{"websocket on PUT", "PUT / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n" + wsKeys},
	{"websocket without key", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"},
	{"websocket with a short key", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n"},
	{"websocket version 8", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n"},
	{"websocket with h2c settings", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n" + wsKeys},
	{"websocket over HTTP/1.0", "GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + wsKeys},
	{"connect", "CONNECT 127.0.0.1:22 HTTP/1.1\r\n"},
	{"connect to a path", "CONNECT /x HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"},
}

// smuggled is what an attacker sends after the upgrade, hoping that the
// connection is a tunnel by then.
const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\nRemote-User: admin\r\nRemote-Groups: admin\r\n\r\n"

// tryTunnel sends head (with Host, the forged identity and the session
// cookies of c) on one connection to the proxy, then a smuggled request
// on the same connection (its answer read, so that it has been handled
// before the caller looks at the upstream), and returns the first
// answer's status code (0: none).
func tryTunnel(t *testing.T, s *stand, cookies string, head string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "%sHost: x\r\nRemote-User: admin\r\nRemote-Groups: admin\r\nCookie: %s\r\n\r\n", head, cookies)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	fmt.Fprint(conn, smuggled)
	if resp2, err := http.ReadResponse(br, nil); err == nil {
		resp2.Body.Close()
	}
	return resp.StatusCode
}

// TestNoTunnelPastTheProxy: no upgrade but a WebSocket handshake switches
// a connection, whatever the upstream answers; what follows on the
// client's connection is read by the proxy as a request of its own (its
// forged identity stripped, its missing session refused), and nothing
// reaches the upstream through a tunnel.
func TestNoTunnelPastTheProxy(t *testing.T) {
	for _, always := range []bool{false, true} {
		lax := &laxUpstream{always: always}
		s := newStand(t, nil, nil)
		c := s.SignIn("/")
		s.Handle(lax.handler)
		cookies := cookieHeader(c, s.URL)
		s.Seen.Reset()
		for _, tc := range refusedUpgrades {
			t.Run(fmt.Sprintf("%s/always=%v", tc.name, always), func(t *testing.T) {
				first := tryTunnel(t, s, cookies, tc.head)
				if first == http.StatusSwitchingProtocols {
					t.Errorf("the connection was switched")
				}
				if strings.HasPrefix(tc.head, "CONNECT") && first != http.StatusMethodNotAllowed {
					t.Errorf("CONNECT answered %d, want 405", first)
				}
				if always && !strings.HasPrefix(tc.head, "CONNECT") && first != http.StatusBadGateway {
					t.Errorf("an upstream's 101 to a plain request answered %d, want 502", first)
				}
				if got := lax.through(); len(got) > 0 {
					t.Fatalf("%d requests reached the upstream through a tunnel: %v", len(got), got[0].Header)
				}
			})
		}
		for _, r := range s.Seen.Since(0) {
			if r.Header.Get("Upgrade") != "" || r.Header.Get("Http2-Settings") != "" || hasConnToken(r.Header, "upgrade") {
				t.Errorf("an upgrade reached the upstream: %s %s %v", r.Method, r.URL, r.Header)
			}
			if v := r.Header.Values("Remote-User"); len(v) != 1 || v[0] != "alice" {
				t.Errorf("%s %s reached the upstream as %q", r.Method, r.URL, v)
			}
			if r.URL.Path == "/smuggled" {
				t.Errorf("the smuggled request without a session reached the upstream")
			}
		}
	}
}

func hasConnToken(h http.Header, tok string) bool {
	for _, v := range h.Values("Connection") {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), tok) {
				return true
			}
		}
	}
	return false
}

// TestWebSocketRules: a WebSocket handshake passes only with a session
// the route admits and only to a route with websockets on; refused, it
// never reaches the upstream (or reaches it as a plain request).
func TestWebSocketRules(t *testing.T) {
	lax := &laxUpstream{}
	t.Run("no session", func(t *testing.T) {
		s := newStandWith(t, lax.handler, nil, nil)
		first := tryTunnel(t, s, "", "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+wsKeys)
		if first != http.StatusUnauthorized && first != http.StatusFound {
			t.Errorf("a WebSocket without a session answered %d", first)
		}
		if n := s.SeenCount(); n != 0 || len(lax.through()) != 0 {
			t.Errorf("the upstream saw %d requests", n)
		}
	})
	t.Run("refused user", func(t *testing.T) {
		s := newStandWith(t, lax.handler, func(c *config.Config) { c.Access.AllowedGroups = []string{"nobody"} }, nil)
		c := s.Browser()
		resp, _ := navigate(t, c, s.URL+"/")
		login(t, c, resp, "alice", alicePassword)
		first := tryTunnel(t, s, cookieHeader(c, s.URL), "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+wsKeys)
		if first != http.StatusForbidden {
			t.Errorf("a WebSocket of a refused user answered %d", first)
		}
		if n := s.SeenCount(); n != 0 || len(lax.through()) != 0 {
			t.Errorf("the upstream saw %d requests", n)
		}
	})
	t.Run("route without websockets", func(t *testing.T) {
		off := false
		s := newStandWith(t, lax.handler, func(c *config.Config) { c.WebSockets = &off }, nil)
		c := s.SignIn("/")
		s.Seen.Reset()
		first := tryTunnel(t, s, cookieHeader(c, s.URL), "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+wsKeys)
		if first != http.StatusOK {
			t.Errorf("a WebSocket to a route without websockets answered %d, want the plain 200", first)
		}
		if r := s.LastSeen(); r == nil || r.Header.Get("Upgrade") != "" || len(lax.through()) != 0 {
			t.Errorf("the upstream saw %v", r)
		}
	})
	t.Run("allowed", func(t *testing.T) {
		s := newStandWith(t, lax.handler, nil, nil)
		c := s.SignIn("/")
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n%sRemote-User: admin\r\nCookie: %s\r\n\r\n", wsKeys, cookieHeader(c, s.URL))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("a WebSocket handshake: %v %v", resp, err)
		}
		if r := s.LastSeen(); r.Header.Values("Remote-User")[0] != "alice" || len(r.Header.Values("Remote-User")) != 1 {
			t.Errorf("the handshake reached the upstream as %v", r.Header.Values("Remote-User"))
		}
	})
}
