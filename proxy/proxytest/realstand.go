package proxytest

import (
	"net"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
)

// RealSecret is the client secret of the proxy's client at a test's real
// Authelia.
const RealSecret = "real-authelia-client-secret-0123456789abcdef"

// RealReplica starts a proxy of the configuration text yaml (then edits)
// on ln, signing in at the real Authelia a, logging into s's log, on s's
// clock.
func (s *Stand) RealReplica(a *Authelia, yaml string, ln net.Listener, edits ...func(*config.Config)) Replica {
	s.T.Helper()
	cfg, err := config.Parse("real.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		s.T.Fatal(err)
	}
	for _, e := range edits {
		if e != nil {
			e(cfg)
		}
	}
	return StartReplica(s.T, cfg, proxy.Options{Logger: s.Logger(), Now: s.Clock, IdPClient: a.IdPClient()}, ln)
}
