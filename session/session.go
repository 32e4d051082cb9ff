// Package session holds a signed-in user's session, the cookie codec that
// carries it (encrypted, signed, chunked, with key rotation), and the
// Store that keeps sessions: in the cookie itself, or in Redis behind a
// ticket cookie (see Store and Open). Only Open decides which store runs.
//
// It imports no package of this project.
package session

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Session is one signed-in user. It holds what the proxy needs on every
// request and nothing more: no access token, and a refresh token only when
// the scopes asked for offline_access.
type Session struct {
	// Subject is the provider's sub claim.
	Subject string `json:"sub"`
	// Claims are the claims the header mapping needs, flattened to header
	// values (lists joined with ","); see proxy's claim rules.
	Claims map[string]string `json:"c,omitempty"`
	// User, Email and Groups are kept for access rules, and only when
	// rules need them: preferred_username, a verified email, and the
	// groups as a list (a group name may hold a comma).
	User   string   `json:"u,omitempty"`
	Email  string   `json:"e,omitempty"`
	Groups []string `json:"g,omitempty"`
	// Born is when the session was created, in Unix milliseconds: a
	// back-channel logout ends the sessions born before it, and a sign-in
	// right after it (the same second) must survive.
	Born int64 `json:"born,omitempty"`
	// SID is the provider's session id (the ID token's sid), for
	// back-channel logout.
	SID string `json:"sid,omitempty"`
	// IDToken is kept only when the provider has an end_session_endpoint,
	// for its id_token_hint.
	IDToken string `json:"idt,omitempty"`
	// Created and Expires are Unix seconds.
	Created int64 `json:"iat"`
	Expires int64 `json:"exp"`
	// RefreshToken renews the claims at RefreshAt (Unix seconds), shortly
	// before the access token they came with expires.
	RefreshToken string `json:"rt,omitempty"`
	RefreshAt    int64  `json:"rat,omitempty"`
	// Seen is when the user was last active, Unix seconds, kept up to date
	// only when sessions have an idle timeout.
	Seen int64 `json:"seen,omitempty"`
}

// LastSeen is Seen, or Created for a session that never recorded it.
func (s *Session) LastSeen() int64 {
	if s.Seen != 0 {
		return s.Seen
	}
	return s.Created
}

// Claim is the value of a claim the session keeps, as a header carries
// it. The groups claim is kept once, as the Groups list, when it is the
// same: its value is then the list joined with ",".
func (s *Session) Claim(name string) string {
	if v, ok := s.Claims[name]; ok || name != "groups" || s.Groups == nil {
		return v
	}
	return strings.Join(s.Groups, ",")
}

// UserName names the user in logs and pages: the preferred_username
// claim, else the user the access rules read, else the subject.
func (s *Session) UserName() string {
	if u := s.Claims["preferred_username"]; u != "" {
		return u
	}
	if s.User != "" {
		return s.User
	}
	return s.Subject
}

// Valid reports whether s is complete and unexpired at now.
func (s *Session) Valid(now time.Time) bool {
	return s.Subject != "" && now.Unix() < s.Expires
}

// Marshal encodes s for a cookie.
func (s *Session) Marshal() ([]byte, error) { return json.Marshal(s) }

// Unmarshal decodes a session written by Marshal.
func Unmarshal(b []byte) (*Session, error) {
	var s Session
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return &s, nil
}
