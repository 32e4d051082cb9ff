package session

import (
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// Refresh timing.
const (
	// refreshGrace is how long the outcome of a refresh is kept for the
	// requests that still carry the cookie it replaced (a page load fires
	// dozens at once): they get the renewed session instead of spending
	// the rotated refresh token again, which Authelia punishes by revoking
	// the new one too.
	refreshGrace = 2 * time.Minute
	// refreshBackoff is how long a session waits before trying again after
	// a refresh failed for a reason other than a refusal (the provider is
	// down, say).
	refreshBackoff = 30 * time.Second
	// storeBackoff is that wait when the session store failed: the store
	// comes back (a failover takes seconds) long before the provider would.
	storeBackoff = time.Second
)

// Shared is the error of a refresh that another request ran: the request
// that ran it has reported it already.
type Shared struct{ Err error }

func (e *Shared) Error() string { return e.Err.Error() }
func (e *Shared) Unwrap() error { return e.Err }

// IsShared reports whether err is the outcome of another request's
// refresh (see Shared).
func IsShared(err error) bool {
	var s *Shared
	return errors.As(err, &s)
}

// refresher makes sure each refresh token is spent once in this process:
// concurrent requests with the same session wait for one flight and share
// its outcome, and later requests still carrying the old cookie get that
// outcome for refreshGrace.
type refresher struct {
	mu      sync.Mutex
	flights map[[32]byte]*flight
}

type flight struct {
	done  chan struct{}
	s     *Session // the renewed session, or nil
	err   error
	until time.Time // the outcome is served until then
}

func newRefresher() *refresher { return &refresher{flights: map[[32]byte]*flight{}} }

// do runs refresh once per refresh token and returns its shared outcome.
func (r *refresher) do(now time.Time, token string, refresh func() (*Session, error)) (*Session, error) {
	key := sha256.Sum256([]byte(token))
	r.mu.Lock()
	if f, ok := r.flights[key]; ok {
		r.mu.Unlock()
		<-f.done
		if now.Before(f.until) {
			if f.err != nil {
				return f.s, &Shared{f.err}
			}
			return f.s, nil
		}
		r.mu.Lock()
		if r.flights[key] == f {
			delete(r.flights, key)
		}
		r.mu.Unlock()
		return r.do(now, token, refresh)
	}
	f := &flight{done: make(chan struct{})}
	r.flights[key] = f
	if len(r.flights) > 4096 { // drop settled outcomes past their time
		for k, old := range r.flights {
			select {
			case <-old.done:
				if now.After(old.until) {
					delete(r.flights, k)
				}
			default:
			}
		}
	}
	r.mu.Unlock()
	f.s, f.err = refresh()
	f.until = now.Add(refreshGrace)
	switch {
	case f.err == nil, errors.Is(f.err, ErrRefreshRefused):
	case errors.Is(f.err, ErrStoreDown), errors.Is(f.err, ErrRefreshBusy):
		f.until = now.Add(storeBackoff)
	default:
		f.until = now.Add(refreshBackoff)
	}
	close(f.done)
	return f.s, f.err
}

// forgetFailures drops the failed outcomes kept for their backoff: the
// store is back (or a new master took over), and the next request tries
// again instead of being told an error from before.
func (r *refresher) forgetFailures() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, f := range r.flights {
		select {
		case <-f.done:
			if f.err != nil && !errors.Is(f.err, ErrRefreshRefused) {
				delete(r.flights, k)
			}
		default:
		}
	}
}
