package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/rp"
	"github.com/oidc-proxy/oidc-proxy/session"
)

// Bearer tokens: API clients, scripts and services with the provider's
// own access tokens (config.Bearer).
//
// A request to a route with a bearer block that carries Authorization:
// Bearer is authenticated by the token alone, never sent to sign in:
//
//  1. the token's syntax (RFC 6750 b64token, one Authorization header);
//     on a route of Memos (bridge or pass_bearer_tokens), Memos's own
//     tokens (a personal access token, memos_pat_..., or a JWT another
//     issuer signed: the access token of Memos's web app) take the session
//     path as before (a proxy session, or Memos confirming the token) and
//     never the provider's; every other token goes only to the provider;
//  2. what the provider says of it, cached by the token (in this process,
//     and with the Redis store sealed under the token for every replica)
//     until the earlier of its expiry and cache_for; concurrent first
//     requests with one token share one check; a refusal is remembered
//     for bearerRefusalFor; a JWT access token is verified with the key
//     set (introspected too with introspect: always), any other token at
//     the introspection endpoint, within a gate per client network as for
//     sign-ins (a flood of made-up tokens costs the provider little);
//  3. the route's policy: the token's audience or client accepted, its
//     scopes, and for a person the route's access rules.
//
// Refusals: 401 with WWW-Authenticate: Bearer error="invalid_token", 403
// error="insufficient_scope" (RFC 6750), 403 for a person the access
// rules keep out, 503 when the provider cannot answer; JSON, never a
// redirect; the reason goes to the log and a metric, never the token.

// bearerRefusalFor is how long a refused token is remembered.
const bearerRefusalFor = 10 * time.Second

// maxBearerLen bounds a token (a JWT with many claims is a few KB).
const maxBearerLen = 8192

// memosPATPrefix starts a Memos personal access token.
const memosPATPrefix = "memos_pat_"

// bearerPolicy is a route's bearer block, built.
type bearerPolicy struct {
	audiences, machines, clients []string
	scopes                       []string
	anyScope                     bool
	always                       bool // introspect JWTs too
	cacheFor                     time.Duration
	clientHeader, scopesHeader   string // canonical
	authHeader                   string
	memos                        bool // Memos's own tokens take the session path
	realm                        string
}

func newBearerPolicy(c *config.Bearer, realm string, memos bool) *bearerPolicy {
	if c == nil {
		return nil
	}
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	b := &bearerPolicy{
		audiences: c.Audiences, machines: c.Machines, clients: c.Clients, scopes: c.Scopes,
		anyScope: c.ScopesMatch == "any", always: c.Introspect == "always", cacheFor: c.CacheFor,
		clientHeader: textproto.CanonicalMIMEHeaderKey(or(c.ClientHeader, config.DefaultBearerClientHeader)),
		scopesHeader: textproto.CanonicalMIMEHeaderKey(or(c.ScopesHeader, config.DefaultBearerScopesHeader)),
		authHeader:   textproto.CanonicalMIMEHeaderKey(or(c.AuthHeader, config.DefaultBearerAuthHeader)),
		memos:        memos, realm: realm,
	}
	if b.cacheFor <= 0 {
		b.cacheFor = config.DefaultBearerCacheFor
	}
	return b
}

// memosToken reports whether tok is Memos's own, by its form: a personal
// access token, or a JWT whose (unverified) issuer is not the provider.
// Such a token never gets a bearer identity: it goes where it went before
// bearer tokens existed, and needs a proxy session or Memos's word there.
func (p *Proxy) memosToken(tok string) bool {
	return strings.HasPrefix(tok, memosPATPrefix) || rp.IsJWT(tok) && rp.JWTIssuer(tok) != p.cfg.OIDC.Issuer
}

