package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// endpoints are the proxy's own, under /oauth2/, on the hosts of rt (nil:
// on the sign-in host that serves no route): never forwarded.
func (p *Proxy) endpoints(rt *Route) http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /oauth2/start", p.handleStart)
	m.HandleFunc("GET /oauth2/handoff", p.handleHandoff)
	m.HandleFunc("GET /oauth2/callback", p.handleCallback)
	m.HandleFunc("GET /oauth2/sign_out", p.handleSignOut)
	m.HandleFunc("POST /oauth2/sign_out", p.handleSignOut)
	m.HandleFunc("GET /oauth2/userinfo", p.handleUserinfo)
	m.HandleFunc("GET /oauth2/auth", p.handleAuth)
	m.HandleFunc("POST /oauth2/backchannel_logout", p.handleBackchannelLogout)
	m.HandleFunc("GET /oauth2/signed_out", p.handleSignedOut)
	m.HandleFunc("GET /oauth2/{$}", p.handleHome)
	m.HandleFunc("POST /oauth2/sessions/end", p.handleEndDevice)
	m.HandleFunc("POST /oauth2/sessions/end_all", p.handleEndEverywhere)
	m.HandleFunc("GET /oauth2/admin/{$}", p.handleAdmin)
	m.HandleFunc("POST /oauth2/admin/end", p.handleAdminEnd)
	m.HandleFunc("GET /oauth2/healthz", p.handleHealthz)
	m.HandleFunc("GET /oauth2/readyz", p.handleReadyz)
	if ks := p.keySet(); ks != nil {
		m.Handle("GET /oauth2/jwks.json", ks)
	}
	if rt != nil {
		for _, in := range rt.integrations {
			in.Endpoints(m)
		}
	}
	m.HandleFunc("/oauth2/", func(w http.ResponseWriter, r *http.Request) {
		p.errorPage(w, r, http.StatusNotFound, "Not found", "The proxy has no such page.")
	})
	return m
}

// handleSignOut ends the session in this browser (and its pending
// sign-ins) at this host, then, with routes, at every host on the
// sign-out's way (signOutHops), then sends the browser to the provider's
// logout when there is one, and back to rd.
func (p *Proxy) handleSignOut(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		// Another site's form: it signs nobody out (the pages' own forms,
		// and an app's on a sibling host, are same-origin or same-site).
		p.metrics.account.WithLabelValues("refused_cross_site").Inc()
		p.log.Warn("a sign-out posted by another site was refused", "client", p.trusted.clientIP(r))
		w.Header().Set("Cache-Control", "no-store")
		p.errorPage(w, r, http.StatusForbidden, "Not done", "This request came from another site. You are still signed in.")
		return
	}
	host := p.requestHost(r)
	// Looked up, not kept up: no refresh is spent on a session that ends.
	var s *session.Session
	id, err := p.lookupIdentity(w, r, p.routeFor(r), p.now())
	if id != nil {
		s = id.session
		p.endSession(r, id) // a copy of the cookie is no good either
	} else if err != nil {
		// The store cannot be read: the session is ended by the name its
		// ticket holds, now or as soon as the store takes it.
		if err := p.store.EndUnread(r.Context(), r, p.now()); err != nil && !errors.Is(err, session.ErrDeferred) {
			p.log.Error("sign-out: the session store is down; the session lasts until it expires, but this browser's cookie is gone", "err", err, "client", p.trusted.clientIP(r))
		}
	}
	p.store.Clear(w, r)
	for _, rt := range p.routes.onHost(host) {
		for _, in := range rt.integrations {
			in.SigningOut(w, r)
		}
	}
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, p.flowPrefix) {
			p.flows.Clear(w, r, c.Name)
		}
	}
	if s != nil {
		p.log.Info("sign-out", "user", s.UserName(), "sub", s.Subject, "client", p.trusted.clientIP(r))
	}
	rdHost, rd := p.returnTarget(r.FormValue("rd"))
	back := p.external.String() + rd
	if !p.single() {
		if rdHost == "" {
			rdHost = host
		}
		if rdHost == "" || (rdHost != p.home && !p.routes.serves(rdHost)) {
			rdHost = p.home
		}
		back = p.originOf(rdHost).String() + rd
		hop := -1
		if h, err := strconv.Atoi(r.FormValue("hop")); err == nil && h >= 0 && h < len(p.hops) {
			hop = h
		}
		here := p.originOf(host).String()
		for next := hop + 1; next < len(p.hops); next++ {
			if p.hops[next] != here {
				q := url.Values{"hop": {strconv.Itoa(next)}, "rd": {back}}
				if hint := p.carryHint(r, s); hint != "" {
					q.Set("hint", hint)
				}
				http.Redirect(w, r, p.hops[next]+Prefix+"sign_out?"+q.Encode(), http.StatusFound)
				return
			}
		}
		if s == nil { // ended at the first host: its ID token came along
			s = p.takeHint(r)
		}
	}
	dest := back
	if p.single() {
		dest = rd
	}
	op := p.oidc.Provider()
	switch {
	case op != nil && op.EndSession() != "":
		u, _ := url.Parse(op.EndSession())
		q := u.Query()
		q.Set("client_id", p.oidc.ClientID())
		q.Set("post_logout_redirect_uri", back)
		if s != nil && s.IDToken != "" {
			q.Set("id_token_hint", s.IDToken)
		}
		u.RawQuery = q.Encode()
		dest = u.String()
	case p.logoutURL != "":
		u, _ := url.Parse(p.logoutURL)
		q := u.Query()
		q.Set("rd", back)
		u.RawQuery = q.Encode()
		dest = u.String()
	}
	http.Redirect(w, r, dest, http.StatusFound)
}

