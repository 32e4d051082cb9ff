package proxy

import (
	"errors"
	"net/http"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// handleBackchannelLogout is OpenID Connect Back-Channel Logout 1.0: the
// provider POSTs a signed logout token, and every session of its sub, or
// the one of its sid, ends.
func (p *Proxy) handleBackchannelLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	op := p.oidc.Provider()
	if op == nil {
		WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	raw := r.PostFormValue("logout_token")
	refuse := func(err error) {
		p.log.Warn("back-channel logout refused", "err", err, "client", p.trusted.clientIP(r))
		WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
	}
	if raw == "" {
		refuse(errors.New("no logout_token"))
		return
	}
	lt, err := op.VerifyLogout(r.Context(), raw)
	if err != nil {
		refuse(err)
		return
	}
	n, err := p.store.Logout(r.Context(), lt.JTI, lt.Subject, lt.SID, p.now())
	switch {
	case errors.Is(err, session.ErrReplay):
		refuse(err)
		return
	case err != nil:
		p.log.Error("back-channel logout: the session store failed", "err", err, "sub", lt.Subject, "sid", lt.SID)
		WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	case n >= 0:
		p.log.Info("back-channel logout", "sub", lt.Subject, "sid", lt.SID, "sessions", n, "client", p.trusted.clientIP(r))
	default:
		p.log.Info("back-channel logout", "sub", lt.Subject, "sid", lt.SID, "client", p.trusted.clientIP(r))
	}
	w.WriteHeader(http.StatusOK)
}
