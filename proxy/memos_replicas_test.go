package proxy_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestMemosBridgeAcrossReplicas: with the Redis store a code issued by one
// replica is redeemed at another's bridge, once; while it waits, Redis
// holds nothing readable of the user.
func TestMemosBridgeAcrossReplicas(t *testing.T) {
	rs := startRedis(t)
	s, fm, bridgeA := bridgeStand(t, useRedis(rs))
	ln, bridgeLn := listen(t), listen(t)
	other := s.ServeProxy(ln, s.URL, s.Edit)
	serveOn(t, bridgeLn, other.BridgeHandler())
	bridgeB := "http://" + bridgeLn.Addr().String()
	c := s.Browser()
	signInAs(s, c, "/", "alice", alicePassword)
	verifier, challenge := pkcePair()
	_, q := authorize(t, s, c, buttonQuery(s, challenge))
	code := q.Get("code")
	if code == "" {
		t.Fatal("no code")
	}
	if dump := rs.dump(); strings.Contains(dump, "alice") || strings.Contains(dump, code) {
		t.Errorf("Redis holds the user or the code in the clear while the code waits")
	}
	secret := fm.ClientSecret()
	redeem := func(bridge string) int {
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {s.URL + "/auth/callback"},
			"code_verifier": {verifier}, "client_id": {"oidc-proxy"}, "client_secret": {secret}}
		resp, err := http.PostForm(bridge+"/token", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := redeem(bridgeB); code != 200 {
		t.Fatalf("the code at the other replica: %d", code)
	}
	if code := redeem(bridgeA.String()); code != http.StatusBadRequest {
		t.Errorf("the code again at the first replica: %d", code)
	}
}
