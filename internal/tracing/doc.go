// Package tracing exports one OpenTelemetry trace per invocation to an
// OTLP/HTTP collector: a SERVER span "invoke <function>" from the moment
// the dispatcher took the request to the moment it finished, with children
// "queue" (waiting for an instance), "init" (the instance's init, cold
// starts only) and "execute" (running on the instance).
//
// Spans are recorded after the fact: the caller hands Tracer.Invocation a
// finished Invocation with its timestamps, and the spans are built with
// those timestamps, so nothing is threaded through the invocation path and
// no context carries a span.
//
// The trace continues the caller's trace when the invocation carries a
// Lambda trace header (X-Amzn-Trace-Id, "Root=1-<8 hex>-<24 hex>;
// Parent=<16 hex>;Sampled=<0|1>"): the Root's 32 hex digits are the W3C
// trace id and Parent is the remote parent span id. Tern does not sample:
// when an endpoint is configured every invocation is traced, whatever the
// header's Sampled flag (it is kept on the remote parent, nothing more).
// Sampling, if wanted, belongs in the collector (tail sampling sees whole
// traces; Tern sees one hop).
//
// Invocation never blocks: ended spans go to the SDK's batch span processor,
// whose queue is bounded (2048 spans by default) and drops spans when full,
// for example while the collector is down. Export failures are logged, once
// when they start and once when they stop, and never reach the caller.
//
// The package touches no OpenTelemetry globals: it does not install a
// global TracerProvider, propagator or error handler.
package tracing
