package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/oidc-proxy/oidc-proxy/session"
)

// The home page for signed-in people (/oauth2/ on every host): the apps
// they may open, who the proxy says they are to those apps, and, with the
// Redis store, their sessions on every device, each of which they may end.
// The administration page (/oauth2/admin/ on the sign-in host, for
// members of admin.groups): everyone signed in now, and signing a person
// out everywhere. Both are plain HTML forms (no script), every value
// escaped; every action is a POST with a token bound to the session and
// from the same site (a cross-site POST does nothing).

// homeStyle widens the pages' card and styles the lists.
const homeStyle = `<style>
main{max-width:46rem}
h2{font-size:1.05rem;margin:1.75rem 0 .6rem}
ul.apps{list-style:none;margin:0;padding:0;display:grid;gap:.6rem;grid-template-columns:repeat(auto-fill,minmax(13rem,1fr))}
ul.apps a{display:flex;gap:.75rem;align-items:center;padding:.75rem;border:1px solid var(--line);border-radius:10px;text-decoration:none;color:var(--text)}
ul.apps a:hover{border-color:var(--accent)}
.icon{flex:none;width:2.25rem;height:2.25rem;border-radius:8px;display:grid;place-items:center;background:var(--bg);font-size:1.2rem;overflow:hidden}
.icon img{width:100%;height:100%;object-fit:cover}
.app small{display:block;color:var(--muted);font-size:.85rem}
table{width:100%;border-collapse:collapse;font-size:.92rem}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:anywhere}
th{color:var(--muted);font-weight:600;overflow-wrap:normal}
td code{font-size:.85rem}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
.current{font-size:.8rem;color:var(--accent);font-weight:600}
.link{background:none;border:0;color:var(--accent);padding:0;cursor:pointer;text-decoration:underline}
.note{font-size:.9rem}
details{margin:.35rem 0}
summary{cursor:pointer}
.actions{flex-wrap:wrap}
p.note{margin-top:1rem}
@media (max-width:32rem){main{padding:1.25rem 1rem}#device-list th:nth-child(2),#device-list td:nth-child(2){display:none}}
</style>`

// homeApp is a route as the home page lists it.
type homeApp struct {
	rt   *Route
	link string
}

// homeApps are the routes that admit s and are listed, with their links.
func (p *Proxy) homeApps(s *session.Session) []homeApp {
	var out []homeApp
	for _, rt := range p.routes.routes {
		if !rt.listed || !rt.access.allows(s) {
			continue
		}
		var link string
		switch {
		case rt.host == "": // the one upstream, on every host
			link = p.external.String() + "/"
		case strings.HasPrefix(rt.host, "*."):
			continue // no one address to link to
		default:
			link = rt.origin.String() + rt.prefix + "/"
		}
		out = append(out, homeApp{rt, link})
	}
	return out
}

// csrfToken binds a form to the session it was shown to.
func (p *Proxy) csrfToken(e *session.Entry) string {
	m := hmac.New(sha256.New, p.csrfKey)
	fmt.Fprintf(m, "%s\x00%d\x00%d", e.Session.Subject, e.Session.Born, e.Session.Created)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sameSite refuses a POST another site made (the browser says so, or its
// Origin is not this host's) or without the form's token.
func (p *Proxy) sameSite(r *http.Request, e *session.Entry) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return false
		}
	}
	got := r.PostFormValue("csrf")
	return got != "" && hmac.Equal([]byte(got), []byte(p.csrfToken(e)))
}

// homeIdentity is the signed-in identity of a request to the home pages;
// it answers the request itself (sign-in, 503) when it returns nil.
func (p *Proxy) homeIdentity(w http.ResponseWriter, r *http.Request) *Identity {
	w.Header().Set("Cache-Control", "no-store")
	id, err := p.loadIdentity(w, r, p.routeFor(r))
	if err != nil {
		p.storeUnavailable(w, r, err)
		return nil
	}
	if id == nil {
		if r.Method == http.MethodGet {
			p.startFlow(w, r, r.URL.Path)
		} else {
			p.errorPage(w, r, http.StatusUnauthorized, "Signed out", "Your session is over. Sign in again.")
		}
		return nil
	}
	return id
}

