package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

func writeConfig(t *testing.T, listen, upstream string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "oidc-proxy.yaml")
	cfg := fmt.Sprintf(`
listen: %q
external_url: https://memos.example.com
upstream: %q
oidc:
  issuer: http://127.0.0.1:1
  client_id: memos
  client_secret: s3cret
  timeout: 1s
session:
  secret: 0123456789abcdef0123456789abcdef
`, listen, upstream)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"-version"}, &out, io.Discard); code != 0 || !strings.HasPrefix(out.String(), "oidc-proxy ") {
		t.Errorf("exit %d, %q", code, out.String())
	}
}

func TestCheck(t *testing.T) {
	var out, errOut bytes.Buffer
	// An upstream nobody serves (not Memos's usual 5230: another package's
	// test may run a Memos there meanwhile).
	upstream := "http://" + freeAddr(t)
	good := writeConfig(t, ":4180", upstream)
	if code := run(context.Background(), []string{"-config", good, "-check"}, &out, &errOut); code != 3 || !strings.Contains(out.String(), "configuration is valid") ||
		!strings.Contains(errOut.String(), "provider http://127.0.0.1:1") || !strings.Contains(errOut.String(), "upstream "+upstream) {
		t.Errorf("valid config, peers unreachable: exit %d: %s %s", code, out.String(), errOut.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("listen: x\nupstream: ftp://x\nbogus: 1\n"), 0o600)
	errOut.Reset()
	code := run(context.Background(), []string{"-config", bad, "-check"}, io.Discard, &errOut)
	msg := errOut.String()
	if code == 0 || !strings.Contains(msg, "line 1: listen") || !strings.Contains(msg, "line 2: upstream") || !strings.Contains(msg, "line 3: bogus: unknown key") || !strings.Contains(msg, "session.secret: is required") {
		t.Errorf("invalid config: exit %d:\n%s", code, msg)
	}
	if code := run(context.Background(), []string{"-config", "/nonexistent.yaml", "-check"}, io.Discard, io.Discard); code == 0 {
		t.Error("missing file: exit 0")
	}
	if code := run(context.Background(), []string{"-bogus"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("unknown flag: exit %d", code)
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type lockedBuffer = proxytest.SyncBuffer

// TestServeAndGracefulShutdown starts the proxy with its IdP unreachable,
// checks it serves anyway, and stops it while a request is in flight.
func TestServeAndGracefulShutdown(t *testing.T) {
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var logs lockedBuffer
	done := make(chan int)
	metricsAddr, bridgeAddr := freeAddr(t), freeAddr(t)
	path := writeConfig(t, addr, "http://127.0.0.1:1")
	data, _ := os.ReadFile(path)
	os.WriteFile(path, append(data, []byte("metrics_listen: "+metricsAddr+"\nmemos:\n  bridge: true\n  bridge_listen: "+bridgeAddr+"\n")...), 0o600)
	go func() {
		done <- run(ctx, []string{"-config", path}, io.Discard, &logs)
	}()

	var resp *http.Response
	var err error
	for range 100 {
		if resp, err = http.Get("http://" + addr + "/oauth2/healthz"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if resp, err := http.Get("http://" + addr + "/oauth2/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz with the IdP down: %v %v", resp, err)
	}
	if resp, err := http.Get("http://" + metricsAddr + "/metrics"); err != nil {
		t.Errorf("metrics: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), `oidc_proxy_build_info{version="dev"} 1`) {
			t.Errorf("metrics endpoint:\n%.500s", body)
		}
	}
	// The Memos bridge's endpoints are on their own listener only.
	if resp, err := http.Get("http://" + bridgeAddr + "/userinfo"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the bridge's userinfo without a token: %v %v", resp, err)
	}
	if resp, err := http.Get("http://" + addr + "/userinfo"); err == nil && resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("the public listener serves the bridge")
	}
	if code := run(ctx, []string{"-healthcheck", "http://" + addr + "/oauth2/healthz"}, io.Discard, io.Discard); code != 0 {
		t.Errorf("-healthcheck of healthz: exit %d", code)
	}
	if code := run(ctx, []string{"-healthcheck", "http://" + addr + "/oauth2/readyz"}, io.Discard, io.Discard); code != 1 {
		t.Errorf("-healthcheck of a 503: exit %d", code)
	}

	// A slow in-flight request: the handler is reading a body that is
	// still arriving when the shutdown begins.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "POST /oauth2/sign_out HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 6\r\n\r\nrd=%2")
	time.Sleep(100 * time.Millisecond)
	cancel()
	time.Sleep(100 * time.Millisecond)
	fmt.Fprint(conn, "F")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(reply), "HTTP/1.1 302") {
		t.Errorf("in-flight request during shutdown got %q", reply)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d; log:\n%s", code, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not shut down")
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("log:\n%s", logs.String())
	}
}

func TestCheckReachesPeers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	// The client as the configuration has it (-check asks for its callback
	// and authenticates it).
	op, err := proxytest.NewOP(issuer, proxytest.OPConfig{ClientID: "memos", ClientSecret: "s3cret",
		RedirectURIs: []string{"https://memos.example.com/oauth2/callback"}})
	if err != nil {
		t.Fatal(err)
	}
	opSrv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: op.Handler()}}
	opSrv.Start()
	defer opSrv.Close()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer upstream.Close()
	path := writeConfig(t, ":4180", upstream.URL)
	data, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(data), "http://127.0.0.1:1", issuer, 1)), 0o600)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"-config", path, "-check"}, &out, &errOut)
	for _, want := range []string{"discovery matches the issuer", "token endpoint " + issuer + "/oauth/token (client authentication: client_secret_post)",
		"end_session_endpoint (none)", "iss on the callback (RFC 9207): true", "upstream " + upstream.URL + ": answers (200 OK)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-check output lacks %q:\n%s", want, out.String())
		}
	}
	if code != 0 {
		t.Errorf("exit %d: %s", code, errOut.String())
	}
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	addr := freeAddr(t)
	path := writeConfig(t, addr, "http://127.0.0.1:1")
	data, _ := os.ReadFile(path)
	os.WriteFile(path, append(data, []byte("tls:\n  cert_file: "+filepath.Join(dir, "tls.crt")+"\n  key_file: "+filepath.Join(dir, "tls.key")+"\n")...), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- run(ctx, []string{"-config", path}, io.Discard, io.Discard) }()
	defer func() { cancel(); <-done }()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	var resp *http.Response
	var err error
	for range 100 {
		if resp, err = (&http.Client{Transport: tr}).Get("https://" + addr + "/oauth2/healthz"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 7 {
		t.Errorf("https: %d %s", resp.StatusCode, resp.Proto)
	}
}

// TestMemosSetup: memos-setup registers the proxy in a Memos that answers
// the Connect calls, creating it the first time and updating it after; it
// refuses without the bridge, and reports Memos's refusal.
func TestMemosSetup(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	registered := false
	memos := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/memos.api.v1.IdentityProviderService/ListIdentityProviders":
			if registered {
				io.WriteString(w, `{"identityProviders":[{"name":"identity-providers/oidc-proxy"}]}`)
			} else {
				io.WriteString(w, `{}`)
			}
		case "/memos.api.v1.IdentityProviderService/CreateIdentityProvider", "/memos.api.v1.IdentityProviderService/UpdateIdentityProvider":
			if r.Header.Get("Authorization") != "Bearer memos_pat_admin" {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"code":"unauthenticated","message":"user not found"}`)
				return
			}
			registered = true
			io.WriteString(w, `{}`)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer memos.Close()
	// A provider that answers discovery: memos-setup reads its endpoints.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	issuer := "http://" + ln.Addr().String()
	op, err := proxytest.NewOP(issuer, proxytest.OPConfig{ClientID: "memos", ClientSecret: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	opSrv := httptest.NewUnstartedServer(op.Handler())
	opSrv.Listener.Close()
	opSrv.Listener = ln
	opSrv.Start()
	defer opSrv.Close()
	dir := t.TempDir()
	write := func(name, token string) string {
		os.WriteFile(filepath.Join(dir, "token-"+name), []byte(token), 0o600)
		path := writeConfig(t, "127.0.0.1:0", memos.URL)
		data, _ := os.ReadFile(path)
		data = []byte(strings.Replace(string(data), "issuer: http://127.0.0.1:1", "issuer: "+issuer, 1))
		data = append(data, []byte("memos:\n  bridge: true\n  admin_token_file: "+filepath.Join(dir, "token-"+name)+"\n")...)
		os.WriteFile(path, data, 0o600)
		return path
	}
	good := write("good", "memos_pat_admin")
	for _, want := range []string{"created identity-providers/oidc-proxy", "updated identity-providers/oidc-proxy"} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), []string{"-config", good, "memos-setup"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), want) {
			t.Errorf("memos-setup: %d %q %q", code, out.String(), errOut.String())
		}
	}
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"-config", write("bad", "memos_pat_wrong"), "memos-setup"}, io.Discard, &errOut); code != 3 || !strings.Contains(errOut.String(), "401") {
		t.Errorf("with a wrong token: %d %q", code, errOut.String())
	}
	plain := writeConfig(t, "127.0.0.1:0", memos.URL)
	if code := run(context.Background(), []string{"-config", plain, "memos-setup"}, io.Discard, io.Discard); code != 1 {
		t.Errorf("without the bridge: %d", code)
	}
	if code := run(context.Background(), []string{"-config", plain, "memos-teardown"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("an unknown command: %d", code)
	}
}
