package proxy

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/oidc-proxy/oidc-proxy/session"
	"golang.org/x/oauth2"
)

// largeCookie is the session cookie size past which sign-in warns: nginx,
// for one, refuses a request header line over 8 KB by default.
const largeCookie = 7 << 10

// maxClockSkew is how far in the future an ID token's iat may lie.
const maxClockSkew = 5 * time.Minute

// oauthErrors are the error codes a callback page may name; any other
// value from the provider is shown as "unknown_error".
var oauthErrors = map[string]bool{
	"access_denied": true, "invalid_request": true, "unauthorized_client": true,
	"unsupported_response_type": true, "invalid_scope": true, "server_error": true,
	"temporarily_unavailable": true, "interaction_required": true, "login_required": true,
	"account_selection_required": true, "consent_required": true, "invalid_request_uri": true,
	"invalid_request_object": true, "request_not_supported": true, "request_uri_not_supported": true,
	"registration_not_supported": true,
}

// handleCallback completes a sign-in: it checks the flow, exchanges the
// code, verifies the ID token, reads userinfo and writes the session.
func (p *Proxy) handleCallback(w http.ResponseWriter, r *http.Request) {
	op := p.provider.Load()
	if op == nil {
		w.Header().Set("Retry-After", "5")
		p.errorPage(w, r, http.StatusServiceUnavailable, "Sign-in is not available yet",
			"The proxy cannot reach the identity provider yet. Please try again in a moment.")
		return
	}
	q := r.URL.Query()
	f, err := p.takeFlow(w, r, q.Get("state"))
	if err != nil {
		p.signInFailed(w, r, "state", err, http.StatusBadRequest,
			"This sign-in link has expired, was already used, or was started in another browser.")
		return
	}
	// RFC 9207: the iss parameter names who answered, errors included. A
	// mismatch is a mix-up attack; so is its absence when the provider
	// promises it.
	if iss, present := q["iss"]; present && (len(iss) != 1 || iss[0] != p.issuer) {
		p.signInFailed(w, r, "iss_mismatch", errors.New("callback iss is not the configured issuer"), http.StatusBadRequest, "")
		return
	} else if !present && op.issParam {
		p.signInFailed(w, r, "iss_missing", errors.New("callback has no iss though the provider announces it"), http.StatusBadRequest, "")
		return
	}
	if code := q.Get("error"); code != "" {
		if !oauthErrors[code] {
			code = "unknown_error"
		}
		p.metrics.signIns.WithLabelValues("failure", "provider_error").Inc()
		p.log.Warn("sign-in refused by the provider", "reason", "provider_error", "error", code,
			"description", truncate(q.Get("error_description"), 200), "client", p.trusted.clientIP(r))
		p.errorPage(w, r, http.StatusForbidden, "Sign-in did not complete",
			"The identity provider answered: "+code+".")
		return
	}
	code := q.Get("code")
	if code == "" {
		p.signInFailed(w, r, "no_code", errors.New("callback has no code"), http.StatusBadRequest, "")
		return
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(r.Context(), p.idpClient), 3*p.idpTimeout)
	defer cancel()
	s, err := p.redeem(ctx, op, f, code)
	if err != nil {
		p.signInFailed(w, r, reasonOf(err), err, http.StatusBadGateway, "")
		return
	}
	size, err := p.store.Save(r.Context(), w, r, nil, s, p.now())
	if errors.Is(err, session.ErrStoreDown) {
		p.signInFailed(w, r, "store_down", err, http.StatusServiceUnavailable,
			"Your session cannot be stored right now. Please try again in a moment.")
		return
	}
	if err != nil {
		p.signInFailed(w, r, "session_too_large", fmt.Errorf("%w (use session.store: redis, or map fewer claims to headers)", err), http.StatusInternalServerError,
			"Your identity is too large to keep in a browser cookie.")
		return
	}
	if size > largeCookie {
		p.log.Warn("the session cookie is large: front proxies and servers often refuse request headers over 8 KB",
			"bytes", size, "user", userName(s), "hint", "map fewer claims to headers (groups is usually the large one), or use session.store: redis (the cookie is then a 176-byte ticket)")
	}
	p.log.Info("sign-in", "user", userName(s), "sub", s.Subject, "client", p.trusted.clientIP(r))
	p.metrics.signIns.WithLabelValues("success", "").Inc()
	dest := CleanReturnURL(f.Return)
	if !p.access.allows(s) {
		p.log.Warn("access denied by the access rules", "user", userName(s), "sub", s.Subject, "client", p.trusted.clientIP(r))
	} else if p.bridge != nil {
		dest = p.memosAfterSignIn(w, r, s, dest)
	}
	http.Redirect(w, r, dest, http.StatusFound)
}

// signInError carries a short machine reason for the log.
type signInError struct {
	reason string
	err    error
}

func (e *signInError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *signInError) Unwrap() error { return e.err }

func fail(reason string, err error) error { return &signInError{reason, err} }

func reasonOf(err error) string {
	var se *signInError
	if errors.As(err, &se) {
		return se.reason
	}
	return "error"
}

