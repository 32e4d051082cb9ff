package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"sync"
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
// secret value: in this process, or in Redis when the sessions are there,
// so that any replica redeems what another issued.
type grants interface {
	// put keeps g under secret until g expires.
	put(ctx context.Context, kind, secret string, g *grant, now time.Time) error
	// get returns the grant under secret, or nil when there is none or it
	// expired; with take it is removed in the same step (a code is
	// redeemed once, by one caller).
	get(ctx context.Context, kind, secret string, take bool, now time.Time) (*grant, error)
}

// memGrants are grants in this process, bounded in number.
type memGrants struct {
	mu sync.Mutex
	m  map[string]map[[32]byte]*grant // by kind, then the secret's SHA-256
}

func newMemGrants() *memGrants { return &memGrants{m: map[string]map[[32]byte]*grant{}} }

func (s *memGrants) put(_ context.Context, kind, secret string, g *grant, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.m[kind]
	if m == nil {
		m = map[[32]byte]*grant{}
		s.m[kind] = m
	}
	if len(m) >= bridgeMaxGrants/2 {
		for k, old := range m {
			if old.expired(now) {
				delete(m, k)
			}
		}
	}
	if len(m) >= bridgeMaxGrants {
		return errors.New("too many codes outstanding")
	}
	m[sha256.Sum256([]byte(secret))] = g
	return nil
}

func (s *memGrants) get(_ context.Context, kind, secret string, take bool, now time.Time) (*grant, error) {
	key := sha256.Sum256([]byte(secret))
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.m[kind][key]
	if take {
		delete(s.m[kind], key)
	}
	if g == nil || g.expired(now) {
		return nil, nil
	}
	return g, nil
}

// redisGrants are grants in the Redis store, each encrypted with a key
// derived from its own secret.
type redisGrants struct{ st *session.RedisStore }

func (s redisGrants) put(ctx context.Context, kind, secret string, g *grant, now time.Time) error {
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return s.st.PutSealed(ctx, "bridge-"+kind, secret, b, time.UnixMilli(g.Expires).Sub(now))
}

func (s redisGrants) get(ctx context.Context, kind, secret string, take bool, now time.Time) (*grant, error) {
	b, err := s.st.GetSealed(ctx, "bridge-"+kind, secret, take)
	if errors.Is(err, session.ErrNotFound) || errors.Is(err, session.ErrInvalid) {
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
