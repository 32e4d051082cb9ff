package assertion_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/oidc-proxy/oidc-proxy/proxy/assertion"
)

func mustB64(t *testing.T, s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An application behind the proxy verifies the signed identity with the
// proxy's key set: the signature (ES256 or EdDSA only), the issuer (the
// proxy's external URL), the audience (the application's origin), and
// the expiry and not-before times. Here the proxy side signs a token and
// the application side checks it.
func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	keyFile := filepath.Join(dir, "jwt-key.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)

	// The proxy: identity_jwt.key_files: [jwt-key.pem].
	signer, _ := assertion.LoadKeys(assertion.ES256, []string{keyFile})
	jwks := httptest.NewServer(signer) // the proxy serves it at /oauth2/jwks.json
	defer jwks.Close()
	token, _ := signer.Sign("https://memos.example.com", "https://memos.example.com", "0b9ebd43", time.Now(), 5*time.Minute,
		assertion.Claims{"preferred_username": "alice"})

	// The application: trust only the proxy's keys, its issuer, and tokens
	// made for this application.
	keys := oidc.NewRemoteKeySet(context.Background(), jwks.URL)
	verifier := oidc.NewVerifier("https://memos.example.com", keys, &oidc.Config{
		ClientID:             "https://memos.example.com",
		SupportedSigningAlgs: []string{oidc.ES256, oidc.EdDSA},
	})
	idt, err := verifier.Verify(context.Background(), token)
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	var c struct {
		User string `json:"preferred_username"`
	}
	idt.Claims(&c)
	fmt.Println(idt.Subject, c.User)
	// Output: 0b9ebd43 alice
}
