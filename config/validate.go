package config

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"
)

func (l *loader) validate(c *Config) {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		l.add("listen", "must be host:port or :port (%v)", err)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			l.add("metrics_listen", "must be host:port or :port (%v)", err)
		} else if c.MetricsListen == c.Listen {
			l.add("metrics_listen", "must differ from listen: metrics are not for the public")
		}
	}
	if u := l.url("external_url", c.ExternalURL, false); u != nil {
		if u.Path != "" && u.Path != "/" {
			l.add("external_url", "must not have a path: the proxy serves at the root of its host")
		}
		if u.RawQuery != "" || u.Fragment != "" {
			l.add("external_url", "must not have a query or fragment")
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		l.add("tls", "set both cert_file and key_file, or neither")
	} else if c.TLS.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile); err != nil {
			l.add("tls.cert_file", "%v", err)
		}
	}
	l.validateOIDC(&c.OIDC)
	l.validateSession(&c.Session)
	l.validateHeaders("", c.Headers)
	l.validateAccess("", &c.Access)
	l.validateRoutes(c)
	for _, tp := range c.TrustedProxies {
		if _, err := ParsePrefix(tp); err != nil {
			l.add("trusted_proxies", "%q is neither a CIDR nor an IP address", tp)
		}
	}
	if c.Pages.Dir != "" {
		if fi, err := os.Stat(c.Pages.Dir); err != nil || !fi.IsDir() {
			l.add("pages.dir", "%q is not a directory", c.Pages.Dir)
		}
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		l.add("log.format", "must be text or json, not %q", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		l.add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
}

func (l *loader) validateOIDC(o *OIDC) {
	if u := l.url("oidc.issuer", o.Issuer, true); u != nil && (u.RawQuery != "" || u.Fragment != "") {
		l.add("oidc.issuer", "must not have a query or fragment")
	}
	if o.ClientID == "" {
		l.add("oidc.client_id", "is required")
	}
	if o.ClientSecret == "" && o.ClientSecretFile == "" {
		l.add("oidc.client_secret", "is required (or oidc.client_secret_file)")
	}
	switch o.ClientAuthMethod {
	case "client_secret_post", "client_secret_basic":
	default:
		l.add("oidc.client_auth_method", "must be client_secret_post or client_secret_basic, not %q", o.ClientAuthMethod)
	}
	switch o.IntrospectionAuthMethod {
	case "client_secret_post", "client_secret_basic":
	default:
		l.add("oidc.introspection_auth_method", "must be client_secret_post or client_secret_basic, not %q", o.IntrospectionAuthMethod)
	}
	hasOpenID := false
	for _, s := range o.Scopes {
		if s == "openid" {
			hasOpenID = true
		}
		if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' || r == '"' || r == '\\' }) {
			l.add("oidc.scopes", "%q is not a valid scope", s)
		}
	}
	if !hasOpenID {
		l.add("oidc.scopes", "must contain openid")
	}
	if o.CAFile != "" {
		if pem, err := l.readFile(o.CAFile); err != nil {
			l.add("oidc.ca_file", "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			l.add("oidc.ca_file", "%s holds no PEM certificate", o.CAFile)
		}
	}
	if o.LogoutURL != "" {
		l.url("oidc.logout_url", o.LogoutURL, true)
	}
	if o.Timeout < time.Second || o.Timeout > 5*time.Minute {
		l.add("oidc.timeout", "must be between 1s and 5m, not %s", o.Timeout)
	}
}

func (l *loader) validateSession(s *Session) {
	if len(s.Secret) == 0 && len(s.SecretFile) == 0 {
		l.add("session.secret", "is required (or session.secret_file): 32 or more random bytes, for example from `openssl rand -base64 48`")
	}
	key := "session.secret"
	if len(s.SecretFile) > 0 {
		key = "session.secret_file"
	}
	for i, v := range s.Secret {
		if len(v) < MinSecretLength {
			l.add(key, "secret %d must be at least %d bytes long, not %d", i+1, MinSecretLength, len(v))
		}
	}
	if s.Lifetime < time.Minute {
		l.add("session.lifetime", "must be at least 1m, not %s", s.Lifetime)
	}
	if s.IdleTimeout != 0 && (s.IdleTimeout < time.Minute || s.IdleTimeout > s.Lifetime) {
		l.add("session.idle_timeout", "must be 0 (off) or between 1m and session.lifetime (%s), not %s", s.Lifetime, s.IdleTimeout)
	}
	if s.CookieName == "" || strings.HasPrefix(s.CookieName, "__") || strings.ContainsFunc(s.CookieName, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) {
		l.add("session.cookie_name", "must be letters, digits, _ and -, not starting with __ (the proxy adds __Host- itself)")
	}
	switch s.Store {
	case "cookie":
		if !reflect.ValueOf(s.Redis).IsZero() {
			l.add("session.redis", "is set but session.store is cookie: add store: redis")
		}
	case "redis":
		l.validateRedis(&s.Redis)
	default:
		l.add("session.store", "must be cookie or redis, not %q", s.Store)
	}
}

func (l *loader) validateRedis(r *Redis) {
	hostPort := func(key, a string) {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			l.add(key, "%q is not host:port", a)
		}
	}
	switch {
	case r.Address != "" && (len(r.Addresses) > 0 || r.MasterName != "" || r.Cluster):
		l.add("session.redis.address", "set address (one server), or addresses with master_name (Sentinel) or cluster: true, not both")
	case r.Address != "":
		hostPort("session.redis.address", r.Address)
	case len(r.Addresses) == 0:
		l.add("session.redis.address", "is required with store: redis (or addresses with master_name or cluster: true)")
	case r.MasterName != "" && r.Cluster:
		l.add("session.redis.master_name", "Sentinel (master_name) and cluster are exclusive")
	case r.MasterName == "" && !r.Cluster:
		l.add("session.redis.addresses", "need master_name (Sentinel) or cluster: true; for one server use address")
	default:
		for _, a := range r.Addresses {
			hostPort("session.redis.addresses", a)
		}
	}
	if r.Cluster && r.DB != 0 {
		l.add("session.redis.db", "Redis Cluster has only database 0")
	}
	if r.DB < 0 {
		l.add("session.redis.db", "must be 0 or more, not %d", r.DB)
	}
	if r.CAFile != "" {
		if !r.TLS {
			l.add("session.redis.ca_file", "needs tls: true")
		}
		data, err := l.readFile(r.CAFile)
		if err != nil {
			l.add("session.redis.ca_file", "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(data) {
			l.add("session.redis.ca_file", "%s holds no PEM certificate", r.CAFile)
		}
	}
	if strings.ContainsAny(r.KeyPrefix, " \t\r\n*?[]") {
		l.add("session.redis.key_prefix", "must not hold spaces or glob characters")
	}
	if r.Timeout < 100*time.Millisecond || r.Timeout > time.Minute {
		l.add("session.redis.timeout", "must be between 100ms and 1m, not %s", r.Timeout)
	}
}

func (l *loader) validateAccess(prefix string, a *Access) {
	for _, u := range a.AllowedUsers {
		if strings.TrimSpace(u) == "" {
			l.add(prefix+"access.allowed_users", "holds an empty name")
		}
	}
	for _, g := range a.AllowedGroups {
		if strings.TrimSpace(g) == "" {
			l.add(prefix+"access.allowed_groups", "holds an empty group")
		}
	}
	for _, d := range a.AllowedEmailDomains {
		if d == "" || strings.ContainsAny(d, "@*/ ") || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
			l.add(prefix+"access.allowed_email_domains", "%q is not a domain: write it as example.com (exact match, no wildcards)", d)
		}
	}
}

