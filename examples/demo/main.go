// Command demo runs the whole sign-in flow on this machine with nothing
// else installed: a local OpenID Provider that behaves like Authelia (with
// a demo user), two small apps that show the headers they receive (Notes,
// and a Team board for the group admins), and oidc-proxy in front of them
// with its home page.
//
//	go run ./examples/demo
//
// then open the printed URL and sign in with the printed user and password:
// the home page lists your apps, who you are to them, and your sessions.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

func main() {
	proxyAddr := flag.String("listen", "127.0.0.1:4180", "address of the proxy")
	opAddr := flag.String("op", "127.0.0.1:9091", "address of the demo OpenID Provider")
	appAddr := flag.String("app", "127.0.0.1:9092", "address of the demo apps")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *proxyAddr, *opAddr, *appAddr, os.Stdout, nil); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run serves the demo until ctx ends; ready, when not nil, gets the URL
// to open and the password once everything listens.
func run(ctx context.Context, proxyAddr, opAddr, appAddr string, out io.Writer, ready func(url, password string)) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	_, port, err := net.SplitHostPort(proxyAddr)
	if err != nil {
		return err
	}
	// localhost, not 127.0.0.1: the apps are routes on a host name, and
	// browsers take every localhost name to this machine.
	external := "http://localhost:" + port
	secret := randomString()
	password := randomString()[:12]
	op, err := proxytest.NewOP("http://"+opAddr, proxytest.OPConfig{
		ClientID: "demo", ClientSecret: secret, RedirectURIs: []string{external + "/oauth2/callback"},
		Users: []*proxytest.OPUser{{Username: "alice", Password: password, Name: "Alice Demo",
			Email: "alice@example.com", Groups: []string{"admins", "users"}}},
	})
	if err != nil {
		return err
	}
	yaml := fmt.Sprintf(`
listen: %q
external_url: %q
oidc:
  issuer: "http://%[3]s"
  client_id: demo
  client_secret: "${DEMO_CLIENT_SECRET}"
session:
  secret: "${DEMO_SESSION_SECRET}"
admin:
  groups: [admins]
routes:
  - name: notes
    host: localhost
    path: /notes
    upstream: "http://%[4]s"
    title: Notes
    description: Write things down.
    icon: "N"
  - name: team
    host: localhost
    path: /team
    upstream: "http://%[4]s"
    title: Team board
    description: For the group admins.
    icon: "TB"
    access:
      allowed_groups: [admins]
`, proxyAddr, external, opAddr, appAddr)
	env := map[string]string{"DEMO_CLIENT_SECRET": secret, "DEMO_SESSION_SECRET": randomString()}
	cfg, err := config.Parse("demo.yaml", []byte(yaml), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		return err
	}
	p, err := proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil {
		return err
	}
	servers := []*http.Server{
		{Addr: opAddr, Handler: op.Handler()},
		{Addr: appAddr, Handler: http.HandlerFunc(showHeaders)},
		{Addr: proxyAddr, Handler: p},
	}
	for _, s := range servers {
		s.ReadHeaderTimeout = 10 * time.Second
		ln, err := net.Listen("tcp", s.Addr)
		if err != nil {
			return err
		}
		go s.Serve(ln)
	}
	p.Start(ctx)
	home := external + "/oauth2/"
	fmt.Fprintf(out, "\noidc-proxy demo is running.\n\n  Open      %s\n  User      alice\n  Password  %s\n\nPress Ctrl-C to stop.\n\n", home, password)
	if ready != nil {
		ready(home, password)
	}
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		s.Shutdown(shutdown)
	}
	return nil
}

func randomString() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var page = template.Must(template.New("app").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Demo app</title></head><body>
<h1 id="hello">Hello, {{.User}}</h1>
<p>This app sits behind oidc-proxy. These are the headers it received:</p>
<table>{{range .Headers}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>{{end}}</table>
<p><a href="/oauth2/">Your apps and sessions</a></p>
<form method="post" action="/oauth2/sign_out"><button id="signout">Sign out</button></form>
</body></html>`))

// showHeaders is the demo app: it greets the user named by Remote-User and
// lists every request header.
func showHeaders(w http.ResponseWriter, r *http.Request) {
	var rows [][2]string
	for k, vs := range r.Header {
		rows = append(rows, [2]string{k, strings.Join(vs, " | ")})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i][0] < rows[j][0] })
	user := r.Header.Get("Remote-User")
	if user == "" {
		user = "nobody"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	page.Execute(w, struct {
		User    string
		Headers [][2]string
	}{user, rows})
}
