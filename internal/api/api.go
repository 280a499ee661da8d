package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/dispatch"
	"github.com/ternhq/tern/internal/gateway"
	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/metering"
	"github.com/ternhq/tern/internal/ratelimit"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/runtime"
)

// Registry is what the API needs of the function registry.
type Registry interface {
	Resolve(name string) (*registry.Version, error)
	Get(name string) (*registry.Function, []*registry.Version, error)
	List() []*registry.Version
	Deploy(ctx context.Context, pkg io.ReaderAt, size int64) (*registry.Version, error)
	Delete(ctx context.Context, name string) error
	SetAlias(ctx context.Context, fn, alias string, routes []registry.Route) (*registry.Alias, error)
	Aliases(fn string) ([]*registry.Alias, error)
	DeleteAlias(ctx context.Context, fn, alias string) error
	Rollback(ctx context.Context, fn string) (*registry.Version, error)
}

// Dispatcher is what the API needs of the dispatcher.
type Dispatcher interface {
	InvokeRequest(ctx context.Context, v *registry.Version, req *dispatch.Request) (*dispatch.Outcome, error)
	Stop(name string)
	Stats() []dispatch.Stats
	Counts(name string) dispatch.Counts
	Usage() dispatch.Usage
}

var (
	_ Registry   = (*registry.Registry)(nil)
	_ Dispatcher = (*dispatch.Dispatcher)(nil)
)

// Config for the API.
type Config struct {
	// TempDir receives uploads while they are validated.
	TempDir string
	// MaxPackageBytes caps an upload.
	MaxPackageBytes int64
	// MaxPayloadBytes caps a direct invocation's event.
	MaxPayloadBytes int64
	// Streams, when done, ends every streaming answer (log follows); the
	// server cancels it when shutdown starts.
	Streams context.Context
	// Prices turn usage into cost.
	Prices metering.Prices
}

// API is the /v1/ handler.
type API struct {
	cfg     Config
	deps    Deps
	reg     Registry
	disp    Dispatcher
	events  Events
	secrets Secrets
	js      jetstream.JetStream
	log     *slog.Logger
}

// Deps are the parts the API calls.
type Deps struct {
	Registry   Registry
	Dispatcher Dispatcher
	Events     Events
	// Usage is nil when metering is off.
	Usage Usage
	JS    jetstream.JetStream
	// Limits holds functions to their rate limit (nil: none).
	Limits *ratelimit.Limits
	// Secrets is nil when the server keeps none.
	Secrets Secrets
	// Access checks every route's permission and records every change in
	// the audit stream; nil checks nothing (tests that call Handler
	// without authentication in front).
	Access *Access
}

// New returns the API.
func New(cfg Config, deps Deps, log *slog.Logger) *API {
	return &API{cfg: cfg, deps: deps, reg: deps.Registry, disp: deps.Dispatcher, events: deps.Events, secrets: deps.Secrets, js: deps.JS, log: log}
}

type handler func(w http.ResponseWriter, r *http.Request) error

// Handler returns the routes; the caller puts authentication in front.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, h handler) {
		h = a.deps.Access.guard(pattern, h)
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				// A function's failure is in its log, not the server's.
				if _, _, failed := apierror.Failed(err); failed {
					apierror.Write(w, err)
					return
				}
				if status, _ := apierror.Classify(err); status >= 500 {
					a.log.Error("api: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
				}
				apierror.Write(w, err)
			}
		})
	}
	route("POST /v1/functions", a.deploy)
	route("GET /v1/functions", a.list)
	route("GET /v1/functions/{name}", a.get)
	route("DELETE /v1/functions/{name}", a.remove)
	route("POST /v1/functions/{name}/invoke", a.invoke)
	route("GET /v1/functions/{name}/logs", a.logs)
	route("GET /v1/functions/{name}/stats", a.stats)
	route("GET /v1/functions/{name}/aliases", a.listAliases)
	route("PUT /v1/functions/{name}/aliases/{alias}", a.setAlias)
	route("DELETE /v1/functions/{name}/aliases/{alias}", a.deleteAlias)
	route("POST /v1/functions/{name}/rollback", a.rollback)
	route("GET /v1/instances", a.instances)
	a.eventRoutes(route)
	a.secretRoutes(route)
	route("GET /v1/usage", a.usage)
	a.deps.Access.routes(route)
	// Unknown routes (404) and methods (405) are answered as JSON too.
	return apierror.Routes(mux)
}

// FunctionView is how a function's current version is shown.
type FunctionView struct {
	Name       string    `json:"name"`
	Version    int       `json:"version"`
	Runtime    string    `json:"runtime"`
	Handler    string    `json:"handler"`
	Memory     int       `json:"memory"`
	Timeout    string    `json:"timeout"`
	CodeSHA256 string    `json:"codeSha256"`
	CodeSize   int64     `json:"codeSize"`
	Created    time.Time `json:"created"`
}

