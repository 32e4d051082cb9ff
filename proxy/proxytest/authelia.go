package proxytest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy/authelia"
)

// AutheliaDomain is the cookie domain of the test Authelia; its portal and
// issuer are https://auth.<AutheliaDomain>:<port>. Nothing resolves it:
// Go clients dial through Authelia.Dial, Chromium maps it with
// --host-resolver-rules.
const AutheliaDomain = "example.test"

// AutheliaUser is an account in Authelia's users file.
type AutheliaUser struct {
	Name, Password, DisplayName, Email string
	Groups                             []string
	// TOTP, when set, is the user's second factor: a base32 secret (see
	// TOTPCode), registered before Authelia starts.
	TOTP string
}

// AutheliaClient is an OpenID Connect client registration. Empty fields
// get the proxy's defaults: a confidential client with client_secret_post,
// the authorization code and refresh grants, scopes openid, profile,
// email, groups and offline_access, policy one_factor, implicit consent.
type AutheliaClient struct {
	ID, Secret   string
	RedirectURIs []string
	Scopes       []string
	GrantTypes   []string
	Policy       string
	Consent      string
	// Lifespan names a custom lifespan ("short": access and ID tokens of
	// 66 s; "medium": 200 s).
	Lifespan string
	// ResponseTypes default to ['code']; a client without the
	// authorization code grant (client credentials, device flow) has
	// none: set NoResponseTypes.
	NoResponseTypes bool
	// Extra are more lines of the client's YAML, indented as its keys.
	Extra []string
}

// AutheliaOptions set up a test Authelia.
type AutheliaOptions struct {
	Users   []AutheliaUser
	Clients []AutheliaClient
	// RateLimits keeps Authelia's default rate limits (on in a real
	// deployment); off, the token and userinfo limits are disabled.
	RateLimits bool
	// MoreConfig are further configuration files (a client block, as a
	// user pastes it), passed after the generated one.
	MoreConfig []string
	// Configuration replaces the generated configuration file whole: its
	// text, after "{{PORT}}", "{{DIR}}", "{{CERT}}", "{{KEY}}" and
	// "{{JWKS_KEY}}" are filled in.
	Configuration string
}

// Authelia is a running real Authelia 4.39.
type Authelia struct {
	Issuer string // https://auth.example.test:PORT
	Host   string // auth.example.test
	Domain string // its cookie domain: every name under it dials 127.0.0.1
	Addr   string // 127.0.0.1:PORT
	Dir    string
	PKI    *PKI
	Config string // the configuration file
	log    *SyncBuffer
	// TOTP are the second factors of users who have one (user -> secret).
	TOTP map[string]string
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers: a log a
// program or a logger writes while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *SyncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *SyncBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Log is what Authelia wrote so far.
func (a *Authelia) Log() string { return a.log.String() }

// StartAuthelia starts the real Authelia (AUTHELIA_BIN) on a free loopback
// port with TLS from a test CA, waits until it is healthy, and stops it
// when the test ends.
func StartAuthelia(t testing.TB, o AutheliaOptions) *Authelia {
	t.Helper()
	a := WriteAuthelia(t, o)
	a.Start(t, o)
	return a
}

// Start starts the Authelia that WriteAuthelia wrote for o (its users'
// second factors registered first), with o's MoreConfig, and waits until
// it is healthy. Between the two, a test may write what needs the issuer.
func (a *Authelia) Start(t testing.TB, o AutheliaOptions) {
	t.Helper()
	bin := Bin(t, "AUTHELIA_BIN")
	args := []string{"--config", a.Config}
	for _, f := range o.MoreConfig {
		args = append(args, "--config", f)
	}
	a.TOTP = map[string]string{}
	for _, u := range o.Users {
		if u.TOTP == "" {
			continue
		}
		if len(a.TOTP) == 0 {
			if out, err := a.command(bin, append([]string{"storage", "migrate", "up"}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("authelia storage migrate up: %v\n%s", err, out)
			}
		}
		if out, err := a.command(bin, append([]string{"storage", "user", "totp", "generate", u.Name, "--secret", u.TOTP}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("authelia storage user totp generate: %v\n%s", err, out)
		}
		a.TOTP[u.Name] = u.TOTP
	}
	a.Run(t, a.command(bin, args...))
}

func (a *Authelia) command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Dir = a.Dir
	cmd.Env = AutheliaEnv()
	return cmd
}

// AutheliaEnv is this process's environment without what Authelia would
// read as its own configuration (AUTHELIA_*, X_AUTHELIA_*: AUTHELIA_BIN
// among them).
func AutheliaEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AUTHELIA_") && !strings.HasPrefix(kv, "X_AUTHELIA_") {
			out = append(out, kv)
		}
	}
	return out
}

