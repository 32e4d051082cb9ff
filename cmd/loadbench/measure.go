package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// result accumulates the runs of one target at one connection count.
type result struct {
	name, url, header string
	pid, conns        int

	requests  int64
	seconds   float64
	p50, p99  []time.Duration // one per run
	cpu       time.Duration   // the target process's CPU over all runs
	rssKB     int64           // after the last run
	errors    int64
	runsCount int
}

var (
	reqsRE    = regexp.MustCompile(`(\d+) requests in ([\d.]+)(s|m)`)
	latencyRE = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	errorsRE  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// measure runs wrk once against the target and adds what it saw.
func (r *result) measure(ctx context.Context, d time.Duration) error {
	threads := "2"
	if r.conns < 2 {
		threads = "1"
	}
	args := []string{"-t", threads, "-c", strconv.Itoa(r.conns), "-d", fmt.Sprintf("%ds", max(1, int(d.Seconds()))), "--latency"}
	if r.header != "" {
		args = append(args, "-H", r.header)
	}
	args = append(args, r.url)
	cpu0, err := cpuTime(r.pid)
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "wrk", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("wrk: %v: %s", err, out)
	}
	cpu1, _ := cpuTime(r.pid)
	r.cpu += cpu1 - cpu0
	r.rssKB, _ = rss(r.pid)
	return r.parse(string(out))
}

// parse adds what one wrk run printed.
func (r *result) parse(out string) error {
	m := reqsRE.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("cannot read wrk's output:\n%s", out)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	secs, _ := strconv.ParseFloat(m[2], 64)
	if m[3] == "m" {
		secs *= 60
	}
	r.requests += n
	r.seconds += secs
	for _, l := range latencyRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(l[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[l[3]]
		dur := time.Duration(v * float64(unit))
		if l[1] == "50" {
			r.p50 = append(r.p50, dur)
		} else {
			r.p99 = append(r.p99, dur)
		}
	}
	for _, e := range errorsRE.FindAllStringSubmatch(out, -1) {
		for _, f := range e[1:] {
			k, _ := strconv.ParseInt(f, 10, 64)
			r.errors += k
		}
	}
	r.runsCount++
	return nil
}

func (r *result) rps() float64 { return float64(r.requests) / r.seconds }

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

func printTable(rs []*result) {
	base := rs[1] // the bare proxy with the tuned transport
	fmt.Printf("\n%d connection(s)\n\n", rs[0].conns)
	fmt.Println("| target | req/s | p50 | p99 | CPU µs/req | RSS MB | req/s vs bare tuned | p99 vs bare tuned |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rs {
		cpu := float64(r.cpu.Microseconds()) / float64(r.requests)
		fmt.Printf("| %s | %.0f | %s | %s | %.0f | %.1f | %.2f× | %.2f× |\n", r.name, r.rps(),
			round(median(r.p50)), round(median(r.p99)), cpu, float64(r.rssKB)/1024,
			r.rps()/base.rps(), float64(median(r.p99))/float64(median(base.p99)))
		if r.errors > 0 {
			fmt.Printf("|   ↳ %d errors or non-2xx answers | | | | | | | |\n", r.errors)
		}
	}
}

func round(d time.Duration) time.Duration {
	if d > time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// cpuTime reads a process's user plus system CPU time from /proc.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			return strconv.ParseInt(strings.Fields(line)[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}

// startSignedInProxy starts the test OpenID Provider in this process and
// oidc-proxy in another, signs a user in through them, and returns the
// proxy, its address and the session cookie header.
func startSignedInProxy(ctx context.Context, upstream string) (*exec.Cmd, string, string, func(), error) {
	sp, err := startProxy(ctx, upstream, "")
	if err != nil {
		return nil, "", "", nil, err
	}
	return sp.cmd, sp.addr, sp.cookie, sp.cleanup, nil
}

// signedInProxy is oidc-proxy running with a user signed in.
type signedInProxy struct {
	cmd              *exec.Cmd
	addr, cookie     string
	cfgPath, cfgBase string // the configuration file, and what it held at start
	cleanup          func()
}

// startProxy is startSignedInProxy with extra lines in the proxy's
// configuration.
func startProxy(ctx context.Context, upstream, extra string) (*signedInProxy, error) {
	opAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	pxAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	external := "http://" + pxAddr
	op, err := proxytest.NewOP("http://"+opAddr, proxytest.OPConfig{
		ClientID: "loadbench", ClientSecret: "loadbench-secret", RedirectURIs: []string{external + "/oauth2/callback"},
		Users: []*proxytest.OPUser{{Username: "alice", Password: "alice-password", Name: "Alice Liddell",
			Email: "alice@example.com", Groups: []string{"admins", "users"}}},
	})
	if err != nil {
		return nil, err
	}
	opSrv := &http.Server{Addr: opAddr, Handler: op.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go opSrv.ListenAndServe()

	dir, err := os.MkdirTemp("", "loadbench")
	if err != nil {
		return nil, err
	}
	cleanup := func() { opSrv.Close(); os.RemoveAll(dir) }
	cfgPath := filepath.Join(dir, "oidc-proxy.yaml")
	cfg := fmt.Sprintf("listen: %q\nexternal_url: %q\nupstream: %q\noidc:\n  issuer: \"http://%s\"\n  client_id: loadbench\n  client_secret: loadbench-secret\nsession:\n  secret: %q\nlog:\n  level: warn\n",
		pxAddr, external, upstream, opAddr, "loadbench-session-secret-0123456789abcdef") + extra
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		cleanup()
		return nil, err
	}
	// The real binary, built as a release is, so that its memory is what
	// users get.
	bin := filepath.Join(dir, "oidc-proxy")
	if out, err := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/oidc-proxy").CombinedOutput(); err != nil {
		cleanup()
		return nil, fmt.Errorf("build oidc-proxy (run loadbench from the repository root): %v\n%s", err, out)
	}
	cmd := exec.CommandContext(ctx, bin, "-config", cfgPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cleanup()
		return nil, err
	}
	fail := func(err error) (*signedInProxy, error) {
		cmd.Process.Kill()
		cleanup()
		return nil, err
	}
	for i := 0; ; i++ {
		resp, err := http.Get(external + "/oauth2/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i > 400 {
			return fail(fmt.Errorf("oidc-proxy did not become ready"))
		}
		time.Sleep(25 * time.Millisecond)
	}
	cookie, err := signIn(external)
	if err != nil {
		return fail(err)
	}
	return &signedInProxy{cmd: cmd, addr: pxAddr, cookie: cookie, cfgPath: cfgPath, cfgBase: cfg, cleanup: cleanup}, nil
}

// signIn goes through the sign-in as a browser would and returns the
// session cookie as a Cookie header value.
func signIn(external string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, external+"/", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	id := resp.Request.URL.Query().Get("authRequestID")
	form := url.Values{"id": {id}, "username": {"alice"}, "password": {"alice-password"}}
	login := resp.Request.URL.ResolveReference(&url.URL{Path: "/login/username"})
	resp, err = c.PostForm(login.String(), form)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("sign-in ended with %d at %s", resp.StatusCode, resp.Request.URL)
	}
	u, _ := url.Parse(external)
	var parts []string
	for _, ck := range jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, "oidc_proxy") && !strings.Contains(ck.Name, "login") {
			parts = append(parts, ck.Name+"="+ck.Value)
		}
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("no session cookie after sign-in")
	}
	return strings.Join(parts, "; "), nil
}
