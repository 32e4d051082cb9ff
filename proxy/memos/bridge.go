package memos

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
	"github.com/oidc-proxy/oidc-proxy/session"
)

// The Memos bridge: the proxy is Memos's OAuth2 identity provider, backed
// by the proxy's own session. Memos's sign-in (its button, or the proxy's
// server-side SignIn right after a sign-in) gets a code from the proxy,
// and Memos redeems it at the bridge's token endpoint and reads the user at
// its userinfo endpoint. Those two endpoints are served on their own
// listener (memos.bridge_listen), which only Memos should reach.

// Bridge timing and bounds.
const (
	bridgeCodeLifetime  = time.Minute
	bridgeTokenLifetime = time.Minute
	bridgeMaxGrants     = 10000
)

// memosUser is what the bridge tells Memos about a user.
type memosUser struct {
	Identifier string `json:"preferred_username"`
	Name       string `json:"name,omitempty"`
	Email      string `json:"email,omitempty"`
}

// Bridge makes the proxy Memos's OAuth2 identity provider, backed by the
// proxy's own session (memos.bridge): it holds the registration and the
// codes and tokens it issued (in the session store, so that with a shared
// store any replica redeems what another issued).
type Bridge struct {
	k             proxy.Kit
	memosURL      string       // "": the route's upstream
	client        *http.Client // to Memos
	clientID      string
	secrets       []string // the first is registered; all are accepted
	title         string
	authURL       string // browser-facing
	tokenURL      string // for Memos
	userinfoURL   string
	callbackURL   string // Memos's /auth/callback
	usernameClaim string
	allowPassword bool
	tokenFile     string // "": the proxy cannot set Memos up
	passwordFile  string
	adminUsername string
	route         string // the route's name
	handlerOnce   sync.Once
	handler       http.Handler    // Handler, made once
	listen        string          // memos.bridge_listen
	adminGroups   map[string]bool // none: roles are left alone
	https         bool            // the external URL is https
	outCookie     string          // marks a browser that pressed Memos's sign-out
	grants        grants

	adminToken atomic.Pointer[string] // a Memos admin's token, once known
	ready      atomic.Bool            // Memos has an admin
	checkMu    sync.Mutex             // one "has Memos an admin?" at a time
	admins     *session.Cache[bool]   // bearer hash → Memos confirmed an admin
	idpName    atomic.Pointer[string] // the provider in Memos, once registered (see Register)
}

// idp is the bridge's identity provider's name in Memos: the one
// Register chose, or identity-providers/<memos.idp_id> before.
func (b *Bridge) idp() string {
	if n := b.idpName.Load(); n != nil {
		return *n
	}
	return "identity-providers/" + b.clientID
}

// opEndpoints are the endpoints of the proxy's OpenID Provider.
type opEndpoints struct{ auth, token, userinfo string }

// matches reports whether a Memos provider's endpoints are this OpenID
// Provider's.
func (o *opEndpoints) matches(auth, token, userinfo string) bool {
	return sameURL(auth, o.auth) && sameURL(token, o.token) && (userinfo == "" || o.userinfo == "" || sameURL(userinfo, o.userinfo))
}

func (b *Bridge) token() string {
	if t := b.adminToken.Load(); t != nil {
		return *t
	}
	return ""
}

func (b *Bridge) setToken(t string) { b.adminToken.Store(&t) }

func newBridge(cfg *config.Config, rc *config.Route) (*Bridge, error) {
	m := rc.Memos
	b := &Bridge{
		memosURL:      strings.TrimSuffix(m.URL, "/"),
		clientID:      m.IdPID,
		title:         m.IdPTitle,
		tokenURL:      strings.TrimSuffix(m.BridgeURL, "/") + "/token",
		userinfoURL:   strings.TrimSuffix(m.BridgeURL, "/") + "/userinfo",
		usernameClaim: m.UsernameClaim,
		allowPassword: m.AllowPasswordSignIn,
		tokenFile:     m.AdminTokenFile,
		passwordFile:  m.AdminPasswordFile,
		adminUsername: m.AdminUsername,
		route:         rc.Name,
		listen:        m.BridgeListen,
		outCookie:     cfg.Session.CookieName + "_memos_out",
		admins:        session.NewCache[bool](0),
	}
	if m.AdminToken != "" {
		b.setToken(m.AdminToken)
	}
	if len(m.AdminGroups) > 0 {
		b.adminGroups = map[string]bool{}
		for _, g := range m.AdminGroups {
			b.adminGroups[g] = true
		}
	}
	if b.clientID == "" {
		return nil, errors.New("memos: memos.idp_id is empty")
	}
	for _, s := range cfg.Session.Secret {
		// The client secret is derived from the session secret: nothing
		// more to configure, and it rotates with it.
		k, err := hkdf.Key(sha256.New, []byte(s), nil, "oidc-proxy memos bridge client secret", 32)
		if err != nil {
			return nil, err
		}
		b.secrets = append(b.secrets, hex.EncodeToString(k))
	}
	return b, nil
}

