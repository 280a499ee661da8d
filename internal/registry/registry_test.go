package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/archive"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/store"
	"github.com/ternhq/tern/internal/testserver"
)

const handlerJS = "exports.handler = async () => 'hi';\n"

// openStore opens the real embedded store in dir and closes it when the
// test ends.
func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Dir: dir, LogsMaxAge: time.Hour, LogsMaxBytes: 64 << 20}, testserver.Logger(t))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// startRegistry starts a registry over st with its own code cache and
// closes it when the test ends.
func startRegistry(t *testing.T, st *store.Store, cfg registry.Config) *registry.Registry {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(t.TempDir(), "code")
	}
	r := registry.New(cfg, st.Functions, st.Code, testserver.Logger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatalf("start registry: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// pkg builds a package of a function named name whose handler file holds
// code.
func pkg(t *testing.T, name, code string) []byte {
	t.Helper()
	dir := testserver.WriteFunction(t, map[string]string{
		"tern.yaml": fmt.Sprintf("name: %s\nruntime: nodejs\nhandler: index.handler\n", name),
		"index.js":  code,
	})
	var buf bytes.Buffer
	if _, err := archive.Build(dir, &buf); err != nil {
		t.Fatalf("build package: %v", err)
	}
	return buf.Bytes()
}

func deploy(t *testing.T, r *registry.Registry, b []byte) *registry.Version {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := r.Deploy(ctx, bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	return v
}

// codeObjects lists the names in the code Object Store.
func codeObjects(t *testing.T, st *store.Store) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	infos, err := st.Code.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("list code objects: %v", err)
	}
	var names []string
	for _, i := range infos {
		names = append(names, i.Name)
	}
	sort.Strings(names)
	return names
}

// kvKeys lists the keys of the functions bucket.
func kvKeys(t *testing.T, st *store.Store) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := st.Functions.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("list keys: %v", err)
	}
	sort.Strings(keys)
	return keys
}

// eventually polls cond until it holds, failing after 10 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testserver.Eventually(t, 10*time.Second, what, cond)
}

func TestDeployResolveGetList(t *testing.T) {
	st := openStore(t, t.TempDir())
	r := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits()})

	if _, err := r.Resolve("hello"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Resolve before deploy: err = %v, want ErrNotFound", err)
	}
	if _, _, err := r.Get("hello"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Get before deploy: err = %v, want ErrNotFound", err)
	}
	if got := r.List(); len(got) != 0 {
		t.Fatalf("List before deploy = %d functions, want 0", len(got))
	}

	b1 := pkg(t, "hello", handlerJS)
	v1 := deploy(t, r, b1)
	if v1.Function != "hello" || v1.Number != 1 {
		t.Fatalf("first deploy = %s, want hello:1", v1.Key())
	}
	if v1.Key() != "hello:1" {
		t.Errorf("Key = %q, want hello:1", v1.Key())
	}
	if v1.Manifest.Name != "hello" || v1.Manifest.Handler != "index.handler" || v1.Manifest.Memory == 0 {
		t.Errorf("manifest = %+v, want name, handler and defaults", v1.Manifest)
	}
	if len(v1.CodeSHA256) != 64 || v1.CodeSize != int64(len(b1)) || v1.ExpandedSize <= 0 {
		t.Errorf("code: sha %q size %d expanded %d", v1.CodeSHA256, v1.CodeSize, v1.ExpandedSize)
	}

	got, err := r.Resolve("hello")
	if err != nil || got.Number != 1 {
		t.Fatalf("Resolve = %v, %v; want version 1", got, err)
	}
	fn, vs, err := r.Get("hello")
	if err != nil {
		t.Fatal(err)
	}
	if fn.Name != "hello" || fn.Current != 1 || fn.Latest != 1 || fn.Created.IsZero() {
		t.Errorf("function = %+v, want current 1, latest 1", fn)
	}
	if len(vs) != 1 || vs[0].Number != 1 {
		t.Errorf("versions = %v, want [1]", numbers(vs))
	}

	v2 := deploy(t, r, pkg(t, "hello", "exports.handler = async () => 'v2';\n"))
	if v2.Number != 2 {
		t.Fatalf("second deploy = version %d, want 2", v2.Number)
	}
	if v2.CodeSHA256 == v1.CodeSHA256 {
		t.Errorf("different code has the same sha256")
	}
	if got, err := r.Resolve("hello"); err != nil || got.Number != 2 {
		t.Fatalf("Resolve after second deploy = %v, %v; want version 2", got, err)
	}
	fn, vs, err = r.Get("hello")
	if err != nil {
		t.Fatal(err)
	}
	if fn.Current != 2 || fn.Latest != 2 {
		t.Errorf("function = %+v, want current 2, latest 2", fn)
	}
	if n := numbers(vs); fmt.Sprint(n) != "[2 1]" {
		t.Errorf("versions = %v, want [2 1] (newest first)", n)
	}
	if !fn.Updated.After(fn.Created) && !fn.Updated.Equal(fn.Created) {
		t.Errorf("updated %v before created %v", fn.Updated, fn.Created)
	}

	deploy(t, r, pkg(t, "another", handlerJS))
	list := r.List()
	if len(list) != 2 || list[0].Key() != "another:1" || list[1].Key() != "hello:2" {
		t.Errorf("List = %v, want [another:1 hello:2]", keys(list))
	}

	// Get returns a copy of the function record.
	fn.Current = 99
	if got, _ := r.Resolve("hello"); got.Number != 2 {
		t.Errorf("changing Get's result changed the registry")
	}

	if want := []string{"fn.another", "fn.hello", "ver.another.1", "ver.hello.1", "ver.hello.2"}; fmt.Sprint(kvKeys(t, st)) != fmt.Sprint(want) {
		t.Errorf("KV keys = %v, want %v", kvKeys(t, st), want)
	}
}

