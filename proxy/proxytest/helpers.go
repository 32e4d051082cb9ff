package proxytest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
)

// Small helpers of the tests: requests, cookies, waiting.

// Eventually retries check for up to 3 s.
func Eventually(t *testing.T, what string, check func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !check(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

// ReplicaOf serves another proxy with the stand's external URL and returns
// its address; it shares the stand's clock, OP and upstream.
func ReplicaOf(s *Stand, edit func(*config.Config)) string {
	s.T.Helper()
	ln := Listen(s.T)
	p := s.ServeProxy(ln, s.URL, edit)
	deadline := time.Now().Add(10 * time.Second)
	for !p.Ready() {
		if time.Now().After(deadline) {
			s.T.Fatal("replica never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "http://" + ln.Addr().String()
}

// Get sends a request with a cookie header to base+path.
func Get(t *testing.T, base, path, cookie string) (*http.Response, string) {
	t.Helper()
	req := MustReq(http.MethodGet, base+path)
	req.Header.Set("Cookie", cookie)
	return Do(t, NoRedirect(http.DefaultClient), req)
}

func MustReq(method, u string) *http.Request {
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		panic(err)
	}
	return req
}

func MustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func GrepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func StatusOf(t *testing.T, c *http.Client, u string) int {
	resp, _ := Do(t, c, MustReq(http.MethodGet, u))
	return resp.StatusCode
}

// RawRequest sends a request as written, so that no client library cleans
// the path or merges headers, and returns the response.
func RawRequest(t *testing.T, addr, raw string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func CookieHeader(c *http.Client, u string) string {
	var parts []string
	for _, ck := range SessionCookies(c, u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return strings.Join(parts, "; ")
}

func SessionCookies(c *http.Client, u string) []*http.Cookie {
	pu, _ := url.Parse(u)
	var out []*http.Cookie
	for _, k := range c.Jar.Cookies(pu) {
		if k.Name == "oidc_proxy" || strings.HasPrefix(k.Name, "oidc_proxy_") && !strings.Contains(k.Name, "login") {
			out = append(out, k)
		}
	}
	return out
}
