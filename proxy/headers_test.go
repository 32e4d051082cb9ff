package proxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/session"
)

func TestStripEverySpelling(t *testing.T) {
	h := newIdentityHeaders(config.DefaultHeaders())
	hdr := http.Header{
		"Remote-User":   {"admin", "root"},
		"remote-user":   {"admin"},
		"REMOTE-USER":   {"admin"},
		"Remote_User":   {"admin"},
		"remote_user":   {"admin"},
		"Remote.User":   {"admin"},
		"REMOTE.USER":   {"admin"},
		"Remote_Groups": {"admins"},
		"remote.email":  {"a@b"},
		"Remote-Name":   {"x"},
		"Remote-User2":  {"keep"},
		"X-Remote-User": {"keep"},
		"Remoteuser":    {"keep"},
		"Authorization": {"Bearer keep"},
	}
	h.strip(hdr)
	for k := range hdr {
		if !strings.Contains(k, "2") && k != "X-Remote-User" && k != "Remoteuser" && k != "Authorization" {
			t.Errorf("left %q", k)
		}
	}
	if len(hdr) != 4 {
		t.Errorf("kept %v", hdr)
	}
}

func TestInjectSetsOneValue(t *testing.T) {
	h := newIdentityHeaders(map[string]string{"remote-user": "preferred_username", "X-Groups": "groups"})
	hdr := http.Header{}
	h.inject(hdr, h.identity(&session.Session{Claims: map[string]string{"preferred_username": "alice", "groups": ""}}))
	if got := hdr["Remote-User"]; len(got) != 1 || got[0] != "alice" {
		t.Errorf("Remote-User = %q", got)
	}
	if _, ok := hdr["X-Groups"]; ok {
		t.Errorf("empty claim set a header")
	}
}

