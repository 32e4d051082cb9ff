package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestExamples loads every proxy configuration in examples/ through the
// real loader, and parses every other YAML file there, so the examples
// stay true to the code.
func TestExamples(t *testing.T) {
	fakeFiles := exampleFiles(t)
	env := func(k string) (string, bool) { return "example-value-0123456789abcdef0123456789", true }
	proxyConfigs := 0
	err := filepath.WalkDir("../examples", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		if strings.Contains(filepath.ToSlash(path), "/helm/oidc-proxy/templates/") {
			return nil // Helm templates: TestHelmChart renders and checks them
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		t.Run(path, func(t *testing.T) {
			if strings.HasPrefix(filepath.Base(path), "oidc-proxy") {
				proxyConfigs++
				if _, err := parse(path, data, env, fakeFiles); err != nil {
					t.Fatal(err)
				}
				return
			}
			// Compose and Kubernetes files: every document must parse, and
			// a proxy configuration inside a ConfigMap must load.
			dec := yaml.NewDecoder(bytes.NewReader(data))
			for {
				var doc struct {
					Kind string            `yaml:"kind"`
					Data map[string]string `yaml:"data"`
				}
				err := dec.Decode(&doc)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				for name, embedded := range doc.Data {
					if doc.Kind == "ConfigMap" && strings.HasPrefix(name, "oidc-proxy") {
						proxyConfigs++
						if _, err := parse(path+":"+name, []byte(embedded), env, fakeFiles); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if proxyConfigs < 3 {
		t.Errorf("found %d proxy configurations in examples/", proxyConfigs)
	}
}

// exampleFiles serves the files the examples name that do not exist here:
// secrets, the Memos bridge's state, and Caddy's local CA.
func exampleFiles(t *testing.T) func(string) ([]byte, error) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example CA"}, IsCA: true,
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return func(path string) ([]byte, error) {
		switch {
		case strings.HasPrefix(path, "/caddy-ca/"):
			return ca, nil
		case strings.HasPrefix(path, "/run/secrets/"), strings.HasPrefix(path, "/var/lib/oidc-proxy/"):
			return []byte("example-secret-0123456789abcdef0123456789\n"), nil
		}
		return readBounded(path)
	}
}

// TestSystemdUnit checks the unit file's syntax (sections and Key=Value
// lines) and that it starts the proxy with a configuration file.
func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile("../examples/systemd/oidc-proxy.service")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line
			sections[section] = true
		case section != "" && strings.Contains(line, "="):
			k, v, _ := strings.Cut(line, "=")
			if k == "ExecStart" && !strings.Contains(v, "oidc-proxy -config /etc/oidc-proxy/oidc-proxy.yaml") {
				t.Errorf("ExecStart does not start the proxy with its configuration: %s", v)
			}
		default:
			t.Errorf("line %d is not a unit file line: %q", i+1, line)
		}
	}
	for _, s := range []string{"[Unit]", "[Service]", "[Install]"} {
		if !sections[s] {
			t.Errorf("no %s section", s)
		}
	}
}
