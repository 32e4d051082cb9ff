package proxytest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// FakeMemos stands in for Memos 0.30, for what the real one cannot be
// made to do (faults), as ../shared/PEERS.md describes it:
// Connect JSON at /memos.api.v1.<Service>/<Method>; a 15-minute access
// token and a memos_refresh cookie rotated on every use (an old one
// replayed is refused); SSO SignIn that really calls the registered
// provider's token endpoint (HTTP Basic first, then the form with the same
// code) and userinfo endpoint, links users by (provider, identifier) and
// creates them with the identifier as username only when it is a valid,
// unreserved, free name; identity providers registered by an admin's
// token, a duplicate id answering 500; an invalid bearer counted as
// anonymous. Users have roles: on an empty instance the first CreateUser,
// even anonymous, makes an ADMIN; later ones make USERs (anonymously while
// registration is open); only an admin changes a role (UpdateUser with a
// mask); personal access tokens are made by their user only. Its web app
// ("/") is a page whose script does what Memos's does at start: with no
// admin yet it shows the setup page; else RefreshToken with the cookie,
// then GetCurrentUser.
type FakeMemos struct {
	Mu         sync.Mutex
	Users      map[string]*FakeUser // by username
	Identities map[string]string    // idp uid + "\x00" + identifier → username
	IdPs       map[string]json.RawMessage
	Access     map[string]string // access token or personal access token → username
	Refresh    map[string]*FakeRefresh
	AdminPAT   string
	// closedRegistration refuses to create users (DisallowUserRegistration).
	ClosedRegistration bool
	// tokenAuth records how each token request authenticated: "basic" or
	// "form".
	TokenAuth []string
	SignIns   int
	// signInClients records the User-Agent and X-Forwarded-For of each SSO
	// SignIn.
	SignInClients []string
	// owner is the admin an existing instance was set up with ("" for an
	// empty instance); userCount leaves it out.
	Owner string
	// pats counts the personal access tokens created; updates records
	// every UpdateUser as "user:mask".
	PATs    int
	Updates []string
	client  *http.Client
}

type FakeUser struct {
	Username, DisplayName, Email, Password string
	Role                                   string // ADMIN or USER
}

type FakeRefresh struct {
	User    string
	Revoked bool
}

const MemosAdminPAT = "memos_pat_admin0123456789abcdef0123456789ab"

// NewFakeMemos is an existing instance: set up by its admin "steven",
// whose personal access token is MemosAdminPAT.
func NewFakeMemos() *FakeMemos {
	m := NewEmptyMemos()
	m.Owner, m.AdminPAT = "steven", MemosAdminPAT
	m.Users["steven"] = &FakeUser{Username: "steven", Password: "steven-password", Role: "ADMIN"}
	m.Access[MemosAdminPAT] = "steven"
	return m
}

// NewEmptyMemos is a Memos that has just been started: no users at all.
func NewEmptyMemos() *FakeMemos {
	return &FakeMemos{
		Users: map[string]*FakeUser{}, Identities: map[string]string{}, IdPs: map[string]json.RawMessage{},
		Access: map[string]string{}, Refresh: map[string]*FakeRefresh{},
		client: &http.Client{Timeout: 10 * time.Second},
	}
}

// admin is the instance's admin, or "" while it has none (m.Mu held).
func (m *FakeMemos) admin() string {
	if m.Owner != "" {
		return m.Owner
	}
	for _, u := range m.Users {
		if u.Role == "ADMIN" {
			return u.Username
		}
	}
	return ""
}

func randomHex() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var memosUsername = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,34}[a-zA-Z0-9])?$`)

func connectError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

func (m *FakeMemos) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if method, ok := strings.CutPrefix(r.URL.Path, "/memos.api.v1."); ok {
		if r.Method != http.MethodPost {
			connectError(w, http.StatusMethodNotAllowed, "unimplemented", "POST only")
			return
		}
		m.connect(w, r, method)
		return
	}
	switch {
	case r.URL.Path == "/healthz":
		io.WriteString(w, "Service ready.")
	case r.URL.Path == "/api/v1/memos":
		// What an API client gets: who Memos thinks is calling, and which
		// identity headers reached it.
		json.NewEncoder(w).Encode(map[string]any{"caller": m.Caller(r), "remoteUser": r.Header.Values("Remote-User")})
	case r.URL.Path == "/api/v1/sse":
		m.sse(w, r)
	case strings.HasPrefix(r.URL.Path, "/file/attachments/"):
		if m.Caller(r) == "" && m.cookieUser(r) == "" {
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		}
		http.ServeContent(w, r, "video.mp4", time.Unix(0, 0), bytes.NewReader(attachment))
	case r.URL.Path == "/auth/signup":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><title>Memos</title><h1 id="setup">Set up your instance — Create admin account</h1>`)
	default:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, memosApp)
	}
}