func TestStripCookies(t *testing.T) {
	tests := []struct{ in, want []string }{
		{[]string{"memos_refresh=abc"}, []string{"memos_refresh=abc"}},
		{[]string{"oidc_proxy=x; memos_refresh=abc; oidc_proxy_1=y"}, []string{"memos_refresh=abc"}},
		{[]string{"oidc_proxy_login_abcd=x"}, nil},
		{[]string{"a=1;b=2", "oidc_proxy=z"}, []string{"a=1;b=2"}},
		{[]string{"oidc_proxyx=keep; a=oidc_proxy"}, []string{"oidc_proxyx=keep; a=oidc_proxy"}},
	}
	for _, tt := range tests {
		in := append([]string(nil), tt.in...)
		hdr := http.Header{"Cookie": in}
		stripCookies(hdr, "oidc_proxy")
		if strings.Join(in, "|") != strings.Join(tt.in, "|") {
			t.Errorf("the caller's slice was changed: %q", in)
		}
		if got := hdr["Cookie"]; strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("%q -> %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFlattenClaim(t *testing.T) {
	tests := []struct {
		raw   string
		value string
		ok    bool
	}{
		{`"alice"`, "alice", true},
		{`42`, "42", true},
		{`1e400`, "1e400", true},
		{`true`, "true", true},
		{`["a","b",3]`, "a,b,3", true},
		{`[]`, "", true},
		{`null`, "", false},
		{`{"a":1}`, "", false},
		{`[["a"]]`, "", false},
		{`"a\r\nX-Injected: 1"`, "", false},
		{`"tab\there"`, "", false},
		{`"del\u007f"`, "", false},
		{`["ok","bad\n"]`, "", false},
		{`"Zoë Ünicode"`, "Zoë Ünicode", true},
		{`"` + strings.Repeat("x", 20000) + `"`, "", false},
		{`not json`, "", false},
	}
	for _, tt := range tests {
		v, ok := flattenClaim(json.RawMessage(tt.raw))
		if v != tt.value || ok != tt.ok {
			t.Errorf("flattenClaim(%.30s) = %q, %v; want %q, %v", tt.raw, v, ok, tt.value, tt.ok)
		}
	}
}

func FuzzNormalizeAndStrip(f *testing.F) {
	for _, s := range []string{"Remote-User", "remote_user", "REMOTE.USER", "Remote-Users", "Rémote-User", ""} {
		f.Add(s)
	}
	h := newIdentityHeaders(config.DefaultHeaders())
	f.Fuzz(func(t *testing.T, name string) {
		hdr := http.Header{name: {"x"}}
		h.strip(hdr)
		norm := config.NormalizeHeaderName(name)
		managed := false
		for k := range config.DefaultHeaders() {
			if config.NormalizeHeaderName(k) == norm {
				managed = true
			}
		}
		if _, left := hdr[name]; left == managed {
			t.Fatalf("%q: managed=%v but left=%v", name, managed, left)
		}
	})
}

// TestClaimProblem is the rule for claims the identity needs, one row
// per kind (the README's table).
func TestClaimProblem(t *testing.T) {
	for _, tt := range []struct {
		name, raw string
		ok        bool
	}{
		{"email", `"a@example.com"`, true},
		{"email", `12345`, false},
		{"email", `["a@example.com"]`, false},
		{"email", `null`, true}, // as if absent
		{"preferred_username", `true`, false},
		{"name", `"Eve\r\nX: y"`, false},
		{"name", "\"\xff\xfe\"", true}, // JSON decoding makes it U+FFFD: valid
		{"name", `"` + strings.Repeat("x", 17<<10) + `"`, false},
		{"email_verified", `true`, true},
		{"email_verified", `"true"`, false},
		{"groups", `["a","b,c"]`, true},
		{"groups", `"admins"`, true},
		{"groups", `[]`, true},
		{"groups", `["a",1]`, false},
		{"groups", `{"a":1}`, false},
		{"groups", `7`, false},
		{"department", `7`, true},
		{"department", `["a",7,false]`, true},
		{"department", `{"a":1}`, false},
		{"department", `[["a"]]`, false},
		{"department", `"a\u0000"`, false},
		{"department", `{`, false},
	} {
		if why := claimProblem(tt.name, json.RawMessage(tt.raw)); (why == "") != tt.ok {
			t.Errorf("%s = %.40s: %q, want ok=%v", tt.name, tt.raw, why, tt.ok)
		}
	}
}

// FuzzClaimProblem: a claim the rule accepts is always usable: it
// flattens to a header-safe value, a standard string claim is a string,
// and groups read as a list of header-safe names.
func FuzzClaimProblem(f *testing.F) {
	for _, s := range []string{`"a"`, `12`, `["a",1]`, `{"a":1}`, `"a\r\nb"`, `[["x"]]`, `null`, `true`, "\"\xff\""} {
		f.Add("email", s)
		f.Add("groups", s)
		f.Add("department", s)
	}
	f.Fuzz(func(t *testing.T, name, raw string) {
		var any0 any
		if claimProblem(name, json.RawMessage(raw)) != "" || json.Unmarshal([]byte(raw), &any0) != nil || any0 == nil {
			return // refused, or null: as if absent
		}
		v, ok := flattenClaim(json.RawMessage(raw))
		if !ok && name != "groups" {
			t.Fatalf("%s = %q accepted but does not flatten", name, raw)
		}
		if ok && !safeHeaderValue(v) {
			t.Fatalf("%s = %q accepted but flattens to an unsafe value", name, raw)
		}
		var s string
		if stringClaims[name] && json.Unmarshal([]byte(raw), &s) != nil {
			t.Fatalf("%s = %q accepted but is not a string", name, raw)
		}
		if name == "groups" {
			for _, g := range groupsOf(json.RawMessage(raw)) {
				if !safeHeaderValue(g) {
					t.Fatalf("groups = %q accepted with an unsafe name", raw)
				}
			}
		}
	})
}
