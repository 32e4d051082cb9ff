package proxytest

import (
	"encoding/json"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The token endpoint's rate limiter of Authelia 4.39.20, with its default
// buckets (PEERS.md): per client address (the first X-Forwarded-For entry
// when there is one, else the peer), four token buckets of 30, 40, 50 and
// 100 requests, each refilled one request per minute, 2 minutes, 10
// minutes and hour. Only answers other than 200 spend; a request refused
// with 429 (Retry-After in seconds, body {"error":"temporarily_unavailable"})
// still spends every bucket that has something left.

type limitBucket struct {
	size   float64
	period time.Duration
	tokens float64
	at     time.Time
}

func (b *limitBucket) fill(now time.Time) {
	if b.at.IsZero() {
		b.tokens, b.at = b.size, now
		return
	}
	b.tokens = math.Min(b.size, b.tokens+now.Sub(b.at).Seconds()/b.period.Seconds())
	b.at = now
}

// limiter is the token endpoint's limiter: a set of buckets per address.
type limiter struct {
	now      func() time.Time
	mu       sync.Mutex
	byKey    map[string][]*limitBucket
	failures map[string]int // non-200 answers, 429s included, by address
	refused  map[string]int // 429s, by address
}

func newLimiter(now func() time.Time) *limiter {
	if now == nil {
		now = time.Now
	}
	return &limiter{now: now, byKey: map[string][]*limitBucket{}, failures: map[string]int{}, refused: map[string]int{}}
}

// limitKey is the address Authelia's limiter counts a request under.
func limitKey(r *http.Request) string {
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		first, _, _ := strings.Cut(xff, ",")
		return strings.TrimSpace(first)
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (l *limiter) buckets(key string) []*limitBucket {
	bs := l.byKey[key]
	if bs == nil {
		bs = []*limitBucket{
			{size: 30, period: time.Minute}, {size: 40, period: 2 * time.Minute},
			{size: 50, period: 10 * time.Minute}, {size: 100, period: time.Hour},
		}
		l.byKey[key] = bs
	}
	return bs
}

// spend takes one request from every bucket of key that has one.
func (l *limiter) spend(bs []*limitBucket) {
	for _, b := range bs {
		if b.tokens >= 1 {
			b.tokens--
		} else {
			b.tokens = math.Max(b.tokens-1, -b.size) // Authelia keeps spending
		}
	}
}

// serve answers r with next unless the limit of its address is reached.
func (l *limiter) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	key := limitKey(r)
	now := l.now()
	l.mu.Lock()
	bs := l.buckets(key)
	var wait time.Duration
	for _, b := range bs {
		b.fill(now)
		if b.tokens < 1 {
			wait = max(wait, time.Duration((1-b.tokens)*float64(b.period)))
		}
	}
	if wait > 0 {
		l.spend(bs)
		l.failures[key]++
		l.refused[key]++
		l.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		w.WriteHeader(http.StatusTooManyRequests)
		json.NewEncoder(w).Encode(map[string]string{"error": "temporarily_unavailable"})
		return
	}
	l.mu.Unlock()
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	next.ServeHTTP(sw, r)
	if sw.code != http.StatusOK {
		l.mu.Lock()
		l.spend(bs)
		l.failures[key]++
		l.mu.Unlock()
	}
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Exhaust empties every bucket of addr, as about a hundred failed token
// requests from it would.
func (o *OP) Exhaust(addr string) {
	l := o.limit
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.buckets(addr) {
		b.fill(l.now())
		b.tokens = 0
	}
}

// TokenFailures is how many token requests from addr were answered other
// than 200 (429s included), as Authelia's limiter counts them.
func (o *OP) TokenFailures(addr string) int {
	o.limit.mu.Lock()
	defer o.limit.mu.Unlock()
	return o.limit.failures[addr]
}

// TokenFailuresTotal is TokenFailures over every address.
func (o *OP) TokenFailuresTotal() int {
	o.limit.mu.Lock()
	defer o.limit.mu.Unlock()
	n := 0
	for _, v := range o.limit.failures {
		n += v
	}
	return n
}

// RateLimited is how many token requests from addr the limiter refused
// with 429.
func (o *OP) RateLimited(addr string) int {
	o.limit.mu.Lock()
	defer o.limit.mu.Unlock()
	return o.limit.refused[addr]
}
