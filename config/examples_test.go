package config

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestExamples loads every proxy configuration in examples/ through the
// real loader, and parses every other YAML file there, so the examples
// stay true to the code.
func TestExamples(t *testing.T) {
	// Secret files named in the examples do not exist here: serve them.
	fakeFiles := func(path string) ([]byte, error) {
		if strings.HasPrefix(path, "/run/secrets/") {
			return []byte("example-secret-0123456789abcdef0123456789\n"), nil
		}
		return readBounded(path)
	}
	env := func(k string) (string, bool) { return "example-value-0123456789abcdef0123456789", true }
	proxyConfigs := 0
	err := filepath.WalkDir("../examples", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
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