// bearerToken is the token of r's Authorization header: ok false when
// there is none or it is not a Bearer one; err when it is a Bearer one
// that is malformed (several headers, a bad character, too long).
func bearerToken(r *http.Request) (tok string, ok bool, err error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", false, nil
	}
	scheme, rest, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false, nil
	}
	if len(vals) > 1 {
		return "", true, errors.New("several Authorization headers")
	}
	if rest == "" || len(rest) > maxBearerLen {
		return "", true, errors.New("empty or too long")
	}
	// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
	i := 0
	for i < len(rest) && b64token[rest[i]] {
		i++
	}
	for j := i; j < len(rest); j++ {
		if rest[j] != '=' {
			return "", true, errors.New("a character a bearer token cannot hold")
		}
	}
	if rest[0] == '=' {
		return "", true, errors.New("only padding")
	}
	return rest, true, nil
}

// b64token are the characters of RFC 6750's b64token before its padding.
var b64token = func() (t [256]bool) {
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/") {
		t[c] = true
	}
	return t
}()

// bearerVerdict is what the provider said of one token: what the
// cache keeps.
type bearerVerdict struct {
	access *rp.Access // nil: refused
	reason string     // why it was refused
	entry  *session.Entry
	jwt    bool     // verified by signature (else introspected)
	ids    sync.Map // *Route → its *Identity of the verdict
}

// kind is "machine" (no user: client credentials) or "person".
func (v *bearerVerdict) machine() bool {
	return v.access.Subject == "" || v.access.Subject == v.access.ClientID
}

// bearerChecks are a generation's cache of verdicts and its flights.
type bearerChecks struct {
	cache   *session.Cache[*bearerVerdict]
	mu      sync.Mutex
	flights map[string]*bearerFlight
}

type bearerFlight struct {
	done chan struct{}
	v    *bearerVerdict
	err  error // the provider could not answer
}

func newBearerChecks() *bearerChecks {
	return &bearerChecks{cache: session.NewCache[*bearerVerdict](0), flights: map[string]*bearerFlight{}}
}

// bearerStep authenticates a route's bearer requests (see the top of this
// file) and sends them to app; every other request goes on to next.
func (p *Proxy) bearerStep(rt *Route, next, app http.Handler) http.Handler {
	if rt.bearer == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok, err := bearerToken(r)
		switch {
		case !ok:
			next.ServeHTTP(w, r)
			return
		case err != nil:
			p.bearerRefused(w, r, rt, "malformed", err)
			return
		case rt.bearer.memos && p.memosToken(tok):
			next.ServeHTTP(w, r) // Memos's own: the session path, as before
			return
		}
		v, err := p.bearerVerdict(r, rt, tok)
		if err != nil {
			p.bearerUnavailable(w, r, err)
			return
		}
		if v.access == nil {
			p.bearerRefused(w, r, rt, v.reason, nil)
			return
		}
		if reason := rt.bearer.refuses(v); reason != "" {
			p.bearerRefused(w, r, rt, reason, nil)
			return
		}
		id := rt.bearerIdentity(v)
		if !v.machine() && !id.allowed {
			p.bearerForbidden(w, r, rt, v)
			return
		}
		p.metrics.bearer.WithLabelValues("pass", kindOf(v)).Inc()
		exchangeFrom(r.Context()).id = id
		app.ServeHTTP(w, r)
	})
}

func kindOf(v *bearerVerdict) string {
	if v.machine() {
		return "machine"
	}
	return "person"
}

// refuses is why the route does not accept the token the provider
// vouched for ("" when it does): not issued for it, or missing a scope.
func (b *bearerPolicy) refuses(v *bearerVerdict) string {
	a := v.access
	ok := slices.ContainsFunc(a.Audience, func(aud string) bool { return slices.Contains(b.audiences, aud) })
	if !ok {
		if v.machine() {
			ok = slices.Contains(b.machines, a.ClientID)
		} else {
			ok = slices.Contains(b.clients, a.ClientID)
		}
	}
	if !ok {
		return "wrong_client"
	}
	if len(b.scopes) == 0 {
		return ""
	}
	has := func(s string) bool { return slices.Contains(a.Scopes, s) }
	if b.anyScope && slices.ContainsFunc(b.scopes, has) || !b.anyScope && !slices.ContainsFunc(b.scopes, func(s string) bool { return !has(s) }) {
		return ""
	}
	return "insufficient_scope"
}

