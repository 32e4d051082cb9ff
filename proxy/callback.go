package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy/rp"
	"github.com/oidc-proxy/oidc-proxy/session"
)

// largeCookie is the session cookie size past which sign-in warns: nginx,
// for one, refuses a request header line over 8 KB by default.
const largeCookie = 7 << 10

// oauthErrors are the error codes a callback page may name; any other
// value from the provider is shown as "unknown_error".
var oauthErrors = map[string]bool{
	"access_denied": true, "invalid_request": true, "unauthorized_client": true,
	"unsupported_response_type": true, "invalid_scope": true, "server_error": true,
	"temporarily_unavailable": true, "interaction_required": true, "login_required": true,
	"account_selection_required": true, "consent_required": true, "invalid_request_uri": true,
	"invalid_request_object": true, "request_not_supported": true, "request_uri_not_supported": true,
	"registration_not_supported": true,
}

// handleCallback completes a sign-in: it checks the flow, exchanges the
// code, verifies the ID token, reads userinfo and writes the session.
func (p *Proxy) handleCallback(w http.ResponseWriter, r *http.Request) {
	op := p.oidc.Provider()
	if op == nil {
		w.Header().Set("Retry-After", "5")
		p.errorPage(w, r, http.StatusServiceUnavailable, "Sign-in is not available yet",
			"The proxy cannot reach the identity provider yet. Please try again in a moment.")
		return
	}
	q := r.URL.Query()
	f, err := p.takeFlow(w, r, q.Get("state"))
	if err != nil {
		p.signInFailed(w, r, "state", err, http.StatusBadRequest,
			"This sign-in link has expired, was already used, or was started in another browser.")
		return
	}
	if err := op.CheckIssuer(q); err != nil {
		p.signInFailed(w, r, rp.Reason(err), err, http.StatusBadRequest, "")
		return
	}
	if code := q.Get("error"); code != "" {
		if !oauthErrors[code] {
			code = "unknown_error"
		}
		p.metrics.signIns.WithLabelValues("failure", "provider_error").Inc()
		fix := op.Explain(code)
		p.log.Warn("sign-in refused by the provider", "reason", "provider_error", "error", code,
			"description", truncate(q.Get("error_description"), 200), "fix", fix, "client", p.trusted.clientIP(r))
		msg := "The identity provider answered: " + code + "."
		if fix != "" {
			msg += " The proxy's registration there needs a change (for the administrator): " + fix + "."
		}
		p.errorPage(w, r, http.StatusForbidden, "Sign-in did not complete", msg)
		return
	}
	code := q.Get("code")
	if code == "" {
		p.signInFailed(w, r, "no_code", errors.New("callback has no code"), http.StatusBadRequest, "")
		return
	}
	t, ok := p.redeem(w, r, op, f, code)
	if !ok {
		return
	}
	s, err := p.newSession(op, t)
	var ce *claimError
	if errors.As(err, &ce) {
		p.log.Warn("sign-in refused: the provider sent a claim the identity needs in a form the proxy cannot use",
			"claim", ce.claim, "why", ce.why, "client", p.trusted.clientIP(r))
		p.metrics.signIns.WithLabelValues("failure", "unusable_claim").Inc()
		p.errorPage(w, r, http.StatusBadGateway, "Sign-in failed",
			"The identity provider sent an identity the proxy cannot use. Ask the administrator to look at the proxy's log.")
		return
	}
	ctx := session.WithDevice(r.Context(), session.DeviceFacts{Agent: r.UserAgent(), Addr: p.trusted.clientIP(r)})
	size, err := p.store.Save(ctx, w, r, nil, s, p.now())
	if errors.Is(err, session.ErrStoreDown) {
		w.Header().Set("Retry-After", "5")
		p.signInFailed(w, r, "store_down", err, http.StatusServiceUnavailable,
			"Your session cannot be stored right now. Please try again in a moment.")
		return
	}
	if err != nil {
		p.signInFailed(w, r, "session_too_large", fmt.Errorf("%w (use session.store: redis, or map fewer claims to headers)", err), http.StatusInternalServerError,
			"Your identity is too large to keep in a browser cookie.")
		return
	}
	if size > largeCookie {
		p.log.Warn("the session cookie is large: front proxies and servers often refuse request headers over 8 KB",
			"bytes", size, "user", s.UserName(), "hint", "map fewer claims to headers (groups is usually the large one), or use session.store: redis (the cookie is then a 176-byte ticket)")
	}
	p.log.Info("sign-in", "user", s.UserName(), "sub", s.Subject, "client", p.trusted.clientIP(r))
	p.metrics.signIns.WithLabelValues("success", "").Inc()
	if f.Handoff != "" { // for another route host: on to it, signed in here now
		q := url.Values{"rd": {f.Return}, "hs": {f.Handoff}}
		http.Redirect(w, r, Prefix+"start?"+q.Encode(), http.StatusFound)
		return
	}
	dest := CleanReturnURL(f.Return)
	http.Redirect(w, r, p.signedIn(w, r, p.requestHost(r), s, dest), http.StatusFound)
}

