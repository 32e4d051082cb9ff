package proxy_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// bearerStand is a stand whose route accepts bearer tokens: machines
// "backup" (opaque tokens) and "ci" (JWT access tokens), people's tokens
// of the command-line tools "cli" (opaque) and "cli-jwt", and any token
// for the audience "notes-api"; scope "notes" required. The provider
// knows another tool, "other-cli", and another machine, "other-bot".
func bearerStand(t *testing.T, edits ...func(*config.Config)) *stand {
	s := newStand(t, func(c *config.Config) {
		c.Bearer = &config.Bearer{Machines: []string{"backup", "ci"}, Clients: []string{"cli", "cli-jwt"},
			Audiences: []string{"notes-api"}, Scopes: []string{"notes"}, ScopesMatch: "all", Introspect: "opaque", CacheFor: 5 * time.Minute}
		for _, e := range edits {
			e(c)
		}
	}, func(o *opCfg) {
		o.IntrospectionPost = true
		o.Users = append(o.Users, &proxytest.OPUser{Username: "bob", Password: bobPassword, Name: "Bob", Email: "bob@example.com"})
	})
	for _, c := range []proxytest.ScriptClient{
		{ID: "backup", Secret: "backup-secret", Scopes: []string{"notes", "other"}},
		{ID: "ci", Secret: "ci-secret", Scopes: []string{"notes"}, JWTAccessTokens: true},
		{ID: "cli", Secret: "cli-secret", Scopes: []string{"openid", "profile", "email", "groups", "notes"}},
		{ID: "cli-jwt", Secret: "cli-secret", Scopes: []string{"openid", "profile", "email", "groups", "notes"}, JWTAccessTokens: true},
		{ID: "other-cli", Secret: "other-secret", Scopes: []string{"openid", "profile", "notes"}},
		{ID: "other-bot", Secret: "other-secret", Scopes: []string{"notes"}, Audience: []string{"notes-api", "billing-api"}},
	} {
		s.OP.RegisterScriptClient(c)
	}
	return s
}

