package proxy

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/oidc-proxy/oidc-proxy/proxy/rp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Route kinds, for the request counter.
const (
	routeProxied = iota // forwarded to the upstream (or refused on the way)
	routeSignIn         // the proxy's own sign-in endpoints
	routeHealth         // healthz and readyz
	routeKinds
)

var routeNames = [routeKinds]string{"proxied", "sign_in", "health"}

func routeOf(path string) int {
	switch {
	case !strings.HasPrefix(path, Prefix):
		return routeProxied
	case path == Prefix+"healthz" || path == Prefix+"readyz":
		return routeHealth
	}
	return routeSignIn
}

// metrics are the proxy's Prometheus metrics, in a registry of its own.
// Counters used on every request are resolved once, so counting allocates
// nothing.
type metrics struct {
	registry *prometheus.Registry
	own      []prometheus.Collector // the proxy's own metrics, for MetricNames
	requests *prometheus.CounterVec
	none     *requestCounters // requests no route serves
	upstream prometheus.Observer
	signIns  *prometheus.CounterVec
	refresh  *prometheus.CounterVec
	idp      *prometheus.HistogramVec
	idpErrs  *prometheus.CounterVec
	// idpLimited counts the provider's 429 answers, by endpoint.
	idpLimited *prometheus.CounterVec
	streams    prometheus.Gauge
	store      prometheus.Gauge   // 1 while the Redis store's announcements are followed
	storeErr   prometheus.Counter // requests answered 503 because the store was down
	// Around a Redis failover: new masters seen, writes Redis did not
	// confirm (by op), and those a background retry stored or gave up.
	// bearer counts bearer requests by result (pass, refused,
	// unavailable) and reason (the kind that passed, or why not).
	bearer *prometheus.CounterVec
	// account counts what people and administrators did on the home
	// pages, and the posts refused.
	account          *prometheus.CounterVec
	storeFailovers   prometheus.Counter
	storeUnconfirmed *prometheus.CounterVec
	storeRetried     *prometheus.CounterVec
	reloads          *prometheus.CounterVec
	reloadAt         prometheus.Gauge
	// upgradesRefused counts requests whose protocol switch the proxy
	// refused: CONNECT (connect), or an upgrade dropped from a request
	// forwarded as a plain one (dropped), or an upstream's 101 that
	// answered no WebSocket handshake (upstream_switch).
	upgradesRefused *prometheus.CounterVec
}

