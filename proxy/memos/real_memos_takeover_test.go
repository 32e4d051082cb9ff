package memos_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// The Memos of the people this proxy is for: set up by Memos's own guide
// ("Configuring Authelia for Authentication"), its users signing in with
// Memos's SSO button through Authelia. The real Memos 0.30.0 and Authelia
// 4.39.20.

const guideSecret = "memos-guide-client-secret-0123456789abcdef"

// guideMemos is a real Memos set up as the guide says, behind nothing,
// with a real Authelia: an admin (admin1), the guide's provider created
// as its form creates it (id guideID), and users who signed in with it.
type guideMemos struct {
	a         *proxytest.Authelia
	m         *proxytest.Memos
	admin     string // admin1's access token
	discovery struct {
		Authorization string `json:"authorization_endpoint"`
		Token         string `json:"token_endpoint"`
		Userinfo      string `json:"userinfo_endpoint"`
	}
}

func newGuideMemos(t *testing.T) *guideMemos {
	t.Helper()
	a := proxytest.StartAuthelia(t, proxytest.AutheliaOptions{
		Users: []proxytest.AutheliaUser{
			{Name: "alice", Password: alicePassword, DisplayName: "Alice Liddell", Email: "alice@example.test", Groups: []string{"admins"}},
			{Name: "bob", Password: bobPassword, DisplayName: "Bob", Email: "bob@example.test"},
			{Name: "carol", Password: "carol-password", DisplayName: "Carol", Email: "carol@example.test"},
			{Name: "dave", Password: "dave-password", DisplayName: "Dave", Email: "dave@example.test"},
		},
		Clients: []proxytest.AutheliaClient{
			// The guide's client (Memos's own SSO).
			{ID: "memos-guide", Secret: guideSecret, RedirectURIs: []string{"http://127.0.0.1/auth/callback"},
				Scopes: []string{"openid", "profile", "email"}, GrantTypes: []string{"authorization_code"}},
			// The proxy's.
			{ID: "memos", Secret: realSecret, RedirectURIs: []string{"http://127.0.0.1/oauth2/callback"},
				Scopes: []string{"openid", "profile", "email", "groups"}, GrantTypes: []string{"authorization_code"}},
		},
	})
	g := &guideMemos{a: a, m: proxytest.StartMemos(t, a)}
	resp, err := a.HTTPClient().Get(a.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&g.discovery)
	resp.Body.Close()
	if _, err := g.m.Call("UserService/CreateUser", "", map[string]any{"user": map[string]string{"username": "admin1", "password": "admin1-password"}}, nil); err != nil {
		t.Fatal(err)
	}
	if g.admin, err = g.m.SignIn("admin1", "admin1-password"); err != nil {
		t.Fatal(err)
	}
	return g
}

// addGuideProvider creates a provider as Memos's "Custom" OAuth 2.0 form
// does, with the guide's values.
func (g *guideMemos) addGuideProvider(t *testing.T, id, title string) {
	t.Helper()
	if _, err := g.m.Call("IdentityProviderService/CreateIdentityProvider", g.admin, map[string]any{
		"identityProviderId": id,
		"identityProvider": map[string]any{"type": "OAUTH2", "title": title, "config": map[string]any{"oauth2Config": map[string]any{
			"clientId": "memos-guide", "clientSecret": guideSecret,
			"authUrl": g.discovery.Authorization, "tokenUrl": g.discovery.Token, "userInfoUrl": g.discovery.Userinfo,
			"scopes":       []string{"openid", "profile", "email"},
			"fieldMapping": map[string]string{"identifier": "preferred_username", "displayName": "name", "email": "email"},
		}}},
	}, nil); err != nil {
		t.Fatal(err)
	}
}

// ssoSignIn is a user pressing Memos's button for provider id: Authelia's
// portal, then Memos's callback (its web app calls SignIn with the code).
// It returns the user's Memos username and access token.
func (g *guideMemos) ssoSignIn(t *testing.T, id, user, password string) (string, string) {
	t.Helper()
	c := g.a.HTTPClient()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	callback := g.m.URL + "/auth/callback"
	q := url.Values{"client_id": {"memos-guide"}, "response_type": {"code"}, "scope": {"openid profile email"},
		"redirect_uri": {callback}, "state": {"guide-state-" + user}}
	resp, err := c.Get(g.discovery.Authorization + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = g.a.PortalSignIn(c, resp.Header.Get("Location"), user, password)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code for %s: %s", user, loc)
	}
	var ans struct {
		User struct {
			Username string `json:"username"`
		} `json:"user"`
		AccessToken string `json:"accessToken"`
	}
	if _, err := g.m.Call("AuthService/SignIn", "", map[string]any{"ssoCredentials": map[string]string{
		"idpName": "identity-providers/" + id, "code": code, "redirectUri": callback}}, &ans); err != nil {
		t.Fatalf("%s signs in with Memos's button: %v\n%s", user, err, g.m.Output())
	}
	return ans.User.Username, ans.AccessToken
}

