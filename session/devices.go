package session

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Devices: what a person and an administrator may see of the sessions the
// Redis store holds, and end. A session's record is encrypted with a key
// only its browser holds, so beside it the store keeps a small card
// (meta:<name>) encrypted with a key derived from the session secret: the
// subject, the user's name, the browser's User-Agent and address at
// sign-in, when it began and ends; and when it was last seen, and from
// where (seen:<name>, written at most once a minute, in the background).
// The cookie store keeps nothing on the server: it lists nothing.

// ErrNoDevices is a store that cannot list or end sessions other than the
// browser's own (the cookie store).
var ErrNoDevices = errors.New("session: this store cannot list or end other sessions (use the Redis store)")

// Device is one session as the devices list shows it.
type Device struct {
	// Name identifies the session's record (not a secret: it opens
	// nothing, and ending it is checked against its subject).
	Name     string `json:"-"`
	Subject  string `json:"sub"`
	User     string `json:"user"`
	Agent    string `json:"ua,omitempty"`
	Addr     string `json:"ip,omitempty"`
	Created  int64  `json:"iat"`
	Expires  int64  `json:"exp"`
	LastSeen int64  `json:"-"` // Unix s; 0: not since sign-in
	SeenFrom string `json:"-"`
}

// Last is when the device was last seen and from where: the last-seen
// note, or the sign-in when there is none yet.
func (d Device) Last() (at int64, addr string) {
	if d.LastSeen == 0 {
		return d.Created, d.Addr
	}
	if d.SeenFrom == "" {
		return d.LastSeen, d.Addr
	}
	return d.LastSeen, d.SeenFrom
}

// seenEvery bounds how often a session's last-seen is written.
const seenEvery = time.Minute

// DeviceFacts are what a sign-in records of the browser.
type DeviceFacts struct{ Agent, Addr string }

// deviceFactsKey carries DeviceFacts in a request's context to Save.
type deviceFactsKey struct{}

// WithDevice is ctx carrying the browser's facts for Save to record.
func WithDevice(ctx context.Context, f DeviceFacts) context.Context {
	return context.WithValue(ctx, deviceFactsKey{}, f)
}

// metaAEAD is the key of the cards, from the session secrets: the first
// seals, every one opens.
func metaAEADs(secrets [][]byte) []cipher.AEAD {
	var out []cipher.AEAD
	for _, s := range secrets {
		k := sha256.Sum256(append([]byte("oidc-proxy device card\x00"), s...))
		block, err := aes.NewCipher(k[:])
		if err != nil {
			continue
		}
		if g, err := cipher.NewGCM(block); err == nil {
			out = append(out, g)
		}
	}
	return out
}

// putCard writes the card of the session name.
func (s *redisStore) putCard(ctx context.Context, name string, d *Device, ttl time.Duration) error {
	aeads := s.cardKeys()
	if len(aeads) == 0 {
		return errors.New("session: no key for device cards")
	}
	plain, err := json.Marshal(d)
	if err != nil {
		return err
	}
	g := aeads[0]
	nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(plain)+g.Overhead())
	rand.Read(nonce)
	key := s.db.key("meta", name)
	return down(s.db.rdb.Set(ctx, key, g.Seal(nonce, nonce, plain, []byte(key)), ttl).Err())
}

func (s *redisStore) cardKeys() []cipher.AEAD {
	s.secretsMu.Lock()
	defer s.secretsMu.Unlock()
	return metaAEADs(s.secrets)
}

func openCard(aeads []cipher.AEAD, key string, b []byte) (*Device, bool) {
	for _, g := range aeads {
		if len(b) < g.NonceSize() {
			return nil, false
		}
		plain, err := g.Open(nil, b[:g.NonceSize()], b[g.NonceSize():], []byte(key))
		if err != nil {
			continue
		}
		var d Device
		if json.Unmarshal(plain, &d) == nil {
			return &d, true
		}
	}
	return nil, false
}

