package proxy

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// identity is a verified session with its header values worked out once,
// in the order of Proxy.headers.set (nil: no such header). It is shared by
// every request of that session and never modified.
type identity struct {
	entry   *session.Entry
	session *session.Session
	values  [][]string
	allowed bool // by the access rules
}

// identities make the identity of a session entry: the header values and
// the access rules' verdict, worked out once per entry (session.Deriver).
type identities struct {
	headers identityHeaders
	access  accessRules
}

func (m *identities) Derive(e *session.Entry) any {
	id := m.headers.identity(e.Session)
	id.entry = e
	id.allowed = m.access.allows(e.Session)
	return id
}

func (m *identities) of(e *session.Entry) *identity { return e.Derived(m).(*identity) }

// SessionFrom returns the session of the signed-in user a request carries,
// or nil. Only requests that passed the proxy's authentication have one.
func SessionFrom(ctx context.Context) *session.Session {
	if x := exchangeFrom(ctx); x != nil && x.id != nil {
		return x.id.session
	}
	return nil
}

// loadIdentity finds the identity of a request's session and keeps the
// session up (refresh, idle renewal; see keepUp). It returns nil when
// there is none, and session.ErrStoreDown when the store cannot tell.
func (p *Proxy) loadIdentity(w http.ResponseWriter, r *http.Request) (*identity, error) {
	now := p.now()
	id, err := p.lookupIdentity(w, r, now)
	if id == nil {
		return nil, err
	}
	return p.keepUp(w, r, id, now), nil
}

// lookupIdentity finds the identity of a request's session cookie in the
// store: a cookie that is invalid, tampered with, expired, idle too long,
// or ended (back-channel logout, sign-out) counts as none and is cleared.
// It returns session.ErrStoreDown (the cookie kept) when the store cannot
// be reached.
func (p *Proxy) lookupIdentity(w http.ResponseWriter, r *http.Request, now time.Time) (*identity, error) {
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
	return p.ids.of(e), nil
}

// keepUp renews the session when its refresh is due, or else renews its
// cookie for the idle timeout. It returns the identity to use, or nil when
// the session has ended.
func (p *Proxy) keepUp(w http.ResponseWriter, r *http.Request, id *identity, now time.Time) *identity {
	if next := p.renew(w, r, id, now); next != id {
		return next // renewed (its cookie written) or ended
	}
	p.touch(w, r, id, now)
	return id
}

// touch renews the cookie of an active session with an idle timeout, once
// a quarter of that timeout has passed since it was last renewed. The
// renewed cookie keeps the session's absolute expiry.
func (p *Proxy) touch(w http.ResponseWriter, r *http.Request, id *identity, now time.Time) {
	s := id.session
	if p.idle <= 0 || now.Unix() < s.LastSeen()+int64(p.idle/4/time.Second) {
		return
	}
	renewed := *s
	renewed.Seen = now.Unix()
	if _, err := p.store.Save(r.Context(), w, r, id.entry, &renewed, now); err != nil {
		p.log.Warn("session: renewing the cookie failed", "err", err, "sub", s.Subject)
	}
}

// serveProtected forwards requests that carry a valid session and answers
// the rest: browsers are sent to sign in, API calls get a 401.
func (p *Proxy) serveProtected(x *exchange, r *http.Request) {
	w := http.ResponseWriter(x)
	id, err := p.loadIdentity(w, r)
	switch {
	case err != nil:
		p.storeUnavailable(w, r, err)
		return
	case p.bridge != nil && p.memosIntercept(x, r, id):
		return
	case id != nil && id.allowed:
		x.id = id
	case p.public.match(r): // passes anonymously
	case id == nil && p.bearers != nil && bearerToken(r) != "":
		p.serveBearer(x, r, bearerToken(r))
		return
	case id == nil:
		p.unauthenticated(w, r)
		return
	default:
		x.id = id
		p.forbidden(w, r, id.session)
		return
	}
	p.forward.ServeHTTP(x, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x)))
}

// isNavigation tells a browser loading a page from a script's request:
// GET or HEAD, with Sec-Fetch-Mode: navigate or an Accept that names HTML.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return acceptsHTML(r)
}

func (p *Proxy) unauthenticated(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Add("Vary", "Accept, Sec-Fetch-Mode")
	if isNavigation(r) {
		p.startFlow(w, r, CleanReturnURL(r.URL.RequestURI()))
		return
	}
	writeJSON(w, http.StatusUnauthorized, map[string]string{
		"error":       "unauthenticated",
		"message":     "sign-in required",
		"sign_in_url": p.external.String() + Prefix + "start",
	})
}