func numbers(vs []*registry.Version) []int {
	var out []int
	for _, v := range vs {
		out = append(out, v.Number)
	}
	return out
}

func keys(vs []*registry.Version) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Key())
	}
	return out
}

// The sha256 names the whole package, tern.yaml included, and tern.yaml
// names the function, so only versions can share code bytes: the same
// package deployed twice is one object; a second function is another.
func TestSameCodeStoredOnce(t *testing.T) {
	st := openStore(t, t.TempDir())
	r := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits()})

	if got := codeObjects(t, st); len(got) != 0 {
		t.Fatalf("code objects before deploy = %v", got)
	}
	b := pkg(t, "one", handlerJS)
	v1 := deploy(t, r, b)
	v2 := deploy(t, r, b)
	if v1.CodeSHA256 != v2.CodeSHA256 || v2.Number != 2 {
		t.Fatalf("redeploy of the same package: %s %s, %s %s", v1.Key(), v1.CodeSHA256, v2.Key(), v2.CodeSHA256)
	}
	if got := codeObjects(t, st); len(got) != 1 || got[0] != v1.CodeSHA256 {
		t.Fatalf("code objects = %v, want [%s]", got, v1.CodeSHA256)
	}
	// A rebuilt package of the same folder is byte-identical (Build is
	// deterministic), so it is stored once too.
	v3 := deploy(t, r, pkg(t, "one", handlerJS))
	if v3.CodeSHA256 != v1.CodeSHA256 {
		t.Errorf("rebuilt package has sha %s, want %s", v3.CodeSHA256, v1.CodeSHA256)
	}
	two := pkg(t, "two", handlerJS)
	deploy(t, r, two)
	deploy(t, r, two)
	if got := codeObjects(t, st); len(got) != 2 {
		t.Fatalf("code objects after deploying two functions = %v, want 2", got)
	}
}

