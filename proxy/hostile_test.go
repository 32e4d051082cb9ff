package proxy_test

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
)

// hostileOP is a hand-written OpenID Provider that can be told to misbehave
// in one way at a time. Its authorization endpoint answers at once (no
// login form) with a code for its one user, "user-1".
type hostileOP struct {
	t      *testing.T
	issuer string
	keys   map[string]*rsa.PrivateKey // published in the JWKS: "k1", "k2"
	rogue  *rsa.PrivateKey            // not published
	b      behaviour

	mu     sync.Mutex
	nonces []string // of every authorization request, in order
	tokens int
	// jwksFetches counts requests for the key set.
	jwksFetches atomic.Int64
}

// behaviour says how the hostile OP misbehaves; the zero value is a
// correct provider.
type behaviour struct {
	discoveryIssuer string                               // issuer in discovery, if not the real one
	claims          func(o *hostileOP, c map[string]any) // edits the ID token's claims
	signer          string                               // "k1" (default), "k1-nokid", "k2", "rogue", "none", "hs-secret", "hs-pubkey"
	token           func(w http.ResponseWriter)          // answers the token endpoint instead
	tokenDelay      time.Duration                        // before answering the token endpoint
	userinfo        func(w http.ResponseWriter)          // answers the userinfo endpoint instead
	userinfoClaims  func(o *hostileOP, c map[string]any) // edits the userinfo claims
	callback        func(q url.Values, o *hostileOP)     // edits the redirect back to the proxy
}

