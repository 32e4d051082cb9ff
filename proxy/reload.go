package proxy

import (
	"context"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
)

// shared is what every generation of a Proxy shares: the session store
// (sessions survive every reload), the metrics, the upstream transport
// (its idle connections too), and the generation serving now.
type shared struct {
	opts Options
	gate *signInGate // what anonymous clients may cost the provider
	// bearerGate bounds the introspections of tokens from each client
	// network, as gate does for sign-ins.
	bearerGate *signInGate
	metrics    *metrics
	transport  http.RoundTripper
	live       atomic.Pointer[Proxy]
	mu         sync.Mutex      // one Start or Reload at a time
	started    context.Context // Start's context; nil before Start
}

// Reload builds the generation of cfg (routes, rules, header mappings,
// public paths, pages, the provider client, the integrations) while the
// current one serves, and only when all of it is built swaps it in, at
// once: every request runs wholly on the old generation or on the new.
// Requests in flight, WebSocket connections and event streams finish on
// the generation they started on; sessions, the store and its
// connections, the metrics and the upstream connections are kept; the
// provider's discovery is kept unless the issuer changed; session secrets
// change in place (the first writes, every one opens).
//
// Settings a running process cannot change (restartOnly) keep their
// running values; Reload names those cfg changed, and applies the rest.
// An error changes nothing. Every call counts in
// oidc_proxy_config_reloads_total.
func (p *Proxy) Reload(cfg *config.Config) (needRestart []string, err error) {
	sh := p.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	prev := sh.live.Load()
	needRestart = keepRestartOnly(prev.cfg, cfg)
	g, err := sh.build(cfg, prev)
	if err == nil {
		err = g.store.SetSecrets(secretsOf(cfg))
	}
	if err != nil {
		sh.metrics.reloaded(false, time.Now())
		return needRestart, err
	}
	g.oidc.Inherit(prev.oidc) // else g.start discovers anew (a new issuer)
	if sh.started != nil {
		g.start(sh.started)
	}
	sh.live.Store(g)
	if prev.stop != nil {
		prev.stop()
	}
	if prev.oidc != g.oidc {
		prev.oidc.CloseIdleConnections() // its requests in flight finish
	}
	sh.metrics.reloaded(true, time.Now())
	return needRestart, nil
}

// ReloadFailed counts a reload that did not get as far as Reload: a
// configuration that did not load.
func (p *Proxy) ReloadFailed() { p.sh.metrics.reloaded(false, time.Now()) }

// Config is the configuration the proxy serves now.
func (p *Proxy) Config() *config.Config { return p.sh.live.Load().cfg }

// Integrations are the integrations of every route the proxy serves now.
func (p *Proxy) Integrations() []Integration {
	var out []Integration
	for _, rt := range p.sh.live.Load().routes.routes {
		out = append(out, rt.integrations...)
	}
	return out
}

// start runs a generation: its integrations' background work and, unless
// it inherited it, its discovery, until ctx ends or it is replaced.
func (g *Proxy) start(ctx context.Context) {
	g.ctx, g.stop = context.WithCancel(ctx)
	for _, rt := range g.routes.routes {
		for _, in := range rt.integrations {
			in.Start(g.ctx)
		}
	}
	if g.oidc.Provider() == nil {
		g.oidc.Start(g.ctx)
	}
}

func secretsOf(cfg *config.Config) [][]byte {
	var out [][]byte
	for _, s := range cfg.Session.Secret {
		out = append(out, []byte(s))
	}
	return out
}

// restartOnly are the settings a running process keeps: its listeners,
// its public URL (the cookies' names and the callback depend on it), and
// what the session store was opened with.
var restartOnly = []struct {
	key string
	get func(*config.Config) any
	set func(to, from *config.Config)
}{
	{"listen", func(c *config.Config) any { return c.Listen }, func(t, f *config.Config) { t.Listen = f.Listen }},
	{"metrics_listen", func(c *config.Config) any { return c.MetricsListen }, func(t, f *config.Config) { t.MetricsListen = f.MetricsListen }},
	{"external_url", func(c *config.Config) any { return c.ExternalURL }, func(t, f *config.Config) { t.ExternalURL = f.ExternalURL }},
	{"tls", func(c *config.Config) any { return c.TLS }, func(t, f *config.Config) { t.TLS = f.TLS }},
	{"session.cookie_name", func(c *config.Config) any { return c.Session.CookieName }, func(t, f *config.Config) { t.Session.CookieName = f.Session.CookieName }},
	{"session.store", func(c *config.Config) any { return c.Session.Store }, func(t, f *config.Config) { t.Session.Store = f.Session.Store }},
	{"session.redis", func(c *config.Config) any { return c.Session.Redis }, func(t, f *config.Config) { t.Session.Redis = f.Session.Redis }},
	{"session.lifetime", func(c *config.Config) any { return c.Session.Lifetime }, func(t, f *config.Config) { t.Session.Lifetime = f.Session.Lifetime }},
	{"session.idle_timeout", func(c *config.Config) any { return c.Session.IdleTimeout }, func(t, f *config.Config) { t.Session.IdleTimeout = f.Session.IdleTimeout }},
	{"log.format", func(c *config.Config) any { return c.Log.Format }, func(t, f *config.Config) { t.Log.Format = f.Log.Format }},
}

// RestartOnly lists the keys a reload does not change in a running
// process.
func RestartOnly() []string {
	out := make([]string, len(restartOnly))
	for i, k := range restartOnly {
		out[i] = k.key
	}
	return out
}

// keepRestartOnly gives next the running values of the restart-only
// settings and names those it had changed.
func keepRestartOnly(running, next *config.Config) []string {
	var changed []string
	for _, k := range restartOnly {
		if !reflect.DeepEqual(k.get(running), k.get(next)) {
			changed = append(changed, k.key)
			k.set(next, running)
		}
	}
	return changed
}
