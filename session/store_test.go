package session

import (
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkSessionLookupUncached is finding a request's session with the
// cache emptied each time: base64, HMAC, AES and JSON on every request.
func BenchmarkSessionLookupUncached(b *testing.B) {
	st, err := Open(Options{Secrets: [][]byte{[]byte("0123456789abcdef0123456789abcdef0123")}, CookieName: "_oidc_proxy", Secure: true, Lifetime: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	s := &Session{
		Subject: "0b9ebd43-3f2a-4d43-9a47-c3a6b04c9fa2",
		Claims: map[string]string{"preferred_username": "alice", "name": "Alice Liddell",
			"email": "alice@example.com", "groups": "admins,users,family"},
		Created: time.Now().Unix(), Expires: time.Now().Add(time.Hour).Unix(),
	}
	rec := httptest.NewRecorder()
	if _, err := st.Save(b.Context(), rec, httptest.NewRequest("GET", "/", nil), nil, s, time.Now()); err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "https://memos.example.com/", nil)
	for _, c := range rec.Result().Cookies() {
		req.AddCookie(c)
	}
	cs := st.(*cookieStore)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		cs.cache = NewCache[*Entry](1)
		if e, _ := st.Load(w, req, time.Now()); e == nil {
			b.Fatal("no session")
		}
	}
}

type countingDeriver struct{ n int }

func (c *countingDeriver) Derive(e *Entry) any { c.n++; return e.Session.Subject + "!" }

// TestDerivedOncePerDeriver: each deriver builds once per entry, and two
// derivers never see each other's result.
func TestDerivedOncePerDeriver(t *testing.T) {
	e := &Entry{Session: &Session{Subject: "alice"}}
	a, b := &countingDeriver{}, &countingDeriver{}
	for range 3 {
		if e.Derived(a) != "alice!" || e.Derived(b) != "alice!" {
			t.Fatal("wrong value")
		}
	}
	if a.n != 1 || b.n != 1 {
		t.Fatalf("built %d and %d times, want once each", a.n, b.n)
	}
}
