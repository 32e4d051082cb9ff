package proxy_test

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

func TestServerSentEventsFlowUnbuffered(t *testing.T) {
	s := newStand(t, nil, nil)
	release := make(chan struct{})
	c := s.SignIn("/")
	s.Handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Accel-Buffering", "no")
		fmt.Fprintf(w, "data: first for %s\n\n", r.Header.Get("Remote-User"))
		w.(http.Flusher).Flush()
		<-release // the stream stays open until the client has read the first event
		fmt.Fprint(w, "data: second\n\n")
	})
	req := mustReq(http.MethodGet, s.URL+"/api/v1/sse")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first for alice\n" {
		t.Fatalf("first event: %q %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: second") {
		t.Errorf("second event missing: %q", rest)
	}
}

func TestWebSocketUpgradePasses(t *testing.T) {
	s := newStand(t, nil, nil)
	c := s.SignIn("/")
	s.Handle(wsEcho)
	conn, br := openWebSocket(t, s, c)
	line, _ := br.ReadString('\n')
	if line != "user=alice\n" {
		t.Errorf("upstream saw %q", line)
	}
	fmt.Fprint(conn, "ping\n")
	if line, _ := br.ReadString('\n'); line != "ping\n" {
		t.Errorf("echo: %q", line)
	}
	if h := s.LastSeen().Header; len(h.Values("Remote-User")) != 1 || h.Get("Remote_User") != "" {
		t.Errorf("spoofed identity on the upgrade: %v", h)
	}
}

// wsEcho is an upstream WebSocket endpoint: it names the user it was
// told of, then echoes.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "websocket" {
		http.Error(w, "want websocket", 400)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		base64.StdEncoding.EncodeToString(sum[:]))
	fmt.Fprintf(rw, "user=%s\n", r.Header.Get("Remote-User"))
	rw.Flush()
	io.Copy(conn, rw) // echo
}

// openWebSocket upgrades a connection through the proxy with c's session
// (and forged identity headers) and returns it past the 101.
func openWebSocket(t *testing.T, s *stand, c *http.Client) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var cookies []string
	for _, ck := range sessionCookies(c, s.URL) {
		cookies = append(cookies, ck.Name+"="+ck.Value)
	}
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
		"Remote-User: admin\r\nRemote_User: admin\r\nCookie: %s\r\n\r\n", strings.Join(cookies, "; "))
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return conn, br
}

// zeros is a reader of n zero bytes that allocates nothing.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

func TestLargeUploadStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MB upload")
	}
	const size = 200 << 20
	s := newStand(t, nil, nil)
	var got atomic.Int64
	c := s.SignIn("/")
	s.Handle(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got.Store(n)
	})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/v1/attachments", &zeros{size})
	req.ContentLength = size
	resp, _ := do(t, c, req)
	runtime.ReadMemStats(&after)
	if resp.StatusCode != 200 || got.Load() != size {
		t.Fatalf("upload: %d, upstream got %d bytes", resp.StatusCode, got.Load())
	}
	// Client, proxy and upstream share this process: a proxy that buffered
	// the body would allocate at least its 200 MB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 48<<20 {
		t.Errorf("the upload allocated %d MB; the body is not streamed", alloc>>20)
	}
}

func TestUpstreamDownGives502(t *testing.T) {
	s := newStand(t, nil, nil)
	c := s.SignIn("/")
	s.Upstream.Close()
	req := mustReq(http.MethodGet, s.URL+"/x")
	req.Header.Set("Accept", "text/html")
	resp, body := do(t, c, req)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "not answering") {
		t.Errorf("upstream down: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, c, mustReq(http.MethodGet, s.URL+"/oauth2/healthz")); resp.StatusCode != 200 {
		t.Errorf("the proxy stopped serving: %d", resp.StatusCode)
	}
}

