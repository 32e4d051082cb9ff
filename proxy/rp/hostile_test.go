package rp_test

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy/rp"
)

// hostile is a hand-written provider that misbehaves in one way at a time.
type hostile struct {
	issuer string
	keys   map[string]*rsa.PrivateKey // published: "k1", "k2"
	rogue  *rsa.PrivateKey
	fault  fault
}

type fault struct {
	discoveryIssuer string
	jwksURI         string
	signer          string // "k1" (default), "k1-nokid", "rogue", "none", "hs"
	claims          func(c map[string]any)
	token           func(w http.ResponseWriter)
	userinfo        func(w http.ResponseWriter)
}

func newHostile(t *testing.T, f fault) *hostile {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	keys := testKeys()
	h := &hostile{issuer: "http://" + ln.Addr().String(), keys: map[string]*rsa.PrivateKey{"k1": keys[0], "k2": keys[1]}, rogue: keys[2], fault: f}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		iss, jwks := h.issuer, h.issuer+"/jwks"
		if f.discoveryIssuer != "" {
			iss = f.discoveryIssuer
		}
		if f.jwksURI != "" {
			jwks = f.jwksURI
		}
		writeJSON(w, map[string]any{"issuer": iss, "authorization_endpoint": h.issuer + "/authorize",
			"token_endpoint": h.issuer + "/token", "userinfo_endpoint": h.issuer + "/userinfo", "jwks_uri": jwks,
			"id_token_signing_alg_values_supported": []string{"RS256", "HS256", "none"}})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		var keys []map[string]string
		for kid, k := range h.keys {
			keys = append(keys, map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
				"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())})
		}
		writeJSON(w, map[string]any{"keys": keys})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		if f.token != nil {
			f.token(w)
			return
		}
		now := time.Now()
		c := map[string]any{"iss": h.issuer, "sub": "user-1", "aud": []string{"proxy"}, "azp": "proxy",
			"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nonce": "n", "sid": "sid-1"}
		if r.PostFormValue("grant_type") == "refresh_token" {
			delete(c, "nonce")
		}
		if f.claims != nil {
			f.claims(c)
		}
		writeJSON(w, map[string]any{"access_token": "at-1", "token_type": "Bearer", "expires_in": 300,
			"refresh_token": "rt-2", "id_token": h.sign(c)})
	})
	mux.HandleFunc("GET /userinfo", func(w http.ResponseWriter, r *http.Request) {
		if f.userinfo != nil {
			f.userinfo(w)
			return
		}
		writeJSON(w, map[string]any{"sub": "user-1", "preferred_username": "u1"})
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return h
}

// testKeys are three RSA keys, made once for every test.
var testKeys = sync.OnceValue(func() [3]*rsa.PrivateKey {
	var keys [3]*rsa.PrivateKey
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// sign makes a compact JWS of claims as the fault says.
func (h *hostile) sign(claims map[string]any) string {
	head := map[string]string{"alg": "RS256", "typ": "JWT", "kid": "k1"}
	key := h.keys["k1"]
	switch h.fault.signer {
	case "k1-nokid":
		delete(head, "kid")
	case "rogue":
		key = h.rogue
	case "none":
		head = map[string]string{"alg": "none"}
	case "hs":
		head["alg"] = "HS256"
	}
	hb, _ := json.Marshal(head)
	cb, _ := json.Marshal(claims)
	input := b64(hb) + "." + b64(cb)
	sum := sha256.Sum256([]byte(input))
	switch h.fault.signer {
	case "none":
		return input + "."
	case "hs":
		m := hmac.New(sha256.New, []byte(clientSecret))
		m.Write([]byte(input))
		return input + "." + b64(m.Sum(nil))
	}
	sig, _ := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	return input + "." + b64(sig)
}

func TestDiscoveryRefusesAHostileDocument(t *testing.T) {
	for name, f := range map[string]fault{
		"another issuer":     {discoveryIssuer: "https://evil.example"},
		"jwks_uri not http":  {jwksURI: "file:///etc/passwd"},
		"jwks_uri not a URL": {jwksURI: "jwks"},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHostile(t, f)
			if _, err := newClient(t, h.issuer, []string{"openid"}).Discover(t.Context()); err == nil {
				t.Fatal("discovery accepted")
			}
		})
	}
}

func TestRedeemRefusesHostileAnswers(t *testing.T) {
	longError := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": "SECRET-DETAIL " + strings.Repeat("x", 500)})
	}
	tests := []struct {
		name   string
		f      fault
		reason string
	}{
		{"token error", fault{token: longError}, "token_exchange"},
		{"no id_token", fault{token: func(w http.ResponseWriter) {
			writeJSON(w, map[string]any{"access_token": "a", "token_type": "Bearer"})
		}}, "no_id_token"},
		{"unpublished key", fault{signer: "rogue"}, "id_token_invalid"},
		{"alg none", fault{signer: "none"}, "id_token_invalid"},
		{"HMAC with the client secret", fault{signer: "hs"}, "id_token_invalid"},
		{"no kid, two keys", fault{signer: "k1-nokid"}, "id_token_invalid"},
		{"another audience", fault{claims: func(c map[string]any) { c["aud"] = []string{"other"} }}, "id_token_invalid"},
		{"another azp", fault{claims: func(c map[string]any) { c["aud"] = []string{"proxy", "other"}; c["azp"] = "other" }}, "id_token_invalid"},
		{"several audiences, no azp", fault{claims: func(c map[string]any) { c["aud"] = []string{"proxy", "other"}; delete(c, "azp") }}, "id_token_invalid"},
		{"expired", fault{claims: func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }}, "id_token_invalid"},
		{"iat in the future", fault{claims: func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() }}, "id_token_invalid"},
		{"another issuer", fault{claims: func(c map[string]any) { c["iss"] = "https://evil.example" }}, "id_token_invalid"},
		{"wrong nonce", fault{claims: func(c map[string]any) { c["nonce"] = "other" }}, "id_token_invalid"},
		{"no sub", fault{claims: func(c map[string]any) { delete(c, "sub") }}, "id_token_invalid"},
		{"wrong at_hash", fault{claims: func(c map[string]any) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" }}, "id_token_invalid"},
		{"userinfo of another user", fault{userinfo: func(w http.ResponseWriter) { writeJSON(w, map[string]any{"sub": "user-2"}) }}, "userinfo_subject"},
		{"userinfo without sub", fault{userinfo: func(w http.ResponseWriter) { writeJSON(w, map[string]any{"name": "x"}) }}, "userinfo_subject"},
		{"userinfo as HTML", fault{userinfo: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>"))
		}}, "userinfo"},
		{"userinfo over 1 MiB", fault{userinfo: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"sub":"user-1","x":"` + strings.Repeat("x", 1<<20) + `"}`))
		}}, "userinfo"},
		{"userinfo not an object", fault{userinfo: func(w http.ResponseWriter) { writeJSON(w, []string{"sub"}) }}, "userinfo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostile(t, tt.f)
			p, err := newClient(t, h.issuer, []string{"openid"}).Discover(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Redeem(t.Context(), "code-1", "n", "verifier-0123456789012345678901234567890123")
			var e *rp.Error
			if !errors.As(err, &e) || e.Reason != tt.reason {
				t.Fatalf("got %v, want reason %s", err, tt.reason)
			}
			if strings.Contains(err.Error(), "SECRET-DETAIL") {
				t.Errorf("the provider's description reached the error: %v", err)
			}
		})
	}
	t.Run("a correct provider", func(t *testing.T) {
		h := newHostile(t, fault{})
		p, err := newClient(t, h.issuer, []string{"openid"}).Discover(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		tok, err := p.Redeem(t.Context(), "code-1", "n", "verifier-0123456789012345678901234567890123")
		if err != nil || tok.Subject != "user-1" || tok.SID != "sid-1" || string(tok.Claims["preferred_username"]) != `"u1"` {
			t.Fatalf("%+v, %v", tok, err)
		}
	})
}

func TestRefreshRefusesHostileAnswers(t *testing.T) {
	for _, tt := range []struct {
		name    string
		f       fault
		refused bool
	}{
		{"invalid_grant", fault{token: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"invalid_grant"}`))
		}}, true},
		{"another subject", fault{claims: func(c map[string]any) { c["sub"] = "user-2" }}, true},
		{"userinfo of another user", fault{userinfo: func(w http.ResponseWriter) { writeJSON(w, map[string]any{"sub": "user-2"}) }}, true},
		{"provider down", fault{token: func(w http.ResponseWriter) { http.Error(w, "down", http.StatusServiceUnavailable) }}, false},
		{"unpublished key", fault{signer: "rogue"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostile(t, tt.f)
			p, err := newClient(t, h.issuer, []string{"openid"}).Discover(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Refresh(t.Context(), "rt-1", "user-1")
			if err == nil {
				t.Fatal("refresh accepted")
			}
			if errors.Is(err, rp.ErrRefused) != tt.refused {
				t.Fatalf("%v: refused=%v, want %v", err, errors.Is(err, rp.ErrRefused), tt.refused)
			}
		})
	}
}

