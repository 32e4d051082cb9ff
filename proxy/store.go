package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/session"
)

// Sessions live in one of two stores. The cookie store (p.redis == nil)
// keeps the whole session in the browser's cookie. The Redis store keeps
// it in Redis, encrypted with a key in the browser's ticket cookie; every
// replica caches what it read, and drops it when any replica announces a
// change of that session (or when it may have missed announcements).

// newRedisStore builds the Redis store of the configuration.
func newRedisStore(c config.Redis) (*session.RedisStore, error) {
	o := session.RedisOptions{
		Address: c.Address, Addresses: c.Addresses, MasterName: c.MasterName, Cluster: c.Cluster,
		Username: c.Username, Password: c.Password, DB: c.DB, Prefix: c.KeyPrefix, Timeout: c.Timeout,
	}
	if c.TLS {
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if c.CAFile != "" {
			pool, err := rootsWith(c.CAFile, "session.redis.ca_file")
			if err != nil {
				return nil, err
			}
			o.TLS.RootCAs = pool
		}
	}
	return session.NewRedisStore(o)
}

// readSession opens a session cookie's value: the session itself (cookie
// store), or its ticket and then the record it names (Redis store). A
// store that cannot be reached gives session.ErrStoreDown.
func (p *Proxy) readSession(ctx context.Context, raw string) (*session.Session, *session.Ticket, error) {
	payload, err := p.sessions.Decode(p.sessionName, raw)
	if err != nil {
		return nil, nil, err
	}
	if p.redis == nil {
		s, err := session.Unmarshal(payload)
		return s, nil, err
	}
	t, err := session.ParseTicket(payload)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.redisTimeout)
	defer cancel()
	s, err := p.redis.Get(ctx, t)
	return s, &t, err
}

// saveSession writes s into its cookie (cookie store), or into Redis under
// ticket t (a new ticket, set in the cookie, when t is nil). It returns
// the size of the cookie written (0 when none was).
func (p *Proxy) saveSession(ctx context.Context, w http.ResponseWriter, r *http.Request, t *session.Ticket, s *session.Session, now time.Time) (int, error) {
	ttl := time.Unix(s.Expires, 0).Sub(now)
	if p.redis == nil {
		payload, err := s.Marshal()
		if err != nil {
			return 0, err
		}
		return p.sessions.Write(w, r, p.sessionName, payload, ttl)
	}
	fresh := t == nil
	if fresh {
		nt, err := session.NewTicket()
		if err != nil {
			return 0, err
		}
		t = &nt
	}
	keep := ttl
	if p.idle > 0 {
		keep = min(keep, time.Unix(s.LastSeen(), 0).Add(p.idle).Sub(now))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.redisTimeout)
	defer cancel()
	if err := p.redis.Put(ctx, *t, s, keep); err != nil {
		return 0, err
	}
	if !fresh {
		return 0, nil // the ticket in the browser stays the same
	}
	return p.sessions.Write(w, r, p.sessionName, t.Marshal(), ttl)
}

// endStored ends a signed-out session for every copy of its cookie: in
// the Redis store its record goes; with cookies, this process remembers it.
func (p *Proxy) endStored(ctx context.Context, id *identity, now time.Time) {
	if p.redis == nil {
		p.revoked.end(id.session, now)
		return
	}
	p.dropCached(id.name)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.redisTimeout)
	defer cancel()
	if err := p.redis.Delete(ctx, id.name, id.session); err != nil {
		p.log.Error("sign-out: the session store did not delete the session; it lasts until it expires", "err", err, "sub", id.session.Subject)
	}
}

// dropCached forgets the identities cached for the stored session name.
func (p *Proxy) dropCached(name string) {
	p.storeGen.Add(1)
	p.cache.DeleteFunc(func(id *identity) bool { return id.name == name })
}

// watchStore follows the Redis store's announcements until ctx ends.
func (p *Proxy) watchStore(ctx context.Context) {
	p.redis.Watch(ctx, p.dropCached, func(error) {
		p.storeGen.Add(1)
		p.cache.Clear()
		p.metrics.store.Set(1)
		if !p.storeLive.Swap(true) {
			p.log.Info("session store: connected to Redis")
		}
	}, func(err error) {
		p.storeGen.Add(1)
		p.metrics.store.Set(0)
		if p.storeLive.Swap(false) {
			p.log.Warn("session store: lost Redis; sessions are read from it on every request until it is back", "err", err)
		}
	})
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

// refreshShared is refresh for the Redis store: one replica at a time
// spends a session's refresh token (a lock in Redis), and the others take
// its outcome from the record.
func (p *Proxy) refreshShared(ctx context.Context, op *provider, id *identity, now time.Time) (*session.Session, error) {
	name := id.name
	unlock, locked, err := p.redis.Lock(ctx, name, 3*p.idpTimeout+5*time.Second)
	if err != nil {
		return nil, err
	}
	if locked {
		defer unlock()
	} else if err := p.redis.WaitUnlocked(ctx, name); err != nil {
		return nil, err
	}
	cur, err := p.redis.Get(ctx, *id.ticket)
	switch {
	case errors.Is(err, session.ErrNotFound), errors.Is(err, session.ErrInvalid):
		return nil, fmt.Errorf("%w: the session ended meanwhile", errRefreshRefused)
	case err != nil:
		return nil, err
	case cur.RefreshToken != id.session.RefreshToken || now.Unix() < cur.RefreshAt:
		return cur, nil // another request or replica renewed it
	case !locked:
		return nil, errors.New("another replica's refresh did not complete")
	}
	renewed, err := p.refresh(ctx, op, cur, now)
	if errors.Is(err, errRefreshRefused) {
		if derr := p.redis.Delete(ctx, name, cur); derr != nil {
			p.log.Warn("refresh refused, and deleting the session failed", "err", derr)
		}
	}
	if err != nil {
		return nil, err
	}
	if _, err := p.saveSession(ctx, nil, nil, id.ticket, renewed, now); err != nil {
		// The provider rotated the refresh token: this process goes on with
		// the new one, other replicas will find theirs refused.
		p.log.Error("refresh: storing the renewed session failed", "err", err, "sub", renewed.Subject)
	}
	return renewed, nil
}

// logoutStored is a back-channel logout with the Redis store: the token id
// is recorded once for every replica (a replay is refused), then every
// session of sub or sid ends. When the store fails half way, the token id
// is forgotten again so that the provider's retry is not taken for a
// replay.
func (p *Proxy) logoutStored(ctx context.Context, jti, sub, sid string) (int, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*p.redisTimeout)
	defer cancel()
	first, err := p.redis.FirstUse(ctx, jti, 2*maxLogoutTokenAge)
	if err != nil {
		return 0, err
	}
	if !first {
		return 0, errReplay
	}
	n, err := p.redis.Logout(ctx, sub, sid)
	if err != nil {
		p.redis.Forget(ctx, jti)
	}
	return n, err
}
