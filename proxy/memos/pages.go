package memos

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/oidc-proxy/oidc-proxy/proxy"
	"github.com/oidc-proxy/oidc-proxy/session"
)

// With the bridge on, the proxy answers some of Memos's own pages and
// calls: Memos's sign-in page signs the user in through the bridge, its
// password sign-in is closed unless allowed, and its sign-out button ends
// the proxy session too.

// memosIntercept answers what the bridge takes over from Memos, and
// reports whether it did. id is the request's identity, or nil.
func (b *Bridge) memosIntercept(w http.ResponseWriter, r *http.Request, id *proxy.Identity) bool {
	path := r.URL.Path
	switch {
	case path == "/auth" && proxy.IsNavigation(r):
		if id == nil {
			if c, err := r.Cookie(b.outCookie); err == nil && c.Value != "" {
				// The user pressed Memos's sign-out: on to the provider's.
				b.k.SignOut(w, r)
				return true
			}
			return false // signs in, then comes back here
		}
		if !id.Allowed() {
			return false
		}
		err := b.handOverMemos(w, r, id.Session())
		if err == nil {
			http.Redirect(w, r, proxy.CleanReturnURL(r.URL.Query().Get("redirect")), http.StatusFound)
			return true
		}
		if b.allowPassword {
			// Memos's own page, for the admin setting Memos up.
			b.k.Log.Warn("memos bridge: Memos refused the sign-in; showing its own sign-in page (allow_password_sign_in)", "err", err)
			return false
		}
		b.memosFailed(w, r, err)
		return true
	case !b.allowPassword && (path == "/auth/admin" || path == "/auth/signup") && proxy.IsNavigation(r):
		http.Redirect(w, r, "/auth", http.StatusFound)
		return true
	case !b.allowPassword && isCreateUser(r) && !b.adminCaller(r):
		b.k.Log.Warn("memos bridge: sign-up refused (memos.allow_password_sign_in is off)", "path", path, "client", b.k.ClientIP(r))
		proxy.WriteJSON(w, http.StatusForbidden, map[string]string{"code": "permission_denied", "message": "sign-up is off: use single sign-on"})
		return true
	case !b.allowPassword && r.Method == http.MethodPost && isMemosAuthCall(path) && passwordSignIn(r):
		b.k.Log.Warn("memos bridge: password sign-in refused (memos.allow_password_sign_in is off)", "path", path, "client", b.k.ClientIP(r))
		proxy.WriteJSON(w, http.StatusForbidden, map[string]string{"code": "permission_denied", "message": "password sign-in is off: use single sign-on"})
		return true
	}
	return false
}

// isMemosAuthCall reports whether path is one of Memos's sign-in methods
// (Connect or REST, any version's name for it).
func isMemosAuthCall(path string) bool {
	return strings.HasPrefix(path, "/memos.api.v1.AuthService/") || strings.HasPrefix(path, "/api/v1/auth")
}

// isMemosSignOut reports whether a request is Memos's sign-out.
func isMemosSignOut(r *http.Request) bool {
	switch r.URL.Path {
	case "/memos.api.v1.AuthService/SignOut", "/memos.api.v1.AuthService/DeleteSession":
		return r.Method == http.MethodPost
	case "/api/v1/auth/signout", "/api/v1/auth/sessions/current":
		return r.Method == http.MethodPost || r.Method == http.MethodDelete
	}
	return false
}

// passwordSignIn reads the JSON body of r (it stays readable for the
// upstream) and reports whether it carries password credentials. A body
// that cannot be read or is not JSON counts as one: refused, not passed.
func passwordSignIn(r *http.Request) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil || len(body) > 64<<10 {
		return true
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return len(bytes.TrimSpace(body)) > 0
	}
	for k := range fields {
		if strings.EqualFold(strings.ReplaceAll(k, "_", ""), "passwordcredentials") {
			return true
		}
	}
	return false
}

// handOverMemos signs the user of s into Memos and puts the Memos session
// in w: its cookie set, and every trace of an earlier Memos user in the
// browser's storage cleared. When Memos refuses it writes nothing and
// returns why.
func (b *Bridge) handOverMemos(w http.ResponseWriter, r *http.Request, s *session.Session) error {
	u, ok := b.userOf(s)
	if !ok {
		return errMissingUsername(b.usernameClaim)
	}
	cookies, err := b.memosSignIn(r.Context(), s, u, r)
	if err != nil {
		return err
	}
	for _, c := range cookies {
		w.Header().Add("Set-Cookie", c)
	}
	b.clearOut(w)
	w.Header().Set("Clear-Site-Data", `"storage"`)
	w.Header().Set("Cache-Control", "no-store")
	return nil
}

type errMissingUsername string

func (e errMissingUsername) Error() string {
	return "the session has no " + string(e) + " claim to sign into Memos with"
}

// clearOut drops the mark of Memos's sign-out button.
func (b *Bridge) clearOut(w http.ResponseWriter) {
	c := &http.Cookie{Name: b.outCookie, Path: "/", MaxAge: -1, HttpOnly: true, Secure: b.https, SameSite: http.SameSiteLaxMode}
	w.Header().Add("Set-Cookie", c.String())
}

// memosSignedOut runs when Memos answered its sign-out through the proxy:
// the proxy session ends too, and the browser is marked so that the
// sign-in page it goes to next sends it to the provider's sign-out.
func (b *Bridge) memosSignedOut(resp *http.Response) {
	r := resp.Request
	id := proxy.IdentityFrom(r.Context())
	b.k.EndSession(headerOnly{resp.Header}, r, id)
	if id != nil {
		b.k.Log.Info("sign-out (Memos's button)", "user", id.Session().UserName(), "sub", id.Session().Subject, "client", b.k.ClientIP(r))
	}
	c := &http.Cookie{Name: b.outCookie, Value: "1", Path: "/", MaxAge: 300, HttpOnly: true, Secure: b.https, SameSite: http.SameSiteLaxMode}
	resp.Header.Add("Set-Cookie", c.String())
}

// headerOnly is a ResponseWriter that only collects headers, for the
// cookie codec to write into an upstream's response.
type headerOnly struct{ h http.Header }

func (w headerOnly) Header() http.Header         { return w.h }
func (w headerOnly) Write(b []byte) (int, error) { return len(b), nil }
func (w headerOnly) WriteHeader(int)             {}

// memosAfterSignIn signs a user who just signed in at the provider into
// Memos, in the response that sends them on, and returns where to send
// them: Memos's sign-in page is no destination any more. When Memos
// refuses, the user goes on (Memos's page will try again and explain).
func (b *Bridge) memosAfterSignIn(w http.ResponseWriter, r *http.Request, s *session.Session, dest string) string {
	if path, query, _ := strings.Cut(dest, "?"); path == "/auth" {
		dest = "/"
		if q, err := url.ParseQuery(query); err == nil && q.Get("redirect") != "" {
			dest = proxy.CleanReturnURL(q.Get("redirect"))
		}
	}
	if err := b.handOverMemos(w, r, s); err != nil {
		b.k.Log.Error("memos bridge: signing the user into Memos failed", "err", err, "user", s.UserName())
	}
	return dest
}
