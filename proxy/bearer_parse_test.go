package proxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy/rp"
)

// TestBearerTokenHostile: the Authorization header as a hostile client
// writes it. Only a single well-formed Bearer credential is a token;
// anything else that says Bearer is refused (never passed on to the
// session path, where a guess could let it through); other schemes are
// not bearer requests.
func TestBearerTokenHostile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string
		tok     string
		bearer  bool
		bad     bool
	}{
		{"none", nil, "", false, false},
		{"basic", []string{"Basic eDp5"}, "", false, false},
		{"a token", []string{"Bearer abc.DEF-_~+/=="}, "abc.DEF-_~+/==", true, false},
		{"lower-case scheme", []string{"bearer abc"}, "abc", true, false},
		{"upper-case scheme", []string{"BEARER abc"}, "abc", true, false},
		{"empty", []string{"Bearer "}, "", true, true},
		{"no token", []string{"Bearer"}, "", true, true},
		{"two spaces", []string{"Bearer  abc"}, "", true, true},
		{"a space inside", []string{"Bearer ab c"}, "", true, true},
		{"a tab", []string{"Bearer\tabc"}, "", false, false},
		{"a control character", []string{"Bearer ab\x00c"}, "", true, true},
		{"a quote", []string{`Bearer "abc"`}, "", true, true},
		{"a comma (two credentials)", []string{"Bearer abc, Bearer def"}, "", true, true},
		{"non-ASCII", []string{"Bearer abcé"}, "", true, true},
		{"padding in the middle", []string{"Bearer ab=c"}, "", true, true},
		{"only padding", []string{"Bearer =="}, "", true, true},
		{"too long", []string{"Bearer " + strings.Repeat("a", maxBearerLen+1)}, "", true, true},
		{"the longest", []string{"Bearer " + strings.Repeat("a", maxBearerLen)}, strings.Repeat("a", maxBearerLen), true, false},
		{"two headers", []string{"Bearer abc", "Bearer abc"}, "", true, true},
		{"bearer, then basic", []string{"Bearer abc", "Basic eDp5"}, "", true, true},
		{"basic, then bearer", []string{"Basic eDp5", "Bearer abc"}, "", false, false},
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		if tc.headers != nil {
			r.Header["Authorization"] = tc.headers
		}
		tok, bearer, err := bearerToken(r)
		if tok != tc.tok || bearer != tc.bearer || (err != nil) != tc.bad {
			t.Errorf("%s: %.20q %v %v, want %.20q %v bad=%v", tc.name, tok, bearer, err, tc.tok, tc.bearer, tc.bad)
		}
	}
}

// FuzzBearerToken: whatever the header holds, a token that comes out is
// well formed (the b64token characters, padding last, within the bound),
// and a header that is not a Bearer one never gives a token.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a.b.c", "Bearer ", "Basic x", "Bearer a=b", "Bearer é", "Bearer  x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		r.Header["Authorization"] = []string{h}
		tok, bearer, err := bearerToken(r)
		if !bearer && (tok != "" || err != nil) {
			t.Fatalf("%q: not a bearer header, yet %q %v", h, tok, err)
		}
		if err != nil || !bearer {
			return
		}
		if tok == "" || len(tok) > maxBearerLen || "Bearer "+tok != "Bearer "+h[7:] {
			t.Fatalf("%q gave %q", h, tok)
		}
		trimmed := strings.TrimRight(tok, "=")
		if trimmed == "" || strings.Trim(trimmed, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/") != "" {
			t.Fatalf("%q gave a token with other characters: %q", h, tok)
		}
		rp.IsJWT(tok) // never panics
		rp.JWTIssuer(tok)
	})
}

// BenchmarkAuthPathBearer is BenchmarkAuthPath for a request with a
// bearer token whose verdict is cached (a person's, with the bearer
// headers): the target is within 1.2x of BenchmarkAuthPath.
func BenchmarkAuthPathBearer(b *testing.B) {
	p, req := benchProxy(b, "bearer: {clients: [notes-cli], scopes: [notes]}")
	rt := p.routes.routes[0]
	tok := "authelia_at_" + strings.Repeat("x", 86)
	req.Header.Set("Authorization", "Bearer "+tok)
	v, err := p.verdictOf(&rp.Access{Subject: "0b9ebd43-3f2a-4d43-9a47-c3a6b04c9fa2", ClientID: "notes-cli", Scopes: []string{"openid", "notes"},
		Expiry: time.Now().Add(time.Hour), Claims: map[string]json.RawMessage{
			"preferred_username": json.RawMessage(`"alice"`), "name": json.RawMessage(`"Alice Liddell"`),
			"email": json.RawMessage(`"alice@example.com"`), "groups": json.RawMessage(`["admins","users","family"]`)}}, false)
	if err != nil {
		b.Fatal(err)
	}
	p.bearers.cache.Put(tok, v, time.Now().Add(time.Hour).Unix())
	out := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		clear(out)
		for k, vs := range req.Header {
			out[k] = vs
		}
		tok, _, _ := bearerToken(req)
		v, err := p.bearerVerdict(req, rt, tok)
		if err != nil || v.access == nil || rt.bearer.refuses(v) != "" {
			b.Fatal("not passed")
		}
		id := rt.bearerIdentity(v)
		rt.headers.strip(out)
		stripCookies(out, p.store.CookieName())
		for _, s := range rt.setters {
			s.fill(out, id)
		}
	}
}
