package proxy_test

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// homeYAML makes the routes stand's configuration the home page's: the
// apps get titles, one a description and an icon; the route on a path
// (tools-ab) is hidden; alice's group admins may administer.
func homeYAML(y string) string {
	y = strings.Replace(y, "  - name: grafana\n", "  - name: grafana\n    title: Dashboards\n    description: \"Graphs <and> alerts\"\n    icon: \"📈\"\n", 1)
	y = strings.Replace(y, "  - name: admin\n", "  - name: admin\n    title: Admin tools\n", 1)
	y = strings.Replace(y, "  - name: tools-ab\n", "  - name: tools-ab\n    listed: false\n", 1)
	return strings.Replace(y, "routes:\n", "admin:\n  groups: [admins]\nroutes:\n", 1)
}

// homeStand is the routes stand with the home page's configuration, on
// Redis with a second replica serving grafana.localhost.
func homeStand(t *testing.T) (*routesStand, *redisServer) {
	redis := startRedis(t)
	rs := newRoutesStandYAML(t, fmt.Sprintf("  store: redis\n  redis:\n    address: %q\n    timeout: 1s", redis.addr), homeYAML)
	ln := listen(t)
	second := rs.serve(ln)
	for deadline := time.Now().Add(10 * time.Second); !second.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second replica never became ready")
		}
	}
	rs.extras["grafana.localhost"] = ln.Addr().String()
	return rs, redis
}

// browserAs is a signed-in client of user with the User-Agent ua.
func (rs *routesStand) browserAs(user, password, ua string) *http.Client {
	c := rs.browser()
	tr := c.Transport
	c.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r.Header.Set("User-Agent", ua)
		return tr.RoundTrip(r)
	})
	if resp, body := rs.signIn(c, "notes.localhost", "/", user, password); resp.StatusCode != 200 {
		rs.t.Fatalf("sign-in of %s: %d %s", user, resp.StatusCode, body)
	}
	return c
}

const (
	firefoxLinux  = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
	safariIPhone  = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Mobile/15E148 Safari/604.1"
	chromeWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36"
)

var linkRE = regexp.MustCompile(`<a class="app" href="([^"]+)">.*?<strong>([^<]*)</strong>`)

// apps lists the home page's apps: title → link.
func apps(body string) map[string]string {
	out := map[string]string{}
	for _, m := range linkRE.FindAllStringSubmatch(body, -1) {
		out[html.UnescapeString(m[2])] = html.UnescapeString(m[1])
	}
	return out
}

// TestHomeApps: each person sees the apps that admit them, and no hidden
// one; the identity shown for an app is what the app receives; every
// value is escaped.
func TestHomeApps(t *testing.T) {
	rs, _ := homeStand(t)
	alice := rs.browserAs("alice", alicePassword, firefoxLinux)
	bob := rs.browserAs("bob", bobPassword, chromeWindows)
	for _, tc := range []struct {
		c    *http.Client
		who  string
		want []string
	}{
		{alice, "alice", []string{"notes", "Dashboards", "Admin tools", "tools-a"}},
		{bob, "bob", []string{"notes", "Dashboards", "tools-a"}},
	} {
		resp, body := navigate(t, tc.c, rs.url("notes.localhost", "/oauth2/"))
		if resp.StatusCode != 200 || !strings.Contains(body, `<span id="user">`+tc.who+`</span>`) {
			t.Fatalf("%s's home: %d %.300s", tc.who, resp.StatusCode, body)
		}
		got := apps(body)
		if len(got) != len(tc.want) {
			t.Errorf("%s sees %v, want %v", tc.who, got, tc.want)
		}
		for _, w := range tc.want {
			if _, ok := got[w]; !ok {
				t.Errorf("%s does not see %s: %v", tc.who, w, got)
			}
		}
		if got["Dashboards"] != rs.url("grafana.localhost", "/") || got["tools-a"] != rs.url("tools.localhost", "/a/") {
			t.Errorf("%s's links: %v", tc.who, got)
		}
		if !strings.Contains(body, "Graphs &lt;and&gt; alerts") || strings.Contains(body, "<and>") {
			t.Errorf("the description is not escaped")
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("CSP: %q", csp)
		}
	}
	// What grafana shows equals what grafana receives.
	resp, body := navigate(t, alice, rs.url("grafana.localhost", "/oauth2/"))
	if resp.StatusCode != 200 {
		t.Fatalf("home on grafana.localhost: %d", resp.StatusCode)
	}
	navigate(t, alice, rs.url("grafana.localhost", "/x"))
	got := rs.apps["grafana"].Last().Header
	table := regexp.MustCompile(`(?s)<table class="headers" data-app="grafana">.*?</table>`).FindString(body)
	rows := regexp.MustCompile(`<tr><td><code>([^<]+)</code></td><td>([^<]*)</td></tr>`).FindAllStringSubmatch(table, -1)
	if len(rows) == 0 {
		t.Fatalf("no header table for grafana: %.500s", body)
	}
	for _, row := range rows {
		if v := got.Get(row[1]); v != html.UnescapeString(row[2]) {
			t.Errorf("the page says %s: %q, grafana got %q", row[1], row[2], v)
		}
	}
	// Signed out, the home page sends to sign in.
	resp, _ = navigate(t, rs.browser(), rs.url("notes.localhost", "/oauth2/"))
	if !onLoginForm(resp) {
		t.Errorf("home without a session: %d at %s", resp.StatusCode, resp.Request.URL)
	}
}

