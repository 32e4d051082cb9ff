package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const validSecret = "0123456789abcdef0123456789abcdef"

const minimal = `
external_url: https://memos.example.com
upstream: http://127.0.0.1:5230
oidc:
  issuer: https://auth.example.com
  client_id: memos
  client_secret: s3cret
session:
  secret: "` + validSecret + `"
`

func noEnv(string) (string, bool) { return "", false }

func TestMinimalGetsDefaults(t *testing.T) {
	c, err := Parse("t.yaml", []byte(minimal), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":4180" || c.OIDC.ClientAuthMethod != "client_secret_post" || c.OIDC.Timeout != 10*time.Second ||
		c.Session.Lifetime != 168*time.Hour || c.Session.CookieName != "oidc_proxy" || !*c.PreserveHost ||
		c.Log.Format != "text" || c.Log.Level != "info" {
		t.Errorf("defaults: %+v", c)
	}
	if !reflect.DeepEqual(c.OIDC.Scopes, []string{"openid", "profile", "email", "groups"}) {
		t.Errorf("scopes: %v", c.OIDC.Scopes)
	}
	if !reflect.DeepEqual(c.Headers, DefaultHeaders()) {
		t.Errorf("headers: %v", c.Headers)
	}
}

func TestEnvAndFiles(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "client")
	os.WriteFile(secretFile, []byte("from-file\n"), 0o600)
	sessionFile := filepath.Join(dir, "session")
	os.WriteFile(sessionFile, []byte(validSecret+"\r\n"), 0o600)
	env := map[string]string{"ISSUER_HOST": "auth.example.com", "ODD": "null"}
	c, err := Parse("t.yaml", []byte(`
external_url: https://memos.example.com
upstream: http://127.0.0.1:5230
oidc:
  issuer: https://${ISSUER_HOST}
  client_id: ${ODD}
  client_secret_file: `+secretFile+`
session:
  secret_file: `+sessionFile+`
`), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if c.OIDC.Issuer != "https://auth.example.com" || c.OIDC.ClientID != "null" || c.OIDC.ClientSecret != "from-file" || len(c.Session.Secret) != 1 || c.Session.Secret[0] != validSecret {
		t.Errorf("got %+v", c.OIDC)
	}
}

func TestSecretLists(t *testing.T) {
	second := strings.Repeat("b", 40)
	c, err := Parse("t.yaml", []byte(strings.Replace(minimal, `  secret: "`+validSecret+`"`, "  secret:\n    - \""+second+"\"\n    - \""+validSecret+"\"", 1)), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Session.Secret) != 2 || c.Session.Secret[0] != second || c.Session.Secret[1] != validSecret {
		t.Errorf("secrets: %q", c.Session.Secret)
	}
	dir := t.TempDir()
	f1, f2 := filepath.Join(dir, "new"), filepath.Join(dir, "old")
	os.WriteFile(f1, []byte(second+"\n"), 0o600)
	os.WriteFile(f2, []byte(validSecret), 0o600)
	c, err = Parse("t.yaml", []byte(strings.Replace(minimal, `  secret: "`+validSecret+`"`, "  secret_file: ["+f1+", "+f2+"]", 1)), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Session.Secret) != 2 || c.Session.Secret[0] != second {
		t.Errorf("secrets from files: %q", c.Session.Secret)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"  secret: [\"" + second + "\", short]", "session.secret: secret 2 must be at least 32 bytes long, not 5"},
		{"  secret: []", "session.secret: is required"},
		{"  secret: \"" + second + "\"\n  secret_file: " + f2, "set either session.secret or session.secret_file"},
		{"  secret: {a: b}", "cannot unmarshal"},
	} {
		_, err := Parse("t.yaml", []byte(strings.Replace(minimal, `  secret: "`+validSecret+`"`, bad.yaml, 1)), noEnv)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want %q", bad.yaml, err, bad.want)
		}
	}
}

