package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDemo runs the demo as `go run ./examples/demo` does, and signs in
// as its user would: the printed URL leads to the provider's sign-in page,
// then to the home page with the two apps, each of which greets alice.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, freeAddr(t), freeAddr(t), freeAddr(t), io.Discard, func(u, pw string) { urls <- [2]string{u, pw} })
	}()
	t.Cleanup(func() { cancel(); <-done })
	var u [2]string
	select {
	case u = <-urls:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("the demo did not start")
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, _ = proxytest.Navigate(t, c, u[0])
		if resp.Request.URL.Query().Get("authRequestID") != "" || time.Now().After(deadline) {
			break // on the sign-in page (once discovery is done)
		}
	}
	resp, body := proxytest.Login(t, c, resp, "alice", u[1])
	if resp.StatusCode != 200 || !strings.Contains(body, `Signed in as <span id="user">alice</span>`) ||
		!strings.Contains(body, "<strong>Notes</strong>") || !strings.Contains(body, "<strong>Team board</strong>") {
		t.Fatalf("after sign-in: %d at %s\n%.1500s", resp.StatusCode, resp.Request.URL, body)
	}
	for _, path := range []string{"/notes/", "/team/"} {
		base := strings.TrimSuffix(u[0], "/oauth2/")
		if resp, body := proxytest.Navigate(t, c, base+path); resp.StatusCode != 200 || !strings.Contains(body, "Hello, alice") {
			t.Errorf("%s: %d %.300s", path, resp.StatusCode, body)
		}
	}
}
