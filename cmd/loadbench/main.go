// Command loadbench measures what authentication costs: on loopback it
// starts a small upstream serving a 2 KB page, a bare httputil.ReverseProxy
// (with a tuned transport and with Go's default one), and oidc-proxy with a
// real signed-in session (signed in at the test OpenID Provider), each in a
// process of its own, then loads them in turn with wrk and prints requests
// per second, latency, CPU per request and memory, with ratios.
//
//	go run ./cmd/loadbench                 # about 3 minutes
//	go run ./cmd/loadbench -d 5s -rounds 1 # quicker, noisier
//
// The forward-auth row puts nginx (Debian: nginx-light) with auth_request
// to /oauth2/auth in front of the upstream, beside plain nginx.
//
// It needs wrk (Debian: apt-get install wrk). Every target listens on
// 127.0.0.1 only; each run is bounded by -d.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"time"
)

func main() {
	role := flag.String("role", "", "internal: serve one target (upstream, bare, bare-default)")
	addr := flag.String("addr", "", "internal: address to serve on")
	target := flag.String("target", "", "internal: upstream URL for a proxy role")

	var o options
	flag.DurationVar(&o.duration, "d", 8*time.Second, "length of each wrk run")
	flag.IntVar(&o.rounds, "rounds", 2, "how many times each target is run at each connection count, alternating")
	flag.StringVar(&o.conns, "c", "1,64", "connection counts")
	flag.DurationVar(&o.soak, "soak", 60*time.Second, "length of the run at 256 connections after which oidc-proxy's RSS is read (0: skip)")
	flag.IntVar(&o.idle, "idle", 10000, "idle keep-alive connections to hold open against oidc-proxy (0: skip)")
	flag.IntVar(&o.sse, "sse", 2000, "Server-Sent Events streams to hold through oidc-proxy (0: skip)")
	flag.DurationVar(&o.sseTime, "sse-time", time.Minute, "how long to hold the streams")
	flag.BoolVar(&o.forwardAuth, "forward-auth", true, "also measure nginx with auth_request to oidc-proxy against plain nginx (needs nginx)")
	flag.IntVar(&o.reloads, "reloads", 0, "instead of the comparison: reload the configuration this many times during signed-in load (see -reload-time), and fail unless nothing failed")
	flag.DurationVar(&o.reloadTime, "reload-time", 20*time.Second, "length of the load during the reloads")
	flag.Parse()
	if *role != "" {
		if err := serveRole(*role, *addr, *target); err != nil {
			fmt.Fprintln(os.Stderr, "loadbench:", err)
			os.Exit(1)
		}
		return
	}
	if o.reloads > 0 {
		if err := reloadLoad(o); err != nil {
			fmt.Fprintln(os.Stderr, "loadbench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

// serveRole is one target, in its own process.
func serveRole(role, addr, target string) error {
	var h http.Handler
	switch role {
	case "upstream":
		page := []byte(strings.Repeat("<p>oidc-proxy load benchmark page</p>\n", 2048/38+1)[:2048])
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/sse" {
				sseHandler(w, r)
				return
			}
			if r.URL.Path == "/_close_idle" { // asked directly, never through a proxy
				srv := r.Context().Value(http.ServerContextKey).(*http.Server)
				srv.SetKeepAlivesEnabled(false) // closes the idle connections
				srv.SetKeepAlivesEnabled(true)
				w.Header().Set("Connection", "close")
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(page)
		})
	case "bare", "bare-default":
		u, err := url.Parse(target)
		if err != nil {
			return err
		}
		rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		}, ErrorLog: log.New(io.Discard, "", 0)} // wrk cancels requests in flight when it stops
		if role == "bare" {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.MaxIdleConnsPerHost = 1024
			t.MaxIdleConns = 1024
			rp.Transport = t
		}
		h = rp
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startRole runs this program again as a target and waits until it answers.
func startRole(ctx context.Context, role, target, probe string) (*exec.Cmd, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.CommandContext(ctx, self, "-role", role, "-addr", addr, "-target", target)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	for range 200 {
		resp, err := http.Get("http://" + addr + probe)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return cmd, addr, nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	cmd.Process.Kill()
	return nil, "", fmt.Errorf("%s did not start", role)
}

type options struct {
	duration, soak, sseTime time.Duration
	rounds, idle, sse       int
	conns                   string
	forwardAuth             bool
	reloads                 int
	reloadTime              time.Duration
}

func run(o options) error {
	duration, rounds, connList := o.duration, o.rounds, o.conns
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk is not installed (Debian: apt-get install wrk)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	up, upAddr, err := startRole(ctx, "upstream", "", "/")
	if err != nil {
		return err
	}
	defer up.Process.Kill()
	upstream := "http://" + upAddr
	bare, bareAddr, err := startRole(ctx, "bare", upstream, "/")
	if err != nil {
		return err
	}
	defer bare.Process.Kill()
	bareDef, bareDefAddr, err := startRole(ctx, "bare-default", upstream, "/")
	if err != nil {
		return err
	}
	defer bareDef.Process.Kill()
	px, pxAddr, cookie, cleanup, err := startSignedInProxy(ctx, upstream)
	if err != nil {
		return err
	}
	defer cleanup()
	defer px.Process.Kill()

	// Before any load: what each process holds just for being started.
	pxStart, _ := rss(px.Process.Pid)
	bareStart, _ := rss(bare.Process.Pid)
	targets := []*result{
		{name: "direct to upstream", url: upstream + "/", pid: up.Process.Pid},
		{name: "bare ReverseProxy, tuned transport", url: "http://" + bareAddr + "/", pid: bare.Process.Pid},
		{name: "bare ReverseProxy, default transport", url: "http://" + bareDefAddr + "/", pid: bareDef.Process.Pid},
		{name: "oidc-proxy, signed in", url: "http://" + pxAddr + "/", pid: px.Process.Pid, header: "Cookie: " + cookie},
	}
	var counts []int
	for _, c := range strings.Split(connList, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(c), &n); err != nil || n < 1 {
			return fmt.Errorf("bad connection count %q", c)
		}
		counts = append(counts, n)
	}
	fmt.Printf("loadbench: %d round(s) of %s per target and connection count; wrk with 2 threads (1 at 1 connection)\n", rounds, duration)
	byConn := map[int][]*result{}
	for _, c := range counts {
		for _, t := range targets {
			r := *t
			r.conns = c
			byConn[c] = append(byConn[c], &r)
		}
	}
	for round := range rounds {
		for _, c := range counts {
			for _, r := range byConn[c] {
				fmt.Fprintf(os.Stderr, "round %d: %s at %d connection(s)\n", round+1, r.name, c)
				if err := r.measure(ctx, duration); err != nil {
					return err
				}
			}
		}
	}
	for _, c := range counts {
		printTable(byConn[c])
	}
	if o.forwardAuth {
		var proxied *result
		if rs := byConn[64]; rs != nil {
			proxied = rs[3]
		}
		if err := forwardAuth(ctx, o, upAddr, pxAddr, cookie, px.Process.Pid, proxied); err != nil {
			return err
		}
	}
	return memory(ctx, o, targets[3], targets[1], pxStart, bareStart)
}

// memory runs the memory checks of oidc-proxy, beside the bare tuned
// proxy for comparison: RSS after a long run at 256 connections (both
// loaded at once, so each gets about half the CPU), with many idle
// keep-alive connections, and (oidc-proxy only) with many Server-Sent
// Events streams over time.
//
// The soak row also gives what each process grew by over the RSS it had
// at start, per connection in flight (both hold 256): memory per request
// in flight, the comparison that does not count the binary and the
// libraries each starts with.
func memory(ctx context.Context, o options, px, bare *result, pxStart, bareStart int64) error {
	fmt.Printf("\nmemory\n\n| condition | oidc-proxy RSS | bare ReverseProxy RSS |\n|---|---:|---:|\n")
	if o.soak > 0 {
		soaks := []*result{px, bare}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		fmt.Fprintf(os.Stderr, "soak: %s at 256 connections\n", o.soak)
		for i := range soaks {
			r := *soaks[i]
			r.conns = 256
			soaks[i] = &r
			wg.Go(func() { errs[i] = r.measure(ctx, o.soak) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		fmt.Printf("| after %s at 256 connections (%.0f and %.0f req/s) | %s | %s |\n", o.soak,
			soaks[0].rps(), soaks[1].rps(), mb(soaks[0].rssKB), mb(soaks[1].rssKB))
		pxGrow, bareGrow := soaks[0].rssKB-pxStart, soaks[1].rssKB-bareStart
		fmt.Printf("| at start, before any load | %s | %s |\n", mb(pxStart), mb(bareStart))
		fmt.Printf("| grown by, per request in flight (256) | %.1f KB | %.1f KB |\n", float64(pxGrow)/256, float64(bareGrow)/256)
		fmt.Printf("\nmemory per request in flight: oidc-proxy %.2f× the bare tuned proxy; whole RSS %.2f×\n",
			float64(pxGrow)/float64(bareGrow), float64(soaks[0].rssKB)/float64(soaks[1].rssKB))
	}
	addr := strings.TrimPrefix(strings.TrimSuffix(px.url, "/"), "http://")
	cookie := strings.TrimPrefix(px.header, "Cookie: ")
	if o.idle > 0 {
		var held [2]int64
		for i, r := range []*result{px, bare} {
			fmt.Fprintf(os.Stderr, "idle: %d keep-alive connections to %s\n", o.idle, r.name)
			closeAll, err := holdConnections(strings.TrimPrefix(strings.TrimSuffix(r.url, "/"), "http://"), cookie, "/", o.idle, false)
			if err != nil {
				return fmt.Errorf("idle connections: %w", err)
			}
			time.Sleep(3 * time.Second)
			held[i], _ = rss(r.pid)
			closeAll()
		}
		fmt.Printf("| %d idle keep-alive connections held | %s | %s |\n", o.idle, mb(held[0]), mb(held[1]))
	}
	if o.sse > 0 {
		fmt.Fprintf(os.Stderr, "sse: %d streams for %s\n", o.sse, o.sseTime)
		closeAll, err := holdConnections(addr, cookie, "/sse", o.sse, true)
		if err != nil {
			return fmt.Errorf("SSE streams: %w", err)
		}
		samples := memorySamples(px.pid, o.sseTime, o.sseTime/6)
		closeAll()
		var parts []string
		for _, s := range samples {
			parts = append(parts, mb(s))
		}
		fmt.Printf("| %d SSE streams over %s, sampled | %s | |\n", o.sse, o.sseTime, strings.Join(parts, " → "))
	}
	return nil
}