func TestProblemsAllAtOnceWithLines(t *testing.T) {
	_, err := Parse("bad.yaml", []byte(`listen: "nonsense"
external_url: ftp://memos.example.com/path
upstream: "::"
oidc:
  issuer: http://auth.example.com
  client_id: ""
  client_auth_method: private_key_jwt
  scopes: [profile, "bad scope"]
  timeout: 1ms
session:
  secret: short
  lifetime: 1s
  cookie_name: "__Host-x"
headers:
  Host: email
  Remote-User: ""
  Remote_User: name
log:
  format: xml
  level: loud
`), noEnv)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *Error, got %v", err)
	}
	want := []string{
		"line 1: listen: must be host:port",
		"line 2: external_url: must be an absolute http or https URL",
		"line 3: upstream: ",
		"line 5: oidc.issuer: must be https",
		"line 6: oidc.client_id: is required",
		"line 4: oidc.client_secret: is required",
		"line 7: oidc.client_auth_method: must be client_secret_post or client_secret_basic",
		`line 8: oidc.scopes: "bad scope" is not a valid scope`,
		"line 8: oidc.scopes: must contain openid",
		"line 9: oidc.timeout: must be between 1s and 5m",
		"line 11: session.secret: secret 1 must be at least 32 bytes long, not 5",
		"line 12: session.lifetime: must be at least 1m",
		"line 13: session.cookie_name: must be letters",
		"line 15: headers.Host: Host cannot carry a claim",
		"headers.Remote-User: needs a claim name",
		"name the same header",
		"line 19: log.format: must be text or json",
		"line 20: log.level: must be debug, info, warn or error",
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("missing %q in:\n%s", w, msg)
		}
	}
}

func TestStructuralErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"empty", "", "the file is empty"},
		{"not a mapping", "- a\n- b\n", "the top level must be a mapping"},
		{"two documents", minimal + "---\nlisten: x\n", "one YAML document"},
		{"syntax", "listen: [unclosed\n", "line"},
		{"unknown top key", minimal + "upstreams: x\n", "upstreams: unknown key"},
		{"unknown nested key", strings.Replace(minimal, "  client_id: memos", "  client_id: memos\n  clientsecret: x", 1), "line 7: oidc.clientsecret: unknown key"},
		{"duplicate key", minimal + "listen: :1\nlisten: :2\n", "already defined"},
		{"wrong type", minimal + "preserve_host: maybe\n", "line 10: cannot unmarshal"},
		{"bad duration", strings.Replace(minimal, "session:", "session:\n  lifetime: forever", 1), "cannot unmarshal"},
		{"scalar for block", minimal + "log: loud\n", "cannot unmarshal"},
		{"mapping for scalar", minimal + "listen: {a: b}\n", "expected a single value"},
		{"alias", "x: &a 1\n" + minimal + "listen: *a\n", "unknown key"},
		{"unset env", strings.Replace(minimal, "s3cret", "${NOPE}", 1), "line 7: oidc.client_secret: environment variable NOPE is not set"},
		{"bad env name", strings.Replace(minimal, "s3cret", "${1X}", 1), "not a valid environment variable reference"},
		{"secret and file", strings.Replace(minimal, "  client_secret: s3cret", "  client_secret: s3cret\n  client_secret_file: /x", 1), "set either oidc.client_secret or oidc.client_secret_file"},
		{"missing file", strings.Replace(minimal, "  client_secret: s3cret", "  client_secret_file: /nonexistent/secret", 1), "oidc.client_secret_file: open /nonexistent/secret"},
		{"missing session secret", strings.Replace(minimal, "  secret: \""+validSecret+"\"", "  lifetime: 1h", 1), "session.secret: is required"},
		{"ca file missing", strings.Replace(minimal, "  client_id: memos", "  client_id: memos\n  ca_file: /nonexistent.pem", 1), "oidc.ca_file"},
		{"logout url http", strings.Replace(minimal, "  client_id: memos", "  client_id: memos\n  logout_url: http://auth.example.com/logout", 1), "oidc.logout_url: must be https"},
		{"external url with path", strings.Replace(minimal, "https://memos.example.com", "https://memos.example.com/memos", 1), "must not have a path"},
		{"external url with user", strings.Replace(minimal, "https://memos.example.com", "https://u:p@memos.example.com", 1), "must not carry a user name"},
		{"missing required", "log: {format: json}\n", "external_url: is required"},
		{"wildcard domain", minimal + "access:\n  allowed_email_domains: [\"*.example.com\"]\n", "access.allowed_email_domains: \"*.example.com\" is not a domain"},
		{"address as domain", minimal + "access:\n  allowed_email_domains: [\"a@example.com\"]\n", "is not a domain"},
		{"empty group", minimal + "access:\n  allowed_groups: [\"\"]\n", "access.allowed_groups: holds an empty group"},
		{"bad trusted proxy", minimal + "trusted_proxies: [\"10.0.0.0/33\", \"localhost\"]\n", "trusted_proxies: \"10.0.0.0/33\" is neither a CIDR nor an IP address"},
		{"tls half set", minimal + "tls:\n  cert_file: /x.crt\n", "tls: set both cert_file and key_file"},
		{"tls files missing", minimal + "tls:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n", "tls.cert_file: open /nonexistent.crt"},
		{"metrics on the public port", minimal + "metrics_listen: \":4180\"\n", "metrics_listen: must differ from listen"},
		{"metrics address", minimal + "metrics_listen: \"9090\"\n", "metrics_listen: must be host:port"},
		{"idle timeout too short", strings.Replace(minimal, "session:", "session:\n  idle_timeout: 10s", 1), "session.idle_timeout: must be 0 (off) or between 1m and session.lifetime"},
		{"idle timeout over lifetime", strings.Replace(minimal, "session:", "session:\n  lifetime: 1h\n  idle_timeout: 2h", 1), "session.idle_timeout"},
		{"public path pattern", minimal + "public_paths: [\"explore\"]\n", "public_paths: \"explore\" is not a path pattern"},
		{"public path broken pattern", minimal + "public_paths: [\"/a[\"]\n", "is not a path pattern"},
		{"public proxy path", minimal + "public_paths: [\"/oauth2/userinfo\"]\n", "outside /oauth2/"},
		{"memos url", minimal + "memos:\n  url: memos:5230\n", "memos.url: must be an absolute http or https URL"},
		{"empty user", minimal + "access:\n  allowed_users: [\" \"]\n", "access.allowed_users: holds an empty name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tt.yaml), noEnv)
			if err == nil || c != nil {
				t.Fatalf("accepted: %+v", c)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestLoopbackIssuerMayBeHTTP(t *testing.T) {
	for _, issuer := range []string{"http://127.0.0.1:9091", "http://localhost:9091", "http://[::1]:9091"} {
		if _, err := Parse("t.yaml", []byte(strings.Replace(minimal, "https://auth.example.com", issuer, 1)), noEnv); err != nil {
			t.Errorf("%s: %v", issuer, err)
		}
	}
}

func TestCAFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	_, err := Parse("t.yaml", []byte(strings.Replace(minimal, "  client_id: memos", "  client_id: memos\n  ca_file: "+bad, 1)), noEnv)
	if err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("bad CA file: %v", err)
	}
}

func TestLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(minimal), 0o600)
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path + ".missing"); err == nil {
		t.Error("missing file accepted")
	}
}

