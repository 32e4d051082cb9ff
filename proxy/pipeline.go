package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// requestPath composes what every request goes through, top to bottom:
//
//	record     the exchange, in the request's context (metrics, access log)
//	strip      what a client may not send: identity headers, every spelling
//	/oauth2/   the proxy's own endpoints (sign-in, sign-out, forward-auth,
//	           health), answered here and never forwarded
//	route      the route that serves the request
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
	own := p.endpoints()
	rt := p.route
	var app http.Handler = p.admit(rt, rt.forward)
	for i := len(rt.integrations) - 1; i >= 0; i-- {
		app = rt.integrations[i].Wrap(app)
	}
	rt.handler = p.findSession(rt, p.keepUpStep(rt, app))
	routed := p.routeStep(rt.handler)
	return p.record(p.strip(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, Prefix) { // the decoded path only
			w.Header().Set("Cache-Control", "no-store")
			own.ServeHTTP(w, r)
			return
		}
		routed.ServeHTTP(w, r)
	})))
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
		p.metrics.request(routeOf(r.URL.Path), x.status)
		if p.accessLog {
			p.logExchange(r, x, time.Since(start))
		}
	})
}

// strip deletes every header a client may not send: any spelling of an
// identity header the proxy sets. (Trailers are stripped on the way out,
// in rewrite: they arrive after the body.)
func (p *Proxy) strip(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.route.headers.strip(r.Header)
		next.ServeHTTP(w, r)
	})
}

// routeStep finds the route of a request. Today's configuration makes one
// route, which serves every host.
func (p *Proxy) routeStep(next http.Handler) http.Handler {
	return next
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
	return rt.ids.of(e), nil
}
