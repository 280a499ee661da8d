package runtime

import (
	"errors"
	"fmt"
	"time"

	"github.com/ternhq/tern/internal/logs"
)

// Errors the dispatcher and callers branch on.
var (
	// ErrTimeout: the invocation passed its deadline; the instance was killed.
	ErrTimeout = errors.New("function timed out")
	// ErrCrashed: the process exited while it held an invocation.
	ErrCrashed = errors.New("function instance crashed")
	// ErrStopped: the instance was stopped by Tern (shutdown, delete).
	ErrStopped = errors.New("instance stopped")
	// ErrAppConnection: an http app's connection failed while the app
	// runs on (the instance is kept).
	ErrAppConnection = errors.New("app connection failed")
	// ErrAborted: a proxied response broke after it had begun; the client's
	// connection must be aborted. It wraps the cause.
	ErrAborted = errors.New("response aborted")
	// ErrNotDelivered: the instance died or disconnected before it took the
	// event; the function never saw it, so it may be retried elsewhere.
	ErrNotDelivered = errors.New("event not delivered")
	// ErrUnavailable: this host cannot run the function's runtime (for
	// example node is not installed).
	ErrUnavailable = errors.New("runtime unavailable")
)

// ErrTypeOutOfMemory is the error type of an invocation whose instance was
// killed for exceeding the function's memory (answered as a function
// error; the instance is replaced).
const ErrTypeOutOfMemory = "Runtime.OutOfMemory"

// Spec is what an instance needs to know about the function version it
// serves.
type Spec struct {
	Function string
	Version  int
	Runtime  string
	Handler  string
	CodeDir  string
	MemoryMB int
	// Command starts the server of a runtime http function.
	Command string
	// Style is "http" for Express-style (req, res) nodejs handlers.
	Style string
	// Concurrency is how many invocations the instance runs at once
	// (framed runtimes only; 1 otherwise).
	Concurrency int
	Timeout     time.Duration
	Env         map[string]string
	// NoNetwork: the function asked for no network (network: none); its
	// instances are started for it, in a network namespace of their own,
	// never taken from the pool.
	NoNetwork bool
	// TmpMB is the size of a jailed instance's /tmp, its ephemeral
	// storage (0: the server's default).
	TmpMB int
	// UID is the function's own unprivileged uid (and gid), which its
	// jailed instances run as; 0: DefaultUID.
	UID int
}

// DefaultUID is the uid of jailed instances whose function has none of
// its own (nobody).
const DefaultUID = 65534

func (s *Spec) uid() int {
	if s.UID > 0 {
		return s.UID
	}
	return DefaultUID
}

// Invocation is one event for an instance.
type Invocation struct {
	RequestID string
	Payload   []byte
	Deadline  time.Time
	TraceID   string
	// ClientContext and CognitoIdentity are JSON text passed to the
	// function as Lambda does (Lambda-Runtime-Client-Context, ...); empty
	// when the caller gave none.
	ClientContext   string
	CognitoIdentity string
	// Trigger is what caused the invocation (metering.Trigger*), for its
	// usage record.
	Trigger string
}

// Result is what the function answered. Exactly one of Payload (success) or
// Error (a function error) is meaningful.
type Result struct {
	Payload []byte
	Error   *FunctionError
	// Fatal: the runtime exits after this answer (an uncaught error); the
	// instance must not get another invocation.
	Fatal bool
}

// FunctionError is an error the function reported (or that Tern reports on
// its behalf): the error JSON as Lambda shapes it,
// {"errorType": ..., "errorMessage": ..., "stackTrace": [...]}.
type FunctionError struct {
	Type string
	Body []byte
}

func (e *FunctionError) Error() string { return "function error: " + e.Type }

// Error types Tern reports on a function's behalf, as Lambda names them.
const (
	ErrTypeTimeout   = "Sandbox.Timedout"
	ErrTypeExitError = "Runtime.ExitError"
)

// Failure is an invocation that ended without the function's answer: it
// timed out, or its instance died (ErrTimeout, ErrCrashed: Unwrap gives the
// cause). It says what happened as Lambda does, in the function error
// shape every invocation failure is answered with.
type Failure struct {
	Cause error
	FunctionError
	// Message is the errorMessage, also the function's log line.
	Message string
}

func (f *Failure) Error() string { return f.Cause.Error() }
func (f *Failure) Unwrap() error { return f.Cause }

// InitError is returned by Start when the runtime reported /init/error or
// exited before it became ready.
type InitError struct {
	FunctionError
	Duration time.Duration
}

func (e *InitError) Error() string { return fmt.Sprintf("init error: %s", e.Type) }

// LogSink receives output and platform lines. Write and WriteReport must
// not block; WriteReport stands for an invocation's END and REPORT lines.
// WriteOutput may wait for room until abort is closed, and reports whether
// it took the line; WriteDropped counts lines that were not kept and
// writes the entry that says so (logs.Sink.WriteDropped).
type LogSink interface {
	Write(logs.Entry)
	WriteReport(logs.Entry, *logs.Report)
	WriteOutput(e logs.Entry, abort <-chan struct{}) bool
	WriteDropped(e logs.Entry, lines, bytes int64, reason string)
}
