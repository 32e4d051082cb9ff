// Package proxy is the proxy's HTTP surface: the sign-in endpoints under
// /oauth2/, the authentication middleware, the identity headers and the
// forwarding to the upstream.
package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/rp"
	"github.com/oidc-proxy/oidc-proxy/session"
)

// Prefix is the path prefix of the proxy's own endpoints. Every path under
// it is answered by the proxy and never forwarded.
const Prefix = "/oauth2/"

// Options carries the runtime dependencies of a Proxy. Zero values are
// usable: nil fields get the documented defaults.
type Options struct {
	// Logger receives every log line. Nil means slog.Default().
	Logger *slog.Logger
	// IdPClient talks to the OpenID Provider. Nil means rp.NewHTTPClient with
	// the configured ca_file and timeout.
	IdPClient *http.Client
	// Transport carries requests to the upstream. Nil means NewTransport().
	Transport http.RoundTripper
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Version labels the build in the metrics.
	Version string
}

// Proxy is the authenticating reverse proxy. Build it with New, call Start
// to begin discovery, and serve it as an http.Handler.
type Proxy struct {
	log *slog.Logger
	now func() time.Time

	external     *url.URL
	upstream     *url.URL
	preserveHost bool

	oidc       *rp.Client
	logoutURL  string
	idpTimeout time.Duration

	lifetime    time.Duration
	idle        time.Duration // 0: no idle timeout
	store       session.Store
	storeWarned atomic.Int64 // when "store unavailable" was last logged (Unix s)
	flows       *session.Codec
	flowPrefix  string

	accessLog bool

	readyURL string // the upstream's ready path, or ""
	readyMu  sync.Mutex
	readyAt  time.Time
	readyErr error

	metrics *metrics

	headers identityHeaders
	access  accessRules
	ids     *identities
	trusted trustedProxies
	public  publicPaths
	bearers *bearerChecker // nil unless memos.pass_bearer_tokens
	bridge  *memosBridge   // nil unless memos.bridge
	// keptClaims are the claims a session keeps: those of the headers, and
	// those the bridge tells Memos.
	keptClaims []string
	forward    *httputil.ReverseProxy
	mux        *http.ServeMux
}