func newMetrics(version string) *metrics {
	m := &metrics{registry: prometheus.NewRegistry()}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidc_proxy_requests_total", Help: "Requests answered, by kind (route), status class and the name of the route that served them (route_name; none: no route).",
	}, []string{"route", "code", "route_name"})
	m.requests = requests
	m.none = m.forRoute("none")
	upstream := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "oidc_proxy_upstream_duration_seconds", Help: "Time until the upstream's response headers arrived.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
	})
	m.upstream = upstream
	m.signIns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidc_proxy_sign_ins_total", Help: "Completed sign-ins (result=success) and failed ones by reason.",
	}, []string{"result", "reason"})
	m.refresh = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidc_proxy_refreshes_total", Help: "Refresh tokens spent at the provider, by result (success, refused: the session ended, failed: the provider failed), and refreshes postponed because the session store could not take them (postponed).",
	}, []string{"result"})
	m.idp = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "oidc_proxy_idp_request_duration_seconds", Help: "Requests to the OpenID Provider, by endpoint.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
	}, []string{"endpoint"})
	m.idpErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidc_proxy_idp_errors_total", Help: "Requests to the OpenID Provider that failed or answered 5xx, by endpoint.",
	}, []string{"endpoint"})
	m.idpLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidc_proxy_idp_rate_limited_total", Help: "Requests the OpenID Provider refused for its rate limit (429), by endpoint.",
	}, []string{"endpoint"})
	m.idpLimited.WithLabelValues("token")
	m.streams = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "oidc_proxy_streams_active", Help: "WebSocket connections and Server-Sent Events streams open through the proxy.",
	})
	m.store = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "oidc_proxy_session_store_up", Help: "With the Redis store: 1 while the proxy is connected to Redis and follows its announcements.",
	})
	m.storeErr = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "oidc_proxy_session_store_errors_total", Help: "Requests answered 503 because the session store could not be reached.",
	})
	m.bearer = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidc_proxy_bearer_requests_total", Help: "Requests authenticated by a bearer access token, by result (pass, refused, unavailable) and reason (person or machine when it passed; malformed, invalid_token, wrong_client, insufficient_scope, forbidden, unusable_claim, client_limit; provider when the provider could not answer).",
	}, []string{"result", "reason"})
	m.account = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidc_proxy_account_actions_total", Help: "Actions on the home pages: sign_out_device, sign_out_everywhere, admin_sign_out, and refusals: refused_cross_site (a post without its token or from another site), admin_refused (not an administrator).",
	}, []string{"action"})
	for _, a := range []string{"sign_out_device", "sign_out_everywhere", "admin_sign_out", "refused_cross_site", "admin_refused"} {
		m.account.WithLabelValues(a)
	}
	m.storeFailovers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "oidc_proxy_session_store_failovers_total", Help: "With Redis Sentinel: new masters the sentinels named while the proxy ran (each one followed at once).",
	})
	m.storeUnconfirmed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidc_proxy_session_store_unconfirmed_writes_total", Help: "Session writes Redis did not confirm to survive a failover, by op: refresh and sign_out (kept and retried in the background), demoted_master (a write that reached a master the sentinels no longer name, retried).",
	}, []string{"op"})
	m.storeRetried = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidc_proxy_session_store_retried_writes_total", Help: "Unconfirmed session writes retried in the background, by op and result: stored, or given_up (lost).",
	}, []string{"op", "result"})
	for _, op := range []string{"refresh", "sign_out"} {
		m.storeUnconfirmed.WithLabelValues(op)
		m.storeRetried.WithLabelValues(op, "stored")
		m.storeRetried.WithLabelValues(op, "given_up")
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "oidc_proxy_build_info", Help: "Always 1; the labels name the build.", ConstLabels: prometheus.Labels{"version": version},
	})
	build.Set(1)
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidc_proxy_config_reloads_total", Help: "Configuration reloads, by result (success, failure).",
	}, []string{"result"})
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	m.reloadAt = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "oidc_proxy_config_last_reload_success_timestamp_seconds", Help: "When the configuration was last loaded successfully (at start, or by a reload), Unix seconds.",
	})
	m.reloadAt.SetToCurrentTime()
	m.upgradesRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidc_proxy_upgrades_refused_total", Help: "Protocol switches refused: CONNECT (connect), an upgrade other than a WebSocket handshake to a route with websockets, forwarded without it (dropped), an upstream's 101 to anything else (upstream_switch).",
	}, []string{"kind"})
	for _, k := range []string{"connect", "dropped", "upstream_switch"} {
		m.upgradesRefused.WithLabelValues(k)
	}
	m.own = []prometheus.Collector{m.upgradesRefused, m.reloads, m.reloadAt, requests, upstream, m.signIns, m.refresh, m.idp, m.idpErrs, m.idpLimited, m.streams, m.store, m.storeErr, m.bearer, m.account, m.storeFailovers, m.storeUnconfirmed, m.storeRetried, build}
	m.registry.MustRegister(m.own...)
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// MetricNames lists the names of the proxy's own metrics (histograms
// also export _bucket, _sum and _count series), whether or not any has
// been observed yet.
func (p *Proxy) MetricNames() []string {
	var out []string
	for _, c := range p.metrics.own {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				out = append(out, m[1])
			}
		}
	}
	return out
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Handler serves the metrics in the Prometheus text format.
func (m *metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// MetricsHandler serves the proxy's Prometheus metrics; serve it on a
// listener of its own (metrics_listen), not to the public.
func (p *Proxy) MetricsHandler() http.Handler { return p.metrics.Handler() }

// reloaded counts a reload.
func (m *metrics) reloaded(ok bool, at time.Time) {
	if !ok {
		m.reloads.WithLabelValues("failure").Inc()
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.reloadAt.Set(float64(at.UnixNano()) / 1e9)
}

// requestCounters are one route's request counters, by kind and status
// class 0 (none: hijacked), 1xx..5xx: resolved once, so that counting
// allocates nothing.
type requestCounters [routeKinds][6]prometheus.Counter

func (m *metrics) forRoute(name string) *requestCounters {
	var c requestCounters
	for r := range routeKinds {
		for k := range 6 {
			class := "hijacked"
			if k > 0 {
				class = strconv.Itoa(k) + "xx"
			}
			c[r][k] = m.requests.WithLabelValues(routeNames[r], class, name)
		}
	}
	return &c
}

func (c *requestCounters) count(kind, status int) {
	class := status / 100
	if class < 0 || class > 5 {
		class = 0
	}
	c[kind][class].Inc()
}

// idpTransport times every request to the provider.
type idpTransport struct {
	next http.RoundTripper
	m    *metrics
}

// CloseIdleConnections closes the idle connections of the transport below.
func (t idpTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (t idpTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	endpoint := rp.Endpoint(r.Context())
	if endpoint == "" {
		endpoint = "other"
	}
	if addr := rp.ClientAddress(r.Context()); addr != "" {
		r = r.Clone(r.Context()) // a RoundTripper must not change its request
		r.Header.Set("X-Forwarded-For", addr)
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	t.m.idp.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
	switch {
	case err != nil || resp.StatusCode >= 500:
		t.m.idpErrs.WithLabelValues(endpoint).Inc()
	case resp.StatusCode == http.StatusTooManyRequests:
		t.m.idpLimited.WithLabelValues(endpoint).Inc()
	}
	return resp, err
}
