package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// TestSessionsCommand: `oidc-proxy sessions list` shows who is signed in
// (two people, one on two devices) from the configured Redis; `sessions
// end -user` signs that person out on every replica, logged with the
// operator; the cookie store is refused with a reason.
func TestSessionsCommand(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is needed")
		}
		t.Skip("redis-server is not installed")
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	redis := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--dir", t.TempDir())
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { redis.Process.Signal(syscall.SIGTERM); redis.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not start")
		}
	}
	edit := func(c *config.Config) {
		c.Session.Store = "redis"
		c.Session.Redis = config.Redis{Address: addr, KeyPrefix: "oidc-proxy:", Timeout: time.Second}
	}
	s := proxytest.NewStand(t, edit, func(o *proxytest.OPConfig) {
		o.Users = append(o.Users, &proxytest.OPUser{Username: "bob", Password: proxytest.BobPassword, Name: "Bob"})
	})
	alice1 := s.SignIn("/")
	s.SignIn("/")
	bob := s.Browser()
	proxytest.SignInAs(s, bob, "/", "bob", proxytest.BobPassword)

	file := filepath.Join(t.TempDir(), "oidc-proxy.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf("external_url: %s\nupstream: http://127.0.0.1:1\noidc:\n  issuer: %s\n  client_id: memos\n  client_secret: %s\nsession:\n  secret: %s\n  store: redis\n  redis:\n    address: %s\n",
		s.URL, s.Issuer, proxytest.ClientSecret, proxytest.SessionSecret, addr)), 0o600)
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := sessions(context.Background(), args, &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, _ := cli("list", "-config", file)
	if code != 0 || strings.Count(out, "alice ") != 2 || strings.Count(out, "bob ") != 1 || !strings.Contains(out, "127.0.0.1") {
		t.Fatalf("sessions list: %d\n%s", code, out)
	}
	if code, out, _ := cli("list", "-config", file, "-user", "bob"); code != 0 || strings.Contains(out, "alice") || !strings.Contains(out, "bob ") {
		t.Errorf("sessions list -user bob: %d\n%s", code, out)
	}
	t.Setenv("USER", "operator-ann")
	code, out, errOut := cli("end", "-config", file, "-user", "alice")
	if code != 0 || !strings.Contains(out, "alice: 2 session(s) ended") || !strings.Contains(errOut, "operator=operator-ann") {
		t.Fatalf("sessions end: %d\n%s\n%s", code, out, errOut)
	}
	proxytest.Eventually(t, "alice's session still works after sessions end", func() bool {
		resp, _ := proxytest.Get(t, s.URL, "/api", proxytest.CookieHeader(alice1, s.URL))
		return resp.StatusCode == 401
	})
	if resp, _ := proxytest.Get(t, s.URL, "/api", proxytest.CookieHeader(bob, s.URL)); resp.StatusCode != 200 {
		t.Errorf("bob's session after alice's ended: %d", resp.StatusCode)
	}
	if code, out, _ := cli("list", "-config", file); code != 0 || strings.Contains(out, "alice") {
		t.Errorf("after sessions end: %s", out)
	}
	if code, _, _ := cli("end", "-config", file); code != 2 {
		t.Errorf("sessions end without -user: %d", code)
	}
	cookie := filepath.Join(t.TempDir(), "cookie.yaml")
	os.WriteFile(cookie, []byte(fmt.Sprintf("external_url: %s\nupstream: http://127.0.0.1:1\noidc:\n  issuer: %s\n  client_id: memos\n  client_secret: %s\nsession:\n  secret: %s\n",
		s.URL, s.Issuer, proxytest.ClientSecret, proxytest.SessionSecret)), 0o600)
	if code, _, errOut := cli("list", "-config", cookie); code != 1 || !strings.Contains(errOut, "cookie") {
		t.Errorf("with the cookie store: %d %s", code, errOut)
	}
}
