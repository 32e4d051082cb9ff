package memos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/oidc-proxy/oidc-proxy/config"
	"io"
	"net/http"
	"regexp"
	"slices"
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
		"ssoCredentials": map[string]string{"idpName": b.idp(), "code": code, "redirectUri": b.callbackURL},
	}, client, &answer)
	if err != nil {
		return nil, err
	}
	cookies := b.refreshCookies(resp)
	if len(cookies) == 0 {
		return nil, errors.New("memos SignIn set no " + memosRefreshCookie + " cookie")
	}
	if answer.User.Username != "" && answer.User.Username != u.Identifier {
		b.k.Log.Warn("memos bridge: Memos gave the user another username", "user", u.Identifier, "memos_username", answer.User.Username,
			"why", whyRenamed(u.Identifier))
	}
	b.keepInStep(ctx, s, answer.User)
	return cookies, nil
}

// memosUsername is what Memos 0.30 accepts as a username.
var memosUsername = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,34}[a-zA-Z0-9])?$`)

// whyRenamed says why Memos gave a user who signed in as name another
// username: its username rules refuse the name, or (the rules allow it)
// the name is another account's.
func whyRenamed(name string) string {
	allDigits := strings.Trim(name, "0123456789") == ""
	switch {
	case !memosUsername.MatchString(name) || allDigits:
		return "Memos's username rules refuse the name (1-36 of a-z A-Z 0-9 and -, not all digits)"
	case slices.Contains([]string{"admin", "administrator", "api", "memos", "root", "support", "system"}, strings.ToLower(name)):
		return "Memos reserves the name"
	}
	return "the name is taken by another Memos account (a password account, or one linked to another identity provider); Memos never links a sign-in to it"
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

// memosIdP is the identity provider the proxy registers in Memos, under
// the name name.
func (b *Bridge) memosIdP(name string) map[string]any {
	return map[string]any{
		"name":  name,
		"type":  "OAUTH2",
		"title": b.title,
		"config": map[string]any{"oauth2Config": map[string]any{
			"clientId": b.clientID, "clientSecret": b.secrets[0],
			"authUrl": b.authURL, "tokenUrl": b.tokenURL, "userInfoUrl": b.userinfoURL,
			"scopes":       []string{"profile", "email"},
			"fieldMapping": map[string]string{"identifier": b.usernameClaim, "displayName": "name", "email": "email"},
		}},
	}
}

// memosProvider is an identity provider as Memos lists it (anyone may
// list them; Memos never shows the secret).
type memosProvider struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Title  string `json:"title"`
	Config struct {
		OAuth2 struct {
			ClientID     string `json:"clientId"`
			AuthURL      string `json:"authUrl"`
			TokenURL     string `json:"tokenUrl"`
			UserInfoURL  string `json:"userInfoUrl"`
			FieldMapping struct {
				Identifier string `json:"identifier"`
			} `json:"fieldMapping"`
		} `json:"oauth2Config"`
	} `json:"config"`
}

// errTwoProviders is a Memos with more than one identity provider that
// signs users in at the proxy's own OpenID Provider: which one's users
// should keep their accounts is the administrator's choice.
type errTwoProviders struct{ names []string }

func (e *errTwoProviders) Error() string {
	return fmt.Sprintf("Memos has %d identity providers that sign users in at this proxy's OpenID Provider (%s): set memos.idp_id to the id (after identity-providers/) of the one your users signed in with, and the proxy takes it over so that they keep their accounts",
		len(e.names), strings.Join(e.names, ", "))
}

// choose picks, among Memos's identity providers, the one the bridge
// becomes (its name), and whether it is one to take over from the
// OpenID Provider. See Register.
func (b *Bridge) choose(list []memosProvider, op *opEndpoints) (name string, takeOver *memosProvider, err error) {
	own := "identity-providers/" + b.clientID
	if b.clientID != config.DefaultMemosIdPID { // the administrator named it
		return own, nil, nil
	}
	var ours, theirs []*memosProvider
	for i := range list {
		p := &list[i]
		c := p.Config.OAuth2
		switch {
		case p.Type != "OAUTH2":
		case sameURL(c.AuthURL, b.authURL) && sameURL(c.TokenURL, b.tokenURL):
			ours = append(ours, p)
		case op != nil && op.matches(c.AuthURL, c.TokenURL, c.UserInfoURL):
			if c.FieldMapping.Identifier != b.usernameClaim {
				b.k.Log.Warn("memos bridge: Memos has an identity provider at this proxy's OpenID Provider that links users by another claim; left alone",
					"provider", p.Name, "title", p.Title, "identifier", c.FieldMapping.Identifier, "username_claim", b.usernameClaim,
					"hint", "its users keep their accounts through the proxy only if memos.username_claim is "+c.FieldMapping.Identifier+" and memos.idp_id names it")
				continue
			}
			theirs = append(theirs, p)
		}
	}
	// A provider taken over before counts as a candidate too: one more of
	// the same issuer is a question for the administrator, not a switch.
	var candidates []*memosProvider
	for _, p := range ours {
		if p.Name != own {
			candidates = append(candidates, p)
		}
	}
	candidates = append(candidates, theirs...)
	switch {
	case len(candidates) > 1:
		e := &errTwoProviders{}
		for _, p := range candidates {
			e.names = append(e.names, fmt.Sprintf("%s (%q)", p.Name, p.Title))
		}
		return "", nil, e
	case len(candidates) == 1 && len(theirs) == 1:
		return theirs[0].Name, theirs[0], nil
	case len(candidates) == 1:
		return candidates[0].Name, nil, nil
	}
	return own, nil, nil
}

// sameURL compares two endpoint URLs as the same endpoint.
func sameURL(a, b string) bool {
	return a != "" && strings.EqualFold(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/"))
}

// Register makes the proxy Memos's identity provider, or brings the
// registration up to date. It is safe to run any number of times, and
// reports what it did.
//
// Users are linked in Memos by (identity provider, identifier). A Memos
// that already signs users in at the proxy's OpenID Provider (Memos's own
// SSO, set up by its guide) holds those links under its provider: the
// bridge takes that provider over (the same id, its configuration now
// the bridge's endpoints; its title kept), so that every user it linked
// signs in through the proxy as the same Memos user. A provider of
// another OpenID Provider, or one linking by another claim, is never
// touched; two of them that could be taken over are an error naming
// both. memos.idp_id, set to anything but the default, names the
// provider to be, and nothing is looked for.
func (b *Bridge) Register(ctx context.Context) (string, error) {
	if b == nil {
		return "", errors.New("memos.bridge is off")
	}
	if b.token() == "" {
		return "", errors.New("no Memos admin token: set memos.admin_token_file")
	}
	var op *opEndpoints
	if b.k.Provider != nil {
		if auth, token, userinfo, ok := b.k.Provider(); ok {
			op = &opEndpoints{auth, token, userinfo}
		}
	}
	if b.clientID == config.DefaultMemosIdPID && op == nil {
		return "", errors.New("waiting for the OpenID Provider's discovery (to find Memos's providers of the same issuer)")
	}
	var list struct {
		IdentityProviders []memosProvider `json:"identityProviders"`
	}
	if _, err := b.call(ctx, "IdentityProviderService/ListIdentityProviders", map[string]any{}, nil, &list); err != nil {
		return "", err
	}
	name, takeOver, err := b.choose(list.IdentityProviders, op)
	if err != nil {
		return "", err
	}
	admin := http.Header{"Authorization": {"Bearer " + b.token()}}
	idp := b.memosIdP(name)
	for _, existing := range list.IdentityProviders {
		if existing.Name != name {
			continue
		}
		mask := "title,config"
		if existing.Name != "identity-providers/"+b.clientID {
			mask = "config" // a provider taken over keeps the title its users know
			idp["title"] = existing.Title
		}
		if _, err := b.call(ctx, "IdentityProviderService/UpdateIdentityProvider", map[string]any{
			"identityProvider": idp, "updateMask": mask,
		}, admin, nil); err != nil {
			return "", err
		}
		b.idpName.Store(&name)
		if takeOver != nil {
			return fmt.Sprintf("took over Memos's identity provider %s (%q), which signed users in at %s: the users it linked keep their Memos accounts",
				name, existing.Title, takeOver.Config.OAuth2.AuthURL), nil
		}
		return "updated " + name, nil
	}
	if _, err := b.call(ctx, "IdentityProviderService/CreateIdentityProvider", map[string]any{
		"identityProviderId": strings.TrimPrefix(name, "identity-providers/"), "identityProvider": idp,
	}, admin, nil); err != nil {
		return "", err
	}
	b.idpName.Store(&name)
	return "created " + name, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
