package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// An Integration fits the proxy to one application behind a route (the
// Memos integration, package proxy/memos, is one): it may answer some of
// the application's own pages and calls itself, act after a sign-in and
// before a sign-out, let requests without a session pass on the
// application's own word (a token only the application can check), and
// see the application's answers. The core calls it at fixed points of the
// request path and knows nothing else of it; a route without one has none
// of these steps.
//
// Embed NoOps for the methods an integration does not need.
type Integration interface {
	// Provision is called once by New with what the core lends; an error
	// stops the start-up.
	Provision(k Kit) error
	// Claims names the session claims the integration reads; sessions
	// keep them beside those the identity headers need.
	Claims() []string
	// Endpoints adds the integration's own endpoints under /oauth2/.
	Endpoints(mux *http.ServeMux)
	// Wrap is the integration's step of the request path. It runs after
	// the session is found and kept up (IdentityFrom tells whose, or nil)
	// and before the access rules: it may answer a request itself or pass
	// it on to next.
	Wrap(next http.Handler) http.Handler
	// Anonymous is asked about a request without a session that the
	// access rules would send to sign in: it may answer it, or forward it
	// (without identity) with forward. It reports whether it did either.
	Anonymous(w http.ResponseWriter, r *http.Request, forward http.Handler) bool
	// SignedIn runs after a sign-in that the route's access rules admit,
	// before the browser is sent on to dest; it may add headers to w and
	// returns where to send the browser.
	SignedIn(w http.ResponseWriter, r *http.Request, s *session.Session, dest string) string
	// SigningOut runs at the proxy's sign-out, after the proxy's session
	// ended and before the browser is sent to the provider's sign-out.
	SigningOut(w http.ResponseWriter, r *http.Request)
	// Answered sees each answer of the upstream before it goes back;
	// IdentityFrom(resp.Request.Context()) tells whose request it was.
	Answered(resp *http.Response)
	// Start begins background work, which ends with ctx.
	Start(ctx context.Context)
	// Check adds what `oidc-proxy -check` reports of the integration.
	Check(ctx context.Context) []string
}

// NoOps implements every method of Integration as doing nothing: embed it
// and write the methods that matter.
type NoOps struct{}

func (NoOps) Provision(Kit) error                           { return nil }
func (NoOps) Claims() []string                              { return nil }
func (NoOps) Endpoints(*http.ServeMux)                      {}
func (NoOps) Wrap(next http.Handler) http.Handler           { return next }
func (NoOps) Start(context.Context)                         {}
func (NoOps) Check(context.Context) []string                { return nil }
func (NoOps) Answered(*http.Response)                       {}
func (NoOps) SigningOut(http.ResponseWriter, *http.Request) {}
func (NoOps) Anonymous(http.ResponseWriter, *http.Request, http.Handler) bool {
	return false
}
func (NoOps) SignedIn(_ http.ResponseWriter, _ *http.Request, _ *session.Session, dest string) string {
	return dest
}

// Kit is what the core lends an integration.
type Kit struct {
	// Log receives the integration's log lines.
	Log *slog.Logger
	// Now is the proxy's clock.
	Now func() time.Time
	// External is the proxy's external URL, without a path.
	External *url.URL
	// Transport reaches the route's upstream.
	Transport http.RoundTripper
	// Upstream is the route's upstream URL.
	Upstream *url.URL
	// Store is the session store; its Keep and Take hold short-lived
	// secrets for every replica.
	Store session.Store
	// ClientIP is the client's address as the trusted proxies vouch for it.
	ClientIP func(r *http.Request) string
	// Identify finds the session of a request to one of the integration's
	// endpoints and keeps it up, as the request path does: nil when there
	// is none, session.ErrStoreDown when the store cannot tell.
	Identify func(w http.ResponseWriter, r *http.Request) (*Identity, error)
	// SignIn sends the browser to sign in, back to returnURL (a clean
	// path) afterwards.
	SignIn func(w http.ResponseWriter, r *http.Request, returnURL string)
	// SignOut is the proxy's sign-out.
	SignOut http.HandlerFunc
	// EndSession ends id's session for every copy of its cookie (nil: none
	// to end) and clears the session cookie in w.
	EndSession func(w http.ResponseWriter, r *http.Request, id *Identity)
	// ErrorPage answers with a short generic message: a page for
	// browsers, JSON for the rest.
	ErrorPage func(w http.ResponseWriter, r *http.Request, status int, title, msg string)
	// Forbidden answers a signed-in user the access rules keep out.
	Forbidden func(w http.ResponseWriter, r *http.Request, s *session.Session)
	// StoreUnavailable answers when the session store is down.
	StoreUnavailable func(w http.ResponseWriter, r *http.Request, err error)
	// Provider is the OpenID Provider's authorization, token and userinfo
	// endpoints, by its discovery; ok is false until discovery is done.
	Provider func() (auth, token, userinfo string, ok bool)
}

// Session is the identity's session.
func (id *Identity) Session() *session.Session { return id.session }

// Allowed reports whether the route's access rules admit the identity.
func (id *Identity) Allowed() bool { return id.allowed }

// IdentityFrom returns the identity of the signed-in user a request
// carries, once the request path has found it; nil when there is none.
func IdentityFrom(ctx context.Context) *Identity {
	if x := exchangeFrom(ctx); x != nil {
		return x.id
	}
	return nil
}

// IsNavigation tells a browser loading a page from a script's request:
// GET or HEAD, with Sec-Fetch-Mode: navigate or an Accept that names HTML.
func IsNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return acceptsHTML(r)
}

// WriteJSON answers with status and v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