// redeem exchanges the callback's code, within the sign-in gate's bounds
// for the client (signinlimit.go), once for the flow's state. It answers
// the browser itself when it reports false.
func (p *Proxy) redeem(w http.ResponseWriter, r *http.Request, op *rp.Provider, f *flow, code string) (*rp.Tokens, bool) {
	client := p.trusted.clientIP(r)
	now := p.now()
	gate := p.sh.gate
	defer gate.logNow(p.log, now)
	pass, wait := gate.admitWait(r.Context(), client, p.now)
	if pass == nil {
		p.signInLimited(w, r, "client_limit", wait)
		return nil, false
	}
	// The state is spent before the exchange, whatever comes of it: a
	// login cookie replayed (the cookie store cannot forget it) never
	// reaches the provider twice.
	switch err := p.store.Once(r.Context(), "state", f.State, flowLifetime); {
	case errors.Is(err, session.ErrReplay):
		pass.end(now, true, 0) // a replay counts against the client, not the provider
		p.signInFailed(w, r, "state_replayed", errFlow, http.StatusBadRequest,
			"This sign-in link has expired, was already used, or was started in another browser.")
		return nil, false
	case err != nil:
		pass.end(now, false, 0)
		w.Header().Set("Retry-After", "5")
		p.signInFailed(w, r, "store_down", err, http.StatusServiceUnavailable,
			"Your session cannot be stored right now. Please try again in a moment.")
		return nil, false
	}
	ctx, cancel := context.WithTimeout(rp.WithClientAddress(r.Context(), client), 3*p.idpTimeout)
	defer cancel()
	t, err := op.Redeem(ctx, code, f.Nonce, f.Verifier)
	var se *rp.StatusError
	switch {
	case errors.As(err, &se) && se.RateLimited():
		wait := se.RetryAfter
		if wait <= 0 {
			wait = time.Minute
		}
		pass.end(p.now(), true, wait)
		p.signInLimited(w, r, "provider_limit", wait)
		return nil, false
	case err != nil:
		pass.end(p.now(), se != nil, 0) // a refusal by the token endpoint is a failure it counted
		msg := ""
		if se != nil && op.Explain(se.Code) != "" {
			fix := op.Explain(se.Code)
			p.log.Warn("sign-in: the provider refused the proxy's client", "error", se.Code, "fix", fix)
			msg = "The identity provider refused the proxy's client (" + se.Code + "). For the administrator: " + fix + "."
		}
		p.signInFailed(w, r, rp.Reason(err), err, http.StatusBadGateway, msg)
		return nil, false
	}
	pass.end(p.now(), false, 0)
	return t, true
}

// signInLimited answers a sign-in completion refused for a rate limit,
// the proxy's own (client_limit) or the provider's (provider_limit): 429,
// with when to try again.
func (p *Proxy) signInLimited(w http.ResponseWriter, r *http.Request, reason string, wait time.Duration) {
	p.metrics.signIns.WithLabelValues("failure", reason).Inc()
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	p.errorPage(w, r, http.StatusTooManyRequests, "Sign-in is briefly unavailable",
		"Too many sign-in attempts were made from your network, or the identity provider asked us to slow down. "+
			"Please try again in "+inWords(wait)+".")
}

