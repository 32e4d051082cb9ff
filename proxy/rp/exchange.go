package rp

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// maxClockSkew is how far in the future an ID token's iat may lie.
const maxClockSkew = 5 * time.Minute

// Error is a sign-in step that failed, with a short machine reason for
// logs and metrics ("token_exchange", "id_token_invalid", "userinfo",
// "userinfo_subject", "no_id_token", "iss_mismatch", "iss_missing"). Its
// text never quotes what the provider sent in full.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func fail(reason string, err error) error { return &Error{reason, err} }

// Reason is err's machine reason, or "error".
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return "error"
}

// Tokens is what the provider said of a signed-in user.
type Tokens struct {
	// Subject is the ID token's sub.
	Subject string
	// SID is the ID token's sid (at most 256 bytes), or "".
	SID string
	// Claims are the ID token's claims with userinfo's merged over them
	// (userinfo wins; the token-only claims are never taken from it).
	Claims map[string]json.RawMessage
	// IDToken is the raw ID token ("" when a refresh brought none).
	IDToken string
	// RefreshToken is "" when the provider issued none (or, on a refresh,
	// kept the old one).
	RefreshToken string
	// Expiry is when the access token expires (zero: not said).
	Expiry time.Time
}

// CheckIssuer applies RFC 9207 to a callback's query: the iss parameter
// names who answered, errors included. A mismatch is a mix-up attack; so
// is its absence when the provider promises it.
func (p *Provider) CheckIssuer(q url.Values) error {
	iss, present := q["iss"]
	switch {
	case present && (len(iss) != 1 || iss[0] != p.c.cfg.Issuer):
		return fail("iss_mismatch", errors.New("callback iss is not the configured issuer"))
	case !present && p.issParam:
		return fail("iss_missing", errors.New("callback has no iss though the provider announces it"))
	}
	return nil
}

// Redeem exchanges an authorization code (with the PKCE verifier of its
// request; ctx may name the browser's address, see WithClientAddress) and
// verifies the answer: the ID token's signature, issuer,
// audience and expiry (go-oidc), then what go-oidc leaves to its caller:
// the nonce, azp, iat in the future, and at_hash; then userinfo, whose
// sub must be the ID token's. ctx should carry a deadline.
func (p *Provider) Redeem(ctx context.Context, code, nonce, verifier string) (*Tokens, error) {
	ctx = p.c.context(ctx, "token")
	tok, err := p.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fail("token_exchange", p.retrieveError(err))
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, fail("no_id_token", errors.New("token response has no id_token"))
	}
	idt, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, fail("id_token_invalid", err)
	}
	if err := p.checkIDToken(idt, nonce, tok.AccessToken); err != nil {
		return nil, fail("id_token_invalid", err)
	}
	t := &Tokens{Subject: idt.Subject, IDToken: raw, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry,
		Claims: map[string]json.RawMessage{}}
	if err := idt.Claims(&t.Claims); err != nil {
		return nil, fail("id_token_invalid", err)
	}
	if err := p.mergeUserinfo(ctx, tok.AccessToken, idt.Subject, t.Claims); err != nil {
		return nil, err
	}
	var sid struct {
		SID string `json:"sid"`
	}
	if idt.Claims(&sid) == nil && len(sid.SID) <= 256 {
		t.SID = sid.SID
	}
	return t, nil
}

// StatusError is a token endpoint's answer other than 200: its status and
// OAuth error code, never its body.
type StatusError struct {
	Status int
	Code   string // the OAuth error code (at most 64 bytes), or ""
	// RetryAfter is what the answer's Retry-After asks (429 or 503; 0:
	// nothing said).
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("token endpoint answered %d %s", e.Status, e.Code)
}

// RateLimited reports whether the provider refused for its rate limit.
func (e *StatusError) RateLimited() bool { return e.Status == http.StatusTooManyRequests }

// maxRetryAfter bounds what a provider's Retry-After may ask.
const maxRetryAfter = 6 * time.Hour

// ParseRetryAfter reads a Retry-After value (seconds, or an HTTP date) as
// of now: 0 when absent or unreadable, at most maxRetryAfter.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// retrieveError keeps a token endpoint's body out of the error (its
// Error() quotes it whole): a *StatusError with the status and the error
// code only.
func (p *Provider) retrieveError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return &StatusError{Status: re.Response.StatusCode, Code: truncate(re.ErrorCode, 64),
			RetryAfter: ParseRetryAfter(re.Response.Header.Get("Retry-After"), p.c.cfg.Now())}
	}
	return err
}

// mergeUserinfo reads userinfo with the access token, checks that its sub
// is sub, and merges its claims over claims (userinfo wins for profile
// claims).
func (p *Provider) mergeUserinfo(ctx context.Context, accessToken, sub string, claims map[string]json.RawMessage) error {
	if p.oidc.UserInfoEndpoint() == "" {
		return nil
	}
	extra, err := p.userinfo(ctx, accessToken)
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

// checkIDToken makes the checks go-oidc leaves to the caller: nonce, azp,
// iat in the future, and at_hash.
func (p *Provider) checkIDToken(idt *oidc.IDToken, nonce, accessToken string) error {
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
	if c.AZP != "" && c.AZP != p.c.cfg.ClientID {
		return fmt.Errorf("azp is not this client")
	}
	if idt.IssuedAt.After(p.c.cfg.Now().Add(maxClockSkew)) {
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

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
