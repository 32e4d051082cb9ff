package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// redisStore keeps sessions in Redis; the browser holds a ticket (the
// record's id and key) in its cookie. Every replica caches the entries it
// read and drops one when any replica announces a change of its record;
// while a replica does not follow the announcements (not yet subscribed,
// or the connection lost) it reads Redis on every request, and a
// generation counter keeps a read that raced a change out of the cache.
type redisStore struct {
	*base
	db      *redisDB
	timeout time.Duration
	live    func(bool)
	event   Events

	following atomic.Bool  // announcements are followed: the cache is good
	gen       atomic.Int64 // counts changes, so a read racing one is not cached

	// Writes Redis could not confirm, kept in this process and retried in
	// the background (retry.go): renewed sessions by record name, and
	// sessions signed out by record name (until when to refuse them).
	bg      context.Context
	stop    context.CancelFunc
	retries sync.WaitGroup
	pmu     sync.Mutex
	renewed map[string]*Session
	ended   map[string]int64

	seen     chan seenNote // last-seen notes for the background writer
	clientIP func(*http.Request) string
}

func (s *redisStore) Load(w http.ResponseWriter, r *http.Request, now time.Time) (*Entry, error) {
	raw, err := s.codec().Value(r, s.name)
	if errors.Is(err, ErrNoCookie) {
		return nil, nil
	}
	e, ok := s.cache.Get(raw, now)
	if ok && !s.following.Load() {
		e, ok = nil, false // changes may go unannounced: ask Redis
	}
	if !ok {
		gen := s.gen.Load()
		sess, t, err := s.read(r.Context(), raw)
		if errors.Is(err, ErrStoreDown) {
			return nil, err
		}
		if err != nil {
			s.Clear(w, r)
			return nil, err
		}
		if s.usable(sess, now) && !s.isEnded(t.Name(), now) {
			e = &Entry{Session: sess, name: t.Name(), ticket: &t, raw: raw}
			if s.gen.Load() == gen { // nothing changed while reading
				s.cache.Put(raw, e, s.cacheUntil(sess))
			}
		}
	}
	if e == nil {
		s.Clear(w, r)
	}
	return e, nil
}

