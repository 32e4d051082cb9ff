package proxy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy/authelia"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// The secrets of examples/api-clients' clients in these tests (one for
// all: the example's blocks share a placeholder).
const exampleClientSecret = "example-client-secret-0123456789abcdef0123456789abcdef"

// realBearerStand runs examples/api-clients as its user would: the real
// Authelia with the example's client blocks, and the proxy with the
// example's configuration, each with only what a test must change: the
// secret's digest filled in, the addresses of this machine, and one
// factor instead of two for the test's user. Introspected answers are
// kept at most cacheFor.
func realBearerStand(t *testing.T, cacheFor time.Duration) (*stand, *proxytest.Authelia) {
	block, err := os.ReadFile("../examples/api-clients/authelia-client.yml")
	if err != nil {
		t.Fatal(err)
	}
	digest, err := authelia.Digest(exampleClientSecret)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("$pbkdf2-sha512$310000$REPLACE_WITH_YOUR_DIGEST", digest,
		"https://notes.example.com/oauth2/callback", "http://127.0.0.1/oauth2/callback",
		"'two_factor'", "'one_factor'").Replace(string(block))
	blockFile := filepath.Join(t.TempDir(), "clients.yml")
	os.WriteFile(blockFile, []byte(text), 0o600)
	a := proxytest.StartAuthelia(t, proxytest.AutheliaOptions{
		Users:      []proxytest.AutheliaUser{{Name: "alice", Password: alicePassword, DisplayName: "Alice", Email: "alice@example.test", Groups: []string{"notes"}}},
		MoreConfig: []string{blockFile},
	})
	s := &stand{T: t, Logs: &syncBuffer{}}
	ln := listen(t)
	s.Issuer, s.URL = a.Issuer, "http://"+ln.Addr().String()
	s.StartUpstream()
	example, err := os.ReadFile("../examples/api-clients/oidc-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.NewReplacer("https://notes.example.com", s.URL, "http://127.0.0.1:5230", s.Upstream.URL,
		"https://auth.example.com", a.Issuer,
		"client_secret_file: /run/secrets/oidc-client-secret", "client_secret: "+exampleClientSecret,
		"secret_file: /run/secrets/oidc-proxy-session", "secret: "+sessionSecret,
		"cache_for: 5m", "cache_for: "+cacheFor.String()).Replace(string(example))
	s.Proxy = realReplica(s, a, yaml, ln)
	s.WaitReady()
	return s, a
}