func TestNormalizeHeaderName(t *testing.T) {
	for in, want := range map[string]string{
		"Remote-User": "remote-user", "remote_user": "remote-user", "REMOTE.USER": "remote-user", "X_a.B-c": "x-a-b-c",
	} {
		if got := NormalizeHeaderName(in); got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("listen: [unclosed\n"))
	f.Add([]byte("x: &a 1\ny: *a\n"))
	f.Add([]byte("headers: {A: b, a: c}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data, func(string) (string, bool) { return "v", true })
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", c != nil, err)
		}
		if c != nil && (len(c.Session.Secret) == 0 || c.OIDC.Issuer == "") {
			t.Fatalf("accepted an incomplete config: %+v", c)
		}
		if c != nil {
			for _, s := range c.Session.Secret {
				if len(s) < MinSecretLength {
					t.Fatalf("accepted a short secret: %q", s)
				}
			}
		}
	})
}

func TestRedisStore(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "redis-password")
	os.WriteFile(pw, []byte("hunter2\n"), 0o600)
	c, err := Parse("t.yaml", []byte(minimal+`  store: redis
  redis:
    address: 127.0.0.1:6379
    username: proxy
    password_file: `+pw+`
    db: 2
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Session.Redis
	if c.Session.Store != "redis" || r.Password != "hunter2" || r.DB != 2 || r.KeyPrefix != "oidc-proxy:" || r.Timeout != 2*time.Second {
		t.Errorf("redis: %+v", r)
	}
	if c, _ := Parse("t.yaml", []byte(minimal), noEnv); c.Session.Store != "cookie" {
		t.Errorf("default store %q", c.Session.Store)
	}
	for _, tt := range []struct{ yaml, key string }{
		{"  store: memcached\n", "session.store"},
		{"  redis:\n    address: 127.0.0.1:6379\n", "session.redis"},
		{"  store: redis\n", "session.redis.address"},
		{"  store: redis\n  redis:\n    address: localhost\n", "session.redis.address"},
		{"  store: redis\n  redis:\n    address: a:1\n    addresses: [b:1]\n    master_name: m\n", "session.redis.address"},
		{"  store: redis\n  redis:\n    addresses: [b:1, c:1]\n", "session.redis.addresses"},
		{"  store: redis\n  redis:\n    addresses: [b:1]\n    master_name: m\n    cluster: true\n", "session.redis.master_name"},
		{"  store: redis\n  redis:\n    addresses: [b:1]\n    cluster: true\n    db: 1\n", "session.redis.db"},
		{"  store: redis\n  redis:\n    address: a:1\n    password: x\n    password_file: " + pw + "\n", "session.redis.password_file"},
		{"  store: redis\n  redis:\n    address: a:1\n    ca_file: " + pw + "\n", "session.redis.ca_file"},
		{"  store: redis\n  redis:\n    address: a:1\n    key_prefix: \"a b\"\n", "session.redis.key_prefix"},
		{"  store: redis\n  redis:\n    address: a:1\n    timeout: 5ms\n", "session.redis.timeout"},
		{"  store: redis\n  redis:\n    address: a:1\n    hostname: b\n", "session.redis.hostname"},
	} {
		_, err := Parse("t.yaml", []byte(minimal+tt.yaml), noEnv)
		if err == nil || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("%q: want a problem with %s, got %v", tt.yaml, tt.key, err)
		}
	}
	for _, ok := range []string{
		"  store: redis\n  redis:\n    addresses: [s1:26379, s2:26379]\n    master_name: mymaster\n",
		"  store: redis\n  redis:\n    addresses: [n1:6379]\n    cluster: true\n    tls: true\n",
	} {
		if _, err := Parse("t.yaml", []byte(minimal+ok), noEnv); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

func TestMemosBridge(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "memos-admin")
	os.WriteFile(token, []byte("memos_pat_0123456789abcdef0123456789abcdef\n"), 0o600)
	c, err := Parse("t.yaml", []byte(minimal+`memos:
  bridge: true
  admin_token_file: `+token+`
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	m := c.Memos
	if m.AdminToken != "memos_pat_0123456789abcdef0123456789abcdef" || m.IdPID != "oidc-proxy" || m.IdPTitle != "Single sign-on" ||
		m.BridgeListen != "127.0.0.1:4181" || m.BridgeURL != "http://127.0.0.1:4181" || m.UsernameClaim != "preferred_username" || m.AllowPasswordSignIn {
		t.Errorf("bridge defaults: %+v", m)
	}
	for _, tt := range []struct{ yaml, key string }{
		{"memos:\n  idp_id: x\n", "memos"},
		{"memos:\n  allow_password_sign_in: true\n", "memos"},
		{"memos:\n  bridge: true\n  idp_id: Not_Valid\n", "memos.idp_id"},
		{"memos:\n  bridge: true\n  bridge_listen: nowhere\n", "memos.bridge_listen"},
		{"listen: 127.0.0.1:4181\nmemos:\n  bridge: true\n", "memos.bridge_listen"},
		{"memos:\n  bridge: true\n  bridge_url: not-a-url\n", "memos.bridge_url"},
		{"memos:\n  bridge: true\n  username_claim: \"a b\"\n", "memos.username_claim"},
		{"memos:\n  bridge: true\n  admin_token_file: /nonexistent/token\n", "memos.admin_token_file"},
	} {
		_, err := Parse("t.yaml", []byte(minimal+tt.yaml), noEnv)
		if err == nil || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("%q: want a problem with %s, got %v", tt.yaml, tt.key, err)
		}
	}
}

