// Package examples_test runs the examples' configurations with the programs
// that read them: the real Authelia 4.39.20 (AUTHELIA_BIN, from
// ../shared/peers) validates and starts what the examples give it.
package examples_test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/proxy/authelia"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// TestAutheliaAcceptsEveryClientBlock: each client block the examples give
// to paste into Authelia's configuration, with the digest placeholder
// filled in as its comment says, is accepted by `authelia validate-config`
// on top of a configuration Authelia starts with.
func TestAutheliaAcceptsEveryClientBlock(t *testing.T) {
	bin := proxytest.Bin(t, "AUTHELIA_BIN")
	blocks, _ := filepath.Glob("*/authelia-client.yml")
	if len(blocks) < 2 {
		t.Fatalf("client blocks found: %v", blocks)
	}
	base := proxytest.WriteAuthelia(t, proxytest.AutheliaOptions{
		Users: []proxytest.AutheliaUser{{Name: "alice", Password: "alice-password", Email: "alice@example.test"}},
	})
	digest, err := authelia.Digest("a-client-secret-of-72-characters-or-so-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range blocks {
		t.Run(block, func(t *testing.T) {
			text, err := os.ReadFile(block)
			if err != nil {
				t.Fatal(err)
			}
			filled := strings.ReplaceAll(string(text), "$pbkdf2-sha512$310000$REPLACE_WITH_YOUR_DIGEST", digest)
			if filled == string(text) {
				t.Fatal("the block has no digest placeholder to fill in")
			}
			path := filepath.Join(t.TempDir(), "client.yml")
			os.WriteFile(path, []byte(filled), 0o600)
			if out, ok := validate(bin, base.Config, path); !ok {
				t.Errorf("authelia validate-config refused %s:\n%s", block, out)
			}
		})
	}
}

// validate runs `authelia validate-config` on files: its output, and
// whether it found no error (warnings are not errors).
func validate(bin string, files ...string) (string, bool) {
	args := []string{"validate-config"}
	for _, f := range files {
		args = append(args, "--config", f)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = proxytest.AutheliaEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err == nil && !strings.Contains(string(out), "with errors")
}

// TestValidateCanRefuse: the check above can fail (a client block
// with a mistake is refused).
func TestValidateCanRefuse(t *testing.T) {
	bin := proxytest.Bin(t, "AUTHELIA_BIN")
	base := proxytest.WriteAuthelia(t, proxytest.AutheliaOptions{})
	path := filepath.Join(t.TempDir(), "client.yml")
	os.WriteFile(path, []byte("identity_providers:\n  oidc:\n    clients:\n      - client_id: 'x'\n        client_secret: 'not-a-digest'\n        redirect_uris: ['https://x.example.test/cb']\n        token_endpoint_auth_method: 'client_secret_nonsense'\n"), 0o600)
	if out, ok := validate(bin, base.Config, path); ok {
		t.Errorf("a broken client block passed:\n%s", out)
	}
}

// TestComposeAutheliaStarts: Authelia as examples/memos-authelia/compose.yaml
// runs it. The authelia-secrets service's own script makes the secrets
// into its volume (with the client secret written as the compose file's
// header says); then Authelia starts with the service's environment and
// every mount at the path the compose file names (the example's
// configuration and users at /config, its secrets, its data volume), in a
// root of its own. Only the listen address and TLS (Caddy's part in the
// stack) are the test's. It must become healthy and serve discovery for
// https://auth.example.com, and know the proxy's client.
func TestComposeAutheliaStarts(t *testing.T) {
	st := newStack(t)
	st.secretsService()
	a := st.authelia("127.0.0.1:"+itoa(proxytest.FreePort(t)), true)
	c := a.HTTPClient()
	resp, err := c.Get(a.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Issuer        string `json:"issuer"`
		Authorization string `json:"authorization_endpoint"`
	}
	json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || doc.Issuer != a.Issuer {
		t.Fatalf("discovery: %d, issuer %q", resp.StatusCode, doc.Issuer)
	}
	// The proxy's client, with its redirect URI, PKCE and scopes: Authelia
	// sends the browser to sign in (an unknown client or a refused
	// redirect URI would be an error instead).
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	q := "client_id=memos&response_type=code&scope=openid+profile+email+groups&redirect_uri=https%3A%2F%2Fmemos.example.com%2Foauth2%2Fcallback" +
		"&state=state-0123456789abcdef&nonce=nonce-0123456789abcdef&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
	resp, err = c.Get(doc.Authorization + "?" + q)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.Contains(loc, "flow=openid_connect") {
		t.Errorf("the proxy's authorization request: %d → %s\n%s", resp.StatusCode, loc, a.Log())
	}
}
