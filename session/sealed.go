package session

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// sealedKeys derives, from a bearer secret (a one-time code, a token), the
// name its value is kept under and the key that encrypts it: Redis holds
// neither the secret nor the value in the clear.
func (s *redisDB) sealedKeys(kind, secret string) (string, cipher.AEAD, error) {
	id := sha256.Sum256([]byte("oidc-proxy name\x00" + secret))
	key := sha256.Sum256([]byte("oidc-proxy key\x00" + secret))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return "", nil, err
	}
	gcm, err := cipher.NewGCM(block)
	return s.key(kind, hex.EncodeToString(id[:16])), gcm, err
}

// PutSealed keeps value for ttl under the bearer secret, encrypted with a
// key derived from it.
func (s *redisDB) PutSealed(ctx context.Context, kind, secret string, value []byte, ttl time.Duration) error {
	name, gcm, err := s.sealedKeys(kind, secret)
	if err != nil {
		return err
	}
	nonce := make([]byte, gcm.NonceSize(), gcm.NonceSize()+len(value)+gcm.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	return down(s.rdb.Set(ctx, name, gcm.Seal(nonce, nonce, value, []byte(name)), ttl).Err())
}

// PutOnce marks secret used for ttl (SET NX): ErrReplay when it already
// was.
func (s *redisDB) PutOnce(ctx context.Context, kind, secret string, ttl time.Duration) error {
	name, _, err := s.sealedKeys(kind, secret)
	if err != nil {
		return err
	}
	fresh, err := s.rdb.SetNX(ctx, name, "1", ttl).Result()
	if err != nil {
		return down(err)
	}
	if !fresh {
		return ErrReplay
	}
	return nil
}

// GetSealed returns what PutSealed kept under secret (ErrNotFound when
// nothing, or it expired); with take, it is removed in the same step, so
// that only one caller ever gets it.
func (s *redisDB) GetSealed(ctx context.Context, kind, secret string, take bool) ([]byte, error) {
	name, gcm, err := s.sealedKeys(kind, secret)
	if err != nil {
		return nil, err
	}
	var b []byte
	if take {
		b, err = s.rdb.GetDel(ctx, name).Bytes()
	} else {
		b, err = s.rdb.Get(ctx, name).Bytes()
	}
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, down(err)
	}
	if len(b) < gcm.NonceSize() {
		return nil, ErrInvalid
	}
	plain, err := gcm.Open(nil, b[:gcm.NonceSize()], b[gcm.NonceSize():], []byte(name))
	if err != nil {
		return nil, ErrInvalid
	}
	return plain, nil
}
