package memos_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-proxy/oidc-proxy/config"
	"github.com/oidc-proxy/oidc-proxy/proxy/proxytest"
)

const validPAT = "memos_pat_0123456789abcdef0123456789abcdef"

// memosStandIn answers GetCurrentUser as Memos 0.30 does: 200 with the
// user for a token it knows, 401 unauthenticated otherwise; every other
// request echoes the identity it got. checks counts GetCurrentUser calls.
func memosStandIn(s *stand, checks *atomic.Int64, down *atomic.Bool) {
	s.Handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/memos.api.v1.AuthService/GetCurrentUser" {
			checks.Add(1)
			if down.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			if r.Header.Get("Authorization") != "Bearer "+validPAT || r.Method != http.MethodPost {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"code":"unauthenticated","message":"user not found"}`)
				return
			}
			io.WriteString(w, `{"user":{"name":"users/1","username":"alice","state":"NORMAL"}}`)
			return
		}
		fmt.Fprintf(w, "memos for %q with %q", r.Header.Get("Remote-User"), r.Header.Get("Authorization"))
	})
}

func TestBearerTokensPassOnlyWhenMemosConfirms(t *testing.T) {
	s := newStand(t, func(c *cfg) { c.Memos.PassBearerTokens = true }, nil)
	var checks atomic.Int64
	var down atomic.Bool
	memosStandIn(s, &checks, &down)
	addr := strings.TrimPrefix(s.URL, "http://")
	call := func(token string) (*http.Response, int) {
		before := s.SeenCount()
		resp := rawRequest(t, addr, "POST /memos.api.v1.MemoService/ListMemos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+token+
			"\r\nRemote-User: admin\r\nRemote_User: admin\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
		return resp, s.SeenCount() - before
	}
	// A token Memos confirms passes, identity headers stripped, the token
	// untouched; the answer is cached.
	for range 3 {
		resp, reached := call(validPAT)
		if resp.StatusCode != 200 || reached != 1 && reached != 2 {
			t.Fatalf("valid token: %d", resp.StatusCode)
		}
		h := s.LastSeen().Header
		if h.Get("Authorization") != "Bearer "+validPAT || h.Get("Remote-User") != "" || h.Get("Remote_User") != "" {
			t.Errorf("upstream headers: %v", h)
		}
	}
	if n := checks.Load(); n != 1 {
		t.Errorf("Memos asked %d times for one token, want 1 (cached)", n)
	}
	// Unknown tokens never reach the real request, and the refusal is
	// cached too.
	for _, token := range []string{"memos_pat_" + strings.Repeat("x", 32), "garbage", "memos_pat_" + strings.Repeat("x", 32)} {
		resp, reached := call(token)
		if resp.StatusCode != http.StatusUnauthorized || reached != 0 && reached != 1 {
			t.Errorf("token %.14s: %d, %d upstream requests", token, resp.StatusCode, reached)
		}
		if last := s.LastSeen(); last.URL.Path != "/memos.api.v1.AuthService/GetCurrentUser" {
			t.Errorf("token %.14s: the request itself reached Memos (%s)", token, last.URL.Path)
		}
	}
	if n := checks.Load(); n != 3 {
		t.Errorf("Memos asked %d times in all, want 3", n)
	}
	// Memos down: fail closed.
	down.Store(true)
	if resp, _ := call("memos_pat_" + strings.Repeat("y", 32)); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("Memos down: %d", resp.StatusCode)
	}
	// The cache expires: after a minute Memos is asked again.
	down.Store(false)
	s.Skew.Store(int64(61 * time.Second))
	call(validPAT)
	if n := checks.Load(); n != 5 {
		t.Errorf("after the cache expired: %d checks, want 5", n)
	}
}

func TestBearerTokensOffByDefault(t *testing.T) {
	s := newStand(t, nil, nil)
	var checks atomic.Int64
	var down atomic.Bool
	memosStandIn(s, &checks, &down)
	req := mustReq(http.MethodGet, s.URL+"/api/v1/memos")
	req.Header.Set("Authorization", "Bearer "+validPAT)
	if resp, _ := do(t, http.DefaultClient, req); resp.StatusCode != http.StatusUnauthorized || checks.Load() != 0 || s.SeenCount() != 0 {
		t.Errorf("bearer request without pass_bearer_tokens: %d, %d checks", resp.StatusCode, checks.Load())
	}
}

// TestMemosTokensAndProviderTokens: on a route that passes Memos's own
// tokens and accepts the provider's, each kind goes to the one that can
// confirm it, by its form and never by trying one then the other: a Memos
// personal access token to Memos (the provider never sees it), any other
// token to the provider only (Memos never sees it), so neither can pass
// as the other.
func TestMemosTokensAndProviderTokens(t *testing.T) {
	s := newStand(t, func(c *cfg) {
		c.Memos.PassBearerTokens = true
		c.Bearer = &config.Bearer{Machines: []string{"backup"}, Scopes: []string{"notes"}, ScopesMatch: "all", Introspect: "opaque", CacheFor: time.Minute}
	}, func(o *proxytest.OPConfig) { o.IntrospectionPost = true })
	s.OP.RegisterScriptClient(proxytest.ScriptClient{ID: "backup", Secret: "backup-secret", Scopes: []string{"notes"}})
	var checks atomic.Int64
	var down atomic.Bool
	memosStandIn(s, &checks, &down)
	call := func(token string) int {
		req := mustReq(http.MethodPost, s.URL+"/memos.api.v1.MemoService/ListMemos")
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, _ := do(t, http.DefaultClient, req)
		return resp.StatusCode
	}
	// A Memos token: Memos confirms it, the provider is not asked.
	if code := call(validPAT); code != 200 || checks.Load() != 1 || s.OP.Introspections() != 0 {
		t.Errorf("a Memos token: %d, Memos asked %d, provider asked %d", code, checks.Load(), s.OP.Introspections())
	}
	// A provider token: the provider confirms it, Memos is not asked.
	tok := s.OP.IssueMachineToken("backup", "notes")
	if code := call(tok); code != 200 || checks.Load() != 1 || s.OP.Introspections() != 1 {
		t.Errorf("a provider token: %d, Memos asked %d, provider asked %d", code, checks.Load(), s.OP.Introspections())
	}
	if h := s.LastSeen().Header; h.Get("Remote-Client") != "backup" || h.Get("Remote-Auth") != "bearer" {
		t.Errorf("a provider token's headers: %v", h)
	}
	// A token neither knows: the provider refuses it; Memos never sees it.
	if code := call("garbage-token"); code != http.StatusUnauthorized || checks.Load() != 1 {
		t.Errorf("an unknown token: %d, Memos asked %d", code, checks.Load())
	}
	// The access token of Memos's web app (a JWT Memos signed) with the
	// browser's proxy session: the session path, as before bearer tokens;
	// without the session it opens nothing (and the provider never sees it).
	memosJWT := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJtZW1vcyIsInN1YiI6IjEifQ.c2lnbmF0dXJl"
	c := s.Browser()
	proxytest.SignInAs(s, c, "/", "alice", proxytest.AlicePassword)
	before := s.OP.Introspections()
	req := mustReq(http.MethodPost, s.URL+"/memos.api.v1.MemoService/ListMemos")
	req.Header.Set("Authorization", "Bearer "+memosJWT)
	req.Header.Set("Cookie", proxytest.CookieHeader(c, s.URL))
	if resp, _ := do(t, http.DefaultClient, req); resp.StatusCode != 200 || s.LastSeen().Header.Get("Authorization") != "Bearer "+memosJWT {
		t.Errorf("Memos's web app token with a session: %d", resp.StatusCode)
	}
	if code := call(memosJWT); code != http.StatusUnauthorized || s.OP.Introspections() != before {
		t.Errorf("Memos's web app token without a session: %d", code)
	}
	// A made-up Memos token: Memos refuses it; the provider never sees it.
	before = s.OP.Introspections()
	if code := call("memos_pat_" + strings.Repeat("z", 32)); code != http.StatusUnauthorized || s.OP.Introspections() != before {
		t.Errorf("a made-up Memos token: %d, provider asked %d more", code, s.OP.Introspections()-before)
	}
}
