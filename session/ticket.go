package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// TicketSize is the length of a marshalled Ticket.
const TicketSize = 16 + 32

// Ticket is what the browser holds of a session kept in Redis: the
// record's id and the key that encrypts it. Redis never sees the key, so a
// dump of Redis alone reveals no session.
type Ticket struct {
	ID  [16]byte
	Key [32]byte
}

// NewTicket makes a random ticket.
func NewTicket() (Ticket, error) {
	var t Ticket
	if _, err := rand.Read(t.ID[:]); err != nil {
		return t, err
	}
	_, err := rand.Read(t.Key[:])
	return t, err
}

// Marshal encodes t for a cookie (which encrypts and signs it again).
func (t Ticket) Marshal() []byte { return append(t.ID[:], t.Key[:]...) }

// ParseTicket decodes what Marshal made.
func ParseTicket(b []byte) (Ticket, error) {
	var t Ticket
	if len(b) != TicketSize {
		return t, fmt.Errorf("%w: a ticket is %d bytes, not %d", ErrInvalid, TicketSize, len(b))
	}
	copy(t.ID[:], b)
	copy(t.Key[:], b[16:])
	return t, nil
}

// Name is the ticket's public name: a hash of its id, used for the Redis
// key and in invalidation messages. It reveals neither id nor key.
func (t Ticket) Name() string {
	h := sha256.Sum256(t.ID[:])
	return hex.EncodeToString(h[:16])
}

func (t Ticket) aead() (cipher.AEAD, error) {
	block, err := aes.NewCipher(t.Key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
