package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// TestKeptValues: what a store keeps under a secret (handoff codes, the
// sign-out's ID-token hint, the Memos bridge's grants) comes back only
// under that secret and kind, only once when taken, and never after its
// time: a handoff code redeemed late signs nobody in. Both stores, Redis
// the real one.
func TestKeptValues(t *testing.T) {
	secrets := [][]byte{[]byte("0123456789abcdef0123456789abcdef0123")}
	stores := map[string]func(t *testing.T) session.Store{
		"cookie": func(t *testing.T) session.Store {
			st, err := session.Open(session.Options{Secrets: secrets, CookieName: "s", Lifetime: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		"redis": func(t *testing.T) session.Store {
			rs := startRedis(t)
			st, err := session.Open(session.Options{Secrets: secrets, CookieName: "s", Lifetime: time.Hour, Redis: &session.RedisOptions{Address: rs.addr}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			ctx := context.Background()
			const code = "c0de-c0de-c0de-c0de-c0de-c0de-c0de-c0de-c0d"
			if err := st.Keep(ctx, "handoff", code, []byte("value"), time.Minute); err != nil {
				t.Fatal(err)
			}
			for _, miss := range []struct{ kind, secret string }{{"handoff", code + "x"}, {"handoff", ""}, {"grant", code}} {
				if v, err := st.Take(ctx, miss.kind, miss.secret, false); !errors.Is(err, session.ErrNotFound) {
					t.Errorf("Take(%q, %q) = %q, %v: want ErrNotFound", miss.kind, miss.secret, v, err)
				}
			}
			if v, err := st.Take(ctx, "handoff", code, false); err != nil || !bytes.Equal(v, []byte("value")) {
				t.Fatalf("a look: %q, %v", v, err)
			}
			if v, err := st.Take(ctx, "handoff", code, true); err != nil || !bytes.Equal(v, []byte("value")) {
				t.Fatalf("the take: %q, %v", v, err)
			}
			if v, err := st.Take(ctx, "handoff", code, true); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("taken twice: %q, %v", v, err)
			}
			// Past its time: gone, looked at or taken.
			if err := st.Keep(ctx, "handoff", code, []byte("late"), time.Second); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				_, err := st.Take(ctx, "handoff", code, false)
				if errors.Is(err, session.ErrNotFound) {
					break
				}
				if err != nil || time.Now().After(deadline) {
					t.Fatalf("a value kept for a second is still there after 10 s (%v)", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if v, err := st.Take(ctx, "handoff", code, true); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("an expired value taken: %q, %v", v, err)
			}
		})
	}
}
