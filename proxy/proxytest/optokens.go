package proxytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
)

// Tokens for scripts and command-line tools, as Authelia 4.39.20 issues
// and describes them (PEERS.md, "Tokens for scripts and command-line
// tools"):
//
//   - the client credentials grant for a machine client: scopes among the
//     client's, aud only when the request names audience=;
//   - a person's token as the device flow gives it (IssuePersonToken): no
//     aud at all;
//   - opaque (authelia_at_...) or, for a client registered with
//     JWTAccessTokens, a JWT access token: typ at+jwt, the provider's kid,
//     iss, aud, client_id, exp, iat, nbf, jti, scopes in scp, no sub for a
//     machine;
//   - introspection (RFC 7662) by ANY client that authenticates (with its
//     introspection method, client_secret_basic unless registered
//     otherwise): machine answers active, client_id, exp, iat, scope (aud
//     when it has one), a person's also sub and username and no aud;
//     revoked, expired, unknown tokens and ID tokens {"active": false};
//   - userinfo with a person's token whose scope has openid.

// ScriptClient is a client registered for tokens of scripts: a machine
// (client credentials) or a command-line tool (device flow).
type ScriptClient struct {
	ID, Secret string
	Scopes     []string
	// Audience lists the audiences the client may ask for.
	Audience []string
	// JWTAccessTokens: access_token_signed_response_alg: RS256.
	JWTAccessTokens bool
	// IntrospectionPost registers introspection_endpoint_auth_method:
	// client_secret_post (else client_secret_basic, Authelia's default).
	IntrospectionPost bool
}

type scriptToken struct {
	client  *ScriptClient
	user    *OPUser // nil: a machine's
	scopes  []string
	aud     []string
	issued  time.Time
	expires time.Time
	revoked bool
	jwt     bool
	jti     string
}

type scriptTokens struct {
	mu      sync.Mutex
	clients map[string]*ScriptClient
	tokens  map[string]*scriptToken
	// Introspections counts introspection requests.
	introspections atomic.Int64
}

// RegisterScriptClient registers c at the provider.
func (o *OP) RegisterScriptClient(c ScriptClient) {
	o.scripts.mu.Lock()
	defer o.scripts.mu.Unlock()
	o.scripts.clients[c.ID] = &c
}

// Introspections is how many introspection requests the provider got.
func (o *OP) Introspections() int64 { return o.scripts.introspections.Load() }

// TokenLife is how long the tokens for scripts live (Authelia's default
// access token lifespan is an hour).
var TokenLife = time.Hour

// IssuePersonToken is the access token user gets for the command-line
// tool clientID through the device flow (no aud), with scopes.
func (o *OP) IssuePersonToken(clientID string, user *OPUser, scopes ...string) string {
	o.scripts.mu.Lock()
	c := o.scripts.clients[clientID]
	o.scripts.mu.Unlock()
	if c == nil {
		panic("proxytest: no script client " + clientID)
	}
	return o.issue(c, user, scopes, nil, time.Now().Add(TokenLife))
}

// IssueExpired is a machine token of clientID that expired a minute ago
// (past any leeway the proxy allows... two minutes back, to be sure).
func (o *OP) IssueExpired(clientID string, scopes ...string) string {
	o.scripts.mu.Lock()
	c := o.scripts.clients[clientID]
	o.scripts.mu.Unlock()
	return o.issue(c, nil, scopes, nil, time.Now().Add(-2*time.Minute))
}

// RevokeToken revokes an access token: introspection says inactive from
// now on (a JWT still verifies by its signature until it expires).
func (o *OP) RevokeToken(tok string) {
	o.scripts.mu.Lock()
	defer o.scripts.mu.Unlock()
	if t, ok := o.scripts.tokens[tok]; ok {
		t.revoked = true
	}
}

func (o *OP) issue(c *ScriptClient, user *OPUser, scopes, aud []string, expires time.Time) string {
	t := &scriptToken{client: c, user: user, scopes: scopes, aud: aud, issued: time.Now(), expires: expires, jwt: c.JWTAccessTokens, jti: uuid.NewString()}
	var tok string
	if t.jwt {
		tok = o.signAccess(t)
	} else {
		var b [32]byte
		rand.Read(b[:])
		tok = "authelia_at_" + hex.EncodeToString(b[:])
	}
	o.scripts.mu.Lock()
	o.scripts.tokens[tok] = t
	o.scripts.mu.Unlock()
	return tok
}

// signAccess signs a JWT access token with the provider's key (RFC 9068,
// as Authelia makes them).
func (o *OP) signAccess(t *scriptToken) string {
	claims := map[string]any{
		"iss": o.issuer, "client_id": t.client.ID, "exp": t.expires.Unix(), "iat": t.issued.Unix(),
		"nbf": t.issued.Unix(), "jti": t.jti, "scp": t.scopes,
	}
	if t.aud != nil {
		claims["aud"] = t.aud
	} else {
		claims["aud"] = []string{}
	}
	if t.user != nil {
		claims["sub"] = t.user.id
	}
	return o.SignJWT("at+jwt", claims)
}

