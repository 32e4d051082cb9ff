package proxy_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
)

// TestGrafanaExample loads the proxy side of examples/grafana with a real
// key in place of the secret file, builds the proxy, and checks that
// grafana.ini expects what the proxy sends: the header, the key set URL,
// the issuer and audience, and the claims its settings read.
func TestGrafanaExample(t *testing.T) {
	data, err := os.ReadFile("../examples/grafana/oidc-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.ReplaceAll(string(data), "/run/secrets/oidc-proxy-jwt-key.pem", jwtKey(t))
	yaml = strings.ReplaceAll(yaml, "client_secret_file: \"/run/secrets/oidc-client-secret\"", "client_secret: x")
	yaml = strings.ReplaceAll(yaml, "secret_file: \"/run/secrets/oidc-proxy-session\"", "secret: "+sessionSecret)
	cfg, err := config.Parse("grafana.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(cfg, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/oauth2/jwks.json", nil))
	var set struct{ Keys []map[string]string }
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &set) != nil || len(set.Keys) != 1 || set.Keys[0]["alg"] != "ES256" {
		t.Fatalf("jwks: %d %s", rec.Code, rec.Body)
	}

	ini := map[string]string{}
	f, err := os.Open("../examples/grafana/grafana.ini")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	section := ""
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, _ := strings.Cut(line, "=")
			ini[section+"."+strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	j := cfg.IdentityJWT
	want := map[string]string{
		"auth.jwt.enabled":        "true",
		"auth.jwt.header_name":    j.Header,
		"auth.jwt.jwk_set_url":    cfg.ExternalURL + "/oauth2/jwks.json",
		"auth.jwt.username_claim": "preferred_username",
		"auth.jwt.email_claim":    "email",
		"auth.jwt.auto_sign_up":   "true",
	}
	for k, v := range want {
		if ini[k] != v {
			t.Errorf("grafana.ini %s = %q, want %q", k, ini[k], v)
		}
	}
	var expect map[string]string
	if err := json.Unmarshal([]byte(ini["auth.jwt.expect_claims"]), &expect); err != nil || expect["iss"] != cfg.ExternalURL || expect["aud"] != j.Audience {
		t.Errorf("expect_claims %q (%v), want iss %s and aud %s", ini["auth.jwt.expect_claims"], err, cfg.ExternalURL, j.Audience)
	}
	if _, ok := j.Claims["groups"]; !ok || !strings.Contains(ini["auth.jwt.role_attribute_path"], "groups[*]") {
		t.Errorf("role_attribute_path reads groups, which the token must carry")
	}
}
