package agent

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"clb/agent/api"
	"clb/agent/reconcile"
	"clb/internal/stats"
)

// metrics are clbd's Prometheus metrics, on a registry of the agent's own (several agents can
// run in one test process). Every method is safe on a nil *metrics.
type metrics struct {
	reg           *prometheus.Registry
	registrations *prometheus.CounterVec
	applies       *prometheus.CounterVec
	applySeconds  *prometheus.HistogramVec
	reloads       *prometheus.CounterVec
	mapApplies    *prometheus.CounterVec
}

func newMetrics(a *Agent) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clb_registrations_total", Help: "Membership changes by service and operation: register, unregister (API calls accepted) and expire (lapsed leases).",
		}, []string{"service", "op"}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clb_applies_total", Help: "Applies by path (unchanged, runtime, runtime-maps, reload, runtime-failed-reload, installed) and result.",
		}, []string{"path", "result"}),
		applySeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "clb_apply_duration_seconds", Help: "Time from render to applied, by path.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"path"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clb_haproxy_reloads_total", Help: "haproxy reloads by result.",
		}, []string{"result"}),
		mapApplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clb_map_applies_total", Help: "Gateway map files loaded into haproxy through the runtime API (prepare, add, verify, commit), by result (ok, error: then a reload applied it).",
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.registrations, m.applies, m.applySeconds, m.reloads, m.mapApplies,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&stateCollector{a: a})
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// ObserveApply counts an apply (reconcile.Observer).
func (m *metrics) ObserveApply(path string, err error, d time.Duration) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.applies.WithLabelValues(path, result).Inc()
	if err == nil {
		m.applySeconds.WithLabelValues(path).Observe(d.Seconds())
	}
	if path == reconcile.PathReload || path == reconcile.PathFallback {
		m.reloads.WithLabelValues(result).Inc()
	}
}

// ObserveMapApply counts a runtime map apply (reconcile.MapObserver).
func (m *metrics) ObserveMapApply(result string) {
	if m == nil {
		return
	}
	m.mapApplies.WithLabelValues(result).Inc()
}

func (m *metrics) registration(service, op string) {
	if m == nil {
		return
	}
	m.registrations.WithLabelValues(service, op).Inc()
}

// stateCollector reads members, health and pending work at scrape time.
type stateCollector struct{ a *Agent }

var (
	membersDesc  = prometheus.NewDesc("clb_members", "Registered members by service.", []string{"service"}, nil)
	healthDesc   = prometheus.NewDesc("clb_member_health", "Members by service and health as haproxy last reported it (up, down, maint, drain, unknown).", []string{"service", "health"}, nil)
	pendingDesc  = prometheus.NewDesc("clb_pending_changes", "Changes stored but not yet applied to haproxy (asked for since the last successful apply).", nil, nil)
	restartsDesc = prometheus.NewDesc("clb_haproxy_restarts_total", "Managed haproxy masters started again after one died.", nil, nil)
	drainingDesc = prometheus.NewDesc("clb_draining_servers", "Servers out of rotation waiting for their connections to end.", nil, nil)
	forcedDesc   = prometheus.NewDesc("clb_reload_only_backends", "Backends haproxy cannot change at runtime (changes reload).", nil, nil)
	lastOKDesc   = prometheus.NewDesc("clb_last_apply_success", "1 if the last apply succeeded.", nil, nil)
	authDesc     = prometheus.NewDesc("clb_auth_failures_total", "Refused API calls and console logins: bad or missing signatures, wrong console secrets (unauthenticated), and calls or logins refused because their source failed too often (rate_limited).", []string{"reason"}, nil)
)

// trafficDescs are haproxy's counters by member (labels service, member) or by service
// (label service), from the stats history (internal/stats): counters only grow (haproxy's
// restarts at reloads absorbed), so rate() works across reloads.
type trafficDescs struct {
	requests, responses, connectErrs, responseErrs, retries, redispatches, checkFails, bytesIn, bytesOut *prometheus.Desc
	sessions, queue, respTime, up                                                                        *prometheus.Desc
}

func newTrafficDescs(prefix, what string, labels ...string) trafficDescs {
	d := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(prefix+name, help+" "+what, append(append([]string{}, labels...), extra...), nil)
	}
	return trafficDescs{
		requests:     d("requests_total", "HTTP requests (TCP listeners: sessions) haproxy sent to"),
		responses:    d("responses_total", "HTTP responses by class (code 1xx, 2xx, 3xx, 4xx, 5xx, other) of", "code"),
		connectErrs:  d("connect_errors_total", "Failed connections (haproxy econ) to"),
		responseErrs: d("response_errors_total", "Response errors (haproxy eresp: closed or aborted responses) of"),
		retries:      d("retries_total", "Connection retries (haproxy wretr) to"),
		redispatches: d("redispatches_total", "Requests redispatched to another server (haproxy wredis) from"),
		checkFails:   d("check_failures_total", "Failed health checks (haproxy chkfail) of"),
		bytesIn:      d("bytes_in_total", "Bytes received from clients (haproxy bin) for"),
		bytesOut:     d("bytes_out_total", "Bytes sent to clients (haproxy bout) by"),
		sessions:     d("sessions", "Current sessions (haproxy scur) of"),
		queue:        d("queue", "Requests queued (haproxy qcur) for"),
		respTime:     d("response_time_seconds", "Average response time over the last 1024 requests (haproxy rtime) of"),
		up:           d("up", "1 when haproxy's health checks pass (UP, NOLB, DRAIN or no check) for"),
	}
}