// Devices lists the sessions of subject sub (every session when sub is
// ""), newest first.
func (s *redisStore) Devices(ctx context.Context, sub string) ([]Device, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*s.timeout)
	defer cancel()
	var names []string
	if sub != "" {
		members, err := s.db.rdb.SMembers(ctx, s.db.key("sub", hashed(sub))).Result()
		if err != nil {
			return nil, down(err)
		}
		names = members
	} else {
		// Every card: SCAN on each master of a cluster too.
		err := scanAll(ctx, s.db.rdb, s.db.key("meta", "*"), func(k string) {
			names = append(names, strings.TrimPrefix(k, s.db.key("meta", "")))
		})
		if err != nil {
			return nil, down(err)
		}
	}
	// Three reads a session, all in one round trip (each key on its own:
	// a cluster spreads them over slots, and go-redis splits the pipeline).
	type reads struct {
		card   *redis.StringCmd
		exists *redis.IntCmd
		seen   *redis.StringCmd
	}
	rs := make([]reads, len(names))
	if _, err := s.db.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, name := range names {
			rs[i] = reads{p.Get(ctx, s.db.key("meta", name)), p.Exists(ctx, s.db.key("s", name)), p.Get(ctx, s.db.key("seen", name))}
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, down(err)
	}
	for _, r := range rs { // a missing key is no error; anything else is
		for _, err := range []error{r.card.Err(), r.exists.Err(), r.seen.Err()} {
			if err != nil && !errors.Is(err, redis.Nil) {
				return nil, down(err)
			}
		}
	}
	aeads := s.cardKeys()
	var out []Device
	for i, name := range names {
		b, err := rs[i].card.Bytes()
		if err != nil {
			continue // ended, expired, or signed in before cards existed
		}
		d, ok := openCard(aeads, s.db.key("meta", name), b)
		if !ok || (sub != "" && d.Subject != sub) || rs[i].exists.Val() == 0 {
			continue // not this person's, or its session ended: the card goes with it soon
		}
		d.Name = name
		if v, err := rs[i].seen.Result(); err == nil {
			at, from, _ := strings.Cut(v, " ")
			d.LastSeen, _ = strconv.ParseInt(at, 10, 64)
			d.SeenFrom = from
		}
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b Device) int { return int(b.Created - a.Created) })
	return out, nil
}

func scanAll(ctx context.Context, rdb redis.UniversalClient, match string, f func(string)) error {
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, match, 500).Iterator()
		for iter.Next(ctx) {
			f(iter.Val())
		}
		return iter.Err()
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex // the masters are scanned at once
		g := f
		f = func(k string) { mu.Lock(); defer mu.Unlock(); g(k) }
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return scan(ctx, m)
		})
	case *redis.Client:
		return scan(ctx, c)
	}
	return fmt.Errorf("session: cannot scan a %T", rdb)
}

// EndDevice ends the session name of subject sub (any subject when sub
// is ""), on every replica. It reports false when there is no such
// session of that subject.
func (s *redisStore) EndDevice(ctx context.Context, sub, name string) (bool, error) {
	ds, err := s.Devices(ctx, sub)
	if err != nil {
		return false, err
	}
	for _, d := range ds {
		if d.Name == name {
			s.dropCached(name)
			err := s.withRetries(ctx, func(ctx context.Context) error {
				return s.db.Delete(ctx, name, &Session{Subject: d.Subject})
			})
			return true, err
		}
	}
	return false, nil
}

// EndSubject ends every session of subject sub on every replica, and
// reports how many there were.
func (s *redisStore) EndSubject(ctx context.Context, sub string) (int, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 4*s.timeout)
	defer cancel()
	return s.db.Logout(ctx, sub, "")
}

// Seen notes that e's session was used now from r, and writes it at most
// once a minute, in the background: the request never waits for it, and
// a cached request costs one atomic load.
func (s *redisStore) Seen(e *Entry, r *http.Request, now time.Time) {
	last := e.seen.Load()
	if now.Unix()-last < int64(seenEvery/time.Second) || !e.seen.CompareAndSwap(last, now.Unix()) {
		return
	}
	if last == 0 && now.Unix()-e.Session.Created < int64(seenEvery/time.Second) {
		return // just signed in: the card says so
	}
	addr := ""
	if s.clientIP != nil {
		addr = s.clientIP(r)
	}
	select {
	case s.seen <- seenNote{name: e.name, at: now.Unix(), addr: addr, until: e.Session.Expires}:
	default: // the writer is behind (Redis slow): skip this one
	}
}

type seenNote struct {
	name  string
	at    int64
	addr  string
	until int64
}

// writeSeen writes the notes Seen queued until the store closes.
func (s *redisStore) writeSeen() {
	for {
		select {
		case <-s.bg.Done():
			return
		case n := <-s.seen:
			ctx, cancel := context.WithTimeout(s.bg, s.timeout)
			ttl := time.Until(time.Unix(n.until, 0))
			if ttl > 0 {
				s.db.rdb.Set(ctx, s.db.key("seen", n.name), strconv.FormatInt(n.at, 10)+" "+n.addr, ttl)
			}
			cancel()
		}
	}
}
