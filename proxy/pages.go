package proxy

import (
	"html"
	"io"
	"net/http"
	"strings"
)

// page writes a small HTML page. title is text; body is HTML that the
// caller built with every piece of text passed through html.EscapeString.
// (No html/template: its reflection keeps every method of every type in
// the binary, which doubled its size with go-redis.)
func page(w io.Writer, title, body string) error {
	t := html.EscapeString(title)
	_, err := io.WriteString(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>`+t+`</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}a{color:#0a58ca}</style></head>
<body><h1>`+t+`</h1>`+body+`</body></html>
`)
	return err
}

// errorPage answers with a short, generic message: an HTML page for
// browsers, JSON for everything else. Details belong in the log, never here.
func (p *Proxy) errorPage(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	if !wantsHTML(r) {
		WriteJSON(w, status, map[string]string{"error": strings.ToLower(http.StatusText(status)), "message": title})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(status)
	if err := page(w, title, "<p>"+html.EscapeString(msg)+`</p><p><a href="/oauth2/start?rd=%2F">Sign in again</a></p>`); err != nil {
		p.log.Debug("write error page", "err", err)
	}
}

func wantsHTML(r *http.Request) bool {
	return r.Header.Get("Sec-Fetch-Mode") == "navigate" || acceptsHTML(r)
}

// acceptsHTML reports whether an Accept header names text/html.
func acceptsHTML(r *http.Request) bool {
	for _, a := range r.Header.Values("Accept") {
		if strings.Contains(a, "text/html") {
			return true
		}
	}
	return false
}
