package memos_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// The takeover of Memos's own provider, with the Memos stand-in (which
// links SSO users by provider and identifier, as Memos's user_identity):
// the cases the real programs show too (TestExistingMemosUsersKeepTheirAccounts),
// and faults.

// guideProvider is a provider as Memos's guide makes it, at the stand's
// provider (auth and token URLs from its discovery).
func guideProvider(s *stand, id, identifier string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"name": "identity-providers/" + id, "type": "OAUTH2", "title": "Authelia " + id,
		"config": map[string]any{"oauth2Config": map[string]any{
			"clientId": "memos-guide", "clientSecret": "guide-secret",
			"authUrl": s.Issuer + "/authorize", "tokenUrl": s.Issuer + "/oauth/token", "userInfoUrl": s.Issuer + "/userinfo",
			"scopes": []string{"openid", "profile", "email"}, "fieldMapping": map[string]string{"identifier": identifier, "displayName": "name", "email": "email"},
		}}})
	return b
}

func TestTakeoverWithTheStandIn(t *testing.T) {
	s, fm, _ := bridgeStand(t) // memos.idp_id at its default
	// alice signed in with Memos's own button before: linked to "guide".
	fm.Mu.Lock()
	fm.IdPs["identity-providers/guide"] = guideProvider(s, "guide", "preferred_username")
	fm.IdPs["identity-providers/by-email"] = guideProvider(s, "by-email", "email")
	fm.Users["alice"] = &proxytest.FakeUser{Username: "alice", DisplayName: "Alice", Role: "USER"}
	fm.Identities["guide\x00alice"] = "alice"
	usersBefore := len(fm.Users)
	fm.Mu.Unlock()

	did, err := s.Proxy.RegisterWithMemos(t.Context())
	if err != nil || !strings.Contains(did, "took over Memos's identity provider identity-providers/guide") {
		t.Fatalf("registration: %q %v", did, err)
	}
	fm.Mu.Lock()
	guide := string(fm.IdPs["identity-providers/guide"])
	fm.Mu.Unlock()
	if !strings.Contains(guide, `"title":"Authelia guide"`) || !strings.Contains(guide, "/oauth2/memos/authorize") {
		t.Errorf("the provider taken over: %s", guide)
	}
	if !strings.Contains(s.Logs.String(), "links users by another claim; left alone") {
		t.Errorf("the provider linking by email was not named:\n%s", grepLines(s.Logs.String(), "memos bridge"))
	}
	fm.Mu.Lock()
	byEmail := string(fm.IdPs["identity-providers/by-email"])
	fm.Mu.Unlock()
	if byEmail != string(guideProvider(s, "by-email", "email")) {
		t.Errorf("the provider linking by email changed: %s", byEmail)
	}
	c := s.Browser()
	if resp, _ := signInAs(s, c, "/", "alice", alicePassword); resp.StatusCode != 200 {
		t.Fatalf("alice's sign-in: %d", resp.StatusCode)
	}
	if name, _ := memosWhoAmI(t, c, s.URL); name != "alice" {
		t.Errorf("alice through the proxy is %q", name)
	}
	fm.Mu.Lock()
	usersAfter := len(fm.Users)
	fm.Mu.Unlock()
	if usersAfter != usersBefore {
		t.Errorf("%d accounts were created", usersAfter-usersBefore)
	}
	// Registering again (a restart): the same provider, found as the
	// bridge's own now.
	if did, err := s.Proxy.RegisterWithMemos(t.Context()); err != nil || did != "updated identity-providers/guide" {
		t.Errorf("again: %q %v", did, err)
	}
	// A second provider of the same issuer and claim appears: refused, both named.
	fm.Mu.Lock()
	fm.IdPs["identity-providers/guide-2"] = guideProvider(s, "guide-2", "preferred_username")
	fm.Mu.Unlock()
	if _, err := s.Proxy.RegisterWithMemos(t.Context()); err == nil || !strings.Contains(err.Error(), "identity-providers/guide-2") {
		t.Errorf("a second candidate: %v", err)
	}
}