func TestIdentityJWT(t *testing.T) {
	key := filepath.Join(t.TempDir(), "k.pem")
	os.WriteFile(key, []byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"), 0o600)
	c, err := Parse("t.yaml", []byte(minimal+"identity_jwt: {key_files: ["+key+"]}\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	j := c.IdentityJWT
	if j.Header != "X-Oidc-Proxy-Assertion" || j.Audience != "https://memos.example.com" || j.Lifetime != 5*time.Minute ||
		j.Algorithm != "ES256" || !reflect.DeepEqual(j.Claims, DefaultIdentityJWTClaims()) {
		t.Errorf("defaults: %+v", j)
	}
	if c, _ := Parse("t.yaml", []byte(minimal), noEnv); c.IdentityJWT != nil {
		t.Error("identity_jwt on without being asked")
	}
	for _, tt := range []struct{ yaml, want string }{
		{"identity_jwt: {}", "needs at least one PEM private key"},
		{"identity_jwt: {key_files: [/nonexistent/k.pem]}", "no such file"},
		{"identity_jwt: {key_files: [" + key + "], algorithm: HS256}", "never an HMAC or none"},
		{"identity_jwt: {key_files: [" + key + "], algorithm: none}", "never an HMAC or none"},
		{"identity_jwt: {key_files: [" + key + "], lifetime: 10s}", "between 30s and 1h0m0s"},
		{"identity_jwt: {key_files: [" + key + "], lifetime: 2h}", "between 30s and 1h0m0s"},
		{"identity_jwt: {key_files: [" + key + "], header: Remote-User}", "already an identity header"},
		{"identity_jwt: {key_files: [" + key + "], header: remote_user}", "already an identity header"},
		{"identity_jwt: {key_files: [" + key + "], header: Host}", "cannot carry the token"},
		{"identity_jwt: {key_files: [" + key + "], header: \"a b\"}", "not a valid header name"},
		{"identity_jwt: {key_files: [" + key + "], audience: \"a b\"}", "without spaces"},
		{"identity_jwt: {key_files: [" + key + "], claims: {sub: email}}", "set by the proxy itself"},
		{"identity_jwt: {key_files: [" + key + "], claims: {exp: email}}", "set by the proxy itself"},
		{"identity_jwt: {key_files: [" + key + "], claims: {user: \"\"}}", "needs a session claim"},
	} {
		_, err := Parse("t.yaml", []byte(minimal+tt.yaml+"\n"), noEnv)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.yaml, err, tt.want)
		}
	}
}
