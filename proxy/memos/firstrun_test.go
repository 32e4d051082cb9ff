package memos_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestMemosFirstRunNeedsNoManualStep(t *testing.T) {
	fm := proxytest.NewEmptyMemos()
	dir := t.TempDir()
	s := memosStand(t, fm, firstRun, dir)
	eventually(t, "the proxy did not set Memos up", func() bool {
		return strings.Contains(s.Logs.String(), "registered as Memos's identity provider")
	})
	tokenFile, passwordFile := filepath.Join(dir, "memos-admin-token"), filepath.Join(dir, "memos-admin-token.password")
	if m := mode(t, tokenFile); m != 0o600 {
		t.Errorf("token file mode %o", m)
	}
	if m := mode(t, passwordFile); m != 0o600 {
		t.Errorf("password file mode %o", m)
	}
	password, _ := os.ReadFile(passwordFile)
	token, _ := os.ReadFile(tokenFile)
	fm.Mu.Lock()
	admin := fm.Users[config.DefaultMemosAdminUsername]
	tokenUser := fm.Access[strings.TrimSpace(string(token))]
	idps, pats := len(fm.IdPs), fm.PATs
	fm.Mu.Unlock()
	if admin == nil || admin.Role != "ADMIN" || admin.Password != strings.TrimSpace(string(password)) || len(admin.Password) < 40 {
		t.Fatalf("setup account: %+v", admin)
	}
	if tokenUser != config.DefaultMemosAdminUsername || idps != 1 || pats != 1 {
		t.Errorf("token of %q, %d providers, %d tokens", tokenUser, idps, pats)
	}
	// The first person lands on their notes, signed into Memos: never on
	// a set-up page.
	c := s.Browser()
	resp, body := signInAs(s, c, "/", "alice", alicePassword)
	if resp.StatusCode != 200 || strings.Contains(body, "Set up your instance") {
		t.Fatalf("first sign-in: %d %s", resp.StatusCode, body)
	}
	if user, _ := memosWhoAmI(t, c, s.URL); user != "alice" {
		t.Errorf("signed into Memos as %q", user)
	}
	if _, body := navigate(t, c, s.URL+"/auth/signup"); strings.Contains(body, "Set up your instance") {
		t.Error("Memos's set-up page is reachable")
	}
	// Another start (a restart, a replica) with the same files does
	// nothing new.
	replicaOf(s, s.Edit)
	eventually(t, "the second start did not register", func() bool {
		return strings.Count(s.Logs.String(), "registered as Memos's identity provider") == 2
	})
	fm.Mu.Lock()
	defer fm.Mu.Unlock()
	if fm.PATs != 1 || len(fm.Users) != 2 || fm.Users[config.DefaultMemosAdminUsername].Password != admin.Password {
		t.Errorf("the second start changed Memos: %d tokens, %d users", fm.PATs, len(fm.Users))
	}
	if again, _ := os.ReadFile(tokenFile); string(again) != string(token) {
		t.Error("the token file changed")
	}
}

// TestMemosFirstRunTwoReplicasTogether: two replicas sharing the files'
// volume start at once on an empty Memos: one setup account, one token
// file both use, both registered.
func TestMemosFirstRunTwoReplicasTogether(t *testing.T) {
	fm := proxytest.NewEmptyMemos()
	dir := t.TempDir()
	var s *stand
	var wg sync.WaitGroup
	s = memosStand(t, fm, firstRun, dir)
	wg.Add(1)
	go func() { defer wg.Done(); replicaOf(s, s.Edit) }()
	wg.Wait()
	eventually(t, "both replicas did not finish", func() bool {
		return strings.Count(s.Logs.String(), "registered as Memos's identity provider") == 2
	})
	fm.Mu.Lock()
	admins := 0
	for _, u := range fm.Users {
		if u.Role == "ADMIN" {
			admins++
		}
	}
	fm.Mu.Unlock()
	token, err := os.ReadFile(filepath.Join(dir, "memos-admin-token"))
	if admins != 1 || err != nil || fm.Caller(&http.Request{Header: http.Header{"Authorization": {"Bearer " + strings.TrimSpace(string(token))}}}) != config.DefaultMemosAdminUsername {
		t.Errorf("%d admins; token file: %v", admins, err)
	}
}

