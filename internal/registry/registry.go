package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/archive"
	"github.com/ternhq/tern/internal/manifest"
)

// Errors callers branch on.
var (
	ErrNotFound = errors.New("function not found")
	// ErrInvalid wraps manifest and package validation failures.
	ErrInvalid = errors.New("invalid function")
)

// Function is the mutable record of a function: which version is current.
type Function struct {
	Name    string    `json:"name"`
	Current int       `json:"current"`
	Latest  int       `json:"latest"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// Version is one immutable deployed version of a function.
type Version struct {
	Function     string            `json:"function"`
	Number       int               `json:"version"`
	Manifest     manifest.Manifest `json:"manifest"`
	CodeSHA256   string            `json:"codeSha256"`
	CodeSize     int64             `json:"codeSize"`
	ExpandedSize int64             `json:"expandedSize"`
	Created      time.Time         `json:"created"`
}

// Key identifies the version, e.g. "hello:3".
func (v *Version) Key() string { return v.Function + ":" + strconv.Itoa(v.Number) }

// Change tells a listener that a function's current version changed;
// Current is nil when the function was deleted.
type Change struct {
	Name    string
	Current *Version
}

// Config for a Registry.
type Config struct {
	// CacheDir is where extracted code lives, one folder per sha256.
	CacheDir string
	// Limits apply to uploaded packages and to extraction.
	Limits archive.Limits
	// OnChange, when set, is called (from the registry's goroutines, never
	// under its lock) after a function's current version changes.
	OnChange func(Change)
}

// Registry is the in-memory view of all functions backed by the store.
type Registry struct {
	cfg  Config
	kv   jetstream.KeyValue
	code jetstream.ObjectStore
	log  *slog.Logger

	mu       sync.RWMutex
	fns      map[string]*Function
	versions map[string]*Version // by Version.Key()

	extractMu sync.Mutex
	extracts  map[string]*extraction

	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a registry over the given bucket and object store.
func New(cfg Config, kv jetstream.KeyValue, code jetstream.ObjectStore, log *slog.Logger) *Registry {
	return &Registry{
		cfg:      cfg,
		kv:       kv,
		code:     code,
		log:      log,
		fns:      make(map[string]*Function),
		versions: make(map[string]*Version),
		extracts: make(map[string]*extraction),
	}
}

// Start loads every record and keeps following changes until Close.
func (r *Registry) Start(ctx context.Context) error {
	if err := os.MkdirAll(r.cfg.CacheDir, 0o755); err != nil {
		return fmt.Errorf("registry: code cache: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	w, err := r.kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return fmt.Errorf("registry: watch: %w", err)
	}
	// The initial values end with a nil entry.
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				cancel()
				return errors.New("registry: watch closed while loading")
			}
			if e == nil {
				r.cancel = cancel
				r.done = make(chan struct{})
				go r.follow(w)
				r.mu.RLock()
				n := len(r.fns)
				r.mu.RUnlock()
				r.log.Info("registry: loaded", "functions", n)
				return nil
			}
			r.apply(e)
		case <-ctx.Done():
			cancel()
			return fmt.Errorf("registry: loading: %w", ctx.Err())
		}
	}
}

func (r *Registry) follow(w jetstream.KeyWatcher) {
	defer close(r.done)
	defer w.Stop()
	for e := range w.Updates() {
		if e != nil {
			r.apply(e)
		}
	}
}

// Close stops following changes.
func (r *Registry) Close() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

// apply folds one KV entry into memory and reports a current-version change.
func (r *Registry) apply(e jetstream.KeyValueEntry) {
	key := e.Key()
	deleted := e.Operation() != jetstream.KeyValuePut
	var change *Change
	switch {
	case strings.HasPrefix(key, "fn."):
		name := strings.TrimPrefix(key, "fn.")
		if deleted {
			change = r.forget(name)
			break
		}
		var fn Function
		if err := json.Unmarshal(e.Value(), &fn); err != nil {
			r.log.Error("registry: bad function record", "key", key, "err", err)
			return
		}
		change = r.setFunction(&fn)
	case strings.HasPrefix(key, "ver."):
		if deleted {
			r.mu.Lock()
			delete(r.versions, strings.Replace(strings.TrimPrefix(key, "ver."), ".", ":", 1))
			r.mu.Unlock()
			return
		}
		var v Version
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			r.log.Error("registry: bad version record", "key", key, "err", err)
			return
		}
		change = r.setVersion(&v)
	}
	if change != nil && r.cfg.OnChange != nil {
		r.cfg.OnChange(*change)
	}
}

// setFunction stores fn and returns a change when its current version moved
// to one that is known.
func (r *Registry) setFunction(fn *Function) *Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.fns[fn.Name]
	if old != nil && old.Updated.After(fn.Updated) {
		return nil // an older echo of a write applied already
	}
	r.fns[fn.Name] = fn
	if old != nil && old.Current == fn.Current {
		return nil
	}
	if v := r.versions[fn.Name+":"+strconv.Itoa(fn.Current)]; v != nil {
		return &Change{Name: fn.Name, Current: v}
	}
	return nil
}

// setVersion stores v; a version that arrives after its function record
// named it current completes that change.
func (r *Registry) setVersion(v *Version) *Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, had := r.versions[v.Key()]
	r.versions[v.Key()] = v
	if fn := r.fns[v.Function]; !had && fn != nil && fn.Current == v.Number {
		return &Change{Name: v.Function, Current: v}
	}
	return nil
}

func (r *Registry) forget(name string) *Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.fns[name]; !ok {
		return nil
	}
	delete(r.fns, name)
	for k, v := range r.versions {
		if v.Function == name {
			delete(r.versions, k)
		}
	}
	return &Change{Name: name}
}

// Resolve returns the current version of a function. It is the invocation
// path's lookup: memory only.
func (r *Registry) Resolve(name string) (*Version, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	fn := r.fns[name]
	if fn == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	v := r.versions[name+":"+strconv.Itoa(fn.Current)]
	if v == nil {
		return nil, fmt.Errorf("%w: %s (version %d not loaded)", ErrNotFound, name, fn.Current)
	}
	return v, nil
}

// Get returns a function and all its versions, newest first.
func (r *Registry) Get(name string) (*Function, []*Version, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	fn := r.fns[name]
	if fn == nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	var vs []*Version
	for _, v := range r.versions {
		if v.Function == name {
			vs = append(vs, v)
		}
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Number > vs[j].Number })
	cp := *fn
	return &cp, vs, nil
}

// List returns every function with its current version, sorted by name.
func (r *Registry) List() []*Version {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Version, 0, len(r.fns))
	for name, fn := range r.fns {
		if v := r.versions[name+":"+strconv.Itoa(fn.Current)]; v != nil {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Function < out[j].Function })
	return out
}

// Deploy validates a package, stores its code (once per sha256), records a
// new immutable version and makes it current. Nothing is written unless the
// package and its manifest are valid.
func (r *Registry) Deploy(ctx context.Context, pkg io.ReaderAt, size int64) (*Version, error) {
	info, err := archive.Inspect(pkg, size, r.cfg.Limits)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	m, err := manifest.Parse(info.Manifest)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := r.putCode(ctx, info.SHA256, io.NewSectionReader(pkg, 0, size)); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		v, err := r.record(ctx, m, info)
		if err == nil {
			r.log.Info("registry: deployed", "function", v.Function, "version", v.Number, "sha256", v.CodeSHA256[:12])
			return v, nil
		}
		if !errors.Is(err, errConflict) || attempt >= 10 {
			return nil, err
		}
	}
}

var errConflict = errors.New("concurrent change")

// record writes ver.<name>.<n+1>, then moves fn.<name> to it with a
// revision check; a concurrent deploy makes one of them retry.
func (r *Registry) record(ctx context.Context, m *manifest.Manifest, info *archive.Info) (*Version, error) {
	now := time.Now().UTC()
	fn := Function{Name: m.Name, Created: now}
	var rev uint64
	e, err := r.kv.Get(ctx, "fn."+m.Name)
	switch {
	case err == nil:
		if err := json.Unmarshal(e.Value(), &fn); err != nil {
			return nil, fmt.Errorf("registry: function record %s: %w", m.Name, err)
		}
		rev = e.Revision()
	case errors.Is(err, jetstream.ErrKeyNotFound):
	default:
		return nil, fmt.Errorf("registry: read %s: %w", m.Name, err)
	}
	v := &Version{
		Function:     m.Name,
		Number:       fn.Latest + 1,
		Manifest:     *m,
		CodeSHA256:   info.SHA256,
		CodeSize:     info.Size,
		ExpandedSize: info.ExpandedSize,
		Created:      now,
	}
	vb, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("registry: encode version: %w", err)
	}
	if _, err := r.kv.Create(ctx, versionKey(v.Function, v.Number), vb); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, errConflict
		}
		return nil, fmt.Errorf("registry: write version: %w", err)
	}
	fn.Latest, fn.Current, fn.Updated = v.Number, v.Number, now
	fb, err := json.Marshal(&fn)
	if err != nil {
		return nil, fmt.Errorf("registry: encode function: %w", err)
	}
	if rev == 0 {
		_, err = r.kv.Create(ctx, "fn."+m.Name, fb)
	} else {
		_, err = r.kv.Update(ctx, "fn."+m.Name, fb, rev)
	}
	if err != nil {
		// The version record is orphaned but harmless: it is never current,
		// and the next attempt takes the following number.
		var apiErr *jetstream.APIError
		if errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
			return nil, errConflict
		}
		return nil, fmt.Errorf("registry: write function: %w", err)
	}
	// Apply at once so this node reads its own write; the watch echo is a no-op.
	change := r.setVersion(v)
	if c := r.setFunction(&fn); c != nil {
		change = c
	}
	if change != nil && r.cfg.OnChange != nil {
		r.cfg.OnChange(*change)
	}
	return v, nil
}

func versionKey(name string, n int) string { return "ver." + name + "." + strconv.Itoa(n) }

func (r *Registry) putCode(ctx context.Context, sha string, body io.Reader) error {
	if _, err := r.code.GetInfo(ctx, sha); err == nil {
		return nil // the same code is stored once
	} else if !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("registry: code %s: %w", sha[:12], err)
	}
	if _, err := r.code.Put(ctx, jetstream.ObjectMeta{Name: sha}, body); err != nil {
		return fmt.Errorf("registry: store code %s: %w", sha[:12], err)
	}
	return nil
}

// Delete removes a function and all its versions, and the code packages no
// other version uses.
func (r *Registry) Delete(ctx context.Context, name string) error {
	_, vs, err := r.Get(name)
	if err != nil {
		return err
	}
	if err := r.kv.Purge(ctx, "fn."+name); err != nil {
		return fmt.Errorf("registry: delete %s: %w", name, err)
	}
	change := r.forget(name)
	if change != nil && r.cfg.OnChange != nil {
		r.cfg.OnChange(*change)
	}
	for _, v := range vs {
		if err := r.kv.Purge(ctx, versionKey(name, v.Number)); err != nil {
			r.log.Warn("registry: purge version", "function", name, "version", v.Number, "err", err)
		}
	}
	r.mu.RLock()
	inUse := make(map[string]bool)
	for _, v := range r.versions {
		inUse[v.CodeSHA256] = true
	}
	r.mu.RUnlock()
	for _, v := range vs {
		if inUse[v.CodeSHA256] {
			continue
		}
		inUse[v.CodeSHA256] = true // delete once
		if err := r.code.Delete(ctx, v.CodeSHA256); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			r.log.Warn("registry: delete code", "sha256", v.CodeSHA256, "err", err)
		}
	}
	r.log.Info("registry: deleted", "function", name, "versions", len(vs))
	return nil
}