func (t trafficDescs) all() []*prometheus.Desc {
	return []*prometheus.Desc{t.requests, t.responses, t.connectErrs, t.responseErrs, t.retries, t.redispatches, t.checkFails,
		t.bytesIn, t.bytesOut, t.sessions, t.queue, t.respTime, t.up}
}

var (
	memberTraffic  = newTrafficDescs("clb_member_", "the member (its server slot in each of the service's backends).", "service", "member")
	serviceTraffic = newTrafficDescs("clb_service_", "the service (its backends together, answers haproxy gave itself included).", "service")
	membersUpDesc  = prometheus.NewDesc("clb_service_members_up", "Members of the service whose health checks pass, as haproxy last reported them.", []string{"service"}, nil)
)

func (t trafficDescs) collect(ch chan<- prometheus.Metric, c stats.Counters, labels ...string) {
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(t.requests, c.Requests)
	for i, class := range stats.ResponseClasses {
		ch <- prometheus.MustNewConstMetric(t.responses, prometheus.CounterValue, float64(c.Responses[i]), append(append([]string{}, labels...), class)...)
	}
	counter(t.connectErrs, c.ConnectErrors)
	counter(t.responseErrs, c.ResponseErrors)
	counter(t.retries, c.Retries)
	counter(t.redispatches, c.Redispatches)
	counter(t.checkFails, c.CheckFailures)
	counter(t.bytesIn, c.BytesIn)
	counter(t.bytesOut, c.BytesOut)
	gauge(t.sessions, float64(c.Sessions))
	gauge(t.queue, float64(c.Queue))
	gauge(t.respTime, c.RespMS/1000)
	up := 0.0
	if c.Up {
		up = 1
	}
	gauge(t.up, up)
}

// collectTraffic reports haproxy's counters by service and member, for the services of the
// running config.
func (c *stateCollector) collectTraffic(ch chan<- prometheus.Metric) {
	cfg := c.a.config()
	for svc, sc := range c.a.rec.Stats().Counters() {
		if _, ok := cfg.Services[svc]; !ok {
			continue
		}
		serviceTraffic.collect(ch, sc.Counters, svc)
		ch <- prometheus.MustNewConstMetric(membersUpDesc, prometheus.GaugeValue, float64(sc.MembersUp), svc)
		for m, mc := range sc.Members {
			memberTraffic.collect(ch, mc, svc, m)
		}
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{membersDesc, healthDesc, pendingDesc, restartsDesc, drainingDesc, forcedDesc, lastOKDesc, authDesc, storeAvailableDesc, storeRevisionDesc, membersUpDesc} {
		ch <- d
	}
	for _, d := range append(memberTraffic.all(), serviceTraffic.all()...) {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	if a.store == nil || a.rec == nil {
		return
	}
	for _, v := range api.Views(api.ViewInput{Config: a.config(), Snapshot: a.store.Snapshot(), Health: a.rec.Health()}) {
		ch <- prometheus.MustNewConstMetric(membersDesc, prometheus.GaugeValue, float64(len(v.Members)), v.Name)
		counts := map[string]int{}
		for _, m := range v.Members {
			counts[m.Health]++
		}
		for h, n := range counts {
			ch <- prometheus.MustNewConstMetric(healthDesc, prometheus.GaugeValue, float64(n), v.Name, h)
		}
	}
	rs := a.rec.Status()
	ok := 0.0
	if rs.LastApply.Result == "ok" {
		ok = 1
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(rs.Pending))
	ch <- prometheus.MustNewConstMetric(drainingDesc, prometheus.GaugeValue, float64(rs.Draining))
	ch <- prometheus.MustNewConstMetric(forcedDesc, prometheus.GaugeValue, float64(len(rs.ReloadOnly)))
	ch <- prometheus.MustNewConstMetric(lastOKDesc, prometheus.GaugeValue, ok)
	if m := a.managedHaproxy(); m != nil {
		ch <- prometheus.MustNewConstMetric(restartsDesc, prometheus.CounterValue, float64(m.Restarts()))
	}
	a.collectStore(ch)
	c.collectTraffic(ch)
	ch <- prometheus.MustNewConstMetric(authDesc, prometheus.CounterValue, float64(a.AuthFailures()), "unauthenticated")
	ch <- prometheus.MustNewConstMetric(authDesc, prometheus.CounterValue, float64(a.AuthRateLimited()), "rate_limited")
}
