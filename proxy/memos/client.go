package memos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// What the proxy asks of Memos itself (Connect JSON, POST
// /memos.api.v1.<Service>/<Method>): SignIn with a bridge code, the
// sign-out of a browser's Memos session, and the provider registration.

// memosRefreshCookie is Memos's session cookie: a 30-day refresh token,
// rotated on every use.
const memosRefreshCookie = "memos_refresh"

// memosError is an answer of Memos other than 200.
type memosError struct {
	method  string
	status  int
	code    string // the Connect error code
	message string
}

func (e *memosError) Error() string {
	return fmt.Sprintf("memos %s answered %d %s: %s", e.method, e.status, e.code, e.message)
}

// call POSTs body as JSON to method, with extra headers, decodes a 200
// answer into out (when not nil) and returns the response (body read).
func (b *Bridge) call(ctx context.Context, method string, body any, header http.Header, out any) (*http.Response, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.memosURL+"/memos.api.v1."+method, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	if b.https {
		// Memos marks its cookie Secure only for requests that look https.
		req.Header.Set("X-Forwarded-Proto", "https")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("memos %s: %w", method, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("memos %s: %w", method, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Code, Message string }
		json.Unmarshal(raw, &e)
		return resp, &memosError{method: method, status: resp.StatusCode, code: truncate(e.Code, 40), message: truncate(e.Message, 200)}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp, fmt.Errorf("memos %s: unreadable answer: %w", method, err)
		}
	}
	return resp, nil
}

// refreshCookies returns the Set-Cookie lines of resp that set Memos's
// refresh cookie.
func (b *Bridge) refreshCookies(resp *http.Response) []string {
	var out []string
	for _, line := range resp.Header.Values("Set-Cookie") {
		if name, _, _ := strings.Cut(line, "="); strings.TrimSpace(name) == memosRefreshCookie {
			out = append(out, line)
		}
	}
	return out
}

// memosSignIn signs u into Memos for the browser of r: a fresh code,
// Memos's SignIn with it (Memos redeems it at the bridge), and the
// Set-Cookie lines of the Memos session to hand to the browser. The
// browser's own cookies are not sent (Memos must not link the sign-in to
// whoever the browser was before); its User-Agent and address are, so
// that Memos's list of sessions names the right device.
func (b *Bridge) memosSignIn(ctx context.Context, s *session.Session, u memosUser, r *http.Request) ([]string, error) {
	code, err := b.code(ctx, u, b.callbackURL, "", b.k.Now())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var answer struct {
		User memosAccount `json:"user"`
	}
	client := http.Header{"User-Agent": {r.UserAgent()}, "X-Forwarded-For": {b.k.ClientIP(r)}, "X-Real-Ip": {b.k.ClientIP(r)}}
	resp, err := b.call(ctx, "AuthService/SignIn", map[string]any{
		"ssoCredentials": map[string]string{"idpName": "identity-providers/" + b.clientID, "code": code, "redirectUri": b.callbackURL},
	}, client, &answer)
	if err != nil {
		return nil, err
	}
	cookies := b.refreshCookies(resp)
	if len(cookies) == 0 {
		return nil, errors.New("memos SignIn set no " + memosRefreshCookie + " cookie")
	}
	if answer.User.Username != "" && answer.User.Username != u.Identifier {
		b.k.Log.Info("memos bridge: Memos gave the user another username", "user", u.Identifier, "memos_username", answer.User.Username,
			"why", "Memos usernames are 1-36 of a-z A-Z 0-9 -, not all digits, not reserved")
	}
	b.keepInStep(ctx, s, answer.User)
	return cookies, nil
}

