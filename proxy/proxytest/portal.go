package proxytest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// PortalSignIn signs user in at Authelia's portal by its API, as the
// portal's page does, from portal (the portal URL the authorization
// endpoint redirected to, with flow and flow_id), and returns the answer
// of the authorization endpoint that follows: a redirect to the client's
// callback with a code. c must not follow redirects and must keep
// cookies.
func (a *Authelia) PortalSignIn(c *http.Client, portal, user, password string) (*http.Response, error) {
	pu, err := url.Parse(portal)
	if err != nil {
		return nil, err
	}
	q := pu.Query()
	flow := map[string]any{"flow": q.Get("flow"), "flowID": q.Get("flow_id")}
	var ans struct {
		Status string `json:"status"`
		Data   struct {
			Redirect string `json:"redirect"`
		} `json:"data"`
	}
	if err := a.api(c, http.MethodPost, "/api/firstfactor", with(flow, map[string]any{"username": user, "password": password, "keepMeLoggedIn": false}), &ans); err != nil || ans.Status != "OK" {
		return nil, fmt.Errorf("authelia first factor: %v %+v", err, ans)
	}
	if ans.Data.Redirect == "" { // a second factor is needed
		secret := a.TOTP[user]
		if secret == "" {
			return nil, fmt.Errorf("authelia asks %s for a second factor, and the test gave none", user)
		}
		if err := a.api(c, http.MethodPost, "/api/secondfactor/totp", with(flow, map[string]any{"token": TOTPCode(secret, time.Now())}), &ans); err != nil || ans.Data.Redirect == "" {
			return nil, fmt.Errorf("authelia second factor: %v %+v", err, ans)
		}
	}
	resp, err := c.Get(ans.Data.Redirect)
	if err != nil {
		return nil, err
	}
	// offline_access makes Authelia ask for consent, whatever the client's
	// consent mode: the portal's consent page posts the decision.
	if loc, _ := url.Parse(resp.Header.Get("Location")); loc != nil && strings.HasPrefix(loc.Path, "/consent") {
		resp.Body.Close()
		return a.consent(c, loc.Query().Get("flow_id"))
	}
	return resp, nil
}

// consent accepts the consent of flow flowID as the portal's page does,
// and follows to the authorization endpoint's answer.
func (a *Authelia) consent(c *http.Client, flowID string) (*http.Response, error) {
	var info struct {
		Data struct {
			ClientID string `json:"client_id"`
		} `json:"data"`
	}
	if err := a.api(c, http.MethodGet, "/api/oidc/consent?flow_id="+url.QueryEscape(flowID), nil, &info); err != nil || info.Data.ClientID == "" {
		return nil, fmt.Errorf("authelia consent: %v", err)
	}
	var ans struct {
		Data struct {
			RedirectURI string `json:"redirect_uri"`
		} `json:"data"`
	}
	decision := map[string]any{"flow_id": flowID, "client_id": info.Data.ClientID, "consent": true, "pre_configure": false}
	if err := a.api(c, http.MethodPost, "/api/oidc/consent", decision, &ans); err != nil || ans.Data.RedirectURI == "" {
		return nil, fmt.Errorf("authelia consent decision: %v", err)
	}
	return c.Get(ans.Data.RedirectURI)
}

// api calls the portal's API as its page does (JSON, from its origin) and
// decodes the answer into out; an answer other than 200 is an error.
func (a *Authelia) api(c *http.Client, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.Issuer+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", a.Issuer)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: %w: %s", method, path, err, raw)
	}
	return nil
}

// with is m and more, merged.
func with(m, more map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// TOTPCode is the RFC 6238 code (SHA-1, 30 s, 6 digits) of a base32
// secret at t.
func TOTPCode(secret string, t time.Time) string {
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(secret))
	if err != nil {
		return ""
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(t.Unix()/30))
	m := hmac.New(sha1.New, key)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	code := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", code%1000000)
}

// Browser is an HTTP client as a browser navigates: cookies kept,
// redirects followed, Authelia's names dialled on loopback and its CA
// trusted; with from set, every request carries X-Forwarded-For: from (a
// trusted front proxy naming the client).
func (a *Authelia) Browser(from string) *http.Client {
	c := a.HTTPClient()
	tr := a.Transport()
	c.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		if from != "" {
			r.Header.Set("X-Forwarded-For", from)
		}
		if r.Header.Get("Accept") == "" { // a page load
			r.Header.Set("Accept", "text/html,application/xhtml+xml")
			r.Header.Set("Sec-Fetch-Mode", "navigate")
		}
		return tr.RoundTrip(r)
	})
	return c
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// SignIn opens page with browser c, which a proxy sends to Authelia to
// sign in; signs user in at the portal; and follows the redirects back to
// the page. It returns the last answer and its body.
func (a *Authelia) SignIn(c *http.Client, page, user, password string) (*http.Response, string, error) {
	nc := *c
	var portal string
	nc.CheckRedirect = func(r *http.Request, _ []*http.Request) error {
		if r.URL.Host == a.Host+":"+portOf(a.Issuer) && r.URL.Path == "/" {
			portal = r.URL.String()
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := nc.Get(page)
	if err != nil {
		return nil, "", err
	}
	resp.Body.Close()
	if portal == "" {
		return nil, "", fmt.Errorf("%s did not lead to Authelia's portal (ended at %s with %d)", page, resp.Request.URL, resp.StatusCode)
	}
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err = a.PortalSignIn(&nc, portal, user, password)
	if err != nil {
		return nil, "", err
	}
	resp.Body.Close()
	next := resp.Header.Get("Location")
	if next == "" {
		return resp, "", fmt.Errorf("authelia's authorization answered %d without a redirect", resp.StatusCode)
	}
	resp, err = c.Get(next)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

func portOf(u string) string {
	pu, _ := url.Parse(u)
	return pu.Port()
}
