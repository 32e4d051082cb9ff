package assertion_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/oidc-proxy/oidc-proxy/proxy/assertion"
)

// pemFile writes blocks to a file in dir and returns its path.
func pemFile(t *testing.T, blocks ...*pem.Block) string {
	t.Helper()
	var b strings.Builder
	for _, bl := range blocks {
		b.Write(pem.EncodeToMemory(bl))
	}
	f := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func pkcs8(t *testing.T, k any) *pem.Block {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
}

func public(t *testing.T, k any) *pem.Block {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return &pem.Block{Type: "PUBLIC KEY", Bytes: der}
}

func ecKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// P256File is a fresh P-256 key in a PKCS #8 PEM file.
func p256File(t *testing.T) string { return pemFile(t, pkcs8(t, ecKey(t, elliptic.P256()))) }

func TestLoadKeysRefusesWhatCannotSign(t *testing.T) {
	p256 := ecKey(t, elliptic.P256())
	other := ecKey(t, elliptic.P256())
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	sec1, _ := x509.MarshalECPrivateKey(p256)
	same := pemFile(t, pkcs8(t, p256))
	tests := []struct {
		name  string
		alg   string
		files []string
		want  string
	}{
		{"missing file", "ES256", []string{filepath.Join(t.TempDir(), "nope.pem")}, "no such file"},
		{"empty file", "ES256", []string{pemFile(t)}, "no PEM private key"},
		{"not PEM", "ES256", []string{func() string {
			f := filepath.Join(t.TempDir(), "k")
			os.WriteFile(f, []byte("hello"), 0o600)
			return f
		}()}, "no PEM private key"},
		{"RSA (weak for this, and not ES256)", "ES256", []string{pemFile(t, pkcs8(t, rsaKey))}, "does not fit ES256"},
		{"P-384 for ES256", "ES256", []string{pemFile(t, pkcs8(t, ecKey(t, elliptic.P384())))}, "ES256 needs P-256"},
		{"P-224", "ES256", []string{pemFile(t, pkcs8(t, ecKey(t, elliptic.P224())))}, "ES256 needs P-256"},
		{"Ed25519 for ES256", "ES256", []string{pemFile(t, pkcs8(t, ed))}, "set algorithm: EdDSA"},
		{"P-256 for EdDSA", "EdDSA", []string{pemFile(t, pkcs8(t, p256))}, "does not fit EdDSA"},
		{"a public key only", "ES256", []string{pemFile(t, public(t, &p256.PublicKey))}, "no PEM private key"},
		{"a mismatched public key beside it", "ES256", []string{pemFile(t, pkcs8(t, p256), public(t, &other.PublicKey))}, "does not match"},
		{"two private keys", "ES256", []string{pemFile(t, pkcs8(t, p256), pkcs8(t, other))}, "more than one private key"},
		{"a certificate", "ES256", []string{pemFile(t, &pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})}, "not a signing key"},
		{"an encrypted key", "ES256", []string{pemFile(t, &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})}, "not a signing key"},
		{"garbage in a key block", "ES256", []string{pemFile(t, &pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})}, "asn1"},
		{"the same key twice", "ES256", []string{same, pemFile(t, &pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})}, "the same key"},
		{"HMAC", "HS256", []string{same}, "use ES256 or EdDSA"},
		{"none", "none", []string{same}, "use ES256 or EdDSA"},
		{"no file", "ES256", nil, "no key file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := assertion.LoadKeys(tt.alg, tt.files)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestLoadKeysTakesWhatOpenSSLWrites(t *testing.T) {
	p256 := ecKey(t, elliptic.P256())
	sec1, _ := x509.MarshalECPrivateKey(p256)
	params := &pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for name, tt := range map[string]struct {
		alg  string
		file string
	}{
		"openssl genpkey (PKCS #8)":          {"ES256", pemFile(t, pkcs8(t, p256))},
		"openssl ecparam -genkey (SEC 1)":    {"ES256", pemFile(t, params, &pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})},
		"with its own public key":            {"ES256", pemFile(t, pkcs8(t, p256), public(t, &p256.PublicKey))},
		"openssl genpkey -algorithm ed25519": {"EdDSA", pemFile(t, pkcs8(t, ed))},
	} {
		if _, err := assertion.LoadKeys(tt.alg, []string{tt.file}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestKeySetIsPublicOnly: the key set names every key with kid, alg and
// use, and never holds a private member.
func TestKeySetIsPublicOnly(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for alg, files := range map[string][]string{
		"ES256": {p256File(t), p256File(t)},
		"EdDSA": {pemFile(t, pkcs8(t, ed))},
	} {
		s, err := assertion.LoadKeys(alg, files)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", "/oauth2/jwks.json", nil))
		if cc := rec.Header().Get("Cache-Control"); cc != "public, max-age=300" {
			t.Errorf("Cache-Control %q", cc)
		}
		var set struct{ Keys []map[string]any }
		if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil || len(set.Keys) != len(files) {
			t.Fatalf("%s: %d keys, %v", rec.Body, len(set.Keys), err)
		}
		for i, k := range set.Keys {
			if k["kid"] != s.KeyIDs()[i] || k["alg"] != alg || k["use"] != "sig" {
				t.Errorf("key %d: %v", i, k)
			}
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
				if _, ok := k[private]; ok {
					t.Errorf("key %d publishes the private member %q", i, private)
				}
			}
		}
	}
}

// verifier is how an application checks the token, with go-oidc: the
// signature against the key set, iss, aud, exp and nbf.
func verifier(s *assertion.Signer, iss, aud string, now func() time.Time) *oidc.IDTokenVerifier {
	srv := httptest.NewServer(s)
	keys := oidc.NewRemoteKeySet(context.Background(), srv.URL)
	return oidc.NewVerifier(iss, keys, &oidc.Config{ClientID: aud, SupportedSigningAlgs: []string{"ES256", "EdDSA"}, Now: now})
}

// TestTheExampleVerifierRefuses: what the README tells an application to
// check, checked: a token past exp, one before nbf, one for another
// audience or issuer, one signed by a key not in the set.
func TestTheExampleVerifierRefuses(t *testing.T) {
	s, err := assertion.LoadKeys("ES256", []string{p256File(t)})
	if err != nil {
		t.Fatal(err)
	}
	rogue, _ := assertion.LoadKeys("ES256", []string{p256File(t)})
	now := time.Now()
	good, _ := s.Sign("https://proxy.example", "https://app.example", "user-1", now, 5*time.Minute, assertion.Claims{"preferred_username": "alice"})
	v := verifier(s, "https://proxy.example", "https://app.example", time.Now)
	if tok, err := v.Verify(t.Context(), good); err != nil || tok.Subject != "user-1" {
		t.Fatalf("a good token: %v", err)
	}
	expired, _ := s.Sign("https://proxy.example", "https://app.example", "user-1", now.Add(-time.Hour), 5*time.Minute, nil)
	future, _ := s.Sign("https://proxy.example", "https://app.example", "user-1", now.Add(time.Hour), 5*time.Minute, nil)
	otherAud, _ := s.Sign("https://proxy.example", "https://other.example", "user-1", now, 5*time.Minute, nil)
	otherIss, _ := s.Sign("https://evil.example", "https://app.example", "user-1", now, 5*time.Minute, nil)
	forged, _ := rogue.Sign("https://proxy.example", "https://app.example", "user-1", now, 5*time.Minute, nil)
	for name, tok := range map[string]string{
		"expired": expired, "nbf in the future": future, "another audience": otherAud,
		"another issuer": otherIss, "a key not in the set": forged, "not a JWT": "x.y.z",
		"alg none": strings.Join(strings.Split(good, ".")[:2], ".") + ".",
	} {
		if _, err := v.Verify(t.Context(), tok); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSignCarriesTheClaims(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	s, err := assertion.LoadKeys("EdDSA", []string{pemFile(t, pkcs8(t, ed))})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign("https://proxy.example", "https://app.example", "user-1", time.Now(), time.Minute,
		assertion.Claims{"email": "a@example.com", "groups": []string{"admins", "a,b"}})
	if err != nil {
		t.Fatal(err)
	}
	idt, err := verifier(s, "https://proxy.example", "https://app.example", time.Now).Verify(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Email  string   `json:"email"`
		Groups []string `json:"groups"`
		JTI    string   `json:"jti"`
		NBF    int64    `json:"nbf"`
	}
	idt.Claims(&c)
	if c.Email != "a@example.com" || len(c.Groups) != 2 || c.Groups[1] != "a,b" || c.JTI == "" || c.NBF == 0 {
		t.Errorf("claims %+v", c)
	}
	if h := strings.Split(tok, ".")[0]; !strings.Contains(string(mustB64(t, h)), `"kid":"`+s.KeyIDs()[0]+`"`) {
		t.Errorf("header names no kid")
	}
}

// BenchmarkSign is one ES256 signature: what the proxy spends once per
// session and half lifetime, not per request.
func BenchmarkSign(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	f := filepath.Join(b.TempDir(), "k.pem")
	os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	s, err := assertion.LoadKeys("ES256", []string{f})
	if err != nil {
		b.Fatal(err)
	}
	claims := assertion.Claims{"preferred_username": "alice", "email": "alice@example.com", "groups": []string{"admins", "users"}}
	b.ReportAllocs()
	for b.Loop() {
		s.Sign("https://memos.example.com", "https://memos.example.com", "0b9ebd43-3f2a-4d43-9a47-c3a6b04c9fa2", time.Now(), 5*time.Minute, claims)
	}
}
