package rp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// Refusal is what the provider refused of the proxy's client, in words an
// administrator acts on: the OAuth error code, and what to fix at the
// provider (Authelia's terms where they differ).
type Refusal struct {
	Code, Fix string
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Fix }

// Explain is what to fix for an OAuth error the provider answered the
// proxy's client with ("" for a code that says nothing about the
// client's registration).
func (p *Provider) Explain(code string) string {
	c := p.c.cfg
	switch code {
	case "invalid_scope":
		return fmt.Sprintf("the provider does not allow client %q the scopes the proxy asks for (oidc.scopes: %s): add the missing ones to the client's scopes at the provider (Authelia: the client's scopes; Memos's guide leaves out groups), or remove them from oidc.scopes",
			c.ClientID, strings.Join(c.Scopes, ", "))
	case "unauthorized_client":
		return fmt.Sprintf("the provider does not allow client %q to sign users in with the authorization code: at the provider give it grant_types [authorization_code] and response_types [code]", c.ClientID)
	case "invalid_client":
		return fmt.Sprintf("the provider does not accept client %q's credentials: the secret in oidc.client_secret (or _file) must be the one whose digest the provider holds, and oidc.client_auth_method (%s) must be the client's token_endpoint_auth_method",
			c.ClientID, c.AuthMethod)
	case "redirect_uri":
		return fmt.Sprintf("the provider refuses the proxy's callback %s for client %q: add it to the client's redirect_uris at the provider, exactly (Memos's guide registered /auth/callback; the proxy's is /oauth2/callback)",
			c.RedirectURL, c.ClientID)
	}
	return ""
}

// ProbeAuthorization asks the authorization endpoint, as a sign-in would
// (the proxy's client, callback, scopes and PKCE), without a browser
// session: a provider that accepts it sends the browser to sign in; one
// that refuses says why (an error back to the callback, or its own error
// page for a callback it does not know). It returns nil when accepted,
// a *Refusal when refused.
func (p *Provider) ProbeAuthorization(ctx context.Context) error {
	state := probeToken()
	u := p.AuthCodeURL(state, probeToken(), oauth2.GenerateVerifier())
	req, err := http.NewRequestWithContext(context.WithValue(ctx, endpointKey{}, "authorization"), http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := p.c.cfg.HTTPClient.Do(req) // redirects are not followed
	if err != nil {
		return err
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode < 300 || resp.StatusCode > 399 || err != nil {
		if resp.StatusCode == http.StatusOK {
			return nil // a sign-in page
		}
		return fmt.Errorf("the authorization endpoint answered %d", resp.StatusCode)
	}
	q := loc.Query()
	callback := strings.HasPrefix(loc.String(), p.c.cfg.RedirectURL)
	switch code := q.Get("error"); {
	case code == "" && !callback:
		return nil // to the sign-in page
	case code == "" && callback:
		return nil // already signed in: a code
	case !callback && strings.Contains(q.Get("error_hint")+q.Get("error_description"), "redirect_uri"):
		return &Refusal{"invalid_request", p.Explain("redirect_uri")}
	default:
		if fix := p.Explain(code); fix != "" {
			return &Refusal{code, fix}
		}
		return &Refusal{truncate(code, 64), "the provider refused the authorization request: " + truncate(q.Get("error_description"), 200)}
	}
}

// ProbeClient authenticates the proxy's client at the token endpoint with
// a code that was never issued: a provider authenticates the client
// before it looks at the code (RFC 6749 4.1.3), so invalid_grant means the
// credentials were accepted, invalid_client that they were not. It
// returns nil when they were, a *Refusal when not. It costs one refused
// token request, which a provider's rate limit counts.
func (p *Provider) ProbeClient(ctx context.Context) error {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {"oidc-proxy-check-" + probeToken()},
		"redirect_uri": {p.c.cfg.RedirectURL}, "code_verifier": {oauth2.GenerateVerifier()}}
	c := p.c.cfg
	req, err := http.NewRequestWithContext(context.WithValue(ctx, endpointKey{}, "token"), http.MethodPost, p.TokenURL(), nil)
	if err != nil {
		return err
	}
	if p.oauth.Endpoint.AuthStyle == oauth2.AuthStyleInHeader {
		req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
	} else {
		form.Set("client_id", c.ClientID)
		form.Set("client_secret", c.ClientSecret)
	}
	req.Body = io.NopCloser(strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var ans struct {
		Error string `json:"error"`
	}
	json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ans)
	switch {
	case resp.StatusCode == http.StatusOK, ans.Error == "unauthorized_client", ans.Error == "unsupported_grant_type", ans.Error == "invalid_grant", ans.Error == "invalid_scope":
		return nil
	case ans.Error == "invalid_client" || resp.StatusCode == http.StatusUnauthorized:
		return &Refusal{"invalid_client", p.Explain("invalid_client")}
	}
	return fmt.Errorf("the token endpoint answered %d %s", resp.StatusCode, truncate(ans.Error, 64))
}

func probeToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