var deviceRE = regexp.MustCompile(`(?s)<tr><td>([^<]*)(?: <span class="current">this device</span>)?</td><td>[^<]*</td>.*?(?:name="session" value="([0-9a-f]+)"|</tr>)`)

// post sends a form from the home page, as the browser would (same site).
func post(t *testing.T, c *http.Client, u string, form url.Values, headers ...string) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return do(t, c, req)
}

func csrfOf(t *testing.T, body string) string {
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no form token on the page: %.300s", body)
	}
	return html.UnescapeString(m[1])
}

// TestHomeDevices: alice on two browsers (Redis, two replicas): each
// lists both, the device in words; "sign out that device" ends the other
// browser's session on every replica; a cross-site or tokenless post
// changes nothing; "sign out everywhere" ends all of hers.
func TestHomeDevices(t *testing.T) {
	rs, redis := homeStand(t)
	phone := rs.browserAs("alice", alicePassword, safariIPhone)
	laptop := rs.browserAs("alice", alicePassword, firefoxLinux)
	_, body := navigate(t, laptop, rs.url("notes.localhost", "/oauth2/"))
	for _, words := range []string{"Safari on iPhone", "Firefox on Linux <span class=\"current\">this device</span>"} {
		if !strings.Contains(body, words) {
			t.Errorf("the devices list lacks %q: %.2000s", words, body)
		}
	}
	if strings.Contains(redis.dump(), "iPhone") || strings.Contains(redis.dump(), "alice") {
		t.Errorf("Redis holds the device or the user in the clear")
	}
	phoneName := ""
	for _, m := range deviceRE.FindAllStringSubmatch(body, -1) {
		if m[1] == "Safari on iPhone" {
			phoneName = m[2]
		}
	}
	if phoneName == "" {
		t.Fatalf("no sign-out form for the phone: %.2000s", body)
	}
	csrf := csrfOf(t, body)
	end := rs.url("notes.localhost", "/oauth2/sessions/end")
	// Refused: no token, a token of another session, another site.
	for _, tc := range []struct {
		name    string
		form    url.Values
		headers []string
	}{
		{"no token", url.Values{"session": {phoneName}}, nil},
		{"a wrong token", url.Values{"session": {phoneName}, "csrf": {"x" + csrf}}, nil},
		{"another site", url.Values{"session": {phoneName}, "csrf": {csrf}}, []string{"Sec-Fetch-Site", "cross-site"}},
		{"another origin", url.Values{"session": {phoneName}, "csrf": {csrf}}, []string{"Sec-Fetch-Site", "", "Origin", "https://evil.example"}},
	} {
		if resp, _ := post(t, laptop, end, tc.form, tc.headers...); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d", tc.name, resp.StatusCode)
		}
	}
	if resp, _ := navigate(t, phone, rs.url("grafana.localhost", "/")); resp.StatusCode != 200 || onLoginForm(resp) {
		t.Fatalf("a refused post ended the phone's session")
	}
	// A cross-site post to the sign-out does nothing either.
	if resp, _ := post(t, phone, rs.url("notes.localhost", "/oauth2/sign_out"), url.Values{}, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site sign-out: %d", resp.StatusCode)
	}
	if resp, _ := navigate(t, phone, rs.url("grafana.localhost", "/")); resp.StatusCode != 200 || onLoginForm(resp) {
		t.Fatalf("a cross-site sign-out ended the phone's session")
	}
	// Done right: the phone is signed out on both replicas.
	if resp, body := post(t, laptop, end, url.Values{"session": {phoneName}, "csrf": {csrf}}); resp.StatusCode != 200 || !strings.Contains(body, `id="done"`) {
		t.Fatalf("sign out that device: %d %.300s", resp.StatusCode, body)
	}
	for _, host := range []string{"grafana.localhost", "notes.localhost"} {
		if resp, _ := navigate(t, phone, rs.url(host, "/")); !onLoginForm(resp) {
			t.Errorf("the phone still gets %s: %d", host, resp.StatusCode)
		}
	}
	if resp, _ := navigate(t, laptop, rs.url("grafana.localhost", "/")); onLoginForm(resp) {
		t.Errorf("the laptop was signed out too")
	}
	// Another person's session cannot be ended from alice's page.
	before := redis.bulk("KEYS", "oidc-proxy:s:*")
	bob := rs.browserAs("bob", bobPassword, chromeWindows)
	bobName := ""
	for _, k := range strings.Split(redis.bulk("KEYS", "oidc-proxy:s:*"), "\n") {
		if !strings.Contains(before, k) {
			bobName = strings.TrimPrefix(k, "oidc-proxy:s:")
		}
	}
	if resp, _ := post(t, laptop, end, url.Values{"session": {bobName}, "csrf": {csrf}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("alice ending bob's session: %d", resp.StatusCode)
	}
	if resp, _ := navigate(t, bob, rs.url("notes.localhost", "/")); onLoginForm(resp) {
		t.Errorf("alice ended bob's session")
	}
	// Sign out everywhere: refused without the token or from another
	// site; done right, the laptop and a new session on a tablet end.
	tablet := rs.browserAs("alice", alicePassword, chromeWindows)
	_, body = navigate(t, laptop, rs.url("notes.localhost", "/oauth2/"))
	endAll := rs.url("notes.localhost", "/oauth2/sessions/end_all")
	if resp, _ := post(t, laptop, endAll, url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign out everywhere without the token: %d", resp.StatusCode)
	}
	if resp, _ := post(t, laptop, endAll, url.Values{"csrf": {csrfOf(t, body)}}, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign out everywhere from another site: %d", resp.StatusCode)
	}
	if resp, _ := navigate(t, tablet, rs.url("notes.localhost", "/")); onLoginForm(resp) {
		t.Fatalf("a refused sign out everywhere signed the tablet out")
	}
	if resp, _ := post(t, laptop, rs.url("notes.localhost", "/oauth2/sessions/end_all"), url.Values{"csrf": {csrfOf(t, body)}}); resp.StatusCode != 200 {
		t.Fatalf("sign out everywhere: %d", resp.StatusCode)
	}
	for _, c := range []*http.Client{laptop, tablet} {
		for _, host := range []string{"grafana.localhost", "notes.localhost"} {
			if resp, _ := navigate(t, c, rs.url(host, "/")); !onLoginForm(resp) {
				t.Errorf("after sign out everywhere, %s still answers", host)
			}
		}
	}
	if resp, _ := navigate(t, bob, rs.url("grafana.localhost", "/")); onLoginForm(resp) {
		t.Errorf("alice's sign out everywhere ended bob's session")
	}
}

