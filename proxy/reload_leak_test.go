package proxy_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
)

// TestReloadsLeaveNothingRunning: a hundred reloads leave no goroutine
// behind, the connections a replaced configuration's provider client kept
// (a sign-in after every tenth) included.
func TestReloadsLeaveNothingRunning(t *testing.T) {
	s := newStand(t, nil, nil)
	alice := s.SignIn("/")
	navigate(t, alice, s.URL+"/")
	s.SignIn("/") // the first generation's connections to the provider, idle now
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	for i := range 100 {
		if _, err := s.Proxy.Reload(s.Config(func(c *config.Config) { c.PublicPaths = []string{"/p" + string(rune('a'+i%26))} })); err != nil {
			t.Fatal(err)
		}
		navigate(t, alice, s.URL+"/")
		if i%10 == 9 {
			s.SignIn("/")
		}
	}
	var after int
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		if after = runtime.NumGoroutine(); after <= before+2 {
			return
		}
	}
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	t.Errorf("goroutines: %d before 100 reloads, %d after\n%s", before, after, buf[:n])
}
