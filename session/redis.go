package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrStoreDown is a session store that cannot be reached. The session may
// be perfectly good: the caller must not treat it as signed out.
var ErrStoreDown = errors.New("session: the session store cannot be reached")

// RedisOptions configure a redisDB. One of Address (one server),
// Addresses with MasterName (Sentinel) or Addresses with Cluster is set.
type RedisOptions struct {
	Address    string
	Addresses  []string
	MasterName string
	Cluster    bool
	Username   string
	Password   string
	DB         int
	// TLS, when not nil, is used for every connection.
	TLS *tls.Config
	// Prefix starts every key. Default "oidc-proxy:".
	Prefix string
	// Timeout bounds each command. Default 2s.
	Timeout time.Duration
}

// Events are told what the Redis store saw that an operator should count
// (see Options.Events).
type Events func(kind, op string)

// redisDB keeps sessions in Redis, each encrypted (AES-256-GCM) with
// its ticket's key and bound to its record's name. Beside the records it
// keeps an index of the records by subject and by provider session id
// (both hashed) for back-channel logout, the logout token ids seen, and a
// lock per session for refreshes. Changes are announced on a channel so
// that every replica drops what it cached.
//
// A redisDB is safe for concurrent use.
type redisDB struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	sent    *sentinels // nil without Sentinel
	event   Events
}

// quietRedis silences go-redis's own logger, once, before any client
// exists: it writes to stderr in its own format, a line per failed dial
// while Redis is down. Every failure reaches the caller as an error, and
// the proxy logs those.
var quietRedis sync.Once

type noLogs struct{}

func (noLogs) Printf(context.Context, string, ...any) {}

// newRedisDB connects lazily: it does no I/O until the first command.
func newRedisDB(o RedisOptions) (*redisDB, error) {
	quietRedis.Do(func() { redis.SetLogger(noLogs{}) })
	if o.Prefix == "" {
		o.Prefix = "oidc-proxy:"
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	u := &redis.UniversalOptions{
		Addrs:           o.Addresses,
		MasterName:      o.MasterName,
		IsClusterMode:   o.Cluster,
		Username:        o.Username,
		Password:        o.Password,
		DB:              o.DB,
		TLSConfig:       o.TLS,
		DialTimeout:     o.Timeout,
		ReadTimeout:     o.Timeout,
		WriteTimeout:    o.Timeout,
		MaxRetries:      1,
		DisableIdentity: true,
		Protocol:        2,
	}
	if o.Address != "" {
		u.Addrs = []string{o.Address}
	}
	if len(u.Addrs) == 0 {
		return nil, errors.New("session: redis: no address")
	}
	db := &redisDB{rdb: redis.NewUniversalClient(u), prefix: o.Prefix, timeout: o.Timeout, event: func(string, string) {}}
	if o.MasterName != "" && !o.Cluster {
		db.sent = newSentinels(o, o.Timeout)
	}
	return db, nil
}

// Close closes the connections.
func (s *redisDB) Close() error {
	if s.sent != nil {
		s.sent.Close()
	}
	return s.rdb.Close()
}

func (s *redisDB) key(kind, name string) string { return s.prefix + kind + ":" + name }

func (s *redisDB) channel() string { return s.prefix + "changed" }

// down wraps a Redis failure as ErrStoreDown.
func down(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrStoreDown, err)
}

// Ping reports whether Redis answers.
func (s *redisDB) Ping(ctx context.Context) error {
	return down(s.rdb.Ping(ctx).Err())
}

// Get reads and decrypts t's session. A record that is missing (ended,
// expired) gives ErrNotFound; one that does not open with t's key gives
// ErrInvalid; Redis failing gives ErrStoreDown.
func (s *redisDB) Get(ctx context.Context, t Ticket) (*Session, error) {
	name := t.Name()
	b, err := s.rdb.Get(ctx, s.key("s", name)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, down(err)
	}
	gcm, err := t.aead()
	if err != nil {
		return nil, err
	}
	if len(b) < gcm.NonceSize() {
		return nil, fmt.Errorf("%w: record too short", ErrInvalid)
	}
	plain, err := gcm.Open(nil, b[:gcm.NonceSize()], b[gcm.NonceSize():], []byte(name))
	if err != nil {
		return nil, fmt.Errorf("%w: record does not open with the ticket's key", ErrInvalid)
	}
	return Unmarshal(plain)
}

// ErrNotFound is a session the store does not hold (any more).
var ErrNotFound = errors.New("session: no such session in the store")

