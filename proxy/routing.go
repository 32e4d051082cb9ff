package proxy

import (
	"cmp"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
)

// routeTable finds the route of a request: by its host (exact names
// first, then the one-label wildcards), then by the longest path prefix.
// A configuration without routes makes one route that serves every host
// (all).
type routeTable struct {
	routes []*Route
	all    *Route              // serves every host, or nil
	exact  map[string][]*Route // host → its routes, longest prefix first
	wild   map[string][]*Route // "apps.example.com" for *.apps.example.com → its routes
}

func newRouteTable(routes []*Route) *routeTable {
	t := &routeTable{routes: routes, exact: map[string][]*Route{}, wild: map[string][]*Route{}}
	for _, rt := range routes {
		switch {
		case rt.host == "":
			t.all = rt
		case strings.HasPrefix(rt.host, "*."):
			t.wild[rt.host[2:]] = append(t.wild[rt.host[2:]], rt)
		default:
			t.exact[rt.host] = append(t.exact[rt.host], rt)
		}
	}
	longestFirst := func(a, b *Route) int { return cmp.Compare(len(b.prefix), len(a.prefix)) }
	for _, m := range []map[string][]*Route{t.exact, t.wild} {
		for _, list := range m {
			slices.SortStableFunc(list, longestFirst)
		}
	}
	return t
}

// onHost is the routes of a normalized host, longest prefix first: the
// exact name's when it has any, else its wildcard's.
func (t *routeTable) onHost(host string) []*Route {
	if t.all != nil {
		return []*Route{t.all}
	}
	if host == "" {
		return nil
	}
	if list, ok := t.exact[host]; ok {
		return list
	}
	if _, parent, ok := strings.Cut(host, "."); ok {
		return t.wild[parent]
	}
	return nil
}

// match is the route of a normalized host and a request path, or nil.
// The path is matched cleaned and segment by segment: /grafana serves
// /grafana and /grafana/x, not /grafanax.
func (t *routeTable) match(host, p string) *Route {
	list := t.onHost(host)
	if len(list) == 0 {
		return nil
	}
	if len(list) == 1 && list[0].prefix == "" {
		return list[0] // the common case: one route per host
	}
	clean := p
	if !strings.HasPrefix(clean, "/") {
		clean = "/" + clean
	}
	clean = path.Clean(clean) // no allocation for a path already clean
	for _, rt := range list {
		if rt.prefix == "" || clean == rt.prefix || strings.HasPrefix(clean, rt.prefix+"/") {
			return rt
		}
	}
	return nil
}

// serves reports whether a route serves some path of host.
func (t *routeTable) serves(host string) bool { return len(t.onHost(host)) > 0 }

// normalHost is a Host header's name for routing: lower-cased, without
// its port; "" for an IP literal (it never matches a name) or anything
// that is not a plain host name.
func normalHost(h string) string {
	if h == "" || len(h) > 260 {
		return ""
	}
	if strings.Contains(h, ":") { // SplitHostPort allocates an error for a host without a port
		host, _, err := net.SplitHostPort(h)
		if err != nil {
			return "" // a bare IPv6 address, or junk
		}
		h = host
	}
	if h == "" || strings.Contains(h, ":") || strings.Trim(h, "0123456789.") == "" {
		return "" // an IP address (or all digits: no name a route can have)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'A' && c <= 'Z':
			return normalHostSlow(h)
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.':
		default:
			return ""
		}
	}
	if h[0] == '.' || h[len(h)-1] == '.' || strings.Contains(h, "..") {
		return ""
	}
	return h
}

func normalHostSlow(h string) string { return normalHost(strings.ToLower(h)) }

// requestHost is the host a request was made for: X-Forwarded-Host from
// a trusted front proxy (its first value), else Host.
func (p *Proxy) requestHost(r *http.Request) string {
	if p.trusted.trustedPeer(r) {
		if xfh := r.Header.Get("X-Forwarded-Host"); xfh != "" {
			first, _, _ := strings.Cut(xfh, ",")
			return normalHost(strings.TrimSpace(first))
		}
	}
	return normalHost(r.Host)
}