// redeem exchanges the code and turns the provider's answers into a session.
func (p *Proxy) redeem(ctx context.Context, op *provider, f *flow, code string) (*session.Session, error) {
	tok, err := op.oauth.Exchange(withIdPEndpoint(ctx, "token"), code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) { // its Error() quotes the whole body: keep it out of the log
			err = fmt.Errorf("token endpoint answered %d %s", re.Response.StatusCode, truncate(re.ErrorCode, 64))
		}
		return nil, fail("token_exchange", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, fail("no_id_token", errors.New("token response has no id_token"))
	}
	idt, err := op.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, fail("id_token_invalid", err)
	}
	if err := p.checkIDToken(idt, f.Nonce, tok.AccessToken); err != nil {
		return nil, fail("id_token_invalid", err)
	}
	claims := map[string]json.RawMessage{}
	if err := idt.Claims(&claims); err != nil {
		return nil, fail("id_token_invalid", err)
	}
	if err := p.mergeUserinfo(ctx, op, tok.AccessToken, idt.Subject, claims); err != nil {
		return nil, err
	}
	now := p.now()
	s := &session.Session{
		Subject: idt.Subject,
		Created: now.Unix(),
		Expires: now.Add(p.lifetime).Unix(),
		Born:    now.UnixMilli(),
	}
	p.fillClaims(s, claims)
	var sid struct {
		SID string `json:"sid"`
	}
	if idt.Claims(&sid) == nil && len(sid.SID) <= 256 {
		s.SID = sid.SID
	}
	if p.idle > 0 {
		s.Seen = now.Unix()
	}
	if tok.RefreshToken != "" {
		s.RefreshToken = tok.RefreshToken
		s.RefreshAt = refreshAt(tok.Expiry, now)
	}
	if op.endSession != "" {
		s.IDToken = raw
	}
	return s, nil
}

// mergeUserinfo reads userinfo with the access token, checks that its sub
// is sub, and merges its claims over claims (userinfo wins for profile
// claims).
func (p *Proxy) mergeUserinfo(ctx context.Context, op *provider, accessToken, sub string, claims map[string]json.RawMessage) error {
	if op.oidc.UserInfoEndpoint() == "" {
		return nil
	}
	extra, err := op.userinfo(ctx, accessToken)
	if err != nil {
		return fail("userinfo", err)
	}
	var usub string
	if json.Unmarshal(extra["sub"], &usub) != nil || usub == "" || usub != sub {
		return fail("userinfo_subject", errors.New("userinfo sub differs from the ID token's"))
	}
	for k, v := range extra {
		switch k {
		case "iss", "aud", "exp", "iat", "nbf", "nonce", "azp", "at_hash", "c_hash", "auth_time", "jti", "sid":
			continue
		}
		claims[k] = v
	}
	return nil
}

// fillClaims keeps in s what the headers and the access rules need of
// claims, replacing what s held.
func (p *Proxy) fillClaims(s *session.Session, claims map[string]json.RawMessage) {
	s.Claims = map[string]string{}
	s.User, s.Email, s.Groups = "", "", nil
	for _, name := range p.keptClaims {
		raw, present := claims[name]
		if !present {
			continue
		}
		if v, ok := flattenClaim(raw); ok {
			if v != "" {
				s.Claims[name] = v
			}
		} else {
			p.log.Warn("claim refused: not a header-safe value", "claim", name, "sub", s.Subject)
		}
	}
	p.access.fill(s, claims)
}

// checkIDToken makes the checks go-oidc leaves to the caller: nonce, azp,
// iat in the future, and at_hash.
func (p *Proxy) checkIDToken(idt *oidc.IDToken, nonce, accessToken string) error {
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return errors.New("nonce does not match this sign-in")
	}
	var c struct {
		AZP string `json:"azp"`
	}
	if err := idt.Claims(&c); err != nil {
		return err
	}
	if len(idt.Audience) > 1 && c.AZP == "" {
		return errors.New("several audiences and no azp")
	}
	if c.AZP != "" && c.AZP != p.clientID {
		return fmt.Errorf("azp is not this client")
	}
	if idt.IssuedAt.After(p.now().Add(maxClockSkew)) {
		return errors.New("iat is in the future")
	}
	if idt.Subject == "" {
		return errors.New("no sub")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(accessToken); err != nil {
			return err
		}
	}
	return nil
}

// signInFailed logs why a sign-in failed and shows a generic page.
func (p *Proxy) signInFailed(w http.ResponseWriter, r *http.Request, reason string, err error, status int, msg string) {
	p.log.Warn("sign-in failed", "reason", reason, "err", err, "client", p.trusted.clientIP(r))
	p.metrics.signIns.WithLabelValues("failure", reason).Inc()
	if msg == "" {
		msg = "The sign-in could not be completed. Please try again."
	}
	p.errorPage(w, r, status, "Sign-in failed", msg)
}

func userName(s *session.Session) string {
	if u := s.Claims["preferred_username"]; u != "" {
		return u
	}
	if s.User != "" {
		return s.User
	}
	return s.Subject
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
