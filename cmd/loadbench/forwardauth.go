package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nginxConf is nginx with one worker in front of the upstream; with auth,
// every request first asks oidc-proxy's /oauth2/auth (auth_request), as
// examples/forward-auth/nginx.conf does.
const nginxConf = `%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[2]s/body; proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi; uwsgi_temp_path %[2]s/uwsgi; scgi_temp_path %[2]s/scgi;
  upstream app { server %[3]s; keepalive 128; }
  upstream auth { server %[4]s; keepalive 128; }
  server {
    listen %[5]s;
    location = /oauth2/auth {
      internal;
      proxy_pass http://auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Forwarded-Uri $request_uri;
    }
    location / {
      %[6]s
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`

// startNginx runs nginx in the foreground on a free loopback port and
// returns it, its worker's pid and its address.
func startNginx(ctx context.Context, upAddr, pxAddr string, auth bool) (*exec.Cmd, int, string, func(), error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return nil, 0, "", nil, err
		}
		bin = "/usr/sbin/nginx"
	}
	dir, err := os.MkdirTemp("", "loadbench-nginx")
	if err != nil {
		return nil, 0, "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	addr, err := freeAddr()
	if err != nil {
		cleanup()
		return nil, 0, "", nil, err
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	check := ""
	if auth {
		check = "auth_request /oauth2/auth; auth_request_set $auth_user $upstream_http_remote_user; proxy_set_header Remote-User $auth_user;"
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, user, dir, upAddr, pxAddr, addr, check)), 0o600); err != nil {
		cleanup()
		return nil, 0, "", nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-p", dir, "-c", conf, "-g", "daemon off;")
	// SIGTERM, not SIGKILL: the master then stops its worker too.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cleanup()
		return nil, 0, "", nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		cleanup()
	}
	for range 200 {
		if worker := childOf(cmd.Process.Pid); worker != 0 {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return cmd, worker, addr, stop, nil
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	stop()
	return nil, 0, "", nil, fmt.Errorf("nginx did not start (see %s)", filepath.Join(dir, "error.log"))
}

// childOf finds a child process of pid (nginx's worker), or 0.
func childOf(pid int) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			return n
		}
	}
	return 0
}

// forwardAuth is the forward-auth row: plain nginx in front of the
// upstream against nginx asking oidc-proxy's /oauth2/auth for every
// request, at 64 connections, in the same run; with oidc-proxy's CPU per
// authenticated request beside its proxied path's.
func forwardAuth(ctx context.Context, o options, upAddr, pxAddr, cookie string, pxPid int, proxied *result) error {
	plain, plainWorker, plainAddr, stopPlain, err := startNginx(ctx, upAddr, pxAddr, false)
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	defer stopPlain()
	_ = plain
	withAuth, _, authAddr, stopAuth, err := startNginx(ctx, upAddr, pxAddr, true)
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	defer stopAuth()
	_ = withAuth
	rows := []*result{
		{name: "nginx, plain", url: "http://" + plainAddr + "/", pid: plainWorker, conns: 64},
		// The CPU of this row is oidc-proxy's, per authenticated request.
		{name: "nginx + auth_request to oidc-proxy", url: "http://" + authAddr + "/", pid: pxPid, conns: 64, header: "Cookie: " + cookie},
	}
	for round := range o.rounds {
		for _, r := range rows {
			fmt.Fprintf(os.Stderr, "round %d: %s at 64 connection(s)\n", round+1, r.name)
			if err := r.measure(ctx, o.duration); err != nil {
				return err
			}
		}
	}
	fmt.Printf("\nforward-auth, 64 connection(s), nginx with one worker\n\n")
	fmt.Println("| target | req/s | p50 | p99 | CPU µs/req | req/s vs plain nginx |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for i, r := range rows {
		who := "nginx"
		if i == 1 {
			who = "oidc-proxy"
		}
		fmt.Printf("| %s | %.0f | %s | %s | %.0f (%s) | %.2f× |\n", r.name, r.rps(), round(median(r.p50)), round(median(r.p99)),
			float64(r.cpu.Microseconds())/float64(r.requests), who, r.rps()/rows[0].rps())
		if r.errors > 0 {
			fmt.Printf("|   ↳ %d errors or non-2xx answers | | | | | |\n", r.errors)
		}
	}
	if proxied != nil && proxied.requests > 0 {
		fmt.Printf("\noidc-proxy's CPU per request: %.0f µs answering /oauth2/auth, %.0f µs on its proxied path (64 connections, above)\n",
			float64(rows[1].cpu.Microseconds())/float64(rows[1].requests), float64(proxied.cpu.Microseconds())/float64(proxied.requests))
	}
	return nil
}