func TestInvalidWritesNothing(t *testing.T) {
	st := openStore(t, t.TempDir())
	r := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits()})

	build := func(files map[string]string) []byte {
		var buf bytes.Buffer
		if _, err := archive.Build(testserver.WriteFunction(t, files), &buf); err != nil {
			t.Fatalf("build: %v", err)
		}
		return buf.Bytes()
	}
	tests := []struct {
		name string
		pkg  []byte
	}{
		{"not a zip", []byte("this is not a zip file at all")},
		{"empty", nil},
		{"no manifest", testserver.Zip(t, [2]string{"index.js", handlerJS})},
		{"bad yaml", build(map[string]string{"tern.yaml": "name: [x\n", "index.js": handlerJS})},
		{"unknown field", build(map[string]string{"tern.yaml": "name: x\nruntime: nodejs\nhandler: index.handler\nbogus: 1\n", "index.js": handlerJS})},
		{"bad name", build(map[string]string{"tern.yaml": "name: ../x\nruntime: nodejs\nhandler: index.handler\n", "index.js": handlerJS})},
		{"bad runtime", build(map[string]string{"tern.yaml": "name: x\nruntime: cobol\nhandler: index.handler\n", "index.js": handlerJS})},
		{"memory too small", build(map[string]string{"tern.yaml": "name: x\nruntime: nodejs\nhandler: index.handler\nmemory: 1\n", "index.js": handlerJS})},
		{"escaping path", testserver.Zip(t, [2]string{"tern.yaml", "name: x\nruntime: nodejs\nhandler: index.handler\n"}, [2]string{"../evil.js", "x"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			v, err := r.Deploy(ctx, bytes.NewReader(tt.pkg), int64(len(tt.pkg)))
			if !errors.Is(err, registry.ErrInvalid) {
				t.Fatalf("Deploy = %v, %v; want ErrInvalid", v, err)
			}
			if v != nil {
				t.Errorf("Deploy returned a version with an error")
			}
		})
	}
	if got := kvKeys(t, st); len(got) != 0 {
		t.Errorf("KV keys after invalid deploys = %v, want none", got)
	}
	if got := codeObjects(t, st); len(got) != 0 {
		t.Errorf("code objects after invalid deploys = %v, want none", got)
	}
	if got := r.List(); len(got) != 0 {
		t.Errorf("List after invalid deploys = %v, want none", keys(got))
	}
}

func TestConcurrentDeploysGetDistinctVersions(t *testing.T) {
	t.Run("one node", func(t *testing.T) { testConcurrentDeploys(t, 1) })
	t.Run("two nodes", func(t *testing.T) { testConcurrentDeploys(t, 2) })
}

// testConcurrentDeploys deploys one function 8 times at once through nodes
// registries on one store.
func testConcurrentDeploys(t *testing.T, nodes int) {
	st := openStore(t, t.TempDir())
	regs := make([]*registry.Registry, nodes)
	for i := range regs {
		regs[i] = startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits()})
	}
	r := regs[0]

	const n = 8
	pkgs := make([][]byte, n)
	for i := range pkgs {
		pkgs[i] = pkg(t, "busy", fmt.Sprintf("exports.handler = async () => %d;\n", i))
	}
	var wg sync.WaitGroup
	vs := make([]*registry.Version, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			vs[i], errs[i] = regs[i%nodes].Deploy(ctx, bytes.NewReader(pkgs[i]), int64(len(pkgs[i])))
		})
	}
	close(start)
	wg.Wait()
	seen := make(map[int]bool)
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("deploy %d: %v", i, errs[i])
		}
		if seen[vs[i].Number] {
			t.Fatalf("version %d given twice", vs[i].Number)
		}
		seen[vs[i].Number] = true
	}
	for i := 1; i <= n; i++ {
		if !seen[i] {
			t.Fatalf("versions = %v, want 1..%d", seen, n)
		}
	}
	for _, reg := range regs {
		eventually(t, "every node to resolve the last version", func() bool {
			cur, err := reg.Resolve("busy")
			return err == nil && cur.Number == n
		})
	}
	fn, all, err := r.Get("busy")
	if err != nil {
		t.Fatal(err)
	}
	if fn.Current != n || fn.Latest != n || len(all) != n {
		t.Errorf("function = %+v with %d versions, want current = latest = %d", fn, len(all), n)
	}
	// Each version records the code it was deployed with.
	for i, v := range vs {
		want := vs[i].CodeSHA256
		if got := all[n-v.Number].CodeSHA256; got != want {
			t.Errorf("version %d: sha %s, want %s", v.Number, got, want)
		}
	}
	if got := codeObjects(t, st); len(got) != n {
		t.Errorf("code objects = %d, want %d", len(got), n)
	}
}

// changes records OnChange calls.
type changes struct {
	mu  sync.Mutex
	all []registry.Change
}

func (c *changes) add(ch registry.Change) {
	c.mu.Lock()
	c.all = append(c.all, ch)
	c.mu.Unlock()
}

