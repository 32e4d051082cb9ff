package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/oidc-proxy/oidc-proxy/config"
)

const assertionHeader = "X-Oidc-Proxy-Assertion"

// jwtKey writes a fresh P-256 key as PEM and returns the file.
func jwtKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	f := filepath.Join(t.TempDir(), "jwt.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// signing turns the identity JWT on with keys (and the audience, if any).
func signing(aud string, keys ...string) func(*config.Config) {
	return func(c *config.Config) {
		c.IdentityJWT = &config.IdentityJWT{Header: assertionHeader, Audience: aud, Lifetime: 5 * time.Minute,
			Algorithm: "ES256", KeyFiles: keys, Claims: config.DefaultIdentityJWTClaims()}
		if aud == "" {
			c.IdentityJWT.Audience = c.ExternalURL
		}
	}
}

// appVerifier is an application's check of the header: the proxy's key set
// at base+/oauth2/jwks.json, its issuer, the audience, exp and nbf.
func appVerifier(base, iss, aud string, now func() time.Time) *oidc.IDTokenVerifier {
	keys := oidc.NewRemoteKeySet(context.Background(), base+"/oauth2/jwks.json")
	return oidc.NewVerifier(iss, keys, &oidc.Config{ClientID: aud, SupportedSigningAlgs: []string{oidc.ES256}, Now: now})
}

type jwtIdentity struct {
	User   string   `json:"preferred_username"`
	Name   string   `json:"name"`
	Email  string   `json:"email"`
	Groups []string `json:"groups"`
}

func verifyAssertion(t *testing.T, v *oidc.IDTokenVerifier, token string) (*oidc.IDToken, jwtIdentity) {
	t.Helper()
	if token == "" {
		t.Fatal("the upstream received no signed identity")
	}
	idt, err := v.Verify(t.Context(), token)
	if err != nil {
		t.Fatalf("the signed identity does not verify: %v", err)
	}
	var c jwtIdentity
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return idt, c
}

func TestSignedIdentityVerifiesWithTheKeySet(t *testing.T) {
	s := newStand(t, signing("", jwtKey(t)), nil)
	c := s.SignIn("/")
	token := s.LastSeen().Header.Get(assertionHeader)
	idt, claims := verifyAssertion(t, appVerifier(s.URL, s.URL, s.URL, nil), token)
	if idt.Subject != s.Alice.Subject() || claims.User != "alice" || claims.Email != "alice@example.com" ||
		claims.Name != "Alice Liddell" || len(claims.Groups) != 2 || claims.Groups[0] != "admins" {
		t.Errorf("sub %q, claims %+v", idt.Subject, claims)
	}
	if d := idt.Expiry.Sub(idt.IssuedAt); d != 5*time.Minute {
		t.Errorf("lifetime %s", d)
	}
	// The same session reuses its token: signing is not per request.
	do(t, c, mustReq(http.MethodGet, s.URL+"/again"))
	if again := s.LastSeen().Header.Get(assertionHeader); again != token {
		t.Errorf("a second request got a new token")
	}
	resp, body := do(t, http.DefaultClient, mustReq(http.MethodGet, s.URL+"/oauth2/jwks.json"))
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, max-age=300" || strings.Contains(body, `"d"`) {
		t.Errorf("jwks: %d %q %s", resp.StatusCode, resp.Header.Get("Cache-Control"), body)
	}
	// Forward-auth answers with it too.
	req := httptest.NewRequest(http.MethodGet, "/oauth2/auth", nil)
	req.Header.Set("Cookie", cookieHeader(c, s.URL))
	rec := httptest.NewRecorder()
	s.Proxy.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("forward-auth: %d", rec.Code)
	}
	verifyAssertion(t, appVerifier(s.URL, s.URL, s.URL, nil), rec.Header().Get(assertionHeader))
}

// TestSignedIdentityKeyRotation: keys [new, old] sign with new and still
// publish old, so tokens of the replicas not yet rotated verify.
func TestSignedIdentityKeyRotation(t *testing.T) {
	oldKey, newKey := jwtKey(t), jwtKey(t)
	s := newStand(t, signing("", oldKey), nil)
	c := s.SignIn("/")
	oldToken := s.LastSeen().Header.Get(assertionHeader)
	rotated := replicaOf(s, signing(s.URL, newKey, oldKey))
	v := appVerifier(rotated, s.URL, s.URL, nil)
	verifyAssertion(t, v, oldToken)
	get(t, rotated, "/x", cookieHeader(c, s.URL))
	newToken := s.LastSeen().Header.Get(assertionHeader)
	if newToken == oldToken {
		t.Fatal("the rotated replica sent the old token")
	}
	verifyAssertion(t, v, newToken)
	// The old key set alone does not know the new key.
	if _, err := appVerifier(s.URL, s.URL, s.URL, nil).Verify(t.Context(), newToken); err == nil {
		t.Error("a token of the new key verified against the old key set")
	}
}