// read opens a cookie value: its ticket, then the record it names.
func (s *redisStore) read(ctx context.Context, raw string) (*Session, Ticket, error) {
	payload, err := s.codec().Decode(s.name, raw)
	if err != nil {
		return nil, Ticket{}, err
	}
	t, err := ParseTicket(payload)
	if err != nil {
		return nil, t, err
	}
	if s.isEnded(t.Name(), time.Now()) {
		return nil, t, ErrNotFound // signed out here, Redis not told yet
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	sess, err := s.db.Get(ctx, t)
	if p := s.pendingRenewal(t.Name()); p != nil && (err == nil || errors.Is(err, ErrStoreDown)) {
		// Renewed here, not yet stored: Redis holds the refresh token the
		// provider has already replaced.
		return p, t, nil
	}
	return sess, t, err
}

// Save writes s into Redis under e's ticket, or under a new ticket that
// goes into the browser's cookie when e is nil.
func (s *redisStore) Save(ctx context.Context, w http.ResponseWriter, r *http.Request, e *Entry, sess *Session, now time.Time) (int, error) {
	var t Ticket
	if e != nil && e.ticket != nil {
		t = *e.ticket
	} else {
		var err error
		if t, err = NewTicket(); err != nil {
			return 0, err
		}
	}
	renew := e != nil && e.ticket != nil
	if err := s.withRetries(ctx, func(ctx context.Context) error { return s.put(ctx, t, sess, now, renew) }); err != nil {
		return 0, err
	}
	if renew {
		return 0, nil // the ticket in the browser stays the same
	}
	f, _ := ctx.Value(deviceFactsKey{}).(DeviceFacts)
	d := &Device{Subject: sess.Subject, User: sess.UserName(), Agent: truncateString(f.Agent, 256), Addr: f.Addr, Created: sess.Created, Expires: sess.Expires}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	if err := s.putCard(cctx, t.Name(), d, time.Unix(sess.Expires, 0).Sub(now)); err != nil {
		s.log.Warn("session store: the device card was not written; the devices list will miss this session", "err", err)
	}
	cancel()
	return s.write(w, r, t.Marshal(), sess, now)
}

// put writes the record of t until sess expires or idles out; a renewal
// only replaces a record that still exists.
func (s *redisStore) put(ctx context.Context, t Ticket, sess *Session, now time.Time, renew bool) error {
	keep := time.Unix(sess.Expires, 0).Sub(now)
	if s.idle > 0 {
		keep = min(keep, time.Unix(sess.LastSeen(), 0).Add(s.idle).Sub(now))
	}
	return s.db.Put(ctx, t, sess, keep, renew)
}

func (s *redisStore) Refresh(ctx context.Context, w http.ResponseWriter, r *http.Request, e *Entry, now time.Time, spend Spend) (*Entry, error) {
	renewed, err := s.refresh(w, r, e, now, func() (*Session, error) { return s.refreshShared(ctx, e, now, spend) })
	if err != nil {
		return nil, err
	}
	if e.raw != "" {
		s.cache.Delete(e.raw) // the next request reads the renewed record
	}
	return &Entry{Session: renewed, name: e.name, ticket: e.ticket}, nil
}

// refreshShared is one replica's flight: one replica at a time spends a
// session's refresh token (a lock in Redis), and the others take its
// outcome from the record. The lock and the renewed record are written
// only when confirmed (failover.go): a lock on a demoted master would let
// two replicas spend the same token, and a renewed record lost in a
// failover would leave the spent token for the next refresh, which the
// provider punishes by revoking the session.
func (s *redisStore) refreshShared(ctx context.Context, e *Entry, now time.Time, spend Spend) (*Session, error) {
	name := e.name
	ttl := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		ttl = time.Until(d) + 5*time.Second
	}
	ttl += keepRenewedFor // the holder may keep it while it retries the write
	var lockFree func(context.Context) error
	locked := false
	err := s.withRetries(ctx, func(ctx context.Context) (err error) {
		lockFree, locked, err = s.db.Lock(ctx, name, ttl)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !locked {
		wctx, cancel := context.WithTimeout(ctx, s.timeout)
		err := s.db.WaitUnlocked(wctx, name)
		cancel()
		if err != nil {
			// No request waits longer than the store's timeout: this one
			// goes on with the session as it is.
			return nil, fmt.Errorf("%w: another request or replica is refreshing this session", ErrRefreshBusy)
		}
	}
	gctx, cancel := context.WithTimeout(ctx, s.timeout)
	cur, err := s.db.Get(gctx, *e.ticket)
	cancel()
	unlock := func() { s.unlock(name, lockFree, time.Now().Add(ttl)) }
	release := func() {
		if locked {
			unlock()
		}
	}
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalid):
		release()
		return nil, fmt.Errorf("%w: the session ended meanwhile", ErrRefreshRefused)
	case err != nil:
		release()
		return nil, err
	case cur.RefreshToken != e.Session.RefreshToken || now.Unix() < cur.RefreshAt:
		release()
		return cur, nil // another request or replica renewed it
	case !locked:
		return nil, fmt.Errorf("%w: another replica's refresh did not complete", ErrRefreshBusy)
	}
	renewed, err := spend(ctx, cur)
	if errors.Is(err, ErrRefreshRefused) {
		if derr := s.withRetries(ctx, func(ctx context.Context) error { return s.db.Delete(ctx, name, cur) }); derr != nil {
			s.log.Warn("refresh refused, and deleting the session failed", "err", derr)
		}
	}
	if err != nil {
		release()
		return nil, err
	}
	err = s.withRetries(ctx, func(ctx context.Context) error { return s.put(ctx, *e.ticket, renewed, now, true) })
	switch {
	case err == nil:
		release()
		return renewed, nil
	case errors.Is(err, ErrNotFound):
		release() // signed out meanwhile, on some replica: it stays so
		return nil, fmt.Errorf("%w: the session ended while it was refreshed", ErrRefreshRefused)
	}
	// The provider has rotated the refresh token and Redis could not
	// confirm the new one. This process keeps it, serves it, and writes
	// it as soon as Redis takes it; the lock stays taken meanwhile, so
	// that no replica spends the replaced token.
	s.keepRenewed(name, *e.ticket, renewed, now, unlock, err)
	return renewed, nil
}

// ErrRefreshBusy is a refresh this request did not wait for: another
// request or replica holds the session's refresh. The session is served
// as it is.
var ErrRefreshBusy = errors.New("session: the session is being refreshed elsewhere")

