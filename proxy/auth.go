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
	session *session.Session
	values  [][]string
	allowed bool // by the access rules
	// ticket and name (the ticket's Name) are the session's record in the
	// Redis store; nil and "" with the cookie store.
	ticket *session.Ticket
	name   string
}

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
	id, raw, now, err := p.lookupIdentity(w, r)
	if id == nil {
		return nil, err
	}
	return p.keepUp(w, r, raw, id, now), nil
}

// lookupIdentity finds the identity of a request's session cookie: a
// cookie that is invalid, tampered with, expired, idle too long, or
// revoked (back-channel logout, sign-out) counts as none and is cleared.
// Identities already made come from the cache: verifying, decrypting and
// working out the headers happen once per cookie value, not once per
// request. It returns the cookie value and the time it judged by, and
// session.ErrStoreDown (the cookie kept) when the store cannot be reached.
func (p *Proxy) lookupIdentity(w http.ResponseWriter, r *http.Request) (*identity, string, time.Time, error) {
	raw, err := p.sessions.Value(r, p.sessionName)
	if errors.Is(err, session.ErrNoCookie) {
		return nil, "", time.Time{}, nil
	}
	now := p.now()
	id, ok := p.cache.Get(raw, now)
	if ok && p.redis != nil && !p.storeLive.Load() {
		id, ok = nil, false // changes may go unannounced: ask Redis
	}
	if !ok {
		gen := p.storeGen.Load()
		s, t, err := p.readSession(r.Context(), raw)
		if errors.Is(err, session.ErrStoreDown) {
			return nil, raw, now, err
		}
		if err != nil {
			p.log.Debug("session cookie refused", "err", err, "client", p.trusted.clientIP(r))
		}
		if err == nil && s.Valid(now) && !p.idleOut(s, now) {
			id = p.headers.identity(s)
			id.allowed = p.access.allows(s)
			if t != nil {
				id.ticket, id.name = t, t.Name()
			}
			expires := s.Expires
			if p.idle > 0 {
				expires = min(expires, s.LastSeen()+int64(p.idle/time.Second))
			}
			if p.storeGen.Load() == gen { // nothing changed while reading
				p.cache.Put(raw, id, expires)
			}
		}
	}
	if id != nil && p.revoked.revoked(id.session) {
		p.cache.Delete(raw)
		id = nil
	}
	if id == nil {
		p.sessions.Clear(w, r, p.sessionName)
		return nil, "", now, nil
	}
	return id, raw, now, nil
}

// keepUp renews the session when its refresh is due, or else renews its
// cookie for the idle timeout. It returns the identity to use, or nil when
// the session has ended.
func (p *Proxy) keepUp(w http.ResponseWriter, r *http.Request, raw string, id *identity, now time.Time) *identity {
	if next := p.renew(w, r, raw, id, now); next != id {
		return next // renewed (its cookie written) or ended
	}
	p.touch(w, r, id, now)
	return id
}

// idleOut reports whether s has been idle for longer than the idle timeout.
func (p *Proxy) idleOut(s *session.Session, now time.Time) bool {
	return p.idle > 0 && now.Unix() >= s.LastSeen()+int64(p.idle/time.Second)
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
	if _, err := p.saveSession(r.Context(), w, r, id.ticket, &renewed, now); err != nil {
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
