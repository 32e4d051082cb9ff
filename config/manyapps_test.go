package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestManyAppsExample: examples/many-apps loads, serves its three
// applications as documented, and its Grafana and Authelia files fit the
// proxy's configuration.
func TestManyAppsExample(t *testing.T) {
	dir := "../examples/many-apps/"
	data, err := os.ReadFile(dir + "oidc-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := func(string) (string, bool) { return "", false }
	c, err := parse(dir+"oidc-proxy.yaml", data, env, exampleFiles(t))
	if err != nil {
		t.Fatal(err)
	}
	rs := c.RouteList()
	if len(rs) != 3 {
		t.Fatalf("%d routes", len(rs))
	}
	notes, grafana, tools := rs[0], rs[1], rs[2]
	if notes.Host != "notes.example.com" || !notes.Memos.Bridge || !notes.Memos.PassBearerTokens {
		t.Errorf("notes: %+v", notes)
	}
	if len(grafana.Access.AllowedGroups)+len(notes.Access.AllowedGroups) != 0 || !slices.Equal(tools.Access.AllowedGroups, []string{"admins"}) {
		t.Errorf("access: notes %v, grafana %v, tools %v", notes.Access, grafana.Access, tools.Access)
	}
	// grafana.ini reads the header the route fills, with the claim it names.
	ini, err := os.ReadFile(dir + "grafana.ini")
	if err != nil {
		t.Fatal(err)
	}
	header := regexp.MustCompile(`(?m)^header_name = (\S+)$`).FindSubmatch(ini)
	if header == nil || grafana.Headers[string(header[1])] != "preferred_username" {
		t.Errorf("grafana.ini's header_name %q is not filled with preferred_username by the route (%v)", header, grafana.Headers)
	}
	for _, m := range regexp.MustCompile(`(\w+):(X-WEBAUTH-\w+)`).FindAllSubmatch(ini, -1) {
		if grafana.Headers[string(m[2])] == "" {
			t.Errorf("grafana.ini reads %s, which the route does not set", m[2])
		}
	}
	if !strings.Contains(string(ini), "root_url = "+c.OriginOf(grafana.Host)+"/") {
		t.Errorf("grafana.ini's root_url is not the route's origin %s", c.OriginOf(grafana.Host))
	}
	// The Authelia client: one redirect URI, at the sign-in host.
	raw, err := os.ReadFile(dir + "authelia-client.yml")
	if err != nil {
		t.Fatal(err)
	}
	var client struct {
		IdentityProviders struct {
			OIDC struct {
				Clients []struct {
					ClientID     string   `yaml:"client_id"`
					RedirectURIs []string `yaml:"redirect_uris"`
					Scopes       []string `yaml:"scopes"`
					AuthMethod   string   `yaml:"token_endpoint_auth_method"`
				} `yaml:"clients"`
			} `yaml:"oidc"`
		} `yaml:"identity_providers"`
	}
	if err := yaml.Unmarshal(raw, &client); err != nil {
		t.Fatal(err)
	}
	cl := client.IdentityProviders.OIDC.Clients
	if len(cl) != 1 || cl[0].ClientID != c.OIDC.ClientID || cl[0].AuthMethod != c.OIDC.ClientAuthMethod ||
		!slices.Equal(cl[0].RedirectURIs, []string{c.ExternalURL + "/oauth2/callback"}) || !slices.Equal(cl[0].Scopes, c.OIDC.Scopes) {
		t.Errorf("the Authelia client does not fit the proxy: %+v", cl)
	}
	// Caddy sends every name to the proxy.
	caddy, _ := os.ReadFile(dir + "Caddyfile")
	for _, h := range []string{"sso.example.com", notes.Host, grafana.Host, tools.Host} {
		if !strings.Contains(string(caddy), h) {
			t.Errorf("the Caddyfile does not serve %s", h)
		}
	}
}
