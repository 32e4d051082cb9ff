package session

import (
	"context"
	"errors"
	"time"
)

// Retrying what Redis could not take or confirm (a failover, an outage).
//
// A request retries its write for at most the store's timeout; what it
// cannot give up on then is kept in this process and retried in the
// background, never reported as stored before it is:
//
//   - a renewed session (the provider has already rotated the refresh
//     token): this replica serves it, and holds the session's refresh lock
//     so that no replica spends the replaced token, for keepRenewedFor;
//   - a sign-out: this replica refuses the session at once, and the other
//     replicas as soon as Redis takes the deletion (retried until the
//     session would have expired anyway).

// ErrDeferred is a write Redis could not take or confirm in time, kept
// in this process and retried in the background.
var ErrDeferred = errors.New("session: the store could not confirm the write; it is retried in the background")

// keepRenewedFor bounds how long a renewed session that Redis cannot
// take is kept and retried (and its refresh lock held).
const keepRenewedFor = 30 * time.Second

// withRetries runs write until it succeeds, fails for a reason other than
// the store, or the store's timeout has passed since the first try: no
// request waits longer on a write.
func (s *redisStore) withRetries(ctx context.Context, write func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	delay := 50 * time.Millisecond
	for {
		err := write(ctx)
		if err == nil || !errors.Is(err, ErrStoreDown) {
			return err
		}
		if d, _ := ctx.Deadline(); time.Until(d) < delay+50*time.Millisecond {
			return err
		}
		sleep(ctx, delay)
		delay = min(delay*2, 400*time.Millisecond)
	}
}

// background retries write until it succeeds or until, then calls done
// with the last error (nil: stored). It stops with the store.
func (s *redisStore) background(until time.Time, write func(ctx context.Context) error, done func(tries int, err error)) {
	s.retries.Add(1)
	go func() {
		defer s.retries.Done()
		delay := 200 * time.Millisecond
		for tries := 1; ; tries++ {
			ctx, cancel := context.WithTimeout(s.bg, s.timeout)
			err := write(ctx)
			cancel()
			if s.bg.Err() != nil {
				return // the store closes: the process stops
			}
			if err == nil || !errors.Is(err, ErrStoreDown) || time.Now().Add(delay).After(until) {
				done(tries, err)
				return
			}
			sleep(s.bg, delay)
			delay = min(delay*2, 2*time.Second)
		}
	}()
}

// keepRenewed keeps renewed (the session of record name, ticket t) in
// this process and writes it in the background; unlock gives back the
// session's refresh lock once it is stored (or given up).
func (s *redisStore) keepRenewed(name string, t Ticket, renewed *Session, now time.Time, unlock func(), cause error) {
	s.pmu.Lock()
	s.renewed[name] = renewed
	s.pmu.Unlock()
	s.dropCached(name) // reads now find the renewed one
	s.event("unconfirmed", "refresh")
	s.log.Warn("refresh: Redis did not take the renewed session; this replica keeps it and writes it as soon as Redis takes it",
		"err", cause, "sub", renewed.Subject)
	s.background(time.Now().Add(keepRenewedFor-2*time.Second), func(ctx context.Context) error {
		return s.put(ctx, t, renewed, now, true)
	}, func(tries int, err error) {
		s.pmu.Lock()
		if s.renewed[name] == renewed {
			delete(s.renewed, name)
		}
		s.pmu.Unlock()
		s.dropCached(name)
		unlock()
		switch {
		case err == nil:
			s.event("stored_late", "refresh")
			s.log.Info("refresh: the renewed session is stored now", "tries", tries, "sub", renewed.Subject)
		case errors.Is(err, ErrNotFound):
			s.log.Info("refresh: the session was signed out before the renewed one could be stored", "sub", renewed.Subject)
		default:
			s.event("given_up", "refresh")
			s.log.Error("refresh: the renewed session could not be stored; the provider will refuse the session's next refresh and the user signs in again",
				"tries", tries, "err", err, "sub", renewed.Subject)
		}
	})
}

// unlock gives back a session's refresh lock; when Redis does not answer
// (the store failed half way through a refresh), it keeps trying in the
// background until the lock would have expired anyway, so that the
// session's next refresh is not held back by a lock nobody holds.
func (s *redisStore) unlock(name string, free func(context.Context) error, until time.Time) {
	ctx, cancel := context.WithTimeout(s.bg, s.timeout)
	err := free(ctx)
	cancel()
	if err == nil || !errors.Is(err, ErrStoreDown) {
		return
	}
	s.background(until, free, func(tries int, err error) {
		if err != nil {
			s.log.Warn("refresh: the session's refresh lock could not be given back; it expires by itself", "err", err)
		}
	})
}

// pendingRenewal is the renewed session of record name that Redis has
// not taken yet, or nil.
func (s *redisStore) pendingRenewal(name string) *Session {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return s.renewed[name]
}

// keepEnded makes this replica refuse the session of record name at once
// and deletes its record in the background, until it would have expired
// (until, Unix seconds). sess, when known, also leaves its indexes.
func (s *redisStore) keepEnded(name string, sess *Session, until int64, now time.Time, cause error) {
	sub := ""
	if sess != nil {
		sub = sess.Subject
	}
	s.pmu.Lock()
	s.ended[name] = until
	delete(s.renewed, name)
	for n, u := range s.ended {
		if u < now.Unix() {
			delete(s.ended, n)
		}
	}
	s.pmu.Unlock()
	s.dropCached(name)
	s.event("unconfirmed", "sign_out")
	s.log.Warn("sign-out: Redis did not take it yet; this replica refuses the session now, and the others once Redis takes the retried deletion",
		"err", cause, "sub", sub)
	s.background(time.Unix(until, 0), func(ctx context.Context) error {
		return s.db.Delete(ctx, name, sess)
	}, func(tries int, err error) {
		if err == nil {
			s.event("stored_late", "sign_out")
			s.log.Info("sign-out: stored now, on every replica", "tries", tries, "sub", sub)
			s.pmu.Lock()
			delete(s.ended, name)
			s.pmu.Unlock()
			return
		}
		s.event("given_up", "sign_out")
		s.log.Error("sign-out: Redis never took it; the session is refused by this replica only, until it expires", "tries", tries, "err", err, "sub", sub)
	})
}

// isEnded reports whether the session of record name was signed out here
// and Redis has not taken it yet.
func (s *redisStore) isEnded(name string, now time.Time) bool {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	until, ok := s.ended[name]
	return ok && now.Unix() <= until
}