// reservedHeaders may not be set from claims: they carry the request itself
// or the forwarding information the proxy sets.
var reservedHeaders = map[string]bool{
	"authorization": true, "connection": true, "content-length": true, "content-type": true,
	"cookie": true, "forwarded": true, "host": true, "keep-alive": true, "proxy-authorization": true,
	"proxy-connection": true, "te": true, "trailer": true, "transfer-encoding": true, "upgrade": true,
	"x-forwarded-for": true, "x-forwarded-host": true, "x-forwarded-proto": true, "x-real-ip": true,
}

func (l *loader) validateHeaders(prefix string, h map[string]string) {
	seen := map[string]string{}
	for name, claim := range h {
		key := prefix + "headers." + name
		if !validHeaderName(name) {
			l.add(key, "%q is not a valid header name", name)
			continue
		}
		norm := NormalizeHeaderName(name)
		if reservedHeaders[norm] {
			l.add(key, "%s cannot carry a claim", http.CanonicalHeaderKey(name))
		}
		if other, dup := seen[norm]; dup {
			l.add(key, "%s and %s name the same header", other, name)
		}
		seen[norm] = name
		if claim == "" {
			l.add(key, "needs a claim name")
		}
	}
}

// validateBearer checks a route's bearer block, its keys under prefix.
func (l *loader) validateBearer(prefix string, b *Bearer, headers map[string]string) {
	if len(b.Audiences)+len(b.Machines)+len(b.Clients) == 0 {
		l.add(strings.TrimSuffix(prefix, "."), "accepts no token: list the audiences, the machines (client_ids of client-credentials clients) or the clients (client_ids whose people's tokens count) it accepts")
	}
	for key, list := range map[string][]string{"audiences": b.Audiences, "machines": b.Machines, "clients": b.Clients, "scopes": b.Scopes} {
		for _, v := range list {
			if strings.TrimSpace(v) == "" || strings.ContainsAny(v, " \t\r\n\"") {
				l.add(prefix+key, "%q is not a single value (no spaces or quotes)", v)
			}
		}
	}
	if b.ScopesMatch != "all" && b.ScopesMatch != "any" {
		l.add(prefix+"scopes_match", "must be all or any, not %q", b.ScopesMatch)
	}
	if b.Introspect != "opaque" && b.Introspect != "always" {
		l.add(prefix+"introspect", "must be opaque (JWT access tokens verified with the key set) or always, not %q", b.Introspect)
	}
	if b.CacheFor < 0 || b.CacheFor > time.Hour {
		l.add(prefix+"cache_for", "must be between 0 and 1h, not %v", b.CacheFor)
	}
	seen := map[string]string{}
	for name := range headers {
		seen[NormalizeHeaderName(name)] = "headers." + name
	}
	for key, name := range map[string]string{"client_header": b.ClientHeader, "scopes_header": b.ScopesHeader, "auth_header": b.AuthHeader} {
		norm := NormalizeHeaderName(name)
		switch {
		case !validHeaderName(name):
			l.add(prefix+key, "%q is not a valid header name", name)
		case reservedHeaders[norm]:
			l.add(prefix+key, "%s cannot carry an identity", http.CanonicalHeaderKey(name))
		case seen[norm] != "":
			l.add(prefix+key, "%s is also %s", name, seen[norm])
		default:
			seen[norm] = key
		}
	}
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// NormalizeHeaderName folds a header name the way some servers and
// frameworks read it: lower case, with "_" and "." taken as "-". Two names
// with the same normal form may reach an application as the same header.
func NormalizeHeaderName(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if c == '_' || c == '.' {
			b[i] = '-'
		}
	}
	return string(b)
}

