package proxy

import (
	"net/http"
	"net/url"
	"path"
)

// publicPaths let requests pass without sign-in; see config.PublicPaths.
type publicPaths []string

// match reports whether r may pass without a session. It looks at the
// decoded path only, never the query, the headers or the host, and only
// at a path that is already clean and has no encoded slash: a path a
// server could read another way is never public.
func (pp publicPaths) match(r *http.Request) bool {
	return pp.matchURL(r.URL)
}

// matchURL is match for a URL, such as the one a front proxy names in
// X-Forwarded-Uri.
func (pp publicPaths) matchURL(u *url.URL) bool {
	if len(pp) == 0 || u == nil {
		return false
	}
	p := u.Path
	if u.RawPath != "" || p == "" || p[0] != '/' || path.Clean(p) != p && path.Clean(p)+"/" != p {
		return false
	}
	for _, pattern := range pp {
		if ok, _ := path.Match(pattern, p); ok {
			return true
		}
	}
	return false
}
