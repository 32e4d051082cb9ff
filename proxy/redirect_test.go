package proxy

import (
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"
)

func TestCleanReturnURLKeepsPlainPaths(t *testing.T) {
	for _, rd := range []string{
		"/", "/memos/42", "/explore?tag=work&x=%2F%2Fy", "/memos/shares/abc-DEF_123", "/a/b/c/", "/setting?tab=my-account",
		"/file/attachments/1/a%20b.png", "/auth?redirect=%2Fmemos", "/a..b/c.d", "/.well-known/x",
	} {
		if got := CleanReturnURL(rd); got != rd {
			t.Errorf("CleanReturnURL(%q) = %q, want it kept", rd, got)
		}
	}
}

// hostileReturnURLs are inputs that have produced open redirects in other
// proxies; every one must fall back to "/".
var hostileReturnURLs = []string{
	"", "//evil.com", "///evil.com", "////evil.com", "/\\evil.com", "\\/evil.com", "\\\\evil.com",
	"/\\/evil.com", "/%09/evil.com", "/\t/evil.com", "/ /evil.com", "/\n/evil.com", "/\r/evil.com",
	"/\v/evil.com", "/\f/evil.com", "/\x00/evil.com", "/%2F/evil.com", "/%2f%2fevil.com", "%2F%2Fevil.com",
	"/%5Cevil.com", "/%5cevil.com", "/%252F%252Fevil.com", "/%25252F%25252Fevil.com", "/%255Cevil.com",
	"https://evil.com", "http://evil.com", "HTTPS://evil.com", "//evil.com/%2F..", "evil.com", "evil.com/path",
	"javascript:alert(1)", "JavaScript:alert(1)", "/javascript:alert(1)#", "data:text/html,<script>", "vbscript:x",
	"https:evil.com", "https:/evil.com", "https:\\\\evil.com", "/./evil.com", "/../evil.com", "/..//evil.com",
	"/a/../../evil.com", "/%2e%2e/evil.com", "/%2E%2E/%2E%2E/evil.com", "/%2e/evil.com", "/.", "/..",
	"//user@evil.com", "//user:pass@evil.com", "/\\user@evil.com", "//evil.com@memos.example.com",
	"/%E2%88%95%E2%88%95evil.com", "/∕∕evil.com", "/／evil.com", "/。evil.com", "/%EF%BC%8Fevil.com",
	"/#//evil.com", "/#evil", "/ok#frag", "/\u2028evil", "/\u00a0/evil.com", "/%00", "/%0d%0aSet-Cookie:x=y",
	"/\r\nLocation: https://evil.com", "/" + strings.Repeat("a", 3000), "?//evil.com", "#//evil.com",
	" /memos", "/memos ", "\t/memos", "/%", "/%zz", "/%%32%46evil.com", "//%09evil.com", "/%5C%5Cevil.com",
}

func TestCleanReturnURLRefusesHostile(t *testing.T) {
	for _, rd := range hostileReturnURLs {
		if got := CleanReturnURL(rd); got != "/" {
			t.Errorf("CleanReturnURL(%q) = %q, want /", rd, got)
		}
	}
}

func FuzzCleanReturnURL(f *testing.F) {
	for _, s := range hostileReturnURLs {
		f.Add(s)
	}
	for _, s := range loadCorpus(f) {
		f.Add(s)
	}
	f.Add("/memos/42?x=1")
	f.Fuzz(func(t *testing.T, rd string) {
		got := CleanReturnURL(rd)
		if got != "/" && got != rd {
			t.Fatalf("CleanReturnURL(%q) = %q: neither the input nor /", rd, got)
		}
		// Whatever comes out, a browser resolving it against this origin
		// stays on this origin.
		base, _ := url.Parse("https://memos.example.com/some/page")
		ref, err := url.Parse(got)
		if err != nil {
			t.Fatalf("output %q does not parse: %v", got, err)
		}
		if res := base.ResolveReference(ref); res.Host != base.Host || res.Scheme != base.Scheme {
			t.Fatalf("CleanReturnURL(%q) = %q leaves the origin: %s", rd, got, res)
		}
		if strings.ContainsAny(got, "\\\r\n\t") || strings.HasPrefix(got, "//") {
			t.Fatalf("CleanReturnURL(%q) = %q", rd, got)
		}
	})
}

// TestHostileReturnURLCorpus runs the corpus in testdata: inputs of every
// class that has produced an open-redirect advisory in some proxy.
func TestHostileReturnURLCorpus(t *testing.T) {
	corpus := loadCorpus(t)
	if len(corpus) < 300 {
		t.Fatalf("the corpus has %d inputs; keep at least 300", len(corpus))
	}
	for _, rd := range corpus {
		if got := CleanReturnURL(rd); got != "/" {
			t.Errorf("CleanReturnURL(%q) = %q, want /", rd, got)
		}
	}
}

func loadCorpus(t testing.TB) []string {
	data, err := os.ReadFile("testdata/hostile-return-urls.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var s string
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("testdata line %d: %v", i+1, err)
		}
		out = append(out, s)
	}
	return out
}
