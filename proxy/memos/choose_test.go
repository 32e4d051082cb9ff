package memos

import (
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
)

func provider(name, auth, identifier string) memosProvider {
	var p memosProvider
	raw, _ := json.Marshal(map[string]any{"name": name, "type": "OAUTH2", "title": name, "config": map[string]any{"oauth2Config": map[string]any{
		"authUrl": auth + "/authorize", "tokenUrl": auth + "/token", "userInfoUrl": auth + "/userinfo",
		"fieldMapping": map[string]string{"identifier": identifier}}}})
	json.Unmarshal(raw, &p)
	return p
}

// TestChoose: which of Memos's providers the bridge becomes.
func TestChoose(t *testing.T) {
	op := &opEndpoints{"https://auth.example.com/authorize", "https://auth.example.com/token", "https://auth.example.com/userinfo"}
	bridge := func(id string) *Bridge {
		return &Bridge{clientID: id, usernameClaim: "preferred_username", authURL: "https://memos.example.com/oauth2/memos/authorize",
			tokenURL: "http://127.0.0.1:4181/token", k: proxy.Kit{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	}
	ours := provider("identity-providers/authelia", "x", "preferred_username")
	ours.Config.OAuth2.AuthURL, ours.Config.OAuth2.TokenURL = "https://memos.example.com/oauth2/memos/authorize", "http://127.0.0.1:4181/token"
	def := config.DefaultMemosIdPID
	for _, tc := range []struct {
		name     string
		id       string
		list     []memosProvider
		want     string
		takeOver bool
		err      string
	}{
		{"empty Memos", def, nil, "identity-providers/oidc-proxy", false, ""},
		{"the guide's provider", def, []memosProvider{provider("identity-providers/authelia", "https://auth.example.com", "preferred_username")}, "identity-providers/authelia", true, ""},
		{"a trailing slash", def, []memosProvider{provider("identity-providers/authelia", "https://AUTH.example.com", "preferred_username")}, "identity-providers/authelia", true, ""},
		{"another issuer", def, []memosProvider{provider("identity-providers/gitea", "https://git.example.com", "preferred_username")}, "identity-providers/oidc-proxy", false, ""},
		{"another claim", def, []memosProvider{provider("identity-providers/authelia", "https://auth.example.com", "email")}, "identity-providers/oidc-proxy", false, ""},
		{"taken over before", def, []memosProvider{ours}, "identity-providers/authelia", false, ""},
		{"two candidates", def, []memosProvider{provider("identity-providers/a", "https://auth.example.com", "preferred_username"),
			provider("identity-providers/b", "https://auth.example.com", "preferred_username")}, "", false, "identity-providers/a (\"identity-providers/a\"), identity-providers/b"},
		{"named by the administrator", "mine", []memosProvider{provider("identity-providers/authelia", "https://auth.example.com", "preferred_username")}, "identity-providers/mine", false, ""},
	} {
		name, took, err := bridge(tc.id).choose(tc.list, op)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "set memos.idp_id") {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err != nil || name != tc.want || (took != nil) != tc.takeOver {
			t.Errorf("%s: %q %v %v, want %q (take over %v)", tc.name, name, took != nil, err, tc.want, tc.takeOver)
		}
	}
	// Without discovery nothing can be taken over: Register waits for it.
	if name, took, err := bridge(def).choose([]memosProvider{provider("identity-providers/authelia", "https://auth.example.com", "preferred_username")}, nil); err != nil || took != nil || name != "identity-providers/oidc-proxy" {
		t.Errorf("without the provider's endpoints: %q %v", name, err)
	}
}
