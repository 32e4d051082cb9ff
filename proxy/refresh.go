package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/oidc-proxy/oidc-proxy/session"
	"golang.org/x/oauth2"
)

// Refresh timing.
const (
	// refreshGrace is how long the outcome of a refresh is kept for the
	// requests that still carry the cookie it replaced (a page load fires
	// dozens at once): they get the renewed session instead of spending
	// the rotated refresh token again, which Authelia punishes by revoking
	// the new one too.
	refreshGrace = 2 * time.Minute
	// refreshBackoff is how long a session waits before trying again after
	// a refresh failed for a reason other than a refusal (the provider is
	// down, say).
	refreshBackoff = 30 * time.Second
)

// errRefreshRefused is a refresh the provider refused (invalid_grant): the
// user was disabled, or the grant revoked. The session ends.
var errRefreshRefused = errors.New("the provider refused the refresh token")

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

// refresher makes sure each refresh token is spent once: concurrent
// requests with the same session wait for one token request and share its
// outcome, and later requests still carrying the old cookie get that
// outcome for refreshGrace.
type refresher struct {
	mu      sync.Mutex
	flights map[[32]byte]*flight
}

type flight struct {
	done  chan struct{}
	s     *session.Session // the renewed session, or nil
	err   error
	until time.Time // the outcome is served until then
}

func newRefresher() *refresher { return &refresher{flights: map[[32]byte]*flight{}} }

// do runs refresh once per refresh token and returns its shared outcome.
func (r *refresher) do(now time.Time, token string, refresh func() (*session.Session, error)) (*session.Session, error) {
	key := sha256.Sum256([]byte(token))
	r.mu.Lock()
	if f, ok := r.flights[key]; ok {
		r.mu.Unlock()
		<-f.done
		if now.Before(f.until) {
			return f.s, f.err
		}
		r.mu.Lock()
		if r.flights[key] == f {
			delete(r.flights, key)
		}
		r.mu.Unlock()
		return r.do(now, token, refresh)
	}
	f := &flight{done: make(chan struct{})}
	r.flights[key] = f
	if len(r.flights) > 4096 { // drop settled outcomes past their time
		for k, old := range r.flights {
			select {
			case <-old.done:
				if now.After(old.until) {
					delete(r.flights, k)
				}
			default:
			}
		}
	}
	r.mu.Unlock()
	f.s, f.err = refresh()
	f.until = now.Add(refreshGrace)
	if f.err != nil && !errors.Is(f.err, errRefreshRefused) {
		f.until = now.Add(refreshBackoff)
	}
	close(f.done)
	return f.s, f.err
}

// renew refreshes s if its time has come, and returns the identity to use:
// the renewed one (its cookie written to w), the current one when the
// provider could not be reached, or nil when the provider refused (the
// session is then over, its cookie cleared).
func (p *Proxy) renew(w http.ResponseWriter, r *http.Request, raw string, id *identity, now time.Time) *identity {
	s := id.session
	if s.RefreshToken == "" || now.Unix() < s.RefreshAt {
		return id
	}
	op := p.provider.Load()
	if op == nil {
		return id
	}
	renewed, err := p.refreshes.do(now, s.RefreshToken, func() (*session.Session, error) {
		// Not the request's context: a client that leaves must not cancel
		// a refresh that others wait for.
		ctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(r.Context()), p.idpClient), 3*p.idpTimeout)
		defer cancel()
		if p.redis != nil {
			return p.refreshShared(ctx, op, id, now)
		}
		return p.refresh(ctx, op, s, now)
	})
	switch {
	case errors.Is(err, errRefreshRefused):
		p.metrics.refresh.WithLabelValues("refused").Inc()
		p.log.Warn("refresh refused: session ended", "user", userName(s), "sub", s.Subject, "err", err, "client", p.trusted.clientIP(r))
		p.cache.Delete(raw)
		p.sessions.Clear(w, r, p.sessionName)
		return nil
	case err != nil:
		p.metrics.refresh.WithLabelValues("failed").Inc()
		p.log.Warn("refresh failed; the session goes on until it expires", "user", userName(s), "sub", s.Subject, "err", err)
		return id
	}
	if p.redis == nil { // (the Redis store saved it already)
		if _, err := p.saveSession(r.Context(), w, r, nil, renewed, now); err != nil {
			p.log.Warn("refresh: writing the renewed cookie failed", "sub", s.Subject, "err", err)
		}
	}
	p.metrics.refresh.WithLabelValues("success").Inc()
	next := p.headers.identity(renewed)
	next.allowed = p.access.allows(renewed)
	next.ticket, next.name = id.ticket, id.name
	return next
}

// refresh spends s's refresh token and builds the renewed session: new
// tokens, claims read again, the same subject, creation and expiry.
func (p *Proxy) refresh(ctx context.Context, op *provider, s *session.Session, now time.Time) (*session.Session, error) {
	src := op.oauth.TokenSource(withIdPEndpoint(ctx, "token"), &oauth2.Token{RefreshToken: s.RefreshToken, Expiry: time.Unix(1, 0)})
	tok, err := src.Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && (re.ErrorCode == "invalid_grant" || re.ErrorCode == "unauthorized_client" || re.ErrorCode == "invalid_client") {
			return nil, fmt.Errorf("%w: %s", errRefreshRefused, re.ErrorCode)
		}
		if errors.As(err, &re) {
			err = fmt.Errorf("token endpoint answered %d %s", re.Response.StatusCode, truncate(re.ErrorCode, 64))
		}
		return nil, err
	}
	claims := map[string]json.RawMessage{}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		idt, err := op.verifier.Verify(ctx, raw)
		if err != nil {
			return nil, fmt.Errorf("renewed ID token: %w", err)
		}
		if idt.Subject != s.Subject {
			return nil, fmt.Errorf("%w: the renewed ID token names another subject", errRefreshRefused)
		}
		if err := idt.Claims(&claims); err != nil {
			return nil, err
		}
	}
	if err := p.mergeUserinfo(ctx, op, tok.AccessToken, s.Subject, claims); err != nil {
		var se *signInError
		if errors.As(err, &se) && se.reason == "userinfo_subject" {
			return nil, fmt.Errorf("%w: %v", errRefreshRefused, err)
		}
		return nil, err
	}
	renewed := *s
	p.fillClaims(&renewed, claims)
	if tok.RefreshToken != "" {
		renewed.RefreshToken = tok.RefreshToken
	}
	renewed.RefreshAt = refreshAt(tok.Expiry, now)
	if p.idle > 0 {
		renewed.Seen = now.Unix()
	}
	if raw, _ := tok.Extra("id_token").(string); raw != "" && op.endSession != "" {
		renewed.IDToken = raw
	}
	return &renewed, nil
}
