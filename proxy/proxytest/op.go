// The test OpenID Provider (OP), for the demo and the tests, built on
// the certified github.com/zitadel/oidc/v3/pkg/op and set up to behave the
// way Authelia 4.39 does where the proxy can tell:
//
//   - only the registered client authentication method is accepted at the
//     token endpoint (client_secret_post unless set otherwise): any other
//     gets 401 invalid_client, as from Authelia;
//   - sub is an opaque UUID; preferred_username, name, email and groups come
//     from the userinfo endpoint, not the ID token;
//   - the callback carries iss (RFC 9207) and discovery announces it;
//   - discovery lists no end_session_endpoint (unless EndSession is set);
//   - with RateLimit, the token endpoint limits failures per client
//     address as Authelia does by default (oplimiter.go);
//   - refresh tokens rotate on every use, and replaying a spent one gets
//     invalid_grant AND revokes the token that replaced it (the whole
//     family), as Authelia does.
//
// It is for tests and demos on loopback: users and passwords are in memory.

package proxytest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// OPUser is an account at the test provider.
type OPUser struct {
	Username string // preferred_username
	Password string
	Name     string
	Email    string
	Groups   []string
	// ExtraClaims are added to the userinfo answer as they are (for tests of
	// odd claim values).
	ExtraClaims map[string]any

	id string // the opaque sub
}

// Subject is the user's sub: an opaque UUID, as Authelia's.
func (u *OPUser) Subject() string { return u.id }

// OPConfig sets up a test provider.
type OPConfig struct {
	ClientID     string
	ClientSecret string
	RedirectURIs []string
	Users        []*OPUser
	// EndSession keeps end_session_endpoint in discovery (Authelia has none).
	EndSession bool
	// ClientAuthMethod is the client's registered token endpoint auth
	// method: "client_secret_post" (the default) or "client_secret_basic".
	// As Authelia does, any other method gets 401 invalid_client.
	ClientAuthMethod string
	// RateLimit turns on Authelia's token endpoint limiter with its
	// default buckets (limiter.go); Authelia has it on by default.
	RateLimit bool
	// IntrospectionPost registers the proxy's client with
	// introspection_endpoint_auth_method: client_secret_post; without it
	// the client introspects with client_secret_basic, Authelia's default.
	IntrospectionPost bool
}

// OP is a running test provider's handler and what it has seen.
type OP struct {
	issuer  string
	handler http.Handler
	users   map[string]*OPUser // by sub

	// TokenRequests counts requests to the token endpoint.
	TokenRequests  atomic.Int64
	refreshRevoked atomic.Bool
	// RefreshReplays counts spent refresh tokens presented again (each
	// one revoked its family).
	RefreshReplays atomic.Int64
	// OnToken, when set, runs after a token request's answer is made and
	// before it is sent, with the request's grant type: a test times
	// something (a Redis failover) between the provider's rotation and the
	// proxy's storing of it.
	OnToken  atomic.Pointer[func(grant string)]
	families map[string]*family // refresh token → its family
	limit    *limiter           // nil: no limit
	scripts  scriptTokens       // optokens.go
	store    *store
	// the proxy's own client, for introspection
	clientID, clientSecret string
	introspectionPost      bool
	mu                     sync.Mutex
	authorize              []url.Values
	tokenForms             []url.Values
}

// NewOP builds a provider whose issuer is issuer (for example
// "http://127.0.0.1:9000"); serve its Handler at that address.
func NewOP(issuer string, cfg OPConfig) (*OP, error) {
	o := &OP{issuer: issuer, users: map[string]*OPUser{}, limit: newLimiter(nil), families: map[string]*family{},
		scripts:  scriptTokens{clients: map[string]*ScriptClient{}, tokens: map[string]*scriptToken{}},
		clientID: cfg.ClientID, clientSecret: cfg.ClientSecret, introspectionPost: cfg.IntrospectionPost}
	us := userStore{byID: map[string]*OPUser{}}
	for _, u := range cfg.Users {
		u.id = uuid.NewString()
		us.byID[u.id] = u
		o.users[u.id] = u
	}
	client := storage.WebClient(cfg.ClientID, cfg.ClientSecret, cfg.RedirectURIs...)
	method := oidc.AuthMethodPost
	if cfg.ClientAuthMethod == "client_secret_basic" {
		method = oidc.AuthMethodBasic
	}
	st := &store{Storage: storage.NewStorageWithClients(us, map[string]*storage.Client{cfg.ClientID: client}), users: us, method: method}
	o.store = st
	key := sha256.Sum256([]byte(issuer + cfg.ClientSecret))
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:             key,
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
	}, st, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("proxytest: %w", err)
	}
	mux := http.NewServeMux()
	interceptor := op.NewIssuerInterceptor(provider.IssuerFromRequest)
	callback := op.AuthCallbackURL(provider)
	mux.HandleFunc("GET /login/username", func(w http.ResponseWriter, r *http.Request) {
		renderLogin(w, r.FormValue("authRequestID"), "")
	})
	mux.Handle("POST /login/username", interceptor.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.FormValue("id")
		if err := st.CheckUsernamePassword(r.FormValue("username"), r.FormValue("password"), id); err != nil {
			renderLogin(w, id, "Wrong username or password.")
			return
		}
		http.Redirect(w, r, callback(r.Context(), id), http.StatusFound)
	}))
	mux.Handle("/", provider)
	o.handler = o.authelia(mux, cfg.EndSession, method)
	if cfg.RateLimit {
		limited, all := o.handler, o.limit
		o.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/oauth/token" {
				all.serve(w, r, limited)
				return
			}
			limited.ServeHTTP(w, r)
		})
	}
	return o, nil
}