// handleHome is /oauth2/: the signed-in person's apps, identity and
// sessions.
func (p *Proxy) handleHome(w http.ResponseWriter, r *http.Request) {
	id := p.homeIdentity(w, r)
	if id == nil {
		return
	}
	s := id.session
	var b strings.Builder
	b.WriteString(pageHead("Your account") + homeStyle)
	fmt.Fprintf(&b, `<h1>Signed in as <span id="user">%s</span></h1>`, esc(s.UserName()))
	if msg := r.URL.Query().Get("done"); msg == "device" {
		b.WriteString(`<p role="status" id="done">That device is signed out.</p>`)
	}

	b.WriteString(`<h2 id="apps">Your apps</h2>`)
	apps := p.homeApps(s)
	if len(apps) == 0 {
		b.WriteString(`<p>No application here is open to you.</p>`)
	} else {
		b.WriteString(`<ul class="apps">`)
		for _, a := range apps {
			fmt.Fprintf(&b, `<li><a class="app" href="%s"><span class="icon" aria-hidden="true">%s</span><span><strong>%s</strong>`,
				esc(a.link), iconHTML(a.rt), esc(a.rt.title))
			if a.rt.description != "" {
				fmt.Fprintf(&b, `<small>%s</small>`, esc(a.rt.description))
			}
			b.WriteString(`</span></a></li>`)
		}
		b.WriteString(`</ul>`)
	}

	b.WriteString(`<h2 id="identity">Who you are to them</h2>`)
	fmt.Fprintf(&b, `<table><tbody><tr><th scope="row">Provider</th><td>%s</td></tr>`, esc(p.cfg.OIDC.Issuer))
	if g := s.Groups; g != nil || s.Claim("groups") != "" {
		groups := g
		if groups == nil {
			groups = strings.Split(s.Claim("groups"), ",")
		}
		fmt.Fprintf(&b, `<tr><th scope="row">Groups</th><td id="groups">%s</td></tr>`, esc(strings.Join(groups, ", ")))
	}
	fmt.Fprintf(&b, `<tr><th scope="row">Signed in</th><td>%s</td></tr><tr><th scope="row">Session ends</th><td>%s</td></tr>`,
		when(s.Created), when(s.Expires))
	if p.idle > 0 {
		fmt.Fprintf(&b, `<tr><th scope="row">Idle timeout</th><td>%s without a request</td></tr>`, esc(p.idle.String()))
	}
	b.WriteString(`</tbody></table>`)
	for _, a := range apps {
		hid := a.rt.headers.identity(s)
		fmt.Fprintf(&b, `<details><summary>What %s receives</summary><table class="headers" data-app="%s"><thead><tr><th scope="col">Header</th><th scope="col">Value</th></tr></thead><tbody>`,
			esc(a.rt.title), esc(a.rt.name))
		for i, h := range a.rt.headers.set {
			if hid.values[i] != nil {
				fmt.Fprintf(&b, `<tr><td><code>%s</code></td><td>%s</td></tr>`, esc(h.name), esc(hid.values[i][0]))
			}
		}
		for _, si := range a.rt.signed {
			fmt.Fprintf(&b, `<tr><td><code>%s</code></td><td>your identity, signed by the proxy</td></tr>`, esc(si.header))
		}
		b.WriteString(`</tbody></table></details>`)
	}

	b.WriteString(`<h2 id="devices">Your sessions</h2>`)
	devices, err := p.store.Devices(r.Context(), s.Subject)
	switch {
	case errors.Is(err, session.ErrNoDevices):
		b.WriteString(`<p class="note" id="no-devices">This proxy keeps your session in your browser's cookie, so it cannot list your other devices or sign them out from here. Sign out on each device, or sign out at the identity provider: a session here ends when it expires.</p>`)
		fmt.Fprintf(&b, `<form class="actions" method="post" action="%ssign_out"><button class="button" id="signout" type="submit">Sign out here</button></form>`, Prefix)
	case err != nil:
		b.WriteString(`<p class="note">Your sessions cannot be listed right now.</p>`)
	default:
		csrf := esc(p.csrfToken(id.entry))
		b.WriteString(`<table id="device-list"><thead><tr><th scope="col">Device</th><th scope="col">Address</th><th scope="col">Signed in</th><th scope="col">Last seen</th><th scope="col"><span class="visually-hidden">Action</span></th></tr></thead><tbody>`)
		for _, d := range devices {
			current := d.Name == id.entry.Name()
			seen, addr := d.Last()
			fmt.Fprintf(&b, `<tr><td>%s`, esc(DeviceInWords(d.Agent)))
			if current {
				b.WriteString(` <span class="current">this device</span>`)
			}
			fmt.Fprintf(&b, `</td><td>%s</td><td>%s</td><td>%s</td><td>`, esc(addr), when(d.Created), when(seen))
			if !current {
				fmt.Fprintf(&b, `<form method="post" action="%ssessions/end"><input type="hidden" name="csrf" value="%s"><input type="hidden" name="session" value="%s"><button class="link" type="submit">Sign out that device</button></form>`,
					Prefix, csrf, esc(d.Name))
			}
			b.WriteString(`</td></tr>`)
		}
		b.WriteString(`</tbody></table>`)
		fmt.Fprintf(&b, `<div class="actions"><form method="post" action="%ssign_out"><button class="button" id="signout" type="submit">Sign out here</button></form>`, Prefix)
		fmt.Fprintf(&b, `<form method="post" action="%ssessions/end_all"><input type="hidden" name="csrf" value="%s"><button class="link" id="signout-everywhere" type="submit">Sign out everywhere</button></form></div>`, Prefix, csrf)
	}
	if p.isAdmin(s) && p.requestHost(r) == p.home {
		fmt.Fprintf(&b, `<p class="note"><a href="%sadmin/">Administration</a></p>`, Prefix)
	}
	b.WriteString(`</main></body></html>`)
	p.writeHome(w, http.StatusOK, b.String())
}

