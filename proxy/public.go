package proxy

import (
	"net/http"
	"path"
)

// publicPaths let requests pass without sign-in; see config.PublicPaths.
type publicPaths []string

// match reports whether r may pass without a session. It looks at the
// decoded path only, never the query, the headers or the host, and only
// at a path that is already clean and has no encoded slash: a path a
// server could read another way is never public.
func (pp publicPaths) match(r *http.Request) bool {
	if len(pp) == 0 {
		return false
	}
	p := r.URL.Path
	if r.URL.RawPath != "" || p == "" || p[0] != '/' || path.Clean(p) != p && path.Clean(p)+"/" != p {
		return false
	}
	for _, pattern := range pp {
		if ok, _ := path.Match(pattern, p); ok {
			return true
		}
	}
	return false
}