// WriteAuthelia writes what StartAuthelia starts Authelia with (the
// configuration, users, TLS and signing keys, in a new directory), for a
// free loopback port, and starts nothing.
func WriteAuthelia(t testing.TB, o AutheliaOptions) *Authelia {
	t.Helper()
	dir := t.TempDir()
	port := FreePort(t)
	a := &Authelia{Host: "auth." + AutheliaDomain, Domain: AutheliaDomain, Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir}
	a.Issuer = fmt.Sprintf("https://%s:%d", a.Host, port)
	a.PKI = NewPKI(t, dir, a.Host, "*."+AutheliaDomain)
	jwks := filepath.Join(dir, "jwks.key")
	if err := os.WriteFile(jwks, RSAKeyPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	text := o.Configuration
	if text == "" {
		text = autheliaConfig(t, o, dir)
	}
	key, _ := os.ReadFile(jwks)
	text = strings.NewReplacer("{{PORT}}", itoa(port), "{{DIR}}", dir, "{{CERT}}", a.PKI.CertFile,
		"{{KEY}}", a.PKI.KeyFile, "{{JWKS_KEY}}", indentBlock(string(key), 10)).Replace(text)
	a.Config = filepath.Join(dir, "configuration.yml")
	if err := os.WriteFile(a.Config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return a
}

// Run starts cmd, an Authelia serving a.Issuer at a.Addr, stops it when
// the test ends, and waits until its health check answers.
func (a *Authelia) Run(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	proc := Start(t, cmd)
	a.log = proc.out
	done := proc.Done
	c := a.HTTPClient()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := c.Get(a.Issuer + "/api/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("authelia exited at start:\n%s", a.Log())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("authelia did not become healthy in 60 s:\n%s", a.Log())
		}
	}
}

// Dial connects to addr, with Authelia's names (and every other name
// under its domain, and under .localhost) on 127.0.0.1 at the port asked
// for; Authelia's host at port 443 is a.Addr.
func (a *Authelia) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	switch {
	case err == nil && host == a.Host && port == "443":
		addr = a.Addr // a test cannot listen on 443: Authelia is at a.Addr
	case err == nil && (host == a.Domain || strings.HasSuffix(host, "."+a.Domain) || strings.HasSuffix(host, ".localhost")):
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// Transport trusts the test CA and dials through Dial.
func (a *Authelia) Transport() *http.Transport {
	return &http.Transport{DialContext: a.Dial, TLSClientConfig: a.PKI.TLSConfig(), MaxIdleConnsPerHost: 16,
		ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second}
}

// HTTPClient is a client of Authelia (not following redirects across to
// anything it cannot reach: it follows them all, with a cookie jar).
func (a *Authelia) HTTPClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Transport: a.Transport(), Jar: jar, Timeout: 30 * time.Second}
}

