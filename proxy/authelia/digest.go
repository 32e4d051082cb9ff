// Package authelia is what the proxy knows of Authelia's own formats: the
// client secret digest its configuration holds.
package authelia

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"strings"
)

// Digest parameters, as `authelia crypto hash generate pbkdf2 --variant
// sha512` writes them (Authelia 4.39's defaults).
const (
	digestIterations = 310000
	digestSaltSize   = 16
	digestKeySize    = 64
)

// ab64 is the "adapted base64" of crypt digests: standard base64 without
// padding, "." in place of "+".
var ab64 = base64.NewEncoding(strings.ReplaceAll("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", "+", ".")).WithPadding(base64.NoPadding)

// Digest is secret's PBKDF2-SHA512 digest in the format Authelia reads
// for a client_secret (and for a password in its users file), with a
// fresh random salt: "$pbkdf2-sha512$310000$<salt>$<key>".
func Digest(secret string) (string, error) {
	salt := make([]byte, digestSaltSize)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("authelia: %w", err)
	}
	return digestWith(secret, salt, digestIterations)
}

func digestWith(secret string, salt []byte, iterations int) (string, error) {
	key, err := pbkdf2.Key(sha512.New, secret, salt, iterations, digestKeySize)
	if err != nil {
		return "", fmt.Errorf("authelia: %w", err)
	}
	return fmt.Sprintf("$pbkdf2-sha512$%d$%s$%s", iterations, ab64.EncodeToString(salt), ab64.EncodeToString(key)), nil
}

// Matches reports whether digest (in Digest's format) is secret's.
func Matches(digest, secret string) bool {
	parts := strings.Split(digest, "$")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "pbkdf2-sha512" {
		return false
	}
	var n int
	if _, err := fmt.Sscanf(parts[2], "%d", &n); err != nil || n < 1 || n > 10_000_000 {
		return false
	}
	salt, err := ab64.DecodeString(parts[3])
	if err != nil {
		return false
	}
	again, err := digestWith(secret, salt, n)
	return err == nil && again == digest
}