func TestProviderDownAtStart(t *testing.T) {
	ln := listen(t)
	issuer := "http://" + ln.Addr().String()
	op, err := proxytest.NewOP(issuer, proxytest.OPConfig{ClientID: "memos", ClientSecret: clientSecret})
	if err != nil {
		t.Fatal(err)
	}
	var up atomic.Bool
	opSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		op.Handler().ServeHTTP(w, r)
	}))
	opSrv.Listener.Close()
	opSrv.Listener = ln
	opSrv.Start()
	defer opSrv.Close()

	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`
external_url: http://127.0.0.1:1
upstream: http://127.0.0.1:2
oidc: {issuer: %q, client_id: memos, client_secret: x}
session: {secret: %q}
`, issuer, sessionSecret)), nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	p, err := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.Start(ctx)
	get := func(path string, accept string) *http.Response {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Accept", accept)
		p.ServeHTTP(rec, req)
		return rec.Result()
	}
	for !strings.Contains(logs.String(), "oidc discovery failed") {
		time.Sleep(10 * time.Millisecond)
	}
	if r := get("/oauth2/readyz", "*/*"); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz before discovery: %d", r.StatusCode)
	}
	if r := get("/oauth2/healthz", "*/*"); r.StatusCode != http.StatusOK {
		t.Errorf("healthz before discovery: %d", r.StatusCode)
	}
	if r := get("/notes", "text/html"); r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Errorf("sign-in before discovery: %d", r.StatusCode)
	}
	// The provider comes up: discovery is retried and succeeds.
	up.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for !p.Ready() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if r := get("/oauth2/readyz", "*/*"); r.StatusCode != http.StatusOK {
		t.Fatalf("readyz after the provider came up: %d", r.StatusCode)
	}
	if r := get("/notes", "text/html"); r.StatusCode != http.StatusFound {
		t.Errorf("sign-in after discovery: %d", r.StatusCode)
	}
}

func scrape(t *testing.T, p *proxy.Proxy) string {
	t.Helper()
	rec := httptest.NewRecorder()
	p.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

func TestMetrics(t *testing.T) {
	s := newStand(t, nil, nil)
	c := s.SignIn("/")
	do(t, http.DefaultClient, mustReq(http.MethodGet, s.URL+"/api"))
	release := make(chan struct{})
	s.Handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: x\n\n")
		w.(http.Flusher).Flush()
		<-release
	})
	resp, err := c.Get(s.URL + "/api/v1/sse")
	if err != nil {
		t.Fatal(err)
	}
	bufio.NewReader(resp.Body).ReadString('\n')
	during := scrape(t, s.Proxy.Proxy)
	close(release)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var after string
	for range 100 { // the handler finishes just after the body ends
		if after = scrape(t, s.Proxy.Proxy); strings.Contains(after, "oidc_proxy_streams_active 0") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range []string{
		`oidc_proxy_requests_total{code="2xx",route="proxied",route_name="default"} 1`,
		`oidc_proxy_requests_total{code="4xx",route="proxied",route_name="default"} 1`,
		`oidc_proxy_requests_total{code="3xx",route="proxied",route_name="default"} 1`,
		`oidc_proxy_requests_total{code="3xx",route="sign_in",route_name="default"} 1`,
		`oidc_proxy_sign_ins_total{reason="",result="success"} 1`,
		`oidc_proxy_upstream_duration_seconds_count 2`, // the page after sign-in, the stream
		`oidc_proxy_idp_request_duration_seconds_count{endpoint="discovery"} 1`,
		`oidc_proxy_idp_request_duration_seconds_count{endpoint="token"} 1`,
		`oidc_proxy_idp_request_duration_seconds_count{endpoint="userinfo"} 1`,
		`oidc_proxy_idp_request_duration_seconds_count{endpoint="jwks"} 1`,
		`oidc_proxy_build_info{version=""} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(during, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(during, "oidc_proxy_streams_active 1") || !strings.Contains(after, "oidc_proxy_streams_active 0") {
		t.Errorf("streams gauge: during the stream and after:\n%s\n%s", grepLines(during, "streams"), grepLines(after, "streams"))
	}
}
