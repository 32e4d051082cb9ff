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

	"github.com/coreos/go-oidc/v3/oidc"
)

// keySet verifies signatures with go-oidc's RemoteKeySet (cached,
// refetched when an unknown kid appears), and first refuses a token that
// names no kid while the provider publishes several keys (OpenID Connect
// Core 10.1: then kid is required).
type keySet struct {
	remote  *oidc.RemoteKeySet
	jwksURI string
	client  *http.Client
}

func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	kid, err := jwtKeyID(jwt)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		n, err := k.countKeys(ctx)
		if err != nil {
			return nil, err
		}
		if n != 1 {
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

func (k *keySet) countKeys(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(context.WithValue(ctx, endpointKey{}, "jwks"), http.MethodGet, k.jwksURI, nil)
	if err != nil {
		return 0, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("fetch JWKS: status %d", resp.StatusCode)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return 0, fmt.Errorf("fetch JWKS: %w", err)
	}
	return len(set.Keys), nil
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
