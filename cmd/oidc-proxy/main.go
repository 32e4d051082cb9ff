// Command oidc-proxy is an OpenID Connect authentication reverse proxy.
//
//	oidc-proxy -config oidc-proxy.yaml          serve
//	oidc-proxy -config oidc-proxy.yaml -check   validate the configuration, reach the provider and the upstream, and exit
//	oidc-proxy -config oidc-proxy.yaml memos-setup   register the proxy as Memos's identity provider, and exit
//	oidc-proxy init -memos-url URL -issuer URL  write a configuration, secrets and Authelia's client block
//	oidc-proxy sessions list [-config F] [-user NAME]   who is signed in, where (Redis store)
//	oidc-proxy sessions end -user NAME [-config F]      sign a person out everywhere (Redis store)
//	oidc-proxy -version                         print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
	"github.com/oidc-proxy/oidc-proxy/proxy/memos"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	var code int
	switch {
	case len(os.Args) > 1 && os.Args[1] == "init":
		code = initSetup(os.Args[2:], os.Stdin, os.Stdout, os.Stderr)
	case len(os.Args) > 1 && os.Args[1] == "sessions":
		code = sessions(ctx, os.Args[2:], os.Stdout, os.Stderr)
	default:
		code = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	os.Exit(code)
}

// run is the whole program; it serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("oidc-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "oidc-proxy.yaml", "path to the configuration file")
	check := fs.Bool("check", false, "validate the configuration, reach the provider and the upstream, and exit (0: all good, 1: invalid, 3: a peer unreachable)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	healthURL := fs.String("healthcheck", "", "GET this URL (such as http://127.0.0.1:4180/oauth2/healthz) and exit 0 on a 200: for container health checks")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	memosSetup := false
	switch rest := fs.Args(); {
	case len(rest) == 1 && rest[0] == "memos-setup":
		memosSetup = true
	case len(rest) > 0:
		fmt.Fprintf(stderr, "oidc-proxy: unknown command %q (the commands are memos-setup, and init and sessions before any flag)\n", rest[0])
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "oidc-proxy", version)
		return 0
	}
	if *healthURL != "" {
		return healthcheck(ctx, *healthURL, stderr)
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	level := new(slog.LevelVar)
	level.Set(logLevel(cfg.Log))
	log := newLogger(cfg.Log, level, stderr)
	if *check {
		return checkPeers(ctx, cfg, *path, log, stdout, stderr)
	}
	if memosSetup {
		return setupMemos(ctx, cfg, log, stdout, stderr)
	}
	if err := serve(ctx, cfg, *path, log, level); err != nil {
		log.Error("oidc-proxy stopped", "err", err)
		return 1
	}
	return 0
}

// checkPeers reports on a valid configuration's provider and upstream:
// exit 0 when both answer as they should, 3 when one does not.
func checkPeers(ctx context.Context, cfg *config.Config, path string, log *slog.Logger, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "%s: configuration is valid\n", path)
	p, _, err := build(cfg, proxy.Options{Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer p.Close()
	found, err := p.Check(ctx)
	for _, line := range found {
		fmt.Fprintln(stdout, line)
	}
	if err != nil {
		fmt.Fprintln(stderr, "not reachable as configured:", err)
		return 3
	}
	return 0
}

// setupMemos registers the proxy as Memos's identity provider (or updates
// the registration) with the admin token of memos.admin_token_file.
func setupMemos(ctx context.Context, cfg *config.Config, log *slog.Logger, stdout, stderr io.Writer) int {
	p, bridges, err := build(cfg, proxy.Options{Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer p.Close()
	if len(bridges) == 0 {
		fmt.Fprintln(stderr, "memos-setup: set memos.bridge: true first")
		return 1
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The provider's endpoints tell which of Memos's providers sign users
	// in at the same place (see memos.Bridge.Register).
	if err := p.Discover(ctx); err != nil {
		fmt.Fprintf(stderr, "memos-setup: the OpenID Provider %s does not answer discovery (needed to find Memos's providers of the same issuer): %v\n", cfg.OIDC.Issuer, err)
		return 3
	}
	for _, bridge := range bridges {
		did, err := bridge.Register(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "memos-setup: %s%v\n", routeLabel(cfg, bridge), err)
			return 3
		}
		fmt.Fprintf(stdout, "memos-setup: %s%s (sign-in button %q)\n", routeLabel(cfg, bridge), did, bridge.Title())
	}
	return 0
}

// routeLabel names a bridge's route in output, when there are routes.
func routeLabel(cfg *config.Config, b *memos.Bridge) string {
	if len(cfg.Routes) == 0 {
		return ""
	}
	return "route " + b.Route() + ": "
}

// build wires the proxy of a configuration: the core, with the
// integrations the configuration asks for. It returns the Memos bridges
// too, one per route with memos.bridge.
func build(cfg *config.Config, opts proxy.Options) (*proxy.Proxy, []*memos.Bridge, error) {
	opts.Integrations = memos.Integrations
	p, err := proxy.New(cfg, opts)
	if err != nil {
		return nil, nil, err
	}
	return p, memos.Bridges(p.Integrations()), nil
}

// logLevel is the configured level (validated by Load).
func logLevel(c config.Log) slog.Level {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	return level
}

// newLogger writes c's format to w, at level (which a reload changes).
func newLogger(c config.Log, level *slog.LevelVar, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the proxy until ctx ends, then lets in-flight requests finish
// for up to 30 s. SIGHUP, or a change of the configuration file or a file
// it names, reloads the configuration (see reloader).
func serve(ctx context.Context, cfg *config.Config, path string, log *slog.Logger, level *slog.LevelVar) error {
	// From the start: a SIGHUP must never end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	p, _, err := build(cfg, proxy.Options{Logger: log, Version: version})
	if err != nil {
		return err
	}
	defer p.Close() // last: after the server has shut down
	p.Start(ctx)
	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", p.MetricsHandler())
		msrv := &http.Server{Addr: cfg.MetricsListen, Handler: mux, ReadHeaderTimeout: proxy.ReadHeaderTimeout}
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return err
		}
		go msrv.Serve(mln)
		defer msrv.Close()
	}
	bridges := &bridgeServers{log: log}
	if err := bridges.sync(p); err != nil {
		return err
	}
	defer bridges.close()
	srv := proxy.NewServer(cfg.Listen, p, log)
	if cfg.TLS.CertFile != "" {
		certs, err := proxy.NewCertReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile, log)
		if err != nil {
			return err
		}
		srv.TLSConfig = certs.TLSConfig()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	useTLS := srv.TLSConfig != nil // read before serving: Serve writes to it
	errc := make(chan error, 1)
	go func() {
		if useTLS {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	log.Info("oidc-proxy serving", "version", version, "listen", cfg.Listen, "tls", useTLS,
		"external_url", cfg.ExternalURL, "routes", len(cfg.RouteList()), "issuer", cfg.OIDC.Issuer)
	rl := &reloader{path: path, log: log, level: level, p: p, watch: newWatcher(watchedFiles(path, cfg)), bridges: bridges}
	wctx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	go rl.watch.run(wctx)
serving:
	for {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			break serving
		case <-hup:
			rl.reload("SIGHUP")
		case <-rl.watch.changed:
			rl.reload("a watched file changed")
		}
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// healthcheck is a probe for images without curl: a GET of url, exit 0 on
// 200 and 1 otherwise.
func healthcheck(ctx context.Context, url string, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "healthcheck:", resp.Status)
		return 1
	}
	return 0
}
