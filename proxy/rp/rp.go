// Package rp is the proxy's OpenID Connect relying party: discovery with
// retry, the authorization request (state, nonce and PKCE are the
// caller's, made fresh per sign-in), the code exchange with the ID token,
// iss, azp, at_hash and userinfo checks, refresh, and back-channel logout
// tokens. It takes plain values and returns plain values and typed errors;
// it never writes an HTTP response.
//
// It imports no package of this project: the proxy (package proxy) builds
// sessions, cookies and pages from what it returns.
package rp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Config configures a Client.
type Config struct {
	// Issuer is the provider's issuer URL; discovery must name the same.
	Issuer string
	// ClientID and ClientSecret are the proxy's client at the provider.
	ClientID, ClientSecret string
	// AuthMethod is how the client authenticates at the token endpoint:
	// "client_secret_post" (the default) or "client_secret_basic". It is
	// never detected: Authelia counts every refused attempt against the
	// rate limit of all users.
	AuthMethod string
	// Scopes are asked for in every authorization request.
	Scopes []string
	// RedirectURL is the proxy's callback.
	RedirectURL string
	// HTTPClient talks to the provider; see NewHTTPClient. Required.
	HTTPClient *http.Client
	// Timeout bounds each request to the provider.
	Timeout time.Duration
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// Log receives discovery's progress. Nil: slog.Default().
	Log *slog.Logger
}

// Client is the relying party. Its provider is known once discovery has
// succeeded (Start, or Discover).
type Client struct {
	cfg       Config
	authStyle oauth2.AuthStyle
	provider  atomic.Pointer[Provider]
}

// New checks c and builds a Client. It does no I/O.
func New(c Config) (*Client, error) {
	cl := &Client{cfg: c}
	switch c.AuthMethod {
	case "client_secret_post", "":
		cl.authStyle = oauth2.AuthStyleInParams
		cl.cfg.AuthMethod = "client_secret_post"
	case "client_secret_basic":
		cl.authStyle = oauth2.AuthStyleInHeader
	default:
		return nil, fmt.Errorf("rp: unsupported client_auth_method %q", c.AuthMethod)
	}
	if c.HTTPClient == nil {
		return nil, errors.New("rp: no HTTP client")
	}
	if cl.cfg.Now == nil {
		cl.cfg.Now = time.Now
	}
	if cl.cfg.Log == nil {
		cl.cfg.Log = slog.Default()
	}
	return cl, nil
}

// Issuer is the configured issuer.
func (c *Client) Issuer() string { return c.cfg.Issuer }

// ClientID is the proxy's client id.
func (c *Client) ClientID() string { return c.cfg.ClientID }

// AuthMethod names the token endpoint's client authentication.
func (c *Client) AuthMethod() string { return c.cfg.AuthMethod }

// CloseIdleConnections closes the client's idle connections to the
// provider (a client replaced by a reload); requests in flight finish.
func (c *Client) CloseIdleConnections() { c.cfg.HTTPClient.CloseIdleConnections() }

// Provider is what discovery found, or nil before it succeeded.
func (c *Client) Provider() *Provider { return c.provider.Load() }

// DiscoverNow runs discovery once, now, and keeps what it found.
func (c *Client) DiscoverNow(ctx context.Context) error {
	op, err := c.Discover(ctx)
	if err != nil {
		return err
	}
	c.provider.Store(op)
	return nil
}

// Start runs discovery in the background, retrying with back-off (1 s
// doubling to 1 min) until it succeeds or ctx ends. Until then Provider
// is nil.
func (c *Client) Start(ctx context.Context) {
	go func() {
		delay := time.Second
		for {
			op, err := c.Discover(ctx)
			if err == nil {
				c.provider.Store(op)
				c.cfg.Log.Info("oidc discovery done", "issuer", c.cfg.Issuer,
					"end_session_endpoint", op.endSession != "", "iss_parameter", op.issParam)
				return
			}
			c.cfg.Log.Warn("oidc discovery failed; retrying", "issuer", c.cfg.Issuer, "in", delay, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, time.Minute)
		}
	}()
}

// Provider is what discovery found: built once, then read-only.
type Provider struct {
	c        *Client
	doc      discoveryExtra
	oidc     *oidc.Provider
	verifier *oidc.IDTokenVerifier
	keys     *keySet
	algs     map[string]bool // the asymmetric algorithms discovery names
	oauth    oauth2.Config
	// endSession is the end_session_endpoint, if discovery lists one.
	endSession string
	// issParam is authorization_response_iss_parameter_supported (RFC 9207):
	// when true, a callback without iss is refused.
	issParam bool
}

