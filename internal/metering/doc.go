// Package metering records what every invocation used and turns it into
// usage and cost: a Record per invocation, published to the usage stream
// off the invocation path, and aggregates per function and hour rebuilt
// from that stream.
//
// # Sink
//
// The dispatcher hands every Record to a Sink (a Recorder). Record never
// blocks: it calls the observers (Prometheus counters), appends the record
// to a bounded buffer under a short lock and wakes the Sink's goroutine.
// That goroutine waits a couple of milliseconds for more, then publishes one
// message per function (JSON lines, one record a line) on
// store.UsageSubjectPrefix+<function>, asynchronously, and checks each
// acknowledgement. Messages the store does not acknowledge are kept and
// sent again with back-off, with the same Nats-Msg-Id, so that the stream's
// duplicate window (2 min by default) drops a copy whose first send did
// arrive. Records are only lost when the buffer (SinkConfig.MaxBuffered)
// is full, or at Close when its context ends first; both are counted
// (SinkStats.Lost) and logged. Published + Lost + Buffered is every record
// ever given to Record.
//
// # Aggregator
//
// The Aggregator keeps, per (function, hour of the record's Start in UTC),
// exact integer sums and a duration Histogram (mergeable, within
// HistogramRelativeError). An hour h is closed once Now ≥ h+1h+CloseAfter
// and everything published to the stream before that moment was applied:
// a record is published after its invocation ended, at most the longest
// function timeout (15 min) plus batching after its Start hour ends, so
// CloseAfter (20 min) leaves every record of h applied. Records that reach
// the stream after their hour closed are skipped and counted as late
// (AggStats.Late); that only happens when a Sink could not publish for
// longer than CloseAfter.
//
// Closed hours are written to the usage bucket (store.UsageBucket) under
// HourKey, "h.<hour start, Unix seconds>.<function>", as JSON with a
// version; then MarkerKey ("closed-through") is advanced to the newest
// hour all of whose keys are written. Hours with no records have no key.
// A key that exists already is not overwritten: the stored value wins and
// is adopted, so several servers on one NATS agree.
//
// On Start with marker M, the closed hours ≤ M come from the bucket and
// the stream is replayed (ordered consumer, by start time) from M+1h less
// a few minutes of clock skew; a record of an hour after M was published
// after that hour started, so none is missed, and records of hours ≤ M met
// in the replay are skipped. Without a marker (a new or lost bucket) the
// whole stream is replayed. So a restart changes no number, and a lost
// bucket is rebuilt from what the stream still holds (90 days) — except
// late records, which a rebuild from the stream alone counts.
//
// Lock order: Aggregator.cpMu before Aggregator.mu. No NATS call is made
// with mu held.
package metering
