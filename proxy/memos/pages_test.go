package memos

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPasswordSignIn is the hostile table of the check that keeps Memos's
// password sign-in closed: anything that could carry a password, or that
// cannot be read, counts as one.
func TestPasswordSignIn(t *testing.T) {
	tests := []struct {
		body string
		want bool
	}{
		{`{"ssoCredentials":{"idpName":"identity-providers/oidc-proxy","code":"c","redirectUri":"u"}}`, false},
		{`{"sso_credentials":{}}`, false},
		{`{}`, false},
		{``, false},
		{`{"passwordCredentials":{"username":"admin","password":"x"}}`, true},
		{`{"password_credentials":{"username":"admin","password":"x"}}`, true},
		{`{"PasswordCredentials":{}}`, true},
		{`{"password\u0043redentials":{}}`, true},
		{`{"ssoCredentials":{},"passwordCredentials":{}}`, true},
		{`{"ssoCredentials":{}} {"passwordCredentials":{}}`, true}, // not one JSON value
		{`[{"passwordCredentials":{}}]`, true},
		{"\x0a\x05admin\x12\x01x", true},                                   // binary protobuf: unreadable here
		{`{"ssoCredentials":` + strings.Repeat(" ", 70<<10) + `{}}`, true}, // too large to read
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/memos.api.v1.AuthService/SignIn", strings.NewReader(tt.body))
		if got := passwordSignIn(r); got != tt.want {
			t.Errorf("%.60q: %v, want %v", tt.body, got, tt.want)
		}
		if rest, _ := io.ReadAll(r.Body); len(tt.body) <= 64<<10 && string(rest) != tt.body {
			t.Errorf("%.60q: the body the upstream gets is %.60q", tt.body, rest)
		}
	}
}

// FuzzPasswordSignIn: no body that names password credentials at its top
// level passes, and a body that passes reaches the upstream unchanged.
func FuzzPasswordSignIn(f *testing.F) {
	f.Add([]byte(`{"ssoCredentials":{"code":"c"}}`))
	f.Add([]byte(`{"passwordCredentials":{}}`))
	f.Add([]byte(`{"pass\u0077ord_credentials":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/memos.api.v1.AuthService/SignIn", bytes.NewReader(body))
		if passwordSignIn(r) {
			return
		}
		if rest, _ := io.ReadAll(r.Body); !bytes.Equal(rest, body) {
			t.Fatalf("passed, but the body changed")
		}
		var fields map[string]json.RawMessage
		if len(bytes.TrimSpace(body)) > 0 && json.Unmarshal(body, &fields) != nil {
			t.Fatalf("an unreadable body passed: %q", body)
		}
		for k := range fields {
			if strings.EqualFold(strings.ReplaceAll(k, "_", ""), "passwordcredentials") {
				t.Fatalf("password credentials passed: %q", body)
			}
		}
	})
}
