package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
)

// sessions is the command line's view of the Redis store's sessions:
//
//	oidc-proxy sessions list [-config FILE] [-user NAME]
//	oidc-proxy sessions end -user NAME [-config FILE]
//
// list prints who is signed in, on which device, from where, since when
// and last seen when; end signs a person out everywhere (every replica at
// once) and logs it with the operator's name.
func sessions(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "end") {
		fmt.Fprintln(stderr, "usage: oidc-proxy sessions list [-config FILE] [-user NAME]\n       oidc-proxy sessions end -user NAME [-config FILE]")
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("oidc-proxy sessions "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "oidc-proxy.yaml", "path to the configuration file")
	user := fs.String("user", "", "the person's user name (preferred_username)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if verb == "end" && *user == "" {
		fmt.Fprintln(stderr, "oidc-proxy sessions end: name the person with -user")
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if cfg.Session.Store != "redis" {
		fmt.Fprintln(stderr, "oidc-proxy sessions: sessions live in browsers' cookies (session.store: cookie); the proxy keeps none to list or end. Use the Redis store.")
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if verb == "end" {
		n, err := p.EndUser(ctx, *user)
		if err != nil {
			fmt.Fprintln(stderr, "oidc-proxy sessions end:", err)
			return 1
		}
		if n == 0 {
			fmt.Fprintf(stdout, "%s has no session\n", *user)
			return 0
		}
		slog.New(slog.NewTextHandler(stderr, nil)).Warn("sessions: a person signed out everywhere from the command line",
			"user", *user, "sessions", n, "operator", operator())
		fmt.Fprintf(stdout, "%s: %d session(s) ended on every replica\n", *user, n)
		return 0
	}
	ds, err := p.Devices(ctx, *user)
	if err != nil {
		fmt.Fprintln(stderr, "oidc-proxy sessions list:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tDEVICE\tADDRESS\tSIGNED IN\tLAST SEEN\tENDS")
	for _, d := range ds {
		seen, addr := d.Last()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.User, proxy.DeviceInWords(d.Agent), addr, stamp(d.Created), stamp(seen), stamp(d.Expires))
	}
	tw.Flush()
	if len(ds) == 0 {
		fmt.Fprintln(stdout, "(nobody is signed in)")
	}
	return 0
}

func stamp(unix int64) string { return time.Unix(unix, 0).UTC().Format("2006-01-02 15:04") }

// operator names who runs the command, for the audit line.
func operator() string {
	for _, k := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "unknown"
}
