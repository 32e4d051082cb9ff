package memos_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestMemosBridgeButton: Memos's sign-in button with PKCE, as its web app
// sends it; the code comes back with Memos's state, and Memos's SignIn with
// the verifier succeeds.
func TestMemosBridgeButton(t *testing.T) {
	s, _, _ := bridgeStand(t)
	verifier, challenge := pkcePair()

	// Without a proxy session the button signs in at the provider first,
	// then comes back to finish Memos's flow.
	c := s.Browser()
	resp, _ := navigate(t, c, s.URL+"/oauth2/memos/authorize?"+buttonQuery(s, challenge).Encode())
	resp, _ = login(t, c, resp, "alice", alicePassword)
	if resp.Request.URL.Path != "/auth/callback" || resp.Request.URL.Query().Get("state") != "memos-state-1" {
		t.Fatalf("the button's flow ended at %s", resp.Request.URL)
	}
	code := resp.Request.URL.Query().Get("code")
	body, _ := json.Marshal(map[string]any{"ssoCredentials": map[string]string{
		"idpName": "identity-providers/oidc-proxy", "code": code, "redirectUri": s.URL + "/auth/callback", "codeVerifier": verifier}})
	if resp, out := memosCall(t, c, s.URL, "AuthService/SignIn", "", string(body)); resp.StatusCode != 200 {
		t.Fatalf("Memos's SignIn with the button's code: %d %v", resp.StatusCode, out)
	}
	// The same code again is refused (Memos's SignIn fails).
	if resp, _ := memosCall(t, c, s.URL, "AuthService/SignIn", "", string(body)); resp.StatusCode == 200 {
		t.Errorf("a code worked twice")
	}
	// Requests the bridge refuses, without redirecting anywhere.
	for name, edit := range map[string]func(url.Values){
		"another client":       func(q url.Values) { q.Set("client_id", "evil") },
		"another redirect_uri": func(q url.Values) { q.Set("redirect_uri", "https://evil.example.com/auth/callback") },
		"plain PKCE":           func(q url.Values) { q.Set("code_challenge_method", "plain") },
		"no state":             func(q url.Values) { q.Del("state") },
		"implicit":             func(q url.Values) { q.Set("response_type", "token") },
	} {
		q := buttonQuery(s, challenge)
		edit(q)
		if resp, _ := authorize(t, s, c, q); resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("%s: %d %q", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// TestMemosBridgeTokenEndpoint: the bridge's token endpoint, as an
// attacker holding a code would try it.
func TestMemosBridgeTokenEndpoint(t *testing.T) {
	s, fm, bridge := bridgeStand(t)
	c := s.Browser()
	signInAs(s, c, "/", "alice", alicePassword)
	verifier, challenge := pkcePair()
	newCode := func(challenge string) string {
		_, q := authorize(t, s, c, buttonQuery(s, challenge))
		if q.Get("code") == "" {
			t.Fatal("no code")
		}
		return q.Get("code")
	}
	secret := fm.ClientSecret()
	token := func(code, id, secret, verifier, redirect string, basic bool) (int, string) {
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}}
		if verifier != "" {
			form.Set("code_verifier", verifier)
		}
		if !basic {
			form.Set("client_id", id)
			form.Set("client_secret", secret)
		}
		req, _ := http.NewRequest(http.MethodPost, bridge.String()+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic {
			req.SetBasicAuth(id, secret)
		}
		resp, body := do(t, http.DefaultClient, req)
		var out struct {
			AccessToken string `json:"access_token"`
			Error       string `json:"error"`
		}
		json.Unmarshal([]byte(body), &out)
		if out.AccessToken != "" {
			return resp.StatusCode, out.AccessToken
		}
		return resp.StatusCode, out.Error
	}
	cb := s.URL + "/auth/callback"

	// A stolen code with wrong client credentials is refused, and is not
	// spent: the real client still redeems it, once.
	code := newCode(challenge)
	for _, creds := range [][2]string{{"oidc-proxy", "wrong"}, {"evil", secret}, {"", ""}} {
		if status, got := token(code, creds[0], creds[1], verifier, cb, false); status != http.StatusUnauthorized || got != "invalid_client" {
			t.Errorf("credentials %v: %d %s", creds, status, got)
		}
	}
	status, access := token(code, "oidc-proxy", secret, verifier, cb, true)
	if status != 200 {
		t.Fatalf("the real client: %d %s", status, access)
	}
	if status, got := token(code, "oidc-proxy", secret, verifier, cb, false); status != http.StatusBadRequest || got != "invalid_grant" {
		t.Errorf("the code a second time: %d %s", status, got)
	}
	// Userinfo with the access token; refused without it.
	req, _ := http.NewRequest(http.MethodGet, bridge.String()+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	if resp, body := do(t, http.DefaultClient, req); resp.StatusCode != 200 || !strings.Contains(body, `"preferred_username":"alice"`) {
		t.Errorf("userinfo: %d %s", resp.StatusCode, body)
	}
	req.Header.Set("Authorization", "Bearer "+access+"x")
	if resp, _ := do(t, http.DefaultClient, req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("userinfo with a forged token: %d", resp.StatusCode)
	}
	// PKCE: no verifier, a wrong one, or a verifier for a code issued
	// without a challenge; another redirect URI; an expired code.
	for name, try := range map[string]func() (int, string){
		"no verifier": func() (int, string) { return token(newCode(challenge), "oidc-proxy", secret, "", cb, true) },
		"wrong verifier": func() (int, string) {
			v, _ := pkcePair()
			return token(newCode(challenge), "oidc-proxy", secret, v, cb, true)
		},
		"verifier, no PKCE": func() (int, string) { return token(newCode(""), "oidc-proxy", secret, verifier, cb, true) },
		"another redirect_uri": func() (int, string) {
			return token(newCode(challenge), "oidc-proxy", secret, verifier, "https://evil.example.com/", true)
		},
		"unknown code": func() (int, string) { return token("made-up", "oidc-proxy", secret, verifier, cb, true) },
		"expired after 1 minute": func() (int, string) {
			code := newCode(challenge)
			s.Skew.Add(int64(61 * time.Second))
			defer s.Skew.Add(-int64(61 * time.Second))
			return token(code, "oidc-proxy", secret, verifier, cb, true)
		},
	} {
		if status, got := try(); status != http.StatusBadRequest || got != "invalid_grant" {
			t.Errorf("%s: %d %s", name, status, got)
		}
	}
	// Both authentication methods at once, and another grant type.
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {"oidc-proxy"}, "client_secret": {secret}}
	resp, err := http.PostForm(bridge.String()+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("refresh_token grant: %d", resp.StatusCode)
	}
	// The bridge's endpoints are not on the public listener.
	if code := statusOf(t, http.DefaultClient, s.URL+"/token"); code == 200 {
		t.Errorf("the public listener serves /token")
	}
}

// TestMemosBridgeUsernames: an identifier Memos cannot take as a username
// still signs in (Memos generates a name and links it), and the proxy says
// so in the log.
func TestMemosBridgeUsernames(t *testing.T) {
	s, fm, _ := bridgeStand(t)
	s.Alice.Username = "alice.liddell" // "." is not allowed in Memos
	c := s.Browser()
	signInAs(s, c, "/", "alice.liddell", alicePassword)
	user, _ := memosWhoAmI(t, c, s.URL)
	if user == "" || user == "alice.liddell" {
		t.Fatalf("Memos user %q", user)
	}
	if !strings.Contains(s.Logs.String(), "Memos gave the user another username") {
		t.Errorf("nothing in the log about the username")
	}
	// Signing in again finds the same (linked) user.
	c2 := s.Browser()
	signInAs(s, c2, "/", "alice.liddell", alicePassword)
	if again, _ := memosWhoAmI(t, c2, s.URL); again != user || fm.UserCount() != 1 {
		t.Errorf("second sign-in: %q, %d users", again, fm.UserCount())
	}
}

// TestMemosBridgeMemosRefuses: with registration closed in Memos the user
// still reaches the proxy, and Memos's sign-in page explains instead of
// looping.
func TestMemosBridgeMemosRefuses(t *testing.T) {
	s, fm, _ := bridgeStand(t)
	fm.ClosedRegistration = true
	c := s.Browser()
	resp, _ := signInAs(s, c, "/", "alice", alicePassword)
	if resp.StatusCode != 200 {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	if !strings.Contains(s.Logs.String(), "user registration is not allowed") {
		t.Errorf("the log does not say why")
	}
	resp, body := navigate(t, noRedirect(c), s.URL+"/auth")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Memos did not accept") || strings.Contains(body, "registration") {
		t.Errorf("/auth with Memos refusing: %d %s", resp.StatusCode, body)
	}
}

// TestMemosBridgeStreamsAndRanges: the Memos web app's server-sent events
// arrive as they are sent, and attachments answer Range requests.
func TestMemosBridgeStreamsAndRanges(t *testing.T) {
	s, _, _ := bridgeStand(t)
	c := s.Browser()
	signInAs(s, c, "/", "alice", alicePassword)
	_, access := memosWhoAmI(t, c, s.URL)
	req := mustReq(http.MethodGet, s.URL+"/api/v1/sse")
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 256)
	n, err := resp.Body.Read(buf)
	first := time.Now()
	if err != nil || !strings.Contains(string(buf[:n]), `"event":0`) {
		t.Fatalf("first event: %q %v", buf[:n], err)
	}
	rest, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(rest), `"event":2`) || time.Since(first) < 150*time.Millisecond {
		t.Errorf("the stream was buffered: the first event came with the rest")
	}

	req = mustReq(http.MethodGet, s.URL+"/file/attachments/1/video.mp4")
	req.Header.Set("Range", "bytes=1000-1999")
	resp2, body := do(t, c, req) // the memos_refresh cookie authenticates
	if resp2.StatusCode != http.StatusPartialContent || len(body) != 1000 || body[0] != byte(1000%251) || resp2.Header.Get("Content-Range") != "bytes 1000-1999/65536" {
		t.Errorf("range: %d %d bytes %q", resp2.StatusCode, len(body), resp2.Header.Get("Content-Range"))
	}
}