func (g *guideMemos) note(t *testing.T, token, content string) {
	t.Helper()
	if _, err := g.m.Call("MemoService/CreateMemo", token, map[string]any{"memo": map[string]string{"content": content, "visibility": "PRIVATE"}}, nil); err != nil {
		t.Fatal(err)
	}
}

func (g *guideMemos) users(t *testing.T) []string {
	t.Helper()
	var ans struct {
		Users []struct {
			Username string `json:"username"`
		} `json:"users"`
	}
	if _, err := g.m.Call("UserService/ListUsers", g.admin, map[string]any{}, &ans); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, u := range ans.Users {
		out = append(out, u.Username)
	}
	return out
}

func (g *guideMemos) providers(t *testing.T) string {
	t.Helper()
	var raw json.RawMessage
	if _, err := g.m.Call("IdentityProviderService/ListIdentityProviders", "", map[string]any{}, &raw); err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// startProxy starts the proxy in front of g's Memos, with the bridge and
// the admin's personal access token, signing in at g's Authelia.
func (g *guideMemos) startProxy(t *testing.T) *realStand {
	t.Helper()
	var pat struct {
		Token string `json:"token"`
	}
	if _, err := g.m.Call("UserService/CreatePersonalAccessToken", g.admin, map[string]any{"parent": "users/admin1", "description": "oidc-proxy"}, &pat); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "memos-admin-token")
	os.WriteFile(tokenFile, []byte(pat.Token), 0o600)
	s := &stand{T: t, Logs: &syncBuffer{}}
	ln, bridgeLn := listen(t), listen(t)
	s.Issuer = g.a.Issuer
	s.URL = "http://" + ln.Addr().String()
	yaml := fmt.Sprintf(`
external_url: %q
upstream: %q
oidc:
  issuer: %q
  client_id: memos
  client_secret: %q
  scopes: [openid, profile, email, groups]
session:
  secret: %q
memos:
  bridge: true
  admin_token_file: %q
  bridge_listen: %q
`, s.URL, g.m.URL, g.a.Issuer, realSecret, sessionSecret, tokenFile, bridgeLn.Addr().String())
	s.Proxy = s.RealReplica(g.a, yaml, ln)
	serveOn(t, bridgeLn, s.Proxy.BridgeHandler())
	s.WaitReady()
	return &realStand{s, g.a}
}

// memosUserThrough signs user in through the proxy and returns the Memos
// user the browser then is, and the contents of the memos it sees.
func memosUserThrough(t *testing.T, rs *realStand, user, password string) (string, string) {
	t.Helper()
	c := rs.a.Browser("")
	resp, body, err := rs.a.SignIn(c, rs.URL+"/", user, password)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s through the proxy: %v %v %.300s\n%s", user, err, resp, body, rs.Logs.String())
	}
	call := func(method, token string, out any) {
		req, _ := http.NewRequest(http.MethodPost, rs.URL+"/memos.api.v1."+method, bytes.NewReader([]byte("{}")))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, out) != nil {
			t.Fatalf("%s through the proxy: %s %d %s", user, method, resp.StatusCode, raw)
		}
	}
	var tok struct {
		AccessToken string `json:"accessToken"`
	}
	call("AuthService/RefreshToken", "", &tok)
	var me struct {
		User struct {
			Username string `json:"username"`
		} `json:"user"`
	}
	call("AuthService/GetCurrentUser", tok.AccessToken, &me)
	var memos struct {
		Memos []struct {
			Content string `json:"content"`
		} `json:"memos"`
	}
	call("MemoService/ListMemos", tok.AccessToken, &memos)
	var contents []string
	for _, m := range memos.Memos {
		contents = append(contents, m.Content)
	}
	return me.User.Username, strings.Join(contents, "|")
}

