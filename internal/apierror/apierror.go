// Package apierror is the one catalogue of errors Tern answers over HTTP:
// every error a handler returns is mapped here to a status and a stable
// code, and written as {"error": "<message>", "code": "<code>"}.
//
// When you add a sentinel error that can reach a handler, add its mapping
// to classify and its code to docs/api.md.
package apierror

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/ternhq/tern/internal/archive"
	"github.com/ternhq/tern/internal/dispatch"
	"github.com/ternhq/tern/internal/manifest"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/runtime"
)

// Stable codes.
const (
	CodeUnauthorized     = "unauthorized"
	CodeNotFound         = "not_found"
	CodeFunctionNotFound = "function_not_found"
	CodeInvalidManifest  = "invalid_manifest"
	CodeInvalidPackage   = "invalid_package"
	CodePackageTooLarge  = "package_too_large"
	CodePayloadTooLarge  = "payload_too_large"
	CodeBadRequest       = "bad_request"
	CodeThrottled        = "throttled"
	CodeFunctionTimeout  = "function_timeout"
	CodeFunctionCrashed  = "function_crashed"
	CodeFunctionError    = "function_error"
	CodeFunctionDeleted  = "function_deleted"
	CodeUnavailable      = "unavailable"
	CodeNoRuntime        = "runtime_unavailable"
	CodeInvalidAlias     = "invalid_alias"
	CodeBadGateway       = "bad_gateway"
	CodeNoPrevious       = "no_previous_version"
	CodeInternal         = "internal"
	CodeClientClosed     = "client_closed"
	CodeConflict         = "conflict"
)

// Error is an error with its HTTP status and code decided by the handler.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// New returns an *Error.
func New(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

// Classify returns the status and code for err.
func Classify(err error) (int, string) {
	var e *Error
	var fe *manifest.FieldError
	var tooBig *http.MaxBytesError
	var failure *runtime.Failure
	var fnErr *runtime.FunctionError
	switch {
	case errors.As(err, &e):
		return e.Status, e.Code
	case errors.As(err, &failure):
		return Classify(failure.Cause)
	case errors.As(err, &fnErr):
		return http.StatusBadGateway, CodeFunctionError
	case errors.Is(err, registry.ErrBadAlias):
		return http.StatusBadRequest, CodeInvalidAlias
	case errors.Is(err, registry.ErrNoPrevious):
		return http.StatusConflict, CodeNoPrevious
	case errors.Is(err, registry.ErrNotFound):
		return http.StatusNotFound, CodeFunctionNotFound
	case errors.As(err, &fe), errors.Is(err, manifest.ErrInvalid):
		return http.StatusBadRequest, CodeInvalidManifest
	case errors.Is(err, archive.ErrTooLarge):
		return http.StatusBadRequest, CodePackageTooLarge
	case errors.Is(err, archive.ErrInvalid), errors.Is(err, registry.ErrInvalid):
		return http.StatusBadRequest, CodeInvalidPackage
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, CodePayloadTooLarge
	case errors.Is(err, dispatch.ErrThrottled):
		return http.StatusTooManyRequests, CodeThrottled
	case errors.Is(err, runtime.ErrTimeout):
		return http.StatusGatewayTimeout, CodeFunctionTimeout
	case errors.Is(err, runtime.ErrCrashed), errors.Is(err, runtime.ErrStopped), errors.Is(err, runtime.ErrNotDelivered):
		return http.StatusBadGateway, CodeFunctionCrashed
	case errors.Is(err, dispatch.ErrGone):
		return http.StatusNotFound, CodeFunctionDeleted
	case errors.Is(err, runtime.ErrAppConnection):
		return http.StatusBadGateway, CodeBadGateway
	case errors.Is(err, runtime.ErrUnavailable):
		return http.StatusServiceUnavailable, CodeNoRuntime
	case errors.Is(err, dispatch.ErrClosed):
		return http.StatusServiceUnavailable, CodeUnavailable
	case errors.Is(err, context.Canceled):
		return 499, CodeClientClosed
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, CodeFunctionTimeout
	default:
		return http.StatusInternalServerError, CodeInternal
	}
}

// Failed returns the function error of an invocation that failed, in
// Lambda's shape, and the status it is answered with: the function's own
// error or init error (502), a timeout (504), a crash or an exceeded
// memory limit (502). ok is false for every other error (the platform's:
// not found, throttled, ...).
func Failed(err error) (fe *runtime.FunctionError, status int, ok bool) {
	var f *runtime.Failure
	var ie *runtime.InitError
	switch {
	case errors.As(err, &f):
		status, _ = Classify(f.Cause)
		return &f.FunctionError, status, true
	case errors.As(err, &ie):
		return &ie.FunctionError, http.StatusBadGateway, true
	case errors.As(err, &fe):
		return fe, http.StatusBadGateway, true
	}
	return nil, 0, false
}

// Write answers err as JSON. An invocation's failure is answered with the
// function error JSON ({"errorType", "errorMessage"}, see Failed), as a
// function URL and Lambda's Invoke API do; everything else as
// {"error", "code"}.
func Write(w http.ResponseWriter, err error) {
	if fe, status, ok := Failed(err); ok {
		WriteFunctionError(w, fe, status)
		return
	}
	status, code := Classify(err)
	msg := err.Error()
	var tooBig *http.MaxBytesError
	switch {
	case status == http.StatusInternalServerError:
		msg = "internal error" // details are logged, not shown
	case errors.As(err, &tooBig):
		msg = "the request body is over the " + sizeText(tooBig.Limit) + " limit"
	}
	WriteJSON(w, status, errorBody{msg, code})
}

// WriteFunctionError answers a function error with its Lambda error JSON
// and status, saying in headers that the function failed
// (X-Tern-Function-Error: Unhandled, as Lambda's X-Amz-Function-Error)
// and how (X-Tern-Error-Type).
func WriteFunctionError(w http.ResponseWriter, fe *runtime.FunctionError, status int) {
	FunctionErrorHeaders(w, fe)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(fe.Body)
}

// FunctionErrorHeaders sets the headers of a failed invocation's answer.
func FunctionErrorHeaders(w http.ResponseWriter, fe *runtime.FunctionError) {
	h := w.Header()
	h.Set("X-Tern-Function-Error", "Unhandled")
	h.Set("X-Tern-Error-Type", fe.Type)
}

// sizeText is a byte limit as people write it: "6 MB", "256 KB", "100 bytes".
func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error","code":"internal"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// Routes serves mux, answering what it routes nowhere with JSON errors as
// everything else: 404 not_found for an unknown path, 405
// method_not_allowed (with mux's Allow header) for a known path and
// another method.
func Routes(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// What mux would answer: its status and Allow, not its text.
		rec := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", rec.header.Get("Allow"))
			WriteJSON(w, rec.status, errorBody{"method " + r.Method + " is not allowed here (allowed: " + rec.header.Get("Allow") + ")", CodeMethodNotAllowed})
		case http.StatusNotFound, 0:
			WriteJSON(w, http.StatusNotFound, errorBody{"no such route: " + r.Method + " " + r.URL.Path, CodeNotFound})
		default:
			// A redirect to the cleaned path, and the like: as mux says.
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
		}
	})
}

// CodeMethodNotAllowed: a known path, another method.
const CodeMethodNotAllowed = "method_not_allowed"

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// headerRecorder keeps a handler's status and headers, and drops its body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return len(b), nil
}
func (h *headerRecorder) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}