func view(v *registry.Version) FunctionView {
	return FunctionView{
		Name: v.Function, Version: v.Number, Runtime: v.Manifest.Runtime, Handler: v.Manifest.Handler,
		Memory: v.Manifest.Memory, Timeout: v.Manifest.Timeout.String(), CodeSHA256: v.CodeSHA256,
		CodeSize: v.CodeSize, Created: v.Created,
	}
}

func (a *API) deploy(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength > a.cfg.MaxPackageBytes {
		return apierror.New(http.StatusBadRequest, apierror.CodePackageTooLarge,
			fmt.Sprintf("package is %d bytes; the limit is %d", r.ContentLength, a.cfg.MaxPackageBytes))
	}
	// Spool to disk: a package can be tens of megabytes.
	f, err := os.CreateTemp(a.cfg.TempDir, "upload-*.zip")
	if err != nil {
		return fmt.Errorf("api: spool upload: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(r.Body, a.cfg.MaxPackageBytes+1))
	if err != nil {
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "reading upload: "+err.Error())
	}
	if n > a.cfg.MaxPackageBytes {
		return apierror.New(http.StatusBadRequest, apierror.CodePackageTooLarge,
			fmt.Sprintf("package is larger than the limit of %d bytes", a.cfg.MaxPackageBytes))
	}
	if n == 0 {
		return apierror.New(http.StatusBadRequest, apierror.CodeInvalidPackage, "empty upload: send the zip package as the request body")
	}
	v, err := a.reg.Deploy(r.Context(), f, n)
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusCreated, view(v))
	return nil
}

func (a *API) list(w http.ResponseWriter, r *http.Request) error {
	vs := a.reg.List()
	out := make([]FunctionView, 0, len(vs))
	for _, v := range vs {
		out = append(out, view(v))
	}
	apierror.WriteJSON(w, http.StatusOK, struct {
		Functions []FunctionView `json:"functions"`
	}{out})
	return nil
}

// VersionView is one version in a function's history.
type VersionView struct {
	Version    int       `json:"version"`
	CodeSHA256 string    `json:"codeSha256"`
	CodeSize   int64     `json:"codeSize"`
	Created    time.Time `json:"created"`
}

func (a *API) get(w http.ResponseWriter, r *http.Request) error {
	fn, vs, err := a.reg.Get(r.PathValue("name"))
	if err != nil {
		return err
	}
	var cur *registry.Version
	hist := make([]VersionView, 0, len(vs))
	for _, v := range vs {
		if v.Number == fn.Current {
			cur = v
		}
		hist = append(hist, VersionView{Version: v.Number, CodeSHA256: v.CodeSHA256, CodeSize: v.CodeSize, Created: v.Created})
	}
	if cur == nil {
		return fmt.Errorf("%w: %s (current version not loaded)", registry.ErrNotFound, fn.Name)
	}
	var instances []dispatch.Stats
	for _, s := range a.disp.Stats() {
		if s.Function == fn.Name {
			instances = append(instances, s)
		}
	}
	apierror.WriteJSON(w, http.StatusOK, struct {
		FunctionView
		Manifest  any              `json:"manifest"`
		Updated   time.Time        `json:"updated"`
		Versions  []VersionView    `json:"versions"`
		Instances []dispatch.Stats `json:"instances"`
	}{view(cur), cur.Manifest, fn.Updated, hist, instances})
	return nil
}

func (a *API) remove(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := a.forgetSecrets(r.Context(), name); err != nil {
		return err
	}
	if err := a.reg.Delete(r.Context(), name); err != nil {
		return err
	}
	a.disp.Stop(name) // also told through the registry; this makes it synchronous
	apierror.WriteJSON(w, http.StatusOK, struct {
		Deleted string `json:"deleted"`
	}{name})
	return nil
}

func (a *API) invoke(w http.ResponseWriter, r *http.Request) error {
	v, err := a.reg.Resolve(r.PathValue("name"))
	if err != nil {
		return err
	}
	async, err := isAsync(r)
	if err != nil {
		return err
	}
	if err := gateway.LimitFunction(w, a.deps.Limits, v); err != nil {
		return err
	}
	limit := a.cfg.MaxPayloadBytes
	if async {
		limit = a.events.MaxEventBytes()
	}
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "reading event: "+err.Error())
	}
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	if !json.Valid(payload) {
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "the event is not valid JSON")
	}
	if async {
		return a.invokeAsync(w, r, r.PathValue("name"), payload)
	}
	req := &dispatch.Request{RequestID: runtime.NewRequestID(), Payload: payload, TraceID: gateway.TraceHeader(r), Trigger: metering.TriggerAPI}
	// Lambda's Invoke API passes a client context as base64 JSON.
	if cc := r.Header.Get("X-Amz-Client-Context"); cc != "" {
		b, err := base64.StdEncoding.DecodeString(cc)
		if err != nil || !json.Valid(b) || len(b) > 3583 {
			return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "X-Amz-Client-Context: want base64-encoded JSON of at most 3583 bytes")
		}
		req.ClientContext = string(b)
	}
	w.Header().Set("X-Tern-Request-Id", req.RequestID)
	out, err := a.disp.InvokeRequest(r.Context(), v, req)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("X-Tern-Version", fmt.Sprint(v.Number))
	if out.Cold {
		h.Set("X-Tern-Cold-Start", "true")
	}
	if fe := out.Result.Error; fe != nil {
		return fe
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out.Result.Payload)
	return nil
}