// bearerVerdict is the cached verdict on tok, or the provider's, once
// for all concurrent requests with it. An error means the provider (or
// the gate in front of it) could not answer: never a pass.
func (p *Proxy) bearerVerdict(r *http.Request, rt *Route, tok string) (*bearerVerdict, error) {
	now := p.now()
	// A JWT is checked locally unless the route wants introspection: the
	// verdicts differ, so do their keys.
	key := tok
	if rt.bearer.always {
		key = "i:" + tok
	}
	c := p.bearers
	if v, ok := c.cache.Get(key, now); ok {
		return v, nil
	}
	c.mu.Lock()
	if f, ok := c.flights[key]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
		return f.v, f.err
	}
	f := &bearerFlight{done: make(chan struct{})}
	c.flights[key] = f
	c.mu.Unlock()
	// Not the request's context: the others wait for this check.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 3*p.idpTimeout)
	f.v, f.err = p.checkBearer(ctx, r, rt, key, tok, now)
	cancel()
	switch {
	case f.err != nil:
	case f.v.access == nil:
		c.cache.Put(key, f.v, now.Add(bearerRefusalFor).Unix())
	default:
		c.cache.Put(key, f.v, p.bearerUntil(rt, f.v, now).Unix())
	}
	c.mu.Lock()
	delete(c.flights, key)
	c.mu.Unlock()
	close(f.done)
	return f.v, f.err
}

// bearerUntil is when a verdict stops being good: the token's expiry,
// and at most cache_for after an introspection (a revocation is seen
// then).
func (p *Proxy) bearerUntil(rt *Route, v *bearerVerdict, now time.Time) time.Time {
	until := v.access.Expiry
	if bound := now.Add(rt.bearer.cacheFor); !v.jwt && bound.Before(until) {
		until = bound
	}
	return until
}

// sharedVerdict is what replicas share of a verdict through the store:
// the provider's answer and the user's claims, sealed under the token.
type sharedVerdict struct {
	Access *rp.Access `json:"a"`
	JWT    bool       `json:"j,omitempty"`
}

// checkBearer asks the store (another replica's verdict), then the
// provider.
func (p *Proxy) checkBearer(ctx context.Context, r *http.Request, rt *Route, key, tok string, now time.Time) (*bearerVerdict, error) {
	if b, err := p.store.Take(ctx, "bearer", key, false); err == nil {
		var sv sharedVerdict
		if json.Unmarshal(b, &sv) == nil && sv.Access != nil && now.Before(sv.Access.Expiry) {
			if v, err := p.verdictOf(sv.Access, sv.JWT); err == nil {
				return v, nil
			}
		}
	}
	op := p.oidc.Provider()
	if op == nil {
		return nil, errors.New("the provider's discovery has not succeeded yet")
	}
	var access *rp.Access
	var err error
	jwt := rp.IsJWT(tok) && !rt.bearer.always
	if jwt {
		access, err = op.VerifyJWTAccess(ctx, tok)
	} else {
		access, err = p.introspect(ctx, r, op, tok)
	}
	if errors.Is(err, rp.ErrInvalidToken) {
		p.log.Info("bearer token refused", "why", err, "client", p.trusted.clientIP(r), "route", rt.name)
		return &bearerVerdict{reason: "invalid_token"}, nil
	}
	if err != nil {
		return nil, err
	}
	if access.Subject != "" && access.Subject != access.ClientID {
		p.userinfoFor(ctx, op, tok, access)
	}
	v, err := p.verdictOf(access, jwt)
	if err != nil {
		var ce *claimError
		if errors.As(err, &ce) {
			p.log.Warn("bearer token refused: the provider describes the user in a form the proxy cannot use", "claim", ce.claim, "why", ce.why)
		}
		return &bearerVerdict{reason: "unusable_claim"}, nil
	}
	if b, err := json.Marshal(sharedVerdict{Access: access, JWT: jwt}); err == nil {
		if ttl := time.Until(p.bearerUntil(rt, v, now)); ttl > time.Second {
			p.store.Keep(ctx, "bearer", key, b, ttl) // best effort: the next replica asks the provider
		}
	}
	return v, nil
}

