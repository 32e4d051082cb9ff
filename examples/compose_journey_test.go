package examples_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// The loopback ports the compose stack's services listen on, as in the
// compose file (Caddy's 443 included: its Caddyfile names the sites by
// their https names). They are below the ephemeral range, so no other
// test takes them by chance.
var stackPorts = []string{"443", "9091", "5230", "4180", "4181"}

// TestComposeStackJourney: examples/memos-authelia as `docker compose up`
// runs it, without Docker. Every service runs from its compose definition
// (stack) with the example's files as they are: Caddy (Debian's) with the
// Caddyfile, Authelia with its configuration and users, the
// authelia-secrets script, Memos (empty), and the proxy (built from this
// tree) with oidc-proxy.yaml. Mapped, and only that: names resolve to
// loopback (an /etc/hosts in each service's root; Chromium's
// --host-resolver-rules), Caddy binds loopback only and leaves the
// machine's trust store alone (a global options block before the
// Caddyfile), and Chromium does not check Caddy's local CA, as a user who
// trusted it. Chromium, as the example's user alice, signs in at
// Authelia's real portal and lands on Memos's real web app as herself,
// Memos's first run done by the proxy; then signs out.
func TestComposeStackJourney(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole stack")
	}
	proxytest.Bin(t, "AUTHELIA_BIN")
	memos := proxytest.Bin(t, "MEMOS_BIN")
	caddy, err := exec.LookPath("caddy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("caddy is not installed")
		}
		t.Skip("caddy is not installed")
	}
	for _, p := range stackPorts {
		ln, err := net.Listen("tcp", "127.0.0.1:"+p)
		if err != nil {
			t.Fatalf("port %s is taken: the stack's services listen there (%v)", p, err)
		}
		ln.Close()
	}
	st := newStack(t)

	// The proxy's image: this tree's binary.
	proxyBin := filepath.Join(t.TempDir(), "oidc-proxy")
	if out, err := exec.Command("go", "build", "-o", proxyBin, "github.com/oidc-proxy/oidc-proxy/cmd/oidc-proxy").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// Caddy, its compose command (which copies its root certificate for
	// the proxy to trust).
	caddyfile, _ := os.ReadFile("memos-authelia/Caddyfile")
	mapped := filepath.Join(t.TempDir(), "Caddyfile")
	os.WriteFile(mapped, append([]byte("{\n\tdefault_bind 127.0.0.1\n\tskip_install_trust\n\tadmin off\n}\n\n"), caddyfile...), 0o644)
	caddyBinds := st.binds("caddy", st.programDir(caddy), st.program(caddy, "caddy"))
	for i, b := range caddyBinds {
		if b.Target == "/etc/caddy/Caddyfile" {
			caddyBinds[i].Source = mapped
		}
	}
	caddyProc := proxytest.Start(t, proxytest.Root(t, caddyBinds,
		st.env("caddy", []string{"XDG_CONFIG_HOME=/config", "XDG_DATA_HOME=/data"}), st.argv("caddy")...))

	// Caddy's root certificate (the proxy trusts it; compose restarts the
	// proxy until it is there).
	rootCA := filepath.Join(st.volumes["caddy-ca"], "root.crt")
	waitFor(t, 60*time.Second, "Caddy's root certificate", func() bool { _, err := os.Stat(rootCA); return err == nil },
		caddyProc.Output)
	pem, _ := os.ReadFile(rootCA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)

	// Authelia: its secrets, then itself, behind Caddy.
	st.secretsService()
	st.authelia("127.0.0.1:9091", false, pool)

	// Memos, empty.
	proxytest.Start(t, proxytest.Root(t, st.binds("memos", st.programDir(memos), st.program(memos, "memos")),
		st.env("memos", nil), st.argv("memos", "/opt/bin/memos")...))

	proxyProc := proxytest.Start(t, proxytest.Root(t, st.binds("oidc-proxy", proxytest.Bind{Source: proxyBin, Target: "/oidc-proxy", ReadOnly: true}),
		st.env("oidc-proxy", nil), st.argv("oidc-proxy", "/oidc-proxy", "-config", "/etc/oidc-proxy/oidc-proxy.yaml")...))

	// Ready, through Caddy, as the browser will see it.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			var d net.Dialer
			return d.DialContext(ctx, network, "127.0.0.1:"+port)
		},
	}}
	waitFor(t, 90*time.Second, "https://memos.example.com/oauth2/readyz", func() bool {
		resp, err := client.Get("https://memos.example.com/oauth2/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, proxyProc.Output)

	// alice, in Chromium.
	ctx := proxytest.Chromium(t, 120*time.Second,
		[2]string{"host-resolver-rules", "MAP auth.example.com 127.0.0.1, MAP memos.example.com 127.0.0.1"},
		[2]string{"ignore-certificate-errors", "true"})
	if err := chromedp.Do(ctx, chromedp.Navigate("https://memos.example.com/")); err != nil {
		t.Fatal(err)
	}
	tries := 0
	waitFor(t, 60*time.Second, "Authelia's portal", func() bool {
		ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!document.getElementById('username-textfield')"))
		if loc, _ := chromedp.Run(ctx, chromedp.Location()); !ok && strings.HasPrefix(loc, "https://memos.example.com/") {
			if tries++; tries%10 == 0 { // "Memos is being set up": the proxy's first run is under way
				chromedp.Do(ctx, chromedp.Navigate("https://memos.example.com/"))
			}
		}
		return ok
	}, proxyProc.Output)
	if err := proxytest.Fill(ctx, map[string]string{"username-textfield": "alice", "password-textfield": "change-me-now"}, "sign-in-button"); err != nil {
		t.Fatalf("Authelia's portal: %v", err)
	}
	// Authelia asks for consent once (pre-configured mode), then the
	// browser is back at Memos.
	landed := func() (string, string) {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
		return loc, body
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		loc, body := landed()
		if strings.HasPrefix(loc, "https://auth.example.com/consent") {
			proxytest.Click(ctx, "openid-consent-accept")
		}
		if strings.HasPrefix(loc, "https://memos.example.com/") && strings.Contains(currentUser(ctx), `"username":"alice"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never landed on Memos as alice: at %s\n%s\nproxy:\n%s", loc, body, proxyProc.Output())
		}
		time.Sleep(250 * time.Millisecond)
	}
	user := currentUser(ctx)
	t.Logf("alice is on Memos's web app: %s", user)
	if !strings.Contains(user, `"role":"ADMIN"`) {
		t.Errorf("alice (group admins) is not a Memos admin: %s", user)
	}

	// Sign out: the proxy's sign-out, then Authelia's logout, back to
	// Memos, which asks to sign in again.
	if err := chromedp.Do(ctx, chromedp.Navigate("https://memos.example.com/oauth2/sign_out")); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		loc, _ := landed()
		visible, _ := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!document.getElementById('username-textfield')"))
		if strings.HasPrefix(loc, "https://auth.example.com/") && visible {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after sign-out: at %s", loc)
		}
		time.Sleep(250 * time.Millisecond)
	}
	resp, err := client.Get("https://memos.example.com/memos.api.v1.AuthService/GetCurrentUser")
	if err == nil {
		resp.Body.Close()
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("https://memos.example.com/")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "after sign-out, Memos asking to sign in again", func() bool {
		ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!document.getElementById('username-textfield')"))
		return ok
	}, proxyProc.Output)
}

// currentUser is what Memos's web app, in the page, gets from Memos as its
// current user (JSON), with the access token it keeps.
func currentUser(ctx context.Context) string {
	js := `fetch('/memos.api.v1.AuthService/GetCurrentUser', {method: 'POST', headers: {'Content-Type': 'application/json',
		'Authorization': 'Bearer ' + (localStorage.getItem('memos_access_token') || '')}, body: '{}'}).then(r => r.text())`
	out, _ := chromedp.Run(ctx, chromedp.Evaluate[string](js, func(p *runtime.EvaluateParams) { yes := true; p.AwaitPromise = &yes }))
	return strings.ReplaceAll(out, " ", "")
}

// waitFor polls ok until it holds, or fails the test after d with what
// output says.
func waitFor(t *testing.T, d time.Duration, what string, ok func() bool, output func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not there after %s\n%s", what, d, output())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