// TestHomeAdmin: the administration page is for admin.groups only (a
// forged group header changes nothing), on the sign-in host only; an
// administrator signs a person out everywhere, logged and counted; a
// cross-site post does nothing.
func TestHomeAdmin(t *testing.T) {
	rs, _ := homeStand(t)
	alice := rs.browserAs("alice", alicePassword, firefoxLinux)
	bob := rs.browserAs("bob", bobPassword, chromeWindows)
	bobPhone := rs.browserAs("bob", bobPassword, safariIPhone)
	admin := rs.url("auth.localhost", "/oauth2/admin/")
	req, _ := http.NewRequest(http.MethodGet, admin, nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Remote-Groups", "admins")
	req.Header.Set("X-Forwarded-Groups", "admins")
	if resp, _ := do(t, bob, req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob, with a forged group header: %d", resp.StatusCode)
	}
	if resp, _ := navigate(t, alice, rs.url("notes.localhost", "/oauth2/admin/")); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the admin page on a route host: %d", resp.StatusCode)
	}
	resp, body := navigate(t, alice, admin)
	if resp.StatusCode != 200 || !strings.Contains(body, `data-user="bob"`) || !strings.Contains(body, "(2 sessions)") || !strings.Contains(body, `data-user="alice"`) {
		t.Fatalf("alice's admin page: %d %.1500s", resp.StatusCode, body)
	}
	sub := regexp.MustCompile(`name="sub" value="([^"]+)"><button class="link" type="submit">Sign bob out everywhere`).FindStringSubmatch(body)
	if sub == nil {
		t.Fatalf("no form for bob: %.1500s", body)
	}
	endURL := rs.url("auth.localhost", "/oauth2/admin/end")
	if resp, _ := post(t, alice, endURL, url.Values{"sub": {sub[1]}, "csrf": {csrfOf(t, body)}}, "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site post: %d", resp.StatusCode)
	}
	if resp, _ := post(t, bob, endURL, url.Values{"sub": {sub[1]}, "csrf": {csrfOf(t, body)}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob posting the admin form: %d", resp.StatusCode)
	}
	if resp, _ := navigate(t, bob, rs.url("notes.localhost", "/")); onLoginForm(resp) {
		t.Fatalf("a refused post signed bob out")
	}
	if resp, body := post(t, alice, endURL, url.Values{"sub": {sub[1]}, "csrf": {csrfOf(t, body)}}); resp.StatusCode != 200 || !strings.Contains(body, `id="done"`) {
		t.Fatalf("signing bob out: %d %.300s", resp.StatusCode, body)
	}
	for _, c := range []*http.Client{bob, bobPhone} {
		for _, host := range []string{"grafana.localhost", "notes.localhost"} {
			if resp, _ := navigate(t, c, rs.url(host, "/")); !onLoginForm(resp) {
				t.Errorf("bob still gets %s", host)
			}
		}
	}
	if resp, _ := navigate(t, alice, rs.url("grafana.localhost", "/")); onLoginForm(resp) {
		t.Errorf("alice was signed out too")
	}
	if !strings.Contains(rs.logs.String(), `msg="administration: a person signed out everywhere" admin=alice`) {
		t.Errorf("no audit line")
	}
}

// TestHomeCookieStore: with sessions in cookies the page says it cannot
// list devices, offers no "sign out everywhere", and the admin page says
// why it lists nobody.
func TestHomeCookieStore(t *testing.T) {
	rs := newRoutesStandYAML(t, "", homeYAML)
	alice := rs.browserAs("alice", alicePassword, firefoxLinux)
	_, body := navigate(t, alice, rs.url("notes.localhost", "/oauth2/"))
	if !strings.Contains(body, `id="no-devices"`) || strings.Contains(body, "Sign out everywhere") || strings.Contains(body, "end_all") {
		t.Errorf("the cookie store's home page: %.2000s", body)
	}
	resp, body := navigate(t, alice, rs.url("auth.localhost", "/oauth2/admin/"))
	if resp.StatusCode != 200 || !strings.Contains(body, `id="no-devices"`) {
		t.Errorf("the cookie store's admin page: %d %.500s", resp.StatusCode, body)
	}
}
