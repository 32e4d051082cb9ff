package proxy

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
)

// The one rule for connections that change protocol.
//
// A proxied connection becomes a tunnel past the proxy when the upstream
// switches it to another protocol: from then on the proxy copies bytes
// and no longer sees requests, so whatever the client sends next (a
// plain HTTP request with forged identity headers, for one) reaches the
// upstream unchecked. httputil.ReverseProxy forwards any Upgrade the
// upstream accepts; this file narrows that to the one upgrade the proxy
// understands:
//
//   - A WebSocket handshake (RFC 6455 §4.1: HTTP/1.1 GET, "Upgrade:
//     websocket" as the only protocol, "upgrade" among the Connection
//     tokens, Sec-WebSocket-Version 13 and a 16-byte Sec-WebSocket-Key) to
//     a route with websockets on is forwarded as an upgrade. The route's
//     access rules and the identity headers were decided on this request:
//     nothing sent on the connection afterwards is read as HTTP.
//   - CONNECT (any form, HTTP/2's extended CONNECT included) is refused
//     with 405: the proxy is not a forward proxy.
//   - Every other request that asks for an upgrade (h2c with or without
//     HTTP2-Settings, unknown protocols, several protocols in one header, a
//     WebSocket handshake on another method, malformed, over HTTP/1.0 or
//     to a route without websockets) is forwarded as the plain request it
//     also is, without Upgrade, the "upgrade" Connection token and
//     HTTP2-Settings: RFC 9110 §7.8 lets a server ignore an upgrade, and a
//     client that offered one (curl --http2 offers h2c) goes on with
//     HTTP/1.1.
//   - An upstream's 101 is accepted only as the answer to a WebSocket
//     handshake the proxy forwarded, switching to websocket; any other 101
//     (to a plain request, or to another protocol) is a 502 and the
//     connection is not switched.

// errUnaskedSwitch is an upstream's 101 that the proxy did not ask for.
var errUnaskedSwitch = errors.New("proxy: the upstream switched protocols without a WebSocket handshake to answer")

// upgradeStep applies the rule to a request of rt, before anything else
// of the route sees it.
func (p *Proxy) upgradeStep(rt *Route, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch upgradeRule(r, rt.websockets) {
		case upgradeRefused:
			p.metrics.upgradesRefused.WithLabelValues("connect").Inc()
			w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
			p.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed",
				"This address serves an application, not a tunnel.")
			return
		case upgradeDropped:
			p.metrics.upgradesRefused.WithLabelValues("dropped").Inc()
			p.log.Debug("upgrade dropped: forwarded as a plain request", "route", rt.name,
				"upgrade", printable(r.Header.Get("Upgrade")), "client", p.trusted.clientIP(r))
		}
		next.ServeHTTP(w, r)
	})
}

// What upgradeRule did with a request.
const (
	upgradePlain   = iota // it asked for no upgrade
	upgradeKept           // a WebSocket handshake, forwarded as one
	upgradeDropped        // it asked for an upgrade; r no longer does
	upgradeRefused        // CONNECT: answer 405, forward nothing
)

// upgradeRule is the rule, in one place: CONNECT is refused; a WebSocket
// handshake is kept when websockets are on; from any other request that
// asks for an upgrade, the ask is removed (in place).
func upgradeRule(r *http.Request, websockets bool) int {
	switch {
	case r.Method == http.MethodConnect:
		return upgradeRefused
	case !asksUpgrade(r.Header):
		return upgradePlain
	case websockets && isWebSocketHandshake(r):
		return upgradeKept
	}
	dropUpgrade(r.Header)
	return upgradeDropped
}

// asksUpgrade reports whether a request's headers ask, in any way, for
// another protocol: an Upgrade header, an "upgrade" Connection token, or
// h2c's HTTP2-Settings.
func asksUpgrade(h http.Header) bool {
	_, up := h["Upgrade"]
	_, settings := h["Http2-Settings"]
	return up || settings || hasToken(h["Connection"], "upgrade")
}

// isWebSocketHandshake reports whether r is a well-formed WebSocket
// opening handshake, RFC 6455 §4.1, and asks for nothing else.
func isWebSocketHandshake(r *http.Request) bool {
	h := r.Header
	if r.Method != http.MethodGet || r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return false
	}
	if up := h["Upgrade"]; len(up) != 1 || !strings.EqualFold(strings.Trim(up[0], " \t"), "websocket") {
		return false
	}
	if !hasToken(h["Connection"], "upgrade") {
		return false
	}
	if _, settings := h["Http2-Settings"]; settings {
		return false
	}
	if v := h["Sec-Websocket-Version"]; len(v) != 1 || strings.Trim(v[0], " \t") != "13" {
		return false
	}
	k := h["Sec-Websocket-Key"]
	if len(k) != 1 {
		return false
	}
	key, err := base64.StdEncoding.DecodeString(strings.Trim(k[0], " \t"))
	return err == nil && len(key) == 16
}

// dropUpgrade removes every ask for another protocol from h, and only
// that: the other Connection tokens stay, so the headers they name are
// still removed as hop-by-hop.
func dropUpgrade(h http.Header) {
	delete(h, "Upgrade")
	delete(h, "Http2-Settings")
	conn := h["Connection"]
	if len(conn) == 0 {
		return
	}
	var kept []string
	for _, v := range conn {
		for _, tok := range strings.Split(v, ",") {
			tok = strings.Trim(tok, " \t")
			if tok != "" && !strings.EqualFold(tok, "upgrade") && !strings.EqualFold(tok, "http2-settings") {
				kept = append(kept, tok)
			}
		}
	}
	if len(kept) == 0 {
		delete(h, "Connection")
		return
	}
	h["Connection"] = []string{strings.Join(kept, ", ")}
}

// switchAllowed reports whether an upstream's 101 answers a WebSocket
// handshake the proxy forwarded (out is the request as sent upstream),
// switching to websocket.
func switchAllowed(out *http.Request, resp *http.Response) bool {
	return isWebSocketHandshake(out) &&
		hasToken(resp.Header["Connection"], "upgrade") &&
		len(resp.Header["Upgrade"]) == 1 && strings.EqualFold(strings.Trim(resp.Header.Get("Upgrade"), " \t"), "websocket")
}

// hasToken reports whether a comma-separated header's values list token
// (case-insensitive; optional white space is spaces and tabs, as for
// ReverseProxy, so that both read the same tokens).
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.Trim(tok, " \t"), token) {
				return true
			}
		}
	}
	return false
}

// printable cuts a client's header value to what a log line may carry.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}