// New builds a Proxy from a loaded configuration. It does no I/O: discovery
// starts with Start.
func New(cfg *config.Config, opts Options) (*Proxy, error) {
	if cfg == nil {
		return nil, errors.New("proxy: no configuration")
	}
	p := &Proxy{
		log:          opts.Logger,
		now:          opts.Now,
		logoutURL:    cfg.OIDC.LogoutURL,
		idpTimeout:   cfg.OIDC.Timeout,
		lifetime:     cfg.Session.Lifetime,
		preserveHost: cfg.PreserveHost == nil || *cfg.PreserveHost,
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	var err error
	if p.external, err = parseAbsolute(cfg.ExternalURL); err != nil {
		return nil, fmt.Errorf("proxy: external_url: %w", err)
	}
	p.external.Path, p.external.RawPath = "", ""
	if p.upstream, err = parseAbsolute(cfg.Upstream); err != nil {
		return nil, fmt.Errorf("proxy: upstream: %w", err)
	}
	if p.idpTimeout <= 0 {
		p.idpTimeout = config.DefaultTimeout
	}
	idpClient := opts.IdPClient
	if idpClient == nil {
		if idpClient, err = rp.NewHTTPClient(cfg.OIDC.CAFile, p.idpTimeout); err != nil {
			return nil, err
		}
	}
	p.metrics = newMetrics(opts.Version)
	timed := *idpClient // a copy: the caller's client is not changed
	timed.Transport = idpTransport{next: transportOf(idpClient), m: p.metrics}
	if p.oidc, err = rp.New(rp.Config{
		Issuer: cfg.OIDC.Issuer, ClientID: cfg.OIDC.ClientID, ClientSecret: cfg.OIDC.ClientSecret,
		AuthMethod: cfg.OIDC.ClientAuthMethod, Scopes: cfg.OIDC.Scopes,
		RedirectURL: p.external.String() + Prefix + "callback",
		HTTPClient:  &timed, Timeout: p.idpTimeout, Now: p.now, Log: p.log,
	}); err != nil {
		return nil, err
	}
	if p.lifetime <= 0 {
		p.lifetime = config.DefaultLifetime
	}
	p.idle = cfg.Session.IdleTimeout
	secure := p.external.Scheme == "https"
	var secrets [][]byte // the first encrypts, all decrypt
	for _, s := range cfg.Session.Secret {
		secrets = append(secrets, []byte(s))
	}
	if p.store, err = openStore(cfg, secure, p.lifetime, p); err != nil {
		return nil, err
	}
	if p.flows, err = session.NewCodec(secrets, "login", session.CookieOptions{Secure: secure, MaxAge: flowLifetime}); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	base := cfg.Session.CookieName
	if base == "" {
		base = config.DefaultCookieName
	}
	p.flowPrefix = p.flows.CookieName(base + "_login_")
	hm := cfg.Headers
	if hm == nil {
		hm = config.DefaultHeaders()
	}
	p.headers = newIdentityHeaders(hm)
	p.access = newAccessRules(cfg.Access)
	p.ids = &identities{headers: p.headers, access: p.access}
	p.public = publicPaths(cfg.PublicPaths)
	p.accessLog = cfg.Log.Access == nil || *cfg.Log.Access
	if cfg.UpstreamReadyPath != "" {
		p.readyURL = p.upstream.JoinPath(cfg.UpstreamReadyPath).String()
	}
	for _, tp := range cfg.TrustedProxies {
		prefix, err := config.ParsePrefix(tp)
		if err != nil {
			return nil, fmt.Errorf("proxy: trusted_proxies: %w", err)
		}
		p.trusted = append(p.trusted, prefix)
	}

	transport := opts.Transport
	if transport == nil {
		transport = NewTransport()
	}
	if cfg.Memos.PassBearerTokens {
		memosURL := cfg.Memos.URL
		if memosURL == "" {
			memosURL = p.upstream.String()
		}
		p.bearers = newBearerChecker(memosURL, transport)
	}
	p.keptClaims = p.headers.claims()
	if cfg.Memos.Bridge {
		if p.bridge, err = newMemosBridge(cfg, p, transport); err != nil {
			return nil, err
		}
		for _, c := range []string{cfg.Memos.UsernameClaim, "name", "email"} {
			if !slices.Contains(p.keptClaims, c) {
				p.keptClaims = append(p.keptClaims, c)
			}
		}
	}
	p.forward = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      transport,
		BufferPool:     newBufferPool(),
		ErrorHandler:   p.upstreamError,
		ModifyResponse: p.upstreamAnswered,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	p.routes()
	return p, nil
}

// Close releases the connections to the session store. Call it once the
// server has stopped: requests still in flight need the store.
func (p *Proxy) Close() error {
	return p.store.Close()
}

// BridgeHandler serves the token and userinfo endpoints Memos calls, for
// memos.bridge_listen; nil when the bridge is off.
func (p *Proxy) BridgeHandler() http.Handler {
	if p.bridge == nil {
		return nil
	}
	return p.bridgeHandler()
}

func transportOf(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}

func parseAbsolute(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("%q is not an absolute URL", s)
	}
	return u, nil
}

func (p *Proxy) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /oauth2/start", p.handleStart)
	m.HandleFunc("GET /oauth2/callback", p.handleCallback)
	m.HandleFunc("GET /oauth2/sign_out", p.handleSignOut)
	m.HandleFunc("POST /oauth2/sign_out", p.handleSignOut)
	m.HandleFunc("GET /oauth2/userinfo", p.handleUserinfo)
	m.HandleFunc("GET /oauth2/auth", p.handleAuth)
	m.HandleFunc("POST /oauth2/backchannel_logout", p.handleBackchannelLogout)
	m.HandleFunc("GET /oauth2/memos/authorize", p.handleMemosAuthorize)
	m.HandleFunc("GET /oauth2/healthz", p.handleHealthz)
	m.HandleFunc("GET /oauth2/readyz", p.handleReadyz)
	m.HandleFunc("/oauth2/", func(w http.ResponseWriter, r *http.Request) {
		p.errorPage(w, r, http.StatusNotFound, "Not found", "The proxy has no such page.")
	})
	p.mux = m
}

func routeOf(path string) int {
	switch {
	case !strings.HasPrefix(path, Prefix):
		return routeProxied
	case path == Prefix+"healthz" || path == Prefix+"readyz":
		return routeHealth
	}
	return routeSignIn
}

// ServeHTTP answers the proxy's own endpoints under /oauth2/ and sends
// everything else through the authentication check to the upstream. The
// decision is made on the decoded path only.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	x := &exchange{ResponseWriter: w}
	if strings.HasPrefix(r.URL.Path, Prefix) {
		w.Header().Set("Cache-Control", "no-store")
		p.mux.ServeHTTP(x, r)
	} else {
		p.serveProtected(x, r)
	}
	if x.stream {
		p.metrics.streams.Dec()
	}
	p.metrics.request(routeOf(r.URL.Path), x.status)
	if p.accessLog {
		p.logExchange(r, x, time.Since(start))
	}
}