// autheliaToken posts form to one of Authelia's OAuth endpoints as the
// client id and returns the JSON answer.
func autheliaPost(t *testing.T, a *proxytest.Authelia, path, id, secret string, form url.Values) (int, map[string]any) {
	t.Helper()
	form.Set("client_id", id)
	form.Set("client_secret", secret)
	resp, err := a.HTTPClient().PostForm(a.Issuer+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func machineToken(t *testing.T, a *proxytest.Authelia, id, secret string, form url.Values) string {
	t.Helper()
	form.Set("grant_type", "client_credentials")
	code, out := autheliaPost(t, a, "/api/oidc/token", id, secret, form)
	tok, _ := out["access_token"].(string)
	if code != 200 || tok == "" {
		t.Fatalf("client credentials of %s: %d %v", id, code, out)
	}
	return tok
}

// TestRealAutheliaBearerTokens: the real Authelia 4.39 issues the tokens
// for scripts, and the proxy takes them as the README says: a machine's
// opaque token (introspected), a machine's JWT access token (verified
// with the key set), a revoked token refused once the cache bound has
// passed, a token without the scope refused.
func TestRealAutheliaBearerTokens(t *testing.T) {
	s, a := realBearerStand(t, time.Second)
	backup := exampleClientSecret
	opaque := machineToken(t, a, "backup", backup, url.Values{"scope": {"notes"}})
	if resp, body := bearerGet(t, s.URL, "/api/backup", opaque); resp.StatusCode != 200 {
		t.Fatalf("a machine's opaque token: %d %s\n%s", resp.StatusCode, body, s.Logs.String())
	}
	if h := s.LastSeen().Header; h.Get("Remote-Client") != "backup" || h.Get("Remote-Auth") != "bearer" || h.Get("Remote-User") != "" {
		t.Errorf("the machine's headers: %v", h)
	}
	jwt := machineToken(t, a, "ci", exampleClientSecret, url.Values{"scope": {"notes"}, "audience": {"notes-api"}})
	if strings.Count(jwt, ".") != 2 {
		t.Fatalf("ci's token is not a JWT: %.20s...", jwt)
	}
	if resp, body := bearerGet(t, s.URL, "/api/ci", jwt); resp.StatusCode != 200 {
		t.Fatalf("a machine's JWT access token: %d %s", resp.StatusCode, body)
	}
	if h := s.LastSeen().Header; h.Get("Remote-Client") != "ci" || h.Get("Remote-Scopes") != "notes" {
		t.Errorf("the JWT machine's headers: %v", h)
	}
	// Revoked at the provider: introspection says inactive; the cached
	// verdict lasts at most cache_for (1 s here).
	// (Authelia's revocation endpoint takes client_secret_basic unless
	// the client registers otherwise.)
	req, _ := http.NewRequest(http.MethodPost, a.Issuer+"/api/oidc/revocation", strings.NewReader(url.Values{"token": {opaque}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("backup", backup)
	if resp, err := a.HTTPClient().Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("revocation: %v %v", err, resp)
	}
	time.Sleep(1100 * time.Millisecond)
	if resp, _ := bearerGet(t, s.URL, "/api/revoked", opaque); resp.StatusCode != 401 ||
		!strings.Contains(resp.Header.Get("Www-Authenticate"), `error="invalid_token"`) {
		t.Errorf("a revoked token: %d %q", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
	}
	// No scope asked for: the token has none, the route wants notes.
	bare := machineToken(t, a, "backup", backup, url.Values{})
	if resp, _ := bearerGet(t, s.URL, "/api/bare", bare); resp.StatusCode != 403 ||
		!strings.Contains(resp.Header.Get("Www-Authenticate"), `error="insufficient_scope"`) {
		t.Errorf("a token without the scope: %d %q", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
	}
	if strings.Contains(s.Logs.String(), opaque) || strings.Contains(s.Logs.String(), jwt) {
		t.Errorf("a token reached the log")
	}
}

// TestRealAutheliaDeviceFlowToken: a person gets a token for a
// command-line tool with the device flow (RFC 8628) at the real Authelia:
// the tool asks for a code, the person approves it in Chromium at
// Authelia's portal (sign-in, the code, consent), the tool polls for its
// token and calls the app through the proxy as that person: the same
// identity headers as their browser session, plus the bearer ones.
func TestRealAutheliaDeviceFlowToken(t *testing.T) {
	if testing.Short() {
		t.Skip("the real programs in a browser")
	}
	s, a := realBearerStand(t, time.Minute)
	secret := exampleClientSecret
	code, dev := autheliaPost(t, a, "/api/oidc/device-authorization", "notes-cli", secret, url.Values{"scope": {"openid profile email groups notes"}})
	complete, _ := dev["verification_uri_complete"].(string)
	deviceCode, _ := dev["device_code"].(string)
	if code != 200 || complete == "" || deviceCode == "" {
		t.Fatalf("device authorization: %d %v", code, dev)
	}
	poll := func() (int, map[string]any) {
		return autheliaPost(t, a, "/api/oidc/token", "notes-cli", secret, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {deviceCode}})
	}
	if code, out := poll(); code == 200 || out["error"] != "authorization_pending" {
		t.Fatalf("before approval: %d %v", code, out)
	}

	ctx := proxytest.Chromium(t, 2*time.Minute,
		[2]string{"host-resolver-rules", "MAP " + a.Host + " 127.0.0.1"}, [2]string{"ignore-certificate-errors", "true"})
	var tok string
	browserAt(t, ctx, complete, "alice", alicePassword, func() bool {
		// The portal asks to confirm the code shown by the tool.
		for _, id := range []string{"device-code-confirm-button", "confirm-button", "accept-button"} {
			proxytest.Click(ctx, id)
		}
		code, out := poll()
		tok, _ = out["access_token"].(string)
		return code == 200 && tok != ""
	})
	resp, body := bearerGet(t, s.URL, "/api/me", tok)
	if resp.StatusCode != 200 {
		t.Fatalf("the tool's call as alice: %d %s\n%s", resp.StatusCode, body, s.Logs.String())
	}
	h := s.LastSeen().Header
	if h.Get("Remote-User") != "alice" || h.Get("Remote-Groups") != "notes" || h.Get("Remote-Email") != "alice@example.test" ||
		h.Get("Remote-Client") != "notes-cli" || h.Get("Remote-Auth") != "bearer" {
		t.Errorf("the tool's call as alice: %v", h)
	}
}
