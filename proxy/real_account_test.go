package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// TestRealBrowserAccountPages: the home and administration pages in
// Chromium, with the real Authelia 4.39, two replicas on Redis behind a
// round-robin balancer: each person's apps (a group opens one app and not
// another; a hidden app never shows), the identity shown equals what the
// app receives, the page in light, dark and a phone-sized window; alice
// on a second browser, "sign out that device" from the first ends it on
// both replicas; bob is refused the administration page (a forged group
// header changes nothing), and alice signs him out everywhere there.
func TestRealBrowserAccountPages(t *testing.T) {
	if testing.Short() {
		t.Skip("the real programs in a browser")
	}
	rs := startRedis(t)
	lb := listen(t)
	_, port, _ := strings.Cut(lb.Addr().String(), ":")
	origin := func(host string) string { return "http://" + host + ".localhost:" + port }
	a := proxytest.StartAuthelia(t, proxytest.AutheliaOptions{
		Users: []proxytest.AutheliaUser{
			{Name: "alice", Password: alicePassword, DisplayName: "Alice Liddell", Email: "alice@example.test", Groups: []string{"admins", "users"}},
			{Name: "bob", Password: bobPassword, DisplayName: "Bob", Email: "bob@example.test", Groups: []string{"users"}},
		},
		Clients: []proxytest.AutheliaClient{{ID: "apps", Secret: realSecret, RedirectURIs: []string{origin("sso") + "/oauth2/callback"}}},
	})
	s := &stand{T: t, Logs: &syncBuffer{}}
	s.Issuer, s.URL = a.Issuer, origin("sso")
	s.StartUpstream()
	s.Handle(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "<!doctype html><title>app</title><p id=who>%s for %s</p>", r.Host, r.Header.Get("Remote-User"))
	})
	yaml := fmt.Sprintf(`external_url: %q
oidc: {issuer: %q, client_id: apps, client_secret: %q}
session: {secret: %q}
admin: {groups: [admins]}
routes:
  - {name: notes, host: notes.localhost, upstream: %[5]q, title: Notes, description: "Your notes", icon: "📝"}
  - {name: ops, host: ops.localhost, upstream: %[5]q, title: Operations, access: {allowed_groups: [admins]}}
  - {name: hidden, host: hidden.localhost, upstream: %[5]q, listed: false}
`, origin("sso"), a.Issuer, realSecret, sessionSecret, s.Upstream.URL)
	backends, _, _ := balanced(t, s, a, yaml, rs, lb)
	flags := [][2]string{{"host-resolver-rules", "MAP " + a.Host + " 127.0.0.1"}, {"ignore-certificate-errors", "true"}}

	// alice's first browser: her apps, and what notes receives.
	first := proxytest.Chromium(t, 3*time.Minute, flags...)
	browserAt(t, first, origin("notes")+"/", "alice", alicePassword, func() bool { return strings.Contains(pageText(first), "for alice") })
	received := s.LastSeen().Header
	browserAt(t, first, origin("sso")+"/oauth2/", "", "", func() bool { return strings.Contains(pageText(first), "Signed in as alice") })
	if got := jsString(first, `[...document.querySelectorAll('ul.apps strong')].map(e => e.textContent).join(',')`); got != "Notes,Operations" {
		t.Errorf("alice's apps: %q", got)
	}
	rows := jsString(first, `[...document.querySelectorAll('table.headers[data-app="notes"] tr')].slice(1).map(r => r.cells[0].textContent + '=' + r.cells[1].textContent).join('\n')`)
	if rows == "" {
		t.Fatalf("no identity table for notes")
	}
	for _, row := range strings.Split(rows, "\n") {
		name, value, _ := strings.Cut(row, "=")
		if received.Get(name) != value {
			t.Errorf("the page says %s is %q; notes received %q", name, value, received.Get(name))
		}
	}
	screenshots(t, first)

	// bob: one app; the administration page refused, a forged group too.
	bob := a.Browser("")
	if resp, body, err := a.SignIn(bob, origin("notes")+"/", "bob", bobPassword); err != nil || resp.StatusCode != 200 || !strings.Contains(body, "for bob") {
		t.Fatalf("bob's sign-in: %v %v", err, resp)
	}
	_, body := navigate(t, bob, origin("sso")+"/oauth2/")
	if apps := apps(body); len(apps) != 1 || apps["Notes"] == "" {
		t.Errorf("bob's apps: %v", apps)
	}
	req := mustReq(http.MethodGet, origin("sso")+"/oauth2/admin/")
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Remote-Groups", "admins")
	if resp, _ := do(t, bob, req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob on the administration page: %d", resp.StatusCode)
	}

	// alice's second browser, then "sign out that device" from the first.
	second := proxytest.Chromium(t, 3*time.Minute, flags...)
	browserAt(t, second, origin("notes")+"/", "alice", alicePassword, func() bool { return strings.Contains(pageText(second), "for alice") })
	secondCookie := browserCookie(t, second, origin("notes"))
	browserAt(t, first, origin("sso")+"/oauth2/", "", "", func() bool {
		return strings.Count(pageText(first), "Headless Chrome on Linux") == 2
	})
	if _, err := chromedp.Run(first, chromedp.Evaluate[any](`document.querySelector('form[action$="sessions/end"] button').click()`)); err != nil {
		t.Fatal(err)
	}
	waitPage(t, first, func(text string) bool { return strings.Contains(text, "That device is signed out.") })
	if n := strings.Count(pageText(first), "Headless Chrome on Linux"); n != 1 {
		t.Errorf("after signing the other device out, %d devices", n)
	}
	for _, backend := range backends { // the second browser's cookie, on each replica
		req := mustReq(http.MethodGet, "http://"+backend+"/api")
		req.Host = "notes.localhost:" + port
		req.Header.Set("Cookie", secondCookie)
		if resp, _ := do(t, http.DefaultClient, req); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the signed-out browser's cookie at %s: %d", backend, resp.StatusCode)
		}
	}
	// Its next page load goes through sign-in again (Authelia, still
	// signed in there, sends it straight back).
	before := strings.Count(s.Logs.String(), `msg=sign-in user=alice`)
	browserAt(t, second, origin("notes")+"/again", "", "", func() bool { return strings.Contains(pageText(second), "for alice") })
	if strings.Count(s.Logs.String(), `msg=sign-in user=alice`) != before+1 {
		t.Errorf("the signed-out browser did not sign in again")
	}

	// alice signs bob out everywhere from the administration page.
	browserAt(t, first, origin("sso")+"/oauth2/admin/", "", "", func() bool { return strings.Contains(pageText(first), "Sign bob out everywhere") })
	if _, err := chromedp.Run(first, chromedp.Evaluate[any](`[...document.querySelectorAll('form[action$="admin/end"] button')].find(b => b.textContent.includes('bob')).click()`)); err != nil {
		t.Fatal(err)
	}
	waitPage(t, first, func(text string) bool { return strings.Contains(text, "That person is signed out everywhere.") })
	if strings.Contains(pageText(first), "Sign bob out everywhere") {
		t.Errorf("bob is still listed")
	}
	if resp, _ := navigate(t, noRedirect(bob), origin("notes")+"/"); resp.StatusCode != http.StatusFound {
		t.Errorf("bob after being signed out everywhere: %d", resp.StatusCode)
	}
}

// waitPage waits until the page's text satisfies ok (a form's answer).
func waitPage(t *testing.T, ctx context.Context, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok(pageText(ctx)) {
		if time.Now().After(deadline) {
			t.Fatalf("the page never came: %.500s", pageText(ctx))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func jsString(ctx context.Context, js string) string {
	out, _ := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	return out
}

// browserCookie is the Cookie header Chromium sends to origin.
func browserCookie(t *testing.T, ctx context.Context, origin string) string {
	cookies, err := chromedp.Run(ctx, chromedp.Action[[]*network.Cookie](func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
		r, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{origin + "/"}})
		return r.Cookies, err
	}))
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, c := range cookies {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// emulate sets the window's size and colour scheme ("" and 0: the
// defaults again).
func emulate(width, height int64, scheme string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		var err error
		if width == 0 {
			_, err = cdp.Call(ctx, tg, emulation.ClearDeviceMetricsOverride, cdp.Empty{})
		} else {
			_, err = cdp.Call(ctx, tg, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
				Width: width, Height: height, DeviceScaleFactor: 1, Mobile: width < 500})
		}
		if err != nil {
			return chromedp.Void{}, err
		}
		var features []*emulation.MediaFeature
		if scheme != "" {
			features = []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}
		}
		_, err = cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: features})
		return chromedp.Void{}, err
	}
}

// screenshots takes the home page in light, dark and a phone-sized
// window, and checks each: a PNG of the window's size, a light and a dark
// background, nothing wider than a phone's window. With
// OIDC_PROXY_SCREENSHOTS set, they are written to that directory.
func screenshots(t *testing.T, ctx context.Context) {
	t.Helper()
	shots := []struct {
		name          string
		width, height int64
		dark          bool
	}{{"home-light", 1100, 900, false}, {"home-dark", 1100, 900, true}, {"home-phone", 390, 844, false}}
	backgrounds := map[bool]string{}
	for _, sh := range shots {
		scheme := "light"
		if sh.dark {
			scheme = "dark"
		}
		if err := chromedp.Do(ctx, emulate(sh.width, sh.height, scheme), chromedp.Reload(), chromedp.WaitVisible("#apps")); err != nil {
			t.Fatalf("%s: %v", sh.name, err)
		}
		bg, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`))
		overflow, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
		buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("%s: %v", sh.name, err)
		}
		img, err := png.Decode(bytes.NewReader(buf))
		if err != nil || int64(img.Bounds().Dx()) != sh.width {
			t.Errorf("%s: not a PNG of the window (%v)", sh.name, err)
		}
		if overflow {
			t.Errorf("%s: the page is wider than the window", sh.name)
		}
		if shown, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`[...document.querySelectorAll('#identity + table td')].every(td => td.offsetParent !== null && td.textContent !== '')`)); !shown {
			t.Errorf("%s: a value of who the person is is hidden", sh.name)
		}
		if sh.width > 500 {
			backgrounds[sh.dark] = bg
		}
		if dir := os.Getenv("OIDC_PROXY_SCREENSHOTS"); dir != "" {
			os.WriteFile(filepath.Join(dir, sh.name+".png"), buf, 0o644)
		}
	}
	if backgrounds[true] == backgrounds[false] || backgrounds[true] == "" {
		t.Errorf("light and dark backgrounds: %q and %q", backgrounds[false], backgrounds[true])
	}
	chromedp.Do(ctx, emulate(0, 0, ""))
}
