// Package metering records what every invocation used and turns it into
// usage and cost: a Record per invocation, published to the usage stream
// off the invocation path, and rolled up into aggregates per function and
// minute, then hour, kept in the usage bucket.
//
// # Sink
//
// The dispatcher hands every Record to a Sink (a Recorder). Record never
// blocks: it calls the observers (Prometheus counters), appends the record
// to a bounded buffer under a short lock and wakes the Sink's goroutine.
// That goroutine waits a couple of milliseconds for more, then publishes one
// message per function (one record a line, see AppendLine) on
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
// The Aggregator keeps, per (function, minute of the record's Start in
// UTC), exact integer sums and a duration Histogram (mergeable, within
// HistogramRelativeError). A minute m is closed once Now ≥ m+1m+CloseAfter
// and everything published to the stream before that moment was applied:
// a record is published after its invocation ended, at most the longest
// function timeout (15 min) plus batching after its Start minute ends, so
// CloseAfter (20 min) leaves every record of m applied. Records that reach
// the stream after their minute closed are skipped and counted as late
// (AggStats.Late); that only happens when a Sink could not publish for
// longer than CloseAfter.
//
// Closed minutes are rolled up into the usage bucket (store.UsageBucket):
// a minute of an hour still open under MinuteKey, "m.<minute start, Unix
// seconds>.<function>", with a TTL of AggConfig.MinuteTTL (48 h); once
// all minutes of an hour are closed, their merge under HourKey,
// "h.<hour start>.<function>", with a TTL of AggConfig.HourTTL (90 days),
// and in memory the hour's aggregate replaces its minutes. Then
// MinuteMarkerKey ("minutes-closed-through") and MarkerKey
// ("closed-through") are advanced to the newest minute and hour all of
// whose keys are written. Minutes and hours with no records have no key.
// Every key is written with create-only semantics and never overwritten:
// the stored value wins and is adopted, so several servers on one NATS
// agree and each rollup is stored once.
//
// On Start with markers M (minutes) and H (hours), the hours ≤ H and the
// minutes ≤ M of later hours come from the bucket, and the stream is
// replayed (ordered consumer, by start time) from M+1m less a few minutes
// of clock skew; a record of a minute after M was published after that
// minute started, so none is missed, and records of minutes ≤ M met in
// the replay are skipped. Without markers (a new or lost bucket) the
// whole stream is replayed. So a restart changes no number as long as the
// raw records of the minutes not yet closed are still in the stream (it
// keeps them 24 h and 1 GiB by default); once closed, a minute's numbers
// need no raw record. A reader that finds a gap in the stream's sequence
// (records the limits discarded before it read them) counts it
// (AggStats.Missed) and logs it.
//
// Lock order: Aggregator.cpMu before Aggregator.mu. No NATS call is made
// with mu held.
package metering
