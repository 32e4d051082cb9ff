package proxy

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// requestPath composes what every request goes through, top to bottom:
//
//	record     the exchange, in the request's context (metrics, access log)
//	strip      what a client may not send: identity headers, every spelling
//	route      the route that serves the request's host and path (none: 404,
//	           nothing forwarded)
//	upgrade    CONNECT refused; an upgrade other than a WebSocket handshake
//	           to a route that allows WebSockets dropped (upgrade.go)
//	/oauth2/   the proxy's own endpoints (sign-in, sign-out, forward-auth,
//	           health), answered here and never forwarded
//	bearer     a route's bearer requests: the token alone authenticates
//	           (bearer.go); they skip session, keep up and app
//	session    the request's session, from the store (503 while it is down)
//	keep up    the refresh when it is due, the idle renewal
//	app        the route's integrations, which may answer themselves
//	access     the route's rules: a session they admit, a public path, an
//	           integration's word for a request without a session; else
//	           sign-in (browsers), 401 (API calls) or 403
//	forward    to the route's upstream, with the identity headers set
//
// A route without integrations has no app step.
func (p *Proxy) requestPath() http.Handler {
	common := p.endpoints(nil)
	for _, rt := range p.routes.routes {
		var app http.Handler = p.admit(rt, rt.forward)
		for i := len(rt.integrations) - 1; i >= 0; i-- {
			app = rt.integrations[i].Wrap(app)
		}
		// A bearer request skips the session and the integrations (it is
		// an API call of its own, not a browser's).
		rt.handler = p.upgradeStep(rt, p.bearerStep(rt, p.findSession(rt, p.keepUpStep(rt, app)), p.admit(rt, rt.forward)))
		rt.own = p.endpoints(rt)
	}
	return p.record(p.strip(p.routeStep(common)))
}

// routeStep finds the route of a request, by its host and path, and
// sends it on: to the route's own endpoints under /oauth2/ (the decoded
// path only), or along the route's part of the request path. A host no
// route serves gets 404 and is never forwarded; its /oauth2/ endpoints
// are the sign-in host's (external_url), the health checks and
// forward-auth (which routes by what the front proxy says).
func (p *Proxy) routeStep(common http.Handler) http.Handler {
	if all := p.routes.all; all != nil { // one route on every host: no host to read
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			exchangeFrom(r.Context()).route = all
			if strings.HasPrefix(r.URL.Path, Prefix) {
				w.Header().Set("Cache-Control", "no-store")
				all.own.ServeHTTP(w, r)
				return
			}
			all.handler.ServeHTTP(w, r)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := p.requestHost(r)
		rt := p.routes.match(host, r.URL.Path)
		x := exchangeFrom(r.Context())
		x.route = rt
		if strings.HasPrefix(r.URL.Path, Prefix) {
			w.Header().Set("Cache-Control", "no-store")
			switch {
			case rt != nil:
				rt.own.ServeHTTP(w, r)
			case host == p.home || hostFree(r.URL.Path):
				common.ServeHTTP(w, r)
			case len(p.routes.onHost(host)) > 0: // a host whose routes all have a path
				x.route = p.routes.onHost(host)[0]
				x.route.own.ServeHTTP(w, r)
			default:
				p.notFound(w, r, host)
			}
			return
		}
		if rt == nil {
			p.notFound(w, r, host)
			return
		}
		rt.handler.ServeHTTP(w, r)
	})
}

// hostFree are the endpoints every host answers, however it is named:
// the health checks (a probe names the pod by its address), forward-auth
// (routed by the front proxy's X-Forwarded-Host), the signed identity's
// key set (an application may fetch it by an internal name) and
// back-channel logout (the provider may post to one; the logout token is
// what is checked).
func hostFree(path string) bool {
	switch strings.TrimPrefix(path, Prefix) {
	case "healthz", "readyz", "auth", "jwks.json", "backchannel_logout":
		return true
	}
	return false
}

// notFound answers a request for a host (or path) no route serves.
func (p *Proxy) notFound(w http.ResponseWriter, r *http.Request, host string) {
	p.log.Debug("no route serves the request", "host", host, "path", r.URL.Path, "client", p.trusted.clientIP(r))
	p.errorPage(w, r, http.StatusNotFound, "Not found", "No application is served at this address.")
}