// attachment is a 64 KiB file whose every byte says where it is.
var attachment = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

// memosApp is the web app: it shows the notes of the user Memos says is
// signed in, or goes to /auth.
const memosApp = `<!doctype html><title>Memos</title><div id="app">loading</div><script>
(async () => {
  const post = (m, h) => fetch("/memos.api.v1." + m, {method: "POST", headers: Object.assign({"Content-Type": "application/json"}, h || {}), body: "{}"});
  const profile = await post("InstanceService/GetInstanceProfile");
  if (profile.ok && !(await profile.json()).admin) { location.href = "/auth/signup"; return; }
  let token = localStorage.getItem("memos_access_token");
  if (!token) {
    const r = await post("AuthService/RefreshToken");
    if (r.ok) { token = (await r.json()).accessToken; localStorage.setItem("memos_access_token", token); }
  }
  const me = token ? await post("AuthService/GetCurrentUser", {Authorization: "Bearer " + token}) : null;
  if (!me || !me.ok) { location.href = "/auth"; return; }
  const u = (await me.json()).user;
  document.getElementById("app").innerHTML = '<h1 id="notes"></h1>';
  document.getElementById("notes").textContent = "Notes of " + u.username;
})();
</script>`

// caller is the user of the request's bearer token, or "" (anonymous).
func (m *FakeMemos) Caller(r *http.Request) string {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	m.Mu.Lock()
	defer m.Mu.Unlock()
	return m.Access[token]
}

func (m *FakeMemos) cookieUser(r *http.Request) string {
	c, err := r.Cookie("memos_refresh")
	if err != nil {
		return ""
	}
	m.Mu.Lock()
	defer m.Mu.Unlock()
	if rec := m.Refresh[c.Value]; rec != nil && !rec.Revoked {
		return rec.User
	}
	return ""
}

// session starts a Memos session for user: an access token, and the
// refresh cookie set in w.
func (m *FakeMemos) session(w http.ResponseWriter, r *http.Request, user string) string {
	access, refresh := "memos_at_"+randomHex(), randomHex()
	m.Mu.Lock()
	m.Access[access] = user
	m.Refresh[refresh] = &FakeRefresh{User: user}
	m.Mu.Unlock()
	c := &http.Cookie{Name: "memos_refresh", Value: refresh, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		MaxAge: 30 * 24 * 3600, Secure: r.Header.Get("X-Forwarded-Proto") == "https"}
	w.Header().Add("Set-Cookie", c.String())
	return access
}

func (m *FakeMemos) userJSON(name string) map[string]any {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	u := m.Users[name]
	role := u.Role
	if role == "" {
		role = "USER"
	}
	return map[string]any{"name": "users/" + u.Username, "username": u.Username, "displayName": u.DisplayName, "email": u.Email, "state": "NORMAL", "role": role}
}

