package proxytest

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
)

const (
	ClientSecret  = "client-secret-0123456789abcdef"
	SessionSecret = "session-secret-0123456789abcdef-0123456789"
	AlicePassword = "alice-password"
)

// Stand is the test OP (the Authelia-like test provider), an upstream that records what it receives, and the
// proxy between them, all on loopback.
type Stand struct {
	T        *testing.T
	OP       *OP
	Alice    *OPUser
	Proxy    Replica
	URL      string // the proxy's external URL
	Issuer   string
	Edit     func(*config.Config) // the configuration's edit, for replicas
	YAML     string               // the configuration file, before edit
	Logs     *SyncBuffer
	Upstream *httptest.Server

	// skew moves the proxy's clock forward (nanoseconds).
	Skew atomic.Int64
	// opDown makes the OP answer 503 to everything.
	OPDown atomic.Bool

	Seen Recorder // requests the upstream Recorder
	mu   sync.Mutex
	// upstreamHandler, when set, answers instead of the recorder's default.
	upstreamHandler http.HandlerFunc
}

func Listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// NewStand starts everything; edit changes the configuration before the
// proxy is built, and opCfg the OP's configuration.
func NewStand(t *testing.T, edit func(*config.Config), opEdit func(*OPConfig)) *Stand {
	t.Helper()
	return NewStandWith(t, nil, edit, opEdit)
}

// NewStandWith is newStand with upstream answering the upstream's requests
// from the start (nil: the recorder's default).
func NewStandWith(t *testing.T, upstream http.HandlerFunc, edit func(*config.Config), opEdit func(*OPConfig)) *Stand {
	t.Helper()
	s := &Stand{T: t, Logs: &SyncBuffer{}, upstreamHandler: upstream}
	proxyLn, opLn := Listen(t), Listen(t)
	s.URL = "http://" + proxyLn.Addr().String()
	issuer := "http://" + opLn.Addr().String()

	s.Alice = &OPUser{Username: "alice", Password: AlicePassword, Name: "Alice Liddell",
		Email: "alice@example.com", Groups: []string{"admins", "users"}}
	opCfg := OPConfig{ClientID: "memos", ClientSecret: ClientSecret,
		RedirectURIs: []string{s.URL + "/oauth2/callback"}, Users: []*OPUser{s.Alice}}
	if opEdit != nil {
		opEdit(&opCfg)
	}
	op, err := NewOP(issuer, opCfg)
	if err != nil {
		t.Fatal(err)
	}
	s.OP = op
	ServeOn(t, opLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.OPDown.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		op.Handler().ServeHTTP(w, r)
	}))
	s.StartProxy(proxyLn, issuer, edit)
	s.WaitReady()
	return s
}