// introspect asks the introspection endpoint, within the gate's bounds
// for the client's network: a refused token counts against it.
func (p *Proxy) introspect(ctx context.Context, r *http.Request, op *rp.Provider, tok string) (*rp.Access, error) {
	if !op.HasIntrospection() {
		return nil, errors.New("the provider's discovery names no introspection_endpoint")
	}
	client := p.trusted.clientIP(r)
	pass, wait := p.sh.bearerGate.admitWait(ctx, client, p.now)
	if pass == nil {
		return nil, &gateRefusal{wait}
	}
	a, err := op.Introspect(ctx, tok, p.cfg.OIDC.IntrospectionAuthMethod)
	var se *rp.StatusError
	switch {
	case errors.As(err, &se) && se.RateLimited():
		pass.end(p.now(), false, max(se.RetryAfter, time.Second))
	case errors.Is(err, rp.ErrInvalidToken):
		pass.end(p.now(), true, 0)
	default:
		pass.end(p.now(), false, 0)
	}
	return a, err
}

// gateRefusal is an introspection the gate held back.
type gateRefusal struct{ wait time.Duration }

func (g *gateRefusal) Error() string {
	return fmt.Sprintf("too many refused tokens from this client: retry in %v", g.wait.Round(time.Second))
}

// userinfoFor completes a person's claims with userinfo's (one call with
// the token) when the token lacks what the identity reads. It keeps the
// token's claims when userinfo fails or names another subject.
func (p *Proxy) userinfoFor(ctx context.Context, op *rp.Provider, tok string, a *rp.Access) {
	missing := false
	for _, c := range p.claims.used {
		if _, ok := a.Claims[c]; !ok {
			missing = true
			break
		}
	}
	if !missing || op.UserinfoURL() == "" {
		return
	}
	info, err := op.Userinfo(ctx, tok)
	if err != nil {
		p.log.Debug("bearer token: userinfo with the token failed; the token's claims only", "err", err)
		return
	}
	var sub string
	if json.Unmarshal(info["sub"], &sub) != nil || sub != a.Subject {
		p.log.Warn("bearer token: userinfo names another subject; the token's claims only")
		return
	}
	for k, v := range info {
		if _, ok := a.Claims[k]; !ok {
			a.Claims[k] = v
		}
	}
}

// verdictOf makes the identity of an access token the provider vouched
// for: a person's session from its claims, a machine's from its client.
func (p *Proxy) verdictOf(a *rp.Access, jwt bool) (*bearerVerdict, error) {
	now := p.now()
	v := &bearerVerdict{access: a, jwt: jwt}
	s := &session.Session{Created: now.Unix(), Expires: a.Expiry.Unix(), Born: now.UnixMilli()}
	if v.machine() {
		s.Subject = "client:" + a.ClientID // never a person's name
	} else {
		s.Subject = a.Subject
		if err := p.fillClaims(s, a.Claims); err != nil {
			return nil, err
		}
	}
	v.entry = &session.Entry{Session: s}
	return v, nil
}