// SignJWT signs claims with the provider's own key, with header typ: for
// tests of tokens the provider would never issue (an ID token's typ, a
// forged issuer).
func (o *OP) SignJWT(typ string, claims map[string]any) string {
	key, err := o.store.SigningKey(context.Background())
	if err != nil {
		panic(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: key.SignatureAlgorithm(), Key: key.Key()},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", key.ID()))
	if err != nil {
		panic(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		panic(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

// scriptEndpoints answers the grants and endpoints for scripts; it
// reports false for a request that is not theirs.
func (o *OP) scriptEndpoints(w http.ResponseWriter, r *http.Request) bool {
	switch r.URL.Path {
	case "/oauth/token":
		if r.PostForm.Get("grant_type") != "client_credentials" {
			return false
		}
		c := o.scriptClient(r, false)
		if c == nil {
			oauthError(w, http.StatusUnauthorized, "invalid_client")
			return true
		}
		scopes := strings.Fields(r.PostForm.Get("scope"))
		for _, s := range scopes {
			if !slices.Contains(c.Scopes, s) {
				oauthError(w, http.StatusBadRequest, "invalid_scope")
				return true
			}
		}
		var aud []string
		if a := r.PostForm.Get("audience"); a != "" {
			for _, x := range strings.Fields(a) {
				if !slices.Contains(c.Audience, x) {
					oauthError(w, http.StatusBadRequest, "invalid_request")
					return true
				}
			}
			aud = strings.Fields(a)
		}
		tok := o.issue(c, nil, scopes, aud, time.Now().Add(TokenLife))
		writeJSON(w, map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": int(TokenLife.Seconds()), "scope": strings.Join(scopes, " ")})
		return true
	case "/oauth/introspect":
		o.scripts.introspections.Add(1)
		if o.scriptClient(r, true) == nil && !o.proxyClientIntrospects(r) {
			oauthError(w, http.StatusUnauthorized, "invalid_client")
			return true
		}
		writeJSON(w, o.introspection(r.PostForm.Get("token")))
		return true
	case "/userinfo":
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		o.scripts.mu.Lock()
		t, ok := o.scripts.tokens[tok]
		o.scripts.mu.Unlock()
		if !ok {
			return false // the library's own tokens
		}
		if t.user == nil || t.revoked || time.Now().After(t.expires) || !slices.Contains(t.scopes, "openid") {
			oauthError(w, http.StatusUnauthorized, "invalid_token")
			return true
		}
		info := map[string]any{"sub": t.user.id, "preferred_username": t.user.Username, "name": t.user.Name, "groups": t.user.Groups}
		if t.user.Email != "" {
			info["email"], info["email_verified"] = t.user.Email, true
		}
		writeJSON(w, info)
		return true
	}
	return false
}

// introspection is the answer about tok.
func (o *OP) introspection(tok string) map[string]any {
	o.scripts.mu.Lock()
	t, ok := o.scripts.tokens[tok]
	o.scripts.mu.Unlock()
	if !ok || t.revoked || time.Now().After(t.expires) {
		return map[string]any{"active": false}
	}
	a := map[string]any{"active": true, "client_id": t.client.ID, "exp": t.expires.Unix(), "iat": t.issued.Unix(), "scope": strings.Join(t.scopes, " ")}
	if t.aud != nil {
		a["aud"] = t.aud
	}
	if t.user != nil {
		a["sub"], a["username"] = t.user.id, t.user.Username
	}
	return a
}

// scriptClient is the script client r authenticates as (for the token
// endpoint, or for introspection with its registered method), or nil.
func (o *OP) scriptClient(r *http.Request, introspect bool) *ScriptClient {
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	o.scripts.mu.Lock()
	c := o.scripts.clients[id]
	o.scripts.mu.Unlock()
	if c == nil || c.Secret != secret {
		return nil
	}
	if introspect && basic == c.IntrospectionPost {
		return nil // only the registered method
	}
	return c
}

// proxyClientIntrospects reports whether r authenticates as the proxy's
// own client with its registered introspection method (IntrospectionPost
// in OPConfig; Authelia's default is client_secret_basic).
func (o *OP) proxyClientIntrospects(r *http.Request) bool {
	id, secret, basic := r.BasicAuth()
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	return id == o.clientID && secret == o.clientSecret && basic != o.introspectionPost
}

func oauthError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// UserByName is the provider's user with that preferred_username, or nil.
func (o *OP) UserByName(name string) *OPUser {
	for _, u := range o.users {
		if u.Username == name {
			return u
		}
	}
	return nil
}

// IssueMachineToken is a token of the machine clientID with scopes, as
// its client credentials grant gives it (no audience).
func (o *OP) IssueMachineToken(clientID string, scopes ...string) string {
	o.scripts.mu.Lock()
	c := o.scripts.clients[clientID]
	o.scripts.mu.Unlock()
	if c == nil {
		panic("proxytest: no script client " + clientID)
	}
	return o.issue(c, nil, scopes, nil, time.Now().Add(TokenLife))
}
