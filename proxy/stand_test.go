package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
	"github.com/oidc-proxy/oidc-proxy/proxy/memos"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

const (
	clientSecret  = "client-secret-0123456789abcdef"
	sessionSecret = "session-secret-0123456789abcdef-0123456789"
	alicePassword = "alice-password"
)

// stand is a test OP, an upstream that records what it receives, and the
// proxy between them, all on loopback.
type stand struct {
	t        *testing.T
	op       *proxytest.OP
	alice    *proxytest.OPUser
	proxy    replica
	url      string // the proxy's external URL
	issuer   string
	edit     func(*config.Config) // the configuration's edit, for replicas
	yaml     string               // the configuration file, before edit
	logs     *syncBuffer
	upstream *httptest.Server

	// skew moves the proxy's clock forward (nanoseconds).
	skew atomic.Int64
	// opDown makes the OP answer 503 to everything.
	opDown atomic.Bool

	seen received // requests the upstream received
	mu   sync.Mutex
	// upstreamHandler, when set, answers instead of the recorder's default.
	upstreamHandler http.HandlerFunc
}

type syncBuffer = proxytest.SyncBuffer

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// newStand starts everything; edit changes the configuration before the
// proxy is built, and opCfg the OP's configuration.
func newStand(t *testing.T, edit func(*config.Config), opEdit func(*proxytest.OPConfig)) *stand {
	t.Helper()
	return newStandWith(t, nil, edit, opEdit)
}

// newStandWith is newStand with upstream answering the upstream's requests
// from the start (nil: the recorder's default).
func newStandWith(t *testing.T, upstream http.HandlerFunc, edit func(*config.Config), opEdit func(*proxytest.OPConfig)) *stand {
	t.Helper()
	s := &stand{t: t, logs: &syncBuffer{}, upstreamHandler: upstream}
	proxyLn, opLn := listen(t), listen(t)
	s.url = "http://" + proxyLn.Addr().String()
	issuer := "http://" + opLn.Addr().String()

	s.alice = &proxytest.OPUser{Username: "alice", Password: alicePassword, Name: "Alice Liddell",
		Email: "alice@example.com", Groups: []string{"admins", "users"}}
	opCfg := proxytest.OPConfig{ClientID: "memos", ClientSecret: clientSecret,
		RedirectURIs: []string{s.url + "/oauth2/callback"}, Users: []*proxytest.OPUser{s.alice}}
	if opEdit != nil {
		opEdit(&opCfg)
	}
	op, err := proxytest.NewOP(issuer, opCfg)
	if err != nil {
		t.Fatal(err)
	}
	s.op = op
	serveOn(t, opLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opDown.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		op.Handler().ServeHTTP(w, r)
	}))
	s.startProxy(proxyLn, issuer, edit)
	s.waitReady()
	return s
}

// serveOn serves h on ln until the test ends.
func serveOn(t *testing.T, ln net.Listener, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// startProxy starts the recording upstream and the proxy on proxyLn,
// signing in at issuer. It does not wait for discovery.
func (s *stand) startProxy(proxyLn net.Listener, issuer string, edit func(*config.Config)) {
	s.url = "http://" + proxyLn.Addr().String()
	s.startUpstream()
	s.issuer, s.edit = issuer, edit
	s.proxy = s.serveProxy(proxyLn, s.url, edit)
}

// startUpstream starts the recording upstream until the test ends.
func (s *stand) startUpstream() {
	t := s.t
	s.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.seen.record(r)
		s.mu.Lock()
		h := s.upstreamHandler
		s.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<h1>hello %s</h1>", r.Header.Get("Remote-User"))
	}))
	t.Cleanup(s.upstream.Close)
}

// serveProxy builds a proxy for external URL external, signing in at the
// stand's OP and forwarding to its upstream, and serves it on ln until the
// test ends. A second one with the same external URL is a replica.
func (s *stand) serveProxy(proxyLn net.Listener, external string, edit func(*config.Config)) replica {
	t := s.t
	yaml := fmt.Sprintf(`
listen: %q
external_url: %q
upstream: %q
oidc:
  issuer: %q
  client_id: memos
  client_secret: %q
session:
  secret: %q
`, proxyLn.Addr().String(), external, s.upstream.URL, s.issuer, clientSecret, sessionSecret)
	s.yaml = yaml
	cfg, err := config.Parse("stand.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	return startReplica(t, cfg, proxy.Options{Logger: s.logger(), Now: s.clock}, proxyLn)
}

// logger writes a proxy's log into the stand's, shown if the test fails.
func (s *stand) logger() *slog.Logger {
	t := s.t
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy log:\n%s", s.logs.String())
		}
	})
	return slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// clock is the proxies' clock: now, moved forward by skew.
