package session

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/securecookie"
)

// Chunking limits. A browser keeps cookies of up to 4096 bytes including
// name and attributes; MaxChunks bounds how much the proxy ever reads back,
// whatever a client sends.
const (
	ChunkSize = 3800
	MaxChunks = 10
)

// Errors returned by Codec.Read and Codec.Write.
var (
	ErrNoCookie = errors.New("session: no cookie")
	ErrInvalid  = errors.New("session: invalid cookie")
	ErrTooLarge = errors.New("session: value too large for the cookie store")
)

// CookieOptions are the attributes of the cookies a Codec writes.
type CookieOptions struct {
	// Secure sets the Secure attribute and the "__Host-" name prefix; use it
	// whenever the proxy is reached over https.
	Secure bool
	// MaxAge is the longest a cookie is accepted after it was written,
	// checked against the signed timestamp inside it.
	MaxAge time.Duration
}

// Codec encrypts, signs and chunks one kind of cookie. The first secret
// encrypts; every secret decrypts, so secrets can be rotated by putting the
// new one first. The purpose string separates the keys of different cookie
// kinds, so a value of one kind never decodes as another.
//
// A Codec is safe for concurrent use.
type Codec struct {
	codecs []securecookie.Codec
	opts   CookieOptions
}

// NewCodec derives keys from each secret (HKDF-SHA256 with purpose as info):
// an AES-256 key to encrypt and an HMAC-SHA256 key to sign. Each secret must
// be at least 32 bytes.
func NewCodec(secrets [][]byte, purpose string, opts CookieOptions) (*Codec, error) {
	if len(secrets) == 0 {
		return nil, errors.New("session: no secret")
	}
	if opts.MaxAge <= 0 {
		return nil, errors.New("session: MaxAge must be positive")
	}
	c := &Codec{opts: opts}
	for i, s := range secrets {
		if len(s) < 32 {
			return nil, fmt.Errorf("session: secret %d is %d bytes; at least 32 are required", i+1, len(s))
		}
		hashKey, err := hkdf.Key(sha256.New, s, nil, "oidc-proxy "+purpose+" signing", 32)
		if err != nil {
			return nil, fmt.Errorf("session: derive key: %w", err)
		}
		blockKey, err := hkdf.Key(sha256.New, s, nil, "oidc-proxy "+purpose+" encryption", 32)
		if err != nil {
			return nil, fmt.Errorf("session: derive key: %w", err)
		}
		sc := securecookie.New(hashKey, blockKey)
		sc.SetSerializer(securecookie.NopEncoder{})
		sc.MaxLength(0) // chunking bounds the size instead
		sc.MaxAge(int((opts.MaxAge + time.Minute) / time.Second))
		c.codecs = append(c.codecs, sc)
	}
	return c, nil
}

// CookieName gives the name the browser sees for base: with "__Host-"
// when the cookies are Secure.
func (c *Codec) CookieName(base string) string {
	if c.opts.Secure {
		return "__Host-" + base
	}
	return base
}

// Write sets the cookie name (a full name, from CookieName) to the
// encrypted payload, split into chunks name, name_1, ... when it is longer
// than ChunkSize, and expires chunks of an earlier, longer value that r
// still carries. maxAge is the browser's lifetime of the cookie. It returns
// the length of the encoded value, all chunks together.
func (c *Codec) Write(w http.ResponseWriter, r *http.Request, name string, payload []byte, maxAge time.Duration) (int, error) {
	if len(payload) == 0 {
		return 0, errors.New("session: empty value")
	}
	// securecookie encrypts in place: never hand it the caller's bytes.
	enc, err := securecookie.EncodeMulti(name, bytes.Clone(payload), c.codecs[0])
	if err != nil {
		return 0, fmt.Errorf("session: encode: %w", err)
	}
	n := (len(enc) + ChunkSize - 1) / ChunkSize
	if n > MaxChunks {
		return len(enc), ErrTooLarge
	}
	secs := int(maxAge / time.Second)
	if secs <= 0 {
		secs = 1
	}
	for i := 0; i < n; i++ {
		end := min((i+1)*ChunkSize, len(enc))
		http.SetCookie(w, c.cookie(chunkName(name, i), enc[i*ChunkSize:end], secs))
	}
	_, _, present := readChunks(r, name)
	for i := n; i < MaxChunks; i++ {
		if present[i] {
			http.SetCookie(w, c.cookie(chunkName(name, i), "", -1))
		}
	}
	return len(enc), nil
}

// Read reassembles and decodes the cookie name from r. It returns
// ErrNoCookie when r has none and ErrInvalid (wrapping the cause) when the
// cookie is tampered with, truncated, too old or under an unknown key.
func (c *Codec) Read(r *http.Request, name string) ([]byte, error) {
	v, err := c.Value(r, name)
	if err != nil {
		return nil, err
	}
	return c.Decode(name, v)
}

// Value returns the still encoded value of the cookie name in r, its
// chunks joined, or ErrNoCookie. Nothing about it is verified yet.
func (c *Codec) Value(r *http.Request, name string) (string, error) {
	chunks, n, _ := readChunks(r, name)
	switch n {
	case 0:
		return "", ErrNoCookie
	case 1:
		return chunks[0], nil
	}
	return strings.Join(chunks[:n], ""), nil
}

// Decode verifies and decrypts a value from Value.
func (c *Codec) Decode(name, value string) ([]byte, error) {
	var payload []byte
	if err := securecookie.DecodeMulti(name, value, &payload, c.codecs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return payload, nil
}

// Clear expires every chunk of the cookie name that r carries.
func (c *Codec) Clear(w http.ResponseWriter, r *http.Request, name string) {
	_, _, present := readChunks(r, name)
	for i := 0; i < MaxChunks; i++ {
		if present[i] {
			http.SetCookie(w, c.cookie(chunkName(name, i), "", -1))
		}
	}
}

func (c *Codec) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: c.opts.Secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	}
}

func chunkName(name string, i int) string {
	if i == 0 {
		return name
	}
	return name + "_" + strconv.Itoa(i)
}

// readChunks finds name, name_1, ... name_(MaxChunks-1) in r's Cookie
// headers. n counts the chunks up to the first one missing; found says
// which are present at all. Only the first copy of a name counts.
func readChunks(r *http.Request, name string) (chunks [MaxChunks]string, n int, found [MaxChunks]bool) {
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || !strings.HasPrefix(k, name) {
				continue
			}
			i := chunkIndex(k[len(name):])
			if i < 0 || found[i] {
				continue
			}
			found[i] = true
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' { // RFC 6265 allows one pair
				v = v[1 : len(v)-1]
			}
			chunks[i] = v
		}
	}
	for n < MaxChunks && found[n] {
		n++
	}
	return chunks, n, found
}

// chunkIndex parses the part of a cookie name after the base: "" is chunk
// 0, "_1" to "_9" are chunks 1 to 9; anything else is -1.
func chunkIndex(suffix string) int {
	if suffix == "" {
		return 0
	}
	if len(suffix) == 2 && suffix[0] == '_' && suffix[1] >= '1' && suffix[1] <= '9' && int(suffix[1]-'0') < MaxChunks {
		return int(suffix[1] - '0')
	}
	return -1
}
