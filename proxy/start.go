package proxy

import (
	"context"
)

// Start runs discovery in the background, retrying with back-off (1 s
// doubling to 1 min) until it succeeds or ctx ends. Until then Ready
// reports false and sign-ins answer 503; sessions already held keep working.
// With the Redis store it also follows the store's announcements until ctx
// ends.
func (p *Proxy) Start(ctx context.Context) {
	sh := p.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.started = ctx
	go p.store.Run(ctx)
	sh.live.Load().start(ctx)
}

// Ready reports whether discovery has succeeded.
func (p *Proxy) Ready() bool { return p.sh.live.Load().oidc.Provider() != nil }

// Discover runs the OpenID Provider's discovery once, now (a command that
// needs it, such as memos-setup, without starting the proxy).
func (p *Proxy) Discover(ctx context.Context) error {
	return p.sh.live.Load().oidc.DiscoverNow(ctx)
}
