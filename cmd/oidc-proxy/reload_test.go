package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// configMap lays a configuration out as a Kubernetes ConfigMap volume
// does: the file is a symlink through ..data, itself a symlink to a
// timestamped directory, and an update swaps ..data.
type configMap struct {
	t   *testing.T
	dir string
	n   int
}

func (cm *configMap) path() string { return filepath.Join(cm.dir, "oidc-proxy.yaml") }

// swap publishes content as the kubelet does: a new directory, then
// ..data renamed over in one step.
func (cm *configMap) swap(content string) {
	cm.t.Helper()
	cm.n++
	ts := fmt.Sprintf("..2026_12_02_%02d", cm.n)
	if err := os.Mkdir(filepath.Join(cm.dir, ts), 0o755); err != nil {
		cm.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cm.dir, ts, "oidc-proxy.yaml"), []byte(content), 0o644); err != nil {
		cm.t.Fatal(err)
	}
	tmp := filepath.Join(cm.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		cm.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(cm.dir, "..data")); err != nil {
		cm.t.Fatal(err)
	}
	if cm.n == 1 {
		if err := os.Symlink(filepath.Join("..data", "oidc-proxy.yaml"), cm.path()); err != nil {
			cm.t.Fatal(err)
		}
	}
}

var reloadsRE = regexp.MustCompile(`oidc_proxy_config_reloads_total\{result="(success|failure)"\} (\d+)`)

// reloads reads the reload counters from the metrics listener.
func reloads(t *testing.T, metrics string) (ok, failed int) {
	t.Helper()
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, m := range reloadsRE.FindAllStringSubmatch(string(b), -1) {
		n, _ := strconv.Atoi(m[2])
		if m[1] == "success" {
			ok = n
		} else {
			failed = n
		}
	}
	return ok, failed
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

// TestReloadOnSignalAndFileChanges runs the command with its
// configuration in a ConfigMap-style directory and a session secret in a
// file beside it, and reloads it every way there is: SIGHUP, a burst of
// writes (one reload), a symlink swap, a secret file's change, and an
// invalid file (nothing changes, counted).
func TestReloadOnSignalAndFileChanges(t *testing.T) {
	defer func(p, q time.Duration) { pollEvery, quietFor = p, q }(pollEvery, quietFor)
	pollEvery, quietFor = 50*time.Millisecond, 200*time.Millisecond
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app") }))
	defer upstream.Close()
	addr, metrics := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "session-secret")
	os.WriteFile(secretFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	conf := func(public string) string {
		return fmt.Sprintf(`
listen: %q
metrics_listen: %q
external_url: http://%s
upstream: %q
oidc: {issuer: "http://127.0.0.1:1", client_id: memos, client_secret: s3cret, timeout: 1s}
session: {secret_file: %q}
public_paths: [%q]
`, addr, metrics, addr, upstream.URL, secretFile, public)
	}
	cm := &configMap{t: t, dir: filepath.Join(dir, "config")}
	os.Mkdir(cm.dir, 0o755)
	cm.swap(conf("/one"))
	pollEvery = time.Hour // first, SIGHUP alone
	ctx, cancel := context.WithCancel(context.Background())
	var logs lockedBuffer
	done := make(chan int)
	go func() { done <- run(ctx, []string{"-config", cm.path()}, io.Discard, &logs) }()
	defer func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	}()
	public := func(path string) bool {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	waitFor(t, "the proxy did not start", 5*time.Second, func() bool { return public("/one") })

	// SIGHUP, with the file watch idle: the file is rewritten in place,
	// then the signal.
	target, _ := filepath.EvalSymlinks(cm.path())
	os.WriteFile(target, []byte(conf("/two")), 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, "SIGHUP did not reload", 5*time.Second, func() bool { return public("/two") })
	time.Sleep(300 * time.Millisecond)
	if ok, _ := reloads(t, metrics); ok != 1 {
		t.Errorf("%d reloads after SIGHUP", ok)
	}
	if public("/one") {
		t.Error("the old public path still passes")
	}

	// The watcher again; a burst of ten writes makes one reload.
	cancel()
	<-done
	pollEvery = 50 * time.Millisecond
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2() // before the first defer waits for the exit
	go func() { done <- run(ctx2, []string{"-config", cm.path()}, io.Discard, &logs) }()
	waitFor(t, "the proxy did not start again", 5*time.Second, func() bool { return public("/two") })
	for i := range 10 {
		os.WriteFile(target, []byte(conf(fmt.Sprintf("/burst%d", i))), 0o644)
		time.Sleep(15 * time.Millisecond)
	}
	waitFor(t, "the burst did not reload", 5*time.Second, func() bool { return public("/burst9") })
	time.Sleep(500 * time.Millisecond)
	if ok, _ := reloads(t, metrics); ok != 1 {
		t.Errorf("a burst of writes made %d reloads", ok)
	}

	// A ConfigMap update: ..data swapped to a new directory.
	cm.swap(conf("/swapped"))
	waitFor(t, "the symlink swap was not noticed", 5*time.Second, func() bool { return public("/swapped") })

	// A file the configuration names: the session secret rotated (in a
	// list of files) is noticed too.
	next := filepath.Join(dir, "session-secret-next")
	os.WriteFile(next, []byte("fedcba9876543210fedcba9876543210\n"), 0o600)
	os.WriteFile(secretFile, []byte("0123456789abcdef0123456789abcdef-rotated\n"), 0o600)
	waitFor(t, "a change of the secret file did not reload", 5*time.Second, func() bool {
		ok, _ := reloads(t, metrics)
		return ok == 3
	})

	// An invalid file: refused with its line, counted, nothing changes.
	cm.swap(conf("/invalid") + "bogus_key: 1\n")
	waitFor(t, "the invalid file was not counted", 5*time.Second, func() bool {
		_, failed := reloads(t, metrics)
		return failed == 1
	})
	if !public("/swapped") || public("/invalid") {
		t.Error("an invalid configuration changed what is served")
	}
	if !strings.Contains(logs.String(), "reload refused") || !strings.Contains(logs.String(), "bogus_key: unknown key") {
		t.Errorf("the log does not say why the reload was refused")
	}
}
