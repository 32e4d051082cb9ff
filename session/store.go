package session

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Store keeps signed-in sessions: it finds the session of a request's
// cookie, writes new and renewed ones, ends them (one, or every session of
// a subject or provider session id), renews them once however many
// requests and replicas ask at the same time, and follows what other
// replicas change. Open builds one of its two implementations:
//
//   - the cookie store keeps the whole session in the browser's cookie
//     (encrypted and signed); what it ends it remembers in this process
//     only;
//   - the Redis store keeps the session in Redis, encrypted with a key
//     that only the browser's ticket cookie holds; every replica caches
//     what it read and drops it when any replica announces a change, and
//     while it cannot follow the announcements it reads Redis on every
//     request.
//
// Callers never ask which one runs. A Store is safe for concurrent use.
type Store interface {
	// CookieName is the name of the session cookie the browser holds (its
	// chunks are CookieName followed by "_" and a digit).
	CookieName() string

	// Load finds the session of r's session cookie as of now. It returns
	// (nil, nil) when r carries none, or one that is expired, idle too
	// long or ended (the cookie is then cleared in w); (nil, err) when the
	// cookie was refused (tampered with, under an unknown key, its record
	// gone or unreadable; err says why, and the cookie is cleared); and an
	// error wrapping ErrStoreDown, the cookie kept, when the store cannot
	// tell. A cached Entry costs no I/O.
	Load(w http.ResponseWriter, r *http.Request, now time.Time) (*Entry, error)

	// Save writes s as the browser's session: a new one when e is nil,
	// or the renewal of e's. It returns the size of the cookie written to
	// w (0 when none was needed), ErrTooLarge when s does not fit in a
	// cookie, and ErrStoreDown when the store cannot be reached.
	Save(ctx context.Context, w http.ResponseWriter, r *http.Request, e *Entry, s *Session, now time.Time) (int, error)

	// Refresh renews e's session with spend, which spends its refresh
	// token and returns the renewed session. Every request of this
	// process, and with the Redis store every replica, that carries the
	// same session shares one call of spend; requests still carrying the
	// replaced cookie get the same outcome for a while. It returns the
	// renewed session, stored, its cookie written to w when the browser
	// holds it. An error wrapping ErrRefreshRefused means the session is
	// over (it is ended and the cookie cleared); any other error leaves
	// the session as it was.
	Refresh(ctx context.Context, w http.ResponseWriter, r *http.Request, e *Entry, now time.Time, spend Spend) (*Entry, error)

	// End ends e's session for every copy of its cookie (a sign-out). The
	// caller clears the browser's cookie with Clear.
	End(ctx context.Context, e *Entry, now time.Time) error

	// EndUnread ends the session of r's cookie without reading it, for a
	// sign-out while the store cannot be read: the Redis store deletes the
	// record the ticket names, or, when Redis does not take it, refuses
	// the session on this replica at once and deletes it as soon as Redis
	// takes it (ErrDeferred). The cookie store has nothing to do.
	EndUnread(ctx context.Context, r *http.Request, now time.Time) error

	// Clear expires the session cookie that r carries.
	Clear(w http.ResponseWriter, r *http.Request)

	// Logout ends every session of subject sub and of provider session
	// sid (either may be empty) created before now, for a back-channel
	// logout token with id jti. A jti seen before is refused with
	// ErrReplay. It reports how many sessions ended, or -1 when the store
	// cannot count them (the cookie store).
	Logout(ctx context.Context, jti, sub, sid string, now time.Time) (int, error)

	// Keep holds value under secret (a one-time code, a short-lived token)
	// until ttl passes, for every replica; Take returns it (ErrNotFound
	// when there is none or it expired), with once removing it in the same
	// step so that only one caller ever gets it. Kind separates uses.
	Keep(ctx context.Context, kind, secret string, value []byte, ttl time.Duration) error
	Take(ctx context.Context, kind, secret string, once bool) ([]byte, error)

	// Once marks secret (of kind) as used until ttl passes, for every
	// replica, in one step: of any number of callers with the same
	// secret, one gets nil and the others ErrReplay. (The cookie store
	// remembers in this process.)
	Once(ctx context.Context, kind, secret string, ttl time.Duration) error

	// Share is a value that lets another host of this proxy adopt e's
	// session, and Adopt writes that host's cookie for it (see share.go
	// for what each store shares). The value is a bearer credential: the
	// caller keeps it sealed, briefly, for one use. Adopt returns
	// ErrNotShared when the session is over, ErrStoreDown when the store
	// cannot tell.
	Share(ctx context.Context, e *Entry, now time.Time) ([]byte, error)
	Adopt(ctx context.Context, w http.ResponseWriter, r *http.Request, value []byte, now time.Time) (*Entry, error)

	// SetSecrets replaces the secrets of the session cookie (a live
	// rotation): the first writes new cookies, every one opens existing
	// ones. It refuses a list the codec cannot use, changing nothing.
	SetSecrets(secrets [][]byte) error

	// Devices lists the sessions of subject sub (every session when sub
	// is ""), with what the store knows of each device; EndDevice ends the
	// session name of sub (any subject when sub is "") on every replica,
	// reporting false when sub has no such session; EndSubject ends every
	// session of sub on every replica. The cookie store keeps nothing on
	// the server: ErrNoDevices.
	Devices(ctx context.Context, sub string) ([]Device, error)
	EndDevice(ctx context.Context, sub, name string) (bool, error)
	EndSubject(ctx context.Context, sub string) (int, error)

	// Seen notes that e's session was used now from r (its device's last
	// seen), written at most once a minute and never on the request's
	// time.
	Seen(e *Entry, r *http.Request, now time.Time)

	// Run follows the changes other replicas make until ctx ends.
	Run(ctx context.Context)

	// Check reaches the store's server, if it has one: a line saying what
	// answered ("" when there is nothing to reach), or ErrStoreDown.
	Check(ctx context.Context) (string, error)

	// Close releases the store's connections. Call it after the server
	// has stopped: requests in flight need the store.
	Close() error
}

