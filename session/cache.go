package session

import (
	"sync"
	"time"
)

// DefaultCacheSize bounds a Cache made with a size of zero or less.
const DefaultCacheSize = 4096

// Cache keeps what was made from cookie values already decoded, so that a
// browser's later requests cost a map lookup instead of base64, HMAC, AES
// and JSON.
//
// It is keyed by the whole encoded cookie value (the map hashes it, and a
// hit needs the value to match byte for byte, so no collision can hand one
// user another's session). Callers put a value in only after it was
// decoded and verified. An entry is dropped once its expiry passes. It
// holds at most its size in entries: when full, an arbitrary eighth goes.
//
// A Cache is safe for concurrent use.
type Cache[T any] struct {
	mu      sync.RWMutex
	entries map[string]cacheEntry[T]
	size    int
}

type cacheEntry[T any] struct {
	v       T
	expires int64 // Unix seconds
}

// NewCache returns a cache of at most size entries.
func NewCache[T any](size int) *Cache[T] {
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &Cache[T]{entries: make(map[string]cacheEntry[T], size), size: size}
}

// Get returns what is cached for the encoded value, if it has not expired
// at now. The value must not be modified.
func (c *Cache[T]) Get(value string, now time.Time) (T, bool) {
	c.mu.RLock()
	e, ok := c.entries[value]
	c.mu.RUnlock()
	if ok && now.Unix() >= e.expires {
		c.mu.Lock()
		delete(c.entries, value)
		c.mu.Unlock()
		ok = false
	}
	if !ok {
		var zero T
		return zero, false
	}
	return e.v, true
}

// Put caches v for the encoded value until expires (Unix seconds).
func (c *Cache[T]) Put(value string, v T, expires int64) {
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
	c.entries[value] = cacheEntry[T]{v, expires}
}

// Delete drops the entry for the encoded value.
func (c *Cache[T]) Delete(value string) {
	c.mu.Lock()
	delete(c.entries, value)
	c.mu.Unlock()
}

// Len reports how many entries are cached.
func (c *Cache[T]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// DeleteFunc drops every entry whose value drop reports true for.
func (c *Cache[T]) DeleteFunc(drop func(T) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if drop(e.v) {
			delete(c.entries, k)
		}
	}
}

// Clear drops every entry.
func (c *Cache[T]) Clear() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}