// Put encrypts and writes t's session, to expire after ttl, indexes it
// by subject and provider session id, and announces the change, once the
// write is confirmed (failover.go). A renewal (renew) only replaces a
// record that still exists: a session ended meanwhile stays ended, and
// Put reports ErrNotFound.
func (s *redisDB) Put(ctx context.Context, t Ticket, sess *Session, ttl time.Duration, renew bool) error {
	if ttl <= 0 {
		return errors.New("session: redis: session already expired")
	}
	plain, err := sess.Marshal()
	if err != nil {
		return err
	}
	gcm, err := t.aead()
	if err != nil {
		return err
	}
	nonce := make([]byte, gcm.NonceSize(), gcm.NonceSize()+len(plain)+gcm.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	name := t.Name()
	sealed := gcm.Seal(nonce, nonce, plain, []byte(name))
	// Each key on its own: in a cluster they live in different slots.
	indexes := s.indexes(sess)
	sizes := make([]*redis.IntCmd, len(indexes))
	var set *redis.StatusCmd
	err = s.confirmed(ctx, func(p redis.Pipeliner) {
		if renew {
			set = p.SetArgs(ctx, s.key("s", name), sealed, redis.SetArgs{Mode: "XX", TTL: ttl})
		} else {
			set = p.Set(ctx, s.key("s", name), sealed, ttl)
		}
		for i, idx := range indexes {
			p.SAdd(ctx, idx, name)
			p.ExpireNX(ctx, idx, ttl)
			p.ExpireGT(ctx, idx, ttl)
			sizes[i] = p.SCard(ctx, idx)
		}
		p.Publish(ctx, s.channel(), name)
	})
	if set != nil && errors.Is(set.Err(), redis.Nil) {
		return ErrNotFound // SET XX found no record: the session ended
	}
	if err != nil {
		return err
	}
	for i, idx := range indexes {
		if sizes[i].Val() > indexPruneAt {
			s.prune(ctx, idx)
		}
	}
	return nil
}

// indexPruneAt is the size past which an index drops the sessions that
// expired (a user who signs in every day keeps the index alive).
const indexPruneAt = 32

// prune removes from the index idx the sessions that no longer exist.
func (s *redisDB) prune(ctx context.Context, idx string) {
	members, err := s.rdb.SMembers(ctx, idx).Result()
	if err != nil {
		return
	}
	exists := make([]*redis.IntCmd, len(members))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range members {
			exists[i] = p.Exists(ctx, s.key("s", m))
		}
		return nil
	}); err != nil {
		return
	}
	var gone []any
	for i, m := range members {
		if exists[i].Val() == 0 {
			gone = append(gone, m)
		}
	}
	if len(gone) > 0 {
		s.rdb.SRem(ctx, idx, gone...)
	}
}

// indexes are the index keys a session belongs in.
func (s *redisDB) indexes(sess *Session) []string {
	keys := []string{s.key("sub", hashed(sess.Subject))}
	if sess.SID != "" {
		keys = append(keys, s.key("sid", hashed(sess.SID)))
	}
	return keys
}

func hashed(v string) string {
	h := sha256.Sum256([]byte(v))
	return hex.EncodeToString(h[:16])
}

// Delete ends the session with the given name and announces it; sess,
// when known, also leaves its indexes.
func (s *redisDB) Delete(ctx context.Context, name string, sess *Session) error {
	return s.confirmed(ctx, func(p redis.Pipeliner) {
		// Each key on its own: in a cluster they live in different slots.
		p.Del(ctx, s.key("s", name))
		p.Del(ctx, s.key("meta", name))
		p.Del(ctx, s.key("seen", name))
		if sess != nil {
			for _, idx := range s.indexes(sess) {
				p.SRem(ctx, idx, name)
			}
		}
		p.Publish(ctx, s.channel(), name)
	})
}

// Logout ends every session of subject sub (when not empty) and every
// session of provider session sid (when not empty), and reports how many
// there were.
func (s *redisDB) Logout(ctx context.Context, sub, sid string) (int, error) {
	var idx []string
	if sub != "" {
		idx = append(idx, s.key("sub", hashed(sub)))
	}
	if sid != "" {
		idx = append(idx, s.key("sid", hashed(sid)))
	}
	names := map[string]bool{}
	for _, k := range idx {
		members, err := s.rdb.SMembers(ctx, k).Result()
		if err != nil {
			return 0, down(err)
		}
		for _, m := range members {
			names[m] = true
		}
	}
	for name := range names {
		if err := s.Delete(ctx, name, nil); err != nil {
			return 0, err
		}
	}
	for _, k := range idx {
		if err := s.rdb.Del(ctx, k).Err(); err != nil {
			return 0, down(err)
		}
	}
	return len(names), nil
}

