package proxy

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// The sign-in gate: what clients that are not signed in can make the proxy
// ask of the provider.
//
// A sign-in's completion (the callback) is the one provider call an
// anonymous client can cause: anyone can begin a sign-in and come back
// with a made-up code, and the code exchange then fails at the provider.
// Providers limit failed token requests per caller (Authelia: 30 a minute,
// then longer buckets, up to an hour's lock-out), and behind a sidecar the
// caller is the proxy, for every user. So:
//
//   - the state of a completion is spent before the exchange, in the store
//     (every replica): a state is exchanged once, whatever its outcome
//     (handleCallback);
//   - the exchange names the browser's address to the provider
//     (X-Forwarded-For, which Authelia's limiter keys on), so a failure is
//     charged to that address, and refreshes, sent without it, keep the
//     proxy's own budget;
//   - and this gate bounds, per client network (an IPv4 address, an IPv6
//     /64), the exchanges in flight and the failed ones (a bucket of
//     clientFailures refilled one per clientRefill), and over all clients
//     the exchanges in flight and the failures (overallFailures, one per
//     overallRefill); when the overall bucket is empty only clients
//     without a recent failure pass. A client past its bound is answered
//     429 by the proxy, and the provider is not asked.
//   - A provider's 429 blocks that client until its Retry-After, and for
//     that time lets through at most one exchange of anyone else every
//     probeInterval (if the provider's limit is the proxy's, not the
//     client's, each such try would spend it further).

// Gate bounds.
const (
	clientPending   = 4                // exchanges of one client in flight at once
	pendingWait     = 5 * time.Second  // how long a completion waits for one of those
	clientFailures  = 5                // failed exchanges a client may have in hand
	clientRefill    = 10 * time.Minute // one more failure allowed each
	overallPending  = 32               // exchanges in flight, every client
	overallFailures = 20               // failed exchanges of every client together
	overallRefill   = 30 * time.Second // one more each
	probeInterval   = 10 * time.Second // after a provider's 429: one try of anyone's each
	maxGateClients  = 10000            // clients remembered
	gateLogEvery    = time.Minute      // one log line at most each
)

// bucket is a token bucket: size tokens at most, one more every period.
type bucket struct {
	tokens float64
	at     time.Time
}

func (b *bucket) fill(size int, period time.Duration, now time.Time) {
	if b.at.IsZero() {
		b.tokens, b.at = float64(size), now
		return
	}
	if el := now.Sub(b.at); el > 0 {
		b.tokens = min(float64(size), b.tokens+el.Seconds()/period.Seconds())
		b.at = now
	}
}

// wait is how long until the bucket holds one token.
func (b *bucket) wait(period time.Duration) time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(period))
}

// gateClient is what the gate remembers of one client network.
type gateClient struct {
	pending  int
	failures bucket
	blocked  time.Time // the provider's 429 for this client: until then
}

func (c *gateClient) idle(now time.Time) bool {
	c.failures.fill(clientFailures, clientRefill, now)
	return c.pending == 0 && c.failures.tokens >= clientFailures && !now.Before(c.blocked)
}

// signInGate is shared by every generation of a proxy (a reload keeps it).
type signInGate struct {
	mu        sync.Mutex
	clients   map[netip.Prefix]*gateClient
	pending   int
	failures  bucket
	limited   time.Time // a provider's 429: until then, probes only
	lastProbe time.Time
	// refreshUntil is a provider's 429 to a refresh (sent as the proxy,
	// for every user): no refresh is tried before it.
	refreshUntil time.Time

	// For the log line, since it was last written.
	loggedAt                  time.Time
	refused, providerRefusals int
}

func newSignInGate() *signInGate {
	return &signInGate{clients: map[netip.Prefix]*gateClient{}}
}

// clientNet is the network a client address is counted under: IPv4 the
// address, IPv6 its /64 (what one subscriber holds).
func clientNet(addr string) netip.Prefix {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}
	}
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// gatePass is one admitted exchange; exactly one of its methods ends it.
type gatePass struct {
	g   *signInGate
	key netip.Prefix
}

