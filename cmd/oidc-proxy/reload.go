package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
	"github.com/oidc-proxy/oidc-proxy/proxy/memos"
)

// Watching for changes: the configuration file and every file it names
// are looked at every pollEvery; a change starts a reload once nothing
// has changed for quietFor, so that an editor's or kubelet's burst of
// writes makes one reload. Polling, not inotify: it sees a Kubernetes
// ConfigMap or Secret update (a symlink swap of the whole directory) the
// same way as an edit, on every filesystem.
var (
	pollEvery = time.Second
	quietFor  = 900 * time.Millisecond
)

// fileState is what a look at a file saw: where its symlinks lead, and
// what is there.
type fileState struct {
	target  string
	size    int64
	mtime   time.Time
	ino     uint64
	missing bool
}

func stateOf(path string) fileState {
	var st fileState
	st.target, _ = filepath.EvalSymlinks(path)
	fi, err := os.Stat(path)
	if err != nil {
		st.missing = true
		return st
	}
	st.size, st.mtime = fi.Size(), fi.ModTime()
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = uint64(sys.Ino)
	}
	return st
}

// watcher reports, on changed, that the watched files changed.
type watcher struct {
	paths        atomic.Pointer[[]string]
	changed      chan struct{}
	every, quiet time.Duration
}

func newWatcher(paths []string) *watcher {
	w := &watcher{changed: make(chan struct{}, 1), every: pollEvery, quiet: quietFor}
	w.watch(paths)
	return w
}

// watch replaces the files watched (after a reload: the new
// configuration may name others).
func (w *watcher) watch(paths []string) {
	slices.Sort(paths)
	paths = slices.Compact(paths)
	w.paths.Store(&paths)
}

func (w *watcher) run(ctx context.Context) {
	seen := map[string]fileState{}
	for _, p := range *w.paths.Load() {
		seen[p] = stateOf(p)
	}
	var pending time.Time // when the last change of a burst was seen
	tick := time.NewTicker(w.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for _, p := range *w.paths.Load() {
				st := stateOf(p)
				if old, ok := seen[p]; !ok || old != st {
					seen[p] = st
					if ok {
						pending = now
					}
				}
			}
			if !pending.IsZero() && now.Sub(pending) >= w.quiet {
				pending = time.Time{}
				select {
				case w.changed <- struct{}{}:
				default: // a reload is waiting already
				}
			}
		}
	}
}

// watchedFiles are the configuration file and the files it names.
func watchedFiles(path string, cfg *config.Config) []string {
	return append([]string{path}, cfg.Files()...)
}

// reloader reloads the running proxy from the configuration file.
type reloader struct {
	path    string
	log     *slog.Logger
	level   *slog.LevelVar
	p       *proxy.Proxy
	watch   *watcher
	bridges *bridgeServers
}

// reload loads the file, and on success swaps it in; on any problem the
// running configuration stays, and the problems go to the log.
func (rl *reloader) reload(why string) {
	cfg, err := config.Load(rl.path)
	if err != nil {
		rl.p.ReloadFailed()
		rl.log.Error("reload refused: the configuration is not valid; the running one stays", "why", why, "err", err)
		return
	}
	restart, err := rl.p.Reload(cfg)
	if err != nil {
		rl.log.Error("reload refused: the new configuration could not be built; the running one stays", "why", why, "err", err)
		return
	}
	for _, k := range restart {
		rl.log.Warn("reload: this setting needs a restart; it keeps its running value", "key", k)
	}
	rl.level.Set(logLevel(cfg.Log))
	rl.watch.watch(watchedFiles(rl.path, cfg))
	if err := rl.bridges.sync(rl.p); err != nil {
		rl.log.Error("reload: a Memos bridge listener could not start", "err", err)
	}
	rl.log.Info("configuration reloaded", "why", why, "routes", len(cfg.RouteList()))
}

// bridgeServers serve the Memos bridges of the live configuration, one
// listener per bridge_listen, each answered by the bridge serving now.
type bridgeServers struct {
	log  *slog.Logger
	mu   sync.Mutex
	srvs map[string]*http.Server
}

// sync starts a listener for every bridge address new to the live
// configuration and stops those no bridge uses any more.
func (b *bridgeServers) sync(p *proxy.Proxy) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srvs == nil {
		b.srvs = map[string]*http.Server{}
	}
	want := map[string]bool{}
	var errs []error
	for _, br := range memos.Bridges(p.Integrations()) {
		addr := br.Listen()
		want[addr] = true
		if b.srvs[addr] != nil {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		srv := proxy.NewServer(addr, bridgeAt(p, addr), b.log)
		b.srvs[addr] = srv
		go srv.Serve(ln)
	}
	for addr, srv := range b.srvs {
		if !want[addr] {
			delete(b.srvs, addr)
			go srv.Shutdown(context.Background())
		}
	}
	return errors.Join(errs...)
}

func (b *bridgeServers) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, srv := range b.srvs {
		srv.Close()
	}
}

// bridgeAt answers with the live bridge that listens at addr.
func bridgeAt(p *proxy.Proxy, addr string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, br := range memos.Bridges(p.Integrations()) {
			if br.Listen() == addr {
				br.Handler().ServeHTTP(w, r)
				return
			}
		}
		proxy.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	})
}
