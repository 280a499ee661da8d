package apierror_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/archive"
	"github.com/ternhq/tern/internal/dispatch"
	"github.com/ternhq/tern/internal/manifest"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/runtime"
)

func TestClassify(t *testing.T) {
	fieldErr := &manifest.FieldError{Field: "memory", Message: "must be between 128 and 10240 MB"}
	// A real manifest error, as Deploy wraps it.
	_, parseErr := manifest.Parse([]byte("name: x\nruntime: nodejs\nhandler: index.handler\nmemory: 1\nscale:\n  max: -1\n"))
	if parseErr == nil {
		t.Fatal("manifest.Parse accepted a bad manifest")
	}
	// A real archive error, as Deploy wraps it.
	_, zipErr := archive.Inspect(strings.NewReader("not a zip"), 9, archive.DefaultLimits())
	_, bigErr := archive.Inspect(strings.NewReader("not a zip"), 9, archive.Limits{MaxBytes: 1})
	maxBytes := &http.MaxBytesError{Limit: 10}
	handlerErr := apierror.New(http.StatusTeapot, "teapot", "short and stout")

	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"handler's own", handlerErr, http.StatusTeapot, "teapot"},
		{"not found", registry.ErrNotFound, http.StatusNotFound, apierror.CodeFunctionNotFound},
		{"field error", fieldErr, http.StatusBadRequest, apierror.CodeInvalidManifest},
		{"parsed manifest in ErrInvalid", fmt.Errorf("%w: %w", registry.ErrInvalid, parseErr), http.StatusBadRequest, apierror.CodeInvalidManifest},
		{"too large", archive.ErrTooLarge, http.StatusBadRequest, apierror.CodePackageTooLarge},
		{"archive too large in ErrInvalid", fmt.Errorf("%w: %w", registry.ErrInvalid, bigErr), http.StatusBadRequest, apierror.CodePackageTooLarge},
		{"archive invalid", archive.ErrInvalid, http.StatusBadRequest, apierror.CodeInvalidPackage},
		{"archive error in ErrInvalid", fmt.Errorf("%w: %w", registry.ErrInvalid, zipErr), http.StatusBadRequest, apierror.CodeInvalidPackage},
		{"registry invalid", registry.ErrInvalid, http.StatusBadRequest, apierror.CodeInvalidPackage},
		{"max bytes", maxBytes, http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge},
		{"throttled", dispatch.ErrThrottled, http.StatusTooManyRequests, apierror.CodeThrottled},
		{"timeout", runtime.ErrTimeout, http.StatusGatewayTimeout, apierror.CodeFunctionTimeout},
		{"crashed", runtime.ErrCrashed, http.StatusBadGateway, apierror.CodeFunctionCrashed},
		{"stopped", runtime.ErrStopped, http.StatusBadGateway, apierror.CodeFunctionCrashed},
		{"gone", dispatch.ErrGone, http.StatusNotFound, apierror.CodeFunctionDeleted},
		{"no runtime", runtime.ErrUnavailable, http.StatusServiceUnavailable, apierror.CodeNoRuntime},
		{"closed", dispatch.ErrClosed, http.StatusServiceUnavailable, apierror.CodeUnavailable},
		{"canceled", context.Canceled, 499, apierror.CodeClientClosed},
		{"deadline", context.DeadlineExceeded, http.StatusGatewayTimeout, apierror.CodeFunctionTimeout},
		{"other", errors.New("disk on fire"), http.StatusInternalServerError, apierror.CodeInternal},
		{"io", io.ErrUnexpectedEOF, http.StatusInternalServerError, apierror.CodeInternal},
	}
	if zipErr == nil || bigErr == nil {
		t.Fatal("archive.Inspect accepted a non-zip")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if status, code := apierror.Classify(tt.err); status != tt.status || code != tt.code {
				t.Errorf("Classify(%v) = %d %s, want %d %s", tt.err, status, code, tt.status, tt.code)
			}
			wrapped := fmt.Errorf("x: %w", tt.err)
			if status, code := apierror.Classify(wrapped); status != tt.status || code != tt.code {
				t.Errorf("Classify(wrapped %v) = %d %s, want %d %s", tt.err, status, code, tt.status, tt.code)
			}
			twice := fmt.Errorf("y: %w", errors.Join(errors.New("context"), wrapped))
			if status, code := apierror.Classify(twice); status != tt.status || code != tt.code {
				t.Errorf("Classify(joined %v) = %d %s, want %d %s", tt.err, status, code, tt.status, tt.code)
			}
		})
	}
}

