package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
	"github.com/oidc-proxy/oidc-proxy/proxy/authelia"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

func runInit(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := initSetup(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestInitWritesAndKeeps: init writes the configuration (which loads),
// the secrets (0600) and Authelia's client block with the secret's
// digest; a second run changes nothing; a file changed by hand is never
// overwritten without -force, and then nothing at all is written.
func TestInitWritesAndKeeps(t *testing.T) {
	dir := t.TempDir()
	args := []string{"-memos-url", "https://memos.example.com", "-issuer", "https://auth.example.com", "-dir", dir}
	code, out, errOut := runInit(t, args...)
	if code != 0 {
		t.Fatalf("init: %d %s %s", code, out, errOut)
	}
	read := func(name string) string { b, _ := os.ReadFile(filepath.Join(dir, name)); return string(b) }
	for _, name := range []string{"secrets/oidc-client-secret", "secrets/session-secret"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", name, fi.Mode(), err)
		}
	}
	secret := strings.TrimSpace(read("secrets/oidc-client-secret"))
	block := read("authelia-client.yml")
	if d := digestRE.FindString(block); d == "" || !authelia.Matches(d, secret) {
		t.Errorf("the client block's digest is not the client secret's:\n%s", block)
	}
	for _, want := range []string{"token_endpoint_auth_method: 'client_secret_post'", "require_pkce: true", "pkce_challenge_method: 'S256'",
		"- 'https://memos.example.com/oauth2/callback'", "authorization_policy: 'two_factor'", "pre_configured_consent_duration: '4w'",
		"scopes: ['openid', 'profile', 'email', 'groups']"} {
		if !strings.Contains(block, want) {
			t.Errorf("the client block lacks %s", want)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "oidc-proxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Memos.Bridge || cfg.Memos.AdminTokenFile == "" || cfg.OIDC.ClientSecret != secret || cfg.ExternalURL != "https://memos.example.com" {
		t.Errorf("the configuration: %+v", cfg.Memos)
	}
	snapshot := func() map[string]string {
		m := map[string]string{}
		for _, n := range []string{"oidc-proxy.yaml", "authelia-client.yml", "secrets/oidc-client-secret", "secrets/session-secret"} {
			m[n] = read(n)
		}
		return m
	}
	first := snapshot()
	// Again: the same bytes.
	if code, out, _ := runInit(t, args...); code != 0 || strings.Contains(out, "wrote") || strings.Contains(out, "replaced") {
		t.Errorf("a second run: %d\n%s", code, out)
	}
	if again := snapshot(); again["authelia-client.yml"] != first["authelia-client.yml"] || again["secrets/oidc-client-secret"] != first["secrets/oidc-client-secret"] {
		t.Error("a second run changed files")
	}
	// A hand edit: refused, nothing written (not even the other files).
	os.WriteFile(filepath.Join(dir, "oidc-proxy.yaml"), []byte(first["oidc-proxy.yaml"]+"# mine\n"), 0o644)
	code, _, errOut = runInit(t, append(args[:len(args):len(args)], "-policy", "one_factor")...)
	if code == 0 || !strings.Contains(errOut, "use -force") || !strings.Contains(read("oidc-proxy.yaml"), "# mine") ||
		read("authelia-client.yml") != first["authelia-client.yml"] {
		t.Errorf("a changed file was overwritten, or something else was: %d %s", code, errOut)
	}
	if code, _, errOut := runInit(t, append(args, "-force")...); code != 0 || strings.Contains(read("oidc-proxy.yaml"), "# mine") {
		t.Errorf("-force: %d %s", code, errOut)
	}
	// Without the answers, and no terminal to ask at.
	if code, _, errOut := runInit(t, "-dir", t.TempDir()); code != 2 || !strings.Contains(errOut, "set it with a flag") {
		t.Errorf("no answers: %d %s", code, errOut)
	}
	if code, _, _ := runInit(t, "-memos-url", "memos.example.com", "-issuer", "https://auth.example.com", "-dir", t.TempDir()); code != 2 {
		t.Errorf("a URL without a scheme: %d", code)
	}
}

// TestInitWithTheRealPrograms: what init writes, used as the user would.
// Authelia 4.39.20 takes the client block as a second configuration file
// and confirms the digest; a person with a TOTP second factor (the
// block's two_factor policy) signs in through the proxy built from the
// configuration init wrote, and lands on the real Memos 0.30.0, set up by
// the proxy's first run, as herself.
func TestInitWithTheRealPrograms(t *testing.T) {
	bin := proxytest.Bin(t, "AUTHELIA_BIN")
	dir := t.TempDir()
	users := proxytest.AutheliaOptions{Users: []proxytest.AutheliaUser{{Name: "alice", Password: "alice-password",
		DisplayName: "Alice Liddell", Email: "alice@example.test", Groups: []string{"admins"}, TOTP: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"}}}
	a := proxytest.WriteAuthelia(t, users) // its issuer, before init
	memos := proxytest.StartMemos(t, nil)  // empty
	proxyLn, _ := net.Listen("tcp", "127.0.0.1:0")
	bridgeLn, _ := net.Listen("tcp", "127.0.0.1:0")
	external := "http://" + proxyLn.Addr().String()
	if code, out, errOut := runInit(t, "-memos-url", external, "-issuer", a.Issuer, "-upstream", memos.URL,
		"-bridge-listen", bridgeLn.Addr().String(), "-dir", dir); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	block := filepath.Join(dir, "authelia-client.yml")
	// Authelia reads the block as a user adds it, and confirms the digest.
	secret, _ := os.ReadFile(filepath.Join(dir, "secrets", "oidc-client-secret"))
	blockText, _ := os.ReadFile(block)
	check := exec.Command(bin, "crypto", "hash", "validate", "--password", strings.TrimSpace(string(secret)), "--", digestRE.FindString(string(blockText)))
	check.Env = proxytest.AutheliaEnv()
	if out, err := check.CombinedOutput(); err != nil || !strings.Contains(string(out), "The password matches the digest.") {
		t.Errorf("authelia crypto hash validate: %v %s", err, out)
	}
	users.MoreConfig = []string{block}
	a.Start(t, users)

	// The proxy, from what init wrote (only its way to Authelia's test
	// address and CA is the test's).
	cfg, err := config.Load(filepath.Join(dir, "oidc-proxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, bridges, err := build(cfg, proxy.Options{IdPClient: a.IdPClient()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.Start(ctx)
	srv := httptest.NewUnstartedServer(p)
	srv.Listener.Close()
	srv.Listener = proxyLn
	srv.Start()
	defer srv.Close()
	bsrv := httptest.NewUnstartedServer(bridges[0].Handler())
	bsrv.Listener.Close()
	bsrv.Listener = bridgeLn
	bsrv.Start()
	defer bsrv.Close()

	// alice, with her second factor; Authelia asks for consent once
	// (pre-configured for 4 weeks).
	c := a.Browser("")
	deadline := time.Now().Add(30 * time.Second)
	var resp *http.Response
	var body string
	for {
		resp, body, err = a.SignIn(c, external+"/", "alice", "alice-password")
		if err == nil && resp.StatusCode == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second) // discovery, or Memos's first run, still under way
	}
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(body, "<title>Memos</title>") {
		t.Fatalf("alice's sign-in: %v %v %.300s", err, resp, body)
	}
	if _, err := os.Stat(filepath.Join(dir, "memos", "admin-token")); err != nil {
		t.Errorf("the proxy did not set Memos up: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPost, external+"/memos.api.v1.AuthService/RefreshToken", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	resp, err = c.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's Memos session: %v %v", err, resp)
	}
	resp.Body.Close()
}
