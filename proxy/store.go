package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/rp"
	"github.com/oidc-proxy/oidc-proxy/session"
)

// openStore builds the session store of the configuration: the only place
// that knows which store runs.
func openStore(cfg *config.Config, secure bool, lifetime time.Duration, p *Proxy) (session.Store, error) {
	base := cfg.Session.CookieName
	if base == "" {
		base = config.DefaultCookieName
	}
	o := session.Options{
		CookieName: base, Secure: secure, Lifetime: lifetime, Idle: cfg.Session.IdleTimeout, Log: p.log,
		Live: func(up bool) {
			if up {
				p.metrics.store.Set(1)
			} else {
				p.metrics.store.Set(0)
			}
		},
		ClientIP: func(r *http.Request) string { // the live generation's trusted proxies
			if live := p.sh.live.Load(); live != nil {
				return live.trusted.clientIP(r)
			}
			return p.trusted.clientIP(r)
		},
		Events: func(kind, op string) {
			switch kind {
			case "failover":
				p.metrics.storeFailovers.Inc()
			case "unconfirmed":
				p.metrics.storeUnconfirmed.WithLabelValues(op).Inc()
			case "stored_late":
				p.metrics.storeRetried.WithLabelValues(op, "stored").Inc()
			case "given_up":
				p.metrics.storeRetried.WithLabelValues(op, "given_up").Inc()
			}
		},
	}
	for _, s := range cfg.Session.Secret {
		o.Secrets = append(o.Secrets, []byte(s))
	}
	if cfg.Session.Store == "redis" {
		c := cfg.Session.Redis
		o.Redis = &session.RedisOptions{
			Address: c.Address, Addresses: c.Addresses, MasterName: c.MasterName, Cluster: c.Cluster,
			Username: c.Username, Password: c.Password, DB: c.DB, Prefix: c.KeyPrefix, Timeout: c.Timeout,
		}
		if c.TLS {
			o.Redis.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
			if c.CAFile != "" {
				pool, err := rp.CertPool(c.CAFile, "session.redis.ca_file")
				if err != nil {
					return nil, err
				}
				o.Redis.TLS.RootCAs = pool
			}
		}
	}
	st, err := session.Open(o)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return st, nil
}

// storeUnavailable answers a request whose session cannot be read because
// the store is down: a clear 503, not a sign-in that would loop.
func (p *Proxy) storeUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	p.metrics.storeErr.Inc()
	// Once every 10 s at most: while Redis is down every request fails.
	now := p.now().Unix()
	if last := p.storeWarned.Load(); now-last >= 10 && p.storeWarned.CompareAndSwap(last, now) {
		p.log.Warn("session store unavailable: answering 503", "err", err, "client", p.trusted.clientIP(r))
	}
	w.Header().Set("Retry-After", "5")
	p.errorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable",
		"Your session cannot be checked right now. Please try again in a moment.")
}

// endSession ends the session of id for every copy of its cookie.
func (p *Proxy) endSession(r *http.Request, id *Identity) {
	err := p.store.End(r.Context(), id.entry, p.now())
	switch {
	case errors.Is(err, session.ErrDeferred):
		// Logged by the store, which refuses the session here already and
		// retries the deletion for the other replicas.
	case err != nil:
		p.log.Error("sign-out: the session store did not delete the session; it lasts until it expires", "err", err, "sub", id.session.Subject)
	}
}