// The stable codes are distinct and snake_case.
func TestCodesAreDistinct(t *testing.T) {
	codes := []string{
		apierror.CodeUnauthorized, apierror.CodeNotFound, apierror.CodeFunctionNotFound,
		apierror.CodeInvalidManifest, apierror.CodeInvalidPackage, apierror.CodePackageTooLarge,
		apierror.CodePayloadTooLarge, apierror.CodeBadRequest, apierror.CodeThrottled,
		apierror.CodeFunctionTimeout, apierror.CodeFunctionCrashed, apierror.CodeFunctionDeleted,
		apierror.CodeUnavailable, apierror.CodeNoRuntime, apierror.CodeInternal, apierror.CodeClientClosed,
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if c == "" || seen[c] || strings.ToLower(c) != c || strings.ContainsAny(c, " -") {
			t.Errorf("code %q is empty, repeated or not snake_case", c)
		}
		seen[c] = true
	}
}

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) errorBody {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if !strings.HasSuffix(rec.Body.String(), "\n") {
		t.Errorf("body %q does not end with a newline", rec.Body.String())
	}
	var b errorBody
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("body is not the error JSON: %v", err)
	}
	return b
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		msg    string
		code   string
	}{
		{"not found", fmt.Errorf("x: %w", registry.ErrNotFound), 404, "x: function not found", apierror.CodeFunctionNotFound},
		{"handler's own", apierror.New(400, apierror.CodeBadRequest, "since: nope"), 400, "since: nope", apierror.CodeBadRequest},
		{"throttled", dispatch.ErrThrottled, 429, "too many requests", apierror.CodeThrottled},
		{"internal hides the message", fmt.Errorf("store: read fn.x: %w", errors.New("nats: secret detail")), 500, "internal error", apierror.CodeInternal},
		{"handler's own 500 hides it too", apierror.New(500, apierror.CodeInternal, "secret"), 500, "internal error", apierror.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			apierror.Write(rec, tt.err)
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d", rec.Code, tt.status)
			}
			b := decode(t, rec)
			if b.Error != tt.msg || b.Code != tt.code {
				t.Errorf("body = %+v, want error %q code %q", b, tt.msg, tt.code)
			}
			if strings.Contains(rec.Body.String(), "secret") {
				t.Errorf("body shows the hidden message: %s", rec.Body.String())
			}
			if rec.Header().Get("X-Tern-Function-Error") != "" {
				t.Errorf("X-Tern-Function-Error set on a platform error")
			}
		})
	}
}

func TestWriteInitError(t *testing.T) {
	body := []byte(`{"errorType":"Runtime.ImportModuleError","errorMessage":"Cannot find module 'x'","stackTrace":[]}`)
	ie := &runtime.InitError{FunctionError: runtime.FunctionError{Type: "Runtime.ImportModuleError", Body: body}}
	for _, err := range []error{ie, fmt.Errorf("start hello:1: %w", ie)} {
		rec := httptest.NewRecorder()
		apierror.Write(rec, err)
		if rec.Code != http.StatusBadGateway {
			t.Errorf("status = %d, want 502", rec.Code)
		}
		if got := rec.Body.String(); got != string(body) {
			t.Errorf("body = %s, want the function's error body %s", got, body)
		}
		h := rec.Header()
		if h.Get("X-Tern-Function-Error") != "Unhandled" || h.Get("X-Tern-Error-Type") != "Runtime.ImportModuleError" || h.Get("Content-Type") != "application/json" {
			t.Errorf("headers = %v", h)
		}
	}
}

