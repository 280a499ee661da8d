package metrics

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ternhq/tern/internal/metering"
)

const namespace = "tern"

// Label names.
const (
	labelFunction = "function"
	labelOutcome  = "outcome"
	labelTrigger  = "trigger"
	labelState    = "state"
	labelRuntime  = "runtime"
	labelReason   = "reason"
	labelAction   = "action"
)

// durationBuckets are the bounds, in seconds, of the duration histograms:
// 0.5 ms doubling 22 times to about 17.5 min, past the 15 min timeout cap.
var durationBuckets = prometheus.ExponentialBuckets(0.0005, 2, 22)

// outcomes are the outcomes whose counters are cached per function; the
// index of each is outcomeIndex's answer.
var outcomes = [...]string{
	metering.OutcomeSuccess,
	metering.OutcomeError,
	metering.OutcomeTimeout,
	metering.OutcomeCrash,
	metering.OutcomeThrottled,
	metering.OutcomeCanceled,
}

func outcomeIndex(o string) int {
	switch o {
	case metering.OutcomeSuccess:
		return 0
	case metering.OutcomeError:
		return 1
	case metering.OutcomeTimeout:
		return 2
	case metering.OutcomeCrash:
		return 3
	case metering.OutcomeThrottled:
		return 4
	case metering.OutcomeCanceled:
		return 5
	}
	return -1
}

// triggers are the trigger kinds whose counters are created up front.
var triggers = [...]string{
	metering.TriggerHTTP,
	metering.TriggerAPI,
	metering.TriggerAsync,
	metering.TriggerQueue,
	metering.TriggerSchedule,
	metering.TriggerCloudEvent,
	metering.TriggerDestination,
}

func triggerIndex(t string) int {
	switch t {
	case metering.TriggerHTTP:
		return 0
	case metering.TriggerAPI:
		return 1
	case metering.TriggerAsync:
		return 2
	case metering.TriggerQueue:
		return 3
	case metering.TriggerSchedule:
		return 4
	case metering.TriggerCloudEvent:
		return 5
	case metering.TriggerDestination:
		return 6
	}
	return -1
}

// unknownTrigger labels records with no trigger.
const unknownTrigger = "unknown"

// Metrics holds Tern's metrics and the registry that exports them.
type Metrics struct {
	reg *prometheus.Registry

	invocations  *prometheus.CounterVec   // function, outcome
	coldStarts   *prometheus.CounterVec   // function
	throttles    *prometheus.CounterVec   // function
	errors       *prometheus.CounterVec   // function
	duration     *prometheus.HistogramVec // function
	initDuration *prometheus.HistogramVec // function
	billed       *prometheus.CounterVec   // function
	cpu          *prometheus.CounterVec   // function
	byTrigger    *prometheus.CounterVec   // trigger

	// byFunction is every vector with a function label, for Forget.
	byFunction []interface {
		DeletePartialMatch(prometheus.Labels) int
	}

	triggerCounters [len(triggers)]prometheus.Counter

	mu  sync.Mutex // held to create or forget a function's children
	fns sync.Map   // function name → *fnMetrics
}

// fnMetrics are one function's children of the per-function vectors.
type fnMetrics struct {
	outcomes     [len(outcomes)]prometheus.Counter
	coldStarts   prometheus.Counter
	throttles    prometheus.Counter
	errors       prometheus.Counter
	duration     prometheus.Observer
	initDuration prometheus.Observer
	billed       prometheus.Counter
	cpu          prometheus.Counter
}

var _ metering.Recorder = (*Metrics)(nil)

