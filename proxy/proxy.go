// Package proxy is the proxy's HTTP surface and its request path: the
// sign-in endpoints under /oauth2/, the route (an upstream with its
// identity headers, access rules, public paths and integrations), the
// steps every request takes (pipeline.go), the pages, the metrics and the
// forwarding.
//
// It imports session and config, and its own packages proxy/rp (the
// OpenID Connect relying party); an application integration such as
// proxy/memos imports this package, never the other way round (see
// Integration). Nothing here knows which session store runs: that is
// decided in openStore only.
package proxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
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
	// Integrations fit the proxy to the application of a route: New (and
	// every Reload) calls it once per route of cfg and provisions what it
	// returns (nil: no integrations anywhere); see Integration.
	Integrations func(cfg *config.Config, rc *config.Route) ([]Integration, error)
}

// Proxy is the authenticating reverse proxy. Build it with New, call Start
// to begin discovery, and serve it as an http.Handler; Reload replaces its
// configuration while it serves.
//
// A Proxy value is one generation: what one configuration built. The
// value New returns stays the handle of every later one (see shared).
type Proxy struct {
	sh   *shared
	cfg  *config.Config     // what this generation was built from
	ctx  context.Context    // the generation's background work: see start
	stop context.CancelFunc // ends it, when the generation is replaced
	log  *slog.Logger
	now  func() time.Time

	external   *url.URL
	oidc       *rp.Client
	logoutURL  string
	idpTimeout time.Duration

	lifetime    time.Duration
	idle        time.Duration // 0: no idle timeout
	store       session.Store
	storeWarned atomic.Int64 // when "store unavailable" was last logged (Unix s)
	// bearerWarned is when "the provider could not check a token" was
	// last logged (Unix s).
	bearerWarned atomic.Int64
	flows        *session.Codec
	flowPrefix   string

	trusted   trustedProxies
	routes    *routeTable
	home      string   // external_url's host, normalized: where sign-in happens
	claims    claimSet // what sessions keep, for every route
	hops      []string // the origins a sign-out visits: see handleSignOut
	accessLog bool
	metrics   *metrics
	pages     pageSet
	handler   http.Handler // the request path
	bearers   *bearerChecks
	csrfKey   []byte // binds the home pages' forms to their session
}

// New builds a Proxy from a loaded configuration. It does no I/O:
// discovery starts with Start. Reload replaces the configuration later.
func New(cfg *config.Config, opts Options) (*Proxy, error) {
	if cfg == nil {
		return nil, errors.New("proxy: no configuration")
	}
	sh := &shared{opts: opts, metrics: newMetrics(opts.Version), transport: opts.Transport, gate: newSignInGate(), bearerGate: newSignInGate()}
	if sh.transport == nil {
		sh.transport = NewTransport()
	}
	p, err := sh.build(cfg, nil)
	if err != nil {
		return nil, err
	}
	sh.live.Store(p)
	return p, nil
}