// inWords is a wait as a person reads it.
func inWords(d time.Duration) string {
	switch {
	case d <= time.Minute:
		return "a minute"
	case d < time.Hour:
		return strconv.Itoa(int(math.Ceil(d.Minutes()))) + " minutes"
	case d < 2*time.Hour:
		return "about an hour"
	}
	return "about " + strconv.Itoa(int(math.Round(d.Hours()))) + " hours"
}

// newSession is the session of a user the provider just vouched for.
func (p *Proxy) newSession(op *rp.Provider, t *rp.Tokens) (*session.Session, error) {
	now := p.now()
	s := &session.Session{
		Subject: t.Subject,
		SID:     t.SID,
		Created: now.Unix(),
		Expires: now.Add(p.lifetime).Unix(),
		Born:    now.UnixMilli(),
	}
	if err := p.fillClaims(s, t.Claims); err != nil {
		return nil, err
	}
	if p.idle > 0 {
		s.Seen = now.Unix()
	}
	if t.RefreshToken != "" {
		s.RefreshToken = t.RefreshToken
		s.RefreshAt = refreshAt(t.Expiry, now)
	}
	if op.EndSession() != "" {
		s.IDToken = t.IDToken
	}
	return s, nil
}

// fillClaims keeps in s what the headers, the access rules, the signed
// identity and the integrations need of claims, replacing what s held. A
// claim they need that is present but unusable is an error (a
// *claimError): the identity would silently lack it. Claims nothing uses
// are ignored.
func (p *Proxy) fillClaims(s *session.Session, claims map[string]json.RawMessage) error {
	rt := &p.claims
	for _, name := range rt.used {
		if raw, present := claims[name]; present {
			if why := claimProblem(name, raw); why != "" {
				return &claimError{name, why}
			}
		}
	}
	s.Claims = map[string]string{}
	s.User, s.Email, s.Groups = "", "", nil
	for _, name := range rt.kept {
		if v, ok := flattenClaim(claims[name]); ok && v != "" {
			s.Claims[name] = v
		}
	}
	rt.access.fill(s, claims)
	if rt.listGroups && s.Groups == nil {
		s.Groups = groupsOf(claims["groups"])
	}
	if g, ok := s.Claims["groups"]; ok && s.Groups != nil && g == strings.Join(s.Groups, ",") {
		delete(s.Claims, "groups") // kept once: Session.Claim joins the list
	}
	return nil
}

// signInFailed logs why a sign-in failed and shows a generic page.
func (p *Proxy) signInFailed(w http.ResponseWriter, r *http.Request, reason string, err error, status int, msg string) {
	p.log.Warn("sign-in failed", "reason", reason, "err", err, "client", p.trusted.clientIP(r))
	p.metrics.signIns.WithLabelValues("failure", reason).Inc()
	if msg == "" {
		msg = "The sign-in could not be completed. Please try again."
	}
	p.errorPage(w, r, status, "Sign-in failed", msg)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// claimSet is what sessions keep of the claims: what every route's
// headers, access rules, signed identity and integrations read. One
// session serves every route.
type claimSet struct {
	kept, used []string
	listGroups bool
	// access fills what any access rule can read (the user, a verified
	// email, the groups list), whatever the rules are today: a reload
	// may bring rules that read them, and sessions held must be judged
	// by those at their next request.
	access accessRules
}

func claimsOf(routes []*Route) claimSet {
	var c claimSet
	add := func(list *[]string, names ...string) {
		for _, n := range names {
			if !slices.Contains(*list, n) {
				*list = append(*list, n)
			}
		}
	}
	for _, rt := range routes {
		add(&c.kept, rt.kept...)
		add(&c.used, rt.used...)
		c.listGroups = c.listGroups || rt.listGroups
	}
	all := map[string]bool{}
	c.access = accessRules{users: all, groups: all, domains: all}
	return c
}
