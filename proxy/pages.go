package proxy

import (
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The proxy's own pages: sign-in failed, access denied, store unavailable,
// not found and the like ("error"), the access-denied page ("forbidden"),
// and the signed-out page ("signed_out"). Each is a template with
// {{placeholders}} that are always HTML-escaped; pages.dir may replace any
// of them with <name>.html, checked when the proxy starts. (No
// html/template: its reflection keeps every method of every type in the
// binary, which doubled its size with go-redis.)

// pagePlaceholders are the placeholders each page may use.
var pagePlaceholders = map[string][]string{
	"error":      {"title", "message", "status", "sign_in_url"},
	"forbidden":  {"title", "user", "sign_out_url"},
	"signed_out": {"title", "sign_in_url"},
}

// pageStyle is the one style of the default pages: self-contained, light
// and dark, readable without JavaScript.
const pageStyle = `<style>
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--text:#1d2330;--muted:#5b6475;--accent:#2458d6;--on-accent:#fff;--line:#dde1e8}
@media (prefers-color-scheme:dark){:root{--bg:#12151b;--card:#1b2029;--text:#e7eaf0;--muted:#a3acbb;--accent:#7ea6ff;--on-accent:#0d1320;--line:#2c3340}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:grid;place-items:center;background:var(--bg);color:var(--text);font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;padding:1.5rem}
main{width:100%;max-width:30rem;background:var(--card);border:1px solid var(--line);border-radius:12px;padding:2rem 2rem 1.5rem;box-shadow:0 2px 12px rgba(0,0,0,.06)}
h1{font-size:1.35rem;margin:0 0 .75rem}
p{margin:0 0 1rem;color:var(--muted)}
strong{color:var(--text)}
a,button{font:inherit}
a{color:var(--accent)}
.actions{margin-top:1.5rem;display:flex;gap:.75rem;align-items:center}
.button{display:inline-block;background:var(--accent);color:var(--on-accent);border:0;border-radius:8px;padding:.55rem 1.1rem;text-decoration:none;cursor:pointer}
.button:focus-visible,a:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.status{font-size:.85rem;color:var(--muted);margin:0 0 .25rem}
</style>`

func pageHead(title string) string {
	return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>` + title + `</title>
` + pageStyle + `
</head><body><main>`
}

// defaultPages are the built-in templates.
var defaultPages = map[string]string{
	"error": pageHead("{{title}}") + `
<p class="status">Error {{status}}</p>
<h1>{{title}}</h1>
<p>{{message}}</p>
<div class="actions"><a class="button" href="{{sign_in_url}}">Sign in again</a></div>
</main></body></html>
`,
	"forbidden": pageHead("{{title}}") + `
<h1>{{title}}</h1>
<p>You are signed in as <strong id="user">{{user}}</strong>, but this application is not open to you.</p>
<form class="actions" method="post" action="{{sign_out_url}}"><button class="button" id="signout" type="submit">Sign out</button></form>
</main></body></html>
`,
	"signed_out": pageHead("{{title}}") + `
<h1>{{title}}</h1>
<p>You have signed out of this application.</p>
<div class="actions"><a class="button" href="{{sign_in_url}}">Sign in</a></div>
</main></body></html>
`,
}

// maxPage bounds a page template.
const maxPage = 64 << 10

// pageSet holds the templates in use.
type pageSet map[string]string

// loadPages is the default pages with those of dir ("" for none) in their
// place. A file that is not one of the pages, a placeholder the page does
// not have, an unclosed placeholder or a file over 64 KiB is an error.
func loadPages(dir string) (pageSet, error) {
	ps := pageSet{}
	for name, t := range defaultPages {
		ps[name] = t
	}
	if dir == "" {
		return ps, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("proxy: pages.dir: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".html")
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if _, known := pagePlaceholders[name]; !ok || !known {
			errs = append(errs, fmt.Errorf("proxy: pages.dir: %s is not one of error.html, forbidden.html, signed_out.html", e.Name()))
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, fmt.Errorf("proxy: pages.dir: %w", err))
			continue
		}
		if len(b) > maxPage {
			errs = append(errs, fmt.Errorf("proxy: pages.dir: %s is larger than 64 KiB", e.Name()))
			continue
		}
		if err := checkPage(name, string(b)); err != nil {
			errs = append(errs, fmt.Errorf("proxy: pages.dir: %s: %w", e.Name(), err))
			continue
		}
		ps[name] = string(b)
	}
	return ps, errors.Join(errs...)
}

// checkPage refuses a template whose placeholders the page does not have.
func checkPage(name, t string) error {
	for rest := t; ; {
		i := strings.Index(rest, "{{")
		if i < 0 {
			return nil
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return errors.New("a {{ without }}")
		}
		ph := strings.TrimSpace(rest[i+2 : i+j])
		known := false
		for _, k := range pagePlaceholders[name] {
			known = known || k == ph
		}
		if !known {
			return fmt.Errorf("{{%s}} is not a placeholder of this page (it has %s)", ph, strings.Join(pagePlaceholders[name], ", "))
		}
		rest = rest[i+j+2:]
	}
}

// render writes page name with its placeholders filled, every value
// HTML-escaped.
func (ps pageSet) render(w io.Writer, name string, vals map[string]string) error {
	t := ps[name]
	var b strings.Builder
	b.Grow(len(t) + 256)
	for {
		i := strings.Index(t, "{{")
		if i < 0 {
			b.WriteString(t)
			break
		}
		j := strings.Index(t[i:], "}}")
		b.WriteString(t[:i])
		b.WriteString(html.EscapeString(vals[strings.TrimSpace(t[i+2:i+j])]))
		t = t[i+j+2:]
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// htmlPage answers with page name and status.
func (p *Proxy) htmlPage(w http.ResponseWriter, status int, name string, vals map[string]string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'")
	w.WriteHeader(status)
	if err := p.pages.render(w, name, vals); err != nil {
		p.log.Debug("write page", "page", name, "err", err)
	}
}

// errorPage answers with a short, generic message: an HTML page for
// browsers, JSON for everything else. Details belong in the log, never here.
func (p *Proxy) errorPage(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	if !wantsHTML(r) {
		WriteJSON(w, status, map[string]string{"error": strings.ToLower(http.StatusText(status)), "message": title})
		return
	}
	p.htmlPage(w, status, "error", map[string]string{"title": title, "message": msg, "status": strconv.Itoa(status),
		"sign_in_url": Prefix + "start?rd=%2F"})
}

// handleSignedOut is the page to send the browser to after a sign-out
// (`/oauth2/sign_out?rd=/oauth2/signed_out`).
func (p *Proxy) handleSignedOut(w http.ResponseWriter, r *http.Request) {
	p.htmlPage(w, http.StatusOK, "signed_out", map[string]string{"title": "Signed out", "sign_in_url": Prefix + "start?rd=%2F"})
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
