package memos

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Memos's first run. A fresh Memos has no users, and its web app sends
// whoever comes first to "Set up your instance", where the first account
// created becomes the admin. With the bridge the proxy does that itself,
// before anyone is sent there: it creates a dedicated admin account
// (memos.admin_username) with a long random password (written to
// memos.admin_password_file, 0600, for break-glass use), signs in as it,
// creates a personal access token (written to memos.admin_token_file,
// 0600), and registers itself as Memos's identity provider.
//
// Replicas that start together share the two files on one volume: each
// file is created complete or not at all (written aside, then linked into
// place, which fails when it exists), so the first replica's password
// and token win and the others read them; a replica that finds the
// account created by another signs in with the password it reads.
// Without a shared volume, only the replica that made the account holds
// its token (the others log it and do without roles and profiles).

// errNoSetup is a fresh Memos the proxy cannot set up: nowhere to keep
// the admin's token.
var errNoSetup = errors.New("Memos has no users yet and memos.admin_token_file is not set: set it, and the proxy sets Memos up (Memos's own set-up page stays closed)")

// errNoToken is a Memos set up by someone else, and no admin token.
var errNoToken = errors.New("Memos is set up but the proxy has no admin token: run `oidc-proxy memos-setup` with memos.admin_token_file, or see README \"Memos\"")

// hasAdmin asks Memos (anonymously) whether it has been set up.
func (b *Bridge) hasAdmin(ctx context.Context) (bool, error) {
	var profile struct {
		Admin *struct {
			Name string `json:"name"`
		} `json:"admin"`
	}
	if _, err := b.call(ctx, "InstanceService/GetInstanceProfile", map[string]any{}, nil, &profile); err != nil {
		return false, err
	}
	return profile.Admin != nil && profile.Admin.Name != "", nil
}

// setUp brings Memos to where the bridge can work: an admin exists, the
// proxy has an admin's token (when it can), and is registered. It is
// safe to run any number of times and reports what it did.
func (b *Bridge) setUp(ctx context.Context) (string, error) {
	had, err := b.hasAdmin(ctx)
	if err != nil {
		return "", err
	}
	var did []string
	if !had {
		if b.tokenFile == "" {
			return "", errNoSetup
		}
		created, err := b.createAdmin(ctx)
		if err != nil {
			return "", err
		}
		if created {
			did = append(did, "created the admin account "+b.adminUsername)
		}
	}
	b.ready.Store(true)
	if b.token() == "" {
		made, err := b.ensureToken(ctx)
		if err != nil {
			return "", err
		}
		if made {
			did = append(did, "wrote its personal access token to "+b.tokenFile)
		}
	}
	if b.token() == "" {
		return "", errNoToken
	}
	reg, err := b.Register(ctx)
	if err != nil {
		return "", err
	}
	return strings.Join(append(did, reg), "; "), nil
}

// createAdmin creates the setup account as Memos's first user; false
// when another replica did it first.
func (b *Bridge) createAdmin(ctx context.Context) (bool, error) {
	password, err := b.password(true)
	if err != nil {
		return false, err
	}
	_, err = b.call(ctx, "UserService/CreateUser", map[string]any{"user": map[string]string{
		"username": b.adminUsername, "password": password, "displayName": "oidc-proxy (setup account)",
	}}, nil, nil)
	var me *memosError
	if errors.As(err, &me) && (me.status == http.StatusConflict || me.code == "already_exists") {
		return false, nil
	}
	return err == nil, err
}