// Provision implements proxy.Integration.
func (b *Bridge) Provision(k proxy.Kit) error {
	b.k = k
	b.client = &http.Client{Transport: k.Transport, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	b.authURL = k.External.String() + proxy.Prefix + "memos/authorize"
	b.callbackURL = k.External.String() + "/auth/callback"
	b.https = k.External.Scheme == "https"
	b.grants = grants{k.Store}
	if b.memosURL == "" {
		b.memosURL = strings.TrimSuffix(k.Upstream.String(), "/")
	}
	return nil
}

// userOf is the Memos user of a proxy session, or false when the session
// lacks the username claim.
func (b *Bridge) userOf(s *session.Session) (memosUser, bool) {
	u := memosUser{Identifier: s.Claims[b.usernameClaim], Name: s.Claims["name"], Email: s.Claims["email"]}
	return u, u.Identifier != ""
}

// code issues a code for u, to be redeemed with redirectURI (and the PKCE
// verifier of challenge, when not empty) within a minute.
func (b *Bridge) code(ctx context.Context, u memosUser, redirectURI, challenge string, now time.Time) (string, error) {
	code := randomToken()
	g := &grant{User: u, RedirectURI: redirectURI, Challenge: challenge, Expires: now.Add(bridgeCodeLifetime).UnixMilli()}
	return code, b.keep(ctx, "code", code, g, now)
}

func (b *Bridge) keep(ctx context.Context, kind, secret string, g *grant, now time.Time) error {
	return b.grants.put(ctx, kind, secret, g, now)
}

func (b *Bridge) find(ctx context.Context, kind, secret string, take bool, now time.Time) (*grant, error) {
	return b.grants.get(ctx, kind, secret, take, now)
}

// authenticate checks Memos's client credentials: HTTP Basic or the form,
// never both.
func (b *Bridge) authenticate(r *http.Request) bool {
	id, secret, basic := r.BasicAuth()
	if basic {
		if r.PostForm.Has("client_secret") {
			return false
		}
		// RFC 6749 2.3.1: Basic credentials are form-encoded first.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	ok := subtle.ConstantTimeCompare([]byte(id), []byte(b.clientID)) == 1
	match := 0
	for _, s := range b.secrets {
		match |= subtle.ConstantTimeCompare([]byte(secret), []byte(s))
	}
	return ok && match == 1
}

// Handler serves Memos's token and userinfo endpoints, for
// memos.bridge_listen: a listener only Memos should reach.
func (b *Bridge) Handler() http.Handler {
	b.handlerOnce.Do(func() { b.handler = b.newHandler() })
	return b.handler
}

func (b *Bridge) newHandler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("POST /token", b.bridgeToken)
	m.HandleFunc("GET /userinfo", b.bridgeUserinfo)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		proxy.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		m.ServeHTTP(w, r)
	})
}