// bearerIdentity is the route's identity of v, made once per route and
// verdict: a person's headers and access verdict as for their session, a
// machine's without a person's headers, and the bearer headers.
func (rt *Route) bearerIdentity(v *bearerVerdict) *Identity {
	if id, ok := v.ids.Load(rt); ok {
		return id.(*Identity)
	}
	s := v.entry.Session
	id := rt.headers.identity(s)
	id.entry = v.entry
	id.bearer = &bearerID{client: []string{v.access.ClientID}, scopes: []string{strings.Join(v.access.Scopes, " ")}, auth: []string{"bearer"}, machine: v.machine()}
	if v.machine() {
		clear(id.values)  // no person: no person's headers
		id.allowed = true // a machine passes by the bearer policy alone
	} else {
		id.allowed = rt.access.allows(s)
	}
	actual, _ := v.ids.LoadOrStore(rt, id)
	return actual.(*Identity)
}

// bearerID is what a bearer request's upstream learns besides the
// identity headers.
type bearerID struct {
	client, scopes, auth []string // header values, shared: never modified
	machine              bool
}

// fill sets the bearer headers of a bearer identity (setter).
func (b *bearerPolicy) fill(h http.Header, id *Identity) {
	bid := id.bearer
	if bid == nil {
		return
	}
	h[b.authHeader] = bid.auth
	h[b.clientHeader] = bid.client
	if bid.scopes[0] != "" {
		h[b.scopesHeader] = bid.scopes
	}
}

// bearerRefused answers a token that does not open the route: 401
// invalid_token, or 403 insufficient_scope.
func (p *Proxy) bearerRefused(w http.ResponseWriter, r *http.Request, rt *Route, reason string, err error) {
	p.metrics.bearer.WithLabelValues("refused", reason).Inc()
	if err != nil {
		p.log.Info("bearer token refused", "reason", reason, "why", err, "client", p.trusted.clientIP(r), "route", rt.name)
	} else if reason != "invalid_token" { // (logged with its cause when the provider refused it)
		p.log.Info("bearer token refused", "reason", reason, "client", p.trusted.clientIP(r), "route", rt.name)
	}
	w.Header().Set("Cache-Control", "no-store")
	if reason == "insufficient_scope" {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="insufficient_scope", error_description="The access token lacks a scope this application requires.", scope=%q`,
			rt.bearer.realm, strings.Join(rt.bearer.scopes, " ")))
		WriteJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope", "error_description": "The access token lacks a scope this application requires."})
		return
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="invalid_token", error_description="The access token is invalid, expired, revoked, or not issued for this application."`, rt.bearer.realm))
	WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "The access token is invalid, expired, revoked, or not issued for this application."})
}

// bearerForbidden answers a person's valid token that the route's access
// rules keep out.
func (p *Proxy) bearerForbidden(w http.ResponseWriter, r *http.Request, rt *Route, v *bearerVerdict) {
	p.metrics.bearer.WithLabelValues("refused", "forbidden").Inc()
	p.log.Info("bearer token refused: the access rules keep the user out", "user", v.entry.Session.UserName(), "client_id", v.access.ClientID, "route", rt.name)
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusForbidden, map[string]string{"error": "access_denied", "error_description": "This user may not use this application."})
}

// bearerUnavailable answers when the provider (or the gate in front of
// it) could not check a token: 503 or 429, never a pass.
func (p *Proxy) bearerUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("Cache-Control", "no-store")
	var gr *gateRefusal
	if errors.As(err, &gr) {
		p.metrics.bearer.WithLabelValues("refused", "client_limit").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(gr.wait.Seconds()+0.5))))
		WriteJSON(w, http.StatusTooManyRequests, map[string]string{"error": "too_many_requests", "error_description": "Too many invalid tokens from this address; try again later."})
		return
	}
	p.metrics.bearer.WithLabelValues("unavailable", "provider").Inc()
	now := p.now().Unix()
	if last := p.bearerWarned.Load(); now-last >= 10 && p.bearerWarned.CompareAndSwap(last, now) {
		p.log.Warn("bearer token: the provider could not check it: answering 503", "err", err, "client", p.trusted.clientIP(r))
	}
	w.Header().Set("Retry-After", "5")
	WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": "The access token cannot be checked right now."})
}