// has reports whether a change for name to version n (0: deleted) was seen.
func (c *changes) has(name string, n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.all {
		if ch.Name != name {
			continue
		}
		if n == 0 && ch.Current == nil || ch.Current != nil && ch.Current.Number == n {
			return true
		}
	}
	return false
}

func TestSecondRegistryFollowsWatch(t *testing.T) {
	st := openStore(t, t.TempDir())
	var onA, onB changes
	a := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits(), OnChange: onA.add})
	b := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits(), OnChange: onB.add})

	v1 := deploy(t, a, pkg(t, "shared", handlerJS))
	if !onA.has("shared", 1) {
		t.Errorf("deploying node's OnChange not called at once with version 1")
	}
	eventually(t, "the other registry to resolve version 1", func() bool {
		v, err := b.Resolve("shared")
		return err == nil && v.Number == 1
	})
	eventually(t, "the other registry's OnChange with version 1", func() bool { return onB.has("shared", 1) })
	if got, _ := b.Resolve("shared"); got.CodeSHA256 != v1.CodeSHA256 {
		t.Errorf("other registry's version has sha %s, want %s", got.CodeSHA256, v1.CodeSHA256)
	}

	deploy(t, a, pkg(t, "shared", "exports.handler = async () => 2;\n"))
	eventually(t, "the other registry to resolve version 2", func() bool {
		v, err := b.Resolve("shared")
		return err == nil && v.Number == 2
	})
	eventually(t, "the other registry's OnChange with version 2", func() bool { return onB.has("shared", 2) })
	_, vs, err := b.Get("shared")
	if err != nil || fmt.Sprint(numbers(vs)) != "[2 1]" {
		t.Errorf("other registry's Get = %v, %v; want [2 1]", numbers(vs), err)
	}

	// A deploy on b is seen by a.
	deploy(t, b, pkg(t, "fromb", handlerJS))
	eventually(t, "a to see b's deploy", func() bool {
		_, err := a.Resolve("fromb")
		return err == nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Delete(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	if !onA.has("shared", 0) {
		t.Errorf("deleting node's OnChange not called at once with nil")
	}
	eventually(t, "the other registry to forget the function", func() bool {
		_, err := b.Resolve("shared")
		return errors.Is(err, registry.ErrNotFound)
	})
	eventually(t, "the other registry's OnChange with nil", func() bool { return onB.has("shared", 0) })
	eventually(t, "the other registry to forget the versions", func() bool {
		_, _, err := b.Get("shared")
		return errors.Is(err, registry.ErrNotFound)
	})
	if got := b.List(); len(got) != 1 || got[0].Function != "fromb" {
		t.Errorf("other registry's List = %v, want [fromb:1]", keys(got))
	}
}

func TestDelete(t *testing.T) {
	st := openStore(t, t.TempDir())
	r := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := r.Delete(ctx, "nothing"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Delete of an unknown function = %v, want ErrNotFound", err)
	}

	// "gone" has two versions with different code; "kept" shares one of
	// them with "gone2".
	deploy(t, r, pkg(t, "gone", handlerJS))
	deploy(t, r, pkg(t, "gone", "exports.handler = async () => 2;\n"))
	if got := codeObjects(t, st); len(got) != 2 {
		t.Fatalf("code objects = %d, want 2", len(got))
	}
	if err := r.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve("gone"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Resolve after Delete = %v, want ErrNotFound", err)
	}
	if _, _, err := r.Get("gone"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if got := kvKeys(t, st); len(got) != 0 {
		t.Errorf("KV keys after Delete = %v, want none", got)
	}
	if got := codeObjects(t, st); len(got) != 0 {
		t.Errorf("code objects after Delete = %v, want none", got)
	}
	// The watch echoes of the deploys and deletes must not bring it back:
	// once the watch has delivered a later write by another node, it is
	// still gone.
	other := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits()})
	deploy(t, other, pkg(t, "marker", handlerJS))
	eventually(t, "the watch to catch up", func() bool {
		_, err := r.Resolve("marker")
		return err == nil
	})
	if _, err := r.Resolve("gone"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("function came back after Delete: %v", err)
	}
	if err := r.Delete(ctx, "marker"); err != nil {
		t.Fatal(err)
	}

	// Deploying again after a delete starts at version 1.
	if v := deploy(t, r, pkg(t, "gone", handlerJS)); v.Number != 1 {
		t.Errorf("redeploy after Delete = version %d, want 1", v.Number)
	}
	if err := r.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}

	// A code object still used by a version of another function is kept.
	// Deploy cannot make two functions share bytes (tern.yaml names the
	// function), so write the other function's records as another node
	// would, pointing at gone2's code.
	gone2 := deploy(t, r, pkg(t, "gone2", handlerJS))
	user := *gone2
	user.Function, user.Number = "user", 1
	putJSON(t, st, "ver.user.1", &user)
	putJSON(t, st, "fn.user", &registry.Function{Name: "user", Current: 1, Latest: 1, Created: time.Now(), Updated: time.Now()})
	eventually(t, "the registry to load the hand-written function", func() bool {
		v, err := r.Resolve("user")
		return err == nil && v.CodeSHA256 == gone2.CodeSHA256
	})
	if err := r.Delete(ctx, "gone2"); err != nil {
		t.Fatal(err)
	}
	if got := codeObjects(t, st); len(got) != 1 || got[0] != gone2.CodeSHA256 {
		t.Errorf("code objects after deleting gone2 = %v, want [%s] (still used by user:1)", got, gone2.CodeSHA256)
	}
	if err := r.Delete(ctx, "user"); err != nil {
		t.Fatal(err)
	}
	if got := codeObjects(t, st); len(got) != 0 {
		t.Errorf("code objects after deleting the last user = %v, want none", got)
	}
	if got := kvKeys(t, st); len(got) != 0 {
		t.Errorf("KV keys at the end = %v, want none", got)
	}
}

