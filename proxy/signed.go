package proxy

import (
	"log/slog"
	"net/http"
	"net/textproto"
	"sort"
	"sync/atomic"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/assertion"
	"github.com/oidc-proxy/oidc-proxy/session"
)

// A setter sets what the upstream learns of an identity in the outgoing
// headers: the identity headers, the signed identity.
type setter interface {
	fill(h http.Header, id *Identity)
}

func (h identityHeaders) fill(hdr http.Header, id *Identity) { h.inject(hdr, id) }

// signedIdentity sends the identity as a short-lived JWT in one header
// (identity_jwt). Each session's token is signed once and reused until
// half its lifetime has passed; a renewed session (refresh) is a new
// Identity and gets a new token.
type signedIdentity struct {
	signer   *assertion.Signer
	header   string // canonical
	iss, aud string
	lifetime time.Duration
	claims   []jwtClaim // sorted by name
	now      func() time.Time
	log      *slog.Logger
}

type jwtClaim struct{ name, from string }

// signedToken is a token made for one Identity.
type signedToken struct {
	value   []string // shared by the requests it goes with: never modified
	renewAt int64    // Unix s
}

func newSignedIdentity(c *config.IdentityJWT, iss string, now func() time.Time, log *slog.Logger) (*signedIdentity, error) {
	signer, err := assertion.LoadKeys(c.Algorithm, c.KeyFiles)
	if err != nil {
		return nil, err
	}
	s := &signedIdentity{signer: signer, header: textproto.CanonicalMIMEHeaderKey(c.Header), iss: iss,
		aud: c.Audience, lifetime: c.Lifetime, now: now, log: log}
	for name, from := range c.Claims {
		s.claims = append(s.claims, jwtClaim{name, from})
	}
	sort.Slice(s.claims, func(i, j int) bool { return s.claims[i].name < s.claims[j].name })
	return s, nil
}

// sessionClaims lists the session claims the tokens read.
func (s *signedIdentity) sessionClaims() []string {
	out := make([]string, 0, len(s.claims))
	for _, c := range s.claims {
		out = append(out, c.from)
	}
	return out
}

// listsGroups reports whether a token carries the groups list.
func (s *signedIdentity) listsGroups() bool {
	for _, c := range s.claims {
		if c.from == "groups" {
			return true
		}
	}
	return false
}

func (s *signedIdentity) fill(h http.Header, id *Identity) {
	now := s.now()
	if t := id.token.Load(); t != nil && now.Unix() < t.renewAt {
		h[s.header] = t.value
		return
	}
	claims := s.claimsOf(id.session)
	if b := id.bearer; b != nil { // marked, so that an application can tell
		claims["auth"] = "bearer"
		claims["client_id"] = b.client[0]
		if b.scopes[0] != "" {
			claims["scope"] = b.scopes[0]
		}
	}
	token, err := s.signer.Sign(s.iss, s.aud, id.session.Subject, now, s.lifetime, claims)
	if err != nil {
		// Fail closed: without the header the application refuses.
		s.log.Error("identity JWT: signing failed; the request goes without it", "err", err)
		return
	}
	t := &signedToken{value: []string{token}, renewAt: now.Add(s.lifetime / 2).Unix()}
	id.token.Store(t)
	h[s.header] = t.value
}

// claimsOf are the mapped claims of a session: groups as a list, the rest
// as strings; a claim the session lacks is left out.
func (s *signedIdentity) claimsOf(ses *session.Session) assertion.Claims {
	out := assertion.Claims{}
	for _, c := range s.claims {
		if c.from == "groups" {
			if ses.Groups != nil {
				out[c.name] = ses.Groups
			}
			continue
		}
		if v := ses.Claim(c.from); v != "" {
			out[c.name] = v
		}
	}
	return out
}

// tokenSlot holds the signed identity made for an Identity, when the route signs.
type tokenSlot = atomic.Pointer[signedToken]

// keySet publishes the keys every route's signed identity signs with, or
// is nil when no route signs one.
func (p *Proxy) keySet() http.Handler {
	var signers []*assertion.Signer
	for _, rt := range p.routes.routes {
		for _, si := range rt.signed {
			signers = append(signers, si.signer)
		}
	}
	switch len(signers) {
	case 0:
		return nil
	case 1:
		return signers[0]
	}
	return assertion.KeySet(signers...)
}
