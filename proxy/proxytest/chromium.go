package proxytest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath finds the browser, or skips the test on a machine without
// one; under CI=true a missing browser fails the test instead.
func ChromiumPath(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed, and CI=true: .ci/run must install it")
	}
	t.Skip("chromium is not installed")
	return ""
}

// Chromium is a headless Chromium for the test (closed when it ends), with
// more command-line flags (name and value: "host-resolver-rules", "MAP
// ..."), within timeout.
func Chromium(t testing.TB, timeout time.Duration, flags ...[2]string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	for _, f := range flags {
		opts = append(opts, chromedp.Flag(f[0], f[1]))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// Fill types values into a page's inputs (by element id) and clicks the
// button with id button, by script, as a person typing would (React's
// value setter and input events: the portal's form takes them). It is
// chromedp's SendKeys and Click without their node queries, which race
// with pages that change their attributes while they are read.
func Fill(ctx context.Context, values map[string]string, button string) error {
	js := `(() => { const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;`
	for id, v := range values {
		js += fmt.Sprintf(`{ const el = document.getElementById(%q); if (!el) return false; el.focus(); set.call(el, %q);
			el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); }`, id, v)
	}
	js += fmt.Sprintf(`const b = document.getElementById(%q); if (!b) return false; b.click(); return true; })()`, button)
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
	if err == nil && !ok {
		err = fmt.Errorf("the page has no form with %v and %s", values, button)
	}
	return err
}

// Click clicks the element with id, by script (see Fill).
func Click(ctx context.Context, id string) error {
	_, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const b = document.getElementById(%q); if (b) b.click(); return !!b; })()`, id)))
	return err
}