// record keeps the exchange of each request in its context, and counts
// and logs it when it is over.
func (p *Proxy) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		x := &exchange{ResponseWriter: w}
		r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x))
		next.ServeHTTP(x, r)
		if x.stream {
			p.metrics.streams.Dec()
		}
		counters := p.metrics.none
		if x.route != nil {
			counters = x.route.counters
		}
		counters.count(routeOf(r.URL.Path), x.status)
		if p.accessLog {
			p.logExchange(r, x, time.Since(start))
		}
	})
}

// strip deletes every header a client may not send: any spelling of an
// identity header the proxy sets, for any route. (Trailers are stripped
// on the way out, in rewrite: they arrive after the body.)
func (p *Proxy) strip(next http.Handler) http.Handler {
	var all identityHeaders // every route's names, each once
	for _, rt := range p.routes.routes {
		for _, n := range rt.headers.norm {
			if !slices.Contains(all.norm, n) {
				all.norm = append(all.norm, n)
			}
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		all.strip(r.Header)
		next.ServeHTTP(w, r)
	})
}

// findSession finds the request's session in the store and notes its
// identity in the exchange.
func (p *Proxy) findSession(rt *Route, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := p.lookupIdentity(w, r, rt, p.now())
		if err != nil {
			p.storeUnavailable(w, r, err)
			return
		}
		exchangeFrom(r.Context()).id = id
		next.ServeHTTP(w, r)
	})
}

// keepUpStep renews the session when its refresh is due, or its cookie
// for the idle timeout.
func (p *Proxy) keepUpStep(rt *Route, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if x := exchangeFrom(r.Context()); x.id != nil {
			x.id = p.keepUp(w, r, rt, x.id, p.now())
		}
		next.ServeHTTP(w, r)
	})
}

// admit applies the route's access rules: a session they admit passes
// with its identity; a public path passes without one; a request without
// a session may pass on an integration's word, or is sent to sign in;
// a signed-in user the rules keep out gets 403.
func (p *Proxy) admit(rt *Route, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := exchangeFrom(r.Context())
		id := x.id
		switch {
		case id != nil && id.allowed:
			next.ServeHTTP(w, r)
		case rt.public.match(r): // passes anonymously
			x.id = nil
			next.ServeHTTP(w, r)
		case id == nil && rt.anonymous(w, r, next):
		case id == nil:
			p.unauthenticated(w, r)
		default:
			p.forbidden(w, r, id.session)
		}
	})
}

// anonymous asks the route's integrations about a request without a
// session.
func (rt *Route) anonymous(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
	for _, in := range rt.integrations {
		if in.Anonymous(w, r, forward) {
			return true
		}
	}
	return false
}

// loadIdentity is the session and keep-up steps for the proxy's own
// endpoints: the identity of a request's session, kept up; nil when there
// is none, session.ErrStoreDown when the store cannot tell.
func (p *Proxy) loadIdentity(w http.ResponseWriter, r *http.Request, rt *Route) (*Identity, error) {
	now := p.now()
	id, err := p.lookupIdentity(w, r, rt, now)
	if id == nil {
		return nil, err
	}
	return p.keepUp(w, r, rt, id, now), nil
}

// lookupIdentity finds the identity of a request's session cookie in the
// store: a cookie that is invalid, tampered with, expired, idle too long,
// or ended (back-channel logout, sign-out) counts as none and is cleared.
// It returns session.ErrStoreDown (the cookie kept) when the store cannot
// be reached.
func (p *Proxy) lookupIdentity(w http.ResponseWriter, r *http.Request, rt *Route, now time.Time) (*Identity, error) {
	e, err := p.store.Load(w, r, now)
	switch {
	case errors.Is(err, session.ErrStoreDown):
		return nil, err
	case err != nil:
		p.log.Debug("session cookie refused", "err", err, "client", p.trusted.clientIP(r))
	}
	if e == nil {
		return nil, nil
	}
	p.store.Seen(e, r, now)
	return rt.ids.of(e), nil
}
