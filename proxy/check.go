package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Check reaches the provider's discovery and every route's upstream once,
// as `oidc-proxy -check` does, and says what it found, a line per finding.
// The error names what could not be reached or did not fit.
func (p *Proxy) Check(ctx context.Context) ([]string, error) {
	p = p.sh.live.Load()
	var found []string
	var errs []error
	issuer := p.oidc.Issuer()
	err := p.oidc.DiscoverNow(ctx) // kept: integrations' checks read the endpoints
	op := p.oidc.Provider()
	if err != nil {
		errs = append(errs, fmt.Errorf("provider %s: %w", issuer, err))
	} else {
		found = append(found,
			"provider "+issuer+": discovery matches the issuer",
			"  authorization endpoint "+op.AuthURL(),
			"  token endpoint "+op.TokenURL()+" (client authentication: "+p.oidc.AuthMethod()+")",
			"  userinfo endpoint "+orNone(op.UserinfoURL()),
			"  end_session_endpoint "+orNone(op.EndSession()),
			fmt.Sprintf("  iss on the callback (RFC 9207): %v", op.IssParameter()),
		)
		if op.EndSession() == "" && p.logoutURL == "" {
			found = append(found, "  note: no end_session_endpoint and no oidc.logout_url: sign-out ends only the proxy's session")
		}
		// The client's registration, as a sign-in would meet it.
		if err := op.ProbeAuthorization(ctx); err != nil {
			errs = append(errs, fmt.Errorf("provider %s: the authorization request is refused: %w", issuer, err))
		} else {
			found = append(found, "  the client, its callback "+p.external.String()+Prefix+"callback and scopes: accepted")
		}
		if err := op.ProbeClient(ctx); err != nil {
			errs = append(errs, fmt.Errorf("provider %s: the client's credentials are refused: %w", issuer, err))
		} else {
			found = append(found, "  the client's credentials: accepted (checked with a made-up code, which the provider refuses after it authenticated the client)")
		}
	}
	for _, rt := range p.routes.routes {
		label := "upstream " + rt.upstream.String()
		if !p.single() {
			label = "route " + rt.name + ": " + label
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rt.upstream.String(), nil)
		if err == nil {
			var resp *http.Response
			if resp, err = rt.forward.Transport.RoundTrip(req); err == nil {
				resp.Body.Close()
				found = append(found, fmt.Sprintf("%s: answers (%s)", label, resp.Status))
			}
		}
		if err != nil {
			found = append(found, label+": does not answer")
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
		}
	}
	if line, err := p.store.Check(ctx); err != nil {
		errs = append(errs, err)
	} else if line != "" {
		found = append(found, line)
	}
	for _, rt := range p.routes.routes {
		for _, in := range rt.integrations {
			found = append(found, in.Check(ctx)...)
		}
	}
	return found, errors.Join(errs...)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
