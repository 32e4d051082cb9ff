package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/oidc-proxy/oidc-proxy/session"
	"golang.org/x/oauth2"
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
func (p *Proxy) renew(w http.ResponseWriter, r *http.Request, id *identity, now time.Time) *identity {
	s := id.session
	if s.RefreshToken == "" || now.Unix() < s.RefreshAt {
		return id
	}
	op := p.provider.Load()
	if op == nil {
		return id
	}
	// Not the request's context: a client that leaves must not cancel a
	// refresh that others wait for.
	ctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(r.Context()), p.idpClient), 3*p.idpTimeout)
	defer cancel()
	renewed, err := p.store.Refresh(ctx, w, r, id.entry, now, func(ctx context.Context, cur *session.Session) (*session.Session, error) {
		return p.refresh(ctx, op, cur, now)
	})
	switch {
	case errors.Is(err, errRefreshRefused):
		p.metrics.refresh.WithLabelValues("refused").Inc()
		p.log.Warn("refresh refused: session ended", "user", userName(s), "sub", s.Subject, "err", err, "client", p.trusted.clientIP(r))
		return nil
	case err != nil:
		p.metrics.refresh.WithLabelValues("failed").Inc()
		p.log.Warn("refresh failed; the session goes on until it expires", "user", userName(s), "sub", s.Subject, "err", err)
		return id
	}
	p.metrics.refresh.WithLabelValues("success").Inc()
	return p.ids.of(renewed)
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
