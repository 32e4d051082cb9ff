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
)

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
			return f.s, f.err
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
	if f.err != nil && !errors.Is(f.err, ErrRefreshRefused) {
		f.until = now.Add(refreshBackoff)
	}
	close(f.done)
	return f.s, f.err
}