// discoveryExtra is the part of the discovery document go-oidc does not parse.
type discoveryExtra struct {
	EndSessionEndpoint string   `json:"end_session_endpoint"`
	IssParameter       bool     `json:"authorization_response_iss_parameter_supported"`
	JWKSURI            string   `json:"jwks_uri"`
	SigningAlgs        []string `json:"id_token_signing_alg_values_supported"`
	// IntrospectionEndpoint is RFC 7662's (RFC 8414 names it here).
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// asymmetricAlgs are the ID token algorithms accepted: never "none" and
// never an HMAC, whatever discovery lists.
var asymmetricAlgs = map[string]bool{
	oidc.RS256: true, oidc.RS384: true, oidc.RS512: true, oidc.ES256: true, oidc.ES384: true,
	oidc.ES512: true, oidc.PS256: true, oidc.PS384: true, oidc.PS512: true, oidc.EdDSA: true,
}

// Discover fetches the provider's metadata once. go-oidc refuses a
// document whose issuer differs from the configured one.
func (c *Client) Discover(ctx context.Context) (*Provider, error) {
	ctx, cancel := context.WithTimeout(c.context(ctx, "discovery"), c.cfg.Timeout)
	defer cancel()
	op, err := oidc.NewProvider(ctx, c.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var extra discoveryExtra
	if err := op.Claims(&extra); err != nil {
		return nil, fmt.Errorf("discovery document: %w", err)
	}
	if extra.EndSessionEndpoint != "" {
		if err := checkEndpoint(extra.EndSessionEndpoint); err != nil {
			return nil, fmt.Errorf("end_session_endpoint: %w", err)
		}
	}
	if err := checkEndpoint(extra.JWKSURI); err != nil {
		return nil, fmt.Errorf("jwks_uri: %w", err)
	}
	if extra.IntrospectionEndpoint != "" {
		if err := checkEndpoint(extra.IntrospectionEndpoint); err != nil {
			return nil, fmt.Errorf("introspection_endpoint: %w", err)
		}
	}
	return c.build(op, extra), nil
}

// Inherit takes over what prev's discovery found when prev is a client of
// the same issuer that has discovered it, so that a client built for new
// settings (a new secret, other scopes) needs no discovery of its own. It
// reports whether it did; the key set is fetched anew, when first needed.
func (c *Client) Inherit(prev *Client) bool {
	if prev == nil || prev.cfg.Issuer != c.cfg.Issuer {
		return false
	}
	op := prev.Provider()
	if op == nil {
		return false
	}
	c.provider.Store(c.build(op.oidc, op.doc))
	return true
}

// build is the Provider of a discovery document, for this client's
// settings.
func (c *Client) build(op *oidc.Provider, extra discoveryExtra) *Provider {
	var algs []string
	for _, a := range extra.SigningAlgs {
		if asymmetricAlgs[a] {
			algs = append(algs, a)
		}
	}
	keys := &keySet{
		remote:  oidc.NewRemoteKeySet(c.context(context.Background(), "jwks"), extra.JWKSURI),
		jwksURI: extra.JWKSURI,
		client:  c.cfg.HTTPClient,
		now:     c.cfg.Now,
	}
	ep := op.Endpoint()
	ep.AuthStyle = c.authStyle // never auto-detect: Authelia counts every refused attempt
	named := map[string]bool{}
	for _, a := range algs {
		named[a] = true
	}
	if len(named) == 0 {
		named[oidc.RS256] = true // OpenID Connect Discovery's default
	}
	return &Provider{
		c:          c,
		algs:       named,
		doc:        extra,
		oidc:       op,
		keys:       keys,
		verifier:   oidc.NewVerifier(c.cfg.Issuer, keys, &oidc.Config{ClientID: c.cfg.ClientID, Now: c.cfg.Now, SupportedSigningAlgs: algs}),
		endSession: extra.EndSessionEndpoint,
		issParam:   extra.IssParameter,
		oauth: oauth2.Config{
			ClientID:     c.cfg.ClientID,
			ClientSecret: c.cfg.ClientSecret,
			Endpoint:     ep,
			RedirectURL:  c.cfg.RedirectURL,
			Scopes:       c.cfg.Scopes,
		},
	}
}

func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("not an http(s) URL")
	}
	return nil
}

// EndSession is the provider's end_session_endpoint, or "".
func (p *Provider) EndSession() string { return p.endSession }

// IssParameter reports whether the provider promises iss on callbacks
// (RFC 9207).
func (p *Provider) IssParameter() bool { return p.issParam }

// AuthURL, TokenURL and UserinfoURL are the provider's endpoints
// (UserinfoURL may be "").
func (p *Provider) AuthURL() string     { return p.oauth.Endpoint.AuthURL }
func (p *Provider) TokenURL() string    { return p.oauth.Endpoint.TokenURL }
func (p *Provider) UserinfoURL() string { return p.oidc.UserInfoEndpoint() }

// AuthCodeURL is the authorization request for a sign-in with the given
// state and nonce, and the PKCE S256 challenge of verifier. The caller
// MUST make all three fresh for every sign-in and check them on the
// callback (state) and in Redeem (nonce, verifier).
func (p *Provider) AuthCodeURL(state, nonce, verifier string) string {
	return p.oauth.AuthCodeURL(state, oauth2.SetAuthURLParam("nonce", nonce), oauth2.S256ChallengeOption(verifier))
}

type endpointKey struct{}

type clientAddressKey struct{}

// WithClientAddress is ctx naming addr as the address of the browser a
// request to the provider is made for (a sign-in's code exchange), for the
// HTTPClient's transport to pass on as X-Forwarded-For: a provider that
// limits token requests per client address (Authelia) then charges a
// failed exchange to that browser's address, not to the proxy's, which
// every user shares.
func WithClientAddress(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, clientAddressKey{}, addr)
}

// ClientAddress is the address WithClientAddress put in ctx, or "".
func ClientAddress(ctx context.Context) string {
	a, _ := ctx.Value(clientAddressKey{}).(string)
	return a
}

// context is parent for the provider's endpoint (labelled for Endpoint),
// with the client go-oidc and x/oauth2 are to use.
func (c *Client) context(parent context.Context, endpoint string) context.Context {
	return oidc.ClientContext(context.WithValue(parent, endpointKey{}, endpoint), c.cfg.HTTPClient)
}

// Endpoint names the provider endpoint a request made by this package is
// for ("discovery", "token", "userinfo", "jwks"), or "" for another
// request: for the caller's metrics, in its HTTPClient's transport.
func Endpoint(ctx context.Context) string {
	e, _ := ctx.Value(endpointKey{}).(string)
	return e
}