// FirstUse records a logout token id until ttl passes, and reports
// whether it was new (false: a replay).
func (s *redisDB) FirstUse(ctx context.Context, jti string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.key("jti", hashed(jti)), 1, ttl).Result()
	return ok, down(err)
}

// Forget drops a token id recorded by FirstUse.
func (s *redisDB) Forget(ctx context.Context, jti string) {
	s.rdb.Del(ctx, s.key("jti", hashed(jti)))
}

// unlockScript deletes a lock only when it still holds the caller's token.
var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// Lock takes the refresh lock of the session named name for at most ttl.
// It reports false when another holder has it; unlock gives it back
// (an error: Redis did not answer, the lock may still be there).
func (s *redisDB) Lock(ctx context.Context, name string, ttl time.Duration) (unlock func(context.Context) error, ok bool, err error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, false, err
	}
	token := hex.EncodeToString(b[:])
	key := s.key("lock", name)
	var set *redis.BoolCmd
	err = s.confirmed(ctx, func(p redis.Pipeliner) { set = p.SetNX(ctx, key, token, ttl) })
	unlock = func(ctx context.Context) error {
		return down(unlockScript.Run(ctx, s.rdb, []string{key}, token).Err())
	}
	switch {
	case err != nil && set != nil && set.Val():
		// Taken, but perhaps on a master about to be thrown away: no
		// refresh on it. Given back at once (or it expires).
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		unlock(uctx)
		cancel()
		return nil, false, err
	case err != nil:
		return nil, false, err
	case set == nil || !set.Val():
		return nil, false, nil
	}
	return unlock, true, nil
}

// WaitUnlocked waits until the refresh lock of name is free (or ctx ends).
func (s *redisDB) WaitUnlocked(ctx context.Context, name string) error {
	key := s.key("lock", name)
	for delay := 20 * time.Millisecond; ; delay = min(delay*2, 200*time.Millisecond) {
		n, err := s.rdb.Exists(ctx, key).Result()
		if err != nil {
			return down(err)
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// Watch follows the announcements of changed sessions until ctx ends:
// changed gets the name of each session written or ended by any replica;
// reset is called when the proxy may have missed announcements (it has
// just (re)connected) and must drop everything it cached; lost is called
// when the connection is gone, from then until reset, cached sessions must
// not be trusted. With Sentinel, the subscription is made at the master
// the sentinels name, and moves the moment they announce a new one
// (+switch-master; moved is told its address): it would otherwise stay
// on the demoted master, which hears of no change any more, until that
// server drops it.
func (s *redisDB) Watch(ctx context.Context, changed func(name string), reset, lost func(error), moved func(addr string)) {
	if s.sent == nil {
		s.watchOn(ctx, s.rdb, changed, reset, lost)
		return
	}
	addrs := make(chan string, 1) // the latest address named
	go s.sent.follow(ctx, func(addr string) {
		for {
			select {
			case addrs <- addr:
				return
			case <-addrs: // replaced by the newer one
			}
		}
	})
	master := ""
	var addr string
	select {
	case addr = <-addrs:
	case <-ctx.Done():
		return
	}
	for {
		if master != "" {
			s.event("failover", "")
			moved(addr)
			lost(errors.New("the sentinels named a new master"))
		}
		master = addr
		o := s.sent.server
		o.Addr = addr
		o.MaxRetries = 1
		client := redis.NewClient(&o)
		sub, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.watchOn(sub, client, changed, reset, lost)
		}()
	wait:
		for {
			select {
			case addr = <-addrs:
				if addr != master {
					break wait
				}
			case <-ctx.Done():
				cancel()
				<-done
				client.Close()
				return
			}
		}
		cancel()
		<-done
		client.Close()
	}
}

// watchOn is Watch on one client: a single server, a cluster, or the
// master the sentinels name.
func (s *redisDB) watchOn(ctx context.Context, c interface {
	Subscribe(ctx context.Context, channels ...string) *redis.PubSub
}, changed func(name string), reset, lost func(error)) {
	// go-redis remembers the channel and subscribes again after every
	// reconnection; each subscription confirmed comes back as a message.
	ps := c.Subscribe(ctx, s.channel())
	defer ps.Close()
	failures := 0
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, 15*time.Second)
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				failures = 0
				reset(nil)
			}
		case *redis.Message:
			changed(m.Payload)
		case *redis.Pong:
		default:
			if err == nil || ctx.Err() != nil {
				continue
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet for a while: make sure the connection still lives.
				if err = ps.Ping(ctx); err == nil {
					continue
				}
			}
			failures++
			lost(err)
			sleep(ctx, min(time.Duration(failures)*100*time.Millisecond, 2*time.Second))
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