// ServeOn serves h on ln until the test ends.
func ServeOn(t *testing.T, ln net.Listener, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// StartProxy starts the recording upstream and the proxy on proxyLn,
// signing in at issuer. It does not wait for discovery.
func (s *Stand) StartProxy(proxyLn net.Listener, issuer string, edit func(*config.Config)) {
	s.URL = "http://" + proxyLn.Addr().String()
	s.StartUpstream()
	s.Issuer, s.Edit = issuer, edit
	s.Proxy = s.ServeProxy(proxyLn, s.URL, edit)
}

// StartUpstream starts the recording upstream until the test ends.
func (s *Stand) StartUpstream() {
	t := s.T
	s.Upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Seen.Record(r)
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
	t.Cleanup(s.Upstream.Close)
}

// ServeProxy builds a proxy for external URL external, signing in at the
// Stand's OP and forwarding to its upstream, and serves it on ln until the
// test ends. A second one with the same external URL is a Replica.
func (s *Stand) ServeProxy(proxyLn net.Listener, external string, edit func(*config.Config)) Replica {
	t := s.T
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
`, proxyLn.Addr().String(), external, s.Upstream.URL, s.Issuer, ClientSecret, SessionSecret)
	s.YAML = yaml
	cfg, err := config.Parse("stand.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	return StartReplica(t, cfg, proxy.Options{Logger: s.Logger(), Now: s.Clock}, proxyLn)
}

// Logger writes a proxy's log into the Stand's, shown if the test fails.
func (s *Stand) Logger() *slog.Logger {
	t := s.T
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy log:\n%s", s.Logs.String())
		}
	})
	return slog.New(slog.NewTextHandler(s.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Clock is the proxies' clock: now, moved forward by skew.
func (s *Stand) Clock() time.Time { return time.Now().Add(time.Duration(s.Skew.Load())) }

// StartReplica builds a proxy of cfg, starts it and serves it on ln
// until the test ends.
func StartReplica(t *testing.T, cfg *config.Config, opts proxy.Options, ln net.Listener) Replica {
	t.Helper()
	p, err := Build(cfg, opts)
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

// Replica is a proxy as cmd/oidc-proxy wires it, with its Memos bridge
// (nil unless memos.bridge).
type Replica struct {
	*proxy.Proxy
	Bridge *memos.Bridge
}

// Build wires a proxy as cmd/oidc-proxy does: the core and the Memos
// integrations the configuration asks for.
func Build(cfg *config.Config, opts proxy.Options) (Replica, error) {
	opts.Integrations = memos.Integrations
	p, err := proxy.New(cfg, opts)
	if err != nil {
		return Replica{}, err
	}
	var b *memos.Bridge
	if bs := memos.Bridges(p.Integrations()); len(bs) > 0 {
		b = bs[0]
	}
	return Replica{p, b}, nil
}

// BridgeHandler serves the bridge's token and userinfo endpoints.
// It follows reloads: the bridge of the configuration served now.
func (r Replica) BridgeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		memos.Bridges(r.Integrations())[0].Handler().ServeHTTP(w, req)
	})
}

// RegisterWithMemos registers the bridge in Memos.
func (r Replica) RegisterWithMemos(ctx context.Context) (string, error) {
	return r.Bridge.Register(ctx)
}

func (s *Stand) WaitReady() {
	s.T.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.Proxy.Ready() {
		if time.Now().After(deadline) {
			s.T.Fatal("proxy never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// LastSeen returns the last request the upstream Recorder, or nil.
func (s *Stand) LastSeen() *http.Request { return s.Seen.Last() }

func (s *Stand) SeenCount() int { return s.Seen.Count() }

// Recorder records the requests a test upstream receives.
type Recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (rc *Recorder) Record(r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.reqs = append(rc.reqs, r.Clone(context.Background()))
}

func (rc *Recorder) Count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

// last is the last request Recorder, or nil.
func (rc *Recorder) Last() *http.Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.reqs) == 0 {
		return nil
	}
	return rc.reqs[len(rc.reqs)-1]
}

// since are the requests Recorder after the first n.
func (rc *Recorder) Since(n int) []*http.Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.reqs[n:])
}

// reset forgets every request Recorder so far.
func (rc *Recorder) Reset() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.reqs = nil
}

// Browser is a client with a cookie jar that follows redirects, as a
// Browser navigating does.
func (s *Stand) Browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 20 * time.Second}
}

// Navigate GETs url as a browser page load.
func Navigate(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	return Do(t, c, req)
}

func Do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// Login fills in the OP's login form the browser has landed on (resp) and
// follows the redirects back through the proxy.
func Login(t *testing.T, c *http.Client, resp *http.Response, user, password string) (*http.Response, string) {
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
	return Do(t, c, req)
}

// SignIn signs a new browser in as alice through path and returns it.
func (s *Stand) SignIn(path string) *http.Client {
	s.T.Helper()
	c := s.Browser()
	resp, _ := Navigate(s.T, c, s.URL+path)
	resp, body := Login(s.T, c, resp, "alice", AlicePassword)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "hello alice") {
		s.T.Fatalf("sign-in ended at %s with %d: %s", resp.Request.URL, resp.StatusCode, body)
	}
	return c
}

// NoRedirect is a client that reports redirects instead of following them.
func NoRedirect(c *http.Client) *http.Client {
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cc
}

// Handle makes h answer the upstream's requests from now on.
func (s *Stand) Handle(h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upstreamHandler = h
}

// Config is the Stand's configuration (its file, and its edit) with
// edits, for a reload.
func (s *Stand) Config(edits ...func(*config.Config)) *config.Config {
	s.T.Helper()
	cfg, err := config.Parse("stand.yaml", []byte(s.YAML), func(string) (string, bool) { return "", false })
	if err != nil {
		s.T.Fatal(err)
	}
	if s.Edit != nil {
		s.Edit(cfg)
	}
	for _, e := range edits {
		e(cfg)
	}
	return cfg
}