// clientCredentials gets a machine token at the test provider's token
// endpoint, as a script does.
func clientCredentials(t *testing.T, s *stand, id, secret string, form url.Values) string {
	t.Helper()
	form.Set("grant_type", "client_credentials")
	form.Set("client_id", id)
	form.Set("client_secret", secret)
	resp, err := http.PostForm(s.Issuer+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 || tok.AccessToken == "" {
		t.Fatalf("client credentials for %s: %d %v", id, resp.StatusCode, err)
	}
	return tok.AccessToken
}

// bearerGet sends GET path with the token (and the extra headers).
func bearerGet(t *testing.T, base, path, tok string, extra ...string) (*http.Response, string) {
	t.Helper()
	req := mustReq(http.MethodGet, base+path)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Add(extra[i], extra[i+1])
	}
	resp, err := noRedirect(http.DefaultClient).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestBearerTokens: what each kind of token gives the upstream, and every
// refusal with its status and WWW-Authenticate, nothing reaching the
// upstream.
func TestBearerTokens(t *testing.T) {
	s := bearerStand(t)
	bob := s.OP.UserByName("bob")
	alice := s.Alice

	// The headers a browser session of alice gives the upstream, to
	// compare with her token's.
	c := s.SignIn("/")
	get(t, s.URL, "/as-session", cookieHeader(c, s.URL))
	session := s.LastSeen().Header

	machine := clientCredentials(t, s, "backup", "backup-secret", url.Values{"scope": {"notes"}})
	machineJWT := clientCredentials(t, s, "ci", "ci-secret", url.Values{"scope": {"notes"}})
	person := s.OP.IssuePersonToken("cli", alice, "openid", "profile", "email", "groups", "notes")
	personJWT := s.OP.IssuePersonToken("cli-jwt", alice, "openid", "profile", "email", "groups", "notes")

	for _, tc := range []struct{ name, tok, client string }{
		{"machine, client credentials, opaque", machine, "backup"},
		{"machine, client credentials, JWT", machineJWT, "ci"},
	} {
		resp, _ := bearerGet(t, s.URL, "/api/m", tc.tok, "Remote-User", "admin", "Remote-Groups", "admins", "Remote-Auth", "session")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", tc.name, resp.StatusCode)
		}
		h := s.LastSeen().Header
		if h.Get("Remote-User") != "" || h.Get("Remote-Groups") != "" || h.Get("Remote-Name") != "" || h.Get("Remote-Email") != "" {
			t.Errorf("%s: a person's headers reached the upstream: %v", tc.name, h)
		}
		if h.Get("Remote-Client") != tc.client || h.Get("Remote-Auth") != "bearer" || h.Get("Remote-Scopes") != "notes" {
			t.Errorf("%s: machine headers %q %q %q", tc.name, h.Get("Remote-Client"), h.Get("Remote-Auth"), h.Get("Remote-Scopes"))
		}
		if len(h.Values("Remote-Auth")) != 1 {
			t.Errorf("%s: the client's Remote-Auth passed: %v", tc.name, h.Values("Remote-Auth"))
		}
	}
	for _, tc := range []struct{ name, tok, client string }{
		{"person, device flow, opaque", person, "cli"},
		{"person, device flow, JWT", personJWT, "cli-jwt"},
	} {
		resp, _ := bearerGet(t, s.URL, "/api/p", tc.tok, "Remote-User", "admin")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", tc.name, resp.StatusCode)
		}
		h := s.LastSeen().Header
		for _, name := range []string{"Remote-User", "Remote-Name", "Remote-Email", "Remote-Groups"} {
			if h.Get(name) != session.Get(name) || len(h.Values(name)) != 1 {
				t.Errorf("%s: %s is %q, her session gives %q", tc.name, name, h.Values(name), session.Get(name))
			}
		}
		if h.Get("Remote-Client") != tc.client || h.Get("Remote-Auth") != "bearer" {
			t.Errorf("%s: bearer headers %q %q", tc.name, h.Get("Remote-Client"), h.Get("Remote-Auth"))
		}
	}

	// Refusals.
	expired := s.OP.IssueExpired("backup", "notes")
	revoked := clientCredentials(t, s, "backup", "backup-secret", url.Values{"scope": {"notes"}})
	s.OP.RevokeToken(revoked)
	noScope := clientCredentials(t, s, "backup", "backup-secret", url.Values{"scope": {"other"}})
	otherCLI := s.OP.IssuePersonToken("other-cli", bob, "openid", "profile", "notes")
	otherBot := clientCredentials(t, s, "other-bot", "other-secret", url.Values{"scope": {"notes"}, "audience": {"billing-api"}})
	now := time.Now().Unix()
	// An ID token and a logout token signed by the provider, with every
	// claim an accepted access token has: only their typ tells them apart.
	idToken := s.OP.SignJWT("JWT", map[string]any{"iss": s.Issuer, "sub": alice.Subject(), "aud": []string{"notes-api"}, "azp": "cli",
		"exp": now + 600, "iat": now, "client_id": "cli", "scp": []string{"notes"}})
	logoutToken := s.OP.SignJWT("logout+jwt", map[string]any{"iss": s.Issuer, "sub": alice.Subject(), "aud": []string{"notes-api"},
		"iat": now, "jti": "x", "events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}, "exp": now + 600,
		"client_id": "cli", "scp": []string{"notes"}})
	wrongIssuer := s.OP.SignJWT("at+jwt", map[string]any{"iss": "https://evil.example", "client_id": "ci", "scp": []string{"notes"},
		"exp": now + 600, "iat": now, "aud": []string{"notes-api"}})
	noneAlg := b64s(`{"alg":"none","typ":"at+jwt"}`) + "." + b64s(`{"iss":"`+s.Issuer+`","client_id":"ci","scp":["notes"],"exp":`+itoa(now+600)+`}`) + "."
	jwks := fetch(t, s.Issuer+"/keys")
	hs256 := hmacJWT(jwks, `{"alg":"HS256","typ":"at+jwt"}`, `{"iss":"`+s.Issuer+`","client_id":"ci","scp":["notes"],"exp":`+itoa(now+600)+`}`)
	for _, tc := range []struct {
		name, tok string
		status    int
		errCode   string
	}{
		{"expired", expired, 401, "invalid_token"},
		{"revoked (introspection says inactive)", revoked, 401, "invalid_token"},
		{"missing scope", noScope, 403, "insufficient_scope"},
		{"another application's tool", otherCLI, 401, "invalid_token"},
		{"another machine, for another audience", otherBot, 401, "invalid_token"},
		{"an ID token", idToken, 401, "invalid_token"},
		{"a logout token", logoutToken, 401, "invalid_token"},
		{"another issuer", wrongIssuer, 401, "invalid_token"},
		{"alg none", noneAlg, 401, "invalid_token"},
		{"HS256 with the key set as its secret", hs256, 401, "invalid_token"},
		{"made up", "authelia_at_made-up", 401, "invalid_token"},
	} {
		before := s.SeenCount()
		resp, body := bearerGet(t, s.URL, "/api/refused", tc.tok)
		www := resp.Header.Get("Www-Authenticate")
		if resp.StatusCode != tc.status || !strings.HasPrefix(www, "Bearer ") || !strings.Contains(www, `error="`+tc.errCode+`"`) ||
			!strings.Contains(body, `"error":"`+tc.errCode+`"`) {
			t.Errorf("%s: %d, WWW-Authenticate %q, %s", tc.name, resp.StatusCode, www, body)
		}
		if tc.errCode == "insufficient_scope" && !strings.Contains(www, `scope="notes"`) {
			t.Errorf("%s: WWW-Authenticate names no scope: %q", tc.name, www)
		}
		if s.SeenCount() != before {
			t.Errorf("%s: the request reached the upstream", tc.name)
		}
	}
	// The same kinds of token from an allowed client with the audience
	// the route accepts pass: the audience opens it.
	ok := clientCredentials(t, s, "other-bot", "other-secret", url.Values{"scope": {"notes"}, "audience": {"notes-api"}})
	if resp, _ := bearerGet(t, s.URL, "/api/aud", ok); resp.StatusCode != 200 {
		t.Errorf("a machine token for the audience notes-api: %d", resp.StatusCode)
	}
	logs := s.Logs.String()
	for _, tok := range []string{machine, person, revoked, expired, idToken} {
		if strings.Contains(logs, tok) {
			t.Errorf("a token was logged")
		}
	}
}