// admitWait is admit, waiting up to pendingWait (or until ctx ends) while
// the only bound in the way is the exchanges in flight.
func (g *signInGate) admitWait(ctx context.Context, addr string, now func() time.Time) (*gatePass, time.Duration) {
	deadline := now().Add(pendingWait)
	for {
		pass, wait := g.admit(addr, now())
		if pass != nil || wait != busy || now().After(deadline) {
			return pass, wait
		}
		select {
		case <-ctx.Done():
			return nil, busy
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// busy is admit's wait when only the exchanges in flight are in the way.
const busy = time.Second

// admit lets one exchange of the client at addr through, or says how long
// it must wait (a bound of its own, or of every client's).
func (g *signInGate) admit(addr string, now time.Time) (*gatePass, time.Duration) {
	key := clientNet(addr)
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.clients[key]
	if c == nil {
		if len(g.clients) >= maxGateClients {
			g.prune(now)
		}
		c = &gateClient{}
		if len(g.clients) < maxGateClients {
			g.clients[key] = c
		}
	}
	c.failures.fill(clientFailures, clientRefill, now)
	g.failures.fill(overallFailures, overallRefill, now)
	clean := c.failures.tokens >= clientFailures
	var wait time.Duration
	switch {
	case now.Before(c.blocked):
		wait = c.blocked.Sub(now)
	case c.pending >= clientPending:
		wait = busy
	case c.failures.tokens < 1:
		wait = c.failures.wait(clientRefill)
	case c.failures.tokens-float64(c.pending) < 1: // each in flight may fail
		wait = busy
	case g.pending >= overallPending:
		wait = busy
	case g.failures.tokens < 1 && !clean:
		wait = g.failures.wait(overallRefill)
	case now.Before(g.limited) && now.Sub(g.lastProbe) < probeInterval:
		wait = min(g.limited.Sub(now), probeInterval-now.Sub(g.lastProbe))
	}
	if wait > 0 {
		if wait != busy {
			g.refused++
		}
		return nil, wait
	}
	if now.Before(g.limited) {
		g.lastProbe = now
	}
	c.pending++
	g.pending++
	return &gatePass{g, key}, 0
}

// prune forgets clients that have nothing to remember (g.mu held).
func (g *signInGate) prune(now time.Time) {
	for k, c := range g.clients {
		if c.idle(now) {
			delete(g.clients, k)
		}
	}
}

// end ends the pass; failed charges a failure to the client and to the
// overall bucket; retryAfter > 0 is the provider's 429.
func (ps *gatePass) end(now time.Time, failed bool, retryAfter time.Duration) {
	g := ps.g
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending--
	c := g.clients[ps.key]
	if c != nil {
		c.pending--
	}
	if !failed {
		return
	}
	g.failures.fill(overallFailures, overallRefill, now)
	g.failures.tokens = max(g.failures.tokens-1, 0)
	if c != nil {
		c.failures.fill(clientFailures, clientRefill, now)
		c.failures.tokens = max(c.failures.tokens-1, 0)
	}
	if retryAfter > 0 {
		g.providerRefusals++
		until := now.Add(retryAfter)
		if c != nil && until.After(c.blocked) {
			c.blocked = until
		}
		if until.After(g.limited) {
			g.limited = until
		}
	}
}

// refreshPaused reports whether refreshes wait for the provider.
func (g *signInGate) refreshPaused(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return now.Before(g.refreshUntil)
}

// pauseRefresh holds refreshes back for the provider's Retry-After (a
// minute when it said nothing) and returns until when.
func (g *signInGate) pauseRefresh(now time.Time, retryAfter time.Duration) time.Time {
	if retryAfter <= 0 {
		retryAfter = time.Minute
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if until := now.Add(retryAfter); until.After(g.refreshUntil) {
		g.refreshUntil = until
	}
	return g.refreshUntil
}

// logNow writes, at most once every gateLogEvery, what the gate refused
// since the last line.
func (g *signInGate) logNow(log *slog.Logger, now time.Time) {
	g.mu.Lock()
	if now.Sub(g.loggedAt) < gateLogEvery || g.refused+g.providerRefusals == 0 {
		g.mu.Unlock()
		return
	}
	refused, provider, limited := g.refused, g.providerRefusals, g.limited
	g.refused, g.providerRefusals, g.loggedAt = 0, 0, now
	g.mu.Unlock()
	attrs := []any{"refused_by_proxy", refused, "refused_by_provider", provider}
	if now.Before(limited) {
		attrs = append(attrs, "provider_limit_until", limited.UTC().Format(time.RFC3339))
	}
	log.Warn("sign-in completions are being limited: a client (or many) failed too many, or the provider answered 429; "+
		"refreshes and signed-in users are not affected", attrs...)
}
