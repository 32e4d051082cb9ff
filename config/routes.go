package config

import (
	"fmt"
	"net"
	"path"
	"path/filepath"
	"strings"
)

// Route is one application behind the proxy: the requests it serves (a
// host, and optionally a path prefix) and what the proxy does for them.
type Route struct {
	// Name labels the route in metrics and logs. Default: host + path.
	Name string `yaml:"name"`
	// Host is the host the route serves: a name ("notes.example.com") or
	// a leading wildcard label ("*.apps.example.com", one label). Matched
	// against the request's Host (lower-cased, port removed). Required.
	Host string `yaml:"host"`
	// Path, when set, limits the route to this path prefix, segment by
	// segment ("/grafana" serves /grafana and /grafana/x, not /grafanax).
	// The path is forwarded as it is. Default: the whole host.
	Path string `yaml:"path"`
	// Upstream, UpstreamReadyPath, PreserveHost, WebSockets, Headers,
	// PublicPaths, IdentityJWT and Memos are as at the top level, for this
	// route.
	Upstream          string            `yaml:"upstream"`
	UpstreamReadyPath string            `yaml:"upstream_ready_path"`
	PreserveHost      *bool             `yaml:"preserve_host"`
	WebSockets        *bool             `yaml:"websockets"`
	Headers           map[string]string `yaml:"headers"`
	PublicPaths       []string          `yaml:"public_paths"`
	IdentityJWT       *IdentityJWT      `yaml:"identity_jwt"`
	Memos             Memos             `yaml:"memos"`
	Bearer            *Bearer           `yaml:"bearer"`
	// Access is who may use this route. Default: the top-level access.
	Access *Access `yaml:"access"`
	// Title, Description and Icon present the route on the home page
	// (/oauth2/): a name (default: the route's name), a line about it,
	// and an icon (one emoji or a few letters, or a data:image/ URI: the
	// page loads nothing from elsewhere). Listed false keeps it off the
	// list. Defaults: the name, none, none, true.
	Title       string `yaml:"title"`
	Description string `yaml:"description"`
	Icon        string `yaml:"icon"`
	Listed      *bool  `yaml:"listed"`

	line int // where the route starts in the file (0: the top level)
}

// Line is the line of the configuration file the route starts at; 0 for
// the route a configuration without routes makes of its top level.
func (r *Route) Line() int { return r.line }

// RouteList is the routes the configuration serves: its routes, or, when
// it has none, one route made of the top-level keys that serves every
// host (Host ""). Call it after Load: defaults are applied.
func (c *Config) RouteList() []Route {
	if len(c.Routes) > 0 {
		return c.Routes
	}
	return []Route{{
		Name: "default", Upstream: c.Upstream, UpstreamReadyPath: c.UpstreamReadyPath,
		PreserveHost: c.PreserveHost, WebSockets: c.WebSockets, Headers: c.Headers, PublicPaths: c.PublicPaths,
		IdentityJWT: c.IdentityJWT, Memos: c.Memos, Bearer: c.Bearer, Access: &c.Access,
	}}
}

// Bridged is the route list's Memos bridges: the routes with memos.bridge.
func (c *Config) Bridged() []Route {
	var out []Route
	for _, r := range c.RouteList() {
		if r.Memos.Bridge {
			out = append(out, r)
		}
	}
	return out
}

// OriginOf is the public origin of a route host: external_url's scheme
// and port with host.
func (c *Config) OriginOf(host string) string {
	scheme, port := "https", ""
	if i := strings.Index(c.ExternalURL, "://"); i > 0 {
		scheme = c.ExternalURL[:i]
		rest := c.ExternalURL[i+3:]
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			rest = rest[:j]
		}
		if _, p, err := net.SplitHostPort(rest); err == nil {
			port = ":" + p
		}
	}
	return scheme + "://" + host + port
}

