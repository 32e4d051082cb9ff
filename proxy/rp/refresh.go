package rp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// ErrRefused is a refresh the provider refused (invalid_grant and the
// like: the user was disabled, the grant revoked), or whose answer names
// another user. The session must end.
var ErrRefused = errors.New("the provider refused the refresh token")

// Refresh spends a refresh token of the user subject and returns what the
// provider says of them now: a renewed ID token (when it sends one) must
// name the same subject, and userinfo is read again. Tokens.RefreshToken
// is the rotated token, or "" when the old one stays good.
func (p *Provider) Refresh(ctx context.Context, refreshToken, subject string) (*Tokens, error) {
	ctx = p.c.context(ctx, "token")
	src := p.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)})
	tok, err := src.Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && (re.ErrorCode == "invalid_grant" || re.ErrorCode == "unauthorized_client" || re.ErrorCode == "invalid_client") {
			return nil, fmt.Errorf("%w: %s", ErrRefused, re.ErrorCode)
		}
		return nil, p.retrieveError(err)
	}
	t := &Tokens{Subject: subject, Claims: map[string]json.RawMessage{}, Expiry: tok.Expiry}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		idt, err := p.verifier.Verify(ctx, raw)
		if err != nil {
			return nil, fmt.Errorf("renewed ID token: %w", err)
		}
		if idt.Subject != subject {
			return nil, fmt.Errorf("%w: the renewed ID token names another subject", ErrRefused)
		}
		if err := idt.Claims(&t.Claims); err != nil {
			return nil, err
		}
		t.IDToken = raw
	}
	if err := p.mergeUserinfo(ctx, tok.AccessToken, subject, t.Claims); err != nil {
		if Reason(err) == "userinfo_subject" {
			return nil, fmt.Errorf("%w: %v", ErrRefused, err)
		}
		return nil, err
	}
	if tok.RefreshToken != refreshToken {
		t.RefreshToken = tok.RefreshToken
	}
	return t, nil
}