func (p *Proxy) writeHome(w http.ResponseWriter, status int, page string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	w.Write([]byte(page))
}

// handleEndDevice ends one of the person's other sessions.
func (p *Proxy) handleEndDevice(w http.ResponseWriter, r *http.Request) {
	id := p.homeIdentity(w, r)
	if id == nil {
		return
	}
	if !p.sameSite(r, id.entry) {
		p.csrfRefused(w, r, id)
		return
	}
	name := r.PostFormValue("session")
	ok, err := p.store.EndDevice(r.Context(), id.session.Subject, name)
	switch {
	case err != nil:
		p.storeUnavailable(w, r, err)
		return
	case !ok:
		p.errorPage(w, r, http.StatusNotFound, "No such session", "That session is over already.")
		return
	}
	p.metrics.account.WithLabelValues("sign_out_device").Inc()
	p.log.Info("sign-out of another device", "user", id.session.UserName(), "sub", id.session.Subject, "client", p.trusted.clientIP(r))
	http.Redirect(w, r, Prefix+"?done=device", http.StatusSeeOther)
}

// handleEndEverywhere ends every session of the person, this one too.
func (p *Proxy) handleEndEverywhere(w http.ResponseWriter, r *http.Request) {
	id := p.homeIdentity(w, r)
	if id == nil {
		return
	}
	if !p.sameSite(r, id.entry) {
		p.csrfRefused(w, r, id)
		return
	}
	n, err := p.store.EndSubject(r.Context(), id.session.Subject)
	if err != nil {
		p.storeUnavailable(w, r, err)
		return
	}
	p.store.Clear(w, r)
	p.metrics.account.WithLabelValues("sign_out_everywhere").Inc()
	p.log.Info("sign-out everywhere", "user", id.session.UserName(), "sub", id.session.Subject, "sessions", n, "client", p.trusted.clientIP(r))
	http.Redirect(w, r, Prefix+"signed_out", http.StatusSeeOther)
}

func (p *Proxy) csrfRefused(w http.ResponseWriter, r *http.Request, id *Identity) {
	p.metrics.account.WithLabelValues("refused_cross_site").Inc()
	p.log.Warn("a form post without its token or from another site was refused", "path", r.URL.Path, "user", id.session.UserName(), "client", p.trusted.clientIP(r))
	p.errorPage(w, r, http.StatusForbidden, "Not done", "This request did not come from your account page. Nothing was changed.")
}