// TestSignedIdentityAudience: a token made for one application is refused
// by another's verifier.
func TestSignedIdentityAudience(t *testing.T) {
	s := newStand(t, signing("https://grafana.example.com", jwtKey(t)), nil)
	s.SignIn("/")
	token := s.LastSeen().Header.Get(assertionHeader)
	verifyAssertion(t, appVerifier(s.URL, s.URL, "https://grafana.example.com", nil), token)
	if _, err := appVerifier(s.URL, s.URL, "https://memos.example.com", nil).Verify(t.Context(), token); err == nil {
		t.Error("another application's verifier accepted the token")
	}
}

// TestSignedIdentityNeverFromClients: a client-sent copy of the header, in
// any spelling, never reaches the upstream: signed in or not, public path
// or not, the feature on or off.
func TestSignedIdentityNeverFromClients(t *testing.T) {
	for _, on := range []bool{true, false} {
		edit := func(c *config.Config) { c.PublicPaths = []string{"/explore"} }
		if on {
			key := jwtKey(t)
			edit = func(c *config.Config) { c.PublicPaths = []string{"/explore"}; signing("", key)(c) }
		}
		s := newStand(t, edit, nil)
		c := s.SignIn("/")
		for _, cookie := range []string{cookieHeader(c, s.URL), ""} {
			for _, path := range []string{"/private", "/explore"} {
				for _, name := range []string{"X-Oidc-Proxy-Assertion", "x-oidc-proxy-assertion", "X_Oidc_Proxy_Assertion", "X.Oidc.Proxy.Assertion"} {
					req := mustReq(http.MethodGet, s.URL+path)
					req.Header[name] = []string{"forged"}
					if cookie != "" {
						req.Header.Set("Cookie", cookie)
					}
					before := s.SeenCount()
					do(t, noRedirect(http.DefaultClient), req)
					if s.SeenCount() == before {
						continue // not forwarded at all
					}
					for k, v := range s.LastSeen().Header {
						if strings.Contains(strings.Join(v, ","), "forged") {
							t.Errorf("on=%v, %s %s with cookie=%v: the upstream got %s: %v", on, name, path, cookie != "", k, v)
						}
					}
					got := s.LastSeen().Header.Get(assertionHeader)
					if wantToken := on && cookie != ""; (got != "") != wantToken { // a signed-in user is one on public paths too
						t.Errorf("on=%v, %s with cookie=%v: token %q", on, path, cookie != "", got)
					}
				}
			}
		}
	}
}

// TestSignedIdentityAfterRefresh: a refreshed session gets a new token
// with the new claims.
func TestSignedIdentityAfterRefresh(t *testing.T) {
	s := newStand(t, func(c *config.Config) {
		c.OIDC.Scopes = []string{"openid", "profile", "email", "groups", "offline_access"}
		signing("", jwtKey(t))(c)
	}, nil)
	c := s.SignIn("/")
	first := s.LastSeen().Header.Get(assertionHeader)
	s.Alice.Name = "Alice Renamed"
	s.Skew.Store(int64(4*time.Minute + 30*time.Second))
	do(t, c, mustReq(http.MethodGet, s.URL+"/x"))
	renewed := s.LastSeen().Header.Get(assertionHeader)
	if renewed == first {
		t.Fatal("the refreshed session kept its token")
	}
	skewed := func() time.Time { return time.Now().Add(time.Duration(s.Skew.Load())) }
	_, claims := verifyAssertion(t, appVerifier(s.URL, s.URL, s.URL, skewed), renewed)
	if claims.Name != "Alice Renamed" {
		t.Errorf("the renewed token names %q", claims.Name)
	}
}

// TestSignedIdentityWithTheMemosBridge: the bridge signs into Memos as
// before while the upstream also gets the signed identity.
func TestSignedIdentityWithTheMemosBridge(t *testing.T) {
	key := jwtKey(t)
	s, _, _ := bridgeStand(t, func(c *config.Config) { signing("", key)(c) })
	c := s.Browser()
	resp, _ := navigate(t, c, s.URL+"/")
	if resp, _ = login(t, c, resp, "alice", alicePassword); resp.StatusCode != 200 {
		t.Fatalf("sign-in through the bridge: %d", resp.StatusCode)
	}
	verifyAssertion(t, appVerifier(s.URL, s.URL, s.URL, nil), s.LastSeen().Header.Get(assertionHeader))
	if user, _ := memosWhoAmI(t, c, s.URL); user != "alice" {
		t.Errorf("signed into Memos as %q, want alice", user)
	}
}
