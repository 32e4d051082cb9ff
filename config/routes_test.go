package config

import (
	"errors"
	"strings"
	"testing"
)

const routesBase = `
external_url: https://auth.example.com
oidc:
  issuer: https://auth.example.com
  client_id: apps
  client_secret: s3cret
session:
  secret: "` + validSecret + `"
`

func TestRoutes(t *testing.T) {
	c, err := Parse("t.yaml", []byte(routesBase+`access:
  allowed_groups: [users]
headers:
  X-User: preferred_username
routes:
  - host: Notes.Example.com
    upstream: http://memos:5230
    memos:
      bridge: true
  - name: grafana
    host: apps.example.com
    path: /grafana/
    upstream: http://grafana:3000
    headers:
      X-WEBAUTH-USER: preferred_username
    access:
      allowed_groups: [admins]
  - host: "*.apps.example.com"
    upstream: http://other:80
    preserve_host: false
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	rs := c.RouteList()
	if len(rs) != 3 {
		t.Fatalf("%d routes", len(rs))
	}
	if r := rs[0]; r.Name != "notes.example.com" || r.Host != "notes.example.com" || r.Headers["X-User"] != "preferred_username" ||
		r.Access.AllowedGroups[0] != "users" || !*r.PreserveHost || r.Memos.IdPID != "oidc-proxy" || r.Line() != 14 {
		t.Errorf("route 0: %+v", r)
	}
	if r := rs[1]; r.Name != "grafana" || r.Path != "/grafana" || r.Headers["X-WEBAUTH-USER"] == "" || r.Access.AllowedGroups[0] != "admins" {
		t.Errorf("route 1: %+v", r)
	}
	if r := rs[2]; r.Name != "*.apps.example.com" || *r.PreserveHost {
		t.Errorf("route 2: %+v", r)
	}
	if got := c.OriginOf("notes.example.com"); got != "https://notes.example.com" {
		t.Errorf("origin %s", got)
	}
	// Without routes: one route of the top level, for every host.
	c, err = Parse("t.yaml", []byte(minimal), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if rs := c.RouteList(); len(rs) != 1 || rs[0].Host != "" || rs[0].Upstream != "http://127.0.0.1:5230" || rs[0].Name != "default" {
		t.Errorf("the top level as a route: %+v", rs)
	}
}

func TestRoutesRefused(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"upstream and routes", `upstream: http://x
routes:
  - host: a.example.com
    upstream: http://a`, "line 9: upstream: is set at the top level and routes are too"},
		{"memos and routes", `memos:
  pass_bearer_tokens: true
routes:
  - host: a.example.com
    upstream: http://a`, "line 9: memos: is set at the top level and routes are too"},
		{"the same host twice", `routes:
  - host: a.example.com
    upstream: http://a
  - host: A.example.com
    upstream: http://b`, "routes[0] (line 10) and routes[1] (line 12) both serve a.example.com"},
		{"the same prefix twice", `routes:
  - host: a.example.com
    path: /x
    upstream: http://a
  - host: a.example.com
    path: /x/
    upstream: http://b`, "routes[0] (line 10) and routes[1] (line 13) both serve a.example.com/x"},
		{"no host", `routes:
  - upstream: http://a`, "routes[0].host: is required"},
		{"no upstream", `routes:
  - host: a.example.com`, "routes[0].upstream:"},
		{"a port", `routes:
  - host: a.example.com:8080
    upstream: http://a`, "is not a host name"},
		{"an IP", `routes:
  - host: 10.0.0.1
    upstream: http://a`, "is an IP address"},
		{"a wildcard inside", `routes:
  - host: a.*.example.com
    upstream: http://a`, "a wildcard may only be the whole first label"},
		{"a bare wildcard", `routes:
  - host: "*"
    upstream: http://a`, "a wildcard may only be the whole first label"},
		{"a trailing dot", `routes:
  - host: a.example.com.
    upstream: http://a`, "is not a host name"},
		{"a pattern path", `routes:
  - host: a.example.com
    path: /x/*
    upstream: http://a`, "must be a path prefix"},
		{"the proxy's path", `routes:
  - host: a.example.com
    path: /oauth2
    upstream: http://a`, "/oauth2/ is the proxy's own"},
		{"a relative path", `routes:
  - host: a.example.com
    path: x
    upstream: http://a`, "must be a path prefix"},
		{"two names alike", `routes:
  - host: a.example.com
    name: x
    upstream: http://a
  - host: b.example.com
    name: x
    upstream: http://b`, `"x" is also the name of routes[0] (line 10)`},
		{"a name with spaces", `routes:
  - host: a.example.com
    name: my app
    upstream: http://a`, "routes[0].name: must be"},
		{"a bridge on a wildcard", `routes:
  - host: "*.example.com"
    upstream: http://a
    memos: {bridge: true}`, "routes[0].memos.bridge: needs a route of its own host"},
		{"two bridges on one listener", `routes:
  - host: a.example.com
    upstream: http://a
    memos: {bridge: true}
  - host: b.example.com
    upstream: http://b
    memos: {bridge: true}`, "routes[1].memos.bridge_listen: 127.0.0.1:4181 is also the bridge of routes[0]"},
		{"a bad header in a route", `routes:
  - host: a.example.com
    upstream: http://a
    headers: {Host: email}`, "line 12: routes[0].headers.Host: Host cannot carry a claim"},
		{"a bad rule in a route", `routes:
  - host: a.example.com
    upstream: http://a
    access: {allowed_groups: [""]}`, "routes[0].access.allowed_groups: holds an empty group"},
		{"a bad public path in a route", `routes:
  - host: a.example.com
    upstream: http://a
    public_paths: [x]`, `routes[0].public_paths: "x" is not a path pattern`},
		{"an unknown key in a route", `routes:
  - host: a.example.com
    upstream: http://a
    upsteam: http://b`, "line 12: routes[0].upsteam: unknown key"},
		{"empty routes", `upstream: http://a
routes: []`, "routes: is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(routesBase+tc.yaml), noEnv)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("want *Error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("missing %q in:\n%s", tc.want, err)
			}
		})
	}
}
