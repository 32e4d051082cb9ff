package session

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Sharing a session with another host: a browser signed in at one host
// (the proxy's sign-in host) gets a cookie of its own at another host
// that a route serves, for the same session. Share makes the value that
// carries it; the caller keeps that value under a one-time code (Keep)
// for the other host, which redeems it with Adopt. Neither host's cookie
// is ever readable by the other.

// ErrNotShared is a shared value that no longer names a usable session.
var ErrNotShared = errors.New("session: the shared session is over")

// Share is the value that lets another host of this proxy adopt e's
// session. With the Redis store it is e's ticket: both hosts then hold
// one session (one refresh, one sign-out). With the cookie store it is a
// copy of the session without its refresh token, which lasts until the
// original's refresh is due at most: no refresh token is ever spent
// twice, and the copy's claims are never much older than the original's. The
// value is a bearer credential: keep it sealed, briefly, once.
func (c *cookieStore) Share(_ context.Context, e *Entry, now time.Time) ([]byte, error) {
	cp := *e.Session
	if cp.RefreshToken != "" {
		// A refresh that failed (the provider down) leaves RefreshAt past:
		// the copy still gets five minutes.
		cp.RefreshToken = ""
		cp.Expires = min(cp.Expires, max(cp.RefreshAt, now.Unix()+300))
		cp.RefreshAt = 0
	}
	return cp.Marshal()
}

// Adopt writes the browser's session cookie for a value Share made.
func (c *cookieStore) Adopt(ctx context.Context, w http.ResponseWriter, r *http.Request, value []byte, now time.Time) (*Entry, error) {
	s, err := Unmarshal(value)
	if err != nil {
		return nil, err
	}
	if !c.usable(s, now) || c.ended.revoked(s) {
		return nil, ErrNotShared
	}
	if _, err := c.Save(ctx, w, r, nil, s, now); err != nil {
		return nil, err
	}
	return &Entry{Session: s}, nil
}

func (s *redisStore) Share(_ context.Context, e *Entry, _ time.Time) ([]byte, error) {
	if e.ticket == nil {
		return nil, ErrNotShared
	}
	return e.ticket.Marshal(), nil
}

func (s *redisStore) Adopt(ctx context.Context, w http.ResponseWriter, r *http.Request, value []byte, now time.Time) (*Entry, error) {
	t, err := ParseTicket(value)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	sess, err := s.db.Get(ctx, t)
	switch {
	case errors.Is(err, ErrStoreDown):
		return nil, err
	case err != nil:
		return nil, errors.Join(ErrNotShared, err)
	case !s.usable(sess, now):
		return nil, ErrNotShared
	}
	if _, err := s.write(w, r, t.Marshal(), sess, now); err != nil {
		return nil, err
	}
	return &Entry{Session: sess, name: t.Name(), ticket: &t}, nil
}
