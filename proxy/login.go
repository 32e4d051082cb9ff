package proxy

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/session"
	"golang.org/x/oauth2"
)

// Sign-in flow limits.
const (
	// flowLifetime is how long a started sign-in may take.
	flowLifetime = 10 * time.Minute
	// maxFlows bounds the sign-ins pending in one browser; starting one more
	// drops the oldest.
	maxFlows = 5
)

// flow is one pending sign-in, kept in its own encrypted login cookie whose
// name is derived from the state, so that several tabs can sign in at once.
type flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Return   string `json:"r"`
	Created  int64  `json:"t"`
	// Handoff, at the sign-in host, is the login cookie state of the
	// route host the sign-in is for (see handoff.go).
	Handoff string `json:"h,omitempty"`
}

// newFlowCodec is the codec of the login cookies and their name prefix.
func newFlowCodec(cfg *config.Config, secure bool) (*session.Codec, string, error) {
	var secrets [][]byte // the first encrypts, all decrypt
	for _, s := range cfg.Session.Secret {
		secrets = append(secrets, []byte(s))
	}
	c, err := session.NewCodec(secrets, "login", session.CookieOptions{Secure: secure, MaxAge: flowLifetime})
	if err != nil {
		return nil, "", fmt.Errorf("proxy: %w", err)
	}
	base := cfg.Session.CookieName
	if base == "" {
		base = config.DefaultCookieName
	}
	return c, c.CookieName(base + "_login_"), nil
}

func (p *Proxy) flowCookieName(state string) string {
	sum := sha256.Sum256([]byte(state))
	return p.flowPrefix + hex.EncodeToString(sum[:8])
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// validState accepts only what randomToken makes: 43 base64url characters.
func validState(s string) bool {
	if len(s) != 43 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// handleStart begins a sign-in that returns to rd: a path on this host,
// or, with routes, a URL on a host a route serves (see handoff.go).
func (p *Proxy) handleStart(w http.ResponseWriter, r *http.Request) {
	host := p.requestHost(r)
	target, path := p.returnTarget(r.URL.Query().Get("rd"))
	switch {
	case target == "" || target == host:
		p.startFlow(w, r, path)
	case p.away(host):
		// Another host's page: that host begins its own sign-in.
		http.Redirect(w, r, p.originOf(target).String()+Prefix+"start?"+url.Values{"rd": {path}}.Encode(), http.StatusFound)
	case target == p.home:
		p.startFlow(w, r, path)
	default:
		p.startHome(w, r, target, path)
	}
}

// startFlow begins a sign-in that returns to ret, a clean path on the
// request's host: at the sign-in host with the provider, at another route
// host through the sign-in host.
func (p *Proxy) startFlow(w http.ResponseWriter, r *http.Request, ret string) {
	if host := p.requestHost(r); p.away(host) {
		p.startAway(w, r, host, ret)
		return
	}
	p.beginFlow(w, r, flow{Return: ret})
}

// beginFlow sends the browser to the provider with a fresh state, nonce and
// PKCE verifier, kept in a new login cookie with f's return.
func (p *Proxy) beginFlow(w http.ResponseWriter, r *http.Request, f flow) {
	op := p.oidc.Provider()
	if op == nil {
		w.Header().Set("Retry-After", "5")
		p.errorPage(w, r, http.StatusServiceUnavailable, "Sign-in is not available yet",
			"The proxy cannot reach the identity provider yet. Please try again in a moment.")
		return
	}
	f.State, f.Nonce, f.Verifier = randomToken(), randomToken(), oauth2.GenerateVerifier()
	if !p.keepFlow(w, r, &f) {
		return
	}
	url := op.AuthCodeURL(f.State, f.Nonce, f.Verifier)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, url, http.StatusFound)
}

// keepFlow writes f (dated now) into a new login cookie named by its
// state, making room for it; on failure it answers and reports false.
func (p *Proxy) keepFlow(w http.ResponseWriter, r *http.Request, f *flow) bool {
	f.Created = p.now().Unix()
	payload, _ := json.Marshal(f)
	p.dropOldFlows(w, r)
	if _, err := p.flows.Write(w, r, p.flowCookieName(f.State), payload, flowLifetime); err != nil {
		p.log.Error("sign-in: write login cookie", "err", err)
		p.errorPage(w, r, http.StatusInternalServerError, "Sign-in failed", "The proxy could not start the sign-in.")
		return false
	}
	return true
}

// dropOldFlows keeps at most maxFlows-1 pending sign-ins in the browser,
// so that a new one fits: unreadable ones and the oldest go first.
func (p *Proxy) dropOldFlows(w http.ResponseWriter, r *http.Request) {
	type pending struct {
		name    string
		created int64
	}
	var all []pending
	seen := map[string]bool{}
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, p.flowPrefix) || seen[c.Name] || len(all) >= 64 {
			continue
		}
		seen[c.Name] = true
		var f flow
		if payload, err := p.flows.Read(r, c.Name); err == nil && json.Unmarshal(payload, &f) == nil {
			all = append(all, pending{c.Name, f.Created})
		} else {
			all = append(all, pending{c.Name, 0})
		}
	}
	if len(all) < maxFlows {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i].created > all[j].created })
	for _, f := range all[maxFlows-1:] {
		p.flows.Clear(w, r, f.name)
	}
}

// errFlow marks a callback that matches no pending sign-in.
var errFlow = errors.New("no pending sign-in matches this callback")

// takeFlow finds the login cookie for state, clears it (a state is good
// for one callback only) and returns its flow.
func (p *Proxy) takeFlow(w http.ResponseWriter, r *http.Request, state string) (*flow, error) {
	if !validState(state) {
		return nil, errFlow
	}
	name := p.flowCookieName(state)
	payload, err := p.flows.Read(r, name)
	if err != nil {
		return nil, errors.Join(errFlow, err)
	}
	p.flows.Clear(w, r, name)
	var f flow
	if err := json.Unmarshal(payload, &f); err != nil {
		return nil, errors.Join(errFlow, err)
	}
	if subtle.ConstantTimeCompare([]byte(f.State), []byte(state)) != 1 {
		return nil, errFlow
	}
	if age := p.now().Sub(time.Unix(f.Created, 0)); age > flowLifetime || age < -time.Minute {
		return nil, errors.Join(errFlow, errors.New("sign-in took too long"))
	}
	return &f, nil
}