func putJSON(t *testing.T, st *store.Store, key string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := st.Functions.Put(ctx, key, b); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func TestCodeDir(t *testing.T) {
	st := openStore(t, t.TempDir())
	cache := filepath.Join(t.TempDir(), "cache")
	r := startRegistry(t, st, registry.Config{CacheDir: cache, Limits: archive.DefaultLimits()})

	b := pkg(t, "code", handlerJS)
	v1 := deploy(t, r, b)
	v2 := deploy(t, r, b) // same sha256

	// Many callers at once: one extraction, every caller gets the folder.
	const n = 8
	dirs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			v := v1
			if i%2 == 1 {
				v = v2
			}
			dirs[i], errs[i] = r.CodeDir(ctx, v)
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("CodeDir %d: %v", i, errs[i])
		}
		if dirs[i] != dirs[0] {
			t.Fatalf("CodeDir gave %q and %q for the same code", dirs[0], dirs[i])
		}
	}
	dir := dirs[0]
	if want := filepath.Join(cache, v1.CodeSHA256); dir != want {
		t.Errorf("CodeDir = %q, want %q", dir, want)
	}
	got, err := os.ReadFile(filepath.Join(dir, "index.js"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != handlerJS {
		t.Errorf("extracted index.js = %q, want %q", got, handlerJS)
	}
	if _, err := os.Stat(filepath.Join(dir, "tern.yaml")); err != nil {
		t.Errorf("tern.yaml not extracted: %v", err)
	}
	// Nothing else is left in the cache: no temp downloads or extractions.
	entries, err := os.ReadDir(cache)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != v1.CodeSHA256 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("cache holds %v, want only %s", names, v1.CodeSHA256)
	}

	// Once extracted, CodeDir answers from the disk: mark the file and see
	// it survive another call.
	marker := filepath.Join(dir, ".seen")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if again, err := r.CodeDir(ctx, v2); err != nil || again != dir {
		t.Fatalf("CodeDir again = %q, %v", again, err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("CodeDir extracted again: %v", err)
	}

	// Other code gets another folder with its own content.
	v3 := deploy(t, r, pkg(t, "code", "exports.handler = async () => 3;\n"))
	dir3, err := r.CodeDir(ctx, v3)
	if err != nil {
		t.Fatal(err)
	}
	if dir3 == dir {
		t.Fatalf("different code extracted to the same folder")
	}
	if got, err := os.ReadFile(filepath.Join(dir3, "index.js")); err != nil || string(got) != "exports.handler = async () => 3;\n" {
		t.Errorf("extracted index.js = %q, %v", got, err)
	}

	// Code another node extracts comes from the Object Store, not from
	// this node's cache.
	other := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits()})
	eventually(t, "the other registry to see version 3", func() bool {
		v, err := other.Resolve("code")
		return err == nil && v.Number == 3
	})
	cur, _ := other.Resolve("code")
	odir, err := other.CodeDir(ctx, cur)
	if err != nil {
		t.Fatal(err)
	}
	if odir == dir3 {
		t.Fatalf("two registries share a cache folder")
	}
	if got, err := os.ReadFile(filepath.Join(odir, "index.js")); err != nil || string(got) != "exports.handler = async () => 3;\n" {
		t.Errorf("other node's index.js = %q, %v", got, err)
	}
}

