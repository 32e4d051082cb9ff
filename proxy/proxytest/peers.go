// Package proxytest is the test stand of the proxy, for every package's
// tests (as net/http/httptest serves net/http's users): the real peers'
// launchers (Authelia 4.39, and what they need: a CA, names that resolve
// to loopback), and helpers that drive them as a person would.
//
// The real programs come from ../shared/peers (eval "$(../shared/peers/unpack)"
// sets AUTHELIA_BIN and MEMOS_BIN). Without them a test skips, and fails
// when CI=true.
package proxytest

import (
	"net"
	"os"
	"strconv"
	"testing"
)

// Bin is the path in the environment variable env (AUTHELIA_BIN,
// MEMOS_BIN); without it the test skips, or fails under CI.
func Bin(t testing.TB, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: CI must run the real peers (eval \"$(../shared/peers/unpack)\")", env)
		}
		t.Skipf("%s is not set: run eval \"$(../shared/peers/unpack)\" to test with the real program", env)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	return p
}

// FreePort is a TCP port on 127.0.0.1 free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func itoa(n int) string { return strconv.Itoa(n) }
