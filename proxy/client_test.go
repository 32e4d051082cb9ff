package proxy

import (
	"net/http/httptest"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/config"
)

func TestClientIP(t *testing.T) {
	var trusted trustedProxies
	for _, s := range []string{"10.0.0.0/8", "192.168.1.1"} {
		p, err := config.ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		trusted = append(trusted, p)
	}
	tests := []struct {
		peer, xff, want string
		proxies         trustedProxies
	}{
		{"203.0.113.9:1234", "1.2.3.4", "203.0.113.9", trusted},             // untrusted peer: its header is ignored
		{"10.1.2.3:1234", "1.2.3.4", "1.2.3.4", trusted},                    // trusted peer vouches for the client
		{"10.1.2.3:1234", "6.6.6.6, 1.2.3.4, 10.9.9.9", "1.2.3.4", trusted}, // rightmost untrusted hop
		{"10.1.2.3:1234", "", "10.1.2.3", trusted},                          // no header: the peer
		{"10.1.2.3:1234", "garbage, 10.0.0.7", "10.0.0.7", trusted},         // a malformed hop ends the chain
		{"192.168.1.1:80", "[2001:db8::1]", "192.168.1.1", trusted},         // bracketed: not an address
		{"192.168.1.1:80", "2001:db8::1", "2001:db8::1", trusted},           //
		{"[::ffff:10.0.0.1]:80", "1.2.3.4", "1.2.3.4", trusted},             // IPv4-mapped peer
		{"10.1.2.3:1234", "1.2.3.4", "10.1.2.3", nil},                       // no trusted proxies at all
		{"192.168.1.2:80", "1.2.3.4", "192.168.1.2", trusted},               // a single address is /32
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.peer
		if tt.xff != "" {
			r.Header.Set("X-Forwarded-For", tt.xff)
		}
		if got := tt.proxies.clientIP(r); got != tt.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", tt.peer, tt.xff, got, tt.want)
		}
	}
}