// Spend renews a session: it spends cur's refresh token at the provider
// and returns the renewed session. An error wrapping ErrRefreshRefused
// means the provider refused and the session must end.
type Spend func(ctx context.Context, cur *Session) (*Session, error)

// Errors of a Store.
var (
	// ErrRefreshRefused is a refresh the provider refused: the session is
	// over.
	ErrRefreshRefused = errors.New("session: the provider refused the refresh token")
	// ErrReplay is a logout token id seen before.
	ErrReplay = errors.New("session: logout token replayed (jti seen before)")
)

// Entry is a session as the store found it, shared by every request that
// carries the same cookie value and never modified.
type Entry struct {
	// Session is the signed-in user.
	Session *Session

	name   string  // the Redis record's name; "" in the cookie store
	ticket *Ticket // the Redis record's ticket; nil in the cookie store
	raw    string  // the cookie value it came from ("" when renewed)

	first atomic.Pointer[derived] // the first deriver and what it made
	more  sync.Map                // every other Deriver → what it made
	seen  atomic.Int64            // when Seen last noted it (Unix s)
}

// Name is the name of the entry's record in the Redis store ("" in the
// cookie store): it identifies the session in the devices list.
func (e *Entry) Name() string { return e.name }

// Derived returns what d made of the entry, making it on first use: work
// done once per session and deriver (a route's header values, say), not
// once per request. d is the key, so it must be comparable (a pointer),
// and what it returns must not be modified.
func (e *Entry) Derived(d Deriver) any {
	if f := e.first.Load(); f != nil && f.d == d {
		return f.v // the common case: one deriver, no map lookup
	}
	if v, ok := e.more.Load(d); ok {
		return v
	}
	v := d.Derive(e)
	if e.first.CompareAndSwap(nil, &derived{d, v}) {
		return v
	}
	if f := e.first.Load(); f.d == d {
		return f.v
	}
	v, _ = e.more.LoadOrStore(d, v)
	return v
}

type derived struct {
	d Deriver
	v any
}

// A Deriver makes something of a session entry once; see Entry.Derived.
type Deriver interface {
	Derive(e *Entry) any
}

// Options configure a Store; see Open.
type Options struct {
	// Secrets encrypt and sign the session cookie: the first writes, all
	// read (rotation). Each at least 32 bytes.
	Secrets [][]byte
	// CookieName is the base name of the session cookie; Secure cookies
	// get the "__Host-" prefix.
	CookieName string
	// Secure marks the cookie Secure (the proxy is reached over https).
	Secure bool
	// Lifetime is the longest a session lasts.
	Lifetime time.Duration
	// Idle ends a session unused for that long; 0: no idle timeout.
	Idle time.Duration
	// Redis, when not nil, keeps sessions in Redis; nil: in cookies.
	Redis *RedisOptions
	// Log receives the store's log lines. Nil: slog.Default().
	Log *slog.Logger
	// Live is told when the Redis store starts (true) or stops (false)
	// following the other replicas' announcements. May be nil.
	Live func(bool)
	// ClientIP is the address of a request's client, for the devices
	// list. May be nil.
	ClientIP func(*http.Request) string
	// Events is told what the Redis store saw around a failover, for the
	// metrics: ("failover", "") a new master named by the sentinels;
	// ("unconfirmed", op) a write Redis did not confirm (op "refresh",
	// "sign_out", or "demoted_master" when it reached a master no longer
	// named); ("stored_late", op) such a write stored by a background
	// retry; ("given_up", op) one that never was. May be nil.
	Events Events
}

