package memos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// memosAccount is what Memos says of one of its users.
type memosAccount struct {
	Name        string `json:"name"` // users/NAME
	Username    string `json:"username"`
	Role        string `json:"role"` // ADMIN or USER
	DisplayName string `json:"displayName"`
	Email       string `json:"email"`
}

// keepInStep brings the Memos account of a user who just signed in
// through the bridge in step with the provider: the role from the groups
// (memos.admin_groups, when set), the display name and the email (when
// the provider sent them and they changed). A claim that is missing never
// blanks what Memos has, settings the user changed in Memos are never
// touched, and the setup account is never changed (the bridge's accounts
// are the ones Memos linked to the proxy's SSO).
func (b *Bridge) keepInStep(ctx context.Context, s *session.Session, a memosAccount) {
	if a.Username == "" || strings.EqualFold(a.Username, b.adminUsername) {
		return
	}
	user := map[string]string{"name": "users/" + a.Username}
	var mask []string
	role := ""
	if len(b.adminGroups) > 0 {
		role = "USER"
		for _, g := range s.Groups {
			if b.adminGroups[g] {
				role = "ADMIN"
				break
			}
		}
		if role != a.Role {
			user["role"] = role
			mask = append(mask, "role")
		}
	}
	if name := s.Claims["name"]; name != "" && name != a.DisplayName {
		user["displayName"] = name
		mask = append(mask, "displayName")
	}
	if email := s.Claims["email"]; email != "" && !strings.EqualFold(email, a.Email) {
		user["email"] = email
		mask = append(mask, "email")
	}
	if len(mask) == 0 {
		return
	}
	token := b.token()
	if token == "" {
		b.k.Log.Warn("memos bridge: the Memos account is not in step with the provider, and the proxy has no admin token to change it", "user", a.Username, "fields", strings.Join(mask, ","))
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := b.call(ctx, "UserService/UpdateUser", map[string]any{"user": user, "updateMask": strings.Join(mask, ",")},
		http.Header{"Authorization": {"Bearer " + token}}, nil); err != nil {
		b.k.Log.Warn("memos bridge: updating the Memos account failed", "user", a.Username, "fields", strings.Join(mask, ","), "err", err)
		return
	}
	if slices.Contains(mask, "role") {
		b.k.Log.Info("memos role changed", "user", a.Username, "role", role)
	}
	if len(mask) > 1 || mask[0] != "role" {
		b.k.Log.Info("memos profile updated", "user", a.Username, "fields", strings.Join(slices.DeleteFunc(mask, func(f string) bool { return f == "role" }), ","))
	}
}

// isCreateUser reports whether r is Memos's UserService/CreateUser, by
// Connect or REST, in any spelling a router might accept.
func isCreateUser(r *http.Request) bool {
	p := strings.ToLower(strings.TrimSuffix(r.URL.Path, "/"))
	return r.Method == http.MethodPost && (p == "/memos.api.v1.userservice/createuser" || p == "/api/v1/users")
}

// adminCaller reports whether Memos confirms that r's bearer token
// belongs to an admin (GetCurrentUser with it); the answer is cached for
// a minute by the token's hash. Memos counts an invalid token as
// anonymous, so anything unconfirmed is no admin.
func (b *Bridge) adminCaller(r *http.Request) bool {
	token := bearerToken(r)
	if token == "" {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	key := hex.EncodeToString(sum[:])
	now := b.k.Now()
	if ok, hit := b.admins.Get(key, now); hit {
		return ok
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var me struct {
		User memosAccount `json:"user"`
	}
	_, err := b.call(ctx, "AuthService/GetCurrentUser", map[string]any{}, http.Header{"Authorization": {"Bearer " + token}}, &me)
	ok := err == nil && me.User.Role == "ADMIN"
	if err == nil || ok {
		b.admins.Put(key, ok, now.Add(time.Minute).Unix())
	}
	return ok
}
