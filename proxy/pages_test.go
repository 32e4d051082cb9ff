package proxy_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
)

// TestCustomPages: pages.dir replaces a page; its placeholders are
// filled, and HTML-escaped.
func TestCustomPages(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "forbidden.html"), []byte(`<p class="ours">No entry for {{user}}. <a href="{{ sign_out_url }}">out</a></p>`), 0o644)
	s := newStand(t, func(c *cfg) {
		c.Access = config.Access{AllowedUsers: []string{"bob"}}
		c.Pages.Dir = dir
	}, nil)
	evil := `<b>alice</b>`
	s.Alice.Username = evil
	c := s.Browser()
	resp, _ := navigate(t, c, s.URL+"/")
	resp, body := login(t, c, resp, evil, alicePassword)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `<p class="ours">No entry for &lt;b&gt;alice&lt;/b&gt;. <a href="/oauth2/sign_out">out</a></p>`) {
		t.Errorf("custom page: %d %s", resp.StatusCode, body)
	}
	// The other pages stay the built-in ones.
	_, body = navigate(t, c, s.URL+"/oauth2/nope")
	if !strings.Contains(body, "Not found") || !strings.Contains(body, "prefers-color-scheme") {
		t.Errorf("the built-in error page: %s", body)
	}
}

// TestCustomPagesRefusedAtStart: a file that is no page, a placeholder a
// page does not have, or an unclosed one stops the start, naming it.
func TestCustomPagesRefusedAtStart(t *testing.T) {
	for _, tt := range []struct{ file, body, want string }{
		{"oops.html", "x", "oops.html is not one of"},
		{"error.html", "{{user}}", "{{user}} is not a placeholder of this page"},
		{"signed_out.html", "{{title", "a {{ without }}"},
		{"forbidden.html", strings.Repeat("x", 65<<10), "larger than 64 KiB"},
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, tt.file), []byte(tt.body), 0o644)
		c, err := config.Parse("t.yaml", []byte("external_url: https://memos.example.com\nupstream: http://127.0.0.1:5230\noidc: {issuer: https://auth.example.com, client_id: memos, client_secret: x}\nsession: {secret: "+sessionSecret+"}\npages: {dir: "+dir+"}\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := proxy.New(c, proxy.Options{}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.file, err, tt.want)
		}
	}
	if _, err := config.Parse("t.yaml", []byte("external_url: https://memos.example.com\nupstream: http://127.0.0.1:5230\noidc: {issuer: https://auth.example.com, client_id: memos, client_secret: x}\nsession: {secret: "+sessionSecret+"}\npages: {dir: /nonexistent}\n"), nil); err == nil || !strings.Contains(err.Error(), "pages.dir") {
		t.Errorf("a missing pages.dir: %v", err)
	}
}

func TestSignedOutPage(t *testing.T) {
	s := newStand(t, nil, nil)
	resp, body := navigate(t, s.Browser(), s.URL+"/oauth2/signed_out")
	if resp.StatusCode != 200 || !strings.Contains(body, "Signed out") || !strings.Contains(body, `href="/oauth2/start?rd=%2F"`) {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
}
