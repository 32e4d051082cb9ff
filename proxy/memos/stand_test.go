package memos_test

import (
	"net"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// The stand lives in proxy/proxytest, for every package's tests; these
// are its names in this package's tests.
type (
	stand      = proxytest.Stand
	replica    = proxytest.Replica
	syncBuffer = proxytest.SyncBuffer
	cfg        = config.Config
)

const (
	clientSecret  = proxytest.ClientSecret
	sessionSecret = proxytest.SessionSecret
	alicePassword = proxytest.AlicePassword
)

func listen(t *testing.T) net.Listener { return proxytest.Listen(t) }

var (
	newStand   = proxytest.NewStand
	serveOn    = proxytest.ServeOn
	navigate   = proxytest.Navigate
	do         = proxytest.Do
	login      = proxytest.Login
	noRedirect = proxytest.NoRedirect
)

var (
	eventually  = proxytest.Eventually
	replicaOf   = proxytest.ReplicaOf
	mustReq     = proxytest.MustReq
	mustURL     = proxytest.MustURL
	grepLines   = proxytest.GrepLines
	statusOf    = proxytest.StatusOf
	rawRequest  = proxytest.RawRequest
	bridgeStand = proxytest.BridgeStand
	memosCall   = proxytest.MemosCall
	memosWhoAmI = proxytest.MemosWhoAmI
	firstRun    = proxytest.FirstRun
	memosStand  = proxytest.MemosStand
	pkcePair    = proxytest.PKCEPair
	authorize   = proxytest.Authorize
	buttonQuery = proxytest.ButtonQuery
	signInAs    = proxytest.SignInAs
)

const bobPassword = proxytest.BobPassword

const realSecret = proxytest.RealSecret

// realStand is the proxy in front of the real Authelia a.
type realStand struct {
	*stand
	a *proxytest.Authelia
}
