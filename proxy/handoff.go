package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// One sign-in for every route. Sign-in happens at one host, the sign-in
// host (external_url's, where the provider returns to), and every other
// host a route serves gets a session cookie of its own through a
// one-time code, as Pomerium does; no cookie is ever shared between
// hosts, so the hosts need no common parent domain:
//
//  1. a route host H without a session keeps a login cookie of its own
//     (a nonce, and where to return) and sends the browser to the sign-in
//     host's /oauth2/start with rd (a URL on H) and hs (the nonce);
//  2. the sign-in host signs the browser in with the provider unless it
//     already holds a session, then keeps what H needs of that session
//     (session.Store.Share) for a minute under a random code, sealed, and
//     sends the browser to H's /oauth2/handoff with the code;
//  3. H takes the code (once), checks it was made for H and for the nonce
//     in this browser's login cookie (so an attacker's code does not sign
//     a victim in as the attacker), writes its own cookie
//     (session.Store.Adopt) and returns to the page.
//
// With the Redis store every host's cookie names one record: one refresh,
// one sign-out. Sign-out visits the sign-in host and every host with an
// integration that ends a session of its own (handleSignOut).

// handoffLifetime is how long a code waits to be redeemed.
const handoffLifetime = time.Minute

// handoffValue is what a code holds.
type handoffValue struct {
	Host   string `json:"h"` // the host the code is for
	Nonce  string `json:"n"` // the state of that host's login cookie
	Shared []byte `json:"s"` // session.Store.Share
}

// single reports whether the proxy serves one route on every host: then
// every host signs in by itself, as before routes existed.
func (p *Proxy) single() bool { return p.routes.all != nil }

// away reports whether host is a route host other than the sign-in host.
func (p *Proxy) away(host string) bool { return !p.single() && host != "" && host != p.home }

// startAway begins a sign-in at a route host other than the sign-in
// host: a login cookie here binds the browser, the sign-in host does the
// rest.
func (p *Proxy) startAway(w http.ResponseWriter, r *http.Request, host, ret string) {
	f := flow{State: randomToken(), Return: ret}
	if !p.keepFlow(w, r, &f) {
		return
	}
	q := url.Values{"rd": {p.originOf(host).String() + ret}, "hs": {f.State}}
	http.Redirect(w, r, p.external.String()+Prefix+"start?"+q.Encode(), http.StatusFound)
}

// startHome is /oauth2/start at the sign-in host for a return URL on
// another route host: a code at once when the browser is signed in here,
// else a sign-in with the provider that comes back here and then hands
// off.
func (p *Proxy) startHome(w http.ResponseWriter, r *http.Request, target, path string) {
	hs := r.URL.Query().Get("hs")
	if !validState(hs) {
		// No login cookie at the target yet: let it begin.
		http.Redirect(w, r, p.originOf(target).String()+Prefix+"start?"+url.Values{"rd": {path}}.Encode(), http.StatusFound)
		return
	}
	// The sign-in host's own session; any route's deriver will do: only
	// the entry is handed on, each route judges it by its own rules.
	id, err := p.loadIdentity(w, r, p.routes.routes[0])
	if err != nil {
		p.storeUnavailable(w, r, err)
		return
	}
	if id == nil {
		p.beginFlow(w, r, flow{Return: p.originOf(target).String() + path, Handoff: hs})
		return
	}
	p.handOff(w, r, id.entry, target, hs)
}

// handOff sends the browser to target with a code for e's session.
func (p *Proxy) handOff(w http.ResponseWriter, r *http.Request, e *session.Entry, target, nonce string) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	shared, err := p.store.Share(ctx, e, p.now())
	var v []byte
	if err == nil {
		v, err = json.Marshal(handoffValue{Host: target, Nonce: nonce, Shared: shared})
	}
	code := randomToken()
	if err == nil {
		err = p.store.Keep(ctx, "handoff", code, v, handoffLifetime)
	}
	if err != nil {
		p.storeUnavailable(w, r, err)
		return
	}
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, p.originOf(target).String()+Prefix+"handoff?code="+code, http.StatusFound)
}