// TestMemosFirstRunWithoutATokenFile: a fresh Memos the proxy has
// nowhere to keep a token for stays closed (its set-up page too), and the
// log says what to set.
func TestMemosFirstRunWithoutATokenFile(t *testing.T) {
	fm := proxytest.NewEmptyMemos()
	s := memosStand(t, fm, firstRun, t.TempDir(), func(c *config.Config) { c.Memos.AdminTokenFile, c.Memos.AdminPasswordFile = "", "" })
	eventually(t, "no log line says what to set", func() bool {
		return strings.Contains(s.Logs.String(), "memos.admin_token_file is not set")
	})
	resp, body := navigate(t, noRedirect(s.Browser()), s.URL+"/")
	if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(body, "Set up your instance") || !strings.Contains(body, "being set up") {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	if fm.UserCount() != 0 {
		t.Errorf("%d Memos users", fm.UserCount())
	}
}

// TestMemosSignUpClosed: creating a Memos user through the proxy needs a
// Memos admin's credentials, in every spelling of the call.
func TestMemosSignUpClosed(t *testing.T) {
	s, fm, _ := bridgeStand(t)
	c := s.Browser()
	signInAs(s, c, "/", "alice", alicePassword)
	_, aliceToken := memosWhoAmI(t, c, s.URL)
	body := `{"user":{"username":"mallory","password":"x"}}`
	for _, tt := range []struct{ path, bearer string }{
		{"/memos.api.v1.UserService/CreateUser", ""},
		{"/memos.api.v1.UserService/CreateUser", "memos_pat_" + strings.Repeat("x", 32)}, // invalid: anonymous to Memos
		{"/memos.api.v1.UserService/CreateUser", aliceToken},                             // a plain user
		{"/memos.api.v1.userservice/createuser", ""},
		{"/memos.api.v1.UserService/CreateUser/", ""},
		{"/api/v1/users", ""},
		{"/API/V1/USERS", ""},
		{"/api/v1/users/", ""},
	} {
		req, _ := http.NewRequest(http.MethodPost, s.URL+tt.path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if tt.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+tt.bearer)
		}
		before := fm.UserCount()
		resp, _ := do(t, c, req) // with alice's proxy session: the web app's call
		if resp.StatusCode != http.StatusForbidden || fm.UserCount() != before {
			t.Errorf("%s with bearer %.12q: %d, %d users", tt.path, tt.bearer, resp.StatusCode, fm.UserCount())
		}
	}
	// An admin (steven, by his token) may.
	resp, out := memosCall(t, c, s.URL, "UserService/CreateUser", proxytest.MemosAdminPAT, body)
	if resp.StatusCode != 200 || out["username"] != "mallory" {
		t.Errorf("the admin's CreateUser: %d %v", resp.StatusCode, out)
	}
}

func TestMemosSignUpOpenWithPasswordSignIn(t *testing.T) {
	s, fm, _ := bridgeStand(t, func(c *config.Config) { c.Memos.AllowPasswordSignIn = true })
	c := s.Browser()
	signInAs(s, c, "/", "alice", alicePassword)
	resp, _ := memosCall(t, c, s.URL, "UserService/CreateUser", "", `{"user":{"username":"dave","password":"x"}}`)
	if resp.StatusCode != 200 || fm.UserCount() != 2 {
		t.Errorf("sign-up with allow_password_sign_in: %d, %d users", resp.StatusCode, fm.UserCount())
	}
}

// TestMemosRolesAndProfilesFromTheProvider: admin_groups decide the role
// at each sign-in; name and email follow the provider's, a missing email
// never blanks one; the setup account and other accounts stay as they are.
func TestMemosRolesAndProfilesFromTheProvider(t *testing.T) {
	fm := proxytest.NewEmptyMemos()
	dir := t.TempDir()
	s := memosStand(t, fm, firstRun, dir, func(c *config.Config) { c.Memos.AdminGroups = []string{"admins"} })
	eventually(t, "the proxy did not set Memos up", func() bool {
		return strings.Contains(s.Logs.String(), "registered as Memos's identity provider")
	})
	role := func(user string) string { return fm.Role(user) }
	signInAs(s, s.Browser(), "/", "alice", alicePassword)
	if role("alice") != "ADMIN" || !strings.Contains(s.Logs.String(), `msg="memos role changed" user=alice role=ADMIN`) {
		t.Fatalf("alice in admins: %s\n%s", role("alice"), s.Logs.String())
	}
	signInAs(s, s.Browser(), "/", "bob", bobPassword)
	if role("bob") != "USER" {
		t.Errorf("bob: %s", role("bob"))
	}
	fm.Mu.Lock()
	for _, u := range fm.Updates {
		if strings.HasPrefix(u, "bob:") {
			t.Errorf("bob, a user already, was updated: %s", u)
		}
	}
	fm.Mu.Unlock()
	// alice leaves admins and changes her name and email at the provider.
	s.Alice.Groups = []string{"users"}
	s.Alice.Name, s.Alice.Email = "Alice Changed", "alice@new.example.com"
	signInAs(s, s.Browser(), "/", "alice", alicePassword)
	fm.Mu.Lock()
	a := *fm.Users["alice"]
	fm.Mu.Unlock()
	if a.Role != "USER" || a.DisplayName != "Alice Changed" || a.Email != "alice@new.example.com" {
		t.Errorf("alice after the change: %+v", a)
	}
	// carol has no email at the provider: Memos keeps the one she has.
	signInAs(s, s.Browser(), "/", "carol", "carol-password")
	fm.Mu.Lock()
	fm.Users["carol"].Email = "carol@kept.example.com"
	fm.Mu.Unlock()
	signInAs(s, s.Browser(), "/", "carol", "carol-password")
	fm.Mu.Lock()
	defer fm.Mu.Unlock()
	if fm.Users["carol"].Email != "carol@kept.example.com" || fm.Users["carol"].DisplayName != "Carol" {
		t.Errorf("carol: %+v", *fm.Users["carol"])
	}
	if setup := fm.Users[config.DefaultMemosAdminUsername]; setup.Role != "ADMIN" || setup.DisplayName != "oidc-proxy (setup account)" {
		t.Errorf("the setup account changed: %+v", *setup)
	}
	for _, u := range fm.Updates {
		if strings.HasPrefix(u, config.DefaultMemosAdminUsername+":") {
			t.Errorf("the setup account was updated: %s", u)
		}
	}
}