func (a *API) logs(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if _, _, err := a.reg.Get(name); err != nil {
		return err
	}
	q := logs.Query{Function: name, RequestID: r.URL.Query().Get("request"), Grep: r.URL.Query().Get("grep")}
	switch f := r.URL.Query().Get("follow"); f {
	case "", "0", "false":
	case "1", "true":
		q.Follow = true
	default:
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "follow: want true or false, got "+f)
	}
	if s := r.URL.Query().Get("since"); s != "" {
		t, err := parseSince(s, time.Now())
		if err != nil {
			return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "since: "+err.Error())
		}
		q.Since = t
	}
	if s := r.URL.Query().Get("until"); s != "" {
		t, err := parseSince(s, time.Now())
		if err != nil {
			return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "until: "+err.Error())
		}
		if q.Follow {
			return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "until: not with follow")
		}
		q.Until = t
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	ctx := r.Context()
	if a.cfg.Streams != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(a.cfg.Streams, cancel)
		defer stop()
	}
	enc := jsonLines{w: w}
	err := logs.Read(ctx, a.js, q, func(e *logs.Entry) error {
		if err := enc.write(e); err != nil {
			return err
		}
		if q.Follow && fl != nil {
			fl.Flush()
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		a.log.Warn("api: reading logs", "function", name, "err", err)
	}
	return nil // the status is sent already
}

// StatsView is what `tern stats` shows: counts since the server started and
// the instances now.
type StatsView struct {
	Function  string           `json:"function"`
	Counts    dispatch.Counts  `json:"counts"`
	Instances []dispatch.Stats `json:"instances"`
}

func (a *API) stats(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if _, _, err := a.reg.Get(name); err != nil {
		return err
	}
	out := StatsView{Function: name, Counts: a.disp.Counts(name), Instances: []dispatch.Stats{}}
	for _, s := range a.disp.Stats() {
		if s.Function == name {
			out.Instances = append(out.Instances, s)
		}
	}
	apierror.WriteJSON(w, http.StatusOK, out)
	return nil
}

// AliasRequest sets an alias: one version, or routes with weights.
type AliasRequest struct {
	Version int              `json:"version,omitempty"`
	Routes  []registry.Route `json:"routes,omitempty"`
}

func (a *API) setAlias(w http.ResponseWriter, r *http.Request) error {
	var req AliasRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "alias: want {\"version\": N} or {\"routes\": [{\"version\": N, \"weight\": P}, ...]}: "+err.Error())
	}
	routes := req.Routes
	switch {
	case req.Version != 0 && len(routes) > 0:
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "alias: give version or routes, not both")
	case req.Version != 0:
		routes = []registry.Route{{Version: req.Version, Weight: 100}}
	}
	al, err := a.reg.SetAlias(r.Context(), r.PathValue("name"), r.PathValue("alias"), routes)
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusOK, al)
	return nil
}

func (a *API) listAliases(w http.ResponseWriter, r *http.Request) error {
	as, err := a.reg.Aliases(r.PathValue("name"))
	if err != nil {
		return err
	}
	if as == nil {
		as = []*registry.Alias{}
	}
	apierror.WriteJSON(w, http.StatusOK, struct {
		Aliases []*registry.Alias `json:"aliases"`
	}{as})
	return nil
}

func (a *API) deleteAlias(w http.ResponseWriter, r *http.Request) error {
	if err := a.reg.DeleteAlias(r.Context(), r.PathValue("name"), r.PathValue("alias")); err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusOK, struct {
		Deleted string `json:"deleted"`
	}{r.PathValue("alias")})
	return nil
}

func (a *API) rollback(w http.ResponseWriter, r *http.Request) error {
	v, err := a.reg.Rollback(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusOK, view(v))
	return nil
}

func (a *API) instances(w http.ResponseWriter, r *http.Request) error {
	apierror.WriteJSON(w, http.StatusOK, struct {
		Node  dispatch.Usage   `json:"node"`
		Pools []dispatch.Stats `json:"pools"`
	}{a.disp.Usage(), a.disp.Stats()})
	return nil
}
