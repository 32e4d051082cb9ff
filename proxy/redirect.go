package proxy

import (
	"net/url"
	"strings"
)

// maxReturnURL bounds the length of a return URL.
const maxReturnURL = 2048

// CleanReturnURL returns rd when it is a plain path on this origin (with an
// optional query), and "/" otherwise. It is the only gate between a
// client-supplied rd and a Location header.
//
// Refused, among others: anything with a scheme or host ("https://x",
// "//x", "javascript:"), a backslash, whitespace or control character
// anywhere, non-ASCII bytes, a fragment, dot segments ("/./", "/../"), and
// any of these hidden behind one or more rounds of percent-encoding.
func CleanReturnURL(rd string) string {
	if !safeReturnURL(rd) {
		return "/"
	}
	return rd
}

func safeReturnURL(rd string) bool {
	if len(rd) == 0 || len(rd) > maxReturnURL || rd[0] != '/' {
		return false
	}
	for i := 0; i < len(rd); i++ {
		// Printable ASCII only: no space, tab, CR, LF, DEL or high bytes,
		// no backslash (browsers read it as "/"), no fragment.
		if c := rd[i]; c <= ' ' || c >= 0x7f || c == '\\' || c == '#' {
			return false
		}
	}
	u, err := url.Parse(rd)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return false
	}
	// The path as the browser may read it, after each round of decoding.
	path := u.EscapedPath()
	if path != strings.SplitN(rd, "?", 2)[0] {
		return false
	}
	for range 4 {
		if !safePath(path) {
			return false
		}
		dec, err := url.PathUnescape(path)
		if err != nil {
			return false
		}
		if dec == path {
			return true
		}
		path = dec
	}
	return false // still encoded after four rounds: nobody needs that
}

// safePath checks one decoding of a path.
func safePath(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	// "//x", "/\x", and "/ /x": some clients drop the blanks.
	if rest := strings.TrimLeft(p[1:], " "); rest != "" && (rest[0] == '/' || rest[0] == '\\') {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < ' ' || c >= 0x7f || c == '\\' {
			return false
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
