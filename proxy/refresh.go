package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy/rp"
	"github.com/oidc-proxy/oidc-proxy/session"
)

// errRefreshRefused is a refresh the provider refused (invalid_grant): the
// user was disabled, or the grant revoked. The session ends.
var errRefreshRefused = session.ErrRefreshRefused

// refreshAt is when to renew a session whose access token expires at
// expiry: a minute before, but not sooner than 30 s from now.
func refreshAt(expiry, now time.Time) int64 {
	if expiry.IsZero() {
		return now.Add(5 * time.Minute).Unix()
	}
	at := expiry.Add(-time.Minute)
	if at.Before(now.Add(30 * time.Second)) {
		at = now.Add(30 * time.Second)
	}
	return at.Unix()
}

// renew refreshes the session if its time has come, and returns the
// identity to use: the renewed one (its cookie written to w), the current
// one when the provider could not be reached, or nil when the provider
// refused (the session is then over, its cookie cleared).
func (p *Proxy) renew(w http.ResponseWriter, r *http.Request, rt *Route, id *Identity, now time.Time) *Identity {
	s := id.session
	if s.RefreshToken == "" || now.Unix() < s.RefreshAt {
		return id
	}
	op := p.oidc.Provider()
	if op == nil || p.sh.gate.refreshPaused(now) {
		return id // the provider asked to wait: served as it is meanwhile
	}
	// Not the request's context: a client that leaves must not cancel a
	// refresh that others wait for.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 3*p.idpTimeout)
	defer cancel()
	// Counted where the refresh token is spent: once per refresh however
	// many requests share its outcome.
	renewed, err := p.store.Refresh(ctx, w, r, id.entry, now, func(ctx context.Context, cur *session.Session) (*session.Session, error) {
		renewed, err := p.refresh(ctx, op, cur, now)
		switch {
		case err == nil:
			p.metrics.refresh.WithLabelValues("success").Inc()
		case errors.Is(err, errRefreshRefused):
			p.metrics.refresh.WithLabelValues("refused").Inc()
		default:
			p.metrics.refresh.WithLabelValues("failed").Inc()
		}
		return renewed, err
	})
	switch {
	case session.IsShared(err) && !errors.Is(err, errRefreshRefused):
		// Another request's refresh failed moments ago, and said so: this
		// one is served as it is, without a line of its own.
		return id
	case errors.Is(err, session.ErrRefreshBusy):
		return id // another replica holds the refresh: served as it is
	case errors.Is(err, errRefreshRefused):
		p.log.Warn("refresh refused: session ended", "user", s.UserName(), "sub", s.Subject, "err", err, "client", p.trusted.clientIP(r))
		return nil
	case err != nil:
		var se *rp.StatusError
		if errors.As(err, &se) && se.RateLimited() {
			until := p.sh.gate.pauseRefresh(now, se.RetryAfter)
			p.log.Warn("refresh: the provider is rate-limiting the proxy; refreshes wait, sessions are served as they are",
				"until", until.UTC().Format(time.RFC3339), "user", s.UserName())
			return id
		}
		if errors.Is(err, session.ErrStoreDown) {
			p.metrics.refresh.WithLabelValues("postponed").Inc()
			p.log.Warn("refresh postponed: the session store cannot take it; the session is served as it is and refreshed once the store is back",
				"user", s.UserName(), "sub", s.Subject, "err", err)
			return id
		}
		p.log.Warn("refresh failed; the session goes on until it expires", "user", s.UserName(), "sub", s.Subject, "err", err)
		return id
	}
	return rt.ids.of(renewed)
}

// refresh spends s's refresh token and builds the renewed session: new
// tokens, claims read again, the same subject, creation and expiry.
func (p *Proxy) refresh(ctx context.Context, op *rp.Provider, s *session.Session, now time.Time) (*session.Session, error) {
	t, err := op.Refresh(ctx, s.RefreshToken, s.Subject)
	if errors.Is(err, rp.ErrRefused) {
		return nil, fmt.Errorf("%w: %w", errRefreshRefused, err)
	}
	if err != nil {
		return nil, err
	}
	renewed := *s
	if err := p.fillClaims(&renewed, t.Claims); err != nil {
		// The provider now describes the user in a form the proxy cannot
		// use: the session ends, as a new sign-in would be refused.
		return nil, fmt.Errorf("%w: %v", errRefreshRefused, err)
	}
	if t.RefreshToken != "" {
		renewed.RefreshToken = t.RefreshToken
	}
	renewed.RefreshAt = refreshAt(t.Expiry, now)
	if p.idle > 0 {
		renewed.Seen = now.Unix()
	}
	if t.IDToken != "" && op.EndSession() != "" {
		renewed.IDToken = t.IDToken
	}
	return &renewed, nil
}
