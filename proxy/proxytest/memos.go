package proxytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Memos is a running real Memos 0.30.
type Memos struct {
	URL  string // http://127.0.0.1:PORT
	Data string // its data directory
	proc *Process
}

// Output is what Memos printed so far.
func (m *Memos) Output() string { return m.proc.Output() }

// StartMemos starts the real Memos (MEMOS_BIN), empty, on a free loopback
// port, and stops it when the test ends. With a, it runs in a root of its
// own where Authelia's names resolve to loopback and Authelia's test CA is
// trusted, so that Memos's own single sign-on reaches it.
func StartMemos(t testing.TB, a *Authelia) *Memos {
	t.Helper()
	bin := Bin(t, "MEMOS_BIN")
	port := FreePort(t)
	m := &Memos{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Data: t.TempDir()}
	args := []string{"--addr", "127.0.0.1", "--port", itoa(port), "--data", "/var/opt/memos", "--driver", "sqlite"}
	var cmd = Root(t, m.binds(t, bin, a), []string{"HOME=/tmp"}, append([]string{"/opt/memos/" + filepath.Base(bin)}, args...)...)
	m.proc = Start(t, cmd)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(m.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m
			}
		}
		select {
		case <-m.proc.Done:
			t.Fatalf("memos exited at start:\n%s", m.Output())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("memos did not answer /healthz in 30 s:\n%s", m.Output())
		}
	}
}

func (m *Memos) binds(t testing.TB, bin string, a *Authelia) []Bind {
	b := []Bind{{Source: filepath.Dir(bin), Target: "/opt/memos", ReadOnly: true}, {Source: m.Data, Target: "/var/opt/memos"}}
	if a == nil {
		return b
	}
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	os.WriteFile(hosts, []byte("127.0.0.1 localhost "+a.Host+"\n"), 0o644)
	system, _ := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	ca, _ := os.ReadFile(a.PKI.CAFile)
	bundle := filepath.Join(dir, "ca-certificates.crt")
	os.WriteFile(bundle, append(append(system, '\n'), ca...), 0o644)
	return append(b, Bind{Source: hosts, Target: "/etc/hosts", ReadOnly: true},
		Bind{Source: bundle, Target: "/etc/ssl/certs/ca-certificates.crt", ReadOnly: true})
}

// Call makes a Connect call (POST /memos.api.v1.<method>, JSON) with the
// bearer token (if any), decoding the answer into out (if not nil). It
// returns the response (body read) or an error for any status but 200.
func (m *Memos) Call(method, token string, body, out any) (*http.Response, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, m.URL+"/memos.api.v1."+method, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp, fmt.Errorf("memos %s: %d %s", method, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp, fmt.Errorf("memos %s: %w: %s", method, err, raw)
		}
	}
	return resp, nil
}

// SignIn signs a password user in: the access token.
func (m *Memos) SignIn(user, password string) (string, error) {
	var ans struct {
		AccessToken string `json:"accessToken"`
	}
	_, err := m.Call("AuthService/SignIn", "", map[string]any{"passwordCredentials": map[string]string{"username": user, "password": password}}, &ans)
	return ans.AccessToken, err
}
