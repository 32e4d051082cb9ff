package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// trustedProxies are the front proxies whose forwarding headers count.
type trustedProxies []netip.Prefix

func (t trustedProxies) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// trustedPeer reports whether the request came straight from a trusted
// front proxy.
func (t trustedProxies) trustedPeer(r *http.Request) bool {
	return len(t) > 0 && t.contains(peerAddr(r))
}

// clientIP is the address of the client as far as the trusted proxies
// vouch for it: the peer, or, when the peer is trusted, the rightmost
// address in X-Forwarded-For that is not itself a trusted proxy. Client
// headers from anyone else are never read.
func (t trustedProxies) clientIP(r *http.Request) string {
	peer := peerAddr(r)
	if !t.trustedPeer(r) {
		return peer.String()
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a malformed hop ends what can be believed
		}
		if !t.contains(a) {
			return a.Unmap().String()
		}
		peer = a.Unmap()
	}
	return peer.String()
}
