package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/authelia"
)

// initSetup is `oidc-proxy init`: it writes what a Memos behind the proxy,
// signing in with Authelia, needs, into a directory: the proxy's
// configuration (the Memos bridge, Memos's first run done by the proxy),
// the client and session secrets (0600), and Authelia's client block with
// the secret's pbkdf2-sha512 digest. It asks for what is missing on a
// terminal, never overwrites a file that differs without -force (and
// then changes nothing at all), and a second run with the same answers
// changes nothing.
func initSetup(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("oidc-proxy init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	memosURL := fs.String("memos-url", "", "Memos's URL as its users open it (https://memos.example.com): the proxy's external_url")
	issuer := fs.String("issuer", "", "Authelia's URL, its OpenID Connect issuer (https://auth.example.com)")
	upstream := fs.String("upstream", "http://127.0.0.1:5230", "where the proxy reaches Memos (keep Memos reachable only from the proxy)")
	clientID := fs.String("client-id", "memos", "the proxy's client id at Authelia")
	dir := fs.String("dir", ".", "the directory to write into")
	policy := fs.String("policy", "two_factor", "Authelia's authorization_policy for the client: two_factor (as Memos's guide) or one_factor")
	consent := fs.String("consent-duration", "4w", "Authelia's pre_configured_consent_duration (as Memos's guide); empty: ask every time")
	bridgeListen := fs.String("bridge-listen", "", "where the proxy serves the token and userinfo endpoints Memos calls (default 127.0.0.1:4181)")
	admins := fs.String("admin-groups", "admins", "Authelia groups whose members are Memos admins (comma-separated; empty: roles left alone)")
	force := fs.Bool("force", false, "replace files that differ from what init would write (secrets included)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	in := bufio.NewReader(stdin)
	ask := func(v *string, question string) error {
		if *v != "" {
			return nil
		}
		if !isTerminal(stdin) {
			return fmt.Errorf("init: %s: set it with a flag (run `oidc-proxy init -h`)", question)
		}
		fmt.Fprintf(stdout, "%s: ", question)
		line, err := in.ReadString('\n')
		*v = strings.TrimSpace(line)
		if *v == "" {
			return fmt.Errorf("init: %s: no answer (%v)", question, err)
		}
		return nil
	}
	for _, q := range []struct {
		v    *string
		what string
	}{{memosURL, "Memos's URL, as its users open it (https://memos.example.com)"}, {issuer, "Authelia's URL (https://auth.example.com)"}} {
		if err := ask(q.v, q.what); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
	}
	for name, v := range map[string]string{"-memos-url": *memosURL, "-issuer": *issuer, "-upstream": *upstream} {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
			fmt.Fprintf(stderr, "init: %s %q: want an absolute http(s) URL without a path\n", name, v)
			return 2
		}
	}
	if *policy != "two_factor" && *policy != "one_factor" {
		fmt.Fprintf(stderr, "init: -policy %q: want two_factor or one_factor\n", *policy)
		return 2
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintln(stderr, "init:", err)
		return 1
	}
	p := initPlan{dir: abs, memosURL: strings.TrimSuffix(*memosURL, "/"), issuer: strings.TrimSuffix(*issuer, "/"),
		upstream: strings.TrimSuffix(*upstream, "/"), clientID: *clientID, bridgeListen: *bridgeListen, policy: *policy, consent: *consent, force: *force}
	for _, g := range strings.Split(*admins, ",") {
		if g = strings.TrimSpace(g); g != "" {
			p.adminGroups = append(p.adminGroups, g)
		}
	}
	files, err := p.files()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := writeAll(files, *force, stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// Where the proxy keeps Memos's admin token (and password) once it has
	// set Memos up.
	if err := os.MkdirAll(p.path("memos"), 0o700); err != nil {
		fmt.Fprintln(stderr, "init:", err)
		return 1
	}
	if _, err := config.Load(filepath.Join(abs, "oidc-proxy.yaml")); err != nil {
		fmt.Fprintln(stderr, "init: the configuration written does not load:", err)
		return 1
	}
	p.nextSteps(stdout)
	return 0
}

// initPlan is what init was asked for.
type initPlan struct {
	dir, memosURL, issuer, upstream, clientID, policy, consent, bridgeListen string
	adminGroups                                                              []string
	force                                                                    bool
}

// initFile is a file init writes.
type initFile struct {
	path    string
	mode    os.FileMode
	content []byte
}

func (p *initPlan) path(elem ...string) string {
	return filepath.Join(append([]string{p.dir}, elem...)...)
}

// files is what init writes. Secrets already written are kept (not with
// -force); so is the digest in an existing client block when it is the
// client secret's, so that a second run writes the same bytes.
func (p *initPlan) files() ([]initFile, error) {
	clientSecret, err := p.secret("oidc-client-secret", 54, base64.RawURLEncoding) // 72 characters
	if err != nil {
		return nil, err
	}
	sessionSecret, err := p.secret("session-secret", 48, base64.StdEncoding)
	if err != nil {
		return nil, err
	}
	digest := ""
	if old, err := os.ReadFile(p.path("authelia-client.yml")); err == nil && !p.force {
		if m := digestRE.FindString(string(old)); m != "" && authelia.Matches(m, clientSecret) {
			digest = m
		}
	}
	if digest == "" {
		if digest, err = authelia.Digest(clientSecret); err != nil {
			return nil, err
		}
	}
	block := authelia.Client{ID: p.clientID, Name: "Memos (oidc-proxy)", SecretDigest: digest,
		RedirectURIs: []string{p.memosURL + "/oauth2/callback"}, Scopes: config.DefaultScopes(),
		Policy: p.policy, ConsentDuration: p.consent}.Block()
	return []initFile{
		{p.path("secrets", "oidc-client-secret"), 0o600, []byte(clientSecret + "\n")},
		{p.path("secrets", "session-secret"), 0o600, []byte(sessionSecret + "\n")},
		{p.path("oidc-proxy.yaml"), 0o644, p.config()},
		{p.path("authelia-client.yml"), 0o644, []byte(block)},
	}, nil
}

var digestRE = regexp.MustCompile(`\$pbkdf2-sha512\$[0-9]+\$[A-Za-z0-9./]+\$[A-Za-z0-9./]+`)

// secret is the secret in secrets/name, or a new one of n random bytes.
func (p *initPlan) secret(name string, n int, enc *base64.Encoding) (string, error) {
	if b, err := os.ReadFile(p.path("secrets", name)); err == nil && !p.force {
		s := strings.TrimRight(string(b), "\r\n")
		if len(s) < config.MinSecretLength {
			return "", fmt.Errorf("init: %s holds a secret shorter than %d bytes: remove it, or use -force", p.path("secrets", name), config.MinSecretLength)
		}
		return s, nil
	}
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return enc.EncodeToString(b), nil
}

// config is the proxy's configuration.
func (p *initPlan) config() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `# oidc-proxy in front of Memos at %[1]s, signing in with Authelia at
# %[2]s. Written by oidc-proxy init (README, "From zero to single sign-on").

listen: ":4180"
external_url: %[1]q
upstream: %[3]q            # Memos: reachable only from the proxy
upstream_ready_path: /healthz

oidc:
  issuer: %[2]q
  client_id: %[4]q
  client_secret_file: %[5]q
  client_auth_method: client_secret_post  # as in authelia-client.yml
  scopes: [openid, profile, email, groups]
  # Authelia has no end_session_endpoint: its portal's logout ends its session.
  logout_url: %[6]q

session:
  secret_file: %[7]q

memos:
  # The proxy is Memos's identity provider: users land on their own Memos
  # account, signed in. A Memos that already signs users in with this
  # Authelia (Memos's own guide) keeps every user's account: the proxy
  # takes that provider over (README, "Coming from Memos's own Authelia
  # sign-in").
  bridge: true
  # On a fresh Memos the proxy creates the admin and keeps its token here;
  # with a Memos already set up, put an admin's personal access token here.
  admin_token_file: %[8]q
  # Memos's API clients (mobile apps, /mcp) pass with Memos's own tokens.
  pass_bearer_tokens: true
`, p.memosURL, p.issuer, p.upstream, p.clientID, p.path("secrets", "oidc-client-secret"),
		p.issuer+"/logout", p.path("secrets", "session-secret"), p.path("memos", "admin-token"))
	if len(p.adminGroups) > 0 {
		fmt.Fprintf(&b, "  admin_groups: [%s]        # Authelia groups of Memos admins\n", strings.Join(p.adminGroups, ", "))
	}
	if p.bridgeListen != "" {
		fmt.Fprintf(&b, "  bridge_listen: %q      # only Memos should reach it\n", p.bridgeListen)
	}
	b.WriteString(`
# What passes without signing in: Memos's share links, its web app's code,
# the instance settings it loads first, and avatars.
public_paths:
  - /memos/shares/*
  - /assets/*
  - /memos.api.v1.InstanceService/*
  - /memos.api.v1.MemoService/GetMemoByShare
  - /file/users/*/avatar
`)
	return b.Bytes()
}

