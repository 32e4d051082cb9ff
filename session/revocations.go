package session

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// revocations are what the cookie store remembers of ended sessions:
// back-channel logouts (every session of a subject, or the session with
// a provider session id (sid), created before the logout) and sign-outs
// (that one session is over). Entries are kept as long as a session can
// last, and the logout token ids (jti) seen, to refuse replays. In this
// process only: with several replicas, every one must receive the logout.
type revocations struct {
	n    atomic.Int64 // entries, read without the lock on every request
	mu   sync.RWMutex
	byID map[string]int64 // "sub:"+sub or "sid:"+sid → logout time (Unix ms)
	jtis map[string]int64 // → when to forget it (Unix ms)
	keep time.Duration
	// pruned is when old entries were last dropped (Unix ms).
	pruned int64
}

func newRevocations(keep time.Duration) *revocations {
	return &revocations{byID: map[string]int64{}, jtis: map[string]int64{}, keep: keep}
}

// revoked reports whether a logout ended s.
func (v *revocations) revoked(s *Session) bool {
	if v.n.Load() == 0 {
		return false
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	born := s.Born
	if born == 0 {
		born = s.Created * 1000
	}
	if at, ok := v.byID["sub:"+s.Subject]; ok && born <= at {
		return true
	}
	if s.SID != "" {
		if at, ok := v.byID["sid:"+s.SID]; ok && born <= at {
			return true
		}
	}
	_, ended := v.byID[sessionKey(s)]
	return ended
}

// sessionKey names one session: its subject and the millisecond it was
// born.
func sessionKey(s *Session) string {
	return "ses:" + strconv.FormatInt(s.Born, 10) + ":" + s.Subject
}

// end records that the session s was signed out, so that a copy of its
// cookie no longer works here either.
func (v *revocations) end(s *Session, now time.Time) {
	if s.Born == 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.prune(now.UnixMilli())
	v.byID[sessionKey(s)] = now.UnixMilli()
	v.n.Store(int64(len(v.byID)))
}

// prune forgets, at most once a minute, what can no longer matter: logouts
// older than any session can be, and jtis past their time. v.mu is held.
func (v *revocations) prune(t int64) {
	if t-v.pruned < time.Minute.Milliseconds() {
		return
	}
	v.pruned = t
	keep := v.keep.Milliseconds()
	for k, until := range v.jtis {
		if until < t {
			delete(v.jtis, k)
		}
	}
	for k, at := range v.byID {
		if at+keep < t {
			delete(v.byID, k)
		}
	}
}

// add records a logout; it refuses a jti seen before.
func (v *revocations) add(jti, sub, sid string, now time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	t := now.UnixMilli()
	v.prune(t)
	if _, seen := v.jtis[jti]; seen {
		return ErrReplay
	}
	v.jtis[jti] = t + v.keep.Milliseconds()
	if sub != "" {
		v.byID["sub:"+sub] = t
	}
	if sid != "" {
		v.byID["sid:"+sid] = t
	}
	v.n.Store(int64(len(v.byID)))
	return nil
}
