// Package assertion signs the identity the proxy vouches for as a short
// JWT that an upstream verifies against the proxy's published key set
// (/oauth2/jwks.json), instead of trusting headers that anything on its
// network could set. It loads the signing keys (ES256 on P-256, or EdDSA
// on Ed25519, from PEM files: the first signs, all are published), signs
// compact JWS tokens, and serves the public key set.
//
// It imports no package of this project.
package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"
)

// Algorithms.
const (
	ES256 = "ES256" // ECDSA with P-256 and SHA-256
	EdDSA = "EdDSA" // Ed25519
)

// Key is one signing key and what is published of it.
type Key struct {
	ID   string // the RFC 7638 thumbprint of the public key
	Alg  string
	priv crypto.Signer
	jwk  map[string]string // the public JWK
}

// Signer signs with the first of its keys and publishes all of them.
type Signer struct {
	keys []*Key
	jwks []byte // the key set, public members only
}

// LoadKeys reads each PEM file (PKCS #8 or SEC 1 "EC PRIVATE KEY") and
// refuses, with an error naming the file: a file that is missing or
// unreadable, holds no private key, or holds anything else beside it; a
// key of another algorithm than alg (ES256: P-256 only; EdDSA: Ed25519
// only); RSA, other curves, and a public key that does not match the
// private key beside it. HMAC and "none" cannot be configured.
func LoadKeys(alg string, files []string) (*Signer, error) {
	if alg != ES256 && alg != EdDSA {
		return nil, fmt.Errorf("assertion: algorithm %q: use ES256 or EdDSA", alg)
	}
	if len(files) == 0 {
		return nil, errors.New("assertion: no key file")
	}
	s := &Signer{}
	seen := map[string]string{}
	for _, f := range files {
		k, err := loadKey(alg, f)
		if err != nil {
			return nil, err
		}
		if other, dup := seen[k.ID]; dup {
			return nil, fmt.Errorf("assertion: %s holds the same key as %s", f, other)
		}
		seen[k.ID] = f
		s.keys = append(s.keys, k)
	}
	s.publish()
	return s, nil
}

func (s *Signer) publish() {
	set := struct {
		Keys []map[string]string `json:"keys"`
	}{}
	for _, k := range s.keys {
		set.Keys = append(set.Keys, k.jwk)
	}
	s.jwks, _ = json.Marshal(set)
}

// KeySet publishes the keys of several signers as one key set (each key
// once), for a proxy whose applications sign with keys of their own. It
// signs with the first signer's key.
func KeySet(signers ...*Signer) *Signer {
	out := &Signer{}
	seen := map[string]bool{}
	for _, s := range signers {
		for _, k := range s.keys {
			if !seen[k.ID] {
				seen[k.ID] = true
				out.keys = append(out.keys, k)
			}
		}
	}
	out.publish()
	return out
}

func loadKey(alg, file string) (*Key, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("assertion: key file: %w", err)
	}
	var priv crypto.Signer
	var pubs []crypto.PublicKey
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "PRIVATE KEY", "EC PRIVATE KEY":
			if priv != nil {
				return nil, fmt.Errorf("assertion: %s holds more than one private key", file)
			}
			if priv, err = parsePrivate(b); err != nil {
				return nil, fmt.Errorf("assertion: %s: %w", file, err)
			}
		case "PUBLIC KEY":
			pub, err := x509.ParsePKIXPublicKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("assertion: %s: public key: %w", file, err)
			}
			pubs = append(pubs, pub)
		case "EC PARAMETERS": // openssl ecparam writes them beside the key
		default:
			return nil, fmt.Errorf("assertion: %s: a %q block is not a signing key", file, b.Type)
		}
	}
	if priv == nil {
		return nil, fmt.Errorf("assertion: %s holds no PEM private key", file)
	}
	for _, pub := range pubs {
		if eq, ok := priv.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(pub) {
			return nil, fmt.Errorf("assertion: %s: the public key does not match the private key", file)
		}
	}
	k := &Key{Alg: alg, priv: priv}
	switch pub := priv.Public().(type) {
	case *ecdsa.PublicKey:
		if alg != ES256 || pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("assertion: %s: an ECDSA key on %s does not fit %s (ES256 needs P-256)", file, pub.Curve.Params().Name, alg)
		}
		ecdh, err := pub.ECDH()
		if err != nil {
			return nil, fmt.Errorf("assertion: %s: %w", file, err)
		}
		raw := ecdh.Bytes() // 0x04 || X || Y
		k.jwk = map[string]string{"kty": "EC", "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
		k.ID = thumbprint(`{"crv":"P-256","kty":"EC","x":"` + k.jwk["x"] + `","y":"` + k.jwk["y"] + `"}`)
	case ed25519.PublicKey:
		if alg != EdDSA {
			return nil, fmt.Errorf("assertion: %s: an Ed25519 key does not fit %s (set algorithm: EdDSA)", file, alg)
		}
		k.jwk = map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(pub)}
		k.ID = thumbprint(`{"crv":"Ed25519","kty":"OKP","x":"` + k.jwk["x"] + `"}`)
	default:
		return nil, fmt.Errorf("assertion: %s: a %T key does not fit %s", file, pub, alg)
	}
	k.jwk["kid"], k.jwk["alg"], k.jwk["use"] = k.ID, alg, "sig"
	return k, nil
}

func parsePrivate(b *pem.Block) (crypto.Signer, error) {
	if b.Type == "EC PRIVATE KEY" {
		return x509.ParseECPrivateKey(b.Bytes)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T key cannot sign", k)
	}
	return s, nil
}

// thumbprint is the RFC 7638 JWK thumbprint of the canonical JSON.
func thumbprint(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Claims are what a token says, beside the registered claims Sign sets.
type Claims map[string]any

// Sign makes a compact JWS, signed with the first key, of the registered
// claims (iss, aud, sub, iat, nbf, exp a lifetime from now, and a random
// jti) and extra (which must not name them).
func (s *Signer) Sign(iss, aud, sub string, now time.Time, lifetime time.Duration, extra Claims) (string, error) {
	k := s.keys[0]
	var jti [16]byte
	rand.Read(jti[:])
	claims := make(map[string]any, len(extra)+7)
	for name, v := range extra {
		claims[name] = v
	}
	claims["iss"], claims["aud"], claims["sub"] = iss, aud, sub
	claims["iat"], claims["nbf"], claims["exp"] = now.Unix(), now.Unix(), now.Add(lifetime).Unix()
	claims["jti"] = b64(jti[:])
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := b64([]byte(`{"alg":"`+k.Alg+`","kid":"`+k.ID+`","typ":"JWT"}`)) + "." + b64(payload)
	var sig []byte
	switch priv := k.priv.(type) {
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256([]byte(input))
		r, ss, err := ecdsa.Sign(rand.Reader, priv, sum[:])
		if err != nil {
			return "", err
		}
		sig = make([]byte, 64) // JWS: R and S, 32 bytes each (RFC 7518 3.4)
		r.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(priv, []byte(input))
	}
	return input + "." + b64(sig), nil
}

// JWKSMaxAge is how long verifiers may cache the key set: put a new key
// second (published, not yet signing) at least this long before moving
// it first.
const JWKSMaxAge = 5 * time.Minute

// ServeHTTP serves the public key set.
func (s *Signer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(JWKSMaxAge/time.Second)))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(s.jwks)
}

// KeyIDs are the ids of the keys, the signing one first.
func (s *Signer) KeyIDs() []string {
	out := make([]string, len(s.keys))
	for i, k := range s.keys {
		out[i] = k.ID
	}
	return out
}