// TestBearerAccessRulesAndUserinfo: a person's token is judged by the
// route's access rules, with the claims userinfo gives for the token.
func TestBearerAccessRulesAndUserinfo(t *testing.T) {
	s := bearerStand(t, func(c *config.Config) { c.Access = config.Access{AllowedGroups: []string{"admins"}} })
	bob := s.OP.UserByName("bob")
	if resp, _ := bearerGet(t, s.URL, "/api/alice", s.OP.IssuePersonToken("cli", s.Alice, "openid", "groups", "notes")); resp.StatusCode != 200 {
		t.Errorf("alice (admins): %d", resp.StatusCode)
	}
	before := s.SeenCount()
	resp, body := bearerGet(t, s.URL, "/api/bob", s.OP.IssuePersonToken("cli", bob, "openid", "groups", "notes"))
	if resp.StatusCode != 403 || !strings.Contains(body, "access_denied") {
		t.Errorf("bob (no group): %d %s", resp.StatusCode, body)
	}
	// A machine is not a person: the group rule is not its to pass.
	if resp, _ := bearerGet(t, s.URL, "/api/m", clientCredentials(t, s, "backup", "backup-secret", url.Values{"scope": {"notes"}})); resp.StatusCode != 200 {
		t.Errorf("a listed machine on a route with a group rule: %d", resp.StatusCode)
	}
	if s.SeenCount() != before+1 {
		t.Errorf("bob's request reached the upstream")
	}
}

