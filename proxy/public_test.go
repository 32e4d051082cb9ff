package proxy_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestPublicPaths(t *testing.T) {
	s := newStand(t, func(c *cfg) {
		c.PublicPaths = []string{"/explore", "/explore/*", "/memos/shares/*", "/u/*/rss.xml"}
	}, nil)
	addr := strings.TrimPrefix(s.URL, "http://")
	public := []string{"/explore", "/explore/", "/explore/tags", "/memos/shares/abc123", "/u/alice/rss.xml", "/explore?x=/private", "/explore/a%20b"}
	private := []string{
		"/private", "/explore/../private", "/explore/%2e%2e/private", "/explore%2Fprivate", "/explore/a%2Fb", "//explore",
		"/explore/./x", "/explore/x/", "/EXPLORE", "/explore/tags/deeper", "/memos/shares", "/memos/shares/a/b", "/u/alice/other.xml",
		"/private?/explore", "/private#/explore", "/explore/..", "/explore/.",
	}
	for _, p := range public {
		before := s.SeenCount()
		resp := rawRequest(t, addr, "GET "+p+" HTTP/1.1\r\nHost: x\r\nRemote-User: admin\r\nremote_user: admin\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != 200 || s.SeenCount() != before+1 {
			t.Errorf("public %s: %d", p, resp.StatusCode)
			continue
		}
		for k := range s.LastSeen().Header {
			if strings.HasPrefix(strings.ToLower(k), "remote") {
				t.Errorf("public %s: %s reached the upstream", p, k)
			}
		}
	}
	for _, p := range private {
		before := s.SeenCount()
		resp := rawRequest(t, addr, "GET "+p+" HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
		if s.SeenCount() != before {
			t.Errorf("private %s reached the upstream unauthenticated (%d)", p, resp.StatusCode)
		}
	}
	// Signed in, a public path carries the identity as usual.
	c := s.SignIn("/")
	do(t, c, mustReq(http.MethodGet, s.URL+"/explore"))
	if got := s.LastSeen().Header.Get("Remote-User"); got != "alice" {
		t.Errorf("signed-in request to a public path: Remote-User %q", got)
	}
}
