package proxy

import (
	"net/http"
	"net/url"
)

// handleAuth is the forward-auth endpoint for a front proxy that already
// routes to the application (nginx auth_request, Traefik forwardAuth,
// Caddy forward_auth). With a valid session of an allowed user it answers
// 202 with the identity headers; a user the access rules keep out gets
// 403; a request for one of public_paths (as a trusted front proxy names
// it) gets 202 with no identity. Without a session it answers 401, or, with ?redirect=true (Traefik,
// Caddy) and a browser page load, a redirect into sign-in that returns to
// the original URL.
//
// The original URL is taken from X-Forwarded-Uri only when the request
// comes from one of trusted_proxies; otherwise the sign-in returns to "/".
// The front proxy must route /oauth2/ on the same host to this proxy, and
// must remove client-sent identity headers before adding the ones from
// this answer.
//
// With routes, the route is the one that serves the front proxy's
// X-Forwarded-Host and X-Forwarded-Uri (from a trusted proxy only; from
// anyone else, the request's own host and path); a host no route serves
// gets 404.
func (p *Proxy) handleAuth(w http.ResponseWriter, r *http.Request) {
	rt := p.authRoute(r)
	x := exchangeFrom(r.Context())
	if x != nil {
		x.route = rt
	}
	if rt == nil {
		WriteJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "message": "no application is served here"})
		return
	}
	id, err := p.loadIdentity(w, r, rt)
	if x != nil {
		x.id = id
	}
	switch {
	case err != nil:
		p.storeUnavailable(w, r, err)
	case id == nil && p.publicOriginal(rt, r):
		w.WriteHeader(http.StatusAccepted) // public: passes, with no identity
	case id == nil:
		if r.URL.Query().Get("redirect") == "true" && IsNavigation(forwardedRequest(r)) {
			p.startFlow(w, r, CleanReturnURL(p.originalURI(r)))
			return
		}
		WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated", "sign_in_url": p.external.String() + Prefix + "start"})
	case !id.allowed:
		p.forbidden(w, r, id.session)
	default:
		for _, s := range rt.setters {
			s.fill(w.Header(), id)
		}
		w.WriteHeader(http.StatusAccepted)
	}
}

// publicOriginal reports whether the front proxy, if trusted, was asked
// for a path in public_paths.
func (p *Proxy) publicOriginal(rt *Route, r *http.Request) bool {
	if len(rt.public) == 0 || !p.trusted.trustedPeer(r) {
		return false
	}
	u, err := url.ParseRequestURI(r.Header.Get("X-Forwarded-Uri"))
	return err == nil && rt.public.matchURL(u)
}

// originalURI is the path and query the front proxy was asked for, as it
// says in X-Forwarded-Uri, believed only from a trusted proxy.
func (p *Proxy) originalURI(r *http.Request) string {
	if !p.trusted.trustedPeer(r) {
		return "/"
	}
	if u := r.Header.Get("X-Forwarded-Uri"); u != "" {
		return u
	}
	return "/"
}

// forwardedRequest is the client's request as the front proxy describes
// it: its method (X-Forwarded-Method) and its own Accept and Sec-Fetch-Mode
// headers, which Traefik and Caddy pass along.
func forwardedRequest(r *http.Request) *http.Request {
	c := *r
	if m := r.Header.Get("X-Forwarded-Method"); m != "" {
		c.Method = m
	}
	return &c
}

// authRoute is the route a forward-auth request asks about.
func (p *Proxy) authRoute(r *http.Request) *Route {
	if p.single() {
		return p.routes.all
	}
	path := "/"
	if p.trusted.trustedPeer(r) {
		if u, err := url.ParseRequestURI(r.Header.Get("X-Forwarded-Uri")); err == nil {
			path = u.Path
		}
	}
	return p.routes.match(p.requestHost(r), path)
}