// Handler serves the provider.
func (o *OP) Handler() http.Handler { return o.handler }

// Issuer is the provider's issuer URL.
func (o *OP) Issuer() string { return o.issuer }

// AuthorizeRequests returns the query of every authorization request seen.
func (o *OP) AuthorizeRequests() []url.Values {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]url.Values(nil), o.authorize...)
}

// RevokeRefreshTokens makes every later refresh fail with invalid_grant,
// as Authelia answers for a disabled user or a revoked grant.
func (o *OP) RevokeRefreshTokens() { o.refreshRevoked.Store(true) }

// TokenForms returns the form of every token request seen.
func (o *OP) TokenForms() []url.Values {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]url.Values(nil), o.tokenForms...)
}

// authelia wraps the library's handler with Authelia's behaviour.
func (o *OP) authelia(next http.Handler, endSession bool, method oidc.AuthMethod) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			var doc map[string]any
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
				http.Error(w, "discovery failed", http.StatusInternalServerError)
				return
			}
			if !endSession {
				delete(doc, "end_session_endpoint")
			}
			doc["authorization_response_iss_parameter_supported"] = true
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(doc)
			return
		case "/authorize":
			o.mu.Lock()
			o.authorize = append(o.authorize, r.URL.Query())
			o.mu.Unlock()
		case "/authorize/callback":
			next.ServeHTTP(&issWriter{ResponseWriter: w, issuer: o.issuer}, r)
			return
		case "/oauth/introspect", "/userinfo":
			r.ParseForm()
			if o.scriptEndpoints(w, r) {
				return
			}
		case "/oauth/token":
			o.TokenRequests.Add(1)
			if err := r.ParseForm(); err == nil {
				o.mu.Lock()
				o.tokenForms = append(o.tokenForms, r.PostForm)
				o.mu.Unlock()
			}
			if o.scriptEndpoints(w, r) {
				return
			}
			_, _, basic := r.BasicAuth()
			post := r.PostForm.Has("client_secret")
			if basic && post || method == oidc.AuthMethodPost && !post || method == oidc.AuthMethodBasic && !basic {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				w.Write([]byte(`{"error":"invalid_client","error_description":"Client authentication failed."}`))
				return
			}
			grant := r.PostForm.Get("grant_type")
			if grant == "refresh_token" && (o.refreshRevoked.Load() || !o.refreshUsable(r.PostForm.Get("refresh_token"))) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				w.Write([]byte(`{"error":"invalid_grant","error_description":"The refresh token was revoked."}`))
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			if rec.Code == http.StatusOK {
				var t struct {
					RefreshToken string `json:"refresh_token"`
				}
				if json.Unmarshal(rec.Body.Bytes(), &t) == nil && t.RefreshToken != "" {
					o.rotated(r.PostForm.Get("refresh_token"), t.RefreshToken)
				}
			}
			if f := o.OnToken.Load(); f != nil {
				(*f)(grant)
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// family is the line of refresh tokens of one grant: each use of the
// current one replaces it; a replay of a spent one revokes the family.
type family struct {
	current string
	revoked bool
}

// refreshUsable reports whether the refresh token tok may be spent: the
// current token of a family that is not revoked. A spent token revokes
// its family (Authelia's reuse detection), and counts as a replay.
func (o *OP) refreshUsable(tok string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	f, ok := o.families[tok]
	if !ok {
		return true // not issued here: the library refuses it
	}
	if f.revoked {
		return false
	}
	if f.current != tok {
		f.revoked = true
		o.RefreshReplays.Add(1)
		return false
	}
	return true
}

// rotated records that old (empty: a new grant) was replaced by tok.
func (o *OP) rotated(old, tok string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f := o.families[old]
	if old == "" || f == nil {
		f = &family{}
	}
	f.current = tok
	o.families[tok] = f
}

// issWriter adds iss to the redirect back to the client (RFC 9207).
type issWriter struct {
	http.ResponseWriter
	issuer string
}

func (w *issWriter) WriteHeader(code int) {
	if code == http.StatusFound || code == http.StatusSeeOther {
		if u, err := url.Parse(w.Header().Get("Location")); err == nil {
			q := u.Query()
			if q.Has("code") || q.Has("error") {
				q.Set("iss", w.issuer)
				u.RawQuery = q.Encode()
				w.Header().Set("Location", u.String())
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// store is the library's example storage with Authelia's claims.
type store struct {
	*storage.Storage
	users  userStore
	method oidc.AuthMethod
}

// GetClientByClientID gives every client the registered auth method.
func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return methodClient{c, s.method}, nil
}

type methodClient struct {
	op.Client
	method oidc.AuthMethod
}

func (c methodClient) AuthMethod() oidc.AuthMethod { return c.method }

// SetUserinfoFromToken answers the userinfo endpoint with Authelia's claims.
func (s *store) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	u := s.users.byID[ui.Subject]
	if u == nil {
		return nil
	}
	if ui.PreferredUsername != "" { // profile scope granted
		ui.Name = u.Name
		ui.GivenName, ui.FamilyName = "", ""
		ui.AppendClaims("groups", u.Groups)
	}
	for k, v := range u.ExtraClaims {
		ui.AppendClaims(k, v)
	}
	return nil
}

type userStore struct{ byID map[string]*OPUser }

func (s userStore) GetUserByID(id string) *storage.User {
	if u := s.byID[id]; u != nil {
		return s.convert(u)
	}
	return nil
}

func (s userStore) GetUserByUsername(name string) *storage.User {
	for _, u := range s.byID {
		if u.Username == name {
			return s.convert(u)
		}
	}
	return nil
}

func (userStore) ExampleClientID() string { return "service" }

func (userStore) convert(u *OPUser) *storage.User {
	return &storage.User{
		ID: u.id, Username: u.Username, Password: u.Password, FirstName: u.Name,
		Email: u.Email, EmailVerified: true, PreferredLanguage: language.English,
	}
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in</title>
<style>
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--text:#1d2330;--muted:#5b6475;--accent:#2458d6;--on-accent:#fff;--line:#dde1e8;--bad:#b3261e}
@media (prefers-color-scheme:dark){:root{--bg:#12151b;--card:#1b2029;--text:#e7eaf0;--muted:#a3acbb;--accent:#7ea6ff;--on-accent:#0d1320;--line:#2c3340;--bad:#ffb4ab}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:grid;place-items:center;background:var(--bg);color:var(--text);font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;padding:1.5rem}
main{width:100%;max-width:24rem;background:var(--card);border:1px solid var(--line);border-radius:12px;padding:2rem;box-shadow:0 2px 12px rgba(0,0,0,.06)}
h1{font-size:1.35rem;margin:0 0 .25rem}
p{margin:0 0 1.25rem;color:var(--muted)}
#error{color:var(--bad)}
label{display:block;font-weight:600;margin:0 0 1rem}
input{display:block;width:100%;margin-top:.35rem;font:inherit;padding:.55rem .7rem;border:1px solid var(--line);border-radius:8px;background:var(--bg);color:var(--text)}
input:focus-visible,button:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
button{width:100%;font:inherit;background:var(--accent);color:var(--on-accent);border:0;border-radius:8px;padding:.6rem 1.1rem;cursor:pointer;margin-top:.5rem}
</style></head>
<body><main>
<h1>Sign in</h1>
<p>Test OpenID Provider: it behaves like Authelia, for the demo and the tests.</p>
{{if .Error}}<p id="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login/username">
<input type="hidden" name="id" value="{{.ID}}">
<label for="username">Username<input id="username" name="username" autocomplete="username" autofocus required></label>
<label for="password">Password<input id="password" name="password" type="password" autocomplete="current-password" required></label>
<button id="submit" type="submit">Sign in</button>
</form></main></body></html>`))

func renderLogin(w http.ResponseWriter, id, errMsg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	loginPage.Execute(w, struct{ ID, Error string }{id, errMsg})
}