// A Registry whose Limits are left zero uses archive's defaults, as
// archive.Limits documents, for extraction as for Deploy.
func TestCodeDirZeroLimits(t *testing.T) {
	st := openStore(t, t.TempDir())
	r := startRegistry(t, st, registry.Config{})
	v := deploy(t, r, pkg(t, "zero", handlerJS))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir, err := r.CodeDir(ctx, v)
	if err != nil {
		t.Fatalf("CodeDir with zero limits: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "index.js")); err != nil || string(got) != handlerJS {
		t.Errorf("extracted index.js = %q, %v", got, err)
	}
}

// The deploying node extracts code at deploy; the first invocation there
// does not wait for it.
func TestDeployExtractsCode(t *testing.T) {
	st := openStore(t, t.TempDir())
	cache := filepath.Join(t.TempDir(), "code")
	r := startRegistry(t, st, registry.Config{CacheDir: cache, Limits: archive.DefaultLimits()})
	v := deploy(t, r, pkg(t, "pre", handlerJS))
	if got, err := os.ReadFile(filepath.Join(cache, v.CodeSHA256, "index.js")); err != nil || string(got) != handlerJS {
		t.Fatalf("code not extracted at deploy: %q, %v", got, err)
	}
}

func TestCodeDirMissingObject(t *testing.T) {
	st := openStore(t, t.TempDir())
	deployer := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits()})
	v := deploy(t, deployer, pkg(t, "lost", handlerJS))
	// Another node: its cache is empty, so it needs the Object Store.
	r := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.Code.Delete(ctx, v.CodeSHA256); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CodeDir(ctx, v); err == nil {
		t.Fatal("CodeDir of deleted code succeeded")
	}
	// The failure is not remembered: once the code is back, it works.
	b := pkg(t, "lost", handlerJS)
	if _, err := st.Code.PutBytes(ctx, v.CodeSHA256, b); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CodeDir(ctx, v); err != nil {
		t.Fatalf("CodeDir after the code is back: %v", err)
	}
}

func TestRestartLoadsEverything(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logger := testserver.Logger(t)
	cfg := store.Config{Dir: dir, LogsMaxAge: time.Hour, LogsMaxBytes: 64 << 20}

	st, err := store.Open(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	r := registry.New(registry.Config{CacheDir: filepath.Join(t.TempDir(), "c1"), Limits: archive.DefaultLimits()}, st.Functions, st.Code, logger)
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	deploy(t, r, pkg(t, "alpha", handlerJS))
	deploy(t, r, pkg(t, "alpha", "exports.handler = async () => 2;\n"))
	beta := deploy(t, r, pkg(t, "beta", handlerJS))
	deploy(t, r, pkg(t, "gamma", handlerJS))
	if err := r.Delete(ctx, "gamma"); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = openStore(t, dir)
	var seen changes
	r = startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits(), OnChange: seen.add})
	if got := keys(r.List()); fmt.Sprint(got) != "[alpha:2 beta:1]" {
		t.Fatalf("List after restart = %v, want [alpha:2 beta:1]", got)
	}
	if !seen.has("alpha", 2) || !seen.has("beta", 1) {
		t.Errorf("OnChange while loading = %v, want alpha:2 and beta:1", seen.all)
	}
	_, vs, err := r.Get("alpha")
	if err != nil || fmt.Sprint(numbers(vs)) != "[2 1]" {
		t.Errorf("Get alpha after restart = %v, %v", numbers(vs), err)
	}
	if _, err := r.Resolve("gamma"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("deleted function after restart: %v", err)
	}
	// The code is there too, and the version numbers continue.
	b, err := r.Resolve("beta")
	if err != nil || b.CodeSHA256 != beta.CodeSHA256 {
		t.Fatalf("Resolve beta = %v, %v", b, err)
	}
	cdir, err := r.CodeDir(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(cdir, "index.js")); err != nil || string(got) != handlerJS {
		t.Errorf("index.js after restart = %q, %v", got, err)
	}
	if v := deploy(t, r, pkg(t, "alpha", "exports.handler = async () => 3;\n")); v.Number != 3 {
		t.Errorf("deploy after restart = version %d, want 3", v.Number)
	}
}

