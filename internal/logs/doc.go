// Package logs carries function output to the store and back.
//
// Instances hand every line (stdout, stderr, and the platform's own START,
// END and REPORT lines) to a Sink without blocking: the Sink owns one
// goroutine that batches entries and publishes them asynchronously to the
// store's log stream on subject tern.logs.<function>. The invocation path
// never waits for the store; if the buffer is full, entries are dropped and
// counted, never blocking a function.
//
// Read replays a function's entries from the stream (optionally from a time,
// optionally following new ones) with an ordered consumer.
package logs
