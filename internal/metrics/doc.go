// Package metrics exports Tern's Prometheus metrics: counters and
// histograms fed by every invocation's usage record (Metrics is a
// metering.Recorder), gauges read from a Source when scraped, and the Go
// runtime and process collectors, all on the package's own registry.
//
// Record runs on the invocation path. It looks a function's children up
// once, in a sync.Map, and after that costs a few atomic adds. Children are
// created and forgotten under Metrics.mu, so a cached child is always the
// one its vector exports.
//
// Label values are bounded: a function name, an outcome, a trigger kind, an
// instance state or a runtime name; never a request id or a version. When a
// function is deleted, Forget drops its series. When you add a vector with
// a function label, add it to Metrics.byFunction so Forget reaches it.
package metrics