// isAdmin reports whether s is in one of admin.groups.
func (p *Proxy) isAdmin(s *session.Session) bool {
	if len(p.cfg.Admin.Groups) == 0 {
		return false
	}
	groups := s.Groups
	if groups == nil {
		groups = strings.Split(s.Claim("groups"), ",")
	}
	return slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(p.cfg.Admin.Groups, g) })
}

// adminIdentity is an administrator's identity on the sign-in host, or
// nil when the request was answered (404 elsewhere, 403 for others).
func (p *Proxy) adminIdentity(w http.ResponseWriter, r *http.Request) *Identity {
	if p.requestHost(r) != p.home {
		p.notFound(w, r, p.requestHost(r))
		return nil
	}
	id := p.homeIdentity(w, r)
	if id == nil {
		return nil
	}
	if !p.isAdmin(id.session) {
		p.metrics.account.WithLabelValues("admin_refused").Inc()
		p.log.Warn("administration refused: not in admin.groups", "user", id.session.UserName(), "client", p.trusted.clientIP(r))
		p.forbidden(w, r, id.session)
		return nil
	}
	return id
}

// handleAdmin lists everyone signed in now.
func (p *Proxy) handleAdmin(w http.ResponseWriter, r *http.Request) {
	id := p.adminIdentity(w, r)
	if id == nil {
		return
	}
	var b strings.Builder
	b.WriteString(pageHead("Administration") + homeStyle)
	b.WriteString(`<h1>People signed in now</h1>`)
	if r.URL.Query().Get("done") == "person" {
		b.WriteString(`<p role="status" id="done">That person is signed out everywhere.</p>`)
	}
	devices, err := p.store.Devices(r.Context(), "")
	switch {
	case errors.Is(err, session.ErrNoDevices):
		b.WriteString(`<p class="note" id="no-devices">Sessions live in browsers' cookies (session.store: cookie): the proxy cannot list them or end them. Use the Redis store for this page.</p>`)
	case err != nil:
		b.WriteString(`<p class="note">The sessions cannot be listed right now.</p>`)
	default:
		bySub := map[string][]session.Device{}
		var order []string
		for _, d := range devices {
			if _, ok := bySub[d.Subject]; !ok {
				order = append(order, d.Subject)
			}
			bySub[d.Subject] = append(bySub[d.Subject], d)
		}
		slices.SortFunc(order, func(a, b string) int { return strings.Compare(bySub[a][0].User, bySub[b][0].User) })
		if len(order) == 0 {
			b.WriteString(`<p>Nobody is signed in.</p>`)
		}
		csrf := esc(p.csrfToken(id.entry))
		for _, sub := range order {
			ds := bySub[sub]
			fmt.Fprintf(&b, `<h2 class="person" data-user="%s">%s <small>(%d session%s)</small></h2>`, esc(ds[0].User), esc(ds[0].User), len(ds), plural(len(ds)))
			b.WriteString(`<table><thead><tr><th scope="col">Device</th><th scope="col">Address</th><th scope="col">Signed in</th><th scope="col">Last seen</th></tr></thead><tbody>`)
			for _, d := range ds {
				seen, addr := d.Last()
				fmt.Fprintf(&b, `<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>`, esc(DeviceInWords(d.Agent)), esc(addr), when(d.Created), when(seen))
			}
			b.WriteString(`</tbody></table>`)
			fmt.Fprintf(&b, `<form method="post" action="%sadmin/end"><input type="hidden" name="csrf" value="%s"><input type="hidden" name="sub" value="%s"><button class="link" type="submit">Sign %s out everywhere</button></form>`,
				Prefix, csrf, esc(sub), esc(ds[0].User))
		}
	}
	fmt.Fprintf(&b, `<p class="note"><a href="%s">Your account</a></p></main></body></html>`, Prefix)
	p.writeHome(w, http.StatusOK, b.String())
}

