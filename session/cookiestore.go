package session

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"sync"
	"time"
)

// cookieStore keeps the whole session in the browser's cookie. Entries
// are cached by cookie value, so a browser's later requests cost a map
// lookup. Sign-outs and back-channel logouts are remembered in this
// process only.
type cookieStore struct {
	*base
	ended *revocations
	kept  *memKept
}

func (c *cookieStore) Load(w http.ResponseWriter, r *http.Request, now time.Time) (*Entry, error) {
	raw, err := c.codec().Value(r, c.name)
	if errors.Is(err, ErrNoCookie) {
		return nil, nil
	}
	e, ok := c.cache.Get(raw, now)
	if !ok {
		var s *Session
		payload, err := c.codec().Decode(c.name, raw)
		if err == nil {
			s, err = Unmarshal(payload)
		}
		if err != nil {
			c.Clear(w, r)
			return nil, err
		}
		if c.usable(s, now) {
			e = &Entry{Session: s, raw: raw}
			c.cache.Put(raw, e, c.cacheUntil(s))
		}
	}
	if e != nil && c.ended.revoked(e.Session) {
		c.cache.Delete(raw)
		e = nil
	}
	if e == nil {
		c.Clear(w, r)
	}
	return e, nil
}

func (c *cookieStore) Save(_ context.Context, w http.ResponseWriter, r *http.Request, _ *Entry, s *Session, now time.Time) (int, error) {
	payload, err := s.Marshal()
	if err != nil {
		return 0, err
	}
	return c.write(w, r, payload, s, now)
}

func (c *cookieStore) Refresh(ctx context.Context, w http.ResponseWriter, r *http.Request, e *Entry, now time.Time, spend Spend) (*Entry, error) {
	renewed, err := c.refresh(w, r, e, now, func() (*Session, error) { return spend(ctx, e.Session) })
	if err != nil {
		return nil, err
	}
	// Every request that shared the flight writes the renewed cookie: each
	// may be the one whose answer the browser keeps.
	if _, err := c.Save(ctx, w, r, e, renewed, now); err != nil {
		c.log.Warn("refresh: writing the renewed cookie failed", "sub", renewed.Subject, "err", err)
	}
	return &Entry{Session: renewed}, nil
}

func (c *cookieStore) End(_ context.Context, e *Entry, now time.Time) error {
	c.ended.end(e.Session, now)
	return nil
}

func (c *cookieStore) Logout(_ context.Context, jti, sub, sid string, now time.Time) (int, error) {
	return -1, c.ended.add(jti, sub, sid, now)
}

func (c *cookieStore) Keep(_ context.Context, kind, secret string, value []byte, ttl time.Duration) error {
	return c.kept.put(kind, secret, value, time.Now().Add(ttl))
}

func (c *cookieStore) Take(_ context.Context, kind, secret string, once bool) ([]byte, error) {
	return c.kept.get(kind, secret, once, time.Now())
}

func (c *cookieStore) Once(_ context.Context, kind, secret string, ttl time.Duration) error {
	return c.kept.once(kind, secret, time.Now(), ttl)
}

func (c *cookieStore) Run(context.Context)                   {}
func (c *cookieStore) Check(context.Context) (string, error) { return "", nil }
func (c *cookieStore) Close() error                          { return nil }

// maxKept bounds the values a cookie store keeps for one kind.
const maxKept = 10000

// memKept are values kept under a secret in this process, bounded in
// number, each under the secret's SHA-256.
type memKept struct {
	mu sync.Mutex
	m  map[string]map[[32]byte]keptValue // by kind
}

type keptValue struct {
	v     []byte
	until time.Time
}

func newMemKept() *memKept { return &memKept{m: map[string]map[[32]byte]keptValue{}} }

func (s *memKept) put(kind, secret string, v []byte, until time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(kind, sha256.Sum256([]byte(secret)), v, until)
}

// once puts an empty value under secret unless one is there, unexpired.
func (s *memKept) once(kind, secret string, now time.Time, ttl time.Duration) error {
	key := sha256.Sum256([]byte(secret))
	s.mu.Lock()
	defer s.mu.Unlock()
	if kv, ok := s.m[kind][key]; ok && now.Before(kv.until) {
		return ErrReplay
	}
	return s.putLocked(kind, key, nil, now.Add(ttl))
}

func (s *memKept) putLocked(kind string, key [32]byte, v []byte, until time.Time) error {
	m := s.m[kind]
	if m == nil {
		m = map[[32]byte]keptValue{}
		s.m[kind] = m
	}
	if len(m) >= maxKept/2 {
		now := time.Now()
		for k, old := range m {
			if !now.Before(old.until) {
				delete(m, k)
			}
		}
	}
	if len(m) >= maxKept {
		return errors.New("session: too many values outstanding")
	}
	m[key] = keptValue{v, until}
	return nil
}

func (s *memKept) get(kind, secret string, once bool, now time.Time) ([]byte, error) {
	key := sha256.Sum256([]byte(secret))
	s.mu.Lock()
	defer s.mu.Unlock()
	kv, ok := s.m[kind][key]
	if once {
		delete(s.m[kind], key)
	}
	if !ok || !now.Before(kv.until) {
		return nil, ErrNotFound
	}
	return kv.v, nil
}

// EndUnread has nothing to do: the cookie store reads every cookie
// without a server, so a sign-out never misses one.
func (c *cookieStore) EndUnread(context.Context, *http.Request, time.Time) error { return nil }

// Devices, EndDevice and EndSubject: the cookie store keeps nothing on
// the server to list or end.
func (c *cookieStore) Devices(context.Context, string) ([]Device, error) { return nil, ErrNoDevices }
func (c *cookieStore) EndDevice(context.Context, string, string) (bool, error) {
	return false, ErrNoDevices
}
func (c *cookieStore) EndSubject(context.Context, string) (int, error) { return 0, ErrNoDevices }

// Seen has nothing to write.
func (c *cookieStore) Seen(*Entry, *http.Request, time.Time) {}