// Open builds the store o describes: Redis when o.Redis is set, cookies
// otherwise. It does no I/O.
func Open(o Options) (Store, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Live == nil {
		o.Live = func(bool) {}
	}
	if o.Events == nil {
		o.Events = func(string, string) {}
	}
	codec, err := NewCodec(o.Secrets, "session", CookieOptions{Secure: o.Secure, MaxAge: o.Lifetime})
	if err != nil {
		return nil, err
	}
	b := &base{name: codec.CookieName(o.CookieName), copts: CookieOptions{Secure: o.Secure, MaxAge: o.Lifetime}, idle: o.Idle, log: o.Log,
		cache: NewCache[*Entry](0), refreshes: newRefresher()}
	b.codecs.Store(codec)
	b.secrets = slices.Clone(o.Secrets)
	if o.Redis == nil {
		return &cookieStore{base: b, ended: newRevocations(o.Lifetime), kept: newMemKept()}, nil
	}
	db, err := newRedisDB(*o.Redis)
	if err != nil {
		return nil, err
	}
	db.event = o.Events
	bg, stop := context.WithCancel(context.Background())
	rs := &redisStore{base: b, db: db, timeout: db.timeout, live: o.Live, event: o.Events,
		bg: bg, stop: stop, renewed: map[string]*Session{}, ended: map[string]int64{},
		seen: make(chan seenNote, 1024), clientIP: o.ClientIP}
	go rs.writeSeen()
	return rs, nil
}

// base is what both stores share: the cookie, the cache of entries by
// cookie value, and the in-process refresh flights.
type base struct {
	codecs    atomic.Pointer[Codec] // replaced whole by SetSecrets
	secretsMu sync.Mutex
	secrets   [][]byte // the codec's
	copts     CookieOptions
	name      string
	idle      time.Duration
	log       *slog.Logger
	cache     *Cache[*Entry]
	refreshes *refresher
}

func (b *base) CookieName() string { return b.name }

// codec is the cookie codec of the secrets set last.
func (b *base) codec() *Codec { return b.codecs.Load() }

// SetSecrets replaces the secrets of the session cookie: the first
// writes new cookies, every one opens existing ones. When they differ
// from the running ones, the sessions read so far are forgotten, so that
// a secret taken out of the list opens no cookie from then on. The same
// list changes nothing.
func (b *base) SetSecrets(secrets [][]byte) error {
	b.secretsMu.Lock()
	defer b.secretsMu.Unlock()
	if slices.EqualFunc(secrets, b.secrets, bytes.Equal) {
		return nil
	}
	c, err := NewCodec(secrets, "session", b.copts)
	if err != nil {
		return err
	}
	b.codecs.Store(c)
	b.secrets = slices.Clone(secrets)
	b.cache.Clear()
	return nil
}

func (b *base) Clear(w http.ResponseWriter, r *http.Request) { b.codec().Clear(w, r, b.name) }

// usable reports whether s may be used at now: complete, unexpired, not
// idle too long.
func (b *base) usable(s *Session, now time.Time) bool {
	return s.Valid(now) && !(b.idle > 0 && now.Unix() >= s.LastSeen()+int64(b.idle/time.Second))
}

// cacheUntil is when a cached entry of s stops being good.
func (b *base) cacheUntil(s *Session) int64 {
	if b.idle > 0 {
		return min(s.Expires, s.LastSeen()+int64(b.idle/time.Second))
	}
	return s.Expires
}

// write puts payload in the browser's session cookie until s expires.
func (b *base) write(w http.ResponseWriter, r *http.Request, payload []byte, s *Session, now time.Time) (int, error) {
	return b.codec().Write(w, r, b.name, payload, time.Unix(s.Expires, 0).Sub(now))
}

// refresh runs the shared part of Refresh: one flight per refresh token,
// then, for this request, the cookie cleared when the session is over.
func (b *base) refresh(w http.ResponseWriter, r *http.Request, e *Entry, now time.Time, fly func() (*Session, error)) (*Session, error) {
	renewed, err := b.refreshes.do(now, e.Session.RefreshToken, fly)
	if errors.Is(err, ErrRefreshRefused) {
		if e.raw != "" {
			b.cache.Delete(e.raw)
		}
		b.Clear(w, r)
	}
	return renewed, err
}
