package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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
	// ID is unique across every version ever recorded, also across a
	// function deleted and created again (whose numbers start over).
	ID           string            `json:"id"`
	Function     string            `json:"function"`
	Number       int               `json:"version"`
	Manifest     manifest.Manifest `json:"manifest"`
	CodeSHA256   string            `json:"codeSha256"`
	CodeSize     int64             `json:"codeSize"`
	ExpandedSize int64             `json:"expandedSize"`
	Created      time.Time         `json:"created"`
}

// newVersionID returns a random 128-bit id in hex.
func newVersionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on Linux
	return hex.EncodeToString(b[:])
}

// Live reports whether v is still a recorded version of a function that
// exists (it was not deleted, nor replaced by a new function of that name).
func (r *Registry) Live(v *Version) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	cur := r.versions[v.Key()]
	return cur != nil && cur.ID == v.ID && r.fns[v.Function] != nil
}

// Routed reports whether an invocation by v's function name or one of its
// aliases can reach v: v is the current version, or an alias (either
// route of a split) names it. Every version stays invocable as name@N;
// this tells which ones something routes to.
func (r *Registry) Routed(v *Version) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	fn, rec := r.fns[v.Function], r.versions[v.Key()]
	if fn == nil || rec == nil || rec.ID != v.ID {
		return false
	}
	if fn.Current == v.Number {
		return true
	}
	for _, a := range r.aliases {
		if a.Function != v.Function {
			continue
		}
		for _, rt := range a.Routes {
			if rt.Version == v.Number {
				return true
			}
		}
	}
	return false
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
	// OnAliasChange, when set, is called (as OnChange) after one of a
	// function's aliases was set or removed, here or on another node, so
	// which versions are Routed may have changed.
	OnAliasChange func(function string)
	// CheckManifest, when set, checks what a manifest refers to outside
	// itself (topics, other functions) before a deploy is recorded.
	CheckManifest func(ctx context.Context, m *manifest.Manifest) error
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
	aliases  map[string]*Alias   // by "<function>@<alias>"
	// revs holds, per KV key, the revision of the newest write this node
	// has applied (its own or from the watch), so that the watch's later
	// echo of an older write (e.g. a deploy's, after a Delete here) is
	// ignored. An entry goes when the watch delivers the key's deletion.
	revs map[string]uint64

	writeMu sync.Mutex // serialises Deploy and Delete on this node

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
		aliases:  make(map[string]*Alias),
		revs:     make(map[string]uint64),
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
	key, rev := e.Key(), e.Revision()
	deleted := e.Operation() != jetstream.KeyValuePut
	var change *Change
	switch {
	case strings.HasPrefix(key, "fn."):
		name := strings.TrimPrefix(key, "fn.")
		if deleted {
			change = r.forget(name, rev)
			break
		}
		var fn Function
		if err := json.Unmarshal(e.Value(), &fn); err != nil {
			r.log.Error("registry: bad function record", "key", key, "err", err)
			return
		}
		change = r.setFunction(&fn, rev)
	case strings.HasPrefix(key, "alias."):
		if fn := r.applyAlias(e); fn != "" {
			r.aliasChanged(fn)
		}
		return
	case strings.HasPrefix(key, "ver."):
		if deleted {
			r.mu.Lock()
			if !r.stale(key, rev) {
				delete(r.versions, strings.Replace(strings.TrimPrefix(key, "ver."), ".", ":", 1))
				delete(r.revs, key) // the watch delivers nothing older now
			}
			r.mu.Unlock()
			return
		}
		var v Version
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			r.log.Error("registry: bad version record", "key", key, "err", err)
			return
		}
		change = r.setVersion(&v, rev)
	}
	if change != nil && r.cfg.OnChange != nil {
		r.cfg.OnChange(*change)
	}
}

// stale reports whether revision rev of key is no newer than what was
// applied already, and otherwise records it. r.mu must be held.
func (r *Registry) stale(key string, rev uint64) bool {
	if rev <= r.revs[key] {
		return true
	}
	r.revs[key] = rev
	return false
}