// IdPClient is the proxy's client of Authelia, as rp.NewHTTPClient makes
// one (no redirects followed, a timeout), that reaches the test's names
// and trusts the test CA: for proxy.Options.IdPClient.
func (a *Authelia) IdPClient() *http.Client {
	return &http.Client{Transport: a.Transport(), Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TLS is the client TLS configuration that trusts Authelia.
func (a *Authelia) TLS() *tls.Config { return a.PKI.TLSConfig() }

func autheliaConfig(t testing.TB, o AutheliaOptions, dir string) string {
	users := filepath.Join(dir, "users.yml")
	var ub strings.Builder
	ub.WriteString("users:\n")
	for _, u := range o.Users {
		d, err := authelia.Digest(u.Password)
		if err != nil {
			t.Fatal(err)
		}
		name := u.DisplayName
		if name == "" {
			name = u.Name
		}
		fmt.Fprintf(&ub, "  %s:\n    displayname: %q\n    password: %q\n    email: %q\n    groups: [%s]\n",
			u.Name, name, d, u.Email, strings.Join(u.Groups, ", "))
	}
	if err := os.WriteFile(users, []byte(ub.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(`server:
  address: 'tcp://127.0.0.1:{{PORT}}/'
  tls:
    certificate: '{{CERT}}'
    key: '{{KEY}}'
`)
	if !o.RateLimits {
		b.WriteString(`  endpoints:
    rate_limits:
      openid_connect_token:
        enable: false
      openid_connect_userinfo:
        enable: false
`)
	}
	fmt.Fprintf(&b, `log:
  level: 'debug'
ntp:
  disable_startup_check: true
  disable_failure: true
webauthn:
  disable: true
authentication_backend:
  password_reset:
    disable: true
  password_change:
    disable: true
  file:
    path: '%s'
    watch: false
regulation:
  max_retries: 0
session:
  secret: 'hJfjcWg2EACChvL0qetkOYhKbnCTP4ANc8KvFkbB-W5c0eSd-oapyIj6oyabIYOI'
  cookies:
    - domain: '%s'
      authelia_url: 'https://auth.%s:{{PORT}}'
storage:
  encryption_key: 'LVbWq0zBqMWftbdYWLcVIBM2jI26wilcn7yA0G4KUH_KANRu1cxOsVqt7a7HVTs_'
  local:
    path: '{{DIR}}/db.sqlite3'
notifier:
  disable_startup_check: true
  filesystem:
    filename: '{{DIR}}/notification.txt'
access_control:
  default_policy: 'one_factor'
identity_providers:
  oidc:
    hmac_secret: '-6mYhEpkFZr4joqcloVAAF2hbayMurJ00WCN89XRse0b6CrWYUia-YW8SxXLtXmd'
    enforce_pkce: 'public_clients_only'
    jwks:
      - key_id: 'test-rs256'
        algorithm: 'RS256'
        use: 'sig'
        key: |
{{JWKS_KEY}}
    lifespans:
      custom:
        short:
          access_token: '66 seconds'
          id_token: '66 seconds'
          refresh_token: '90 minutes'
        medium:
          access_token: '200 seconds'
          id_token: '200 seconds'
          refresh_token: '90 minutes'
    clients:
`, users, AutheliaDomain, AutheliaDomain)
	for _, c := range o.Clients {
		d, err := authelia.Digest(c.Secret)
		if err != nil {
			t.Fatal(err)
		}
		def := func(v []string, d ...string) []string {
			if len(v) == 0 {
				return d
			}
			return v
		}
		policy, consent := c.Policy, c.Consent
		responseTypes := "'code'"
		if c.NoResponseTypes {
			responseTypes = ""
		}
		if policy == "" {
			policy = "one_factor"
		}
		if consent == "" {
			consent = "implicit"
		}
		fmt.Fprintf(&b, `      - client_id: '%s'
        client_name: '%s'
        client_secret: '%s'
        public: false
        authorization_policy: '%s'
        consent_mode: '%s'
        redirect_uris: [%s]
        scopes: [%s]
        grant_types: [%s]
        response_types: [%s]
        token_endpoint_auth_method: 'client_secret_post'
`, c.ID, c.ID, d, policy, consent, quoteList(c.RedirectURIs),
			quoteList(def(c.Scopes, "openid", "profile", "email", "groups", "offline_access")),
			quoteList(def(c.GrantTypes, "authorization_code", "refresh_token")), responseTypes)
		if c.Lifespan != "" {
			fmt.Fprintf(&b, "        lifespan: '%s'\n", c.Lifespan)
		}
		for _, l := range c.Extra {
			fmt.Fprintf(&b, "        %s\n", l)
		}
	}
	return b.String()
}

func quoteList(v []string) string {
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = "'" + s + "'"
	}
	return strings.Join(q, ", ")
}

func indentBlock(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pad + l
	}
	return strings.Join(lines, "\n")
}
