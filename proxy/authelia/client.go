package authelia

import (
	"fmt"
	"strings"
)

// Client is an OpenID Connect client registration for Authelia 4.39, as
// the proxy needs it: confidential, client_secret_post, PKCE S256, the
// authorization code grant.
type Client struct {
	ID, Name     string
	SecretDigest string   // Digest of the client secret
	RedirectURIs []string // the proxy's callback(s)
	Scopes       []string
	// Policy is the authorization policy: "two_factor" (Memos's guide) or
	// "one_factor".
	Policy string
	// ConsentDuration, when set, makes consent pre-configured for that
	// long (Memos's guide: "4w").
	ConsentDuration string
}

// Block is the client as a block of Authelia's configuration.yml (the
// identity_providers.oidc.clients list with this one client), with
// comments that say what each setting is for.
func (c Client) Block() string {
	var b strings.Builder
	fmt.Fprintf(&b, `# oidc-proxy's client, for Authelia 4.39's configuration.yml (merge it into
# identity_providers.oidc.clients, or pass it as a second --config file).
identity_providers:
  oidc:
    clients:
      - client_id: '%s'
        client_name: '%s'
        # The pbkdf2-sha512 digest of the proxy's client secret (the
        # proxy's oidc.client_secret_file holds the secret itself).
        client_secret: '%s'
        public: false
        authorization_policy: '%s'
`, c.ID, c.Name, c.SecretDigest, c.Policy)
	if c.ConsentDuration != "" {
		fmt.Fprintf(&b, "        consent_mode: 'pre-configured'\n        pre_configured_consent_duration: '%s'\n", c.ConsentDuration)
	}
	fmt.Fprintf(&b, `        # The proxy always sends a PKCE S256 challenge: require it.
        require_pkce: true
        pkce_challenge_method: 'S256'
        redirect_uris:
`)
	for _, u := range c.RedirectURIs {
		fmt.Fprintf(&b, "          - '%s'\n", u)
	}
	fmt.Fprintf(&b, "        scopes: [%s]\n", quoted(c.Scopes))
	b.WriteString(`        response_types: ['code']
        grant_types: ['authorization_code']
        access_token_signed_response_alg: 'none'
        userinfo_signed_response_alg: 'none'
        # Must match oidc.client_auth_method in the proxy's configuration.
        token_endpoint_auth_method: 'client_secret_post'
`)
	return b.String()
}

func quoted(v []string) string {
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = "'" + s + "'"
	}
	return strings.Join(q, ", ")
}