// setFunction stores fn, written at revision rev, and returns a change when
// its current version moved to one that is known.
func (r *Registry) setFunction(fn *Function, rev uint64) *Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stale("fn."+fn.Name, rev) {
		return nil // an older echo of a write applied already
	}
	old := r.fns[fn.Name]
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
func (r *Registry) setVersion(v *Version, rev uint64) *Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stale(versionKey(v.Function, v.Number), rev) {
		return nil
	}
	_, had := r.versions[v.Key()]
	r.versions[v.Key()] = v
	if fn := r.fns[v.Function]; !had && fn != nil && fn.Current == v.Number {
		return &Change{Name: v.Function, Current: v}
	}
	return nil
}

// forget removes a function and its versions from memory. rev is the
// revision of the watch's deletion entry, or 0 for this node's own Delete.
func (r *Registry) forget(name string, rev uint64) *Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rev > 0 {
		if r.stale("fn."+name, rev) {
			return nil // the function was deployed again since
		}
		delete(r.revs, "fn."+name) // the watch delivers nothing older now
	}
	if _, ok := r.fns[name]; !ok {
		return nil
	}
	delete(r.fns, name)
	for k, v := range r.versions {
		if v.Function == name {
			delete(r.versions, k)
		}
	}
	for k, a := range r.aliases {
		if a.Function == name {
			delete(r.aliases, k)
		}
	}
	return &Change{Name: name}
}

// Resolve returns the version an invocation of name runs: the current
// version, or for "name@qualifier" that version number or alias (an alias
// with two weighted versions picks one by weight). It is the invocation
// path's lookup: memory only.
func (r *Registry) Resolve(name string) (*Version, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if fn, q, ok := strings.Cut(name, "@"); ok {
		return r.resolveQualified(fn, q)
	}
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
	if err := m.CheckEntryPoint(info.Files); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if r.cfg.CheckManifest != nil {
		if err := r.cfg.CheckManifest(ctx, m); err != nil {
			return nil, err
		}
	}
	// Serialise with Delete on this node, so that a delete cannot remove
	// code this deploy found stored and is about to record.
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	if err := r.putCode(ctx, info.SHA256, io.NewSectionReader(pkg, 0, size)); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		v, err := r.record(ctx, m, info)
		if err == nil {
			r.log.Info("registry: deployed", "function", v.Function, "version", v.Number, "sha256", v.CodeSHA256[:12])
			r.preExtract(pkg, size, info.SHA256)
			return v, nil
		}
		if !errors.Is(err, errConflict) || attempt >= 10 {
			return nil, err
		}
	}
}

var errConflict = errors.New("concurrent change")

// preExtract puts freshly deployed code in this node's cache from the
// upload itself, so the first invocation does not wait for it. A failure
// only means the first cold start extracts it instead.
func (r *Registry) preExtract(pkg io.ReaderAt, size int64, sha string) {
	dir := filepath.Join(r.cfg.CacheDir, sha)
	if _, err := os.Stat(dir); err == nil {
		return
	}
	if err := archive.Extract(pkg, size, dir, r.cfg.Limits); err != nil && !errors.Is(err, os.ErrExist) {
		r.log.Warn("registry: extracting deployed code", "sha256", sha[:12], "err", err)
	}
}