// ensureToken makes sure the proxy holds an admin's token: the file (as
// another replica may have written it meanwhile), or a new personal
// access token of the setup account, signed in with its password.
func (b *Bridge) ensureToken(ctx context.Context) (bool, error) {
	if b.tokenFile == "" {
		return false, nil // an existing Memos and no token: memos-setup, or the README
	}
	if tok, err := readSecret(b.tokenFile); err == nil {
		b.setToken(tok)
		return false, nil
	}
	password, err := b.password(false)
	if errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("Memos has an admin but %s does not exist, nor the setup account's password: put an admin's personal access token there (README \"Memos\")", b.tokenFile)
	}
	if err != nil {
		return false, err
	}
	var signIn struct {
		AccessToken string `json:"accessToken"`
	}
	if _, err := b.call(ctx, "AuthService/SignIn", map[string]any{"passwordCredentials": map[string]string{
		"username": b.adminUsername, "password": password,
	}}, nil, &signIn); err != nil {
		return false, fmt.Errorf("signing in as %s: %w", b.adminUsername, err)
	}
	if tok, err := readSecret(b.tokenFile); err == nil { // another replica was quicker
		b.setToken(tok)
		return false, nil
	}
	var pat struct {
		Token string `json:"token"`
	}
	if _, err := b.call(ctx, "UserService/CreatePersonalAccessToken", map[string]any{
		"parent": "users/" + b.adminUsername, "description": "oidc-proxy: identity provider registration, roles and profiles",
	}, http.Header{"Authorization": {"Bearer " + signIn.AccessToken}}, &pat); err != nil {
		return false, err
	}
	if !strings.HasPrefix(pat.Token, "memos_pat_") {
		return false, errors.New("memos CreatePersonalAccessToken gave no token")
	}
	won, err := createFile(b.tokenFile, pat.Token)
	if err != nil {
		return false, err
	}
	if !won {
		tok, err := readSecret(b.tokenFile)
		if err != nil {
			return false, err
		}
		b.setToken(tok)
		return false, nil
	}
	b.setToken(pat.Token)
	return true, nil
}

// password is the setup account's password: the file's, or (with create)
// a new one written to it.
func (b *Bridge) password(create bool) (string, error) {
	if pw, err := readSecret(b.passwordFile); err == nil || !create || !errors.Is(err, os.ErrNotExist) {
		return pw, err
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	pw := base64.RawURLEncoding.EncodeToString(raw)
	if won, err := createFile(b.passwordFile, pw); err != nil || won {
		return pw, err
	}
	return readSecret(b.passwordFile) // another replica's
}

// readSecret reads a one-line secret file.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// createFile creates path (mode 0600) holding value, complete or not at
// all; false when the file existed already.
func createFile(path, value string) (bool, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, err
	}
	if _, err := tmp.WriteString(value + "\n"); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// setUpInBackground keeps trying setUp until it succeeds or ctx ends
// (Memos may start after the proxy).
func (b *Bridge) setUpInBackground(ctx context.Context) {
	for delay := time.Second; ctx.Err() == nil; delay = min(delay*2, time.Minute) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		did, err := b.setUp(cctx)
		cancel()
		if err == nil {
			b.k.Log.Info("memos bridge: registered as Memos's identity provider", "result", did)
			return
		}
		if errors.Is(err, errNoToken) {
			b.k.Log.Warn("memos bridge: not registering at start", "why", err)
			return
		}
		if two := (*errTwoProviders)(nil); errors.As(err, &two) {
			b.k.Log.Error("memos bridge: not registered: the administrator must choose", "why", err)
			return
		}
		b.k.Log.Warn("memos bridge: setting up Memos failed; retrying", "in", delay, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// setUpDone reports whether Memos has an admin, asking it once when the
// background set-up has not told yet. While it has none, the bridge
// answers for Memos: nobody may reach its own set-up page.
func (b *Bridge) setUpDone(ctx context.Context) bool {
	if b.ready.Load() {
		return true
	}
	b.checkMu.Lock()
	defer b.checkMu.Unlock()
	if b.ready.Load() {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if has, err := b.hasAdmin(ctx); err == nil && has {
		b.ready.Store(true)
	}
	return b.ready.Load()
}

// settingUp answers while Memos is not set up yet.
func (b *Bridge) settingUp(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	b.k.ErrorPage(w, r, http.StatusServiceUnavailable, "Memos is being set up",
		"The proxy is setting Memos up for single sign-on. Please try again in a moment.")
}
