package session

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestCookieStoreShare: another host's copy of a cookie-store session
// carries no refresh token, lasts until the original's refresh is due,
// and ends with it (sign-out, back-channel logout).
func TestCookieStoreShare(t *testing.T) {
	st, err := Open(Options{Secrets: [][]byte{[]byte("0123456789abcdef0123456789abcdef0123")}, CookieName: "oidc_proxy", Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	orig := &Session{Subject: "alice", SID: "sid-1", Born: now.UnixMilli(), Created: now.Unix(), Expires: now.Add(time.Hour).Unix(),
		RefreshToken: "rt-secret", RefreshAt: now.Add(5 * time.Minute).Unix(), Claims: map[string]string{"preferred_username": "alice"}}
	load := func(cookies []*http.Cookie) *Entry {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "http://a.example/", nil)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		e, _ := st.Load(httptest.NewRecorder(), req, time.Now())
		return e
	}
	write := func(s *Session) []*http.Cookie {
		rec := httptest.NewRecorder()
		if _, err := st.Save(t.Context(), rec, httptest.NewRequest(http.MethodGet, "http://a.example/", nil), nil, s, now); err != nil {
			t.Fatal(err)
		}
		return rec.Result().Cookies()
	}
	home := write(orig)
	e := load(home)
	value, err := st.Share(t.Context(), e, now)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	copied, err := st.Adopt(t.Context(), rec, httptest.NewRequest(http.MethodGet, "http://b.example/", nil), value, now)
	if err != nil {
		t.Fatal(err)
	}
	if c := copied.Session; c.RefreshToken != "" || c.RefreshAt != 0 || c.Expires != orig.RefreshAt || c.Subject != "alice" || c.Born != orig.Born {
		t.Errorf("the copy: %+v", c)
	}
	away := rec.Result().Cookies()
	if load(away) == nil {
		t.Fatal("the copy's cookie does not load")
	}
	// A sign-out of the original ends the copy too.
	if err := st.End(t.Context(), e, now); err != nil {
		t.Fatal(err)
	}
	if load(away) != nil || load(home) != nil {
		t.Error("a copy outlived the sign-out")
	}
	// A back-channel logout of the subject ends a copy made before it.
	second := *orig
	second.Born = now.UnixMilli() + 1
	e2 := load(write(&second))
	v2, _ := st.Share(t.Context(), e2, now)
	rec = httptest.NewRecorder()
	if _, err := st.Adopt(t.Context(), rec, httptest.NewRequest(http.MethodGet, "http://b.example/", nil), v2, now); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if _, err := st.Logout(t.Context(), "jti-1", "", "sid-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if load(rec.Result().Cookies()) != nil {
		t.Error("a copy outlived the back-channel logout")
	}
	// A copy of an ended session, or of nothing, is refused.
	if _, err := st.Adopt(t.Context(), httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), v2, time.Now()); !errors.Is(err, ErrNotShared) {
		t.Errorf("adopting an ended session: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("{"), []byte(`{"sub":""}`), []byte(`{"sub":"x","exp":1}`)} {
		if _, err := st.Adopt(t.Context(), httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), bad, time.Now()); err == nil {
			t.Errorf("adopted %q", bad)
		}
	}
}