func newHostileOP(t *testing.T, b behaviour) (*hostileOP, string) {
	ln := listen(t)
	o := &hostileOP{t: t, issuer: "http://" + ln.Addr().String(), b: b, keys: map[string]*rsa.PrivateKey{}}
	for _, k := range []string{"k1", "k2"} {
		o.keys[k] = mustRSA(t)
	}
	o.rogue = mustRSA(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", o.discovery)
	mux.HandleFunc("GET /jwks", o.jwks)
	mux.HandleFunc("GET /authorize", o.authorize)
	mux.HandleFunc("POST /token", o.token)
	mux.HandleFunc("GET /userinfo", o.userinfo)
	serveOn(t, ln, mux)
	return o, o.issuer
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeJSONBody(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (o *hostileOP) discovery(w http.ResponseWriter, r *http.Request) {
	iss := o.issuer
	if o.b.discoveryIssuer != "" {
		iss = o.b.discoveryIssuer
	}
	writeJSONBody(w, map[string]any{
		"issuer":                 iss,
		"authorization_endpoint": o.issuer + "/authorize",
		"token_endpoint":         o.issuer + "/token",
		"userinfo_endpoint":      o.issuer + "/userinfo",
		"jwks_uri":               o.issuer + "/jwks",
		// A hostile provider may list weak algorithms; the proxy must not
		// accept them for that.
		"id_token_signing_alg_values_supported":          []string{"RS256", "HS256", "none"},
		"response_types_supported":                       []string{"code"},
		"subject_types_supported":                        []string{"public"},
		"authorization_response_iss_parameter_supported": true,
	})
}

func (o *hostileOP) jwks(w http.ResponseWriter, r *http.Request) {
	o.jwksFetches.Add(1)
	var keys []map[string]string
	for kid, k := range o.keys {
		keys = append(keys, map[string]string{
			"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
			"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes()),
		})
	}
	writeJSONBody(w, map[string]any{"keys": keys})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (o *hostileOP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	o.mu.Lock()
	o.nonces = append(o.nonces, q.Get("nonce"))
	o.mu.Unlock()
	back := url.Values{"code": {"code-" + q.Get("state")[:8]}, "state": {q.Get("state")}, "iss": {o.issuer}}
	if o.b.callback != nil {
		o.b.callback(back, o)
	}
	http.Redirect(w, r, q.Get("redirect_uri")+"?"+back.Encode(), http.StatusFound)
}

func (o *hostileOP) lastNonce() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.nonces[len(o.nonces)-1]
}

func (o *hostileOP) token(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.tokens++
	o.mu.Unlock()
	if o.b.tokenDelay > 0 {
		select {
		case <-time.After(o.b.tokenDelay):
		case <-r.Context().Done():
			return
		}
	}
	if r.PostFormValue("client_secret") != clientSecret || r.PostFormValue("code_verifier") == "" {
		w.WriteHeader(http.StatusUnauthorized)
		writeJSONBody(w, map[string]string{"error": "invalid_client"})
		return
	}
	if o.b.token != nil {
		o.b.token(w)
		return
	}
	now := time.Now()
	claims := map[string]any{
		"iss": o.issuer, "sub": "user-1", "aud": []string{"memos"}, "azp": "memos",
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "nonce": o.lastNonce(),
	}
	if o.b.claims != nil {
		o.b.claims(o, claims)
	}
	writeJSONBody(w, map[string]any{
		"access_token": "opaque-access-token", "token_type": "bearer", "expires_in": 300,
		"id_token": o.sign(claims),
	})
}

// sign makes a compact JWS of claims the way the behaviour says.
func (o *hostileOP) sign(claims map[string]any) string {
	signer := o.b.signer
	if signer == "" {
		signer = "k1"
	}
	header := map[string]any{"alg": "RS256", "typ": "JWT", "kid": signer}
	switch signer {
	case "k1-nokid":
		delete(header, "kid")
	case "rogue":
		header["kid"] = "k1" // claims to be k1, signed with another key
	case "none", "hs-secret", "hs-pubkey":
		header["alg"] = map[string]string{"none": "none"}[signer]
		if signer != "none" {
			header["alg"] = "HS256"
		}
		header["kid"] = "k1"
	}
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := b64(h) + "." + b64(c)
	var sig []byte
	switch signer {
	case "none":
	case "hs-secret", "hs-pubkey":
		key := []byte(clientSecret)
		if signer == "hs-pubkey" {
			key, _ = x509.MarshalPKIXPublicKey(&o.keys["k1"].PublicKey)
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	default:
		key := o.rogue
		switch signer {
		case "k1", "k1-nokid":
			key = o.keys["k1"]
		case "k2":
			key = o.keys["k2"]
		}
		sum := sha256.Sum256([]byte(input))
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:]); err != nil {
			o.t.Error(err)
		}
	}
	return input + "." + b64(sig)
}

func (o *hostileOP) userinfo(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer opaque-access-token" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if o.b.userinfo != nil {
		o.b.userinfo(w)
		return
	}
	c := map[string]any{"sub": "user-1", "preferred_username": "mallory", "name": "Mallory", "email": "m@example.com", "groups": []string{"users"}}
	if o.b.userinfoClaims != nil {
		o.b.userinfoClaims(o, c)
	}
	writeJSONBody(w, c)
}

// hostileStand puts the proxy in front of a hostile OP; edit, if not nil,
// changes the proxy's configuration.
func hostileStand(t *testing.T, b behaviour, edit ...func(*config.Config)) (*stand, *hostileOP) {
	op, issuer := newHostileOP(t, b)
	s := &stand{T: t, Logs: &syncBuffer{}}
	s.StartProxy(listen(t), issuer, func(c *config.Config) {
		c.OIDC.Timeout = time.Second
		for _, e := range edit {
			e(c)
		}
	})
	return s, op
}

func TestHostileProviderRefused(t *testing.T) {
	tests := []struct {
		name   string
		b      behaviour
		reason string
	}{
		{"signed with a key not in the JWKS", behaviour{signer: "rogue"}, "id_token_invalid"},
		{"alg none", behaviour{signer: "none"}, "id_token_invalid"},
		{"HS256 with the client secret", behaviour{signer: "hs-secret"}, "id_token_invalid"},
		{"HS256 with the public key's bytes", behaviour{signer: "hs-pubkey"}, "id_token_invalid"},
		{"no kid while the JWKS has several keys", behaviour{signer: "k1-nokid"}, "id_token_invalid"},
		{"iss of another issuer", behaviour{claims: func(_ *hostileOP, c map[string]any) { c["iss"] = "https://evil.example.com" }}, "id_token_invalid"},
		{"aud without the client", behaviour{claims: func(_ *hostileOP, c map[string]any) { c["aud"] = []string{"other"} }}, "id_token_invalid"},
		{"several audiences, no azp", behaviour{claims: func(_ *hostileOP, c map[string]any) {
			c["aud"] = []string{"memos", "other"}
			delete(c, "azp")
		}}, "id_token_invalid"},
		{"several audiences, wrong azp", behaviour{claims: func(_ *hostileOP, c map[string]any) {
			c["aud"] = []string{"memos", "other"}
			c["azp"] = "other"
		}}, "id_token_invalid"},
		{"azp of another client", behaviour{claims: func(_ *hostileOP, c map[string]any) { c["azp"] = "other" }}, "id_token_invalid"},
		{"expired", behaviour{claims: func(_ *hostileOP, c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }}, "id_token_invalid"},
		{"iat far in the future", behaviour{claims: func(_ *hostileOP, c map[string]any) {
			c["iat"] = time.Now().Add(time.Hour).Unix()
			c["exp"] = time.Now().Add(2 * time.Hour).Unix()
		}}, "id_token_invalid"},
		{"no sub", behaviour{claims: func(_ *hostileOP, c map[string]any) { delete(c, "sub") }}, "id_token_invalid"},
		{"nonce missing", behaviour{claims: func(_ *hostileOP, c map[string]any) { delete(c, "nonce") }}, "id_token_invalid"},
		{"nonce wrong", behaviour{claims: func(_ *hostileOP, c map[string]any) { c["nonce"] = "not-the-nonce" }}, "id_token_invalid"},
		{"nonce replayed from an earlier flow", behaviour{claims: func(o *hostileOP, c map[string]any) {
			o.mu.Lock()
			defer o.mu.Unlock()
			c["nonce"] = o.nonces[0]
		}}, "id_token_invalid"},
		{"callback iss of another issuer", behaviour{callback: func(q url.Values, _ *hostileOP) { q.Set("iss", "https://evil.example.com") }}, "iss_mismatch"},
		{"callback iss missing", behaviour{callback: func(q url.Values, _ *hostileOP) { q.Del("iss") }}, "iss_missing"},
		{"error callback from another issuer", behaviour{callback: func(q url.Values, _ *hostileOP) {
			q.Del("code")
			q.Set("error", "access_denied")
			q.Set("iss", "https://evil.example.com")
		}}, "iss_mismatch"},
		{"callback iss repeated", behaviour{callback: func(q url.Values, o *hostileOP) { q.Add("iss", o.issuer) }}, "iss_mismatch"},
		{"userinfo sub differs", behaviour{userinfoClaims: func(_ *hostileOP, c map[string]any) { c["sub"] = "admin" }}, "userinfo_subject"},
		{"userinfo without sub", behaviour{userinfoClaims: func(_ *hostileOP, c map[string]any) { delete(c, "sub") }}, "userinfo_subject"},
		{"userinfo not JSON", behaviour{userinfo: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>login</html>"))
		}}, "userinfo"},
		{"userinfo huge", behaviour{userinfo: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"sub":"user-1","pad":"` + strings.Repeat("x", 3<<20) + `"}`))
		}}, "userinfo"},
		{"userinfo 500", behaviour{userinfo: func(w http.ResponseWriter) { w.WriteHeader(500) }}, "userinfo"},
		{"token endpoint 500", behaviour{token: func(w http.ResponseWriter) { w.WriteHeader(500) }}, "token_exchange"},
		{"token endpoint HTML", behaviour{token: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html><body>Sign in</body></html>"))
		}}, "token_exchange"},
		{"token endpoint huge", behaviour{token: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":"` + strings.Repeat("x", 3<<20) + `"}`))
		}}, "token_exchange"},
		{"empty id_token", behaviour{token: func(w http.ResponseWriter) {
			writeJSONBody(w, map[string]any{"access_token": "opaque-access-token", "token_type": "bearer", "id_token": ""})
		}}, "no_id_token"},
		{"no id_token", behaviour{token: func(w http.ResponseWriter) {
			writeJSONBody(w, map[string]any{"access_token": "opaque-access-token", "token_type": "bearer"})
		}}, "no_id_token"},
		{"id_token not a JWT", behaviour{token: func(w http.ResponseWriter) {
			writeJSONBody(w, map[string]any{"access_token": "opaque-access-token", "token_type": "bearer", "id_token": "a.b"})
		}}, "id_token_invalid"},
		{"token endpoint slower than the timeout", behaviour{tokenDelay: 3 * time.Second}, "token_exchange"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, op := hostileStand(t, tt.b)
			s.WaitReady()
			if strings.Contains(tt.name, "earlier flow") {
				// A first flow, whose nonce the provider then replays.
				navigate(t, s.Browser(), s.URL+"/")
				s.Seen.Reset()
			}
			c := s.Browser()
			resp, body := navigate(t, c, s.URL+"/private")
			if resp.StatusCode < 400 || !strings.Contains(body, "Sign-in failed") {
				t.Errorf("sign-in not refused: %d at %s: %.200s", resp.StatusCode, resp.Request.URL, body)
			}
			if n := len(sessionCookies(c, s.URL)); n != 0 {
				t.Errorf("%d session cookie(s) issued", n)
			}
			if n := s.SeenCount(); n != 0 {
				t.Errorf("the upstream received %d request(s)", n)
			}
			if !strings.Contains(s.Logs.String(), "reason="+tt.reason) {
				t.Errorf("the log does not give reason=%s:\n%s", tt.reason, s.Logs.String())
			}
			for _, secret := range []string{clientSecret, "opaque-access-token"} {
				if strings.Contains(s.Logs.String(), secret) || strings.Contains(body, secret) {
					t.Errorf("%q leaked to the log or the page", secret)
				}
			}
			_ = op
		})
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	s, _ := hostileStand(t, behaviour{discoveryIssuer: "https://evil.example.com"})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.Logs.String(), "oidc discovery failed") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(s.Logs.String(), "did not match") {
		t.Errorf("log:\n%s", s.Logs.String())
	}
	if s.Proxy.Ready() {
		t.Fatal("ready with a mismatched discovery issuer")
	}
	resp, _ := navigate(t, s.Browser(), s.URL+"/")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("sign-in: %d", resp.StatusCode)
	}
}