func TestVerifyLogout(t *testing.T) {
	h := newHostile(t, fault{})
	p, err := newClient(t, h.issuer, []string{"openid"}).Discover(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	token := func(edit func(c map[string]any)) string {
		c := map[string]any{"iss": h.issuer, "aud": "proxy", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(), "jti": "j1", "sub": "user-1", "sid": "s1",
			"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
		if edit != nil {
			edit(c)
		}
		return h.sign(c)
	}
	lt, err := p.VerifyLogout(t.Context(), token(nil))
	if err != nil || lt.JTI != "j1" || lt.Subject != "user-1" || lt.SID != "s1" {
		t.Fatalf("%+v, %v", lt, err)
	}
	for name, edit := range map[string]func(c map[string]any){
		"too old":        func(c map[string]any) { c["iat"] = time.Now().Add(-rp.MaxLogoutTokenAge - time.Minute).Unix() },
		"in the future":  func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() },
		"another azp":    func(c map[string]any) { c["azp"] = "other" },
		"another aud":    func(c map[string]any) { c["aud"] = "other" },
		"with a nonce":   func(c map[string]any) { c["nonce"] = "n" },
		"no events":      func(c map[string]any) { delete(c, "events") },
		"no sub, no sid": func(c map[string]any) { delete(c, "sub"); delete(c, "sid") },
	} {
		if _, err := p.VerifyLogout(t.Context(), token(edit)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
