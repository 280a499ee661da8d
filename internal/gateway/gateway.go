package gateway

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/auth"
	"github.com/ternhq/tern/internal/dispatch"
	"github.com/ternhq/tern/internal/manifest"
	"github.com/ternhq/tern/internal/metering"
	"github.com/ternhq/tern/internal/ratelimit"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/runtime"
)

// Functions resolves a function name to its current version.
type Functions interface {
	Resolve(name string) (*registry.Version, error)
}

// Invoker runs an invocation, or leases an instance for the gateway to
// proxy to (runtime http).
type Invoker interface {
	InvokeRequest(ctx context.Context, v *registry.Version, req *dispatch.Request) (*dispatch.Outcome, error)
	Lease(ctx context.Context, v *registry.Version, requestID string) (*dispatch.Lease, error)
}

// proxier is an instance that serves HTTP itself.
type proxier interface {
	Proxy(w http.ResponseWriter, r *http.Request, rid, prefix, path string, deadline time.Time, cold bool) error
}

var (
	_ Functions = (*registry.Registry)(nil)
	_ Invoker   = (*dispatch.Dispatcher)(nil)
)

// Authenticator finds who sent a request (for private functions) and
// holds keys to their rate limit.
type Authenticator interface {
	Authenticate(r *http.Request) (auth.Principal, error)
	Limit(w http.ResponseWriter, p auth.Principal) error
}

var _ Authenticator = (*auth.Authenticator)(nil)

// Gateway is the HTTP trigger handler.
type Gateway struct {
	fns          Functions
	inv          Invoker
	authn        Authenticator // nil: private functions refuse everyone
	limits       *ratelimit.Limits
	maxBodyBytes int64
	log          *slog.Logger
}

// WithLimits holds functions to their rateLimit with limits.
func (g *Gateway) WithLimits(l *ratelimit.Limits) *Gateway {
	g.limits = l
	return g
}

// WithAuthenticator sets who checks the callers of private functions.
func (g *Gateway) WithAuthenticator(a Authenticator) *Gateway {
	g.authn = a
	return g
}

// authorize lets a request through to a private function (auth: key)
// only with a key that may invoke it; the credential is not passed on to
// the function.
func (g *Gateway) authorize(w http.ResponseWriter, r *http.Request, v *registry.Version) error {
	if v.Manifest.Auth != manifest.AuthKey {
		return nil
	}
	if g.authn == nil {
		return apierror.New(http.StatusUnauthorized, apierror.CodeUnauthorized, "this function needs a key")
	}
	p, err := g.authn.Authenticate(r)
	if err != nil {
		auth.Challenge(w, err)
		return err
	}
	if !p.Allows(auth.PermInvoke, v.Function) {
		return auth.Forbidden(p, auth.PermInvoke, v.Function)
	}
	if err := g.authn.Limit(w, p); err != nil {
		return err
	}
	r.Header.Del("Authorization")
	r.Header.Del("X-Tern-Key")
	return nil
}

// New returns a Gateway; maxBodyBytes caps request bodies (Lambda: 6 MB).
func New(fns Functions, inv Invoker, maxBodyBytes int64, log *slog.Logger) *Gateway {
	return &Gateway{fns: fns, inv: inv, maxBodyBytes: maxBodyBytes, log: log}
}

// Register adds the trigger routes to mux.
func (g *Gateway) Register(mux *http.ServeMux) {
	mux.HandleFunc("/fn/{name}", g.serve)
	mux.HandleFunc("/fn/{name}/{path...}", g.serve)
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	rid := runtime.NewRequestID()
	w.Header().Set("X-Tern-Request-Id", rid)
	if err := g.handle(w, r, rid); err != nil {
		status, _ := apierror.Classify(err)
		if status >= 500 && !errors.Is(err, context.Canceled) {
			g.log.Warn("gateway: invocation failed", "path", r.URL.Path, "request_id", rid, "err", err)
		}
		apierror.Write(w, err)
	}
}

func (g *Gateway) handle(w http.ResponseWriter, r *http.Request, rid string) error {
	v, err := g.fns.Resolve(r.PathValue("name"))
	if err != nil {
		return err
	}
	if err := g.authorize(w, r, v); err != nil {
		return err
	}
	if err := LimitFunction(w, g.limits, v); err != nil {
		return err
	}
	if v.Manifest.Runtime == "http" {
		return g.proxy(w, r, v, rid)
	}
	body, err := readBody(w, r, g.maxBodyBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "reading the request body: "+err.Error())
	}
	path := "/" + r.PathValue("path")
	ev := NewHTTPEvent(r, path, body, rid, time.Now())
	ev.RequestContext.APIID = v.Function
	// rawPath is the path as sent, still percent-encoded; http.path is
	// decoded.
	ev.RawPath = rawPath(r.URL.EscapedPath())
	payload, err := ev.AppendJSON(make([]byte, 0, 512+len(body)+len(body)/3))
	if err != nil {
		return err
	}
	out, err := g.inv.InvokeRequest(r.Context(), v, &dispatch.Request{RequestID: rid, Payload: payload, TraceID: TraceHeader(r), Trigger: metering.TriggerHTTP})
	if err != nil {
		return g.failed(w, r, v, err)
	}
	if fe := out.Result.Error; fe != nil {
		return g.failed(w, r, v, fe)
	}
	if err := WriteResult(w, out.Result.Payload); err != nil {
		if errors.Is(err, ErrInvalidResult) {
			g.log.Warn("gateway: invalid function result", "function", v.Function, "request_id", rid, "err", err)
			return apierror.New(http.StatusBadGateway, "invalid_function_result", err.Error())
		}
		// The response was under way: nothing more to say to the client.
		g.log.Debug("gateway: writing response", "request_id", rid, "err", err)
	}
	return nil
}

