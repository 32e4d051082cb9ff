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