func (s *redisStore) End(ctx context.Context, e *Entry, now time.Time) error {
	s.dropCached(e.name)
	err := s.withRetries(ctx, func(ctx context.Context) error { return s.db.Delete(ctx, e.name, e.Session) })
	if err == nil || !errors.Is(err, ErrStoreDown) {
		return err
	}
	s.keepEnded(e.name, e.Session, e.Session.Expires, now, err)
	return fmt.Errorf("%w: %w", ErrDeferred, err)
}

// EndUnread ends the session of r's cookie by its record's name, which
// the ticket holds: Redis could not be read, and a sign-out must not
// wait for it.
func (s *redisStore) EndUnread(ctx context.Context, r *http.Request, now time.Time) error {
	raw, err := s.codec().Value(r, s.name)
	if err != nil {
		return nil // no cookie: nothing to end
	}
	payload, err := s.codec().Decode(s.name, raw)
	if err != nil {
		return nil // not a cookie of ours: nothing to end
	}
	t, err := ParseTicket(payload)
	if err != nil {
		return nil
	}
	name := t.Name()
	s.dropCached(name)
	err = s.withRetries(ctx, func(ctx context.Context) error { return s.db.Delete(ctx, name, nil) })
	if err == nil || !errors.Is(err, ErrStoreDown) {
		return err
	}
	s.keepEnded(name, nil, now.Add(s.copts.MaxAge).Unix(), now, err)
	return fmt.Errorf("%w: %w", ErrDeferred, err)
}

// jtiRetention is how long a logout token id is remembered: twice the age
// past which the proxy refuses a logout token anyway.
const jtiRetention = 20 * time.Minute

// Logout records the token id once for every replica (a replay is
// refused), then ends every session of sub or sid. When the store fails
// half way, the token id is forgotten again so that the provider's retry
// is not taken for a replay.
func (s *redisStore) Logout(ctx context.Context, jti, sub, sid string, _ time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*s.timeout)
	defer cancel()
	first, err := s.db.FirstUse(ctx, jti, jtiRetention)
	if err != nil {
		return 0, err
	}
	if !first {
		return 0, ErrReplay
	}
	n, err := s.db.Logout(ctx, sub, sid)
	if err != nil {
		s.db.Forget(ctx, jti)
	}
	return n, err
}

func (s *redisStore) Keep(ctx context.Context, kind, secret string, value []byte, ttl time.Duration) error {
	return s.withRetries(ctx, func(ctx context.Context) error { return s.db.PutSealed(ctx, kind, secret, value, ttl) })
}

func (s *redisStore) Take(ctx context.Context, kind, secret string, once bool) ([]byte, error) {
	var v []byte
	err := s.withRetries(ctx, func(ctx context.Context) (err error) {
		v, err = s.db.GetSealed(ctx, kind, secret, once)
		return err
	})
	if errors.Is(err, ErrInvalid) {
		return nil, ErrNotFound
	}
	return v, err
}

func (s *redisStore) Once(ctx context.Context, kind, secret string, ttl time.Duration) error {
	return s.withRetries(ctx, func(ctx context.Context) error { return s.db.PutOnce(ctx, kind, secret, ttl) })
}

// dropCached forgets the entries cached for the record name.
func (s *redisStore) dropCached(name string) {
	s.gen.Add(1)
	s.cache.DeleteFunc(func(e *Entry) bool { return e.name == name })
}

// Run follows the announcements until ctx ends.
func (s *redisStore) Run(ctx context.Context) {
	s.db.Watch(ctx, s.dropCached, func(error) {
		s.gen.Add(1)
		s.cache.Clear()
		s.refreshes.forgetFailures() // an outage's errors are not reported after it
		s.live(true)
		if !s.following.Swap(true) {
			s.log.Info("session store: connected to Redis")
		}
	}, func(err error) {
		s.gen.Add(1)
		s.live(false)
		if s.following.Swap(false) {
			s.log.Warn("session store: lost Redis; sessions are read from it on every request until it is back", "err", err)
		}
	}, func(addr string) {
		s.log.Warn("session store: the sentinels named a new Redis master; following it", "master", addr)
	})
}

func (s *redisStore) Check(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		return "", err
	}
	return "session store: Redis answers", nil
}

func (s *redisStore) Close() error {
	s.stop()
	s.retries.Wait()
	return s.db.Close()
}

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
