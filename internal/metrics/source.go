package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ternhq/tern/internal/dispatch"
	"github.com/ternhq/tern/internal/logs"
)

// Source is what the gauges are read from at every scrape. Its methods
// must be safe to call concurrently and must not block for long.
type Source interface {
	// Stats is a snapshot of every function version's pool.
	Stats() []dispatch.Stats
	// Usage is the node's use of its instance and memory budget.
	Usage() dispatch.Usage
	// PoolSizes is how many generic instances wait per runtime.
	PoolSizes() map[string]int
	// UsageRecords counts the usage records published to the usage
	// stream, lost on the way, and waiting to be published.
	UsageRecords() (published, lost, buffered uint64)
	// LogDrops counts the log lines dropped, and their bytes, by reason
	// (logs.DropReasons).
	LogDrops() map[string]logs.Drops
	// EventSettleFailures counts the acks, naks and progress signals of
	// event messages that JetStream did not take, by action (ack, nak,
	// in_progress).
	EventSettleFailures() map[string]uint64
}

// Instance states of tern_instances.
const (
	stateWarm     = "warm" // idle, ready to serve
	stateBusy     = "busy"
	stateStarting = "starting"
)

// sourceCollector turns a Source's snapshot into const metrics.
type sourceCollector struct {
	src Source

	instances       *prometheus.Desc
	queueDepth      *prometheus.Desc
	desired         *prometheus.Desc
	nodeInstances   *prometheus.Desc
	nodeMaxInst     *prometheus.Desc
	nodeMemory      *prometheus.Desc
	nodeMaxMemory   *prometheus.Desc
	nodeBlocked     *prometheus.Desc
	poolInstances   *prometheus.Desc
	recordsPublish  *prometheus.Desc
	recordsLost     *prometheus.Desc
	recordsBuffered *prometheus.Desc
	logLinesDropped *prometheus.Desc
	logBytesDropped *prometheus.Desc
	settleFailures  *prometheus.Desc
}

var _ prometheus.Collector = (*sourceCollector)(nil)

func newSourceCollector(src Source) *sourceCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &sourceCollector{
		src:             src,
		instances:       desc("instances", "Function instances by state (warm: idle; busy; starting), over all versions.", labelFunction, labelState),
		queueDepth:      desc("queue_depth", "Invocations waiting for an instance, over all versions.", labelFunction),
		desired:         desc("desired_instances", "Instances the autoscaler wants, over all versions.", labelFunction),
		nodeInstances:   desc("node_instances", "Function instances started or starting on this node."),
		nodeMaxInst:     desc("node_max_instances", "The node's cap on instances (0: none)."),
		nodeMemory:      desc("node_memory_mb", "Configured memory of the node's instances, in MB."),
		nodeMaxMemory:   desc("node_max_memory_mb", "The node's cap on instance memory, in MB (0: none)."),
		nodeBlocked:     desc("node_blocked_pools", "Function pools waiting for room under the node's caps."),
		poolInstances:   desc("pool_instances", "Generic instances waiting in the pre-started pool.", labelRuntime),
		recordsPublish:  desc("usage_records_published_total", "Usage records published to the usage stream."),
		recordsLost:     desc("usage_records_lost_total", "Usage records lost before they were published."),
		recordsBuffered: desc("usage_records_buffered", "Usage records waiting to be published."),
		logLinesDropped: desc("log_lines_dropped_total", "Function log lines dropped, by reason (limit, stopped, overflow, store).", labelReason),
		logBytesDropped: desc("log_bytes_dropped_total", "Bytes of the function log lines dropped, by reason.", labelReason),
		settleFailures:  desc("event_settle_failures_total", "Acks (after their retries), naks and progress signals of event messages that JetStream did not take, by action (ack, nak, in_progress).", labelAction),
	}
}

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.instances, c.queueDepth, c.desired,
		c.nodeInstances, c.nodeMaxInst, c.nodeMemory, c.nodeMaxMemory, c.nodeBlocked,
		c.poolInstances, c.recordsPublish, c.recordsLost, c.recordsBuffered,
		c.logLinesDropped, c.logBytesDropped, c.settleFailures,
	} {
		ch <- d
	}
}

// fnGauges are one function's gauges summed over its versions.
type fnGauges struct{ warm, busy, starting, queued, desired int }

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	byFn := make(map[string]*fnGauges)
	for _, s := range c.src.Stats() {
		g := byFn[s.Function]
		if g == nil {
			g = &fnGauges{}
			byFn[s.Function] = g
		}
		g.warm += s.Idle
		g.busy += max(0, s.Instances-s.Idle-s.Starting)
		g.starting += s.Starting
		g.queued += s.Queued
		g.desired += s.Desired
	}
	for fn, g := range byFn {
		gauge(c.instances, float64(g.warm), fn, stateWarm)
		gauge(c.instances, float64(g.busy), fn, stateBusy)
		gauge(c.instances, float64(g.starting), fn, stateStarting)
		gauge(c.queueDepth, float64(g.queued), fn)
		gauge(c.desired, float64(g.desired), fn)
	}

	u := c.src.Usage()
	gauge(c.nodeInstances, float64(u.Instances))
	gauge(c.nodeMaxInst, float64(u.MaxInstances))
	gauge(c.nodeMemory, float64(u.MemoryMB))
	gauge(c.nodeMaxMemory, float64(u.MaxMemoryMB))
	gauge(c.nodeBlocked, float64(u.Blocked))

	for rt, n := range c.src.PoolSizes() {
		gauge(c.poolInstances, float64(n), rt)
	}

	published, lost, buffered := c.src.UsageRecords()
	ch <- prometheus.MustNewConstMetric(c.recordsPublish, prometheus.CounterValue, float64(published))
	ch <- prometheus.MustNewConstMetric(c.recordsLost, prometheus.CounterValue, float64(lost))
	gauge(c.recordsBuffered, float64(buffered))

	for reason, d := range c.src.LogDrops() {
		ch <- prometheus.MustNewConstMetric(c.logLinesDropped, prometheus.CounterValue, float64(d.Lines), reason)
		ch <- prometheus.MustNewConstMetric(c.logBytesDropped, prometheus.CounterValue, float64(d.Bytes), reason)
	}

	for action, n := range c.src.EventSettleFailures() {
		ch <- prometheus.MustNewConstMetric(c.settleFailures, prometheus.CounterValue, float64(n), action)
	}
}