// Deleting right after deploying races the watch's echo of the deploy's
// writes; the echo must neither bring the function back nor keep its code.
func TestDeleteRightAfterDeploy(t *testing.T) {
	st := openStore(t, t.TempDir())
	var seen changes
	r := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits(), OnChange: seen.add})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 100 {
		b := pkg(t, "flash", fmt.Sprintf("exports.handler = async () => %d;\n", i))
		deploy(t, r, b)
		if err := r.Delete(ctx, "flash"); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if _, err := r.Resolve("flash"); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("round %d: Resolve right after Delete = %v, want ErrNotFound", i, err)
		}
		if got := codeObjects(t, st); len(got) != 0 {
			t.Fatalf("round %d: code objects after Delete = %v, want none", i, got)
		}
	}
	// Once the watch has caught up (it delivers in order, so a deploy made
	// afterwards by another node marks the point), it is still gone.
	other := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits()})
	deploy(t, other, pkg(t, "marker", handlerJS))
	eventually(t, "the watch to catch up", func() bool {
		_, err := r.Resolve("marker")
		return err == nil
	})
	if _, err := r.Resolve("flash"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Resolve after the watch caught up = %v, want ErrNotFound", err)
	}
	if got := r.List(); len(got) != 1 {
		t.Errorf("List = %v, want [marker:1]", keys(got))
	}
	if got := kvKeys(t, st); fmt.Sprint(got) != "[fn.marker ver.marker.1]" {
		t.Errorf("KV keys = %v, want only marker's", got)
	}
	// And a redeploy right after a Delete is not undone by the Delete's
	// echo.
	for i := range 20 {
		deploy(t, r, pkg(t, "again", handlerJS))
		if err := r.Delete(ctx, "again"); err != nil {
			t.Fatal(err)
		}
		v := deploy(t, r, pkg(t, "again", fmt.Sprintf("exports.handler = async () => %d;\n", i)))
		deploy(t, other, pkg(t, "marker", fmt.Sprintf("exports.handler = async () => %d;\n", i)))
		eventually(t, "the watch to catch up", func() bool {
			m, err := r.Resolve("marker")
			return err == nil && m.Number == i+2
		})
		if got, err := r.Resolve("again"); err != nil || got.CodeSHA256 != v.CodeSHA256 {
			t.Fatalf("round %d: Resolve after redeploy = %v, %v; want version 1 with the new code", i, got, err)
		}
		if err := r.Delete(ctx, "again"); err != nil {
			t.Fatal(err)
		}
	}
}

// Records written by another node carry that node's clock; a newer
// revision wins even if its timestamps are older.
func TestNewerRevisionWinsOverClock(t *testing.T) {
	st := openStore(t, t.TempDir())
	r := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits()})
	v1 := deploy(t, r, pkg(t, "skew", handlerJS))

	// Another node, its clock an hour behind, deploys version 2.
	past := time.Now().Add(-time.Hour)
	v2 := *v1
	v2.Number, v2.Created = 2, past
	putJSON(t, st, "ver.skew.2", &v2)
	putJSON(t, st, "fn.skew", &registry.Function{Name: "skew", Current: 2, Latest: 2, Created: past, Updated: past})
	eventually(t, "version 2 to become current", func() bool {
		v, err := r.Resolve("skew")
		return err == nil && v.Number == 2
	})
}