// TestExistingMemosUsersKeepTheirAccounts: a Memos set up by its guide,
// alice and bob holding notes after signing in with its button; a second
// provider of another issuer; carol, a password user. Through the proxy
// (nothing but the bridge configured) alice and bob land on their own
// accounts and notes, no account is created for them, the other issuer's
// provider is untouched, carol's password account is not taken over, and
// the log says why she got another name.
func TestExistingMemosUsersKeepTheirAccounts(t *testing.T) {
	g := newGuideMemos(t)
	g.addGuideProvider(t, "authelia", "Authelia")
	if _, err := g.m.Call("IdentityProviderService/CreateIdentityProvider", g.admin, map[string]any{
		"identityProviderId": "elsewhere",
		"identityProvider": map[string]any{"type": "OAUTH2", "title": "Elsewhere", "config": map[string]any{"oauth2Config": map[string]any{
			"clientId": "x", "clientSecret": "y", "authUrl": "https://sso.elsewhere.test/authorize", "tokenUrl": "https://sso.elsewhere.test/token",
			"userInfoUrl": "https://sso.elsewhere.test/userinfo", "scopes": []string{"openid"},
			"fieldMapping": map[string]string{"identifier": "preferred_username"}}}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, password string }{{"alice", alicePassword}, {"bob", bobPassword}} {
		name, token := g.ssoSignIn(t, "authelia", u.name, u.password)
		if name != u.name {
			t.Fatalf("Memos's own SSO named %s %q", u.name, name)
		}
		g.note(t, token, u.name+"'s note from before the proxy")
	}
	if _, err := g.m.Call("UserService/CreateUser", g.admin, map[string]any{"user": map[string]string{"username": "carol", "password": "carol-memos-password"}}, nil); err != nil {
		t.Fatal(err)
	}
	before := g.users(t)
	elsewhere := func() string {
		all := g.providers(t)
		i := strings.Index(all, `"identity-providers/elsewhere"`)
		return all[i : i+strings.Index(all[i:], "}}}")]
	}
	elsewhereBefore := elsewhere()

	rs := g.startProxy(t)
	eventually(t, "the proxy did not register in Memos", func() bool {
		return strings.Contains(rs.Logs.String(), "registered as Memos's identity provider")
	})
	if !strings.Contains(rs.Logs.String(), "took over Memos's identity provider identity-providers/authelia") {
		t.Errorf("the log does not say what was done:\n%s", grepLines(rs.Logs.String(), "memos bridge"))
	}
	for _, u := range []struct{ name, password string }{{"alice", alicePassword}, {"bob", bobPassword}} {
		name, notes := memosUserThrough(t, rs, u.name, u.password)
		if name != u.name || !strings.Contains(notes, u.name+"'s note from before the proxy") {
			t.Errorf("%s through the proxy is Memos user %q with notes %q", u.name, name, notes)
		}
	}
	if after := g.users(t); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("accounts were created: %v → %v", before, after)
	}
	if got := elsewhere(); got != elsewhereBefore {
		t.Errorf("the other issuer's provider changed:\n%s\n%s", elsewhereBefore, got)
	}
	// carol has a password account in Memos and an Authelia account of the
	// same name: a sign-in never takes a password account over.
	name, _ := memosUserThrough(t, rs, "carol", "carol-password")
	if name == "carol" {
		t.Errorf("carol's password account was taken over by a sign-in")
	}
	if !strings.Contains(rs.Logs.String(), "the name is taken by another Memos account") {
		t.Errorf("the log does not say why carol got another name:\n%s", grepLines(rs.Logs.String(), "another username"))
	}
	// dave never signed in before: he gets his own new account.
	if name, _ := memosUserThrough(t, rs, "dave", "dave-password"); name != "dave" {
		t.Errorf("dave through the proxy: %q", name)
	}
	lines, _ := rs.Proxy.Check(t.Context())
	if !strings.Contains(strings.Join(lines, "\n"), "is Memos's identity provider identity-providers/authelia") {
		t.Errorf("-check does not name the provider taken over:\n%s", strings.Join(lines, "\n"))
	}
	// A restart (the provider now points at the proxy): the same.
	if did, err := rs.Proxy.RegisterWithMemos(t.Context()); err != nil || did != "updated identity-providers/authelia" {
		t.Errorf("registering again: %q %v", did, err)
	}
}

// TestTwoMatchingProvidersRefused: a Memos with two providers of the
// proxy's OpenID Provider: the bridge does not guess; the error names
// both and says what to set.
func TestTwoMatchingProvidersRefused(t *testing.T) {
	g := newGuideMemos(t)
	g.addGuideProvider(t, "authelia", "Authelia")
	g.addGuideProvider(t, "authelia-again", "Authelia (again)")
	rs := g.startProxy(t)
	_, err := rs.Proxy.RegisterWithMemos(t.Context())
	if err == nil || !strings.Contains(err.Error(), "identity-providers/authelia ") || !strings.Contains(err.Error(), "identity-providers/authelia-again") ||
		!strings.Contains(err.Error(), "set memos.idp_id") {
		t.Errorf("two candidates: %v", err)
	}
	eventually(t, "the error is not logged", func() bool {
		return strings.Contains(rs.Logs.String(), "set memos.idp_id")
	})
	lines, _ := rs.Proxy.Check(t.Context())
	if !strings.Contains(strings.Join(lines, "\n"), "set memos.idp_id") {
		t.Errorf("-check does not say it:\n%s", strings.Join(lines, "\n"))
	}
}
