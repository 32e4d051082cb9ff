package proxy_test

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
	received   = proxytest.Recorder
	cfg        = config.Config
	opCfg      = proxytest.OPConfig
)

const (
	clientSecret  = proxytest.ClientSecret
	sessionSecret = proxytest.SessionSecret
	alicePassword = proxytest.AlicePassword
)

func listen(t *testing.T) net.Listener { return proxytest.Listen(t) }

var (
	newStand     = proxytest.NewStand
	newStandWith = proxytest.NewStandWith
	serveOn      = proxytest.ServeOn
	startReplica = proxytest.StartReplica
	build        = proxytest.Build
	navigate     = proxytest.Navigate
	do           = proxytest.Do
	login        = proxytest.Login
	noRedirect   = proxytest.NoRedirect
)

var (
	eventually     = proxytest.Eventually
	replicaOf      = proxytest.ReplicaOf
	get            = proxytest.Get
	mustReq        = proxytest.MustReq
	mustURL        = proxytest.MustURL
	grepLines      = proxytest.GrepLines
	statusOf       = proxytest.StatusOf
	rawRequest     = proxytest.RawRequest
	cookieHeader   = proxytest.CookieHeader
	sessionCookies = proxytest.SessionCookies
	bridgeStand    = proxytest.BridgeStand
	memosCall      = proxytest.MemosCall
	memosWhoAmI    = proxytest.MemosWhoAmI
	firstRun       = proxytest.FirstRun
	memosStand     = proxytest.MemosStand
	pkcePair       = proxytest.PKCEPair
	authorize      = proxytest.Authorize
	buttonQuery    = proxytest.ButtonQuery
	signInAs       = proxytest.SignInAs
)

const bobPassword = proxytest.BobPassword
