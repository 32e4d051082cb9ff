package proxy

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

// routingProxy is a Proxy with only what routing reads: the sign-in host
// auth.example.com and routes on notes, apps (two prefixes) and
// *.wild.example.com.
func routingProxy() *Proxy {
	ext, _ := url.Parse("https://auth.example.com")
	return &Proxy{external: ext, home: "auth.example.com", routes: newRouteTable([]*Route{
		{name: "notes", host: "notes.example.com"},
		{name: "a", host: "apps.example.com", prefix: "/a"},
		{name: "ab", host: "apps.example.com", prefix: "/a/b"},
		{name: "wild", host: "*.wild.example.com"},
		{name: "wild-x", host: "*.wild.example.com", prefix: "/x"},
	})}
}

func TestNormalHost(t *testing.T) {
	for in, want := range map[string]string{
		"notes.example.com":          "notes.example.com",
		"Notes.Example.COM:8443":     "notes.example.com",
		"notes.example.com:":         "notes.example.com",
		"127.0.0.1":                  "",
		"127.0.0.1:80":               "",
		"[::1]:80":                   "",
		"::1":                        "",
		"[fe80::1%25eth0]:1":         "",
		"notes.example.com.":         "",
		".notes.example.com":         "",
		"notes..example.com":         "",
		"notes.example.com:80:80":    "",
		"notes_example.com":          "",
		"notes.example.com\x00":      "",
		"notes.example.com/x":        "",
		"user@notes.example.com":     "",
		"notes.example.com\r\nx: y":  "",
		"xn--nts-rla.example.com":    "xn--nts-rla.example.com",
		"nötes.example.com":          "",
		"":                           "",
		":":                          "",
		":80":                        "",
		strings.Repeat("a.", 200):    "",
		"0x7f000001":                 "0x7f000001", // a name to us, and no route has it
		"notes.example.com:99999999": "notes.example.com",
	} {
		if got := normalHost(in); got != want {
			t.Errorf("normalHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRouteTableMatch(t *testing.T) {
	p := routingProxy()
	for _, tc := range []struct{ host, path, want string }{
		{"notes.example.com", "/", "notes"},
		{"notes.example.com", "/anything/at/all", "notes"},
		{"apps.example.com", "/a", "a"},
		{"apps.example.com", "/a/", "a"},
		{"apps.example.com", "/a/c", "a"},
		{"apps.example.com", "/a/b", "ab"},
		{"apps.example.com", "/a/b/c", "ab"},
		{"apps.example.com", "/a/bc", "a"},
		{"apps.example.com", "/a/./b", "ab"},
		{"apps.example.com", "/a/b/../c", "a"},
		{"apps.example.com", "/x/../a/b", "ab"},
		{"apps.example.com", "//a/b", "ab"},
		{"apps.example.com", "/ab", ""},
		{"apps.example.com", "/", ""},
		{"apps.example.com", "/A", ""},
		{"apps.example.com", "/a/../../a", "a"},
		{"one.wild.example.com", "/", "wild"},
		{"one.wild.example.com", "/x/1", "wild-x"},
		{"two.one.wild.example.com", "/", ""},
		{"wild.example.com", "/", ""},
		{"example.com", "/", ""},
		{"", "/", ""},
		{"auth.example.com", "/", ""},
	} {
		got := ""
		if rt := p.routes.match(tc.host, tc.path); rt != nil {
			got = rt.name
		}
		if got != tc.want {
			t.Errorf("match(%q, %q) = %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
}

// TestAllowedReturn: the hostile table for cross-host return URLs.
func TestAllowedReturn(t *testing.T) {
	p := routingProxy()
	for rd, want := range map[string]string{
		"https://notes.example.com/memos/1?x=1": "notes.example.com /memos/1?x=1",
		"https://notes.example.com":             "notes.example.com /",
		"https://apps.example.com/a/b":          "apps.example.com /a/b",
		"https://apps.example.com/elsewhere":    "apps.example.com /elsewhere", // the host is served; its 404 is its own
		"https://q.wild.example.com/":           "q.wild.example.com /",
		"https://auth.example.com/":             "auth.example.com /",
	} {
		host, pq, ok := p.allowedReturn(rd)
		if got := host + " " + pq; !ok || got != want {
			t.Errorf("allowedReturn(%q) = %q %v, want %q", rd, got, ok, want)
		}
	}
	for _, rd := range []string{
		"http://notes.example.com/",
		"https://notes.example.com:443/",
		"https://notes.example.com:8443/",
		"https://notes.example.com:",
		"https://notes.example.com:/",
		"https://0.wild.example.com:",
		"https://evil.example/",
		"https://notes.example.com.evil.example/",
		"https://evil.example/https://notes.example.com/",
		"https://notes.example.com@evil.example/",
		"https://user:pw@notes.example.com/",
		"https://notes.example.com\\@evil.example/",
		"https://notes.example.com%40evil.example/",
		"https://notes.example.com%2F@evil.example/",
		"https://notes.example.com//evil.example/",
		"https://notes.example.com/%2F%2Fevil.example/",
		"https://notes.example.com/%252F%252Fevil.example/",
		"https://notes.example.com/\\evil.example/",
		"https://notes.example.com/../x",
		"https://notes.example.com/%2e%2e/x",
		"https://notes.example.com/#frag",
		"https://notes.example.com/ x",
		"https://notes.example.com/\tx",
		"https://notes.example.com/\r\nSet-Cookie: x",
		"https://notes.example.com/ü",
		"https://NOTES.example.com/",
		"https://notes.example.com./",
		"https://two.one.wild.example.com/",
		"https://wild.example.com/",
		"https://127.0.0.1/",
		"https://[::1]/",
		"https://0x7f000001/",
		"https:notes.example.com/",
		"https:/notes.example.com/",
		"https:///notes.example.com/",
		"//notes.example.com/",
		"HTTPS://notes.example.com/",
		"javascript://notes.example.com/%0aalert(1)",
		"data://notes.example.com/",
		"https://notes.example.com?x",
		"https://notes.example.com/" + strings.Repeat("a", maxReturnURL),
		"",
		"/local",
	} {
		if host, pq, ok := p.allowedReturn(rd); ok {
			t.Errorf("allowedReturn(%q) accepted: %q %q", rd, host, pq)
		}
	}
}

// FuzzRouting: whatever the Host and the return URL, a route is only ever
// one that serves the host and path, and a return URL is only ever
// accepted for a host the proxy serves, with a clean path.
func FuzzRouting(f *testing.F) {
	for _, s := range [][2]string{
		{"notes.example.com", "https://notes.example.com/x"},
		{"Apps.Example.com:1", "https://apps.example.com/a/b?c"},
		{"q.wild.example.com", "https://q.wild.example.com/%2F%2Fx"},
		{"[::1]", "https://notes.example.com@evil/"},
		{"auth.example.com", "/local?rd=https://evil"},
	} {
		f.Add(s[0], "/a/b", s[1])
	}
	p := routingProxy()
	f.Fuzz(func(t *testing.T, hostHeader, reqPath, rd string) {
		host := normalHost(hostHeader)
		if host != "" && (strings.Trim(host, "abcdefghijklmnopqrstuvwxyz0123456789-.") != "" || strings.HasPrefix(host, ".") || strings.HasSuffix(host, ".")) {
			t.Fatalf("normalHost(%q) = %q", hostHeader, host)
		}
		if rt := p.routes.match(host, reqPath); rt != nil {
			served := rt.host == host || strings.HasPrefix(rt.host, "*.") && strings.Count(host, ".") == strings.Count(rt.host, ".") && strings.HasSuffix(host, rt.host[1:])
			clean := path.Clean("/" + reqPath)
			if !served || rt.prefix != "" && clean != rt.prefix && !strings.HasPrefix(clean, rt.prefix+"/") {
				t.Fatalf("route %s for %q %q", rt.name, host, reqPath)
			}
		}
		h, pq, ok := p.allowedReturn(rd)
		if !ok {
			return
		}
		if h != p.home && !p.routes.serves(h) {
			t.Fatalf("allowedReturn(%q): host %q is not served", rd, h)
		}
		if rd != "https://"+h+pq && rd != "https://"+h {
			t.Fatalf("allowedReturn(%q) = %q %q: not the URL given", rd, h, pq)
		}
		if CleanReturnURL(pq) != pq {
			t.Fatalf("allowedReturn(%q): path %q is not clean", rd, pq)
		}
		u, err := url.Parse(p.originOf(h).String() + pq)
		if err != nil || u.Host != h || u.Scheme != "https" || u.User != nil {
			t.Fatalf("allowedReturn(%q) leads to %v (%v)", rd, u, err)
		}
	})
}

// BenchmarkRouteMatch is finding the route of a request among several:
// the Host read, normalized and matched, the path matched by prefix.
func BenchmarkRouteMatch(b *testing.B) {
	p := routingProxy()
	b.ReportAllocs()
	for b.Loop() {
		if p.routes.match(normalHost("Apps.Example.com:443"), "/a/b/c") == nil || p.routes.match(normalHost("q.wild.example.com"), "/x/1") == nil {
			b.Fatal("no route")
		}
	}
}