// Every way an invocation fails is answered in one shape: Lambda's error
// JSON, X-Tern-Function-Error and X-Tern-Error-Type.
func TestWriteFailures(t *testing.T) {
	body := func(typ, msg string) []byte {
		return []byte(`{"errorType":"` + typ + `","errorMessage":"` + msg + `","stackTrace":[]}`)
	}
	failure := func(cause error, typ, msg string) error {
		return fmt.Errorf("invoke fn:1: %w", &runtime.Failure{Cause: cause, Message: msg,
			FunctionError: runtime.FunctionError{Type: typ, Body: body(typ, msg)}})
	}
	for _, tc := range []struct {
		name, typ string
		err       error
		status    int
	}{
		{"thrown", "TypeError", &runtime.FunctionError{Type: "TypeError", Body: body("TypeError", "x is undefined")}, 502},
		{"init", "Runtime.ImportModuleError", &runtime.InitError{FunctionError: runtime.FunctionError{Type: "Runtime.ImportModuleError", Body: body("Runtime.ImportModuleError", "no module")}}, 502},
		{"timeout", "Sandbox.Timedout", failure(runtime.ErrTimeout, "Sandbox.Timedout", "Task timed out after 3.00 seconds"), 504},
		{"exit", "Runtime.ExitError", failure(fmt.Errorf("%w: exit status 3", runtime.ErrCrashed), "Runtime.ExitError", "Runtime exited with error: exit status 3"), 502},
		{"out of memory", "Runtime.OutOfMemory", failure(runtime.ErrCrashed, "Runtime.OutOfMemory", "function exceeded its memory limit of 128 MB"), 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			apierror.Write(rec, tc.err)
			var got struct{ ErrorType, ErrorMessage string }
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.ErrorType != tc.typ || got.ErrorMessage == "" {
				t.Errorf("body %s, want Lambda's error shape with errorType %s", rec.Body.String(), tc.typ)
			}
			h := rec.Header()
			if rec.Code != tc.status || h.Get("X-Tern-Function-Error") != "Unhandled" || h.Get("X-Tern-Error-Type") != tc.typ || h.Get("Content-Type") != "application/json" {
				t.Errorf("answer %d %v, want %d with the function error headers", rec.Code, h, tc.status)
			}
		})
	}
}

func TestWriteTooLargeNamesTheLimit(t *testing.T) {
	for limit, want := range map[int64]string{6 << 20: "6 MB", 256 << 10: "256 KB", 1000: "1000 bytes"} {
		rec := httptest.NewRecorder()
		apierror.Write(rec, fmt.Errorf("reading: %w", &http.MaxBytesError{Limit: limit}))
		b := decode(t, rec)
		if rec.Code != 413 || b.Error != "the request body is over the "+want+" limit" || b.Code != apierror.CodePayloadTooLarge {
			t.Errorf("limit %d: %d %+v", limit, rec.Code, b)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	apierror.WriteJSON(rec, http.StatusCreated, map[string]int{"n": 1})
	if rec.Code != http.StatusCreated || rec.Body.String() != "{\"n\":1}\n" || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("answer = %d %q %v", rec.Code, rec.Body.String(), rec.Header())
	}
	// A value that cannot be encoded answers 500 with the internal error.
	rec = httptest.NewRecorder()
	apierror.WriteJSON(rec, http.StatusOK, func() {})
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", rec.Code)
	}
	if b := decode(t, rec); b.Code != apierror.CodeInternal || b.Error != "internal error" {
		t.Errorf("body = %+v", b)
	}
}

func TestRoutesAnswerJSON(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("thing")) })
	mux.HandleFunc("DELETE /things/{id}", func(w http.ResponseWriter, r *http.Request) {})
	h := apierror.Routes(mux)
	for _, tc := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/things/1", 200, "", ""},
		{"GET", "/nothing", 404, apierror.CodeNotFound, ""},
		{"GET", "/", 404, apierror.CodeNotFound, ""},
		{"POST", "/things/1", 405, apierror.CodeMethodNotAllowed, "DELETE, GET, HEAD"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status || rec.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want %d %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"), tc.status, tc.allow)
		}
		if tc.code != "" {
			if b := decode(t, rec); b.Code != tc.code || rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("%s %s: %+v", tc.method, tc.path, b)
			}
		}
	}
}
