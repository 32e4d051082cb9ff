package proxy_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
)

func TestForgedIdentityNeverReachesUpstream(t *testing.T) {
	s := newStand(t, nil, nil)
	alice := s.SignIn("/")
	addr := strings.TrimPrefix(s.URL, "http://")
	forgeries := []string{
		"Remote-User: admin\r\n",
		"remote-user: admin\r\n",
		"Remote_User: admin\r\n",
		"REMOTE.USER: admin\r\n",
		"Remote-User: admin\r\nRemote-User: root\r\n",
		"Remote-User: admin\r\nConnection: Remote-User\r\n",
		"Remote-Groups: admins\r\nremote_groups: admins\r\nRemote.Email: admin@example.com\r\n",
	}
	for _, session := range []bool{false, true} {
		for _, path := range []string{"/private", "/oauth2/healthz", "/oauth2/userinfo"} {
			for _, f := range forgeries {
				name := fmt.Sprintf("session=%v %s %q", session, path, f)
				t.Run(name, func(t *testing.T) {
					before := s.SeenCount()
					cookie := ""
					if session {
						cookie = "Cookie: " + cookieHeader(alice, s.URL) + "\r\n"
					}
					resp := rawRequest(t, addr, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\n"+cookie+f+"Connection: close\r\n\r\n")
					forwarded := s.SeenCount() > before
					if forwarded != (session && path == "/private") {
						t.Fatalf("forwarded=%v (status %d)", forwarded, resp.StatusCode)
					}
					if !forwarded {
						return
					}
					h := s.LastSeen().Header
					for k, v := range h {
						n := strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(k))
						if !strings.HasPrefix(n, "remote-") {
							continue
						}
						want := map[string]string{"remote-user": "alice", "remote-name": "Alice Liddell", "remote-email": "alice@example.com", "remote-groups": "admins,users"}[n]
						if len(v) != 1 || v[0] != want || k != http.CanonicalHeaderKey(n) {
							t.Errorf("upstream got %s: %q", k, v)
						}
					}
				})
			}
		}
	}
}

