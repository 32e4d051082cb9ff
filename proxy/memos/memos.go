// Package memos fits the proxy to Memos (usememos/memos): the bridge that
// makes the proxy Memos's OAuth2 identity provider, backed by the proxy's
// session, so that a user signs in once (Bridge), and the confirmation of
// the bearer tokens Memos issues, so that personal access tokens pass
// (Bearers). Both plug into the core through proxy.Integration; the core
// imports nothing of this package.
//
// It imports proxy (the core's interface and helpers), session and config.
package memos

import (
	"context"
	"fmt"
	"net/http"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
	"github.com/oidc-proxy/oidc-proxy/session"
)

// Integrations builds what the memos block of route rc of cfg asks for:
// the bridge (memos.bridge), the bearer-token check
// (memos.pass_bearer_tokens), both, or none. It is
// proxy.Options.Integrations.
func Integrations(cfg *config.Config, rc *config.Route) ([]proxy.Integration, error) {
	var out []proxy.Integration
	if rc.Memos.Bridge {
		b, err := newBridge(cfg, rc)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	if rc.Memos.PassBearerTokens {
		out = append(out, &Bearers{memosURL: rc.Memos.URL})
	}
	return out, nil
}

// Bridges are the bridges among integrations, in order.
func Bridges(integrations []proxy.Integration) []*Bridge {
	var out []*Bridge
	for _, in := range integrations {
		if b, ok := in.(*Bridge); ok {
			out = append(out, b)
		}
	}
	return out
}

var (
	_ proxy.Integration = (*Bridge)(nil)
	_ proxy.Integration = (*Bearers)(nil)
)

// Claims implements proxy.Integration: what the bridge tells Memos.
func (b *Bridge) Claims() []string {
	if len(b.adminGroups) > 0 {
		return []string{b.usernameClaim, "name", "email", "groups"}
	}
	return []string{b.usernameClaim, "name", "email"}
}

// Endpoints implements proxy.Integration: the authUrl of Memos's sign-in
// button.
func (b *Bridge) Endpoints(mux *http.ServeMux) {
	mux.HandleFunc("GET /oauth2/memos/authorize", b.handleMemosAuthorize)
}

// Wrap implements proxy.Integration: Memos's sign-in page signs the user
// in through the bridge, its password sign-in and sign-up are closed
// unless allowed, and the browser that pressed Memos's sign-out goes on to
// the provider's.
func (b *Bridge) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !b.setUpDone(r.Context()) {
			b.settingUp(w, r)
			return
		}
		if !b.memosIntercept(w, r, proxy.IdentityFrom(r.Context())) {
			next.ServeHTTP(w, r)
		}
	})
}

// Anonymous implements proxy.Integration: the bridge vouches for nobody.
func (b *Bridge) Anonymous(http.ResponseWriter, *http.Request, http.Handler) bool { return false }

// SignedIn implements proxy.Integration: the user is signed into Memos in
// the same response.
func (b *Bridge) SignedIn(w http.ResponseWriter, r *http.Request, s *session.Session, dest string) string {
	return b.memosAfterSignIn(w, r, s, dest)
}

// SigningOut implements proxy.Integration: the Memos session ends too, and
// the browser forgets it.
func (b *Bridge) SigningOut(w http.ResponseWriter, r *http.Request) {
	b.memosSignOut(r.Context(), r)
	b.clearMemos(w)
	b.clearOut(w)
}

// Answered implements proxy.Integration: Memos's own sign-out ends the
// proxy session as it passes.
func (b *Bridge) Answered(resp *http.Response) {
	if resp.StatusCode < 300 && isMemosSignOut(resp.Request) {
		b.memosSignedOut(resp)
	}
}

// Start implements proxy.Integration: in the background (Memos may start
// later) the bridge sets a fresh Memos up, and registers itself with an
// admin token.
func (b *Bridge) Start(ctx context.Context) {
	go b.setUpInBackground(ctx)
}

// Check implements proxy.Integration: which of Memos's identity providers
// the bridge is, or would take over (see Register).
func (b *Bridge) Check(ctx context.Context) []string {
	lines := []string{"memos bridge: Memos reaches the token endpoint at " + b.tokenURL + " (not checked from here)"}
	var list struct {
		IdentityProviders []memosProvider `json:"identityProviders"`
	}
	if _, err := b.call(ctx, "IdentityProviderService/ListIdentityProviders", map[string]any{}, nil, &list); err != nil {
		return append(lines, "memos bridge: Memos's identity providers cannot be listed: "+err.Error())
	}
	var op *opEndpoints
	if b.k.Provider != nil {
		if auth, token, userinfo, ok := b.k.Provider(); ok {
			op = &opEndpoints{auth, token, userinfo}
		}
	}
	name, takeOver, err := b.choose(list.IdentityProviders, op)
	switch {
	case err != nil:
		return append(lines, "memos bridge: "+err.Error())
	case takeOver != nil:
		return append(lines, fmt.Sprintf("memos bridge: takes over Memos's identity provider %s (%q, at %s): the users it linked keep their accounts",
			name, takeOver.Title, takeOver.Config.OAuth2.AuthURL))
	}
	return append(lines, "memos bridge: is Memos's identity provider "+name)
}