// signOutHops are the origins a sign-out visits, in order, so that each
// clears its own cookies: every route host with an integration (the Memos
// bridge ends the Memos session there, with the browser's Memos cookie),
// then the sign-in host. None with a single route.
func (p *Proxy) signOutHops() []string {
	if p.single() {
		return nil
	}
	var hops []string
	for _, rt := range p.routes.routes {
		o := rt.origin.String()
		if len(rt.integrations) > 0 && rt.host != p.home && !slices.Contains(hops, o) {
			hops = append(hops, o)
		}
	}
	return append(hops, p.external.String())
}

// routeFor is the route a request's /oauth2/ endpoint works for: the one
// found for its host, else the first.
func (p *Proxy) routeFor(r *http.Request) *Route {
	if x := exchangeFrom(r.Context()); x != nil && x.route != nil {
		return x.route
	}
	return p.routes.routes[0]
}

// handleUserinfo shows the signed-in identity as JSON.
func (p *Proxy) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	id, err := p.loadIdentity(w, r, p.routeFor(r))
	if err != nil {
		p.storeUnavailable(w, r, err)
		return
	}
	if id == nil {
		WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated"})
		return
	}
	s := id.session
	WriteJSON(w, http.StatusOK, map[string]any{
		"sub":        s.Subject,
		"claims":     s.Claims,
		"expires_at": time.Unix(s.Expires, 0).UTC().Format(time.RFC3339),
	})
}

func (p *Proxy) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

func (p *Proxy) handleReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !p.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("waiting for OIDC discovery\n"))
		return
	}
	if _, err := p.store.Check(r.Context()); err != nil {
		p.log.Warn("readiness: the session store does not answer", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("the session store does not answer\n"))
		return
	}
	for _, rt := range p.routes.routes {
		if err := rt.upstreamReady(r.Context(), p.now); err != nil {
			p.log.Warn("readiness: the upstream does not answer", "route", rt.name, "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("the upstream does not answer\n"))
			return
		}
	}
	w.Write([]byte("ready\n"))
}

// carryHint keeps, for the last host of a sign-out's way, the ID token of
// the session ended at its first (the provider's id_token_hint): under a
// one-time code for two minutes, never in the URL itself. It passes on a
// code it was given.
func (p *Proxy) carryHint(r *http.Request, s *session.Session) string {
	if code := r.FormValue("hint"); validState(code) {
		return code
	}
	if s == nil || s.IDToken == "" {
		return ""
	}
	code := randomToken()
	if err := p.store.Keep(r.Context(), "signout", code, []byte(s.IDToken), 2*time.Minute); err != nil {
		p.log.Warn("sign-out: the ID token could not be kept for the provider's logout", "err", err)
		return ""
	}
	return code
}

// takeHint is the session whose ID token carryHint kept, or nil.
func (p *Proxy) takeHint(r *http.Request) *session.Session {
	code := r.FormValue("hint")
	if !validState(code) {
		return nil
	}
	tok, err := p.store.Take(r.Context(), "signout", code, true)
	if err != nil {
		return nil
	}
	return &session.Session{IDToken: string(tok)}
}
