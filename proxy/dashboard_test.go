package proxy_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy"
)

// TestGrafanaDashboardQueriesExportedMetrics: every metric the example
// dashboard queries is one the proxy exports, so the two cannot drift;
// and every metric the proxy exports is on the dashboard.
func TestGrafanaDashboardQueriesExportedMetrics(t *testing.T) {
	data, err := os.ReadFile("../examples/grafana/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("t.yaml", []byte("external_url: https://memos.example.com\nupstream: http://127.0.0.1:5230\noidc: {issuer: https://auth.example.com, client_id: memos, client_secret: x}\nsession: {secret: "+sessionSecret+"}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(cfg, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	exported := p.MetricNames()
	if len(exported) < 8 {
		t.Fatalf("only %d metrics exported: %v", len(exported), exported)
	}
	metricRE := regexp.MustCompile(`oidc_proxy_[a-z_]+`)
	queried := map[string]bool{}
	for _, panel := range dash.Panels {
		if len(panel.Targets) == 0 {
			t.Errorf("panel %q queries nothing", panel.Title)
		}
		for _, target := range panel.Targets {
			for _, name := range metricRE.FindAllString(target.Expr, -1) {
				base := name
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suffix)
				}
				if !slices.Contains(exported, base) {
					t.Errorf("panel %q queries %s, which the proxy does not export", panel.Title, name)
				}
				queried[base] = true
			}
		}
	}
	for _, name := range exported {
		if !queried[name] {
			t.Errorf("the dashboard shows nothing of %s", name)
		}
	}
}
