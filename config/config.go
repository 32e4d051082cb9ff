// Package config holds the proxy's YAML schema: the user's configuration and
// nothing else. Load reads a file, expands ${VAR} references, reads *_file
// secrets, applies defaults and validates, reporting every problem at once
// with its line number.
package config

import (
	"net/url"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration file. Every field is documented in the
// README under the same key name.
type Config struct {
	// Listen is the address the proxy serves on. Default ":4180".
	Listen string `yaml:"listen"`
	// ExternalURL is the public URL users reach the proxy at, without a
	// path. The OIDC callback is ExternalURL + "/oauth2/callback". An https
	// URL turns on Secure cookies with the __Host- prefix. Required.
	ExternalURL string `yaml:"external_url"`
	// MetricsListen, when set, serves Prometheus metrics at /metrics on
	// this address (keep it private). Default: off.
	MetricsListen string `yaml:"metrics_listen"`
	// Upstream is the URL of the application behind the proxy. Required.
	Upstream string `yaml:"upstream"`
	// UpstreamReadyPath, when set, makes /oauth2/readyz also ask the
	// upstream: a GET of this path must answer below 500 within 2 s (Memos
	// serves /healthz). Default: the upstream is not asked.
	UpstreamReadyPath string `yaml:"upstream_ready_path"`
	// PreserveHost sends the client's Host header to the upstream (Memos
	// grants credentialed CORS only when Origin matches Host). Default true.
	PreserveHost *bool `yaml:"preserve_host"`
	// WebSockets lets a WebSocket handshake (a GET with Upgrade: websocket
	// and the handshake headers) switch the connection to the upstream.
	// Every other upgrade is dropped from the request whatever this says
	// (see the README's security section). Default true.
	WebSockets *bool `yaml:"websockets"`

	// TLS, when set, makes the proxy serve https itself (with HTTP/2).
	TLS TLS `yaml:"tls"`

	OIDC    OIDC    `yaml:"oidc"`
	Session Session `yaml:"session"`

	// Headers maps a request header sent to the upstream to the claim that
	// fills it. List claims are joined with ",". When omitted, DefaultHeaders
	// applies. Client-sent copies of these headers are always removed.
	Headers map[string]string `yaml:"headers"`

	Access Access `yaml:"access"`

	// IdentityJWT, when set, also sends the upstream the identity as a
	// short-lived JWT signed by the proxy, verifiable with its key set at
	// /oauth2/jwks.json. Default: off (client copies of the header are
	// removed all the same).
	IdentityJWT *IdentityJWT `yaml:"identity_jwt"`

	// Memos holds what the proxy does for Memos in particular.
	Memos Memos `yaml:"memos"`

	// Bearer lets API clients, scripts and services in with the
	// provider's own access tokens (Authorization: Bearer). Default off.
	Bearer *Bearer `yaml:"bearer"`

	// Routes serve several applications, each on its own host (and path
	// prefix) with its own upstream and policy, behind one sign-in. With
	// routes, upstream, upstream_ready_path, preserve_host, websockets,
	// public_paths, identity_jwt and memos belong to each route; headers and access at
	// the top level are the defaults of routes that set none. Default: no
	// routes, the top-level upstream serves every host.
	Routes []Route `yaml:"routes"`

	// PublicPaths are path patterns (path.Match syntax: "*" is one path
	// segment or part of one) that pass without sign-in, such as Memos's
	// "/explore" or "/memos/shares/*". A request is public only when its
	// decoded path is already clean (no "//", "/./", "/../") and has no
	// encoded "/": anything else needs a session. Default: none.
	PublicPaths []string `yaml:"public_paths"`

	// TrustedProxies are the addresses (CIDRs, or single IPs) of front
	// proxies whose X-Forwarded-For and X-Forwarded-Host are believed. From
	// any other peer those headers are replaced. Default: none.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// Pages replaces the proxy's own pages with an operator's.
	Pages Pages `yaml:"pages"`

	// Admin names who may use the administration page (/oauth2/admin/ on
	// the sign-in host): people signed in now, and signing a person out
	// everywhere. Default: nobody.
	Admin Admin `yaml:"admin"`

	Log Log `yaml:"log"`
}

// Admin configures the administration page.
type Admin struct {
	// Groups are the groups (entries of the groups claim) whose members
	// are administrators.
	Groups []string `yaml:"groups"`
}

// Pages configures the proxy's own HTML pages.
type Pages struct {
	// Dir holds replacements: error.html, forbidden.html, signed_out.html,
	// each with {{placeholders}} (README, "Pages"). Default: the built-in
	// pages.
	Dir string `yaml:"dir"`
}

// Access restricts which signed-in users may reach the upstream. With no
// list set, every user the provider signs in may. With any set, a user
// must match at least one entry of one list. A user who does not gets a
// 403 page that names them and offers sign-out.
type Access struct {
	// AllowedUsers are preferred_username values, matched exactly.
	AllowedUsers []string `yaml:"allowed_users"`
	// AllowedGroups are entries of the groups claim, matched exactly.
	AllowedGroups []string `yaml:"allowed_groups"`
	// AllowedEmailDomains match the part of the email claim after its
	// last "@", exactly and ignoring case: "example.com" does not admit
	// "mail.example.com" or "badexample.com". An email the provider marks
	// email_verified: false matches nothing.
	AllowedEmailDomains []string `yaml:"allowed_email_domains"`
}

// IdentityJWT configures the signed identity for the upstream.
type IdentityJWT struct {
	// Header carries the token. Default "X-Oidc-Proxy-Assertion".
	Header string `yaml:"header"`
	// Audience is the token's aud, what the application checks it was
	// made for. Default: the origin of external_url.
	Audience string `yaml:"audience"`
	// Lifetime of a token, 30s to 1h. Default 5m. A token is reused for
	// the same session until half of it has passed.
	Lifetime time.Duration `yaml:"lifetime"`
	// Algorithm is ES256 (default; P-256 keys) or EdDSA (Ed25519 keys).
	Algorithm string `yaml:"algorithm"`
	// KeyFiles are PEM private keys: the first signs, every one is
	// published, so keys rotate without a gap. Required.
	KeyFiles []string `yaml:"key_files"`
	// Claims maps a claim of the token to the session claim that fills
	// it; groups is sent as a list, every other claim as a string.
	// Default DefaultIdentityJWTClaims.
	Claims map[string]string `yaml:"claims"`
}

// Identity JWT defaults and bounds.
const (
	DefaultIdentityJWTHeader   = "X-Oidc-Proxy-Assertion"
	DefaultIdentityJWTLifetime = 5 * time.Minute
	MinIdentityJWTLifetime     = 30 * time.Second
	MaxIdentityJWTLifetime     = time.Hour
)

// DefaultIdentityJWTClaims is the identity JWT's claim mapping when its
// claims block is omitted.
func DefaultIdentityJWTClaims() map[string]string {
	return map[string]string{"preferred_username": "preferred_username", "email": "email", "name": "name", "groups": "groups"}
}

// TLS names the certificate and key the proxy serves. Both files are
// reloaded when they change, without a restart.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// OIDC describes the OpenID Provider and this proxy's client registration.
type OIDC struct {
	// Issuer is the provider's issuer URL; discovery is fetched from
	// Issuer + "/.well-known/openid-configuration". Required; https unless
	// the host is a loopback address.
	Issuer string `yaml:"issuer"`
	// ClientID is the client id registered at the provider. Required.
	ClientID string `yaml:"client_id"`
	// ClientSecret is the client secret. Exactly one of ClientSecret and
	// ClientSecretFile is required; after Load, ClientSecret holds the value.
	ClientSecret     string `yaml:"client_secret"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// ClientAuthMethod is how the proxy authenticates at the token endpoint:
	// "client_secret_post" (default) or "client_secret_basic". It must match
	// the provider's registration exactly: Authelia refuses any other method.
	ClientAuthMethod string `yaml:"client_auth_method"`
	// IntrospectionAuthMethod is how the proxy authenticates at the
	// introspection endpoint (bearer tokens): client_secret_post or
	// client_secret_basic. Authelia's default for a client is
	// client_secret_basic whatever its token endpoint method is; register
	// the client with introspection_endpoint_auth_method to match.
	// Default: client_auth_method.
	IntrospectionAuthMethod string `yaml:"introspection_auth_method"`
	// Scopes requested; must contain "openid".
	// Default [openid, profile, email, groups].
	Scopes []string `yaml:"scopes"`
	// CAFile is an optional PEM bundle trusted, in addition to the system
	// roots, for TLS connections to the provider.
	CAFile string `yaml:"ca_file"`
	// LogoutURL is where sign-out sends the browser when the provider's
	// discovery has no end_session_endpoint (Authelia 4.39 has none: use
	// "https://auth.example.com/logout"). The proxy appends rd=<return URL>.
	LogoutURL string `yaml:"logout_url"`
	// Timeout bounds every request to the provider. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// Session configures the session cookie.
type Session struct {
	// Secret derives the keys that encrypt and sign the session cookie; at
	// least 32 bytes. It may be a list: the first secret encrypts new
	// cookies, every one opens existing ones, so secrets rotate without
	// signing anyone out. Exactly one of Secret and SecretFile (a file, or
	// a list of files, one secret each) is required; after Load, Secret
	// holds the values.
	Secret     Secrets `yaml:"secret"`
	SecretFile Secrets `yaml:"secret_file"`
	// Lifetime is how long a session lasts after sign-in. Default 168h.
	Lifetime time.Duration `yaml:"lifetime"`
	// IdleTimeout, when set, also ends a session after this long without a
	// request. Activity renews the cookie, but never past Lifetime.
	// Default 0: no idle timeout.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// CookieName is the base name of the proxy's cookies. With an https
	// external_url the browser sees it with the "__Host-" prefix.
	// Default "oidc_proxy".
	CookieName string `yaml:"cookie_name"`
	// Store is where sessions live: "cookie" (default: the whole session,
	// encrypted and signed, in the browser's cookie; nothing else needed,
	// any number of replicas with the same secret) or "redis" (the browser
	// holds a small ticket; tokens and claims live in Redis, encrypted with
	// a key that is in the ticket and not in Redis). Redis is for
	// revocation that reaches every replica, very large identities, and
	// replicas sharing refresh tokens.
	Store string `yaml:"store"`
	// Redis configures the Redis store; required with store: redis.
	Redis Redis `yaml:"redis"`
}

// Redis is how the proxy reaches Redis: one server (Address), a Sentinel
// group (Addresses of the sentinels and MasterName), or a cluster
// (Addresses of some nodes and Cluster: true).
type Redis struct {
	// Address is host:port of a single Redis server.
	Address string `yaml:"address"`
	// Addresses are the sentinels (with MasterName) or cluster nodes (with
	// Cluster).
	Addresses []string `yaml:"addresses"`
	// MasterName is the Sentinel master's name.
	MasterName string `yaml:"master_name"`
	// Cluster selects Redis Cluster.
	Cluster bool `yaml:"cluster"`
	// Username and Password authenticate (Redis 6 ACL; Password alone for
	// requirepass). Prefer PasswordFile.
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// DB is the database number (not with Cluster). Default 0.
	DB int `yaml:"db"`
	// TLS turns on TLS to Redis, verified against the system roots and
	// CAFile. Default off.
	TLS bool `yaml:"tls"`
	// CAFile is an optional PEM bundle trusted for Redis's certificate.
	CAFile string `yaml:"ca_file"`
	// KeyPrefix starts the name of every key the proxy writes, so that
	// several proxies can share one database. Default "oidc-proxy:".
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds each Redis command. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
}

// Bearer accepts the provider's access tokens on a route: a request
// with Authorization: Bearer is authenticated by the token alone, never
// sent to sign in. A JWT access token (RFC 9068) is verified with the
// provider's key set, any other token at its introspection endpoint (RFC
// 7662). A token passes only when the route accepts its client or its
// audience, it has the required scopes, and, for a person's token, the
// route's access rules admit the person.
type Bearer struct {
	// Audiences accepted in a token's aud: a token naming one passes the
	// client check whatever client got it (the provider issued it for
	// this application). Default none.
	Audiences []string `yaml:"audiences"`
	// Machines are the client_ids whose own tokens (client credentials:
	// no user) are accepted: a script, a CI job, a service. Default none.
	Machines []string `yaml:"machines"`
	// Clients are the client_ids whose people's tokens are accepted (a
	// command-line tool's device-flow tokens); the person must also pass
	// the route's access rules. Default none.
	Clients []string `yaml:"clients"`
	// Scopes a token must have: all of them, or any one with
	// scopes_match: any. Default none.
	Scopes      []string `yaml:"scopes"`
	ScopesMatch string   `yaml:"scopes_match"`
	// Introspect is "opaque" (JWT access tokens are verified locally,
	// other tokens at the introspection endpoint) or "always" (JWTs too:
	// a revoked one is refused at once). Default "opaque".
	Introspect string `yaml:"introspect"`
	// CacheFor bounds how long a verified token's result is kept (never
	// past the token's expiry). Default 5m.
	CacheFor time.Duration `yaml:"cache_for"`
	// ClientHeader, ScopesHeader and AuthHeader name the headers a
	// bearer request's upstream receives: the token's client_id, its
	// scopes (space-separated), and "bearer" (browser sessions get
	// nothing there; client copies are always removed). Defaults
	// "Remote-Client", "Remote-Scopes", "Remote-Auth".
	ClientHeader string `yaml:"client_header"`
	ScopesHeader string `yaml:"scopes_header"`
	AuthHeader   string `yaml:"auth_header"`
}

// Bearer defaults.
const (
	DefaultBearerCacheFor     = 5 * time.Minute
	DefaultBearerClientHeader = "Remote-Client"
	DefaultBearerScopesHeader = "Remote-Scopes"
	DefaultBearerAuthHeader   = "Remote-Auth"
)

func (b *Bearer) applyDefaults() {
	if b == nil {
		return
	}
	if b.ScopesMatch == "" {
		b.ScopesMatch = "all"
	}
	if b.Introspect == "" {
		b.Introspect = "opaque"
	}
	if b.CacheFor == 0 {
		b.CacheFor = DefaultBearerCacheFor
	}
	if b.ClientHeader == "" {
		b.ClientHeader = DefaultBearerClientHeader
	}
	if b.ScopesHeader == "" {
		b.ScopesHeader = DefaultBearerScopesHeader
	}
	if b.AuthHeader == "" {
		b.AuthHeader = DefaultBearerAuthHeader
	}
}

// Memos configures the Memos-specific behaviour.
type Memos struct {
	// URL is where the proxy reaches Memos itself. Default: upstream.
	URL string `yaml:"url"`
	// PassBearerTokens lets a request without a proxy session through when
	// it carries an Authorization: Bearer token that Memos confirms belongs
	// to an active user (personal access tokens of mobile apps and
	// integrations). The answer is cached briefly, keyed by a hash of the
	// token. Memos treats an unknown token as anonymous, so unconfirmed
	// tokens never pass. Default false.
	PassBearerTokens bool `yaml:"pass_bearer_tokens"`

	// Bridge signs users into Memos itself: the proxy is Memos's OAuth2
	// identity provider, backed by the proxy session. Default false.
	Bridge bool `yaml:"bridge"`
	// AdminTokenFile holds a Memos admin's personal access token; with it
	// the proxy registers itself as Memos's identity provider at start
	// (idempotently) and keeps roles and profiles in step. When the file
	// does not exist and Memos has no users yet, the proxy sets Memos up
	// and writes it (mode 0600). Without it, run `oidc-proxy memos-setup`.
	AdminTokenFile string `yaml:"admin_token_file"`
	AdminToken     string `yaml:"-"`
	// AdminUsername is the account the proxy creates as Memos's first
	// admin on a fresh instance. Default "oidc-proxy-admin".
	AdminUsername string `yaml:"admin_username"`
	// AdminPasswordFile holds that account's password (break-glass);
	// created with a long random password, mode 0600, when missing.
	// Default: admin_token_file + ".password".
	AdminPasswordFile string `yaml:"admin_password_file"`
	// AdminGroups, when set, make a user in one of these groups a Memos
	// admin and a user in none of them a plain user, at each sign-in
	// through the bridge. Default none: roles are left alone.
	AdminGroups []string `yaml:"admin_groups"`
	// IdPID is the identity provider's id in Memos. Default "oidc-proxy".
	// Users are linked to it: keep it stable.
	IdPID string `yaml:"idp_id"`
	// IdPTitle is the label of the button on Memos's sign-in page.
	// Default "Single sign-on".
	IdPTitle string `yaml:"idp_title"`
	// BridgeListen is where the proxy serves the token and userinfo
	// endpoints Memos calls: keep it reachable by Memos only. Default
	// "127.0.0.1:4181".
	BridgeListen string `yaml:"bridge_listen"`
	// BridgeURL is how Memos reaches BridgeListen. Default
	// "http://" + BridgeListen.
	BridgeURL string `yaml:"bridge_url"`
	// UsernameClaim is the claim that becomes the Memos username (and
	// links the user). Default "preferred_username".
	UsernameClaim string `yaml:"username_claim"`
	// AllowPasswordSignIn keeps Memos's own password sign-in (/auth/admin,
	// sign-up, SignIn with a password) reachable through the proxy, as a
	// break-glass. Default false.
	AllowPasswordSignIn bool `yaml:"allow_password_sign_in"`
}

// Secrets is one string or a list of them.
type Secrets []string

// UnmarshalYAML takes a single value as a list of one.
func (s *Secrets) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var v string
		if err := n.Decode(&v); err != nil {
			return err
		}
		*s = Secrets{v}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*s = list
	return nil
}

// Log configures the structured log.
type Log struct {
	// Format is "text" (default) or "json".
	Format string `yaml:"format"`
	// Level is "debug", "info" (default), "warn" or "error".
	Level string `yaml:"level"`
	// Access writes one line per request (method, path without query,
	// status, bytes, duration, user, upstream time, client). Default true.
	Access *bool `yaml:"access"`
}

// DefaultHeaders is the header mapping used when the headers block is omitted.
func DefaultHeaders() map[string]string {
	return map[string]string{
		"Remote-User":   "preferred_username",
		"Remote-Name":   "name",
		"Remote-Email":  "email",
		"Remote-Groups": "groups",
	}
}

// Defaults for optional keys.
const (
	DefaultListen           = ":4180"
	DefaultClientAuthMethod = "client_secret_post"
	DefaultTimeout          = 10 * time.Second
	DefaultLifetime         = 168 * time.Hour
	DefaultCookieName       = "oidc_proxy"
	// DefaultMemosAdminUsername is the setup account the proxy creates in
	// a fresh Memos: a name Memos accepts, and not a person's.
	DefaultMemosAdminUsername = "oidc-proxy-admin"
	// DefaultMemosIdPID is memos.idp_id's default: the bridge then takes
	// over a Memos provider of the same OpenID Provider, if there is one.
	DefaultMemosIdPID = "oidc-proxy"
	MinSecretLength   = 32
)

// DefaultScopes is the scope list used when oidc.scopes is omitted.
func DefaultScopes() []string { return []string{"openid", "profile", "email", "groups"} }

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.PreserveHost == nil {
		t := true
		c.PreserveHost = &t
	}
	if c.WebSockets == nil {
		t := true
		c.WebSockets = &t
	}
	if c.OIDC.ClientAuthMethod == "" {
		c.OIDC.ClientAuthMethod = DefaultClientAuthMethod
	}
	if c.OIDC.IntrospectionAuthMethod == "" {
		c.OIDC.IntrospectionAuthMethod = c.OIDC.ClientAuthMethod
	}
	if c.OIDC.Scopes == nil {
		c.OIDC.Scopes = DefaultScopes()
	}
	if c.OIDC.Timeout == 0 {
		c.OIDC.Timeout = DefaultTimeout
	}
	if c.Session.Lifetime == 0 {
		c.Session.Lifetime = DefaultLifetime
	}
	if c.Session.Store == "" {
		c.Session.Store = "cookie"
	}
	if c.Session.Store == "redis" {
		if c.Session.Redis.KeyPrefix == "" {
			c.Session.Redis.KeyPrefix = "oidc-proxy:"
		}
		if c.Session.Redis.Timeout == 0 {
			c.Session.Redis.Timeout = 2 * time.Second
		}
	}
	c.Memos.applyDefaults()
	c.Bearer.applyDefaults()
	if c.Session.CookieName == "" {
		c.Session.CookieName = DefaultCookieName
	}
	if c.Headers == nil {
		c.Headers = DefaultHeaders()
	}
	c.IdentityJWT.applyDefaults(c.ExternalURL)
	c.applyRouteDefaults()
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
}

func (m *Memos) applyDefaults() {
	if !m.Bridge {
		return
	}
	if m.IdPID == "" {
		m.IdPID = DefaultMemosIdPID
	}
	if m.IdPTitle == "" {
		m.IdPTitle = "Single sign-on"
	}
	if m.BridgeListen == "" {
		m.BridgeListen = "127.0.0.1:4181"
	}
	if m.BridgeURL == "" {
		m.BridgeURL = "http://" + m.BridgeListen
	}
	if m.UsernameClaim == "" {
		m.UsernameClaim = "preferred_username"
	}
	if m.AdminUsername == "" {
		m.AdminUsername = DefaultMemosAdminUsername
	}
	if m.AdminPasswordFile == "" && m.AdminTokenFile != "" {
		m.AdminPasswordFile = m.AdminTokenFile + ".password"
	}
}

// applyDefaults fills the identity JWT's omitted keys; its audience
// defaults to the origin of external.
func (j *IdentityJWT) applyDefaults(external string) {
	if j == nil {
		return
	}
	if j.Header == "" {
		j.Header = DefaultIdentityJWTHeader
	}
	if j.Lifetime == 0 {
		j.Lifetime = DefaultIdentityJWTLifetime
	}
	if j.Algorithm == "" {
		j.Algorithm = "ES256"
	}
	if j.Claims == nil {
		j.Claims = DefaultIdentityJWTClaims()
	}
	if j.Audience == "" {
		if u, err := url.Parse(external); err == nil && u.Host != "" {
			j.Audience = u.Scheme + "://" + u.Host
		}
	}
}