// memosSignOut ends the browser's Memos session, if it has one: Memos
// needs an access token for SignOut, so the refresh cookie is spent once
// (it rotates) and the new pair signs out.
func (b *Bridge) memosSignOut(ctx context.Context, r *http.Request) {
	c, err := r.Cookie(memosRefreshCookie)
	if err != nil || c.Value == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var tok struct {
		AccessToken string `json:"accessToken"`
	}
	resp, err := b.call(ctx, "AuthService/RefreshToken", map[string]any{}, http.Header{"Cookie": {memosRefreshCookie + "=" + c.Value}}, &tok)
	if err == nil && tok.AccessToken == "" {
		err = errors.New("memos RefreshToken gave no access token")
	}
	if err == nil {
		cookie := memosRefreshCookie + "=" + c.Value
		for _, line := range b.refreshCookies(resp) {
			if nc, perr := http.ParseSetCookie(line); perr == nil {
				cookie = memosRefreshCookie + "=" + nc.Value
			}
		}
		_, err = b.call(ctx, "AuthService/SignOut", map[string]any{}, http.Header{
			"Authorization": {"Bearer " + tok.AccessToken}, "Cookie": {cookie},
		}, nil)
	}
	if err != nil {
		var me *memosError
		if errors.As(err, &me) && me.status == http.StatusUnauthorized {
			return // already over
		}
		b.k.Log.Warn("memos bridge: ending the Memos session failed; its cookie is cleared anyway", "err", err)
	}
}

// clearMemos makes the browser forget its Memos session: the refresh
// cookie, and the access token Memos's web app keeps in local storage.
func (b *Bridge) clearMemos(w http.ResponseWriter) {
	c := &http.Cookie{Name: memosRefreshCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: b.https, SameSite: http.SameSiteLaxMode}
	w.Header().Add("Set-Cookie", c.String())
	w.Header().Set("Clear-Site-Data", `"storage"`)
}

// memosFailed answers when Memos did not take the bridge's sign-in.
func (b *Bridge) memosFailed(w http.ResponseWriter, r *http.Request, err error) {
	b.k.Log.Error("memos bridge: signing the user into Memos failed", "err", err, "client", b.k.ClientIP(r))
	b.k.ErrorPage(w, r, http.StatusBadGateway, "Memos did not accept the sign-in",
		"You are signed in, but Memos refused the single sign-on. Ask the administrator to look at the proxy's log.")
}

// memosIdP is the identity provider the proxy registers in Memos.
func (b *Bridge) memosIdP() map[string]any {
	return map[string]any{
		"name":  "identity-providers/" + b.clientID,
		"type":  "OAUTH2",
		"title": b.title,
		"config": map[string]any{"oauth2Config": map[string]any{
			"clientId": b.clientID, "clientSecret": b.secrets[0],
			"authUrl": b.authURL, "tokenUrl": b.tokenURL, "userInfoUrl": b.userinfoURL,
			"scopes":       []string{"profile", "email"},
			"fieldMapping": map[string]string{"identifier": "preferred_username", "displayName": "name", "email": "email"},
		}},
	}
}

// Register makes the proxy Memos's identity provider, or brings
// the registration up to date: listed first (anonymously), then updated
// or created with the admin's token. It is safe to run any number of
// times. It reports what it did.
func (b *Bridge) Register(ctx context.Context) (string, error) {
	if b == nil {
		return "", errors.New("memos.bridge is off")
	}
	if b.token() == "" {
		return "", errors.New("no Memos admin token: set memos.admin_token_file")
	}
	var list struct {
		IdentityProviders []struct {
			Name string `json:"name"`
		} `json:"identityProviders"`
	}
	if _, err := b.call(ctx, "IdentityProviderService/ListIdentityProviders", map[string]any{}, nil, &list); err != nil {
		return "", err
	}
	admin := http.Header{"Authorization": {"Bearer " + b.token()}}
	idp := b.memosIdP()
	for _, existing := range list.IdentityProviders {
		if existing.Name == idp["name"] {
			_, err := b.call(ctx, "IdentityProviderService/UpdateIdentityProvider", map[string]any{
				"identityProvider": idp, "updateMask": "title,config",
			}, admin, nil)
			if err != nil {
				return "", err
			}
			return "updated " + existing.Name, nil
		}
	}
	_, err := b.call(ctx, "IdentityProviderService/CreateIdentityProvider", map[string]any{
		"identityProviderId": b.clientID, "identityProvider": idp,
	}, admin, nil)
	if err != nil {
		return "", err
	}
	return "created " + idp["name"].(string), nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
