package runtime

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
)

const apiPrefix = "/2018-06-01/runtime"

func (i *Instance) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+apiPrefix+"/invocation/next", i.handleNext)
	mux.HandleFunc("POST "+apiPrefix+"/invocation/{id}/response", i.handleResponse)
	mux.HandleFunc("POST "+apiPrefix+"/invocation/{id}/error", i.handleError)
	mux.HandleFunc("POST "+apiPrefix+"/init/error", i.handleInitError)
	return mux
}

// apiError answers as the Runtime API does: {"errorMessage", "errorType"}.
func apiError(w http.ResponseWriter, status int, errType, msg string) {
	b, _ := json.Marshal(struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}{msg, errType})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

var accepted = []byte(`{"status":"OK"}`)

func ok(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(accepted)
}

func (i *Instance) handleNext(w http.ResponseWriter, r *http.Request) {
	i.readyOne.Do(func() { close(i.ready) })
	select {
	case c := <-i.next:
		if r.Context().Err() != nil {
			// The runtime went away while we handed the event over.
			if c.answered.CompareAndSwap(false, true) {
				c.result <- nil
			}
			return
		}
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Lambda-Runtime-Aws-Request-Id"] = []string{c.inv.RequestID}
		h["Lambda-Runtime-Deadline-Ms"] = []string{strconv.FormatInt(c.inv.Deadline.UnixMilli(), 10)}
		h["Lambda-Runtime-Invoked-Function-Arn"] = []string{i.arn}
		if c.inv.TraceID != "" {
			h["Lambda-Runtime-Trace-Id"] = []string{c.inv.TraceID}
		}
		if c.inv.ClientContext != "" {
			h["Lambda-Runtime-Client-Context"] = []string{c.inv.ClientContext}
		}
		if c.inv.CognitoIdentity != "" {
			h["Lambda-Runtime-Cognito-Identity"] = []string{c.inv.CognitoIdentity}
		}
		h["Content-Length"] = []string{strconv.Itoa(len(c.inv.Payload))}
		_, _ = w.Write(c.inv.Payload)
	case <-r.Context().Done():
	case <-i.stopped:
		apiError(w, http.StatusInternalServerError, "Runtime.Stopped", "instance is stopping")
	}
}

// current returns the in-flight call the request names, answering 400 when
// there is none.
func (i *Instance) current(w http.ResponseWriter, r *http.Request) *call {
	id := r.PathValue("id")
	c := i.call(id)
	if c == nil {
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "no invocation in progress with request id "+strconv.Quote(id))
		return nil
	}
	return c
}

func (i *Instance) handleResponse(w http.ResponseWriter, r *http.Request) {
	c := i.current(w, r)
	if c == nil {
		return
	}
	body, err := readBody(w, r, i.l.cfg.MaxResponseBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			msg := "response payload exceeds the maximum of " + strconv.FormatInt(i.l.cfg.MaxResponseBytes, 10) + " bytes"
			i.answer(c, &Result{Error: &FunctionError{Type: "Function.ResponseSizeTooLarge", Body: errorBody("Function.ResponseSizeTooLarge", msg)}})
			apiError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", msg)
			return
		}
		apiError(w, http.StatusBadRequest, "InvalidRequest", "reading response body: "+err.Error())
		return
	}
	if !i.answer(c, &Result{Payload: body}) {
		apiError(w, http.StatusBadRequest, "InvalidStateTransition", "invocation already answered")
		return
	}
	ok(w)
}

func (i *Instance) handleError(w http.ResponseWriter, r *http.Request) {
	c := i.current(w, r)
	if c == nil {
		return
	}
	body, err := readBody(w, r, i.l.cfg.MaxResponseBytes)
	if err != nil {
		apiError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "error body too large")
		return
	}
	fe := normalizeError(body, r.Header.Get("Lambda-Runtime-Function-Error-Type"))
	if !i.answer(c, &Result{Error: fe}) {
		apiError(w, http.StatusBadRequest, "InvalidStateTransition", "invocation already answered")
		return
	}
	ok(w)
}

func (i *Instance) handleInitError(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, 1<<20)
	if err != nil {
		apiError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "error body too large")
		return
	}
	select {
	case <-i.ready:
		apiError(w, http.StatusForbidden, "InvalidStateTransition", "init error after the runtime became ready")
		return
	default:
	}
	select {
	case i.initErr <- normalizeError(body, r.Header.Get("Lambda-Runtime-Function-Error-Type")):
	default: // reported once already
	}
	ok(w)
}

// answer delivers a result for c once; later answers are refused.
func (i *Instance) answer(c *call, res *Result) bool {
	if !c.answered.CompareAndSwap(false, true) {
		return false
	}
	c.result <- res
	return true
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength >= 0 {
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(body)
}