// record writes ver.<name>.<n+1>, then moves fn.<name> to it with a
// revision check; a concurrent deploy makes one of them retry.
//
// When ver.<name>.<n+1> exists already, another deploy wrote it and has not
// moved fn.<name> yet, or never will (it failed in between). record moves
// fn.<name> to that version on its behalf before retrying, so that a deploy
// never spins on another's unfinished write, and a failed one cannot block
// the function for good. The deploy that wrote it sees fn.<name> at or past
// its version and succeeds.
func (r *Registry) record(ctx context.Context, m *manifest.Manifest, info *archive.Info) (*Version, error) {
	now := time.Now().UTC()
	fn, rev, err := r.readFunction(ctx, m.Name, now)
	if err != nil {
		return nil, err
	}
	v := &Version{
		ID:           newVersionID(),
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
	vrev, err := r.kv.Create(ctx, versionKey(v.Function, v.Number), vb)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			fn.Latest, fn.Current, fn.Updated = v.Number, v.Number, now
			if _, err := r.writeFunction(ctx, &fn, rev); err != nil && !errors.Is(err, errConflict) {
				return nil, err
			}
			return nil, errConflict
		}
		return nil, fmt.Errorf("registry: write version: %w", err)
	}
	fn.Latest, fn.Current, fn.Updated = v.Number, v.Number, now
	frev, err := r.writeFunction(ctx, &fn, rev)
	if errors.Is(err, errConflict) {
		// Another deploy may have moved fn.<name> to this version for us.
		cur, crev, rerr := r.readFunction(ctx, m.Name, now)
		if rerr != nil {
			return nil, rerr
		}
		if crev == 0 || cur.Latest < v.Number {
			// The version record is orphaned; the next attempt moves
			// fn.<name> to it and takes the following number.
			return nil, errConflict
		}
		fn, frev, err = cur, crev, nil
	}
	if err != nil {
		return nil, err
	}
	// Apply at once so this node reads its own write; the watch echo is a no-op.
	change := r.setVersion(v, vrev)
	if c := r.setFunction(&fn, frev); c != nil {
		change = c
	}
	if change != nil && r.cfg.OnChange != nil {
		r.cfg.OnChange(*change)
	}
	return v, nil
}

// readFunction returns the record of fn.<name> and its revision; a new
// record created now and revision 0 when there is none.
func (r *Registry) readFunction(ctx context.Context, name string, now time.Time) (Function, uint64, error) {
	fn := Function{Name: name, Created: now}
	e, err := r.kv.Get(ctx, "fn."+name)
	switch {
	case err == nil:
		if err := json.Unmarshal(e.Value(), &fn); err != nil {
			return fn, 0, fmt.Errorf("registry: function record %s: %w", name, err)
		}
		return fn, e.Revision(), nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return fn, 0, nil
	default:
		return fn, 0, fmt.Errorf("registry: read %s: %w", name, err)
	}
}

// writeFunction writes fn.<name> if its revision is still rev (0: if there
// is none); errConflict when it is not.
func (r *Registry) writeFunction(ctx context.Context, fn *Function, rev uint64) (uint64, error) {
	fb, err := json.Marshal(fn)
	if err != nil {
		return 0, fmt.Errorf("registry: encode function: %w", err)
	}
	var frev uint64
	if rev == 0 {
		frev, err = r.kv.Create(ctx, "fn."+fn.Name, fb)
	} else {
		frev, err = r.kv.Update(ctx, "fn."+fn.Name, fb, rev)
	}
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
			return 0, errConflict
		}
		return 0, fmt.Errorf("registry: write function: %w", err)
	}
	return frev, nil
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
// other version uses. Once begun it runs to the end whatever happens to the
// caller's request: versions first, then the function record, so that a
// crash part-way leaves a function with fewer versions, never version
// records without a function that a new deploy would trip over.
func (r *Registry) Delete(ctx context.Context, name string) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	_, vs, err := r.Get(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	as, _ := r.Aliases(name)
	for _, a := range as {
		if err := r.kv.Purge(ctx, aliasKey(name, a.Name)); err != nil {
			return fmt.Errorf("registry: delete %s alias %s: %w", name, a.Name, err)
		}
	}
	for _, v := range vs {
		if err := r.kv.Purge(ctx, versionKey(name, v.Number)); err != nil {
			return fmt.Errorf("registry: delete %s version %d: %w", name, v.Number, err)
		}
	}
	if err := r.kv.Purge(ctx, "fn."+name); err != nil {
		return fmt.Errorf("registry: delete %s: %w", name, err)
	}
	change := r.forget(name, 0)
	if change != nil && r.cfg.OnChange != nil {
		r.cfg.OnChange(*change)
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
