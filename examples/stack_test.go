package examples_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/oidc-proxy/oidc-proxy/proxy/authelia"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

// stack runs services of examples/memos-authelia/compose.yaml without a
// container engine: each as its compose service says (entrypoint and
// command, environment, every volume, bind and secret at the path it
// names), in a root of its own (proxytest.Root) over this machine's /usr,
// on this machine's loopback. Named volumes are directories of the test;
// the secrets are written as the compose file's header says.
type stack struct {
	t            *testing.T
	project      *types.Project
	secrets      string            // the ./secrets directory
	volumes      map[string]string // named volume -> directory
	hosts        string            // an /etc/hosts naming the services and the public names on loopback
	clientSecret string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	dir := "memos-authelia"
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")}, cli.WithWorkingDirectory(dir), cli.WithName("memos-authelia"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{t: t, project: project, secrets: t.TempDir(), volumes: map[string]string{}}
	// mkdir -p secrets; openssl rand -hex 36 > secrets/oidc-client-secret;
	// openssl rand -base64 48 > secrets/oidc-proxy-session
	b := make([]byte, 36)
	rand.Read(b)
	st.clientSecret = hex.EncodeToString(b)
	os.WriteFile(filepath.Join(st.secrets, "oidc-client-secret"), []byte(st.clientSecret+"\n"), 0o600)
	b = make([]byte, 48)
	rand.Read(b)
	os.WriteFile(filepath.Join(st.secrets, "oidc-proxy-session"), []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600)
	// Name resolution, mapped: compose's service names and Caddy's aliases
	// (auth.example.com, memos.example.com) all on this machine's loopback.
	st.hosts = filepath.Join(t.TempDir(), "hosts")
	var names []string
	for name := range project.Services {
		names = append(names, name)
	}
	os.WriteFile(st.hosts, []byte("127.0.0.1 localhost auth.example.com memos.example.com "+strings.Join(names, " ")+"\n"), 0o644)
	return st
}

// binds are the mounts of service name, and extra.
func (st *stack) binds(name string, extra ...proxytest.Bind) []proxytest.Bind {
	svc := st.project.Services[name]
	out := []proxytest.Bind{{Source: st.hosts, Target: "/etc/hosts", ReadOnly: true}}
	for _, v := range svc.Volumes {
		src := v.Source
		if v.Type == types.VolumeTypeVolume {
			if st.volumes[v.Source] == "" {
				st.volumes[v.Source] = st.t.TempDir()
			}
			src = st.volumes[v.Source]
		}
		out = append(out, proxytest.Bind{Source: src, Target: v.Target, ReadOnly: v.ReadOnly})
	}
	for _, s := range svc.Secrets {
		target := s.Target
		if target == "" {
			target = "/run/secrets/" + s.Source
		}
		out = append(out, proxytest.Bind{Source: filepath.Join(st.secrets, filepath.Base(st.project.Secrets[s.Source].File)), Target: target, ReadOnly: true})
	}
	return append(out, extra...)
}

// env is service name's environment, with image defaults before it and
// more after it.
func (st *stack) env(name string, image []string, more ...string) []string {
	out := append([]string{"PATH=/opt/bin:/usr/local/bin:/usr/bin:/bin", "HOME=/tmp"}, image...)
	for k, v := range st.project.Services[name].Environment {
		if v != nil {
			out = append(out, k+"="+*v)
		}
	}
	return append(out, more...)
}

// program binds the program at path as /opt/bin/name (the image's).
func (st *stack) program(path, name string) proxytest.Bind {
	dir := st.t.TempDir()
	if err := os.Symlink(filepath.Join("/opt/real", filepath.Base(path)), filepath.Join(dir, name)); err != nil {
		st.t.Fatal(err)
	}
	return proxytest.Bind{Source: dir, Target: "/opt/bin", ReadOnly: true}
}

func (st *stack) programDir(path string) proxytest.Bind {
	return proxytest.Bind{Source: filepath.Dir(path), Target: "/opt/real", ReadOnly: true}
}

// argv is the service's entrypoint and command, or def when it has none.
func (st *stack) argv(name string, def ...string) []string {
	svc := st.project.Services[name]
	out := append(append([]string{}, svc.Entrypoint...), svc.Command...)
	if len(out) == 0 {
		return def
	}
	if len(svc.Entrypoint) == 0 {
		return append(def[:1:1], out...)
	}
	return out
}

// secretsService runs the authelia-secrets service, twice (as two starts
// would), and checks it keeps what it made and digests the client secret.
func (st *stack) secretsService() {
	t := st.t
	bin := proxytest.Bin(t, "AUTHELIA_BIN")
	b := st.binds("authelia-secrets", st.programDir(bin), st.program(bin, "authelia"))
	argv := st.argv("authelia-secrets")
	if out, err := proxytest.Root(t, b, st.env("authelia-secrets", nil), argv...).CombinedOutput(); err != nil {
		t.Fatalf("the authelia-secrets service failed: %v\n%s", err, out)
	}
	before, _ := os.ReadFile(filepath.Join(st.volumes["authelia-secrets"], "session"))
	if out, err := proxytest.Root(t, b, st.env("authelia-secrets", nil), argv...).CombinedOutput(); err != nil {
		t.Fatalf("the authelia-secrets service, run again: %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(filepath.Join(st.volumes["authelia-secrets"], "session")); string(after) != string(before) || len(before) == 0 {
		t.Error("a second start replaced Authelia's session secret")
	}
	digest, _ := os.ReadFile(filepath.Join(st.volumes["authelia-secrets"], "oidc-client-digest"))
	if !authelia.Matches(strings.TrimSpace(string(digest)), st.clientSecret) {
		t.Errorf("the client digest the service made does not match the client secret: %q", digest)
	}
}

// authelia starts the authelia service listening at addr; with tls, the
// test serves TLS (there is no Caddy in front), else it is reached through
// Caddy at 127.0.0.1:443, whose local CA is caddyCA. Its issuer is
// https://auth.example.com.
func (st *stack) authelia(addr string, tls bool, caddyCA ...*x509.CertPool) *proxytest.Authelia {
	t := st.t
	bin := proxytest.Bin(t, "AUTHELIA_BIN")
	a := &proxytest.Authelia{Host: "auth.example.com", Domain: "example.com", Addr: addr, Issuer: "https://auth.example.com"}
	if !tls {
		a.Addr = "127.0.0.1:443"
		a.PKI = &proxytest.PKI{Pool: caddyCA[0]}
	}
	more := []string{"AUTHELIA_SERVER_ADDRESS=tcp://" + addr + "/"}
	extra := []proxytest.Bind{st.programDir(bin), st.program(bin, "authelia")}
	if tls {
		dir := t.TempDir()
		a.PKI = proxytest.NewPKI(t, dir, "auth.example.com", "*.example.com")
		extra = append(extra, proxytest.Bind{Source: dir, Target: "/test-tls", ReadOnly: true})
		more = append(more, "AUTHELIA_SERVER_TLS_CERTIFICATE=/test-tls/server.crt", "AUTHELIA_SERVER_TLS_KEY=/test-tls/server.key")
	}
	cmd := proxytest.Root(t, st.binds("authelia", extra...), st.env("authelia", nil, more...),
		st.argv("authelia", "/opt/bin/authelia", "--config", "/config/configuration.yml")...)
	a.Run(t, cmd)
	return a
}

func itoa(n int) string { return strconv.Itoa(n) }
