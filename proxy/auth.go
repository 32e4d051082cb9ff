package proxy

import (
	"context"
	"net/http"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// Identity is a verified session with its header values worked out once,
// in the order of the route's headers.set (nil: no such header). It is
// shared by every request of that session and never modified.
type Identity struct {
	entry   *session.Entry
	session *session.Session
	values  [][]string
	allowed bool      // by the access rules
	token   tokenSlot // the signed identity, when the route signs one
	bearer  *bearerID // a bearer request's token facts; nil for a session
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

func (m *identities) of(e *session.Entry) *Identity { return e.Derived(m).(*Identity) }

// SessionFrom returns the session of the signed-in user a request carries,
// or nil. Only requests that passed the proxy's authentication have one.
func SessionFrom(ctx context.Context) *session.Session {
	if x := exchangeFrom(ctx); x != nil && x.id != nil {
		return x.id.session
	}
	return nil
}

// keepUp renews the session when its refresh is due, or else renews its
// cookie for the idle timeout. It returns the identity to use, or nil when
// the session has ended.
func (p *Proxy) keepUp(w http.ResponseWriter, r *http.Request, rt *Route, id *Identity, now time.Time) *Identity {
	if next := p.renew(w, r, rt, id, now); next != id {
		return next // renewed (its cookie written) or ended
	}
	p.touch(w, r, id, now)
	return id
}

// touch renews the cookie of an active session with an idle timeout, once
// a quarter of that timeout has passed since it was last renewed. The
// renewed cookie keeps the session's absolute expiry.
func (p *Proxy) touch(w http.ResponseWriter, r *http.Request, id *Identity, now time.Time) {
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

// unauthenticated answers a request without a session that may not pass:
// browsers are sent to sign in, API calls get a 401.
func (p *Proxy) unauthenticated(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Add("Vary", "Accept, Sec-Fetch-Mode")
	if IsNavigation(r) {
		p.startFlow(w, r, CleanReturnURL(r.URL.RequestURI()))
		return
	}
	WriteJSON(w, http.StatusUnauthorized, map[string]string{
		"error":       "unauthenticated",
		"message":     "sign-in required",
		"sign_in_url": p.external.String() + Prefix + "start",
	})
}