// build makes a generation of the proxy for cfg: a new one, or, with
// prev, one that keeps prev's store (and its discovery, when the issuer
// is the same).
func (sh *shared) build(cfg *config.Config, prev *Proxy) (*Proxy, error) {
	opts := sh.opts
	p := &Proxy{
		sh:         sh,
		cfg:        cfg,
		log:        opts.Logger,
		now:        opts.Now,
		logoutURL:  cfg.OIDC.LogoutURL,
		idpTimeout: cfg.OIDC.Timeout,
		lifetime:   cfg.Session.Lifetime,
		idle:       cfg.Session.IdleTimeout,
		accessLog:  cfg.Log.Access == nil || *cfg.Log.Access,
		metrics:    sh.metrics,
		bearers:    newBearerChecks(),
	}
	if len(cfg.Session.Secret) > 0 {
		k := sha256.Sum256([]byte("oidc-proxy forms\x00" + cfg.Session.Secret[0]))
		p.csrfKey = k[:]
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.idpTimeout <= 0 {
		p.idpTimeout = config.DefaultTimeout
	}
	if p.lifetime <= 0 {
		p.lifetime = config.DefaultLifetime
	}
	var err error
	if p.external, err = parseAbsolute(cfg.ExternalURL); err != nil {
		return nil, fmt.Errorf("proxy: external_url: %w", err)
	}
	p.external.Path, p.external.RawPath = "", ""
	for _, tp := range cfg.TrustedProxies {
		prefix, err := config.ParsePrefix(tp)
		if err != nil {
			return nil, fmt.Errorf("proxy: trusted_proxies: %w", err)
		}
		p.trusted = append(p.trusted, prefix)
	}
	if p.pages, err = loadPages(cfg.Pages.Dir); err != nil {
		return nil, err
	}
	if p.oidc, err = p.newRelyingParty(cfg, opts.IdPClient); err != nil {
		return nil, err
	}
	secure := p.external.Scheme == "https"
	if prev != nil {
		p.store = prev.store
	} else if p.store, err = openStore(cfg, secure, p.lifetime, p); err != nil {
		return nil, err
	}
	if p.flows, p.flowPrefix, err = newFlowCodec(cfg, secure); err != nil {
		return nil, err
	}
	transport := sh.transport
	p.home = normalHost(p.external.Host)
	var routes []*Route
	for _, rc := range cfg.RouteList() {
		var ins []Integration
		if opts.Integrations != nil {
			if ins, err = opts.Integrations(cfg, &rc); err != nil {
				return nil, err
			}
		}
		rt, err := p.newRoute(&rc, transport, ins)
		if err != nil {
			return nil, err
		}
		for _, in := range rt.integrations {
			if err := in.Provision(p.kit(rt, transport)); err != nil {
				return nil, err
			}
		}
		routes = append(routes, rt)
	}
	p.routes = newRouteTable(routes)
	p.claims = claimsOf(routes)
	p.hops = p.signOutHops()
	p.handler = p.requestPath()
	return p, nil
}

// originOf is the public origin of a host the proxy serves: external_url's
// scheme and port with that host.
func (p *Proxy) originOf(host string) *url.URL {
	u := &url.URL{Scheme: p.external.Scheme, Host: host}
	if port := p.external.Port(); port != "" {
		u.Host = net.JoinHostPort(host, port)
	}
	return u
}

// newRelyingParty builds the OpenID Connect client, its requests timed
// for the metrics.
func (p *Proxy) newRelyingParty(cfg *config.Config, client *http.Client) (*rp.Client, error) {
	if client == nil {
		var err error
		if client, err = rp.NewHTTPClient(cfg.OIDC.CAFile, p.idpTimeout); err != nil {
			return nil, err
		}
	}
	timed := *client // a copy: the caller's client is not changed
	timed.Transport = idpTransport{next: transportOf(client), m: p.metrics}
	return rp.New(rp.Config{
		Issuer: cfg.OIDC.Issuer, ClientID: cfg.OIDC.ClientID, ClientSecret: cfg.OIDC.ClientSecret,
		AuthMethod: cfg.OIDC.ClientAuthMethod, Scopes: cfg.OIDC.Scopes,
		RedirectURL: p.external.String() + Prefix + "callback",
		HTTPClient:  &timed, Timeout: p.idpTimeout, Now: p.now, Log: p.log,
	})
}

// kit is what the core lends the integrations of rt.
func (p *Proxy) kit(rt *Route, transport http.RoundTripper) Kit {
	return Kit{
		Log: p.log, Now: p.now, External: rt.origin, Transport: transport, Upstream: rt.upstream,
		Store: p.store, ClientIP: p.trusted.clientIP,
		Identify: func(w http.ResponseWriter, r *http.Request) (*Identity, error) { return p.loadIdentity(w, r, rt) },
		SignIn:   p.startFlow,
		SignOut:  p.handleSignOut,
		EndSession: func(w http.ResponseWriter, r *http.Request, id *Identity) {
			if id != nil {
				p.endSession(r, id)
			}
			p.store.Clear(w, r)
		},
		ErrorPage:        p.errorPage,
		Forbidden:        p.forbidden,
		StoreUnavailable: p.storeUnavailable,
		Provider: func() (string, string, string, bool) {
			op := p.oidc.Provider()
			if op == nil {
				return "", "", "", false
			}
			return op.AuthURL(), op.TokenURL(), op.UserinfoURL(), true
		},
	}
}

// Close releases the connections to the session store. Call it once the
// server has stopped: requests still in flight need the store.
func (p *Proxy) Close() error {
	if g := p.sh.live.Load(); g.stop != nil {
		g.stop()
	}
	return p.store.Close()
}

// ServeHTTP answers the proxy's own endpoints under /oauth2/ and sends
// everything else through the authentication check to the upstream. The
// decision is made on the decoded path only. See requestPath. Each request
// runs wholly on the generation live when it arrived.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.sh.live.Load().handler.ServeHTTP(w, r)
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
