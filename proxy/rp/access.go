package rp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// What the provider says of an access token that an API client presents:
// a JWT access token (RFC 9068) verified with the provider's key set, or
// any token at the provider's introspection endpoint (RFC 7662).

// Access is an access token the provider vouches for.
type Access struct {
	// Subject is the user's sub; "" for a machine's token (client
	// credentials: no user).
	Subject string
	// ClientID is the client the token was issued to.
	ClientID string
	// Audience is the token's aud (empty when it has none).
	Audience []string
	// Scopes are the token's scopes (scope, or a JWT's scp).
	Scopes []string
	// Expiry is when the token expires.
	Expiry time.Time
	// Claims are the token's claims about the user as the token or the
	// introspection answer holds them (username, preferred_username,
	// email, name, groups...).
	Claims map[string]json.RawMessage
}

// ErrInvalidToken is a token the provider does not vouch for: malformed,
// not an access token, badly signed, expired, inactive. The reason is in
// the wrapped text; the token is never.
var ErrInvalidToken = errors.New("invalid access token")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, fmt.Sprintf(format, args...))
}

// accessLeeway is the clock skew allowed on exp, nbf and iat.
const accessLeeway = time.Minute

// IsJWT reports whether tok has the shape of a JWS compact serialization
// (three base64url parts, a JSON header with alg): never a guess that
// lets one kind pass as the other, only which check runs.
func IsJWT(tok string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	_, err := jwtHeader(parts[0])
	return err == nil
}

type joseHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

func jwtHeader(seg string) (*joseHeader, error) {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, err
	}
	var h joseHeader
	if err := json.Unmarshal(b, &h); err != nil || h.Alg == "" {
		return nil, errors.New("no JOSE header")
	}
	return &h, nil
}

// JWTIssuer is the iss claim of a JWT, unverified: for routing a token to
// the check that applies, never for trusting it.
func JWTIssuer(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	json.Unmarshal(b, &c)
	return c.Iss
}