// TestUnusableClaims: a claim the identity needs (a header maps it, the
// access rules or the signed identity read it) that the provider sent in
// a form the proxy cannot use refuses the sign-in with a page that says
// so, and a log line that names the claim and why, never its value;
// nothing reaches the upstream. One case per kind.
func TestUnusableClaims(t *testing.T) {
	headers := map[string]string{"Remote-User": "preferred_username", "Remote-Email": "email", "Remote-Name": "name",
		"Remote-Groups": "groups", "X-Department": "department"}
	tests := []struct {
		name, claim string
		value       any
	}{
		{"email as a number", "email", 12345},
		{"username as a list", "preferred_username", []any{"mallory", 7}},
		{"name with CR LF", "name", "Eve\r\nRemote-User: admin"},
		{"name with a NUL", "name", "Eve\x00"},
		{"name over 16 KiB", "name", strings.Repeat("e", 17<<10)},
		{"name as an object", "name", map[string]any{"first": "Eve"}},
		{"groups as an object", "groups", map[string]any{"admins": true}},
		{"groups holding a number", "groups", []any{"admins", 7}},
		{"groups holding a control character", "groups", []any{"admins\n"}},
		{"a mapped custom claim as an object", "department", map[string]any{"a": 1}},
		{"a mapped custom claim as a nested list", "department", []any{[]any{"a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := hostileStand(t, behaviour{userinfoClaims: func(_ *hostileOP, c map[string]any) { c[tt.claim] = tt.value }},
				func(c *config.Config) { c.Headers = headers })
			s.WaitReady()
			resp, body := navigate(t, s.Browser(), s.URL+"/")
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "an identity the proxy cannot use") || s.SeenCount() != 0 {
				t.Fatalf("%d, upstream reached %v: %s", resp.StatusCode, s.SeenCount() != 0, body)
			}
			logs := s.Logs.String()
			if !strings.Contains(logs, "claim="+tt.claim) || !strings.Contains(logs, "reason=unusable_claim") && !strings.Contains(logs, "sign-in refused") {
				t.Errorf("the log does not name the claim:\n%s", logs)
			}
			if strings.Contains(logs, "Eve") || strings.Contains(logs, "mallory") {
				t.Errorf("the log holds the claim's value")
			}
		})
	}
}