// handleHandoff redeems a code at the host it was made for.
func (p *Proxy) handleHandoff(w http.ResponseWriter, r *http.Request) {
	host := p.requestHost(r)
	if !p.away(host) {
		p.errorPage(w, r, http.StatusNotFound, "Not found", "The proxy has no such page.")
		return
	}
	w.Header().Set("Referrer-Policy", "no-referrer")
	const expired = "This sign-in link has expired, was already used, or was started in another browser."
	code := r.URL.Query().Get("code")
	if !validState(code) {
		p.signInFailed(w, r, "handoff", errors.New("malformed handoff code"), http.StatusBadRequest, expired)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	raw, err := p.store.Take(ctx, "handoff", code, true)
	if errors.Is(err, session.ErrStoreDown) {
		p.storeUnavailable(w, r, err)
		return
	}
	var v handoffValue
	if err == nil {
		err = json.Unmarshal(raw, &v)
	}
	if err == nil && v.Host != host {
		err = errors.New("the code was made for host " + v.Host)
	}
	var f *flow
	if err == nil {
		f, err = p.takeFlow(w, r, v.Nonce)
	}
	if err != nil {
		p.signInFailed(w, r, "handoff", err, http.StatusBadRequest, expired)
		return
	}
	e, err := p.store.Adopt(ctx, w, r, v.Shared, p.now())
	switch {
	case errors.Is(err, session.ErrStoreDown):
		p.storeUnavailable(w, r, err)
		return
	case err != nil:
		p.signInFailed(w, r, "handoff", err, http.StatusBadRequest, "Your session ended before this page could use it. Please sign in again.")
		return
	}
	s := e.Session
	dest := CleanReturnURL(f.Return)
	p.log.Info("sign-in handed over", "user", s.UserName(), "sub", s.Subject, "host", host, "client", p.trusted.clientIP(r))
	dest = p.signedIn(w, r, host, s, dest)
	http.Redirect(w, r, dest, http.StatusFound)
}

// signedIn runs, for a session just written at host, the integrations of
// the route that serves dest (when its rules admit the user), and
// returns where to go.
func (p *Proxy) signedIn(w http.ResponseWriter, r *http.Request, host string, s *session.Session, dest string) string {
	pathOnly, _, _ := strings.Cut(dest, "?")
	rt := p.routes.match(host, pathOnly)
	if rt == nil {
		return dest
	}
	if !rt.access.allows(s) {
		p.log.Warn("access denied by the access rules", "user", s.UserName(), "sub", s.Subject, "route", rt.name, "client", p.trusted.clientIP(r))
		return dest
	}
	for _, in := range rt.integrations {
		dest = in.SignedIn(w, r, s, dest)
	}
	return dest
}

// returnTarget reads a return URL given to the sign-in host or the
// sign-out: a clean path on this host, or, with routes, an absolute URL
// on a host a route serves (same scheme and port as external_url). It
// returns the host ("" for this one) and the clean path.
func (p *Proxy) returnTarget(rd string) (host, path string) {
	if p.single() || !strings.Contains(rd, "://") {
		return "", CleanReturnURL(rd)
	}
	if h, pq, ok := p.allowedReturn(rd); ok {
		return h, pq
	}
	return "", "/"
}

// allowedReturn accepts an absolute return URL on a route host: scheme
// and port of external_url, no user info, a host a route serves (or the
// sign-in host), and a path and query that CleanReturnURL keeps.
func (p *Proxy) allowedReturn(rd string) (host, pathQuery string, ok bool) {
	if len(rd) > maxReturnURL {
		return "", "", false
	}
	for i := 0; i < len(rd); i++ {
		if c := rd[i]; c <= ' ' || c >= 0x7f || c == '\\' || c == '#' {
			return "", "", false
		}
	}
	u, err := url.Parse(rd)
	if err != nil || u.Scheme != p.external.Scheme || u.User != nil || u.Opaque != "" {
		return "", "", false
	}
	// The origin given must be, to the letter, the one the proxy builds
	// for the host: no other spelling of it (upper case, an empty port
	// "host:", another port).
	host = normalHost(u.Host)
	if host == "" || u.Host != p.originOf(host).Host || (host != p.home && !p.routes.serves(host)) {
		return "", "", false
	}
	prefix := u.Scheme + "://" + u.Host
	pathQuery = strings.TrimPrefix(rd, prefix)
	if pathQuery == rd {
		return "", "", false
	}
	if pathQuery == "" {
		pathQuery = "/"
	}
	if CleanReturnURL(pathQuery) != pathQuery {
		return "", "", false
	}
	return host, pathQuery, true
}
