package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
)

// Route is the unit the proxy serves: an upstream, the identity headers
// it gets, the access rules and public paths that guard it, and the
// integrations that fit the proxy to it. A configuration without routes
// makes exactly one, which serves every host (host "").
type Route struct {
	name         string   // labels metrics and log lines
	host         string   // a name, "*." and a name, or "" (every host)
	prefix       string   // the path prefix, or "" (the whole host)
	origin       *url.URL // the public origin of an exact host; else external_url
	upstream     *url.URL
	preserveHost bool
	websockets   bool // a WebSocket handshake may switch the connection (see upgrade.go)
	headers      identityHeaders
	access       accessRules
	ids          *identities
	public       publicPaths
	integrations []Integration
	bearer       *bearerPolicy // nil: bearer tokens are not accepted
	// how the home page shows it (config title, description, icon, listed)
	title, description, icon string
	listed                   bool
	signed                   []*signedIdentity // identity_jwt: one, or none
	setters                  []setter          // fill the outgoing identity: headers, then the JWT
	kept                     []string          // the claims its sessions keep: see claims
	used                     []string          // every claim its identity reads: checked at sign-in
	listGroups               bool              // sessions keep the groups list (the JWT or an integration reads it)
	forward                  *httputil.ReverseProxy
	handler                  http.Handler // the route's part of the request path
	own                      http.Handler // its /oauth2/ endpoints
	counters                 *requestCounters
	ready                    readiness
}

// newRoute builds a route of the configuration, forwarding with transport.
func (p *Proxy) newRoute(cfg *config.Route, transport http.RoundTripper, integrations []Integration) (*Route, error) {
	rt := &Route{
		name:         cfg.Name,
		host:         cfg.Host,
		prefix:       cfg.Path,
		origin:       p.external,
		preserveHost: cfg.PreserveHost == nil || *cfg.PreserveHost,
		websockets:   cfg.WebSockets == nil || *cfg.WebSockets,
		public:       publicPaths(cfg.PublicPaths),
		integrations: integrations,
		counters:     p.metrics.forRoute(cfg.Name),
		title:        cfg.Title,
		description:  cfg.Description,
		icon:         cfg.Icon,
		listed:       cfg.Listed == nil || *cfg.Listed,
	}
	if rt.name == "" {
		rt.name = "default"
	}
	if rt.title == "" {
		rt.title = rt.name
		if rt.host == "" { // the one upstream: named by the address people know
			rt.title = p.external.Hostname()
		}
	}
	if rt.host != "" && !strings.HasPrefix(rt.host, "*.") {
		rt.origin = p.originOf(rt.host)
	}
	var err error
	if rt.upstream, err = parseAbsolute(cfg.Upstream); err != nil {
		return nil, fmt.Errorf("proxy: route %s: upstream: %w", rt.name, err)
	}
	hm := cfg.Headers
	if hm == nil {
		hm = config.DefaultHeaders()
	}
	rt.headers = newIdentityHeaders(hm)
	rt.setters = []setter{rt.headers}
	if j := cfg.IdentityJWT; j != nil {
		si, err := newSignedIdentity(j, p.external.String(), p.now, p.log)
		if err != nil {
			return nil, fmt.Errorf("proxy: route %s: identity_jwt: %w", rt.name, err)
		}
		rt.signed = append(rt.signed, si)
		rt.setters = append(rt.setters, si)
		rt.listGroups = si.listsGroups()
		rt.headers.alsoStrip(j.Header)
	} else {
		rt.headers.alsoStrip(config.DefaultIdentityJWTHeader) // never from a client, on or off
	}
	for _, h := range []string{config.DefaultBearerClientHeader, config.DefaultBearerScopesHeader, config.DefaultBearerAuthHeader} {
		rt.headers.alsoStrip(h) // never from a client, on or off
	}
	if b := cfg.Bearer; b != nil {
		rt.bearer = newBearerPolicy(b, rt.name, cfg.Memos.PassBearerTokens || cfg.Memos.Bridge)
		rt.headers.alsoStrip(rt.bearer.clientHeader)
		rt.headers.alsoStrip(rt.bearer.scopesHeader)
		rt.headers.alsoStrip(rt.bearer.authHeader)
		rt.setters = append(rt.setters, rt.bearer)
	}
	if cfg.Access != nil {
		rt.access = newAccessRules(*cfg.Access)
	}
	rt.ids = &identities{headers: rt.headers, access: rt.access}
	rt.kept = rt.claims()
	for _, in := range integrations {
		rt.listGroups = rt.listGroups || slices.Contains(in.Claims(), "groups")
	}
	rt.used = append(slices.Clone(rt.kept), rt.access.claims()...)
	if rt.listGroups {
		rt.used = append(rt.used, "groups")
	}
	if cfg.UpstreamReadyPath != "" {
		rt.ready.url = rt.upstream.JoinPath(cfg.UpstreamReadyPath).String()
	}
	rt.ready.transport = transport
	rt.forward = &httputil.ReverseProxy{
		Rewrite:      func(pr *httputil.ProxyRequest) { p.rewrite(rt, pr) },
		Transport:    transport,
		BufferPool:   newBufferPool(),
		ErrorHandler: p.upstreamError,
		ModifyResponse: func(resp *http.Response) error {
			return p.upstreamAnswered(rt, resp)
		},
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	return rt, nil
}

// claims lists the claims the route's sessions keep: those of its headers
// and those its integrations read.
func (rt *Route) claims() []string {
	out := rt.headers.claims()
	for _, si := range rt.signed {
		for _, c := range si.sessionClaims() {
			if c != "groups" && !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	for _, in := range rt.integrations {
		for _, c := range in.Claims() {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// readiness is the last answer of an upstream's ready path.
type readiness struct {
	url       string // the upstream's ready path, or ""
	transport http.RoundTripper
	mu        sync.Mutex
	at        time.Time
	err       error
}

// upstreamReady asks the upstream's ready path, if one is configured, at
// most once every 2 s however often readyz is polled.
func (rt *Route) upstreamReady(ctx context.Context, now func() time.Time) error {
	rd := &rt.ready
	if rd.url == "" {
		return nil
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if now().Before(rd.at.Add(2 * time.Second)) {
		return rd.err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rd.url, nil)
	if err == nil {
		var resp *http.Response
		if resp, err = rd.transport.RoundTrip(req); err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				err = fmt.Errorf("%s answered %s", rd.url, resp.Status)
			}
		}
	}
	rd.at, rd.err = now(), err
	return err
}