// LimitFunction takes one invocation from v's function's rate limit
// (rateLimit in tern.yaml; none: always allowed).
func LimitFunction(w http.ResponseWriter, l *ratelimit.Limits, v *registry.Version) error {
	rl := v.Manifest.RateLimit
	if l == nil || rl.RPS == 0 {
		return nil
	}
	if ok, wait := l.Allow("fn:"+v.Function, rl.RPS, cmp.Or(rl.Burst, rl.RPS), time.Now()); !ok {
		return ratelimit.Refuse(w, "function "+v.Function, wait)
	}
	return nil
}

// proxy streams r to an instance of an HTTP app and its answer back.
func (g *Gateway) proxy(w http.ResponseWriter, r *http.Request, v *registry.Version, rid string) error {
	if r.ContentLength > g.maxBodyBytes {
		return &http.MaxBytesError{Limit: g.maxBodyBytes}
	}
	r.Body = http.MaxBytesReader(w, r.Body, g.maxBodyBytes)
	lease, err := g.inv.Lease(r.Context(), v, rid)
	if err != nil {
		return err
	}
	px, ok := lease.Instance.(proxier)
	if !ok {
		lease.Release(nil)
		return apierror.New(http.StatusBadGateway, apierror.CodeFunctionCrashed, "the instance does not serve HTTP")
	}
	deadline := time.Now().Add(v.Manifest.Timeout.D())
	err = px.Proxy(w, r, rid, "/fn/"+r.PathValue("name"), rawPath(r.URL.EscapedPath()), deadline, lease.Cold)
	lease.Release(err)
	if errors.Is(err, runtime.ErrAborted) {
		// The response was under way: all that is left is to cut it.
		panic(http.ErrAbortHandler)
	}
	return g.failed(w, r, v, err)
}

// failed answers an invocation's failure (err, if it is one; other errors
// are returned for serve to answer). As a function URL does, the caller
// gets the status and a bare message, not the function's error message
// and stack trace, which hold its code's paths and secrets it put there:
// those are in its log, in the API's invoke answer, and here only for a
// caller with a key to a function that says errorDetails.
func (g *Gateway) failed(w http.ResponseWriter, r *http.Request, v *registry.Version, err error) error {
	fe, status, ok := apierror.Failed(err)
	switch {
	case !ok:
		return err
	case v.Manifest.Auth == manifest.AuthKey && v.Manifest.ErrorDetails:
		apierror.WriteFunctionError(w, fe, status)
		return nil
	}
	apierror.FunctionErrorHeaders(w, fe)
	msg := "Internal Server Error"
	if status == http.StatusGatewayTimeout {
		msg = "Endpoint request timed out"
	}
	apierror.WriteJSON(w, status, struct {
		Message string `json:"message"`
	}{msg})
	return nil
}

// TraceHeader returns the caller's X-Amzn-Trace-Id when it is in the X-Ray
// form Lambda passes on, or the W3C traceparent in that form, else ""
// (Tern then starts a trace). The function gets it as _X_AMZN_TRACE_ID;
// a traceparent header also reaches it unchanged among the event's headers.
func TraceHeader(r *http.Request) string {
	t := r.Header.Get("X-Amzn-Trace-Id")
	if t == "" {
		return fromTraceparent(r.Header.Get("Traceparent"))
	}
	if !strings.HasPrefix(t, "Root=") || len(t) > 256 {
		return ""
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c < 0x21 || c > 0x7e {
			return ""
		}
	}
	return t
}

// fromTraceparent turns a W3C traceparent ("00-<32 hex trace id>-<16 hex
// parent id>-<2 hex flags>") into Lambda's trace header, which carries the
// same ids: Root=1-<first 8 hex>-<last 24 hex>;Parent=<id>;Sampled=<0|1>.
// Anything else gives "" (a new trace).
func fromTraceparent(tp string) string {
	parts := strings.Split(strings.TrimSpace(tp), "-")
	if len(parts) < 4 || len(parts[0]) != 2 || parts[0] == "ff" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 ||
		(parts[0] == "00" && len(parts) != 4) {
		return ""
	}
	for _, p := range parts[:4] {
		if !isLowerHex(p) {
			return ""
		}
	}
	if strings.Trim(parts[1], "0") == "" || strings.Trim(parts[2], "0") == "" {
		return "" // all-zero ids are invalid
	}
	sampled := "0"
	if flags, _ := strconv.ParseUint(parts[3], 16, 8); flags&1 == 1 {
		sampled = "1"
	}
	return "Root=1-" + parts[1][:8] + "-" + parts[1][8:] + ";Parent=" + parts[2] + ";Sampled=" + sampled
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// rawPath strips "/fn/<name>[@<qualifier>]" from an escaped request path.
func rawPath(escaped string) string {
	rest := strings.TrimPrefix(escaped, "/fn/")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[i:]
	}
	return "/"
}

// readBody reads the whole request body, refusing more than limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength > 0 {
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(body)
}