func TestForgedIdentityInTrailer(t *testing.T) {
	s := newStand(t, nil, nil)
	c := s.SignIn("/")
	got := make(chan http.Header, 1)
	s.Handle(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- r.Trailer
	})
	// A chunked body whose trailer carries identity headers.
	rawRequest(t, strings.TrimPrefix(s.URL, "http://"), "POST /upload HTTP/1.1\r\nHost: x\r\nCookie: "+cookieHeader(c, s.URL)+
		"\r\nTransfer-Encoding: chunked\r\nTrailer: Remote-User, Remote_user\r\nConnection: close\r\n\r\n"+
		"4\r\nbody\r\n0\r\nRemote-User: admin\r\nRemote_user: admin\r\nX-Other: kept\r\n\r\n")
	select {
	case tr := <-got:
		// Go's ReverseProxy does not copy request trailer values today;
		// the proxy strips the names too, so no version can pass them.
		for k := range tr {
			if k != "X-Other" {
				t.Errorf("identity header in the upstream's trailer: %s %q", k, tr[k])
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream not reached")
	}
}

// TestPathTricks: nothing about a request but its decoded path under
// /oauth2/ lets it skip sign-in, and none of these tricks reaches the
// upstream without a session.
func TestPathTricks(t *testing.T) {
	s := newStand(t, nil, nil)
	addr := strings.TrimPrefix(s.URL, "http://")
	paths := []string{
		"/private", "/%2e%2e/private", "/oauth2/%2e%2e/private", "/oauth2/../private", "/oauth2/healthz/../../private",
		"/oauth2/healthz/..%2f..%2fprivate", "//private", "//oauth2/healthz", "/oauth2%2Fhealthz", "/oauth2/healthz%2F..%2F..%2Fprivate",
		"/private%23/oauth2/healthz", "/private#/oauth2/healthz", "/private;/oauth2/healthz", "/oauth2/healthz;/../../private",
		"/OAUTH2/healthz", "/OAuth2/start", "/oauth2./healthz", "/oauth2/healthz.", "/private?/oauth2/healthz", "/private?rd=/oauth2/healthz",
		"/%6fauth2/userinfo", "/private/./", "/./private", "/private/%2e/", "/.%2e/private", "*", "http://evil.com/private", "/oauth2",
	}
	spoofs := []string{
		"", "X-Forwarded-Uri: /oauth2/healthz\r\n", "X-Original-URL: /oauth2/healthz\r\n", "X-Rewrite-Url: /oauth2/healthz\r\n",
		"X-Forwarded-Prefix: /oauth2\r\n", "User-Agent: kube-probe/1.30\r\n",
	}
	for _, p := range paths {
		for _, sp := range spoofs {
			for _, host := range []string{addr, "localhost", "127.0.0.1:1"} {
				before := s.SeenCount()
				resp := rawRequest(t, addr, "GET "+p+" HTTP/1.1\r\nHost: "+host+"\r\nAccept: application/json\r\n"+sp+"Connection: close\r\n\r\n")
				if s.SeenCount() != before {
					t.Errorf("GET %s with %q Host %s reached the upstream unauthenticated (%d)", p, sp, host, resp.StatusCode)
				}
				if resp.StatusCode == http.StatusOK && !strings.HasPrefix(p, "/oauth2/healthz") {
					t.Errorf("GET %s with %q: 200", p, sp)
				}
			}
		}
	}
}

func TestAbusiveCookies(t *testing.T) {
	s := newStand(t, nil, nil)
	alice := s.SignIn("/")
	valid := sessionCookies(alice, s.URL)[0]
	addr := strings.TrimPrefix(s.URL, "http://")
	var many strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&many, "oidc_proxy_%d=%d; ", i, i)
	}
	tests := []struct{ name, cookie string }{
		{"truncated", "oidc_proxy=" + valid.Value[:len(valid.Value)/2]},
		{"chunk counts in the millions", "oidc_proxy=" + valid.Value + "; oidc_proxy_1000000=x; oidc_proxy_99999999999=y"},
		{"chunk missing in between", "oidc_proxy=" + valid.Value[:100] + "; oidc_proxy_2=" + valid.Value[100:]},
		{"reordered chunks", "oidc_proxy_1=" + valid.Value[:100] + "; oidc_proxy=" + valid.Value[100:]},
		{"thousands of chunk names", many.String()},
		{"nested quotes", `oidc_proxy="""` + valid.Value + `"""`},
		{"empty", "oidc_proxy="},
		{"under an old secret", "oidc_proxy=" + oldSecretCookie(t)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.SeenCount()
			resp := rawRequest(t, addr, "GET /private HTTP/1.1\r\nHost: x\r\nCookie: "+tt.cookie+"\r\nConnection: close\r\n\r\n")
			if tt.name == "chunk counts in the millions" {
				// Unknown chunk names are ignored: the valid first chunk stands.
				if resp.StatusCode != 200 {
					t.Errorf("status %d", resp.StatusCode)
				}
				return
			}
			if resp.StatusCode != http.StatusUnauthorized || s.SeenCount() != before {
				t.Errorf("status %d, forwarded %v", resp.StatusCode, s.SeenCount() != before)
			}
		})
	}
	// A 64 KB cookie is no session (or, past the header limit, refused
	// outright); 1 MB of headers is refused before any work.
	before := s.SeenCount()
	resp := rawRequest(t, addr, "GET /private HTTP/1.1\r\nHost: x\r\nCookie: oidc_proxy="+strings.Repeat("A", 64<<10)+"\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KB cookie: %d", resp.StatusCode)
	}
	resp = rawRequest(t, addr, "GET /private HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("A", 1<<20)+"\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("1 MB of headers: %d", resp.StatusCode)
	}
	if s.SeenCount() != before {
		t.Errorf("forwarded")
	}
}

// oldSecretCookie signs in at a proxy with another secret and returns its
// session cookie.
func oldSecretCookie(t *testing.T) string {
	other := newStand(t, func(c *cfg) { c.Session.Secret = config.Secrets{"another-secret-0123456789abcdef-0123456789"} }, nil)
	return sessionCookies(other.SignIn("/"), other.URL)[0].Value
}

func TestLoginCookieFlood(t *testing.T) {
	s := newStand(t, nil, nil)
	c := noRedirect(s.Browser())
	for range 200 {
		req := mustReq(http.MethodGet, s.URL+"/oauth2/start?rd=/x")
		do(t, c, req)
	}
	u, _ := url.Parse(s.URL)
	n := 0
	for _, ck := range c.Jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, "oidc_proxy_login_") {
			n++
		}
	}
	if n > 5 {
		t.Errorf("%d login cookies after 200 sign-in starts; at most 5 may be pending", n)
	}
	// The newest still completes.
	resp, _ := navigate(t, s.Browser(), s.URL+"/")
	if resp.Request.URL.Path != "/login/username" {
		t.Errorf("a new sign-in did not start")
	}
}

