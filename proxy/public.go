package proxy

import (
	"net/http"
	"net/url"
	"path"
)

// publicPaths let requests pass without sign-in; see config.PublicPaths.
type publicPaths []string

// match reports whether r may pass without a session. It looks at the
// decoded path only, never the query, the headers or the host.
func (pp publicPaths) match(r *http.Request) bool {
	return pp.matchURL(r.URL)
}

// matchURL is match for a URL, such as the one a front proxy names in
// X-Forwarded-Uri.
//
// A path is public only when every reasonable server reads it as that
// same path, so that no reading of it falls outside the patterns (see
// unambiguous). Anything else needs a session: refusing a path here never
// lets anyone in, only asks them to sign in.
func (pp publicPaths) matchURL(u *url.URL) bool {
	if len(pp) == 0 || u == nil || u.RawPath != "" || !unambiguous(u.Path) {
		return false
	}
	for _, pattern := range pp {
		if ok, _ := path.Match(pattern, u.Path); ok {
			return true
		}
	}
	return false
}

// unambiguous reports whether the decoded path p reads the same to Go,
// nginx, Apache, Tomcat, IIS and any server that decodes once more:
//
//   - it is clean: absolute, no "//", no "." or ".." segment (a trailing
//     "/" is allowed); (an encoded "/" or any other encoding Go would not
//     write itself was refused before, by RawPath);
//   - no "%" (a second decoding would change it), no ";" (Tomcat, Jetty
//     and Spring strip path parameters, so "x;/../y" or "..;" can be a
//     dot segment there), no "\" (IIS and some routers read it as "/");
//   - only printable ASCII: no control byte or NUL, no DEL, nothing
//     outside ASCII (invalid or overlong UTF-8, and characters some
//     servers fold into "." or "/");
//   - no segment ends in "." or " " (Windows servers drop them, so ".. "
//     or "..." can be ".." there).
//
// Case is matched exactly: a server that ignores case reads a matching
// path as the same resource, and a path that differs in case from the
// patterns does not match.
func unambiguous(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	if c := path.Clean(p); c != p && c+"/" != p {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c < 0x20 || c >= 0x7f, c == '%', c == ';', c == '\\':
			return false
		case c == '/' && i > 0 && (p[i-1] == '.' || p[i-1] == ' '):
			return false
		}
	}
	last := p[len(p)-1]
	return last != '.' && last != ' '
}