// writeAll writes files: none at all when one exists and differs, unless
// force. It says what it did with each.
func writeAll(files []initFile, force bool, out io.Writer) error {
	var differ []string
	for _, f := range files {
		if old, err := os.ReadFile(f.path); err == nil && !bytes.Equal(old, f.content) {
			differ = append(differ, f.path)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("init: %w", err)
		}
	}
	if len(differ) > 0 && !force {
		return fmt.Errorf("init: these files exist and differ from what init would write; nothing was changed (use -force to replace them):\n  %s", strings.Join(differ, "\n  "))
	}
	for _, f := range files {
		old, err := os.ReadFile(f.path)
		switch {
		case err == nil && bytes.Equal(old, f.content):
			fmt.Fprintf(out, "unchanged %s\n", f.path)
			continue
		case err == nil:
			fmt.Fprintf(out, "replaced  %s\n", f.path)
		default:
			fmt.Fprintf(out, "wrote     %s\n", f.path)
		}
		if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		tmp := f.path + ".init-tmp"
		if err := os.WriteFile(tmp, f.content, f.mode); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		if err := os.Chmod(tmp, f.mode); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	return nil
}

// nextSteps says what the user does now.
func (p *initPlan) nextSteps(out io.Writer) {
	fmt.Fprintf(out, `
Next:
 1. Authelia: add the client in %[1]s to its configuration.yml (or pass the
    file as a second --config), and restart Authelia. It holds only the
    digest of the client secret; the proxy reads the secret itself.
    Coming from Memos's own Authelia sign-in (Memos's guide)? Either add
    this new client, or change your existing one: redirect_uris
    %[2]s/auth/callback -> %[2]s/oauth2/callback, add 'groups' to its
    scopes, and set its client_secret to the digest above (client_id %[3]q).
    Memos's users keep their accounts either way.
 2. Check:  oidc-proxy -config %[4]s -check
 3. Serve:  oidc-proxy -config %[4]s   (users open %[2]s)
`, p.path("authelia-client.yml"), p.memosURL, p.clientID, p.path("oidc-proxy.yaml"))
}

// isTerminal reports whether r is a terminal a person types at.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
