// Package runtime starts function instances and talks to them.
//
// Every instance is one process (started by package sandbox). Tern's own
// bootstraps (package nodejs) speak the framed protocol of
// docs/runtime-protocol.md on a Unix socket passed as fd 3: one INVOKE frame
// per event, one RESPONSE or ERROR frame per answer. Every instance also has
// a loopback HTTP server speaking the AWS Lambda Runtime API:
//
//	GET  /2018-06-01/runtime/invocation/next            long poll for the next event
//	POST /2018-06-01/runtime/invocation/{id}/response   the result
//	POST /2018-06-01/runtime/invocation/{id}/error      a function error
//	POST /2018-06-01/runtime/init/error                 the handler could not load
//
// for runtimes that bring their own Lambda runtime client; an answer posted
// there for the invocation in progress counts like a framed one (the first
// answer wins).
//
// The Launcher keeps a pool of generic instances of each pooled runtime:
// processes started with a minimal environment that have loaded the
// bootstrap and said BOOTED. A cold start takes one and sends it SPECIALIZE
// (handler, code folder, the function's environment); the process serves
// that function until it stops and never returns to the pool. A refill
// goroutine owned by the Launcher starts replacements.
//
// Every process starts in a cgroup of its own (sandbox: pids, CPU weight;
// the memory limit of its function when it is the function's own program,
// else set just before SPECIALIZE, before it loads any of the function's
// code). Where that fails it runs without (logged once).
//
// As root, every instance is jailed (sandbox.Jail): a pooled one boots in
// its jail as root holding only CAP_SETUID and CAP_SETGID with an empty
// /var/task; a cold start mounts the function's code there and sends
// SPECIALIZE with taskRoot /var/task and the function's uid (Spec.UID),
// which the bootstrap takes, checking that no capability is left, before
// it loads the code. The Runtime API then serves only that uid. A process the kernel killed for exceeding the
// memory answers its invocation with the function error
// Runtime.OutOfMemory (Result.Fatal: the instance is replaced).
//
// Invoke hands over the event and waits for the answer, the process's exit,
// or the deadline. On the deadline the process tree (and its cgroup) is
// killed. The caller
// (package dispatch) decides what happens to an instance after a failure; an
// instance that timed out or crashed is never reused.
//
// Output lines are read from the process's stdout and stderr pipes by one
// goroutine each, tagged with the request id they belong to, and handed to a
// LogSink, along with START, END and REPORT lines. A reader waits while the
// log is full (the function's writes then block); past an invocation's
// output limit, or once a stopped instance gave up waiting, lines are
// counted instead and one entry says how many were dropped.
package runtime
