// Package runtime starts function instances and talks to them.
//
// Every instance is one process (started by package sandbox) and one
// loopback HTTP server that speaks the AWS Lambda Runtime API to it:
//
//	GET  /2018-06-01/runtime/invocation/next            long poll for the next event
//	POST /2018-06-01/runtime/invocation/{id}/response   the result
//	POST /2018-06-01/runtime/invocation/{id}/error      a function error
//	POST /2018-06-01/runtime/init/error                 the handler could not load
//
// so Tern's own bootstraps (embedded, see package nodejs) and any standard
// Lambda runtime client work the same. An instance is ready when it first
// asks for the next event; it serves one invocation at a time.
//
// Invoke hands the event to the pending long poll and waits for the result,
// the process's exit, or the deadline. On the deadline the process group is
// killed. The caller (package dispatch) decides what happens to an instance
// after a failure; an instance that timed out or crashed is never reused.
//
// Output lines are read from the process's stdout and stderr pipes by one
// goroutine each, tagged with the request id they belong to, and handed to a
// LogSink without blocking, along with START, END and REPORT lines.
package runtime
