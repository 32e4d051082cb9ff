package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// maxIdPResponse bounds every response body read from the provider.
const maxIdPResponse = 1 << 20

// provider is what discovery found: built once, then read-only.
type provider struct {
	oidc     *oidc.Provider
	verifier *oidc.IDTokenVerifier
	keys     *keySet
	client   *http.Client
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
}

// asymmetricAlgs are the ID token algorithms accepted: never "none" and
// never an HMAC, whatever discovery lists.
var asymmetricAlgs = map[string]bool{
	oidc.RS256: true, oidc.RS384: true, oidc.RS512: true, oidc.ES256: true, oidc.ES384: true,
	oidc.ES512: true, oidc.PS256: true, oidc.PS384: true, oidc.PS512: true, oidc.EdDSA: true,
}

// discover fetches the provider's metadata once. go-oidc refuses a
// document whose issuer differs from the configured one.
func (p *Proxy) discover(ctx context.Context) (*provider, error) {
	ctx, cancel := context.WithTimeout(oidc.ClientContext(withIdPEndpoint(ctx, "discovery"), p.idpClient), p.idpTimeout)
	defer cancel()
	op, err := oidc.NewProvider(ctx, p.issuer)
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
	var algs []string
	for _, a := range extra.SigningAlgs {
		if asymmetricAlgs[a] {
			algs = append(algs, a)
		}
	}
	keys := &keySet{
		remote:  oidc.NewRemoteKeySet(oidc.ClientContext(withIdPEndpoint(context.Background(), "jwks"), p.idpClient), extra.JWKSURI),
		jwksURI: extra.JWKSURI,
		client:  p.idpClient,
	}
	ep := op.Endpoint()
	ep.AuthStyle = p.authStyle // never auto-detect: Authelia counts every refused attempt
	return &provider{
		oidc:       op,
		keys:       keys,
		client:     p.idpClient,
		verifier:   oidc.NewVerifier(p.issuer, keys, &oidc.Config{ClientID: p.clientID, Now: p.now, SupportedSigningAlgs: algs}),
		endSession: extra.EndSessionEndpoint,
		issParam:   extra.IssParameter,
		oauth: oauth2.Config{
			ClientID:     p.clientID,
			ClientSecret: p.clientSecret,
			Endpoint:     ep,
			RedirectURL:  p.callbackURL,
			Scopes:       p.scopes,
		},
	}, nil
}

func checkEndpoint(s string) error {
	u, err := parseAbsolute(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("not an http(s) URL")
	}
	return nil
}

// Start runs discovery in the background, retrying with back-off (1 s
// doubling to 1 min) until it succeeds or ctx ends. Until then Ready
// reports false and sign-ins answer 503; sessions already held keep working.
// With the Redis store it also follows the store's announcements until ctx
// ends.
func (p *Proxy) Start(ctx context.Context) {
	if p.bridge != nil && p.bridge.adminToken != "" {
		go p.registerInBackground(ctx)
	}
	go p.store.Run(ctx)
	go func() {
		delay := time.Second
		for {
			op, err := p.discover(ctx)
			if err == nil {
				p.provider.Store(op)
				p.log.Info("oidc discovery done", "issuer", p.issuer,
					"end_session_endpoint", op.endSession != "", "iss_parameter", op.issParam)
				return
			}
			p.log.Warn("oidc discovery failed; retrying", "issuer", p.issuer, "in", delay, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(delay*2, time.Minute)
		}
	}()
}

// Ready reports whether discovery has succeeded.
func (p *Proxy) Ready() bool { return p.provider.Load() != nil }

// NewIdPClient builds the HTTP client for talking to the provider: the
// system roots plus the PEM bundle caFile (if any), a timeout on every
// request, no redirects followed, and response bodies capped at 1 MiB.
func NewIdPClient(caFile string, timeout time.Duration) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pool, err := rootsWith(caFile, "ca_file")
		if err != nil {
			return nil, err
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{
		Transport: limitTransport{t},
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

// limitTransport makes reading past maxIdPResponse bytes of a body an error.
type limitTransport struct{ next http.RoundTripper }

func (t limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxIdPResponse}
	return resp, nil
}

var errBodyTooLarge = fmt.Errorf("proxy: provider response larger than %d bytes", maxIdPResponse)

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// keySet verifies ID token signatures with go-oidc's RemoteKeySet (cached,
// refetched when an unknown kid appears), and first refuses a token that
// names no kid while the provider publishes several keys (OpenID Connect
// Core 10.1: then kid is required).
type keySet struct {
	remote  *oidc.RemoteKeySet
	jwksURI string
	client  *http.Client
}

func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	kid, err := jwtKeyID(jwt)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		n, err := k.countKeys(ctx)
		if err != nil {
			return nil, err
		}
		if n != 1 {
			return nil, fmt.Errorf("the ID token names no kid and the provider publishes %d keys", n)
		}
	}
	return k.remote.VerifySignature(ctx, jwt)
}

// jwtKeyID reads the kid from a compact JWS header.
func jwtKeyID(jwt string) (string, error) {
	head, _, ok := strings.Cut(jwt, ".")
	if !ok || len(head) > 4096 {
		return "", errors.New("malformed JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return "", fmt.Errorf("malformed JWT header: %w", err)
	}
	var h struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return "", fmt.Errorf("malformed JWT header: %w", err)
	}
	return h.KID, nil
}

func (k *keySet) countKeys(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(withIdPEndpoint(ctx, "jwks"), http.MethodGet, k.jwksURI, nil)
	if err != nil {
		return 0, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("fetch JWKS: status %d", resp.StatusCode)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return 0, fmt.Errorf("fetch JWKS: %w", err)
	}
	return len(set.Keys), nil
}

// userinfo reads the userinfo endpoint with the access token: a JSON
// object, or a JWT signed with one of the provider's keys.
func (op *provider) userinfo(ctx context.Context, accessToken string) (map[string]json.RawMessage, error) {
	req, err := http.NewRequestWithContext(withIdPEndpoint(ctx, "userinfo"), http.MethodGet, op.oidc.UserInfoEndpoint(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := op.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch mediaType {
	case "application/json":
	case "application/jwt":
		if body, err = op.keys.VerifySignature(ctx, strings.TrimSpace(string(body))); err != nil {
			return nil, fmt.Errorf("signed userinfo: %w", err)
		}
	default:
		return nil, fmt.Errorf("content type %q is neither JSON nor a JWT", mediaType)
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(body, &claims); err != nil || claims == nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	return claims, nil
}

// rootsWith is the system roots plus the PEM bundle in caFile, the
// configuration key key names in errors.
func rootsWith(caFile, key string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("proxy: %s: %w", key, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("proxy: %s %s holds no PEM certificate", key, caFile)
	}
	return pool, nil
}
