package session

import (
	"sync"
	"time"
)

// DefaultCacheSize bounds a Cache made with a size of zero or less.
const DefaultCacheSize = 4096

// Cache keeps sessions already decoded, so that a browser's later requests
// cost a map lookup instead of base64, HMAC, AES and JSON.
//
// It is keyed by the whole encoded cookie value (the map hashes it, and a
// hit needs the value to match byte for byte, so no collision can hand
// one user another's session). A value only gets in after it was decoded
// and verified; an entry is dropped once its session expires. It holds at
// most its size in entries: when full, an arbitrary eighth is evicted.
//
// A Cache is safe for concurrent use.
type Cache struct {
	mu      sync.RWMutex
	entries map[string]*Session
	size    int
}

// NewCache returns a cache of at most size sessions.
func NewCache(size int) *Cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &Cache{entries: make(map[string]*Session, size), size: size}
}

// Get returns the session cached for the encoded value, if it is still
// valid at now. The session must not be modified.
func (c *Cache) Get(value string, now time.Time) *Session {
	c.mu.RLock()
	s := c.entries[value]
	c.mu.RUnlock()
	if s == nil {
		return nil
	}
	if !s.Valid(now) {
		c.mu.Lock()
		delete(c.entries, value)
		c.mu.Unlock()
		return nil
	}
	return s
}

// Put caches s, decoded from the encoded value.
func (c *Cache) Put(value string, s *Session) {
	value = string([]byte(value)) // never keep a whole request header alive
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.size {
		n := c.size/8 + 1
		for k := range c.entries {
			delete(c.entries, k)
			if n--; n == 0 {
				break
			}
		}
	}
	c.entries[value] = s
}

// Len reports how many sessions are cached.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