// url checks that s is an absolute http(s) URL with a host. With
// httpsUnlessLoopback, plain http is allowed only for loopback hosts.
func (l *loader) url(key, s string, httpsUnlessLoopback bool) *url.URL {
	if s == "" {
		l.add(key, "is required")
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		l.add(key, "is not a URL: %v", err)
		return nil
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		l.add(key, "must be an absolute http or https URL, not %q", s)
		return nil
	}
	if u.User != nil {
		l.add(key, "must not carry a user name or password")
		return nil
	}
	if httpsUnlessLoopback && u.Scheme == "http" && !IsLoopback(u.Hostname()) {
		l.add(key, "must be https (plain http is allowed only for loopback hosts)")
		return nil
	}
	return u
}

// ParsePrefix reads a CIDR ("10.0.0.0/8") or a single address ("10.0.0.1",
// taken as /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// IsLoopback reports whether host names this machine: localhost or an
// address in 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var memosIDP = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$`)

// memosUsername and memosReserved are Memos 0.30's rules for usernames.
var (
	memosUsername = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,34}[a-zA-Z0-9])?$`)
	memosReserved = map[string]bool{"admin": true, "administrator": true, "api": true, "memos": true, "root": true, "support": true, "system": true}
)

func (l *loader) validateMemos(prefix string, m *Memos, c *Config) {
	if !m.Bridge {
		if m.AdminTokenFile != "" || m.AdminUsername != "" || m.AdminPasswordFile != "" || len(m.AdminGroups) > 0 || m.IdPID != "" || m.IdPTitle != "" || m.BridgeListen != "" || m.BridgeURL != "" || m.UsernameClaim != "" || m.AllowPasswordSignIn {
			l.add(prefix+"memos", "bridge settings are set but memos.bridge is false")
		}
		return
	}
	if !memosIDP.MatchString(m.IdPID) {
		l.add(prefix+"memos.idp_id", "must be 2 to 32 lowercase letters, digits and -, not %q", m.IdPID)
	}
	if _, port, err := net.SplitHostPort(m.BridgeListen); err != nil || port == "" {
		l.add(prefix+"memos.bridge_listen", "must be host:port, not %q", m.BridgeListen)
	} else if m.BridgeListen == c.Listen || m.BridgeListen == c.MetricsListen {
		l.add(prefix+"memos.bridge_listen", "must differ from listen and metrics_listen: only Memos may reach it")
	}
	l.url(prefix+"memos.bridge_url", m.BridgeURL, false)
	if m.UsernameClaim == "" || strings.ContainsAny(m.UsernameClaim, " \t\r\n") {
		l.add(prefix+"memos.username_claim", "must be a claim name")
	}
	if m.AdminUsername != "" && (!memosUsername.MatchString(m.AdminUsername) || strings.Trim(m.AdminUsername, "0123456789") == "" || memosReserved[strings.ToLower(m.AdminUsername)]) {
		l.add(prefix+"memos.admin_username", "%q is not a name Memos accepts (1-36 of a-z A-Z 0-9 -, not all digits, not reserved)", m.AdminUsername)
	}
	if m.AdminPasswordFile != "" && !missingFile(m.AdminPasswordFile) {
		if _, err := l.readFile(m.AdminPasswordFile); err != nil {
			l.add(prefix+"memos.admin_password_file", "%v", err)
		}
	}
	for _, g := range m.AdminGroups {
		if g == "" {
			l.add(prefix+"memos.admin_groups", "an empty group name")
		}
	}
	if m.AdminToken != "" && strings.ContainsAny(m.AdminToken, " \t\r\n") {
		l.add(prefix+"memos.admin_token_file", "holds more than one token")
	}
}

// registeredClaims are set by the proxy in every identity JWT.
var registeredClaims = map[string]bool{"iss": true, "sub": true, "aud": true, "exp": true, "nbf": true, "iat": true, "jti": true}

func (l *loader) validateIdentityJWT(prefix string, j *IdentityJWT, headers map[string]string) {
	if !validHeaderName(j.Header) {
		l.add(prefix+"identity_jwt.header", "%q is not a valid header name", j.Header)
	} else if reservedHeaders[NormalizeHeaderName(j.Header)] {
		l.add(prefix+"identity_jwt.header", "%s cannot carry the token", http.CanonicalHeaderKey(j.Header))
	} else {
		for name := range headers {
			if NormalizeHeaderName(name) == NormalizeHeaderName(j.Header) {
				l.add(prefix+"identity_jwt.header", "%s is already an identity header (headers)", name)
			}
		}
	}
	if j.Audience == "" || strings.ContainsAny(j.Audience, " \t\r\n\"\\") {
		l.add(prefix+"identity_jwt.audience", "must be a URL or name without spaces or quotes")
	}
	if j.Lifetime < MinIdentityJWTLifetime || j.Lifetime > MaxIdentityJWTLifetime {
		l.add(prefix+"identity_jwt.lifetime", "must be between %s and %s, not %s", MinIdentityJWTLifetime, MaxIdentityJWTLifetime, j.Lifetime)
	}
	switch j.Algorithm {
	case "ES256", "EdDSA":
	default:
		l.add(prefix+"identity_jwt.algorithm", "must be ES256 or EdDSA, not %q (never an HMAC or none)", j.Algorithm)
	}
	if len(j.KeyFiles) == 0 {
		l.add(prefix+"identity_jwt.key_files", "needs at least one PEM private key (the first signs)")
	}
	for _, f := range j.KeyFiles {
		if _, err := l.readFile(f); err != nil {
			l.add(prefix+"identity_jwt.key_files", "%v", err)
		}
	}
	for name, claim := range j.Claims {
		switch {
		case name == "" || strings.ContainsAny(name, " \t\r\n\""):
			l.add(prefix+"identity_jwt.claims", "%q is not a claim name", name)
		case registeredClaims[name]:
			l.add(prefix+"identity_jwt.claims."+name, "is set by the proxy itself")
		case claim == "":
			l.add(prefix+"identity_jwt.claims."+name, "needs a session claim")
		}
	}
}
