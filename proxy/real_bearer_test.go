package proxy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// realBearerClients are the clients of the README's examples for
// scripts: the proxy's own (which introspects with client_secret_post),
// a machine with opaque tokens, one with JWT access tokens for the
// audience notes-api, and a command-line tool with the device flow.
func realBearerClients() []proxytest.AutheliaClient {
	return []proxytest.AutheliaClient{
		{ID: "memos", Secret: realSecret, RedirectURIs: []string{"http://127.0.0.1/oauth2/callback"},
			Extra: []string{"introspection_endpoint_auth_method: 'client_secret_post'"}},
		{ID: "backup", Secret: "backup-secret-0123456789abcdef0123456789", GrantTypes: []string{"client_credentials"},
			Scopes: []string{"notes"}, NoResponseTypes: true},
		{ID: "ci", Secret: "ci-secret-0123456789abcdef0123456789abcd", GrantTypes: []string{"client_credentials"},
			Scopes: []string{"notes"}, NoResponseTypes: true,
			Extra: []string{"audience: ['notes-api']", "access_token_signed_response_alg: 'RS256'"}},
		{ID: "cli", Secret: "cli-secret-0123456789abcdef0123456789abcd", GrantTypes: []string{"urn:ietf:params:oauth:grant-type:device_code"},
			Scopes: []string{"openid", "profile", "email", "groups", "notes"}, NoResponseTypes: true, Consent: "explicit"},
	}
}

// realBearerStand is the proxy in front of a recording upstream with a
// real Authelia, accepting the machines backup and ci and the tool cli,
// scope notes; introspected answers kept at most cacheFor.
func realBearerStand(t *testing.T, cacheFor time.Duration) (*stand, *proxytest.Authelia) {
	a := proxytest.StartAuthelia(t, proxytest.AutheliaOptions{
		Users:   []proxytest.AutheliaUser{{Name: "alice", Password: alicePassword, DisplayName: "Alice", Email: "alice@example.test", Groups: []string{"admins"}}},
		Clients: realBearerClients(),
	})
	s := &stand{T: t, Logs: &syncBuffer{}}
	ln := listen(t)
	s.Issuer, s.URL = a.Issuer, "http://"+ln.Addr().String()
	s.StartUpstream()
	yaml := fmt.Sprintf("external_url: %q\nupstream: %q\noidc:\n  issuer: %q\n  client_id: memos\n  client_secret: %q\nsession:\n  secret: %q\n",
		s.URL, s.Upstream.URL, a.Issuer, realSecret, sessionSecret)
	s.Proxy = realReplica(s, a, yaml, ln, func(c *config.Config) {
		c.Bearer = &config.Bearer{Machines: []string{"backup", "ci"}, Clients: []string{"cli"}, Scopes: []string{"notes"},
			ScopesMatch: "all", Introspect: "opaque", CacheFor: cacheFor}
	})
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
	backup := "backup-secret-0123456789abcdef0123456789"
	opaque := machineToken(t, a, "backup", backup, url.Values{"scope": {"notes"}})
	if resp, body := bearerGet(t, s.URL, "/api/backup", opaque); resp.StatusCode != 200 {
		t.Fatalf("a machine's opaque token: %d %s\n%s", resp.StatusCode, body, s.Logs.String())
	}
	if h := s.LastSeen().Header; h.Get("Remote-Client") != "backup" || h.Get("Remote-Auth") != "bearer" || h.Get("Remote-User") != "" {
		t.Errorf("the machine's headers: %v", h)
	}
	jwt := machineToken(t, a, "ci", "ci-secret-0123456789abcdef0123456789abcd", url.Values{"scope": {"notes"}, "audience": {"notes-api"}})
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
	secret := "cli-secret-0123456789abcdef0123456789abcd"
	code, dev := autheliaPost(t, a, "/api/oidc/device-authorization", "cli", secret, url.Values{"scope": {"openid profile email groups notes"}})
	complete, _ := dev["verification_uri_complete"].(string)
	deviceCode, _ := dev["device_code"].(string)
	if code != 200 || complete == "" || deviceCode == "" {
		t.Fatalf("device authorization: %d %v", code, dev)
	}
	poll := func() (int, map[string]any) {
		return autheliaPost(t, a, "/api/oidc/token", "cli", secret, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {deviceCode}})
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
	if h.Get("Remote-User") != "alice" || h.Get("Remote-Groups") != "admins" || h.Get("Remote-Email") != "alice@example.test" ||
		h.Get("Remote-Client") != "cli" || h.Get("Remote-Auth") != "bearer" {
		t.Errorf("the tool's call as alice: %v", h)
	}
}