func (c *Config) applyRouteDefaults() {
	for i := range c.Routes {
		r := &c.Routes[i]
		r.Host = strings.ToLower(r.Host)
		if r.Path != "" {
			r.Path = strings.TrimSuffix(path.Clean(r.Path), "/")
		}
		if r.Name == "" {
			r.Name = r.Host + r.Path
		}
		if r.PreserveHost == nil {
			t := true
			r.PreserveHost = &t
		}
		if r.WebSockets == nil {
			t := true
			r.WebSockets = &t
		}
		if r.Headers == nil {
			r.Headers = c.Headers
		}
		if r.Access == nil {
			r.Access = &c.Access
		}
		r.Memos.applyDefaults()
		r.Bearer.applyDefaults()
		if !strings.HasPrefix(r.Host, "*.") {
			r.IdentityJWT.applyDefaults(c.OriginOf(r.Host))
		} else {
			r.IdentityJWT.applyDefaults(c.ExternalURL)
		}
	}
}

// routeOnlyKeys are the top-level keys that, with routes, belong to each
// route.
var routeOnlyKeys = []string{"upstream", "upstream_ready_path", "preserve_host", "websockets", "public_paths", "identity_jwt", "memos", "bearer"}

// validateRoutes checks the routes, or, without routes, the top level as
// the one route.
func (l *loader) validateRoutes(c *Config) {
	if len(c.Routes) == 0 {
		if _, set := l.lines["routes"]; set {
			l.add("routes", "is empty: list at least one route, or remove the key")
		}
		l.validateRoute("", &c.RouteList()[0], c)
		return
	}
	for _, k := range routeOnlyKeys {
		if _, set := l.lines[k]; set {
			l.add(k, "is set at the top level and routes are too: set %s in each route, or remove routes and keep the one upstream", k)
		}
	}
	type served struct {
		i   int
		key string
	}
	seen := map[string]served{}
	names := map[string]int{}
	bridges := map[string]int{}
	for i := range c.Routes {
		r := &c.Routes[i]
		prefix := fmt.Sprintf("routes[%d].", i)
		r.line = l.lineOf(fmt.Sprintf("routes[%d]", i))
		l.validateRoute(prefix, r, c)
		if err := CheckHostPattern(r.Host); err != nil {
			l.add(prefix+"host", "%v", err)
		}
		if r.Path != "" && (!strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, "*?[\\ \t#%")) {
			l.add(prefix+"path", "must be a path prefix starting with /, without patterns, not %q", r.Path)
		} else if r.Path == "/oauth2" || strings.HasPrefix(r.Path, "/oauth2/") {
			l.add(prefix+"path", "/oauth2/ is the proxy's own")
		}
		if r.Path == "/" {
			r.Path = ""
		}
		if !validName(r.Name) {
			l.add(prefix+"name", "must be 1 to 100 of letters, digits and . _ - / * (it labels metrics), not %q", r.Name)
		} else if j, dup := names[r.Name]; dup {
			l.add(prefix+"name", "%q is also the name of routes[%d] (line %d)", r.Name, j, l.lineOf(fmt.Sprintf("routes[%d]", j)))
		}
		names[r.Name] = i
		key := r.Host + r.Path
		if other, dup := seen[key]; dup {
			l.add(prefix+"host", "routes[%d] (line %d) and routes[%d] (line %d) both serve %s: merge them, or give one a path", other.i, l.lineOf(other.key), i, r.line, key)
		} else {
			seen[key] = served{i, fmt.Sprintf("routes[%d]", i)}
		}
		if r.Memos.Bridge {
			if strings.HasPrefix(r.Host, "*.") || r.Path != "" {
				l.add(prefix+"memos.bridge", "needs a route of its own host: Memos serves at the root of one host, not %q", key)
			}
			if j, dup := bridges[r.Memos.BridgeListen]; dup {
				l.add(prefix+"memos.bridge_listen", "%s is also the bridge of routes[%d]: each Memos needs its own", r.Memos.BridgeListen, j)
			}
			bridges[r.Memos.BridgeListen] = i
		}
	}
}