func (m *FakeMemos) connect(w http.ResponseWriter, r *http.Request, method string) {
	var body map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		connectError(w, http.StatusBadRequest, "invalid_argument", "bad JSON")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch method {
	case "AuthService/SignIn":
		m.signIn(w, r, body)
	case "AuthService/RefreshToken":
		c, err := r.Cookie("memos_refresh")
		m.Mu.Lock()
		var rec *FakeRefresh
		if err == nil {
			rec = m.Refresh[c.Value]
		}
		ok := rec != nil && !rec.Revoked
		if ok {
			rec.Revoked = true // rotated: the old one is spent
		}
		m.Mu.Unlock()
		if !ok {
			connectError(w, http.StatusUnauthorized, "unauthenticated", "refresh token revoked or invalid")
			return
		}
		access := m.session(w, r, rec.User)
		json.NewEncoder(w).Encode(map[string]any{"accessToken": access, "expiresAt": time.Now().Add(15 * time.Minute).UTC().Format(time.RFC3339)})
	case "AuthService/GetCurrentUser": // by bearer, or by the refresh cookie
		user := m.Caller(r)
		if user == "" {
			user = m.cookieUser(r)
		}
		if user == "" {
			connectError(w, http.StatusUnauthorized, "unauthenticated", "user not found")
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"user": m.userJSON(user)})
	case "AuthService/SignOut":
		if m.Caller(r) == "" {
			connectError(w, http.StatusUnauthorized, "unauthenticated", "user not found")
			return
		}
		if c, err := r.Cookie("memos_refresh"); err == nil {
			m.Mu.Lock()
			if rec := m.Refresh[c.Value]; rec != nil {
				rec.Revoked = true
			}
			m.Mu.Unlock()
		}
		http.SetCookie(w, &http.Cookie{Name: "memos_refresh", Path: "/", MaxAge: -1, HttpOnly: true})
		io.WriteString(w, "{}")
	case "InstanceService/GetInstanceProfile":
		m.Mu.Lock()
		admin := m.admin()
		m.Mu.Unlock()
		profile := map[string]any{"version": "0.30.0"}
		if admin != "" {
			profile["admin"] = m.userJSON(admin)
		}
		json.NewEncoder(w).Encode(profile)
	case "UserService/CreateUser":
		m.createUser(w, r, body)
	case "UserService/UpdateUser":
		m.updateUser(w, r, body)
	case "UserService/CreatePersonalAccessToken":
		var parent string
		json.Unmarshal(body["parent"], &parent)
		caller := m.Caller(r)
		if caller == "" || "users/"+caller != parent {
			connectError(w, http.StatusForbidden, "permission_denied", "permission denied")
			return
		}
		token := "memos_pat_" + randomHex()
		m.Mu.Lock()
		m.Access[token] = caller
		m.PATs++
		m.Mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"personalAccessToken": map[string]string{"name": parent + "/personalAccessTokens/" + randomHex()[:8]}, "token": token})
	case "IdentityProviderService/ListIdentityProviders":
		m.Mu.Lock()
		var list []json.RawMessage
		for _, idp := range m.IdPs {
			var v map[string]any
			json.Unmarshal(idp, &v)
			delete(v["config"].(map[string]any)["oauth2Config"].(map[string]any), "clientSecret") // never returned
			b, _ := json.Marshal(v)
			list = append(list, b)
		}
		m.Mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"identityProviders": list})
	case "IdentityProviderService/CreateIdentityProvider", "IdentityProviderService/UpdateIdentityProvider":
		if m.Role(m.Caller(r)) != "ADMIN" {
			connectError(w, http.StatusUnauthorized, "unauthenticated", "user not found")
			return
		}
		var idp struct {
			Name string `json:"name"`
		}
		json.Unmarshal(body["identityProvider"], &idp)
		name := idp.Name
		if method == "IdentityProviderService/CreateIdentityProvider" {
			var id string
			json.Unmarshal(body["identityProviderId"], &id)
			name = "identity-providers/" + id
		}
		m.Mu.Lock()
		_, exists := m.IdPs[name]
		create := method == "IdentityProviderService/CreateIdentityProvider"
		if create == exists {
			m.Mu.Unlock()
			if create {
				connectError(w, http.StatusInternalServerError, "internal", "UNIQUE constraint failed: idp.uid")
			} else {
				connectError(w, http.StatusNotFound, "not_found", "identity provider not found")
			}
			return
		}
		stored := body["identityProvider"]
		if !create { // as Memos: only the fields of updateMask change; an empty clientSecret keeps the old one
			stored = updateIdP(m.IdPs[name], body["identityProvider"], body["updateMask"])
		}
		m.IdPs[name] = stored
		m.Mu.Unlock()
		w.Write(stored)
	default:
		connectError(w, http.StatusNotFound, "unimplemented", method)
	}
}

