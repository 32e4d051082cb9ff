package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

type exchangeKey struct{}

// exchange is one request's record, carried in its context: who made it,
// when it left for the upstream and how long the upstream took, and what
// went back to the client. It wraps the ResponseWriter to count; Unwrap
// keeps flushing and hijacking (SSE, WebSocket) working.
type exchange struct {
	http.ResponseWriter
	id        *Identity
	route     *Route // nil: no route serves the request
	status    int
	bytes     int64
	forwarded time.Time
	upstream  time.Duration
	stream    bool // a WebSocket or an event stream, counted as active
}

func (x *exchange) WriteHeader(code int) {
	if x.status == 0 && code >= 200 {
		x.status = code
	}
	x.ResponseWriter.WriteHeader(code)
}

func (x *exchange) Write(b []byte) (int, error) {
	if x.status == 0 {
		x.status = http.StatusOK
	}
	n, err := x.ResponseWriter.Write(b)
	x.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (x *exchange) Unwrap() http.ResponseWriter { return x.ResponseWriter }

func exchangeFrom(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}

// logExchange writes the access-log line of a finished request: no query
// string (it may carry secrets), no headers.
func (p *Proxy) logExchange(r *http.Request, x *exchange, d time.Duration) {
	status := x.status
	if status == 0 && r.Header.Get("Upgrade") != "" {
		status = http.StatusSwitchingProtocols // the connection was handed over
	}
	user := ""
	if x.id != nil {
		user = x.id.session.UserName()
	}
	p.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Int64("bytes", x.bytes),
		slog.Duration("duration", d),
		slog.String("user", user),
		slog.Duration("upstream", x.upstream),
		slog.String("client", p.trusted.clientIP(r)),
		slog.String("route", routeName(x.route)),
	)
}

func routeName(rt *Route) string {
	if rt == nil {
		return "none"
	}
	return rt.name
}
