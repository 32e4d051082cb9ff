package proxy

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/session"
)

// accessRules say which signed-in users may reach the upstream; see
// config.Access.
type accessRules struct {
	users, groups, domains map[string]bool
}

func newAccessRules(c config.Access) accessRules {
	set := func(list []string, fold bool) map[string]bool {
		if len(list) == 0 {
			return nil
		}
		m := make(map[string]bool, len(list))
		for _, v := range list {
			if fold {
				v = strings.ToLower(v)
			}
			m[v] = true
		}
		return m
	}
	return accessRules{set(c.AllowedUsers, false), set(c.AllowedGroups, false), set(c.AllowedEmailDomains, true)}
}

// claims lists the claims the rules read.
func (a accessRules) claims() []string {
	var out []string
	if a.users != nil {
		out = append(out, "preferred_username")
	}
	if a.domains != nil {
		out = append(out, "email", "email_verified")
	}
	if a.groups != nil {
		out = append(out, "groups")
	}
	return out
}

// open reports whether every signed-in user is allowed.
func (a accessRules) open() bool { return a.users == nil && a.groups == nil && a.domains == nil }

func (a accessRules) allows(s *session.Session) bool {
	if a.open() {
		return true
	}
	if s.User != "" && a.users[s.User] {
		return true
	}
	for _, g := range s.Groups {
		if a.groups[g] {
			return true
		}
	}
	if i := strings.LastIndexByte(s.Email, '@'); i >= 0 && a.domains[strings.ToLower(s.Email[i+1:])] {
		return true
	}
	return false
}

// fill copies into s the claims the rules need: the user, a verified
// email, and the groups as a list.
func (a accessRules) fill(s *session.Session, claims map[string]json.RawMessage) {
	if a.users != nil {
		json.Unmarshal(claims["preferred_username"], &s.User)
	}
	if a.domains != nil {
		var verified *bool
		json.Unmarshal(claims["email_verified"], &verified)
		if verified == nil || *verified {
			json.Unmarshal(claims["email"], &s.Email)
		}
	}
	if a.groups != nil {
		s.Groups = groupsOf(claims["groups"])
	}
}

// groupsOf reads a groups claim: a list of strings, or one string as one
// group; anything else is no groups.
func groupsOf(raw json.RawMessage) []string {
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	var one string
	if json.Unmarshal(raw, &one) == nil && one != "" {
		return []string{one}
	}
	return nil
}

// forbidden answers a signed-in user whom the access rules keep out.
func (p *Proxy) forbidden(w http.ResponseWriter, r *http.Request, s *session.Session) {
	w.Header().Set("Cache-Control", "no-store")
	if !wantsHTML(r) {
		WriteJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden", "message": "this user may not use this application", "user": s.UserName()})
		return
	}
	p.htmlPage(w, http.StatusForbidden, "forbidden", map[string]string{"title": "Access denied", "user": s.UserName(), "sign_out_url": Prefix + "sign_out"})
}
