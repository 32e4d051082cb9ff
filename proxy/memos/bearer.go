package memos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy"
	"github.com/oidc-proxy/oidc-proxy/session"
)

// How long Memos's answer about a bearer token is kept.
const (
	bearerValidFor   = time.Minute
	bearerInvalidFor = 30 * time.Second
)

// bearerChecker asks Memos whether a bearer token belongs to an active
// user (AuthService/GetCurrentUser with that token), and caches the
// answer by the token's SHA-256, never the token.
type bearerChecker struct {
	url       string // …/memos.api.v1.AuthService/GetCurrentUser
	transport http.RoundTripper
	timeout   time.Duration
	cache     *session.Cache[bool]
}

func newBearerChecker(memosURL string, transport http.RoundTripper) *bearerChecker {
	return &bearerChecker{
		url:       strings.TrimRight(memosURL, "/") + "/memos.api.v1.AuthService/GetCurrentUser",
		transport: transport,
		timeout:   5 * time.Second,
		cache:     session.NewCache[bool](0),
	}
}

// bearerToken returns the token of an Authorization: Bearer header, or "".
func bearerToken(r *http.Request) string {
	v := r.Header.Get("Authorization")
	if len(v) > 7 && strings.EqualFold(v[:7], "Bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}

// valid reports whether Memos confirms the token. An error means Memos
// could not say (unreachable, 5xx): the request must not pass.
func (b *bearerChecker) valid(ctx context.Context, token string, now time.Time) (bool, error) {
	sum := sha256.Sum256([]byte(token))
	key := hex.EncodeToString(sum[:])
	if ok, hit := b.cache.Get(key, now); hit {
		return ok, nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url, strings.NewReader("{}"))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := b.transport.RoundTrip(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 500:
		return false, fmt.Errorf("memos answered %s", resp.Status)
	case resp.StatusCode != http.StatusOK:
		b.cache.Put(key, false, now.Add(bearerInvalidFor).Unix())
		return false, nil
	}
	var answer struct {
		User *struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"user"`
	}
	ok := json.Unmarshal(body, &answer) == nil && answer.User != nil && answer.User.Name != "" &&
		(answer.User.State == "" || answer.User.State == "NORMAL")
	until := now.Add(bearerInvalidFor)
	if ok {
		until = now.Add(bearerValidFor)
	}
	b.cache.Put(key, ok, until.Unix())
	return ok, nil
}

// Bearers lets a request without a proxy session pass when it carries a
// bearer token that Memos confirms (a personal access token, say), without
// identity headers (memos.pass_bearer_tokens). Memos counts an unknown
// token as anonymous, so nothing passes unconfirmed.
type Bearers struct {
	proxy.NoOps
	memosURL string // "": the route's upstream
	k        proxy.Kit
	check    *bearerChecker
}

// Provision implements proxy.Integration.
func (b *Bearers) Provision(k proxy.Kit) error {
	b.k = k
	u := b.memosURL
	if u == "" {
		u = k.Upstream.String()
	}
	b.check = newBearerChecker(u, k.Transport)
	return nil
}

// Anonymous implements proxy.Integration: a request with a bearer token
// passes, without identity, only if Memos confirms the token.
func (b *Bearers) Anonymous(w http.ResponseWriter, r *http.Request, forward http.Handler) bool {
	token := bearerToken(r)
	if token == "" {
		return false
	}
	ok, err := b.check.valid(r.Context(), token, b.k.Now())
	switch {
	case err != nil:
		b.k.Log.Warn("memos: could not check a bearer token", "err", err)
		proxy.WriteJSON(w, http.StatusBadGateway, map[string]string{"error": "bad_gateway", "message": "the application is not answering"})
	case !ok:
		b.k.Log.Info("memos: bearer token refused", "client", b.k.ClientIP(r))
		proxy.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated", "message": "the bearer token is not valid"})
	default:
		forward.ServeHTTP(w, r)
	}
	return true
}
