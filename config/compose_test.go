package config

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"
)

// TestMemosAutheliaStack checks what can be checked of the whole stack in
// examples/memos-authelia without a container engine: the compose file
// loads with the compose-spec loader and every service, volume, secret
// and build context it names resolves; the proxy's configuration it
// mounts loads; and the Authelia configuration parses, with the keys
// Authelia 4.39 expects and a client that is the proxy's.
func TestMemosAutheliaStack(t *testing.T) {
	dir := "../examples/memos-authelia"
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")}, cli.WithWorkingDirectory(dir), cli.WithName("memos-authelia"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, want := range []string{"caddy", "authelia-secrets", "authelia", "memos", "oidc-proxy"} {
		if _, ok := project.Services[want]; !ok {
			t.Errorf("no service %s", want)
		}
	}
	var proxyConfig string
	for name, svc := range project.Services {
		for dep := range svc.DependsOn {
			if _, ok := project.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
		}
		if m, ok := strings.CutPrefix(svc.NetworkMode, "service:"); ok {
			if _, ok := project.Services[m]; !ok {
				t.Errorf("%s shares the namespace of %s, which is not a service", name, m)
			}
		}
		for _, v := range svc.Volumes {
			switch v.Type {
			case types.VolumeTypeVolume:
				if _, ok := project.Volumes[v.Source]; !ok {
					t.Errorf("%s mounts the volume %s, which is not declared", name, v.Source)
				}
			case types.VolumeTypeBind:
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s mounts %s: %v", name, v.Source, err)
				}
				if v.Target == "/etc/oidc-proxy/oidc-proxy.yaml" {
					proxyConfig = v.Source
				}
			}
		}
		for _, s := range svc.Secrets {
			if _, ok := project.Secrets[s.Source]; !ok {
				t.Errorf("%s uses the secret %s, which is not declared", name, s.Source)
			}
		}
		if svc.Build != nil {
			if _, err := os.Stat(filepath.Join(svc.Build.Context, "Dockerfile")); err != nil {
				t.Errorf("%s builds from %s: %v", name, svc.Build.Context, err)
			}
		}
	}
	if project.Services["oidc-proxy"].Build == nil {
		t.Error("the proxy's image is not built from this repository")
	}
	for name, s := range project.Secrets {
		if !strings.HasPrefix(s.File, project.WorkingDir+"/secrets/") {
			t.Errorf("secret %s is not a file under secrets/: %s", name, s.File)
		}
	}

	// The proxy configuration the stack mounts.
	if proxyConfig == "" {
		t.Fatal("no proxy configuration mounted")
	}
	data, err := os.ReadFile(proxyConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parse(proxyConfig, data, nil, exampleFiles(t))
	if err != nil {
		t.Fatal(err)
	}

	// Authelia's configuration, as its template filter would see it.
	raw, err := os.ReadFile(filepath.Join(dir, "authelia", "configuration.yml"))
	if err != nil {
		t.Fatal(err)
	}
	templated := regexp.MustCompile(`\{\{[^}]*\}\}`).ReplaceAllString(string(raw), "templated")
	var a struct {
		Server         struct{ Address string }
		Authentication struct {
			File struct{ Path string }
		} `yaml:"authentication_backend"`
		Session struct {
			Cookies []struct {
				Domain      string
				AutheliaURL string `yaml:"authelia_url"`
			}
		}
		Storage struct {
			Local struct{ Path string }
		}
		Notifier struct {
			Filesystem struct{ Filename string }
		}
		AccessControl struct {
			DefaultPolicy string `yaml:"default_policy"`
		} `yaml:"access_control"`
		IDP struct {
			OIDC struct {
				JWKS    []map[string]string
				Clients []struct {
					ClientID      string `yaml:"client_id"`
					ClientSecret  string `yaml:"client_secret"`
					Public        bool
					RedirectURIs  []string `yaml:"redirect_uris"`
					Scopes        []string
					AuthMethod    string `yaml:"token_endpoint_auth_method"`
					ConsentMode   string `yaml:"consent_mode"`
					ConsentLength string `yaml:"pre_configured_consent_duration"`
					RequirePKCE   bool   `yaml:"require_pkce"`
				}
			}
		} `yaml:"identity_providers"`
	}
	dec := yaml.NewDecoder(strings.NewReader(templated))
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("authelia/configuration.yml: %v", err)
	}
	if a.Server.Address == "" || a.Authentication.File.Path != "/config/users_database.yml" || len(a.Session.Cookies) == 0 ||
		a.Storage.Local.Path == "" || a.Notifier.Filesystem.Filename == "" || a.AccessControl.DefaultPolicy == "" || len(a.IDP.OIDC.JWKS) == 0 {
		t.Errorf("authelia/configuration.yml lacks what Authelia 4.39 needs: %+v", a)
	}
	if len(a.Session.Cookies) > 0 && a.Session.Cookies[0].AutheliaURL != cfg.OIDC.Issuer {
		t.Errorf("Authelia's URL %s is not the proxy's issuer %s", a.Session.Cookies[0].AutheliaURL, cfg.OIDC.Issuer)
	}
	var client bool
	for _, c := range a.IDP.OIDC.Clients {
		if c.ClientID != cfg.OIDC.ClientID {
			continue
		}
		client = true
		if c.Public || c.AuthMethod != cfg.OIDC.ClientAuthMethod || !slices.Contains(c.RedirectURIs, cfg.ExternalURL+"/oauth2/callback") ||
			c.ConsentMode != "pre-configured" || c.ConsentLength == "" || !c.RequirePKCE || c.ClientSecret == "" {
			t.Errorf("Authelia's client does not fit the proxy: %+v", c)
		}
		for _, s := range cfg.OIDC.Scopes {
			if !slices.Contains(c.Scopes, s) {
				t.Errorf("the proxy asks for scope %s, which the client lacks", s)
			}
		}
	}
	if !client {
		t.Errorf("no Authelia client %s", cfg.OIDC.ClientID)
	}
	users, err := os.ReadFile(filepath.Join(dir, "authelia", "users_database.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var u struct {
		Users map[string]struct {
			DisplayName string `yaml:"displayname"`
			Password    string
			Groups      []string
		}
	}
	if err := yaml.Unmarshal(users, &u); err != nil || len(u.Users) == 0 {
		t.Fatalf("users_database.yml: %v", err)
	}
	for name, user := range u.Users {
		if user.DisplayName == "" || !strings.HasPrefix(user.Password, "$argon2id$") {
			t.Errorf("user %s: Authelia needs a display name and a password digest", name)
		}
		for _, g := range cfg.Memos.AdminGroups {
			if !slices.Contains(user.Groups, g) {
				t.Errorf("the example user %s is not in %s: Memos would have no SSO admin", name, g)
			}
		}
	}
}
