// Package examples_test runs the examples' configurations with the programs
// that read them: the real Authelia 4.39.20 (AUTHELIA_BIN, from
// ../shared/peers) validates and starts what the examples give it.
package examples_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
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
	bin := proxytest.Bin(t, "AUTHELIA_BIN")
	dir := "memos-authelia"
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")}, cli.WithWorkingDirectory(dir), cli.WithName("memos-authelia"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The secrets the user writes, as the header says.
	secrets := t.TempDir()
	secret := make([]byte, 36)
	rand.Read(secret)
	os.WriteFile(filepath.Join(secrets, "oidc-client-secret"), []byte(hex.EncodeToString(secret)+"\n"), 0o600)
	// The authelia binary where the image has it on PATH.
	binDir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(binDir, "authelia")); err != nil {
		t.Fatal(err)
	}
	volumes := map[string]string{}
	binds := func(svc types.ServiceConfig) []proxytest.Bind {
		out := []proxytest.Bind{{Source: filepath.Dir(bin), Target: filepath.Dir(bin), ReadOnly: true},
			{Source: binDir, Target: "/opt/authelia", ReadOnly: true}}
		for _, v := range svc.Volumes {
			src := v.Source
			if v.Type == types.VolumeTypeVolume {
				if volumes[v.Source] == "" {
					volumes[v.Source] = t.TempDir()
				}
				src = volumes[v.Source]
			}
			out = append(out, proxytest.Bind{Source: src, Target: v.Target, ReadOnly: v.ReadOnly})
		}
		for _, s := range svc.Secrets {
			target := s.Target
			if target == "" {
				target = "/run/secrets/" + s.Source
			}
			out = append(out, proxytest.Bind{Source: filepath.Join(secrets, filepath.Base(project.Secrets[s.Source].File)), Target: target, ReadOnly: true})
		}
		return out
	}
	env := func(svc types.ServiceConfig, more ...string) []string {
		out := []string{"PATH=/opt/authelia:/usr/local/bin:/usr/bin:/bin"}
		for k, v := range svc.Environment {
			if v != nil {
				out = append(out, k+"="+*v)
			}
		}
		return append(out, more...)
	}

	// The secrets service, its own script.
	gen := project.Services["authelia-secrets"]
	argv := append(append([]string{}, gen.Entrypoint...), gen.Command...)
	if out, err := proxytest.Root(t, binds(gen), env(gen), argv...).CombinedOutput(); err != nil {
		t.Fatalf("the authelia-secrets service failed: %v\n%s", err, out)
	}
	// Again, as at every `docker compose up`: nothing it made is lost.
	before, _ := os.ReadFile(filepath.Join(volumes["authelia-secrets"], "session"))
	if out, err := proxytest.Root(t, binds(gen), env(gen), argv...).CombinedOutput(); err != nil {
		t.Fatalf("the authelia-secrets service, run again: %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(filepath.Join(volumes["authelia-secrets"], "session")); string(after) != string(before) || len(before) == 0 {
		t.Error("a second start replaced Authelia's session secret")
	}
	digest, _ := os.ReadFile(filepath.Join(volumes["authelia-secrets"], "oidc-client-digest"))
	if !authelia.Matches(strings.TrimSpace(string(digest)), hex.EncodeToString(secret)) {
		t.Errorf("the client digest the service made does not match the client secret: %q", digest)
	}

	// Authelia, as the compose file runs it; the listen address and TLS
	// are the test's.
	svc := project.Services["authelia"]
	port := proxytest.FreePort(t)
	tlsDir := t.TempDir()
	pki := proxytest.NewPKI(t, tlsDir, "auth.example.com", "*.example.com")
	a := &proxytest.Authelia{Host: "auth.example.com", Domain: "example.com", Addr: fmt.Sprintf("127.0.0.1:%d", port),
		Issuer: "https://auth.example.com", PKI: pki} // as Caddy serves it: Dial finds Authelia at Addr
	b := append(binds(svc), proxytest.Bind{Source: tlsDir, Target: "/test-tls", ReadOnly: true})
	cmd := proxytest.Root(t, b, env(svc,
		fmt.Sprintf("AUTHELIA_SERVER_ADDRESS=tcp://127.0.0.1:%d/", port),
		"AUTHELIA_SERVER_TLS_CERTIFICATE=/test-tls/server.crt", "AUTHELIA_SERVER_TLS_KEY=/test-tls/server.key"),
		"/opt/authelia/authelia", "--config", "/config/configuration.yml")
	a.Run(t, cmd)

	c := a.HTTPClient()
	resp, err := c.Get(a.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Issuer        string   `json:"issuer"`
		AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
		Authorization string   `json:"authorization_endpoint"`
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