func (m *FakeMemos) signIn(w http.ResponseWriter, r *http.Request, body map[string]json.RawMessage) {
	if raw, ok := body["passwordCredentials"]; ok {
		var pc struct{ Username, Password string }
		json.Unmarshal(raw, &pc)
		m.Mu.Lock()
		u := m.Users[pc.Username]
		m.Mu.Unlock()
		if u == nil || u.Password == "" || u.Password != pc.Password {
			connectError(w, http.StatusUnauthorized, "unauthenticated", "unmatched username and password")
			return
		}
		access := m.session(w, r, u.Username)
		json.NewEncoder(w).Encode(map[string]any{"user": m.userJSON(u.Username), "accessToken": access})
		return
	}
	var sso struct{ IdpName, Code, RedirectUri, CodeVerifier string }
	if err := json.Unmarshal(body["ssoCredentials"], &sso); err != nil || sso.Code == "" {
		connectError(w, http.StatusBadRequest, "invalid_argument", "credentials required")
		return
	}
	m.Mu.Lock()
	raw := m.IdPs[sso.IdpName]
	m.SignIns++
	m.SignInClients = append(m.SignInClients, r.UserAgent()+" from "+r.Header.Get("X-Forwarded-For"))
	m.Mu.Unlock()
	if raw == nil {
		connectError(w, http.StatusBadRequest, "invalid_argument", "identity provider not found")
		return
	}
	var idp struct {
		Config struct {
			OAuth2Config struct {
				ClientID     string `json:"clientId"`
				ClientSecret string `json:"clientSecret"`
				TokenURL     string `json:"tokenUrl"`
				UserInfoURL  string `json:"userInfoUrl"`
				FieldMapping struct{ Identifier, DisplayName, Email string }
			} `json:"oauth2Config"`
		}
	}
	json.Unmarshal(raw, &idp)
	oc := idp.Config.OAuth2Config
	form := url.Values{"grant_type": {"authorization_code"}, "code": {sso.Code}, "redirect_uri": {sso.RedirectUri}}
	if sso.CodeVerifier != "" {
		form.Set("code_verifier", sso.CodeVerifier)
	}
	// HTTP Basic first; on any error, the form, with the same code.
	token, err := m.exchange(oc.TokenURL, form, oc.ClientID, oc.ClientSecret, true)
	if err != nil {
		token, err = m.exchange(oc.TokenURL, form, oc.ClientID, oc.ClientSecret, false)
	}
	if err != nil {
		connectError(w, http.StatusInternalServerError, "internal", "failed to exchange token, error: "+err.Error())
		return
	}
	req, _ := http.NewRequest(http.MethodGet, oc.UserInfoURL, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := m.client.Do(req)
	if err != nil {
		connectError(w, http.StatusInternalServerError, "internal", "failed to get user info")
		return
	}
	var claims map[string]any
	json.NewDecoder(resp.Body).Decode(&claims)
	resp.Body.Close()
	identifier, _ := claims[oc.FieldMapping.Identifier].(string)
	if identifier == "" {
		connectError(w, http.StatusInternalServerError, "internal", "identifier not found in claims")
		return
	}
	display, _ := claims[oc.FieldMapping.DisplayName].(string)
	email, _ := claims[oc.FieldMapping.Email].(string)
	uid := strings.TrimPrefix(sso.IdpName, "identity-providers/")
	m.Mu.Lock()
	user, linked := m.Identities[uid+"\x00"+identifier]
	if !linked {
		if m.ClosedRegistration {
			m.Mu.Unlock()
			connectError(w, http.StatusForbidden, "permission_denied", "user registration is not allowed")
			return
		}
		user = identifier
		reserved := map[string]bool{"admin": true, "administrator": true, "api": true, "memos": true, "root": true, "support": true, "system": true}
		allDigits := strings.Trim(user, "0123456789") == ""
		if !memosUsername.MatchString(user) || allDigits || reserved[strings.ToLower(user)] || m.Users[user] != nil {
			user = "u-" + randomHex()[:12]
		}
		m.Users[user] = &FakeUser{Username: user, DisplayName: display, Email: email, Role: "USER"}
		m.Identities[uid+"\x00"+identifier] = user
	}
	m.Mu.Unlock()
	access := m.session(w, r, user)
	json.NewEncoder(w).Encode(map[string]any{"user": m.userJSON(user), "accessToken": access,
		"accessTokenExpiresAt": time.Now().Add(15 * time.Minute).UTC().Format(time.RFC3339)})
}

func (m *FakeMemos) exchange(tokenURL string, form url.Values, id, secret string, basic bool) (string, error) {
	f := url.Values{}
	for k, v := range form {
		f[k] = v
	}
	if !basic {
		f.Set("client_id", id)
		f.Set("client_secret", secret)
	}
	req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	how := "form"
	if basic {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		how = "basic"
	}
	m.Mu.Lock()
	m.TokenAuth = append(m.TokenAuth, how)
	m.Mu.Unlock()
	resp, err := m.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	if resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return "", fmt.Errorf("token endpoint: %d %s", resp.StatusCode, tok.Error)
	}
	return tok.AccessToken, nil
}

