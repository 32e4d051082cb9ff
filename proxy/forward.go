package proxy

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// NewTransport returns the transport to the upstream: Go's default dialer
// and TLS settings, enough idle connections that a busy proxy does not
// re-dial (Go's default keeps 2 per host), and no transparent compression,
// so bodies pass through as the upstream sent them. No response timeout:
// Server-Sent Events and long downloads are legitimate.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 1024
	t.IdleConnTimeout = 90 * time.Second
	t.DisableCompression = true
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return t
}

// bufferPool lends 32 KiB copy buffers to the ReverseProxy.
type bufferPool struct{ pool sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.pool.Get().(*[]byte)) }
func (b *bufferPool) Put(s []byte) { b.pool.Put(&s) }