func TestSessionFixation(t *testing.T) {
	s := newStand(t, nil, nil)
	planted := s.SignIn("/") // the attacker's own valid session
	attacker := sessionCookies(planted, s.URL)[0]
	c := s.Browser()
	u, _ := url.Parse(s.URL)
	c.Jar.SetCookies(u, []*http.Cookie{
		{Name: "oidc_proxy", Value: attacker.Value, Path: "/"},
		{Name: "oidc_proxy_3", Value: "planted", Path: "/"},
	})
	resp, _ := navigate(t, c, s.URL+"/oauth2/start?rd=/after")
	resp, _ = login(t, c, resp, "alice", alicePassword)
	if resp.StatusCode != 200 {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Value == attacker.Value || ck.Name == "oidc_proxy_3" {
			t.Errorf("planted cookie %s kept after sign-in", ck.Name)
		}
	}
}

// TestUnauthenticatedFlood sends 10,000 unauthenticated requests at once
// (each on its own connection, as far as the file limit allows), while a
// signed-in user keeps working; afterwards memory and goroutines are back
// near where they started.
func TestUnauthenticatedFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood")
	}
	const total = 10000
	conc := raiseFileLimit(t, total)
	s := newStand(t, nil, nil)
	alice := s.SignIn("/")
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()

	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}
	flood := &http.Client{Transport: tr, Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var wg sync.WaitGroup
	var failed atomic.Int64
	jobs := make(chan int)
	for range conc {
		wg.Go(func() {
			for i := range jobs {
				req := mustReq(http.MethodGet, s.URL+"/private")
				if i%2 == 0 {
					req.Header.Set("Accept", "text/html") // sends to sign-in: a login cookie each
				}
				resp, err := flood.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	stop := make(chan struct{})
	aliceOK := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				aliceOK <- n
				return
			default:
			}
			resp, body := do(t, alice, mustReq(http.MethodGet, s.URL+"/notes"))
			if resp.StatusCode != 200 || !strings.Contains(body, "hello alice") {
				t.Errorf("signed-in user during the flood: %d", resp.StatusCode)
			}
			n++
		}
	}()
	for i := range total {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(stop)
	if n := <-aliceOK; n == 0 {
		t.Errorf("the signed-in user got no answer during the flood")
	}
	if f := failed.Load(); f != 0 {
		t.Errorf("%d flood requests failed", f)
	}
	tr.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines+20 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines+20 {
		t.Errorf("goroutines: %d before, %d after", goroutines, n)
	}
	s.Seen.Reset() // the test's own record of alice's requests
	runtime.GC()
	runtime.GC() // sync.Pools empty over two cycles
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("heap in use: %d MB before, %d MB after; goroutines %d before, %d after", before.HeapInuse>>20, after.HeapInuse>>20, goroutines, runtime.NumGoroutine())
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 64<<20 {
		t.Errorf("heap in use grew by %d MB", grew>>20)
	}
}

func TestSlowHeadersAreCutOff(t *testing.T) {
	s := newStand(t, nil, nil)
	// The proxy's server, with a shorter header timeout than its 10 s.
	srv := proxy.NewServer("", s.Proxy, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv.ReadHeaderTimeout = 300 * time.Millisecond
	ln := listen(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /private HTTP/1.1\r\nHost: x\r\n")
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	// A slowloris client never finishes its headers; the server closes.
	for range 20 {
		if _, err := io.WriteString(conn, "X-Slow: 1\r\n"); err != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err == nil && !strings.Contains(string(buf[:n]), "408") {
		t.Errorf("slow client got %q", buf[:n])
	}
	if time.Since(start) > 9*time.Second {
		t.Errorf("the server kept the slow client")
	}
}

// raiseFileLimit lifts the open-file limit so that want connections (two
// descriptors each, both ends being in this process) fit, and returns how
// many concurrent connections the limit allows.
func raiseFileLimit(t *testing.T, want int) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if need := uint64(2*want + 1000); lim.Cur < need {
		raised := syscall.Rlimit{Cur: need, Max: max(need, lim.Max)}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		} else if lim.Cur < lim.Max {
			lim.Cur = lim.Max
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
	}
	conc := min(want, int(lim.Cur-1000)/2)
	t.Logf("%d concurrent connections (open-file limit %d)", conc, lim.Cur)
	return conc
}