// A deploy that dies between writing its version and moving fn.<name> to it
// (a cancelled request, a crash) leaves ver.<name>.<n+1> behind while the
// function still says n. That must not stop later deploys.
func TestDeployAfterOrphanedVersion(t *testing.T) {
	st := openStore(t, t.TempDir())
	r := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits()})
	v1 := deploy(t, r, pkg(t, "stuck", handlerJS))

	orphan := *v1
	orphan.Number = 2
	putJSON(t, st, "ver.stuck.2", &orphan)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := pkg(t, "stuck", "exports.handler = async () => 3;\n")
	v, err := r.Deploy(ctx, bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("deploy after an orphaned version: %v", err)
	}
	if v.Number != 3 {
		t.Errorf("deploy after an orphaned version 2 = version %d, want 3", v.Number)
	}
	if cur, err := r.Resolve("stuck"); err != nil || cur.Number != 3 || cur.CodeSHA256 != v.CodeSHA256 {
		t.Errorf("Resolve = %v, %v; want the new version 3", cur, err)
	}
	if v := deploy(t, r, b); v.Number != 4 {
		t.Errorf("next deploy = version %d, want 4", v.Number)
	}
}

// TestRoutedFollowsCurrentAndAliases: a version is routed while it is
// current or an alias (either side of a split) names it, on the node that
// changed the alias and on one that follows the watch, and both are told.
func TestRoutedFollowsCurrentAndAliases(t *testing.T) {
	st := openStore(t, t.TempDir())
	var muA, muB sync.Mutex
	var toldA, toldB []string
	a := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits(), OnAliasChange: func(fn string) {
		muA.Lock()
		defer muA.Unlock()
		toldA = append(toldA, fn)
	}})
	b := startRegistry(t, st, registry.Config{Limits: archive.DefaultLimits(), OnAliasChange: func(fn string) {
		muB.Lock()
		defer muB.Unlock()
		toldB = append(toldB, fn)
	}})
	told := func(mu *sync.Mutex, list *[]string) int {
		mu.Lock()
		defer mu.Unlock()
		return len(*list)
	}
	ctx := context.Background()
	v1 := deploy(t, a, pkg(t, "routes", handlerJS))
	if !a.Routed(v1) {
		t.Fatal("the current version is not routed")
	}
	v2 := deploy(t, a, pkg(t, "routes", "exports.handler = async () => 2;\n"))
	v3 := deploy(t, a, pkg(t, "routes", "exports.handler = async () => 3;\n"))
	if a.Routed(v1) || a.Routed(v2) || !a.Routed(v3) {
		t.Fatalf("after two deploys: v1 %v, v2 %v, v3 %v; want only v3", a.Routed(v1), a.Routed(v2), a.Routed(v3))
	}

	if _, err := a.SetAlias(ctx, "routes", "prod", []registry.Route{{Version: 1, Weight: 100}}); err != nil {
		t.Fatal(err)
	}
	if n := told(&muA, &toldA); !a.Routed(v1) || n < 1 {
		t.Fatalf("aliased v1 routed %v, told %d times", a.Routed(v1), n)
	}
	eventually(t, "the other node to route v1 and be told", func() bool { return b.Routed(v1) && told(&muB, &toldB) >= 1 })

	if _, err := a.SetAlias(ctx, "routes", "prod", []registry.Route{{Version: 3, Weight: 80}, {Version: 2, Weight: 20}}); err != nil {
		t.Fatal(err)
	}
	if a.Routed(v1) || !a.Routed(v2) {
		t.Errorf("after the split: v1 %v, v2 %v; want v2 only", a.Routed(v1), a.Routed(v2))
	}
	eventually(t, "the other node to follow the split", func() bool { return !b.Routed(v1) && b.Routed(v2) })

	if err := a.DeleteAlias(ctx, "routes", "prod"); err != nil {
		t.Fatal(err)
	}
	if n := told(&muA, &toldA); a.Routed(v2) || n < 3 {
		t.Errorf("after the alias went: v2 %v, told %d times", a.Routed(v2), n)
	}
	eventually(t, "the other node to drop the alias", func() bool { return !b.Routed(v2) && told(&muB, &toldB) >= 3 })

	// A version of a function deleted and created again is not routed.
	if err := a.Delete(ctx, "routes"); err != nil {
		t.Fatal(err)
	}
	again := deploy(t, a, pkg(t, "routes", handlerJS))
	if a.Routed(v1) || !a.Routed(again) {
		t.Errorf("after delete and redeploy: old v1 %v, new v1 %v", a.Routed(v1), a.Routed(again))
	}
}
