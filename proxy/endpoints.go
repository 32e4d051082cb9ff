package proxy

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// endpoints are the proxy's own, under /oauth2/: never forwarded.
func (p *Proxy) endpoints() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /oauth2/start", p.handleStart)
	m.HandleFunc("GET /oauth2/callback", p.handleCallback)
	m.HandleFunc("GET /oauth2/sign_out", p.handleSignOut)
	m.HandleFunc("POST /oauth2/sign_out", p.handleSignOut)
	m.HandleFunc("GET /oauth2/userinfo", p.handleUserinfo)
	m.HandleFunc("GET /oauth2/auth", p.handleAuth)
	m.HandleFunc("POST /oauth2/backchannel_logout", p.handleBackchannelLogout)
	m.HandleFunc("GET /oauth2/signed_out", p.handleSignedOut)
	m.HandleFunc("GET /oauth2/healthz", p.handleHealthz)
	m.HandleFunc("GET /oauth2/readyz", p.handleReadyz)
	for _, si := range p.route.signed {
		m.Handle("GET /oauth2/jwks.json", si.signer)
	}
	for _, in := range p.route.integrations {
		in.Endpoints(m)
	}
	m.HandleFunc("/oauth2/", func(w http.ResponseWriter, r *http.Request) {
		p.errorPage(w, r, http.StatusNotFound, "Not found", "The proxy has no such page.")
	})
	return m
}

// handleSignOut ends the session in this browser (and its pending
// sign-ins), then sends the browser to the provider's logout when there is
// one, and back to rd.
func (p *Proxy) handleSignOut(w http.ResponseWriter, r *http.Request) {
	// Looked up, not kept up: no refresh is spent on a session that ends.
	var s *session.Session
	id, err := p.lookupIdentity(w, r, p.route, p.now())
	if id != nil {
		s = id.session
		p.endSession(r, id) // a copy of the cookie is no good either
	} else if err != nil {
		p.log.Error("sign-out: the session store is down; the session lasts until it expires, but this browser's cookie is gone", "err", err, "client", p.trusted.clientIP(r))
	}
	p.store.Clear(w, r)
	for _, in := range p.route.integrations {
		in.SigningOut(w, r)
	}
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, p.flowPrefix) {
			p.flows.Clear(w, r, c.Name)
		}
	}
	rd := CleanReturnURL(r.FormValue("rd"))
	back := p.external.String() + rd
	dest := rd
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
	if s != nil {
		p.log.Info("sign-out", "user", s.UserName(), "sub", s.Subject, "client", p.trusted.clientIP(r))
	}
	http.Redirect(w, r, dest, http.StatusFound)
}

// handleUserinfo shows the signed-in identity as JSON.
func (p *Proxy) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	id, err := p.loadIdentity(w, r, p.route)
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
	if err := p.route.upstreamReady(r.Context(), p.now); err != nil {
		p.log.Warn("readiness: the upstream does not answer", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("the upstream does not answer\n"))
		return
	}
	w.Write([]byte("ready\n"))
}
