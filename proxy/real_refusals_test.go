package proxy_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// refusalStand is the proxy in front of the recorder, at the real
// Authelia whose client "memos" is registered as client says; the proxy's
// secret is secret.
func refusalStand(t *testing.T, client proxytest.AutheliaClient, secret string) *realStand {
	t.Helper()
	client.ID = "memos"
	if client.Secret == "" {
		client.Secret = realSecret
	}
	a := proxytest.StartAuthelia(t, proxytest.AutheliaOptions{
		Users:   []proxytest.AutheliaUser{{Name: "alice", Password: alicePassword, DisplayName: "Alice", Email: "alice@example.test"}},
		Clients: []proxytest.AutheliaClient{client},
	})
	s := &stand{T: t, Logs: &syncBuffer{}}
	ln := listen(t)
	s.Issuer, s.URL = a.Issuer, "http://"+ln.Addr().String()
	s.StartUpstream()
	yaml := fmt.Sprintf("external_url: %q\nupstream: %q\noidc:\n  issuer: %q\n  client_id: memos\n  client_secret: %q\nsession:\n  secret: %q\n",
		s.URL, s.Upstream.URL, a.Issuer, secret, sessionSecret)
	s.Proxy = realReplica(s, a, yaml, ln)
	s.WaitReady()
	return &realStand{s, a}
}

// TestProviderRefusalsInWords: what the real Authelia refuses of the
// proxy's client, on the sign-in page and in the log (with the provider's
// error code), and in -check, each with what to fix.
func TestProviderRefusalsInWords(t *testing.T) {
	good := proxytest.AutheliaClient{RedirectURIs: []string{"http://127.0.0.1/oauth2/callback"}, Scopes: []string{"openid", "profile", "email", "groups"},
		GrantTypes: []string{"authorization_code"}}
	t.Run("accepted", func(t *testing.T) {
		rs := refusalStand(t, good, realSecret)
		lines, err := rs.Proxy.Check(t.Context())
		all := strings.Join(lines, "\n")
		if err != nil && strings.Contains(err.Error(), "provider") || !strings.Contains(all, "scopes: accepted") || !strings.Contains(all, "credentials: accepted") {
			t.Errorf("-check of a good client: %v\n%s", err, all)
		}
	})
	t.Run("invalid_scope", func(t *testing.T) {
		guide := good
		guide.Scopes = []string{"openid", "profile", "email"} // Memos's guide's client
		rs := refusalStand(t, guide, realSecret)
		c := rs.a.Browser("")
		c.CheckRedirect = nil
		resp, body := navigate(t, c, rs.URL+"/")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "invalid_scope") || !strings.Contains(body, "groups") {
			t.Errorf("the page: %d %s", resp.StatusCode, body)
		}
		if !strings.Contains(rs.Logs.String(), "error=invalid_scope") || !strings.Contains(rs.Logs.String(), "add the missing ones to the client") {
			t.Errorf("the log:\n%s", grepLines(rs.Logs.String(), "refused"))
		}
		if _, err := rs.Proxy.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "invalid_scope") {
			t.Errorf("-check: %v", err)
		}
	})
	t.Run("invalid_client", func(t *testing.T) {
		rs := refusalStand(t, good, "not-the-secret-the-provider-holds-0123456789")
		c := rs.a.Browser("")
		resp, body, err := rs.a.SignIn(c, rs.URL+"/", "alice", alicePassword)
		if err != nil || resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "invalid_client") || !strings.Contains(body, "token_endpoint_auth_method") {
			t.Errorf("the page: %v %v %s", err, resp, body)
		}
		if !strings.Contains(rs.Logs.String(), "error=invalid_client") {
			t.Errorf("the log:\n%s", grepLines(rs.Logs.String(), "sign-in"))
		}
		if _, err := rs.Proxy.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "invalid_client") {
			t.Errorf("-check: %v", err)
		}
	})
	t.Run("redirect URI", func(t *testing.T) {
		guide := good
		guide.RedirectURIs = []string{"http://127.0.0.1/auth/callback"} // Memos's guide's callback
		rs := refusalStand(t, guide, realSecret)
		// Authelia shows its own error page then; -check and the README say
		// how to recognise it.
		_, err := rs.Proxy.Check(t.Context())
		if err == nil || !strings.Contains(err.Error(), "redirect_uris") || !strings.Contains(err.Error(), "/oauth2/callback") {
			t.Errorf("-check: %v", err)
		}
	})
}

// TestUnauthorizedClientInWords: a provider that answers the sign-in with
// unauthorized_client (a client not allowed the authorization code): the
// page and the log say what to fix.
func TestUnauthorizedClientInWords(t *testing.T) {
	s, _ := hostileStand(t, behaviour{callback: func(q url.Values, _ *hostileOP) {
		q.Del("code")
		q.Set("error", "unauthorized_client")
	}})
	s.WaitReady()
	resp, body := navigate(t, s.Browser(), s.URL+"/")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "unauthorized_client") || !strings.Contains(body, "grant_types [authorization_code]") {
		t.Errorf("the page: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(s.Logs.String(), "error=unauthorized_client") || !strings.Contains(s.Logs.String(), "grant_types") {
		t.Errorf("the log:\n%s", grepLines(s.Logs.String(), "refused"))
	}
}
