package proxy

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// hostileUpgrades: header sets a client may send, and whether the rule
// keeps the request's upgrade (a WebSocket handshake, websockets on).
var hostileUpgrades = []struct {
	name    string
	method  string
	proto   int // HTTP/1.x minor version
	headers map[string][]string
	keep    bool
}{
	{"websocket", "GET", 1, ws(nil), true},
	{"websocket, odd case and spaces", "GET", 1, ws(map[string][]string{"Upgrade": {"WebSocket"}, "Connection": {"keep-alive , UPGRADE"}}), true},
	{"h2c", "GET", 1, map[string][]string{"Upgrade": {"h2c"}, "Connection": {"Upgrade, HTTP2-Settings"}, "Http2-Settings": {"AAMAAABkAARAAAAAAAIAAAAA"}}, false},
	{"h2c alone", "GET", 1, map[string][]string{"Upgrade": {"h2c"}}, false},
	{"settings alone", "GET", 1, map[string][]string{"Http2-Settings": {"AAMAAABkAARAAAAAAAIAAAAA"}}, false},
	{"connection upgrade alone", "GET", 1, map[string][]string{"Connection": {"upgrade"}}, false},
	{"websocket then h2c", "GET", 1, ws(map[string][]string{"Upgrade": {"websocket, h2c"}}), false},
	{"h2c then websocket", "GET", 1, ws(map[string][]string{"Upgrade": {"h2c,websocket"}}), false},
	{"two upgrade lines", "GET", 1, ws(map[string][]string{"Upgrade": {"websocket", "h2c"}}), false},
	{"websocket with a version", "GET", 1, ws(map[string][]string{"Upgrade": {"websocket/13"}}), false},
	{"websocket with settings", "GET", 1, ws(map[string][]string{"Http2-Settings": {"AA"}}), false},
	{"websocket without connection", "GET", 1, ws(map[string][]string{"Connection": nil}), false},
	{"websocket, NBSP after the token", "GET", 1, ws(map[string][]string{"Connection": {"upgrade\u00a0"}}), false},
	{"websocket on POST", "POST", 1, ws(nil), false},
	{"websocket on HEAD", "HEAD", 1, ws(nil), false},
	{"websocket over HTTP/1.0", "GET", 0, ws(nil), false},
	{"websocket, version 8", "GET", 1, ws(map[string][]string{"Sec-Websocket-Version": {"8"}}), false},
	{"websocket, two versions", "GET", 1, ws(map[string][]string{"Sec-Websocket-Version": {"13", "13"}}), false},
	{"websocket, no key", "GET", 1, ws(map[string][]string{"Sec-Websocket-Key": nil}), false},
	{"websocket, key not base64", "GET", 1, ws(map[string][]string{"Sec-Websocket-Key": {"not base64 at all!!!!!!!"}}), false},
	{"websocket, long key", "GET", 1, ws(map[string][]string{"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZSBsb25nZXI="}}), false},
	{"unknown protocol", "GET", 1, map[string][]string{"Upgrade": {"IRC/6.9"}, "Connection": {"Upgrade"}}, false},
}

// ws is a valid WebSocket handshake's headers, with changes (nil: the
// header removed).
func ws(change map[string][]string) map[string][]string {
	h := map[string][]string{
		"Upgrade": {"websocket"}, "Connection": {"Upgrade"},
		"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Sec-Websocket-Version": {"13"},
	}
	for k, v := range change {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	return h
}

func TestUpgradeRuleHostile(t *testing.T) {
	for _, tc := range hostileUpgrades {
		for _, on := range []bool{true, false} {
			r := httptest.NewRequest(tc.method, "/", nil)
			r.ProtoMinor = tc.proto
			r.Header = http.Header(tc.headers).Clone()
			got := upgradeRule(r, on)
			if want := tc.keep && on; (got == upgradeKept) != want {
				t.Errorf("%s (websockets %v): rule %d, want kept=%v", tc.name, on, got, want)
			}
			checkLeaves(t, tc.name, r, got)
		}
	}
	r := httptest.NewRequest(http.MethodConnect, "/", nil)
	if upgradeRule(r, true) != upgradeRefused {
		t.Error("CONNECT is not refused")
	}
}

// checkLeaves forwards r (after the rule) through a ReverseProxy and
// checks that what leaves asks for an upgrade only when the rule kept
// one, and that an upstream's 101 is accepted only then.
func checkLeaves(t *testing.T, name string, r *http.Request, rule int) {
	t.Helper()
	var out *http.Request
	rp := &httputil.ReverseProxy{
		Rewrite:  func(pr *httputil.ProxyRequest) { pr.SetURL(&url.URL{Scheme: "http", Host: "upstream"}) },
		ErrorLog: log.New(io.Discard, "", 0),
		Transport: roundTrip(func(o *http.Request) (*http.Response, error) {
			out = o
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}, Request: o}, nil
		}),
	}
	rp.ServeHTTP(httptest.NewRecorder(), r)
	if out == nil { // ReverseProxy refused it (an unprintable Upgrade): safe
		return
	}
	upgrades := out.Header.Get("Upgrade") != "" || hasToken(out.Header["Connection"], "upgrade")
	if upgrades != (rule == upgradeKept) {
		t.Errorf("%s: forwarded upgrade %v (rule %d): %v", name, upgrades, rule, out.Header)
	}
	if upgrades && !strings.EqualFold(out.Header.Get("Upgrade"), "websocket") {
		t.Errorf("%s: forwarded an upgrade to %q", name, out.Header.Get("Upgrade"))
	}
	for _, up := range []string{"websocket", "h2c", ""} {
		resp := &http.Response{StatusCode: 101, Header: http.Header{"Connection": {"Upgrade"}}}
		if up != "" {
			resp.Header.Set("Upgrade", up)
		}
		if ok := switchAllowed(out, resp); ok != (rule == upgradeKept && up == "websocket") {
			t.Errorf("%s: a 101 to %q allowed=%v (rule %d)", name, up, ok, rule)
		}
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzUpgradeRule: whatever Connection and Upgrade a client sends, on
// whatever method, the request that leaves the proxy asks for a
// WebSocket upgrade or for none, and only a WebSocket handshake's 101 is
// accepted.
func FuzzUpgradeRule(f *testing.F) {
	for _, tc := range hostileUpgrades {
		f.Add(tc.method, strings.Join(tc.headers["Connection"], "\n"), strings.Join(tc.headers["Upgrade"], "\n"),
			strings.Join(tc.headers["Sec-Websocket-Key"], "\n"), strings.Join(tc.headers["Http2-Settings"], "\n"))
	}
	f.Fuzz(func(t *testing.T, method, conn, upgrade, key, settings string) {
		if method == "" || strings.ContainsAny(method, " \t\r\n/") {
			return
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Method = method
		h := http.Header{"Sec-Websocket-Version": {"13"}}
		for name, v := range map[string]string{"Connection": conn, "Upgrade": upgrade, "Sec-Websocket-Key": key, "Http2-Settings": settings} {
			if v != "" {
				h[name] = strings.Split(v, "\n")
			}
		}
		r.Header = h
		rule := upgradeRule(r, true)
		if rule == upgradeRefused {
			if method != http.MethodConnect {
				t.Fatalf("refused %s", method)
			}
			return
		}
		if rule == upgradeKept && method != http.MethodGet {
			t.Fatalf("kept an upgrade on %s", method)
		}
		checkLeaves(t, "fuzz", r, rule)
	})
}
