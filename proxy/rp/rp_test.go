package rp_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
	"github.com/oidc-proxy/oidc-proxy/proxy/rp"
	"golang.org/x/oauth2"
)

const (
	clientSecret = "client-secret-0123456789abcdef"
	redirectURL  = "http://127.0.0.1/oauth2/callback"
)

// certified serves the test provider (zitadel/oidc, set up as Authelia)
// and returns a relying party discovered against it, and alice.
func certified(t *testing.T, scopes ...string) (*rp.Client, *rp.Provider, *proxytest.OP, *proxytest.OPUser) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	alice := &proxytest.OPUser{Username: "alice", Password: "pw", Name: "Alice", Email: "alice@example.com", Groups: []string{"admins"}}
	op, err := proxytest.NewOP(issuer, proxytest.OPConfig{ClientID: "proxy", ClientSecret: clientSecret,
		RedirectURIs: []string{redirectURL}, Users: []*proxytest.OPUser{alice}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(op.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	if len(scopes) == 0 {
		scopes = []string{"openid", "profile", "email", "groups"}
	}
	c := newClient(t, issuer, scopes)
	p, err := c.Discover(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return c, p, op, alice
}

func newClient(t *testing.T, issuer string, scopes []string) *rp.Client {
	t.Helper()
	hc, err := rp.NewHTTPClient("", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rp.New(rp.Config{Issuer: issuer, ClientID: "proxy", ClientSecret: clientSecret,
		Scopes: scopes, RedirectURL: redirectURL, HTTPClient: hc, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signIn follows the authorization request through the provider's login
// form and returns the callback's query.
func signIn(t *testing.T, p *rp.Provider, state, nonce, verifier string) url.Values {
	t.Helper()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	loc := p.AuthCodeURL(state, nonce, verifier)
	for range 10 {
		u, _ := url.Parse(loc)
		if strings.HasPrefix(loc, redirectURL) {
			return u.Query()
		}
		var resp *http.Response
		var err error
		if id := u.Query().Get("authRequestID"); id != "" && strings.HasSuffix(u.Path, "/login/username") {
			resp, err = noFollow.PostForm(u.Scheme+"://"+u.Host+"/login/username", url.Values{"id": {id}, "username": {"alice"}, "password": {"pw"}})
		} else {
			resp, err = noFollow.Get(loc)
		}
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		next, err := resp.Location()
		if err != nil {
			t.Fatalf("%s answered %d without a redirect", loc, resp.StatusCode)
		}
		loc = next.String()
	}
	t.Fatal("too many redirects")
	return nil
}

func TestRedeemAgainstTheCertifiedProvider(t *testing.T) {
	_, p, _, alice := certified(t)
	verifier := oauth2.GenerateVerifier()
	auth, _ := url.Parse(p.AuthCodeURL("state-1", "nonce-1", verifier))
	if q := auth.Query(); q.Get("code_challenge_method") != "S256" || q.Get("nonce") != "nonce-1" || q.Get("state") != "state-1" {
		t.Fatalf("authorization request: %v", q)
	}
	q := signIn(t, p, "state-1", "nonce-1", verifier)
	if err := p.CheckIssuer(q); err != nil {
		t.Fatalf("the provider's own iss refused: %v", err)
	}
	tok, err := p.Redeem(t.Context(), q.Get("code"), "nonce-1", verifier)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Subject != alice.Subject() || tok.IDToken == "" {
		t.Errorf("subject %q (want %q), id token %d bytes", tok.Subject, alice.Subject(), len(tok.IDToken))
	}
	// Authelia's profile claims come from userinfo only.
	if string(tok.Claims["preferred_username"]) != `"alice"` || string(tok.Claims["email"]) != `"alice@example.com"` {
		t.Errorf("claims from userinfo missing: %v", tok.Claims)
	}
	// A code is good once.
	if _, err := p.Redeem(t.Context(), q.Get("code"), "nonce-1", verifier); rp.Reason(err) != "token_exchange" {
		t.Errorf("a code redeemed twice: %v", err)
	}
}

func TestRedeemRefusesAnotherSignInsNonceOrVerifier(t *testing.T) {
	_, p, _, _ := certified(t)
	for _, tt := range []struct {
		name, nonce, verifier, reason string
	}{
		{"nonce of another sign-in", "other-nonce", "", "id_token_invalid"},
		{"verifier of another sign-in", "nonce-1", oauth2.GenerateVerifier(), "token_exchange"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			verifier := oauth2.GenerateVerifier()
			q := signIn(t, p, "state-1", "nonce-1", verifier)
			v := tt.verifier
			if v == "" {
				v = verifier
			}
			_, err := p.Redeem(t.Context(), q.Get("code"), tt.nonce, v)
			var e *rp.Error
			if !errors.As(err, &e) || e.Reason != tt.reason {
				t.Fatalf("got %v, want reason %s", err, tt.reason)
			}
		})
	}
}

func TestRefreshRotatesAndRefusal(t *testing.T) {
	_, p, op, alice := certified(t, "openid", "profile", "email", "groups", "offline_access")
	verifier := oauth2.GenerateVerifier()
	q := signIn(t, p, "s", "n", verifier)
	tok, err := p.Redeem(t.Context(), q.Get("code"), "n", verifier)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token with offline_access")
	}
	renewed, err := p.Refresh(t.Context(), tok.RefreshToken, alice.Subject())
	if err != nil {
		t.Fatal(err)
	}
	if renewed.RefreshToken == "" || renewed.RefreshToken == tok.RefreshToken {
		t.Errorf("the refresh token did not rotate")
	}
	if string(renewed.Claims["preferred_username"]) != `"alice"` {
		t.Errorf("claims not read again: %v", renewed.Claims)
	}
	// The old token again: refused, the session must end.
	if _, err := p.Refresh(t.Context(), tok.RefreshToken, alice.Subject()); !errors.Is(err, rp.ErrRefused) {
		t.Errorf("a spent refresh token: %v, want ErrRefused", err)
	}
	// Another user's subject: refused.
	if _, err := p.Refresh(t.Context(), renewed.RefreshToken, "someone-else"); !errors.Is(err, rp.ErrRefused) {
		t.Errorf("a refresh for another subject: %v, want ErrRefused", err)
	}
	op.RevokeRefreshTokens()
	if _, err := p.Refresh(context.Background(), renewed.RefreshToken, alice.Subject()); !errors.Is(err, rp.ErrRefused) {
		t.Errorf("a revoked grant: %v, want ErrRefused", err)
	}
}

func TestCheckIssuer(t *testing.T) {
	c, p, _, _ := certified(t)
	for _, tt := range []struct {
		q      url.Values
		reason string
	}{
		{url.Values{"iss": {c.Issuer()}}, ""},
		{url.Values{"iss": {"https://evil.example"}}, "iss_mismatch"},
		{url.Values{"iss": {c.Issuer(), c.Issuer()}}, "iss_mismatch"},
		{url.Values{"iss": {""}}, "iss_mismatch"},
	} {
		err := p.CheckIssuer(tt.q)
		if got := ""; err != nil {
			got = rp.Reason(err)
			if got != tt.reason {
				t.Errorf("%v: %v, want %q", tt.q, err, tt.reason)
			}
		} else if tt.reason != "" {
			t.Errorf("%v accepted, want %s", tt.q, tt.reason)
		}
	}
}

func TestNewRefusesUnknownAuthMethod(t *testing.T) {
	_, err := rp.New(rp.Config{Issuer: "https://a", AuthMethod: "private_key_jwt", HTTPClient: http.DefaultClient})
	if err == nil {
		t.Fatal("private_key_jwt accepted")
	}
}