// VerifyJWTAccess verifies a JWT access token (RFC 9068): typ at+jwt
// (an ID token or a logout token is refused), an asymmetric algorithm
// that discovery names (never none, never an HMAC), the signature with the provider's key
// set, iss the provider, exp, nbf and iat within a minute's skew.
// Audience, client and scopes are the caller's to check.
func (p *Provider) VerifyJWTAccess(ctx context.Context, raw string) (*Access, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, invalid("not a JWT")
	}
	h, err := jwtHeader(parts[0])
	if err != nil {
		return nil, invalid("JWT header: %v", err)
	}
	if typ := strings.ToLower(h.Typ); typ != "at+jwt" && typ != "application/at+jwt" {
		return nil, invalid("typ %q is not at+jwt: not an access token", truncate(h.Typ, 40))
	}
	if !asymmetricAlgs[h.Alg] || !p.algs[h.Alg] {
		return nil, invalid("alg %q is not an asymmetric signature the provider's discovery names", truncate(h.Alg, 40))
	}
	// Anyone may send one: an unknown kid reads the key set rarely.
	ctx = context.WithValue(context.WithValue(ctx, endpointKey{}, "jwks"), outsiderKey{}, true)
	payload, err := p.keys.VerifySignature(ctx, raw)
	if err != nil {
		return nil, invalid("signature: %v", err)
	}
	var c struct {
		Iss      string          `json:"iss"`
		Sub      string          `json:"sub"`
		ClientID string          `json:"client_id"`
		Aud      audience        `json:"aud"`
		Scope    string          `json:"scope"`
		Scp      json.RawMessage `json:"scp"`
		Exp      *float64        `json:"exp"`
		Nbf      *float64        `json:"nbf"`
		Iat      *float64        `json:"iat"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, invalid("claims: %v", err)
	}
	now := p.c.cfg.Now()
	switch {
	case c.Iss != p.c.cfg.Issuer:
		return nil, invalid("iss is not the provider")
	case c.Exp == nil:
		return nil, invalid("no exp")
	case now.After(unix(*c.Exp).Add(accessLeeway)):
		return nil, invalid("expired")
	case c.Nbf != nil && now.Add(accessLeeway).Before(unix(*c.Nbf)):
		return nil, invalid("not valid yet (nbf)")
	case c.Iat != nil && now.Add(accessLeeway).Before(unix(*c.Iat)):
		return nil, invalid("issued in the future (iat)")
	case c.ClientID == "":
		return nil, invalid("no client_id")
	}
	scopes := strings.Fields(c.Scope)
	if len(c.Scp) > 0 {
		var list []string
		if json.Unmarshal(c.Scp, &list) != nil {
			var one string
			if json.Unmarshal(c.Scp, &one) != nil {
				return nil, invalid("scp is neither a list nor a string")
			}
			list = strings.Fields(one)
		}
		scopes = list
	}
	var claims map[string]json.RawMessage
	json.Unmarshal(payload, &claims)
	return &Access{Subject: c.Sub, ClientID: c.ClientID, Audience: c.Aud, Scopes: scopes, Expiry: unix(*c.Exp), Claims: personClaims(claims)}, nil
}

// Introspect asks the provider's introspection endpoint (RFC 7662) about
// tok, authenticating as the proxy's client by method
// ("client_secret_basic" or "client_secret_post"). An inactive token, or
// one whose answer is out of date or names another issuer, is
// ErrInvalidToken; a provider that cannot answer is any other error (a
// *StatusError when it answered with an error status).
func (p *Provider) Introspect(ctx context.Context, tok, method string) (*Access, error) {
	endpoint := p.doc.IntrospectionEndpoint
	if endpoint == "" {
		return nil, errors.New("the provider has no introspection_endpoint in its discovery document")
	}
	form := url.Values{"token": {tok}, "token_type_hint": {"access_token"}}
	if method == "client_secret_post" {
		form.Set("client_id", p.c.cfg.ClientID)
		form.Set("client_secret", p.c.cfg.ClientSecret)
	}
	req, err := http.NewRequestWithContext(context.WithValue(ctx, endpointKey{}, "introspection"), http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if method != "client_secret_post" {
		// RFC 6749 2.3.1: both form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(p.c.cfg.ClientID), url.QueryEscape(p.c.cfg.ClientSecret))
	}
	resp, err := p.c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(body, &e)
		return nil, &StatusError{Status: resp.StatusCode, Code: truncate(e.Error, 64), RetryAfter: ParseRetryAfter(resp.Header.Get("Retry-After"), p.c.cfg.Now())}
	}
	var a struct {
		Active   *bool    `json:"active"`
		Sub      string   `json:"sub"`
		ClientID string   `json:"client_id"`
		Scope    string   `json:"scope"`
		Aud      audience `json:"aud"`
		Exp      *float64 `json:"exp"`
		Nbf      *float64 `json:"nbf"`
		Iss      string   `json:"iss"`
	}
	if err := json.Unmarshal(body, &a); err != nil || a.Active == nil {
		return nil, fmt.Errorf("the introspection answer is not an RFC 7662 object: %.100s", body)
	}
	if !*a.Active {
		return nil, invalid("the provider says it is not active (revoked, expired or unknown)")
	}
	now := p.c.cfg.Now()
	switch {
	case a.Iss != "" && a.Iss != p.c.cfg.Issuer:
		return nil, invalid("the introspection answer names another issuer")
	case a.Exp == nil:
		return nil, invalid("the introspection answer has no exp")
	case now.After(unix(*a.Exp).Add(accessLeeway)):
		return nil, invalid("expired")
	case a.Nbf != nil && now.Add(accessLeeway).Before(unix(*a.Nbf)):
		return nil, invalid("not valid yet (nbf)")
	case a.ClientID == "":
		return nil, invalid("the introspection answer has no client_id")
	}
	var claims map[string]json.RawMessage
	json.Unmarshal(body, &claims)
	return &Access{Subject: a.Sub, ClientID: a.ClientID, Audience: a.Aud, Scopes: strings.Fields(a.Scope), Expiry: unix(*a.Exp), Claims: personClaims(claims)}, nil
}

// HasIntrospection reports whether discovery named an introspection
// endpoint.
func (p *Provider) HasIntrospection() bool { return p.doc.IntrospectionEndpoint != "" }

// Userinfo reads the userinfo endpoint with an access token.
func (p *Provider) Userinfo(ctx context.Context, tok string) (map[string]json.RawMessage, error) {
	return p.userinfo(ctx, tok)
}

// personClaims keeps the claims that describe a user: not the token's
// own (iss, aud, exp, scope...).
func personClaims(all map[string]json.RawMessage) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for k, v := range all {
		switch k {
		case "iss", "aud", "exp", "iat", "nbf", "jti", "scope", "scp", "client_id", "active", "token_type", "azp", "cnf", "auth_time", "acr", "amr", "sid":
		default:
			out[k] = v
		}
	}
	// Introspection names the user username (RFC 7662); the claims are
	// read as preferred_username.
	if _, ok := out["preferred_username"]; !ok {
		if u, ok := out["username"]; ok {
			out["preferred_username"] = u
		}
	}
	return out
}

func unix(f float64) time.Time { return time.Unix(int64(f), 0) }

// audience is aud: a string or a list of strings.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = audience{one}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("aud is neither a string nor a list of strings")
	}
	*a = list
	return nil
}
