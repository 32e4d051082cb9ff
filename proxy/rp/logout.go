package rp

import (
	"context"
	"errors"
	"time"
)

// MaxLogoutTokenAge bounds how old (by iat) a logout token may be.
const MaxLogoutTokenAge = 10 * time.Minute

// Logout is a verified back-channel logout token (OpenID Connect
// Back-Channel Logout 1.0).
type Logout struct {
	JTI, Subject, SID string
}

// VerifyLogout verifies a logout token: signature, issuer, audience, the
// events claim and no nonce (go-oidc), iat no older than
// MaxLogoutTokenAge and not in the future, and azp, when present, this
// client. The caller MUST refuse a jti it has seen before.
func (p *Provider) VerifyLogout(ctx context.Context, raw string) (*Logout, error) {
	ctx = context.WithValue(context.WithValue(ctx, endpointKey{}, "jwks"), outsiderKey{}, true)
	lt, err := p.verifier.VerifyLogout(ctx, raw)
	if err != nil {
		return nil, err
	}
	now := p.c.cfg.Now()
	if lt.IssuedAt.After(now.Add(maxClockSkew)) || lt.IssuedAt.Before(now.Add(-MaxLogoutTokenAge)) {
		return nil, errors.New("logout token iat is out of range")
	}
	var c struct {
		AZP string `json:"azp"`
	}
	if err := lt.Claims(&c); err == nil && c.AZP != "" && c.AZP != p.c.cfg.ClientID {
		return nil, errors.New("logout token azp is not this client")
	}
	return &Logout{JTI: lt.TokenID, Subject: lt.Subject, SID: lt.SessionID}, nil
}
