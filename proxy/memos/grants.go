package memos

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// grant is one code or access token the bridge issued to Memos.
type grant struct {
	User        memosUser `json:"u"`
	RedirectURI string    `json:"r,omitempty"`
	Challenge   string    `json:"c,omitempty"` // PKCE S256 code_challenge, or ""
	Expires     int64     `json:"e"`           // Unix milliseconds
}

func (g *grant) expired(now time.Time) bool { return now.UnixMilli() >= g.Expires }

// grants keeps the bridge's codes and access tokens, each under its own
// secret value, in the session store: so that, when the store is shared,
// any replica redeems what another issued.
type grants struct{ st session.Store }

// put keeps g under secret until g expires.
func (s grants) put(ctx context.Context, kind, secret string, g *grant, now time.Time) error {
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return s.st.Keep(ctx, "bridge-"+kind, secret, b, time.UnixMilli(g.Expires).Sub(now))
}

// get returns the grant under secret, or nil when there is none or it
// expired; with take it is removed in the same step (a code is redeemed
// once, by one caller).
func (s grants) get(ctx context.Context, kind, secret string, take bool, now time.Time) (*grant, error) {
	b, err := s.st.Take(ctx, "bridge-"+kind, secret, take)
	if errors.Is(err, session.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var g grant
	if err := json.Unmarshal(b, &g); err != nil || g.expired(now) {
		return nil, nil
	}
	return &g, nil
}