// TestBearerCache: a verified token costs the provider nothing more;
// 64 concurrent first requests with one new token make ONE introspection;
// a refused token repeated reaches the provider once; the provider down
// is a 503, never a pass.
func TestBearerCache(t *testing.T) {
	s := bearerStand(t)
	tok := clientCredentials(t, s, "backup", "backup-secret", url.Values{"scope": {"notes"}})
	before := s.OP.Introspections()
	var wg sync.WaitGroup
	codes := make(chan int, 64)
	for range 64 {
		wg.Go(func() {
			resp, _ := bearerGet(t, s.URL, "/api/c", tok)
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("a concurrent first request: %d", c)
		}
	}
	if n := s.OP.Introspections() - before; n != 1 {
		t.Errorf("64 concurrent first requests made %d introspections, want 1", n)
	}
	for range 10 {
		bearerGet(t, s.URL, "/api/c", tok)
	}
	if n := s.OP.Introspections() - before; n != 1 {
		t.Errorf("cached: %d introspections in all", n)
	}
	bad := "authelia_at_0000000000000000000000000000000000"
	before = s.OP.Introspections()
	for range 5 {
		if resp, _ := bearerGet(t, s.URL, "/api/bad", bad); resp.StatusCode != 401 {
			t.Errorf("a bad token: %d", resp.StatusCode)
		}
	}
	if n := s.OP.Introspections() - before; n != 1 {
		t.Errorf("a refused token sent 5 times: %d introspections, want 1", n)
	}
	// The provider down: a new token is a 503, never a pass; the cached
	// one still passes.
	fresh := clientCredentials(t, s, "backup", "backup-secret", url.Values{"scope": {"notes"}})
	s.OPDown.Store(true)
	before2 := s.SeenCount()
	resp, _ := bearerGet(t, s.URL, "/api/down", fresh)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("provider down: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if s.SeenCount() != before2 {
		t.Errorf("a token the provider could not check reached the upstream")
	}
	if resp, _ := bearerGet(t, s.URL, "/api/cached", tok); resp.StatusCode != 200 {
		t.Errorf("a cached token with the provider down: %d", resp.StatusCode)
	}
}

// TestBearerRevocationWithIntrospectAlways: a revoked JWT access token
// still verifies by its signature until it expires (introspect: opaque);
// with introspect: always it is refused at once, after the cache bound.
func TestBearerRevocationWithIntrospectAlways(t *testing.T) {
	s := bearerStand(t, func(c *config.Config) { c.Bearer.Introspect = "always"; c.Bearer.CacheFor = time.Second })
	tok := clientCredentials(t, s, "ci", "ci-secret", url.Values{"scope": {"notes"}})
	if resp, _ := bearerGet(t, s.URL, "/api/1", tok); resp.StatusCode != 200 {
		t.Fatalf("a JWT access token, introspected: %d", resp.StatusCode)
	}
	if s.OP.Introspections() == 0 {
		t.Errorf("introspect: always did not introspect the JWT")
	}
	s.OP.RevokeToken(tok)
	eventually(t, "the revoked JWT still passes", func() bool {
		resp, _ := bearerGet(t, s.URL, "/api/2", tok)
		return resp.StatusCode == 401
	})
}

// TestBearerHostile: malformed Authorization headers get 401 (never a
// sign-in redirect), and a route without bearer passes Authorization to
// the session path as before.
func TestBearerHostile(t *testing.T) {
	s := bearerStand(t)
	for _, h := range [][]string{
		{"Bearer "}, {"Bearer a b"}, {"Bearer  a"}, {"Bearer a\x01"}, {"Bearer é"}, {"Bearer =abc"}, {"Bearer ab=c"},
		{"Bearer " + strings.Repeat("a", 9000)}, {"Bearer abc", "Bearer abc"}, {"bearer abc", "Basic eA=="},
	} {
		req := mustReq(http.MethodGet, s.URL+"/page")
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		req.Header["Authorization"] = h
		before := s.SeenCount()
		resp, err := noRedirect(http.DefaultClient).Do(req)
		if err != nil {
			continue // a header Go's client would not send
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("Www-Authenticate"), "invalid_token") {
			t.Errorf("Authorization %q: %d %q", h, resp.StatusCode, resp.Header.Get("Www-Authenticate"))
		}
		if s.SeenCount() != before {
			t.Errorf("Authorization %q reached the upstream", h)
		}
	}
	// Not Bearer: the session path (a browser is sent to sign in).
	req := mustReq(http.MethodGet, s.URL+"/page")
	req.Header.Set("Authorization", "Basic eDp5")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Accept", "text/html")
	resp, _ := do(t, noRedirect(http.DefaultClient), req)
	if resp.StatusCode != http.StatusFound {
		t.Errorf("Basic on a bearer route: %d, want the sign-in redirect", resp.StatusCode)
	}
}

func b64s(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func fetch(t *testing.T, u string) []byte {
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// hmacJWT signs with HS256 using the provider's key set as the secret:
// the old confusion attack on verifiers that take the alg from the token.
func hmacJWT(secret []byte, header, claims string) string {
	in := b64s(header) + "." + b64s(claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// TestBearerVerdictSharedOnRedis: with the Redis store, a token one
// replica verified is taken by the other from Redis, without asking the
// provider again; Redis holds no token.
func TestBearerVerdictSharedOnRedis(t *testing.T) {
	rs := startRedis(t)
	edit := func(c *config.Config) {
		useRedis(rs)(c)
		c.Bearer = &config.Bearer{Machines: []string{"backup"}, Scopes: []string{"notes"}, ScopesMatch: "all", Introspect: "opaque", CacheFor: 5 * time.Minute}
	}
	s := newStand(t, edit, func(o *opCfg) { o.IntrospectionPost = true })
	s.OP.RegisterScriptClient(proxytest.ScriptClient{ID: "backup", Secret: "backup-secret", Scopes: []string{"notes"}})
	replica := replicaOf(s, edit)
	tok := s.OP.IssueMachineToken("backup", "notes")
	if resp, _ := bearerGet(t, s.URL, "/api/a", tok); resp.StatusCode != 200 {
		t.Fatalf("replica A: %d", resp.StatusCode)
	}
	if resp, _ := bearerGet(t, replica, "/api/b", tok); resp.StatusCode != 200 {
		t.Fatalf("replica B: %d", resp.StatusCode)
	}
	if n := s.OP.Introspections(); n != 1 {
		t.Errorf("two replicas made %d introspections, want 1", n)
	}
	if strings.Contains(rs.dump(), tok) || strings.Contains(rs.dump(), strings.TrimPrefix(tok, "authelia_at_")) {
		t.Errorf("Redis holds the token")
	}
}

// TestBearerGate: a client that sends made-up tokens one after another
// is held back after a few refusals (429, Retry-After) without the
// provider being asked; other clients' tokens still pass.
func TestBearerGate(t *testing.T) {
	s := bearerStand(t)
	before := s.OP.Introspections()
	limited := false
	for i := range 12 {
		resp, _ := bearerGet(t, s.URL, "/api/x", "authelia_at_made-up-"+itoa(int64(i)))
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "" {
			limited = true
			break
		}
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("made-up token %d: %d", i, resp.StatusCode)
		}
	}
	if !limited {
		t.Fatalf("12 made-up tokens were all sent to the provider")
	}
	asked := s.OP.Introspections() - before
	for i := range 5 {
		bearerGet(t, s.URL, "/api/x", "authelia_at_more-"+itoa(int64(i)))
	}
	if n := s.OP.Introspections() - before; n != asked || asked > 6 {
		t.Errorf("the provider was asked %d times (%d before the 429)", n, asked)
	}
}