func (s *stand) clock() time.Time { return time.Now().Add(time.Duration(s.skew.Load())) }

// startReplica builds a proxy of cfg, starts it and serves it on ln
// until the test ends.
func startReplica(t *testing.T, cfg *config.Config, opts proxy.Options, ln net.Listener) replica {
	t.Helper()
	p, err := build(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() }) // after the server and the watcher stopped
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p.Start(ctx)
	srv := httptest.NewUnstartedServer(nil)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config = proxy.NewServer("", p.Proxy, opts.Logger)
	srv.Start()
	t.Cleanup(srv.Close)
	return p
}

// replica is a proxy as cmd/oidc-proxy wires it, with its Memos bridge
// (nil unless memos.bridge).
type replica struct {
	*proxy.Proxy
	bridge *memos.Bridge
}

// build wires a proxy as cmd/oidc-proxy does: the core and the Memos
// integrations the configuration asks for.
func build(cfg *config.Config, opts proxy.Options) (replica, error) {
	opts.Integrations = memos.Integrations
	p, err := proxy.New(cfg, opts)
	if err != nil {
		return replica{}, err
	}
	var b *memos.Bridge
	if bs := memos.Bridges(p.Integrations()); len(bs) > 0 {
		b = bs[0]
	}
	return replica{p, b}, nil
}

// BridgeHandler serves the bridge's token and userinfo endpoints.
// It follows reloads: the bridge of the configuration served now.
func (r replica) BridgeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		memos.Bridges(r.Integrations())[0].Handler().ServeHTTP(w, req)
	})
}

// RegisterWithMemos registers the bridge in Memos.
func (r replica) RegisterWithMemos(ctx context.Context) (string, error) {
	return r.bridge.Register(ctx)
}

func (s *stand) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.proxy.Ready() {
		if time.Now().After(deadline) {
			s.t.Fatal("proxy never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lastSeen returns the last request the upstream received, or nil.
func (s *stand) lastSeen() *http.Request { return s.seen.last() }

func (s *stand) seenCount() int { return s.seen.count() }

// received records the requests a test upstream receives.
type received struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (rc *received) record(r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.reqs = append(rc.reqs, r.Clone(context.Background()))
}

func (rc *received) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

// last is the last request received, or nil.
func (rc *received) last() *http.Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.reqs) == 0 {
		return nil
	}
	return rc.reqs[len(rc.reqs)-1]
}

// since are the requests received after the first n.
func (rc *received) since(n int) []*http.Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.reqs[n:])
}

// reset forgets every request received so far.
func (rc *received) reset() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.reqs = nil
}

// browser is a client with a cookie jar that follows redirects, as a
// browser navigating does.
func (s *stand) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 20 * time.Second}
}

// navigate GETs url as a browser page load.
func navigate(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	return do(t, c, req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// login fills in the OP's login form the browser has landed on (resp) and
// follows the redirects back through the proxy.
func login(t *testing.T, c *http.Client, resp *http.Response, user, password string) (*http.Response, string) {
	t.Helper()
	id := resp.Request.URL.Query().Get("authRequestID")
	if id == "" {
		t.Fatalf("not on the login form: %s", resp.Request.URL)
	}
	form := url.Values{"id": {id}, "username": {user}, "password": {password}}
	target := resp.Request.URL.ResolveReference(&url.URL{Path: "/login/username"})
	req, _ := http.NewRequest(http.MethodPost, target.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	return do(t, c, req)
}

// signIn signs a new browser in as alice through path and returns it.
func (s *stand) signIn(path string) *http.Client {
	s.t.Helper()
	c := s.browser()
	resp, _ := navigate(s.t, c, s.url+path)
	resp, body := login(s.t, c, resp, "alice", alicePassword)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello alice") {
		s.t.Fatalf("sign-in ended at %s with %d: %s", resp.Request.URL, resp.StatusCode, body)
	}
	return c
}

// noRedirect is a client that reports redirects instead of following them.
func noRedirect(c *http.Client) *http.Client {
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cc
}

type (
	cfg   = config.Config
	opCfg = proxytest.OPConfig
)

// handle makes h answer the upstream's requests from now on.
func (s *stand) handle(h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upstreamHandler = h
}

// config is the stand's configuration (its file, and its edit) with
// edits, for a reload.
func (s *stand) config(edits ...func(*config.Config)) *config.Config {
	s.t.Helper()
	cfg, err := config.Parse("stand.yaml", []byte(s.yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		s.t.Fatal(err)
	}
	if s.edit != nil {
		s.edit(cfg)
	}
	for _, e := range edits {
		e(cfg)
	}
	return cfg
}
