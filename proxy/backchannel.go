package proxy

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// revocations remember back-channel logouts (every session of a subject,
// or the session with a provider session id (sid), created before the
// logout is over) and sign-outs (that one session is over). Entries are kept as long as a session can last, and the
// token ids (jti) seen, to refuse replays. In this process only: with
// several replicas, every one must receive the logout.
type revocations struct {
	n    atomic.Int64 // entries, read without the lock on every request
	mu   sync.RWMutex
	byID map[string]int64 // "sub:"+sub or "sid:"+sid → logout time (Unix ms)
	jtis map[string]int64 // → when to forget it (Unix ms)
	keep time.Duration
	// pruned is when old entries were last dropped (Unix ms).
	pruned int64
}

func newRevocations(keep time.Duration) *revocations {
	return &revocations{byID: map[string]int64{}, jtis: map[string]int64{}, keep: keep}
}

// revoked reports whether a logout ended s.
func (v *revocations) revoked(s *session.Session) bool {
	if v.n.Load() == 0 {
		return false
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	born := s.Born
	if born == 0 {
		born = s.Created * 1000
	}
	if at, ok := v.byID["sub:"+s.Subject]; ok && born <= at {
		return true
	}
	if s.SID != "" {
		if at, ok := v.byID["sid:"+s.SID]; ok && born <= at {
			return true
		}
	}
	_, ended := v.byID[sessionKey(s)]
	return ended
}

// sessionKey names one session: its subject and the millisecond it was
// born.
func sessionKey(s *session.Session) string {
	return "ses:" + strconv.FormatInt(s.Born, 10) + ":" + s.Subject
}

// end records that the session s was signed out, so that a copy of its
// cookie no longer works here either.
func (v *revocations) end(s *session.Session, now time.Time) {
	if s.Born == 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.prune(now.UnixMilli())
	v.byID[sessionKey(s)] = now.UnixMilli()
	v.n.Store(int64(len(v.byID)))
}

// prune forgets, at most once a minute, what can no longer matter: logouts
// older than any session can be, and jtis past their time. v.mu is held.
func (v *revocations) prune(t int64) {
	if t-v.pruned < time.Minute.Milliseconds() {
		return
	}
	v.pruned = t
	keep := v.keep.Milliseconds()
	for k, until := range v.jtis {
		if until < t {
			delete(v.jtis, k)
		}
	}
	for k, at := range v.byID {
		if at+keep < t {
			delete(v.byID, k)
		}
	}
}

var errReplay = errors.New("logout token replayed (jti seen before)")

// add records a logout; it refuses a jti seen before.
func (v *revocations) add(jti, sub, sid string, now time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	t := now.UnixMilli()
	v.prune(t)
	if _, seen := v.jtis[jti]; seen {
		return errReplay
	}
	v.jtis[jti] = t + v.keep.Milliseconds()
	if sub != "" {
		v.byID["sub:"+sub] = t
	}
	if sid != "" {
		v.byID["sid:"+sid] = t
	}
	v.n.Store(int64(len(v.byID)))
	return nil
}

// maxLogoutTokenAge bounds how old (by iat) a logout token may be.
const maxLogoutTokenAge = 10 * time.Minute

// handleBackchannelLogout is OpenID Connect Back-Channel Logout 1.0: the
// provider POSTs a signed logout token, and every session of its sub, or
// the one of its sid, ends.
func (p *Proxy) handleBackchannelLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	op := p.provider.Load()
	if op == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	raw := r.PostFormValue("logout_token")
	refuse := func(err error) {
		p.log.Warn("back-channel logout refused", "err", err, "client", p.trusted.clientIP(r))
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
	}
	if raw == "" {
		refuse(errors.New("no logout_token"))
		return
	}
	ctx := withIdPEndpoint(r.Context(), "jwks")
	lt, err := op.verifier.VerifyLogout(ctx, raw)
	if err != nil {
		refuse(err)
		return
	}
	now := p.now()
	if lt.IssuedAt.After(now.Add(maxClockSkew)) || lt.IssuedAt.Before(now.Add(-maxLogoutTokenAge)) {
		refuse(errors.New("logout token iat is out of range"))
		return
	}
	var c struct {
		AZP string `json:"azp"`
	}
	if err := lt.Claims(&c); err == nil && c.AZP != "" && c.AZP != p.clientID {
		refuse(errors.New("logout token azp is not this client"))
		return
	}
	if p.redis != nil {
		n, err := p.logoutStored(r.Context(), lt.TokenID, lt.Subject, lt.SessionID)
		switch {
		case errors.Is(err, errReplay):
			refuse(err)
			return
		case err != nil:
			p.log.Error("back-channel logout: the session store failed", "err", err, "sub", lt.Subject, "sid", lt.SessionID)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
			return
		}
		p.log.Info("back-channel logout", "sub", lt.Subject, "sid", lt.SessionID, "sessions", n, "client", p.trusted.clientIP(r))
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := p.revoked.add(lt.TokenID, lt.Subject, lt.SessionID, now); err != nil {
		refuse(err)
		return
	}
	p.log.Info("back-channel logout", "sub", lt.Subject, "sid", lt.SessionID, "client", p.trusted.clientIP(r))
	w.WriteHeader(http.StatusOK)
}