// TestOddClaimsThatPass: a claim nothing uses is ignored whatever its
// type; a mapped custom claim follows the flattening rules (numbers and
// booleans as JSON writes them, lists joined).
func TestOddClaimsThatPass(t *testing.T) {
	s, _ := hostileStand(t, behaviour{userinfoClaims: func(_ *hostileOP, c map[string]any) {
		c["website"] = 42                             // standard, a string by 5.1, but unused
		c["address"] = "not an object"                // unused
		c["department"] = []any{"r&d", 7, true}       // mapped, custom
		c["unused"] = map[string]any{"deep": []any{}} // unused
	}}, func(c *config.Config) {
		c.Headers = map[string]string{"Remote-User": "preferred_username", "X-Department": "department"}
	})
	s.WaitReady()
	resp, body := navigate(t, s.Browser(), s.URL+"/")
	if resp.StatusCode != 200 {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	if got := s.LastSeen().Header.Get("X-Department"); got != "r&d,7,true" {
		t.Errorf("X-Department = %q", got)
	}
}

// TestRefreshWithAnUnusableClaimEndsTheSession: a refresh that brings a
// claim the identity needs in an unusable form ends the session, as a new
// sign-in would be refused.
func TestRefreshWithAnUnusableClaimEndsTheSession(t *testing.T) {
	s := newStand(t, func(c *cfg) {
		c.OIDC.Scopes = []string{"openid", "profile", "email", "groups", "offline_access"}
		c.Headers = map[string]string{"Remote-User": "preferred_username", "X-Department": "department"}
	}, nil)
	s.Alice.ExtraClaims = map[string]any{"department": "research"}
	c := s.SignIn("/")
	if got := s.LastSeen().Header.Get("X-Department"); got != "research" {
		t.Fatalf("X-Department = %q", got)
	}
	s.Alice.ExtraClaims = map[string]any{"department": map[string]any{"evil": true}}
	s.Skew.Store(int64(4*time.Minute + 30*time.Second))
	before := s.SeenCount()
	req := mustReq(http.MethodGet, s.URL+"/x")
	req.Header.Set("Accept", "application/json")
	resp, _ := do(t, noRedirect(c), req)
	if resp.StatusCode != http.StatusUnauthorized || s.SeenCount() != before {
		t.Errorf("after the refresh: %d, upstream reached %v", resp.StatusCode, s.SeenCount() != before)
	}
	if !strings.Contains(s.Logs.String(), "refresh refused: session ended") || !strings.Contains(s.Logs.String(), "claim department") {
		t.Errorf("no log of the ended session")
	}
}

func TestStringGroupsClaim(t *testing.T) {
	s, _ := hostileStand(t, behaviour{userinfoClaims: func(_ *hostileOP, c map[string]any) { c["groups"] = "admins" }})
	s.WaitReady()
	if resp, _ := navigate(t, s.Browser(), s.URL+"/"); resp.StatusCode != 200 {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	if got := s.LastSeen().Header.Get("Remote-Groups"); got != "admins" {
		t.Errorf("Remote-Groups = %q", got)
	}
}
