package session

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var (
	secretA = []byte("secret-A-0123456789abcdef0123456789")
	secretB = []byte("secret-B-0123456789abcdef0123456789")
)

func newCodec(t testing.TB, secrets ...[]byte) *Codec {
	t.Helper()
	c, err := NewCodec(secrets, "session", CookieOptions{MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// roundTrip writes payload and returns a request carrying the cookies set.
func write(t testing.TB, c *Codec, name string, payload []byte) (*http.Request, []*http.Cookie) {
	t.Helper()
	rec := httptest.NewRecorder()
	if _, err := c.Write(rec, httptest.NewRequest("GET", "/", nil), name, payload, time.Hour); err != nil {
		t.Fatal(err)
	}
	cookies := rec.Result().Cookies()
	req := httptest.NewRequest("GET", "/", nil)
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	return req, cookies
}

func TestRoundTripAndChunking(t *testing.T) {
	c := newCodec(t, secretA)
	for _, size := range []int{1, 10, 2000, 5000, 12000} {
		payload := bytes.Repeat([]byte("x"), size)
		req, cookies := write(t, c, "s", payload)
		if want := 1 + size*4/3/ChunkSize; len(cookies) < want || len(cookies) > MaxChunks {
			t.Errorf("size %d: %d chunks, want at least %d", size, len(cookies), want)
		}
		for _, ck := range cookies {
			if len(ck.Value) > ChunkSize || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" {
				t.Errorf("chunk %s: %d bytes, attributes %+v", ck.Name, len(ck.Value), ck)
			}
		}
		got, err := c.Read(req, "s")
		if err != nil || !bytes.Equal(got, payload) {
			t.Errorf("size %d: read %d bytes, %v", size, len(got), err)
		}
	}
}

func TestEmptyRefused(t *testing.T) {
	if _, err := newCodec(t, secretA).Write(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), "s", nil, time.Hour); err == nil {
		t.Error("empty value written")
	}
}

func TestTooLarge(t *testing.T) {
	c := newCodec(t, secretA)
	rec := httptest.NewRecorder()
	_, err := c.Write(rec, httptest.NewRequest("GET", "/", nil), "s", bytes.Repeat([]byte("x"), MaxChunks*ChunkSize), time.Hour)
	if !errors.Is(err, ErrTooLarge) || len(rec.Result().Cookies()) != 0 {
		t.Errorf("err %v, %d cookies", err, len(rec.Result().Cookies()))
	}
}

func TestShorterValueExpiresStaleChunks(t *testing.T) {
	c := newCodec(t, secretA)
	req, before := write(t, c, "s", bytes.Repeat([]byte("x"), 9000))
	rec := httptest.NewRecorder()
	if _, err := c.Write(rec, req, "s", []byte("small"), time.Hour); err != nil {
		t.Fatal(err)
	}
	var expired []string
	for _, ck := range rec.Result().Cookies() {
		if ck.MaxAge < 0 {
			expired = append(expired, ck.Name)
		}
	}
	if len(before) < 3 || len(expired) != len(before)-1 || expired[0] != "s_1" {
		t.Errorf("had %d chunks, expired %v", len(before), expired)
	}
}

func TestRefusals(t *testing.T) {
	c := newCodec(t, secretA)
	req, cookies := write(t, c, "s", bytes.Repeat([]byte("y"), 6000))
	if len(cookies) < 2 {
		t.Fatal("want chunks")
	}
	with := func(cks ...*http.Cookie) *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		for _, ck := range cks {
			r.AddCookie(ck)
		}
		return r
	}
	flip := func(ck *http.Cookie) *http.Cookie {
		b := []byte(ck.Value)
		b[len(b)/2] ^= 2
		return &http.Cookie{Name: ck.Name, Value: string(b)}
	}
	tests := []struct {
		name string
		req  *http.Request
		c    *Codec
		want error
	}{
		{"no cookie", with(), c, ErrNoCookie},
		{"tampered", with(flip(cookies[0]), cookies[1]), c, ErrInvalid},
		{"truncated", with(&http.Cookie{Name: "s", Value: cookies[0].Value[:100]}, cookies[1]), c, ErrInvalid},
		{"chunk missing", with(cookies[0]), c, ErrInvalid},
		{"chunks swapped", with(&http.Cookie{Name: "s", Value: cookies[1].Value}, &http.Cookie{Name: "s_1", Value: cookies[0].Value}), c, ErrInvalid},
		{"other name", with(&http.Cookie{Name: "t", Value: cookies[0].Value}, &http.Cookie{Name: "t_1", Value: cookies[1].Value}), c, ErrNoCookie},
		{"wrong key", req, newCodec(t, secretB), ErrInvalid},
		{"other purpose", req, mustCodec(NewCodec([][]byte{secretA}, "login", CookieOptions{MaxAge: time.Hour})), ErrInvalid},
		{"garbage", with(&http.Cookie{Name: "s", Value: "%%%"}), c, ErrInvalid},
		{"64 KB", with(&http.Cookie{Name: "s", Value: strings.Repeat("A", 64<<10)}), c, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.c.Read(tt.req, "s"); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func mustCodec(c *Codec, err error) *Codec {
	if err != nil {
		panic(err)
	}
	return c
}

func TestKeyRotation(t *testing.T) {
	old := newCodec(t, secretA)
	req, _ := write(t, old, "s", []byte("payload"))
	rotated := newCodec(t, secretB, secretA)
	if got, err := rotated.Read(req, "s"); err != nil || string(got) != "payload" {
		t.Errorf("old cookie under rotated keys: %q %v", got, err)
	}
	req2, _ := write(t, rotated, "s", []byte("new"))
	if _, err := old.Read(req2, "s"); !errors.Is(err, ErrInvalid) {
		t.Errorf("new cookie decoded with only the old key: %v", err)
	}
}

func TestShortSecretRefused(t *testing.T) {
	if _, err := NewCodec([][]byte{[]byte("short")}, "session", CookieOptions{MaxAge: time.Hour}); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := NewCodec(nil, "session", CookieOptions{MaxAge: time.Hour}); err == nil {
		t.Error("no secret accepted")
	}
}

func TestSecureUsesHostPrefix(t *testing.T) {
	c, _ := NewCodec([][]byte{secretA}, "session", CookieOptions{Secure: true, MaxAge: time.Hour})
	name := c.CookieName("oidc_proxy")
	if name != "__Host-oidc_proxy" {
		t.Fatalf("name %q", name)
	}
	_, cookies := write(t, c, name, []byte("x"))
	if !cookies[0].Secure || cookies[0].Domain != "" || cookies[0].Path != "/" {
		t.Errorf("cookie %+v", cookies[0])
	}
}

func TestSessionValid(t *testing.T) {
	now := time.Unix(1000, 0)
	if !(&Session{Subject: "s", Expires: 1001}).Valid(now) {
		t.Error("valid session refused")
	}
	if (&Session{Subject: "s", Expires: 1000}).Valid(now) || (&Session{Expires: 2000}).Valid(now) {
		t.Error("expired or subject-less session accepted")
	}
	b, _ := (&Session{Subject: "s", Claims: map[string]string{"a": "b"}, Expires: 5}).Marshal()
	s, err := Unmarshal(b)
	if err != nil || s.Subject != "s" || s.Claims["a"] != "b" {
		t.Errorf("round trip: %+v %v", s, err)
	}
	if _, err := Unmarshal([]byte("{")); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad JSON: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	c := newCodec(f, secretA)
	_, cookies := write(f, c, "s", bytes.Repeat([]byte("z"), 5000))
	f.Add(cookies[0].Value, cookies[1].Value, "s_1")
	f.Add("a", "b", "s_9")
	f.Add("", "", "s_10")
	f.Fuzz(func(t *testing.T, v0, v1, name1 string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Cookie", "s="+v0+"; "+name1+"="+v1)
		got, err := c.Read(req, "s")
		if err == nil && !bytes.Equal(got, bytes.Repeat([]byte("z"), 5000)) {
			t.Fatalf("decoded a value nobody encoded: %q", got)
		}
	})
}

func TestCache(t *testing.T) {
	c := NewCache[int](16)
	now := time.Unix(1000, 0)
	c.Put("a", 1, 1001)
	if v, ok := c.Get("a", now); !ok || v != 1 {
		t.Errorf("Get = %v, %v", v, ok)
	}
	if _, ok := c.Get("a", now.Add(time.Second)); ok {
		t.Error("expired entry returned")
	}
	if c.Len() != 0 {
		t.Error("expired entry kept")
	}
	for i := range 100 {
		c.Put(string(rune('A'+i)), i, 2000)
	}
	if n := c.Len(); n > 16 {
		t.Errorf("cache holds %d entries, size 16", n)
	}
	c.Put("b", 2, 2000)
	c.Delete("b")
	if _, ok := c.Get("b", now); ok {
		t.Error("deleted entry returned")
	}
}

func BenchmarkRead(b *testing.B) {
	c := newCodec(b, secretA)
	s := &Session{Subject: "0b9ebd43-3f2a-4d43-9a47-c3a6b04c9fa2", Claims: map[string]string{"preferred_username": "alice",
		"name": "Alice Liddell", "email": "alice@example.com", "groups": "admins,users"}, Expires: time.Now().Add(time.Hour).Unix()}
	payload, _ := s.Marshal()
	req, _ := write(b, c, "s", payload)
	b.ReportAllocs()
	for b.Loop() {
		v, err := c.Read(req, "s")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Unmarshal(v); err != nil {
			b.Fatal(err)
		}
	}
}