// handleAdminEnd signs a person out everywhere.
func (p *Proxy) handleAdminEnd(w http.ResponseWriter, r *http.Request) {
	id := p.adminIdentity(w, r)
	if id == nil {
		return
	}
	if !p.sameSite(r, id.entry) {
		p.csrfRefused(w, r, id)
		return
	}
	sub := r.PostFormValue("sub")
	if sub == "" {
		p.errorPage(w, r, http.StatusBadRequest, "Nobody named", "No person was named.")
		return
	}
	n, err := p.store.EndSubject(r.Context(), sub)
	if err != nil {
		p.storeUnavailable(w, r, err)
		return
	}
	p.metrics.account.WithLabelValues("admin_sign_out").Inc()
	p.log.Warn("administration: a person signed out everywhere", "admin", id.session.UserName(), "admin_sub", id.session.Subject, "sub", sub, "sessions", n, "client", p.trusted.clientIP(r))
	if sub == id.session.Subject {
		p.store.Clear(w, r)
		http.Redirect(w, r, Prefix+"signed_out", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, Prefix+"admin/?done=person", http.StatusSeeOther)
}

func esc(s string) string { return html.EscapeString(s) }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// when writes a Unix time for people: UTC, to the minute.
func when(unix int64) string {
	if unix == 0 {
		return "—"
	}
	t := time.Unix(unix, 0).UTC()
	return fmt.Sprintf(`<time datetime="%s">%s</time>`, t.Format(time.RFC3339), t.Format("2 Jan 2006, 15:04 UTC"))
}

// iconHTML is a route's icon: an image from a data: URI, the text given,
// or the title's first letter.
func iconHTML(rt *Route) string {
	switch {
	case strings.HasPrefix(rt.icon, "data:image/"):
		return `<img alt="" src="` + esc(rt.icon) + `">`
	case rt.icon != "":
		return esc(rt.icon)
	}
	for _, c := range rt.title {
		return esc(strings.ToUpper(string(c)))
	}
	return ""
}

// DeviceInWords names the browser and system of a User-Agent, as people
// say them: "Firefox on Linux", "Safari on iPhone".
func DeviceInWords(ua string) string {
	if ua == "" {
		return "Unknown device"
	}
	has := func(s string) bool { return strings.Contains(ua, s) }
	browser := ""
	switch {
	case has("curl/"):
		return "curl"
	case has("Edg/"), has("EdgA/"), has("EdgiOS/"):
		browser = "Edge"
	case has("OPR/"), has("Opera"):
		browser = "Opera"
	case has("Firefox/"), has("FxiOS/"):
		browser = "Firefox"
	case has("HeadlessChrome/"):
		browser = "Headless Chrome"
	case has("Chrome/"), has("CriOS/"), has("Chromium/"):
		browser = "Chrome"
	case has("Safari/"):
		browser = "Safari"
	case has("Go-http-client"):
		return "A program (Go)"
	default:
		browser = "A browser"
	}
	system := ""
	switch {
	case has("iPhone"):
		system = "iPhone"
	case has("iPad"):
		system = "iPad"
	case has("Android"):
		system = "Android"
	case has("Windows"):
		system = "Windows"
	case has("Mac OS X"), has("Macintosh"):
		system = "macOS"
	case has("CrOS"):
		system = "ChromeOS"
	case has("Linux"):
		system = "Linux"
	}
	if system == "" {
		return browser
	}
	return browser + " on " + system
}

// Devices lists the sessions the store holds (for the command line):
// every one, or those of the people whose user name is user.
func (p *Proxy) Devices(ctx context.Context, user string) ([]session.Device, error) {
	ds, err := p.store.Devices(ctx, "")
	if err != nil || user == "" {
		return ds, err
	}
	var out []session.Device
	for _, d := range ds {
		if d.User == user {
			out = append(out, d)
		}
	}
	return out, nil
}

// EndUser ends every session of the people whose user name is user, on
// every replica (for the command line), and reports how many ended.
func (p *Proxy) EndUser(ctx context.Context, user string) (int, error) {
	ds, err := p.Devices(ctx, user)
	if err != nil {
		return 0, err
	}
	subs := map[string]bool{}
	for _, d := range ds {
		subs[d.Subject] = true
	}
	n := 0
	for sub := range subs {
		k, err := p.store.EndSubject(ctx, sub)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
