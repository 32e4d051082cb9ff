package proxy

import (
	"net/http"
	"net/textproto"
	"sort"
	"strings"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/session"
)

// identityHeaders are the headers the proxy fills from the session, with
// the normal forms (see config.NormalizeHeaderName) of their names
// precomputed, so that stripping a request allocates nothing.
type identityHeaders struct {
	set  []headerClaim
	norm []string
}

type headerClaim struct {
	name  string // canonical form, as sent upstream
	claim string
}

func newIdentityHeaders(m map[string]string) identityHeaders {
	var h identityHeaders
	for name, claim := range m {
		h.set = append(h.set, headerClaim{name: textproto.CanonicalMIMEHeaderKey(name), claim: claim})
		h.norm = append(h.norm, config.NormalizeHeaderName(name))
	}
	sort.Slice(h.set, func(i, j int) bool { return h.set[i].name < h.set[j].name })
	return h
}

// alsoStrip makes strip delete every spelling of the header name too.
func (h *identityHeaders) alsoStrip(name string) {
	h.norm = append(h.norm, config.NormalizeHeaderName(name))
}

// claims lists the claims the headers need.
func (h identityHeaders) claims() []string {
	out := make([]string, len(h.set))
	for i, c := range h.set {
		out[i] = c.claim
	}
	return out
}

// strip deletes from hdr every header whose name could be read as a managed
// one: any case, "_" or "." for "-", every copy.
func (h identityHeaders) strip(hdr http.Header) {
	for k := range hdr {
		if h.managed(k) {
			delete(hdr, k)
		}
	}
}

func (h identityHeaders) managed(k string) bool {
	for _, n := range h.norm {
		if sameNormal(k, n) {
			return true
		}
	}
	return false
}

// sameNormal reports whether k's normal form equals norm, without
// allocating.
func sameNormal(k, norm string) bool {
	if len(k) != len(norm) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c == '_' || c == '.':
			c = '-'
		}
		if c != norm[i] {
			return false
		}
	}
	return true
}

// identity works out the header values of a session once.
func (h identityHeaders) identity(s *session.Session) *Identity {
	id := &Identity{session: s, values: make([][]string, len(h.set))}
	for i, c := range h.set {
		if v := s.Claim(c.claim); v != "" {
			id.values[i] = []string{v}
		}
	}
	return id
}

// inject sets each managed header the identity has a value for. The value
// slices are shared between requests: nothing may modify them.
func (h identityHeaders) inject(hdr http.Header, id *Identity) {
	for i, v := range id.values {
		if v != nil {
			hdr[h.set[i].name] = v
		}
	}
}

// stripCookies removes the proxy's own cookies (name, and name followed by
// "_") from the Cookie headers; every other cookie passes byte for byte.
// It never writes into the slice it was given.
func stripCookies(hdr http.Header, name string) {
	lines := hdr["Cookie"]
	var kept []string
	for i, line := range lines {
		if !strings.Contains(line, name) {
			if kept != nil {
				kept = append(kept, line)
			}
			continue
		}
		if kept == nil {
			kept = append(make([]string, 0, len(lines)), lines[:i]...)
		}
		if line = withoutCookies(line, name); line != "" {
			kept = append(kept, line)
		}
	}
	switch {
	case kept == nil: // nothing of the proxy's
	case len(kept) == 0:
		delete(hdr, "Cookie")
	default:
		hdr["Cookie"] = kept
	}
}

func withoutCookies(line, name string) string {
	var b strings.Builder
	b.Grow(len(line))
	for part := range strings.SplitSeq(line, ";") {
		k, _, _ := strings.Cut(strings.TrimSpace(part), "=")
		if k == name || strings.HasPrefix(k, name+"_") {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(strings.TrimSpace(part))
	}
	return b.String()
}
