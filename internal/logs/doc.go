// Package logs carries function output to the store and back.
//
// Instances hand every line (stdout, stderr, and the platform's own START,
// END and REPORT lines) to a Sink: the Sink owns one goroutine that batches
// entries and publishes them asynchronously to the store's log stream on
// subject tern.logs.<function>. Its buffer is bounded in bytes. A
// function's output waits for room (WriteOutput), which holds the function
// in its writes rather than dropping its lines; platform lines never wait
// and are dropped only past as much again. Every dropped line is counted by
// reason (Drops), including those the caller drops and reports with
// WriteDropped, which also writes the entry that says how many.
//
// Read replays a function's entries from the stream (optionally from a time,
// optionally following new ones) with an ordered consumer.
package logs
