package proxy

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

// The patterns of the Memos example, for the tables and the fuzz target.
var memosPublic = publicPaths{"/explore", "/explore/*", "/memos/shares/*", "/u/*/rss.xml", "/assets/*", "/file/users/*/avatar"}

// readings are how other servers read a request path (the raw request
// target's path), as far as routing goes. Each returns the path the
// server would serve, and whether it compares names ignoring case.
var readings = map[string]func(raw string) (string, bool){
	// Go's net/http and most Go routers: decoded once, as is.
	"go": func(raw string) (string, bool) { p, _ := url.PathUnescape(raw); return p, false },
	// nginx and Apache: decoded once, slashes merged, dot segments resolved.
	"nginx/apache": func(raw string) (string, bool) { p, _ := url.PathUnescape(raw); return resolve(p), false },
	// Tomcat, Jetty, Spring: path parameters (";...") stripped from each
	// segment before decoding, then dot segments resolved.
	"tomcat": func(raw string) (string, bool) {
		segs := strings.Split(raw, "/")
		for i, s := range segs {
			segs[i], _, _ = strings.Cut(s, ";")
		}
		p, _ := url.PathUnescape(strings.Join(segs, "/"))
		return resolve(p), false
	},
	// IIS: "\" is "/", decoded (twice, as old IIS did), trailing dots and
	// spaces dropped from segments, case ignored.
	"iis": func(raw string) (string, bool) {
		p, _ := url.PathUnescape(raw)
		if again, err := url.PathUnescape(p); err == nil {
			p = again
		}
		p = strings.ReplaceAll(p, "\\", "/")
		segs := strings.Split(p, "/")
		for i, s := range segs {
			switch t := strings.TrimRight(s, ". "); {
			case t != "" || s == "" || s == ".":
				segs[i] = t
			default: // "..", "...", ".. ": taken for ".." (conservatively)
				segs[i] = ".."
			}
		}
		return resolve(strings.Join(segs, "/")), true
	},
	// Any server or router that decodes twice.
	"double-decoding": func(raw string) (string, bool) {
		p, _ := url.PathUnescape(raw)
		if again, err := url.PathUnescape(p); err == nil {
			p = again
		}
		return resolve(p), false
	},
}

// resolve merges slashes and resolves dot segments, keeping a trailing "/".
func resolve(p string) string {
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// matchedBy reports whether some pattern matches p (ignoring case when
// fold).
func matchedBy(pp publicPaths, p string, fold bool) bool {
	for _, pattern := range pp {
		if fold {
			pattern, p = strings.ToLower(pattern), strings.ToLower(p)
		}
		if ok, _ := path.Match(pattern, p); ok {
			return true
		}
	}
	return false
}

// checkReadings fails when the proxy takes raw as public and any server
// reads it as a path outside the patterns.
func checkReadings(t *testing.T, raw string) bool {
	t.Helper()
	u, err := url.ParseRequestURI(raw)
	if err != nil || !memosPublic.matchURL(u) {
		return false
	}
	for name, read := range readings {
		if p, fold := read(u.EscapedPath()); !matchedBy(memosPublic, p, fold) {
			t.Errorf("%q is public to the proxy, but %s reads it as %q", raw, name, p)
		}
	}
	return true
}

// TestPublicPathsEveryServerAgrees: paths that other servers read as a
// different, non-public path are never public; plain ones are.
func TestPublicPathsEveryServerAgrees(t *testing.T) {
	hostile := []string{
		"/memos/shares/..;/admin", "/memos/shares/x;/../../admin", "/memos/shares/..;jsessionid=1", "/explore;x",
		"/memos/shares/%2e%2e/admin", "/memos/shares/%2e%2e", "/memos/shares/.%2e", "/explore%2f..%2fadmin",
		"/memos/shares/%252e%252e/admin", "/memos/shares/%252e%252e", "/memos/shares/%25",
		"/memos/shares/..%5Cadmin", "/memos/shares/..%5cadmin", "/memos/shares/x%5C..%5C..%5Cadmin",
		"/memos/shares/..%20", "/memos/shares/...", "/memos/shares/..%2e", "/memos/shares/x.", "/explore.", "/explore%20",
		"/memos/shares/x%00", "/memos/shares/x%0d%0a", "/memos/shares/%7f", "/memos/shares/%09",
		"/memos/shares/%C0%AE%C0%AE", "/memos/shares/%E0%80%AE", "/memos/shares/%EF%BC%8E%EF%BC%8E", "/memos/shares/%C3%A9",
		"/memos/shares/%ff", "/memos/shares/..", "/memos/shares/.", "//explore", "/explore/../admin", "/explore/./x",
		"/EXPLORE", "/Explore/x", "/memos/shares/a/b", "/u/../admin/rss.xml",
	}
	for _, raw := range hostile {
		if checkReadings(t, raw) {
			t.Errorf("%q is public", raw)
		}
	}
	for _, raw := range []string{"/explore", "/explore/", "/explore/tags", "/memos/shares/abc123", "/u/alice/rss.xml",
		"/assets/index-3f2a.js", "/file/users/7/avatar", "/explore/a%20b", "/memos/shares/a.b"} {
		if !checkReadings(t, raw) {
			t.Errorf("%q is not public", raw)
		}
	}
}

// FuzzPublicPath: for every path the proxy takes as public, every
// server's reading of it falls within the patterns.
func FuzzPublicPath(f *testing.F) {
	for _, s := range []string{"/explore", "/memos/shares/x", "/memos/shares/..;/a", "/memos/shares/%2e%2e", "/memos/shares/%252e",
		"/memos/shares/..%5c", "/memos/shares/..%20", "/u/a/rss.xml", "/assets/a.js", "/memos/shares/%C0%AE"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		checkReadings(t, raw)
	})
}
