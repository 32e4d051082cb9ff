package rp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// keySet verifies signatures with go-oidc's RemoteKeySet (cached,
// refetched when an unknown kid appears), and first refuses a token that
// names no kid while the provider publishes several keys (OpenID Connect
// Core 10.1: then kid is required).
//
// A token anyone may send (a back-channel logout token: VerifyLogout
// marks its context with outsider) that names a kid neither verified
// before nor published when the key set was last read makes the key set
// be read at most once every unknownKeyEvery, all such tokens together:
// a flood of made-up kids costs the provider no more than that. The keys
// of tokens the provider handed the proxy itself (ID tokens) are fetched
// as soon as they appear.
type keySet struct {
	remote  *oidc.RemoteKeySet
	jwksURI string
	client  *http.Client
	now     func() time.Time

	mu          sync.Mutex
	known       map[string]bool // kids that verified a signature
	published   map[string]bool // kids of the key set, as last read for an outsider
	publishedN  int             // how many keys it had
	lastUnknown time.Time       // an outsider's unknown kid last made the key set be read
}

// unknownKeyEvery bounds how often an outsider's token with an unknown kid
// may make the key set be fetched.
const unknownKeyEvery = 10 * time.Second

// maxKnownKeys bounds the kids remembered (a provider publishes a few).
const maxKnownKeys = 64

type outsiderKey struct{}

// errUnknownKey is an outsider's token naming a key not seen, while such
// a token already made the key set be fetched a moment ago.
var errUnknownKey = errors.New("the token names a key the provider did not publish (not fetched again so soon)")

func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	kid, err := jwtKeyID(jwt)
	if err != nil {
		return nil, err
	}
	if ctx.Value(outsiderKey{}) != nil && !k.mayFetchFor(ctx, kid) {
		return nil, errUnknownKey
	}
	payload, err := k.verify(ctx, kid, jwt)
	if err == nil && kid != "" {
		k.mu.Lock()
		if k.known == nil {
			k.known = map[string]bool{}
		}
		if len(k.known) < maxKnownKeys {
			k.known[kid] = true
		}
		k.mu.Unlock()
	}
	return payload, err
}

// mayFetchFor reports whether an outsider's token naming kid may go to
// the remote key set: a kid that verified before, or one the provider
// publishes (the key set is read for that at most once every
// unknownKeyEvery, all outsiders together).
func (k *keySet) mayFetchFor(ctx context.Context, kid string) bool {
	k.mu.Lock()
	if k.known[kid] || k.published[kid] {
		k.mu.Unlock()
		return true
	}
	now := k.now()
	if now.Sub(k.lastUnknown) < unknownKeyEvery && now.After(k.lastUnknown.Add(-time.Minute)) {
		k.mu.Unlock()
		return false
	}
	k.lastUnknown = now
	k.mu.Unlock()
	kids, err := k.publishedKeys(ctx)
	if err != nil {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.published, k.publishedN = map[string]bool{}, len(kids)
	for _, id := range kids {
		if len(k.published) < maxKnownKeys {
			k.published[id] = true
		}
	}
	return k.published[kid]
}

func (k *keySet) verify(ctx context.Context, kid, jwt string) ([]byte, error) {
	if kid == "" && ctx.Value(outsiderKey{}) != nil {
		k.mu.Lock() // mayFetchFor read the key set for it, lately
		n := k.publishedN
		k.mu.Unlock()
		if n != 1 {
			return nil, fmt.Errorf("the token names no kid and the provider publishes %d keys", n)
		}
	} else if kid == "" {
		kids, err := k.publishedKeys(ctx)
		if err != nil {
			return nil, err
		}
		if n := len(kids); n != 1 {
			return nil, fmt.Errorf("the ID token names no kid and the provider publishes %d keys", n)
		}
	}
	return k.remote.VerifySignature(ctx, jwt)
}

// jwtKeyID reads the kid from a compact JWS header.
func jwtKeyID(jwt string) (string, error) {
	head, _, ok := strings.Cut(jwt, ".")
	if !ok || len(head) > 4096 {
		return "", errors.New("malformed JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return "", fmt.Errorf("malformed JWT header: %w", err)
	}
	var h struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return "", fmt.Errorf("malformed JWT header: %w", err)
	}
	return h.KID, nil
}

// publishedKeys reads the provider's key set: the kid of each key ("" for
// a key without one).
func (k *keySet) publishedKeys(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(context.WithValue(ctx, endpointKey{}, "jwks"), http.MethodGet, k.jwksURI, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS: status %d", resp.StatusCode)
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	kids := make([]string, len(set.Keys))
	for i, key := range set.Keys {
		kids[i] = key.KID
	}
	return kids, nil
}

// userinfo reads the userinfo endpoint with the access token: a JSON
// object, or a JWT signed with one of the provider's keys.
func (p *Provider) userinfo(ctx context.Context, accessToken string) (map[string]json.RawMessage, error) {
	req, err := http.NewRequestWithContext(context.WithValue(ctx, endpointKey{}, "userinfo"), http.MethodGet, p.oidc.UserInfoEndpoint(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := p.c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch mediaType {
	case "application/json":
	case "application/jwt":
		if body, err = p.keys.VerifySignature(ctx, strings.TrimSpace(string(body))); err != nil {
			return nil, fmt.Errorf("signed userinfo: %w", err)
		}
	default:
		return nil, fmt.Errorf("content type %q is neither JSON nor a JWT", mediaType)
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(body, &claims); err != nil || claims == nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	return claims, nil
}
