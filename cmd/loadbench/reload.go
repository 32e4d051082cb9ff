package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// reloadLoad is the live-reload check: signed-in load at 64 connections
// and one open event stream while the configuration is reloaded (SIGHUP
// after a change of the file) once a second. It fails unless every
// request succeeded, the stream is still open and delivering at the end,
// every reload succeeded and the proxy holds no more goroutines than
// before (beyond a few for connections closing).
func reloadLoad(o options) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk is not installed (Debian: apt-get install wrk)")
	}
	ctx := context.Background()
	up, upAddr, err := startRole(ctx, "upstream", "", "/")
	if err != nil {
		return err
	}
	defer up.Process.Kill()
	metrics, err := freeAddr()
	if err != nil {
		return err
	}
	sp, err := startProxy(ctx, "http://"+upAddr, fmt.Sprintf("metrics_listen: %q\n", metrics))
	if err != nil {
		return err
	}
	defer sp.cleanup()
	defer sp.cmd.Process.Kill()

	// The stream, opened first; it must see events until the end.
	var events atomic.Int64
	var streamErr atomic.Value
	conn, err := net.DialTimeout("tcp", sp.addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /sse HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nAccept: text/event-stream\r\n\r\n", sp.addr, sp.cookie)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		return fmt.Errorf("the event stream: %v %v", resp, err)
	}
	go func() {
		body := bufio.NewReader(resp.Body)
		for {
			line, err := body.ReadString('\n')
			if err != nil {
				streamErr.Store(err)
				return
			}
			if strings.HasPrefix(line, "data:") {
				events.Add(1)
			}
		}
	}()
	// A warm-up at the same load first: the connection pools fill, and
	// what they hold is not counted as growth.
	warm := exec.Command("wrk", "-t", "2", "-c", "64", "-d", "3s", "-H", "Cookie: "+sp.cookie, "http://"+sp.addr+"/")
	if out, err := warm.CombinedOutput(); err != nil {
		return fmt.Errorf("wrk: %v\n%s", err, out)
	}
	before, err := settled(upAddr, metrics)
	if err != nil {
		return err
	}

	d := o.reloadTime
	wrk := exec.Command("wrk", "-t", "2", "-c", "64", "-d", fmt.Sprintf("%ds", int(d.Seconds())), "--latency", "-H", "Cookie: "+sp.cookie, "http://"+sp.addr+"/")
	var out strings.Builder
	wrk.Stdout, wrk.Stderr = &out, &out
	if err := wrk.Start(); err != nil {
		return err
	}
	start := time.Now()
	sent := 0
	for i := 1; i <= o.reloads; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * d / time.Duration(o.reloads+1))))
		cfg := sp.cfgBase + fmt.Sprintf("public_paths: [\"/reload-%d\"]\n", i)
		if i%2 == 0 {
			cfg += "access:\n  allowed_groups: [users]\n"
		}
		if err := os.WriteFile(sp.cfgPath, []byte(cfg), 0o600); err != nil {
			return err
		}
		if err := sp.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			return err
		}
		sent++
	}
	if err := wrk.Wait(); err != nil {
		return fmt.Errorf("wrk: %v\n%s", err, out.String())
	}
	r := &result{}
	if err := r.parse(out.String()); err != nil {
		return err
	}
	atEnd := events.Load()
	time.Sleep(2 * time.Second) // the stream ticks twice more
	after, err := settled(upAddr, metrics)
	if err != nil {
		return err
	}
	ok, failed, err := reloadCounts(metrics)
	if err != nil {
		return err
	}
	streamOpen := streamErr.Load() == nil && events.Load() > atEnd
	fmt.Printf("\nlive reload under load (%s, wrk 64 connections, one event stream)\n\n", d)
	fmt.Printf("| | |\n|---|---:|\n")
	fmt.Printf("| requests | %d (%.0f/s) |\n", r.requests, r.rps())
	fmt.Printf("| failed requests (non-2xx/3xx, socket errors) | %d |\n", r.errors)
	fmt.Printf("| latency p50 / p99 | %s / %s |\n", round(median(r.p50)), round(median(r.p99)))
	fmt.Printf("| reloads: SIGHUPs sent / succeeded / failed | %d / %d / %d (the file watcher adds one once the writes stop) |\n", sent, ok, failed)
	fmt.Printf("| event stream open at the end | %v (%d events) |\n", streamOpen, events.Load())
	fmt.Printf("| proxy goroutines before / after | %d / %d |\n", before, after)
	switch {
	case r.errors > 0:
		return fmt.Errorf("%d requests failed during the reloads", r.errors)
	case ok < sent || failed != 0:
		// More than sent: the file watcher's own reload once the writes
		// stopped (it waits for a quiet second), which is as it should be.
		return fmt.Errorf("%d reloads sent, %d succeeded, %d failed", sent, ok, failed)
	case !streamOpen:
		return fmt.Errorf("the event stream ended during the reloads: %v", streamErr.Load())
	case after > before+2:
		return fmt.Errorf("goroutines grew from %d to %d", before, after)
	}
	return nil
}

var (
	goroutinesRE = regexp.MustCompile(`(?m)^go_goroutines (\d+)$`)
	reloadsRE    = regexp.MustCompile(`(?m)^oidc_proxy_config_reloads_total\{result="(success|failure)"\} (\d+)$`)
)

func scrape(addr string) (string, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// settled is the proxy's goroutine count once the load's connections
// are gone: the upstream closes its idle keep-alive connections (the
// proxy's pool, whose size depends on the load's bursts), and the count
// is read when it has stopped falling.
func settled(upAddr, metrics string) (int, error) {
	last := -1
	for range 20 {
		if resp, err := http.Get("http://" + upAddr + "/_close_idle"); err == nil {
			resp.Body.Close()
		}
		time.Sleep(250 * time.Millisecond)
		n, err := goroutines(metrics)
		if err != nil {
			return 0, err
		}
		if n == last {
			return n, nil
		}
		last = n
	}
	return last, nil
}

func goroutines(addr string) (int, error) {
	m, err := scrape(addr)
	if err != nil {
		return 0, err
	}
	g := goroutinesRE.FindStringSubmatch(m)
	if g == nil {
		return 0, fmt.Errorf("no go_goroutines in the metrics")
	}
	return strconv.Atoi(g[1])
}

func reloadCounts(addr string) (ok, failed int, err error) {
	m, err := scrape(addr)
	if err != nil {
		return 0, 0, err
	}
	for _, c := range reloadsRE.FindAllStringSubmatch(m, -1) {
		n, _ := strconv.Atoi(c[2])
		if c[1] == "success" {
			ok = n
		} else {
			failed = n
		}
	}
	return ok, failed, nil
}
