package proxy

import (
	"context"
	"errors"
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
// integrations that fit the proxy to it. Today's configuration makes
// exactly one route, which serves every host.
type Route struct {
	upstream     *url.URL
	preserveHost bool
	headers      identityHeaders
	access       accessRules
	ids          *identities
	public       publicPaths
	integrations []Integration
	forward      *httputil.ReverseProxy
	handler      http.Handler // the route's part of the request path
	ready        readiness
}

// newRoute builds the route of a configuration, forwarding with transport.
func (p *Proxy) newRoute(cfg *config.Config, transport http.RoundTripper, integrations []Integration) (*Route, error) {
	rt := &Route{
		preserveHost: cfg.PreserveHost == nil || *cfg.PreserveHost,
		public:       publicPaths(cfg.PublicPaths),
		integrations: integrations,
	}
	var err error
	if rt.upstream, err = parseAbsolute(cfg.Upstream); err != nil {
		return nil, fmt.Errorf("proxy: upstream: %w", err)
	}
	hm := cfg.Headers
	if hm == nil {
		hm = config.DefaultHeaders()
	}
	rt.headers = newIdentityHeaders(hm)
	rt.access = newAccessRules(cfg.Access)
	rt.ids = &identities{headers: rt.headers, access: rt.access}
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
	for _, in := range rt.integrations {
		for _, c := range in.Claims() {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// rewrite builds the upstream request for rt. ReverseProxy has already
// removed hop-by-hop headers (including any named in Connection) and the
// client's Forwarded and X-Forwarded-* headers; the strip step removed
// every spelling of the identity headers before, so a client that lists
// one in Connection cannot hide it either.
func (p *Proxy) rewrite(rt *Route, pr *httputil.ProxyRequest) {
	pr.SetURL(rt.upstream)
	if rt.preserveHost {
		pr.Out.Host = pr.In.Host
	}
	trusted := p.trusted.trustedPeer(pr.In)
	if trusted { // a trusted front proxy's chain is kept and extended
		if xff := pr.In.Header["X-Forwarded-For"]; len(xff) > 0 {
			pr.Out.Header["X-Forwarded-For"] = []string{strings.Join(xff, ", ")}
		}
	}
	pr.SetXForwarded()
	if xfh := pr.In.Header.Get("X-Forwarded-Host"); trusted && xfh != "" {
		pr.Out.Header.Set("X-Forwarded-Host", xfh)
	}
	// The scheme the browser used is that of external_url, whatever sits
	// in front of the proxy.
	pr.Out.Header["X-Forwarded-Proto"] = []string{p.external.Scheme}
	if pr.Out.Trailer != nil { // (the headers were stripped on the way in)
		rt.headers.strip(pr.Out.Trailer)
	}
	stripCookies(pr.Out.Header, p.store.CookieName())
	if x := exchangeFrom(pr.In.Context()); x != nil {
		if x.id != nil {
			rt.headers.inject(pr.Out.Header, x.id)
		}
		x.forwarded = time.Now()
	}
}

// upstreamAnswered notes how long the upstream took to answer.
func (p *Proxy) upstreamAnswered(rt *Route, resp *http.Response) error {
	x := exchangeFrom(resp.Request.Context())
	if x == nil || x.forwarded.IsZero() {
		return nil
	}
	x.upstream = time.Since(x.forwarded)
	p.metrics.upstream.Observe(x.upstream.Seconds())
	if resp.StatusCode == http.StatusSwitchingProtocols || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		x.stream = true
		p.metrics.streams.Inc()
	}
	for _, in := range rt.integrations {
		in.Answered(resp)
	}
	return nil
}

// upstreamError answers when the upstream cannot be reached.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if x := exchangeFrom(r.Context()); x != nil && !x.forwarded.IsZero() {
		x.upstream = time.Since(x.forwarded)
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody is left to answer.
		w.WriteHeader(499)
		return
	}
	p.log.Warn("upstream request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	p.errorPage(w, r, http.StatusBadGateway, "The application is not answering",
		"The proxy could not reach the application behind it. Please try again in a moment.")
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
