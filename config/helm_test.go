package config

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// helm finds the helm binary: $HELM, or helm on the PATH. Without it the
// chart tests skip, except in CI (CI=true), where .ci/run installs it.
func helm(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("helm is not installed (.ci/run installs it with go install helm.sh/helm/v3/cmd/helm)")
	}
	t.Skip("helm is not installed")
	return ""
}

type manifest struct {
	Kind     string
	Metadata struct{ Name string }
	Data     map[string]string
	Spec     struct {
		Replicas int
		Template struct {
			Spec struct {
				Containers []struct {
					Name  string
					Ports []struct {
						Name          string
						ContainerPort int `yaml:"containerPort"`
					}
					LivenessProbe   probe          `yaml:"livenessProbe"`
					ReadinessProbe  probe          `yaml:"readinessProbe"`
					SecurityContext map[string]any `yaml:"securityContext"`
				}
			}
		}
	}
}

type probe struct {
	HTTPGet struct {
		Path string
		Port string
	} `yaml:"httpGet"`
}

func renderChart(t *testing.T, args ...string) ([]manifest, string) {
	t.Helper()
	cmd := exec.Command(helm(t), append([]string{"template", "memos", "../examples/helm/oidc-proxy"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, errOut.String()
	}
	var docs []manifest
	dec := yaml.NewDecoder(bytes.NewReader(out.Bytes()))
	for {
		var m manifest
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Kind != "" {
			docs = append(docs, m)
		}
	}
	return docs, out.String()
}

// TestHelmChart renders the chart and checks the manifests: the proxy's
// configuration in the ConfigMap loads, the probes point at the proxy's
// health endpoints on a declared port, no secret value is in the
// ConfigMap, the pod runs as non-root; several replicas need the Redis
// store and get a PodDisruptionBudget; a secret in config is refused.
func TestHelmChart(t *testing.T) {
	docs, _ := renderChart(t, "--set", "secrets.clientSecret=CLIENT-SECRET-VALUE", "--set", "secrets.sessionSecret=SESSION-SECRET-VALUE-0123456789abcdef")
	kinds := map[string]manifest{}
	for _, d := range docs {
		kinds[d.Kind] = d
	}
	for _, k := range []string{"ConfigMap", "Secret", "Deployment", "Service"} {
		if _, ok := kinds[k]; !ok {
			t.Fatalf("no %s rendered", k)
		}
	}
	cm := kinds["ConfigMap"]
	for _, v := range cm.Data {
		if strings.Contains(v, "CLIENT-SECRET-VALUE") || strings.Contains(v, "SESSION-SECRET-VALUE") {
			t.Error("a secret value is in the ConfigMap")
		}
	}
	files := func(path string) ([]byte, error) {
		if strings.HasPrefix(path, "/run/secrets/oidc-proxy/") {
			return []byte("example-secret-0123456789abcdef0123456789"), nil
		}
		return readBounded(path)
	}
	if _, err := parse("configmap", []byte(cm.Data["oidc-proxy.yaml"]), nil, files); err != nil {
		t.Errorf("the ConfigMap's configuration does not load: %v", err)
	}
	dep := kinds["Deployment"]
	c := dep.Spec.Template.Spec.Containers[0]
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[p.Name] = true
	}
	if c.LivenessProbe.HTTPGet.Path != "/oauth2/healthz" || c.ReadinessProbe.HTTPGet.Path != "/oauth2/readyz" ||
		!ports[c.LivenessProbe.HTTPGet.Port] || !ports[c.ReadinessProbe.HTTPGet.Port] {
		t.Errorf("probes: %+v %+v, ports %v", c.LivenessProbe, c.ReadinessProbe, ports)
	}
	if c.SecurityContext["readOnlyRootFilesystem"] != true || c.SecurityContext["allowPrivilegeEscalation"] != false {
		t.Errorf("container securityContext: %v", c.SecurityContext)
	}
	if _, ok := kinds["PodDisruptionBudget"]; ok {
		t.Error("a PodDisruptionBudget for one replica")
	}

	if _, errs := renderChart(t, "--set", "secrets.clientSecret=x", "--set", "replicaCount=2"); !strings.Contains(errs, "session.store: redis") {
		t.Errorf("two replicas with cookie sessions: %q", errs)
	}
	docs, _ = renderChart(t, "--set", "secrets.clientSecret=x", "--set", "replicaCount=3", "--set", "config.session.store=redis",
		"--set", "config.session.redis.address=redis:6379", "--set", "metrics.serviceMonitor.enabled=true", "--set", "ingress.enabled=true")
	found := map[string]bool{}
	for _, d := range docs {
		found[d.Kind] = true
		if d.Kind == "Deployment" && d.Spec.Replicas != 3 {
			t.Errorf("replicas %d", d.Spec.Replicas)
		}
	}
	for _, k := range []string{"PodDisruptionBudget", "ServiceMonitor", "Ingress"} {
		if !found[k] {
			t.Errorf("no %s with three replicas, the monitor and the ingress on", k)
		}
	}
	if _, errs := renderChart(t, "--set", "secrets.clientSecret=x", "--set", "config.oidc.client_secret=leak"); !strings.Contains(errs, "never in config") {
		t.Errorf("a secret in config: %q", errs)
	}
	if _, errs := renderChart(t); !strings.Contains(errs, "secrets.clientSecret") {
		t.Errorf("no client secret: %q", errs)
	}
}
