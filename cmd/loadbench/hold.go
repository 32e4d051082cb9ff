package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// sseHandler is the upstream's event stream: a comment now, an event every
// second, open until the client leaves.
func sseHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	fl := w.(http.Flusher)
	io.WriteString(w, ": hello\n\n")
	fl.Flush()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
			io.WriteString(w, "data: tick\n\n")
			fl.Flush()
		}
	}
}

// holdConnections opens n connections to addr, each sending one
// authenticated GET of path and reading the start of the answer; with
// stream, each keeps reading in the background. It returns a func that
// closes them all.
func holdConnections(addr, cookie, path string, n int, stream bool) (func(), error) {
	var mu sync.Mutex
	var conns []net.Conn
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
	errc := make(chan error, n)
	sem := make(chan struct{}, 256) // dial 256 at a time
	var wg sync.WaitGroup
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				errc <- err
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\n\r\n", path, addr, cookie)
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				errc <- err
				return
			}
			if resp.StatusCode != 200 {
				errc <- fmt.Errorf("status %d", resp.StatusCode)
				return
			}
			if !stream {
				io.Copy(io.Discard, resp.Body) // then the connection idles, kept alive
				return
			}
			body := bufio.NewReader(resp.Body) // chunked
			line, err := body.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, ":") {
				errc <- fmt.Errorf("stream: %q %v", line, err)
				return
			}
			c.SetReadDeadline(time.Time{})
			go io.Copy(io.Discard, body)
		})
	}
	wg.Wait()
	close(errc)
	errs := 0
	var first error
	for err := range errc {
		if first == nil {
			first = err
		}
		errs++
	}
	if errs > 0 {
		closeAll()
		return nil, fmt.Errorf("%d of %d connections failed, first: %v", errs, n, first)
	}
	return closeAll, nil
}

// memorySamples reads the RSS of pid every interval for d.
func memorySamples(pid int, d, interval time.Duration) []int64 {
	var out []int64
	for end := time.Now().Add(d); ; {
		kb, _ := rss(pid)
		out = append(out, kb)
		if time.Now().Add(interval).After(end) {
			return out
		}
		time.Sleep(interval)
	}
}

func mb(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }
