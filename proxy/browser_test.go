package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/oidc-proxy/oidc-proxy/config"
)

func newBrowser(t *testing.T) context.Context { return proxytest.Chromium(t, 60*time.Second) }

func TestBrowserSignIn(t *testing.T) {
	s := newStand(t, nil, nil)
	s.Handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>app</title><h1 id="hello">Hello, %s</h1>
<form method="post" action="/oauth2/sign_out?rd=/bye"><button id="signout">Sign out</button></form>`, r.Header.Get("Remote-User"))
	})
	ctx := newBrowser(t)

	// An unauthenticated page load lands on the OP's login form.
	if err := browserSignIn(ctx, s.URL+"/memos/1?tab=all", "alice", alicePassword, "hello"); err != nil {
		t.Fatalf("sign-in in the browser: %v", err)
	}
	hello, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("hello")))
	if err != nil || hello != "Hello, alice" {
		t.Errorf("page shows %q (%v)", hello, err)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if loc != s.URL+"/memos/1?tab=all" {
		t.Errorf("landed on %q", loc)
	}

	// Signing out returns to /bye, which needs a new sign-in: the browser
	// is back on the OP's login form.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("signout")),
		chromedp.WaitVisible(chromedp.ID("username")),
	); err != nil {
		t.Errorf("after sign-out the page did not ask to sign in: %v", err)
	}
}

// TestBrowserMemosBridge: Chromium signs in once and Memos's web app (the
// stand-in's script: RefreshToken, then GetCurrentUser) shows the user's
// notes with no second sign-in. After a sign-out, bob signs in on the same
// browser and sees his own notes: the access token alice's app kept in
// local storage was cleared (Clear-Site-Data).
func TestBrowserMemosBridge(t *testing.T) {
	s, _, _ := bridgeStand(t, func(c *config.Config) { c.OIDC.LogoutURL = "" })
	ctx := newBrowser(t)
	signIn := func(user, password string) string {
		if err := chromedp.Do(ctx,
			chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SendKeys(chromedp.ID("username"), user),
			chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Click(chromedp.ID("submit")),
			chromedp.WaitVisible(chromedp.ID("notes")),
		); err != nil {
			t.Fatalf("%s in the browser: %v", user, err)
		}
		notes, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("notes")))
		return notes
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(s.URL+"/")); err != nil {
		t.Fatal(err)
	}
	if notes := signIn("alice", alicePassword); notes != "Notes of alice" {
		t.Errorf("alice sees %q", notes)
	}
	stored, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`localStorage.getItem("memos_access_token") || ""`))
	if stored == "" {
		t.Fatalf("the stand-in's app kept no token: the test would prove nothing")
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(s.URL+"/oauth2/sign_out?rd=/")); err != nil {
		t.Fatal(err)
	}
	if notes := signIn("bob", bobPassword); notes != "Notes of bob" {
		t.Errorf("bob sees %q", notes)
	}
}

// TestBrowserMemosFirstRun: Chromium against a Memos that has just been
// started, with no users: one sign-in at the provider, and the person
// lands on their notes, never on Memos's "Set up your instance" page
// (the stand-in's app goes there whenever Memos has no admin).
func TestBrowserMemosFirstRun(t *testing.T) {
	fm := proxytest.NewEmptyMemos()
	s := memosStand(t, fm, firstRun, t.TempDir())
	ctx := newBrowser(t)
	if err := browserSignIn(ctx, s.URL+"/", "alice", alicePassword, "notes"); err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("first sign-in in the browser: %v (page: %q)", err, page)
	}
	if notes, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("notes"))); notes != "Notes of alice" {
		t.Errorf("alice sees %q", notes)
	}
}

// TestBrowserPagesScreenshots renders the proxy's own pages in Chromium,
// light and dark, and keeps the screenshots (PAGES_SCREENSHOTS=dir keeps
// them there, to look at). Each page must show its heading without
// JavaScript, from no external asset.
func TestBrowserPagesScreenshots(t *testing.T) {
	s := newStand(t, func(c *config.Config) { c.Access = config.Access{AllowedUsers: []string{"bob"}} }, nil)
	out := os.Getenv("PAGES_SCREENSHOTS")
	if out == "" {
		out = t.TempDir()
	}
	ctx := newBrowser(t)
	if err := browserSignIn(ctx, s.URL+"/", "alice", alicePassword, "signout"); err != nil {
		t.Fatalf("to the access-denied page: %v", err)
	}
	pages := []struct{ name, url, heading string }{
		{"forbidden", "", "Access denied"}, // where the sign-in landed
		{"not-found", s.URL + "/oauth2/nope", "Not found"},
		{"signed-out", s.URL + "/oauth2/signed_out", "Signed out"},
		{"sign-in-failed", s.URL + "/oauth2/callback?state=" + strings.Repeat("a", 43) + "&code=x", "Sign-in failed"},
	}
	for _, pg := range pages {
		name, u := pg.name, pg.url
		for _, scheme := range []string{"light", "dark"} {
			if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
				t.Fatal(err)
			}
			var actions []chromedp.Action[chromedp.Void]
			if u != "" {
				actions = append(actions, chromedp.Navigate(u))
			}
			actions = append(actions, chromedp.WaitVisible(chromedp.CSS("h1")))
			if err := chromedp.Do(ctx, actions...); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if h1, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1"))); h1 != pg.heading {
				t.Errorf("%s (%s) shows %q", name, scheme, h1)
			}
			png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
			if err != nil {
				t.Fatal(err)
			}
			if len(png) < 1000 {
				t.Errorf("%s (%s): an empty screenshot", name, scheme)
			}
			os.WriteFile(filepath.Join(out, name+"-"+scheme+".png"), png, 0o644)
		}
	}
}

// browserSignIn navigates to u, fills in the OP's login form as user and
// waits until the element with id landed shows.
func browserSignIn(ctx context.Context, u, user, password string, landed chromedp.ID) error {
	return chromedp.Do(ctx,
		chromedp.Navigate(u),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("submit")),
		chromedp.WaitVisible(landed),
	)
}

// TestBrowserRoutesOneSignIn: Chromium (which resolves every *.localhost
// name to loopback) signs in once at grafana.localhost, opens
// admin.localhost and is served without the sign-in page, signs out
// there and is asked to sign in at grafana again.
func TestBrowserRoutesOneSignIn(t *testing.T) {
	rs := newRoutesStand(t, "")
	ctx := newBrowser(t)
	if err := browserSignIn(ctx, rs.url("grafana.localhost", "/d/1"), "alice", alicePassword, "app"); err != nil {
		t.Fatalf("sign-in at grafana: %v", err)
	}
	text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("app")))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if text != `grafana for "" "alice" at /d/1` || loc != rs.url("grafana.localhost", "/d/1") {
		t.Fatalf("grafana shows %q at %s", text, loc)
	}
	// The second app, on another host: no sign-in page on the way.
	if err := chromedp.Do(ctx, chromedp.Navigate(rs.url("admin.localhost", "/x")), chromedp.WaitVisible(chromedp.ID("app"))); err != nil {
		t.Fatalf("admin after grafana: %v", err)
	}
	text, _ = chromedp.Run(ctx, chromedp.Text(chromedp.ID("app")))
	if text != `admin for "alice" "" at /x` {
		t.Errorf("admin shows %q", text)
	}
	if forms, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#username").length`)); err != nil || forms != 0 {
		t.Errorf("admin shows a sign-in form (%v)", err)
	}
	// Sign-out at the second app; then the first asks to sign in.
	if err := chromedp.Do(ctx, chromedp.Navigate(rs.url("admin.localhost", "/oauth2/sign_out")), chromedp.WaitVisible(chromedp.ID("username"))); err != nil {
		t.Fatalf("sign-out at admin did not end at a sign-in form: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(rs.url("grafana.localhost", "/d/1")), chromedp.WaitVisible(chromedp.ID("username"))); err != nil {
		t.Errorf("grafana after the sign-out at admin does not ask to sign in: %v", err)
	}
}