// sse streams a few events, one every 100 ms, to a signed-in caller.
func (m *FakeMemos) sse(w http.ResponseWriter, r *http.Request) {
	if m.Caller(r) == "" {
		http.Error(w, "unauthenticated", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	fl := w.(http.Flusher)
	for i := range 3 {
		fmt.Fprintf(w, "data: {\"event\":%d,\"at\":%d}\n\n", i, time.Now().UnixMilli())
		fl.Flush()
		time.Sleep(100 * time.Millisecond)
	}
}

// userCount counts the users besides the instance's own admin.
func (m *FakeMemos) UserCount() int {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	n := len(m.Users)
	if m.Owner != "" {
		n--
	}
	return n
}

// clientSecret is the client secret the proxy registered.
func (m *FakeMemos) ClientSecret() string {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	var idp struct {
		Config struct {
			OAuth2Config struct{ ClientSecret string } `json:"oauth2Config"`
		}
	}
	json.Unmarshal(m.IdPs["identity-providers/oidc-proxy"], &idp)
	return idp.Config.OAuth2Config.ClientSecret
}

func (m *FakeMemos) Role(user string) string {
	m.Mu.Lock()
	defer m.Mu.Unlock()
	if u := m.Users[user]; u != nil {
		return u.Role
	}
	return ""
}

// createUser is UserService/CreateUser: on an empty instance the first
// user is an ADMIN, whoever asks; later, a USER for an admin, or for
// anyone while registration is open (an invalid bearer is anonymous).
func (m *FakeMemos) createUser(w http.ResponseWriter, r *http.Request, body map[string]json.RawMessage) {
	var u struct{ Username, Password, DisplayName, Email string }
	json.Unmarshal(body["user"], &u)
	callerRole := m.Role(m.Caller(r))
	m.Mu.Lock()
	role, status, code, msg := "USER", 0, "", ""
	switch {
	case !memosUsername.MatchString(u.Username):
		status, code, msg = http.StatusBadRequest, "invalid_argument", "invalid username"
	case m.Users[u.Username] != nil:
		status, code, msg = http.StatusConflict, "already_exists", "user already exists"
	case m.admin() == "":
		role = "ADMIN"
	case callerRole == "ADMIN":
	case m.ClosedRegistration:
		status, code, msg = http.StatusForbidden, "permission_denied", "user registration is not allowed"
	}
	if status == 0 {
		m.Users[u.Username] = &FakeUser{Username: u.Username, Password: u.Password, DisplayName: u.DisplayName, Email: u.Email, Role: role}
	}
	m.Mu.Unlock()
	if status != 0 {
		connectError(w, status, code, msg)
		return
	}
	json.NewEncoder(w).Encode(m.userJSON(u.Username))
}

// updateUser is UserService/UpdateUser with a mask: an admin changes
// anyone's role, display name and email; a user their own name and email.
func (m *FakeMemos) updateUser(w http.ResponseWriter, r *http.Request, body map[string]json.RawMessage) {
	var req struct {
		User struct {
			Name, Role, DisplayName, Email string
		}
		UpdateMask string
	}
	raw, _ := json.Marshal(body)
	json.Unmarshal(raw, &req)
	caller := m.Caller(r)
	admin := m.Role(caller) == "ADMIN"
	name := strings.TrimPrefix(req.User.Name, "users/")
	m.Mu.Lock()
	u := m.Users[name]
	if u == nil {
		m.Mu.Unlock()
		connectError(w, http.StatusNotFound, "not_found", "user not found")
		return
	}
	if caller == "" || (!admin && caller != name) {
		m.Mu.Unlock()
		connectError(w, http.StatusForbidden, "permission_denied", "permission denied")
		return
	}
	for _, f := range strings.Split(req.UpdateMask, ",") {
		switch strings.TrimSpace(f) {
		case "role":
			if !admin {
				m.Mu.Unlock()
				connectError(w, http.StatusForbidden, "permission_denied", "only an admin changes a role")
				return
			}
			u.Role = req.User.Role
		case "displayName", "display_name":
			u.DisplayName = req.User.DisplayName
		case "email":
			u.Email = req.User.Email
		default:
			m.Mu.Unlock()
			connectError(w, http.StatusBadRequest, "invalid_argument", "unsupported update mask: "+f)
			return
		}
	}
	m.Updates = append(m.Updates, name+":"+req.UpdateMask)
	m.Mu.Unlock()
	json.NewEncoder(w).Encode(m.userJSON(name))
}

// RandomHex is 32 random hex digits.
func RandomHex() string { return randomHex() }

// updateIdP is old with the fields of mask (JSON "title,config") taken
// from update, as Memos's UpdateIdentityProvider does; an empty client
// secret in update keeps old's.
func updateIdP(old, update, mask json.RawMessage) json.RawMessage {
	var o, u map[string]any
	var fields string
	json.Unmarshal(old, &o)
	json.Unmarshal(update, &u)
	json.Unmarshal(mask, &fields)
	for _, f := range strings.Split(fields, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "config" {
			newCfg, _ := u["config"].(map[string]any)
			oldCfg, _ := o["config"].(map[string]any)
			no, _ := newCfg["oauth2Config"].(map[string]any)
			oo, _ := oldCfg["oauth2Config"].(map[string]any)
			if no != nil && oo != nil && no["clientSecret"] == "" {
				no["clientSecret"] = oo["clientSecret"]
			}
		}
		o[f] = u[f]
	}
	b, _ := json.Marshal(o)
	return b
}
