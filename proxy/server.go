package proxy

import (
	"log/slog"
	"net/http"
	"time"
)

// Server limits. There is no read or write timeout on the whole request:
// uploads and Server-Sent Events may legitimately last long.
const (
	ReadHeaderTimeout = 10 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 64 << 10
)

// NewServer wraps h in an http.Server with the proxy's limits: headers
// must arrive within ReadHeaderTimeout (slow-header clients are cut off)
// and fit in MaxHeaderBytes (a larger request gets 431), and idle
// keep-alive connections close after IdleTimeout. The server's own errors
// go to log.
func NewServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
