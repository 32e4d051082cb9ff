package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"
)

// NewTransport returns the transport to the upstream: Go's default dialer
// and TLS settings, enough idle connections that a busy proxy does not
// re-dial (Go's default keeps 2 per host), and no transparent compression,
// so bodies pass through as the upstream sent them. No response timeout:
// Server-Sent Events and long downloads are legitimate.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 1024
	t.IdleConnTimeout = 90 * time.Second
	t.DisableCompression = true
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return t
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
			for _, s := range rt.setters {
				s.fill(pr.Out.Header, x.id)
			}
		}
		x.forwarded = time.Now()
	}
}

// upstreamAnswered notes how long the upstream took to answer.
func (p *Proxy) upstreamAnswered(rt *Route, resp *http.Response) error {
	if resp.StatusCode == http.StatusSwitchingProtocols && !switchAllowed(resp.Request, resp) {
		p.metrics.upgradesRefused.WithLabelValues("upstream_switch").Inc()
		return errUnaskedSwitch // a 502; the connection is not switched
	}
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
	if _, ok := resp.Header["Set-Cookie"]; ok {
		p.dropOwnCookies(rt, resp.Header)
	}
	for _, in := range rt.integrations {
		in.Answered(resp) // may set the proxy's cookies itself
	}
	return nil
}

// dropOwnCookies removes what an upstream sets of the proxy's cookies
// (the session, its chunks, the login cookies): an application may not
// plant a session, its own or anyone's, in a browser.
func (p *Proxy) dropOwnCookies(rt *Route, h http.Header) {
	name := p.store.CookieName()
	kept := h["Set-Cookie"][:0:0]
	for _, line := range h["Set-Cookie"] {
		k, _, _ := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if strings.EqualFold(k, name) || len(k) > len(name) && strings.EqualFold(k[:len(name)+1], name+"_") {
			p.log.Warn("the upstream set one of the proxy's cookies; dropped", "route", rt.name, "cookie", k)
			continue
		}
		kept = append(kept, line)
	}
	if len(kept) == 0 {
		delete(h, "Set-Cookie")
		return
	}
	h["Set-Cookie"] = kept
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

// bufferPool lends 32 KiB copy buffers to the ReverseProxy.
type bufferPool struct{ pool sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.pool.Get().(*[]byte)) }
func (b *bufferPool) Put(s []byte) { b.pool.Put(&s) }