func (b *Bridge) bridgeToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	refuse := func(status int, code, why string) {
		b.k.Log.Warn("memos bridge: token request refused", "error", code, "why", why, "client", r.RemoteAddr)
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="oidc-proxy memos bridge"`)
		}
		proxy.WriteJSON(w, status, map[string]string{"error": code})
	}
	if err := r.ParseForm(); err != nil {
		refuse(http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	// The client is authenticated before the code is looked at: Memos
	// tries HTTP Basic, then the form, with the same code.
	if !b.authenticate(r) {
		refuse(http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		refuse(http.StatusBadRequest, "unsupported_grant_type", "grant_type is not authorization_code")
		return
	}
	now := b.k.Now()
	g, err := b.find(r.Context(), "code", r.PostForm.Get("code"), true, now)
	switch {
	case err != nil:
		refuse(http.StatusServiceUnavailable, "temporarily_unavailable", err.Error())
		return
	case g == nil:
		refuse(http.StatusBadRequest, "invalid_grant", "unknown, used or expired code")
		return
	case r.PostForm.Get("redirect_uri") != g.RedirectURI:
		refuse(http.StatusBadRequest, "invalid_grant", "redirect_uri does not match")
		return
	case !pkceMatches(g.Challenge, r.PostForm.Get("code_verifier")):
		refuse(http.StatusBadRequest, "invalid_grant", "PKCE verification failed")
		return
	}
	token := randomToken()
	if err := b.keep(r.Context(), "token", token, &grant{User: g.User, Expires: now.Add(bridgeTokenLifetime).UnixMilli()}, now); err != nil {
		refuse(http.StatusServiceUnavailable, "temporarily_unavailable", err.Error())
		return
	}
	b.k.Log.Info("memos bridge: code redeemed", "user", g.User.Identifier)
	proxy.WriteJSON(w, http.StatusOK, map[string]any{
		"access_token": token, "token_type": "Bearer", "expires_in": int(bridgeTokenLifetime.Seconds()),
	})
}

// pkceMatches checks a code_verifier against the S256 challenge the code
// was issued with. A verifier for a code issued without a challenge is
// refused too (RFC 9700 2.1.1: no PKCE downgrade).
func pkceMatches(challenge, verifier string) bool {
	if challenge == "" {
		return verifier == ""
	}
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

func (b *Bridge) bridgeUserinfo(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	var g *grant
	if ok && token != "" {
		var err error
		if g, err = b.find(r.Context(), "token", token, false, b.k.Now()); err != nil {
			b.k.Log.Warn("memos bridge: userinfo: the session store failed", "err", err)
			proxy.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
			return
		}
	}
	if g == nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		proxy.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	proxy.WriteJSON(w, http.StatusOK, map[string]string{
		"sub": g.User.Identifier, "preferred_username": g.User.Identifier, "name": g.User.Name, "email": g.User.Email,
	})
}

// handleMemosAuthorize is the authUrl Memos's sign-in button sends the
// browser to: with a proxy session it completes Memos's flow at once;
// without one it signs the user in at the provider first.
func (b *Bridge) handleMemosAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bad := func(why string) {
		b.k.Log.Warn("memos bridge: authorization request refused", "why", why, "client", b.k.ClientIP(r))
		b.k.ErrorPage(w, r, http.StatusBadRequest, "Sign-in request refused", "Memos sent a sign-in request the proxy cannot accept.")
	}
	switch {
	case q.Get("client_id") != b.clientID:
		bad("unknown client_id")
		return
	case q.Get("redirect_uri") != b.callbackURL:
		bad("redirect_uri is not Memos's /auth/callback")
		return
	case q.Get("response_type") != "code":
		bad("response_type is not code")
		return
	case q.Get("code_challenge") != "" && q.Get("code_challenge_method") != "S256":
		bad("code_challenge_method is not S256")
		return
	case q.Get("state") == "" || len(q.Get("state")) > 512 || len(q.Get("code_challenge")) > 128:
		bad("state missing, or a parameter too long")
		return
	}
	id, err := b.k.Identify(w, r)
	switch {
	case err != nil:
		b.k.StoreUnavailable(w, r, err)
		return
	case id == nil:
		b.k.SignIn(w, r, proxy.CleanReturnURL(r.URL.RequestURI()))
		return
	case !id.Allowed():
		b.k.Forbidden(w, r, id.Session())
		return
	}
	u, ok := b.userOf(id.Session())
	if !ok {
		b.memosFailed(w, r, errors.New("the session has no "+b.usernameClaim+" claim"))
		return
	}
	code, err := b.code(r.Context(), u, b.callbackURL, q.Get("code_challenge"), b.k.Now())
	if err != nil {
		b.memosFailed(w, r, err)
		return
	}
	back, _ := url.Parse(b.callbackURL)
	back.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// randomToken is 32 random bytes, base64url: a code or an access token.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Route is the name of the route the bridge serves.
func (b *Bridge) Route() string { return b.route }

// Listen is the address to serve Handler on (memos.bridge_listen).
func (b *Bridge) Listen() string { return b.listen }

// Title is the label of the bridge's button on Memos's sign-in page.
func (b *Bridge) Title() string { return b.title }