// New builds the metrics on a registry of their own, with the Go runtime
// and process collectors. The gauges are read from src at every scrape; a
// nil src exports none.
func New(src Source) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "invocations_total",
			Help: "Invocations by function and outcome.",
		}, []string{labelFunction, labelOutcome}),
		coldStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cold_starts_total",
			Help: "Invocations that started a new instance.",
		}, []string{labelFunction}),
		throttles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "throttles_total",
			Help: "Invocations refused for want of capacity (outcome throttled).",
		}, []string{labelFunction}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "errors_total",
			Help: "Invocations that ended in an error, a timeout or a crash.",
		}, []string{labelFunction}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "invocation_duration_seconds",
			Help:    "Run time of invocations that ran (all but throttled).",
			Buckets: durationBuckets,
		}, []string{labelFunction}),
		initDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "init_duration_seconds",
			Help:    "Init time of the instance, on cold starts.",
			Buckets: durationBuckets,
		}, []string{labelFunction}),
		billed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "billed_gb_seconds_total",
			Help: "Billed memory-time: configured GB × billed seconds.",
		}, []string{labelFunction}),
		cpu: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cpu_seconds_total",
			Help: "CPU time the function's instances used in invocations.",
		}, []string{labelFunction}),
		byTrigger: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "invocations_by_trigger_total",
			Help: "Invocations by trigger kind.",
		}, []string{labelTrigger}),
	}
	m.byFunction = []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.invocations, m.coldStarts, m.throttles, m.errors, m.duration, m.initDuration, m.billed, m.cpu}
	for i, t := range triggers {
		m.triggerCounters[i] = m.byTrigger.WithLabelValues(t)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.invocations, m.coldStarts, m.throttles, m.errors,
		m.duration, m.initDuration, m.billed, m.cpu, m.byTrigger,
	)
	if src != nil {
		m.reg.MustRegister(newSourceCollector(src))
	}
	return m
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:      m.reg,
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// Record counts one invocation. It does not block: once a function's
// children are cached, it is a handful of atomic adds.
func (m *Metrics) Record(r *metering.Record) {
	if r == nil {
		return
	}
	f := m.function(r.Function)
	if i := outcomeIndex(r.Outcome); i >= 0 {
		f.outcomes[i].Inc()
	} else {
		m.invocations.WithLabelValues(r.Function, r.Outcome).Inc()
	}
	if i := triggerIndex(r.Trigger); i >= 0 {
		m.triggerCounters[i].Inc()
	} else if r.Trigger == "" {
		m.byTrigger.WithLabelValues(unknownTrigger).Inc()
	} else {
		m.byTrigger.WithLabelValues(r.Trigger).Inc()
	}
	switch r.Outcome {
	case metering.OutcomeThrottled:
		f.throttles.Inc()
		return // it never ran
	case metering.OutcomeError, metering.OutcomeTimeout, metering.OutcomeCrash:
		f.errors.Inc()
	}
	f.duration.Observe(float64(r.DurationUS) / 1e6)
	if r.Cold {
		f.coldStarts.Inc()
		f.initDuration.Observe(float64(r.InitUS) / 1e6)
	}
	if mbms := r.MBms(); mbms > 0 {
		f.billed.Add(float64(mbms) / (1024 * 1000))
	}
	if r.CPUUS > 0 {
		f.cpu.Add(float64(r.CPUUS) / 1e6)
	}
}

// function returns fn's cached children, creating them on first use.
func (m *Metrics) function(fn string) *fnMetrics {
	if f, ok := m.fns.Load(fn); ok {
		return f.(*fnMetrics)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if f, ok := m.fns.Load(fn); ok {
		return f.(*fnMetrics)
	}
	f := &fnMetrics{
		coldStarts:   m.coldStarts.WithLabelValues(fn),
		throttles:    m.throttles.WithLabelValues(fn),
		errors:       m.errors.WithLabelValues(fn),
		duration:     m.duration.WithLabelValues(fn),
		initDuration: m.initDuration.WithLabelValues(fn),
		billed:       m.billed.WithLabelValues(fn),
		cpu:          m.cpu.WithLabelValues(fn),
	}
	for i, o := range outcomes {
		f.outcomes[i] = m.invocations.WithLabelValues(fn, o)
	}
	m.fns.Store(fn, f)
	return f
}

// Forget drops a deleted function's series. A record of the function that
// is being counted concurrently may be lost; one that arrives later
// creates them again.
func (m *Metrics) Forget(function string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fns.Delete(function)
	match := prometheus.Labels{labelFunction: function}
	for _, v := range m.byFunction {
		v.DeletePartialMatch(match)
	}
}