// validateRoute checks what a route holds, its keys under prefix.
func (l *loader) validateRoute(prefix string, r *Route, c *Config) {
	l.url(prefix+"upstream", r.Upstream, false)
	if r.Memos.URL != "" {
		l.url(prefix+"memos.url", r.Memos.URL, false)
	}
	l.validateMemos(prefix, &r.Memos, c)
	if rp := r.UpstreamReadyPath; rp != "" && (!strings.HasPrefix(rp, "/") || strings.ContainsAny(rp, " \t\r\n#")) {
		l.add(prefix+"upstream_ready_path", "must be a path starting with /, not %q", rp)
	}
	if prefix != "" { // the top-level ones are checked once, as defaults
		if _, own := l.lines[prefix+"headers"]; own {
			l.validateHeaders(prefix, r.Headers)
		}
		if _, own := l.lines[prefix+"access"]; own && r.Access != nil {
			l.validateAccess(prefix, r.Access)
		}
	}
	if r.IdentityJWT != nil {
		l.validateIdentityJWT(prefix, r.IdentityJWT, r.Headers)
	}
	if r.Bearer != nil {
		l.validateBearer(prefix+"bearer.", r.Bearer, r.Headers)
	}
	if icon := r.Icon; icon != "" && !strings.HasPrefix(icon, "data:image/") && (len([]rune(icon)) > 4 || strings.ContainsAny(icon, "<>\"'&:/")) {
		l.add(prefix+"icon", "must be one emoji or up to 4 letters, or a data:image/ URI (the home page loads nothing from elsewhere)")
	}
	if len(r.Icon) > 32<<10 {
		l.add(prefix+"icon", "is larger than 32 KiB")
	}
	if len(r.Title) > 80 || len(r.Description) > 300 {
		l.add(prefix+"title", "title is at most 80 bytes and description 300")
	}
	for _, pp := range r.PublicPaths {
		if _, err := path.Match(pp, "/"); err != nil || !strings.HasPrefix(pp, "/") || strings.HasPrefix(pp, "/oauth2/") {
			l.add(prefix+"public_paths", "%q is not a path pattern starting with / (and outside /oauth2/)", pp)
		}
	}
}

// CheckHostPattern reports why h is not a route host: a lower-case DNS
// name, or "*." followed by one, without port; never an IP address.
func CheckHostPattern(h string) error {
	name := strings.TrimPrefix(h, "*.")
	switch {
	case h == "":
		return fmt.Errorf("is required: the host the route serves, such as notes.example.com or *.apps.example.com")
	case strings.Contains(name, "*"):
		return fmt.Errorf("%q: a wildcard may only be the whole first label (*.example.com)", h)
	case net.ParseIP(strings.Trim(name, "[]")) != nil:
		return fmt.Errorf("%q is an IP address: routes serve names", h)
	case !validDNSName(name):
		return fmt.Errorf("%q is not a host name (letters, digits, - and dots; no port, no trailing dot)", h)
	}
	return nil
}

func validDNSName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-/*", c) >= 0) {
			return false
		}
	}
	return true
}

// Files are the files the configuration names (secrets, keys, CA
// bundles, the pages directory and its pages), for watching: a change of
// any one is a change of the configuration. The TLS pair is left out: the
// proxy reloads it by itself.
func (c *Config) Files() []string {
	var out []string
	add := func(fs ...string) {
		for _, f := range fs {
			if f != "" {
				out = append(out, f)
			}
		}
	}
	add(c.OIDC.ClientSecretFile, c.OIDC.CAFile, c.Session.Redis.PasswordFile, c.Session.Redis.CAFile)
	add(c.Session.SecretFile...)
	for _, r := range c.RouteList() {
		add(r.Memos.AdminTokenFile, r.Memos.AdminPasswordFile)
		if r.IdentityJWT != nil {
			add(r.IdentityJWT.KeyFiles...)
		}
	}
	if d := c.Pages.Dir; d != "" {
		add(d, filepath.Join(d, "error.html"), filepath.Join(d, "forbidden.html"), filepath.Join(d, "signed_out.html"))
	}
	return out
}
