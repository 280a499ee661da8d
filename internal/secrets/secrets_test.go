package secrets_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/secrets"
	"github.com/ternhq/tern/internal/store"
)

// plaintext is what must never be seen outside Env.
const plaintext = "hunter2-correct-horse-battery-staple"

// logs collects every log line of a test (and shows them with t.Log).
type logs struct {
	t   testing.TB
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type env struct {
	st   *store.Store
	kv   jetstream.KeyValue
	dir  string // the NATS store's
	logs *logs
	log  *slog.Logger
}

// setup opens the embedded store with a bucket for secrets. TERN_SECRET_KEY
// is cleared unless the test sets it after.
func setup(t *testing.T) *env {
	t.Helper()
	t.Setenv(secrets.KeyEnv, "")
	l := &logs{t: t}
	log := slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := t.TempDir()
	st, err := store.Open(ctx(t), store.Config{Dir: dir}, log)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	kv, err := st.JS.CreateKeyValue(ctx(t), jetstream.KeyValueConfig{Bucket: "test_secrets", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if strings.Contains(l.String(), plaintext) {
			t.Errorf("a secret value reached the logs")
		}
	})
	return &env{st: st, kv: kv, dir: dir, logs: l, log: log}
}

func (e *env) open(t *testing.T, dataDir string) *secrets.Store {
	t.Helper()
	s, err := secrets.Open(dataDir, e.kv, e.log)
	if err != nil {
		t.Fatalf("open secrets: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func randomKey(t *testing.T) string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// noValue fails if err shows the plaintext.
func noValue(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), plaintext) {
		t.Fatalf("the error shows the value: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	e := setup(t)
	s := e.open(t, t.TempDir())
	c := ctx(t)

	env, err := s.Env(c, "api")
	if err != nil || env == nil || len(env) != 0 {
		t.Fatalf("no secrets yet: %v %v", env, err)
	}
	before := time.Now().Add(-time.Second)
	if err := s.Set(c, "api", "DB_PASSWORD", plaintext); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(c, "api", "API_KEY", "k1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(c, "api", "EMPTY", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(c, "other", "DB_PASSWORD", "other's"); err != nil {
		t.Fatal(err)
	}
	env, err = s.Env(c, "api")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"DB_PASSWORD": plaintext, "API_KEY": "k1", "EMPTY": ""}
	if fmt.Sprint(env) != fmt.Sprint(want) {
		t.Fatalf("Env = %v, want %v", env, want)
	}
	env["DB_PASSWORD"] = "changed by the caller"
	if env, _ := s.Env(c, "api"); env["DB_PASSWORD"] != plaintext {
		t.Fatalf("the caller's map is the cache's")
	}

	names, err := s.Names(c, "api")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 3 || names[0].Name != "API_KEY" || names[1].Name != "DB_PASSWORD" || names[2].Name != "EMPTY" {
		t.Fatalf("Names = %+v", names)
	}
	for _, n := range names {
		if n.Updated.Before(before) || n.Updated.After(time.Now().Add(time.Second)) {
			t.Errorf("%s updated %v", n.Name, n.Updated)
		}
	}

	// Replacing a value and deleting one show at once on this node.
	if err := s.Set(c, "api", "API_KEY", "k2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(c, "api", "EMPTY"); err != nil {
		t.Fatal(err)
	}
	env, _ = s.Env(c, "api")
	if env["API_KEY"] != "k2" || len(env) != 2 {
		t.Fatalf("after set and delete: %v", env)
	}
	if err := s.Delete(c, "api", "EMPTY"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("delete a missing secret: %v", err)
	}
	if err := s.Delete(c, "api", "not-a-name"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("delete an impossible name: %v", err)
	}

	// DeleteAll takes one function's secrets, not those of a function
	// whose name it prefixes.
	if err := s.Set(c, "api2", "X", "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAll(c, "api"); err != nil {
		t.Fatal(err)
	}
	if env, err := s.Env(c, "api"); err != nil || len(env) != 0 {
		t.Fatalf("after DeleteAll: %v %v", env, err)
	}
	if names, _ := s.Names(c, "api"); len(names) != 0 {
		t.Fatalf("names after DeleteAll: %v", names)
	}
	if env, _ := s.Env(c, "api2"); env["X"] != "x" {
		t.Fatalf("DeleteAll took another function's secrets: %v", env)
	}
	if env, _ := s.Env(c, "other"); env["DB_PASSWORD"] != "other's" {
		t.Fatalf("other: %v", env)
	}
}

func TestStoredEncrypted(t *testing.T) {
	e := setup(t)
	s := e.open(t, t.TempDir())
	c := ctx(t)
	if err := s.Set(c, "api", "DB_PASSWORD", plaintext); err != nil {
		t.Fatal(err)
	}
	en, err := e.kv.Get(c, "api.DB_PASSWORD")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(en.Value(), []byte(plaintext)) {
		t.Fatal("the stored value holds the plaintext")
	}
	if v := en.Value(); len(v) != 1+12+len(plaintext)+16 || v[0] != 1 {
		t.Fatalf("envelope: %d bytes, version %d", len(v), v[0])
	}
	// The same value sealed again uses another nonce.
	if err := s.Set(c, "api", "DB_PASSWORD", plaintext); err != nil {
		t.Fatal(err)
	}
	en2, _ := e.kv.Get(c, "api.DB_PASSWORD")
	if bytes.Equal(en.Value(), en2.Value()) {
		t.Fatal("two seals of one value are equal")
	}

	// Nor is it on disk once NATS has flushed (the key, stored in the
	// clear, shows that the scan sees what was written).
	_ = s.Close(c)
	e.st.Close()
	var sawKey bool
	err = filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(plaintext)) {
			t.Errorf("%s holds the plaintext", path)
		}
		sawKey = sawKey || bytes.Contains(b, []byte("api.DB_PASSWORD"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sawKey {
		t.Fatal("the scan did not find the record at all")
	}
}

func TestMovedValueDoesNotDecrypt(t *testing.T) {
	e := setup(t)
	s := e.open(t, t.TempDir())
	c := ctx(t)
	if err := s.Set(c, "api", "DB_PASSWORD", plaintext); err != nil {
		t.Fatal(err)
	}
	en, err := e.kv.Get(c, "api.DB_PASSWORD")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"api.OTHER", "thief.DB_PASSWORD"} {
		if _, err := e.kv.Put(c, key, en.Value()); err != nil {
			t.Fatal(err)
		}
		fn, name, _ := strings.Cut(key, ".")
		_, err := s.Env(c, fn)
		if !errors.Is(err, secrets.ErrDecrypt) || !strings.Contains(err.Error(), name) {
			t.Fatalf("%s: Env = %v, want ErrDecrypt naming %s", key, err, name)
		}
		noValue(t, err)
	}
	// A damaged record fails too.
	damaged := bytes.Clone(en.Value())
	damaged[len(damaged)-1] ^= 1
	if _, err := e.kv.Put(c, "api.OTHER", damaged); err != nil {
		t.Fatal(err)
	}
	if _, err := e.kv.Put(c, "solo.SHORT", []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"api", "solo"} {
		testEventually(t, fn+" to fail to decrypt", func() bool {
			_, err := s.Env(c, fn)
			noValue(t, err)
			return errors.Is(err, secrets.ErrDecrypt)
		})
	}
}

func TestWrongMasterKey(t *testing.T) {
	e := setup(t)
	c := ctx(t)
	a := e.open(t, t.TempDir())
	if err := a.Set(c, "api", "DB_PASSWORD", plaintext); err != nil {
		t.Fatal(err)
	}
	b := e.open(t, t.TempDir()) // its own new key file
	_, err := b.Env(c, "api")
	if !errors.Is(err, secrets.ErrDecrypt) || !strings.Contains(err.Error(), "DB_PASSWORD") || !strings.Contains(err.Error(), "api") {
		t.Fatalf("Env under another key = %v", err)
	}
	noValue(t, err)
	// Listing names needs no key.
	if names, err := b.Names(c, "api"); err != nil || len(names) != 1 {
		t.Fatalf("names: %v %v", names, err)
	}
}

func TestKeyFile(t *testing.T) {
	e := setup(t)
	c := ctx(t)
	dir := t.TempDir()
	a := e.open(t, dir)
	fi, err := os.Stat(secrets.KeyPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(secrets.KeyPath(dir))
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b))); err != nil || len(k) != 32 {
		t.Fatalf("key file: %d bytes, %v", len(k), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("the data dir holds %d files, want the key only", len(ents))
	}
	if err := a.Set(c, "api", "DB_PASSWORD", plaintext); err != nil {
		t.Fatal(err)
	}
	// Opened again (a restart), the same key is used.
	again := e.open(t, dir)
	if env, err := again.Env(c, "api"); err != nil || env["DB_PASSWORD"] != plaintext {
		t.Fatalf("after reopening: %v", err)
	}
	after, _ := os.ReadFile(secrets.KeyPath(dir))
	if !bytes.Equal(b, after) {
		t.Fatal("reopening changed the key file")
	}

	// A damaged key file is refused, without quoting it.
	bad := t.TempDir()
	if err := os.WriteFile(secrets.KeyPath(bad), []byte("c2hvcnQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.Open(bad, e.kv, e.log); err == nil || !strings.Contains(err.Error(), secrets.KeyFile) || strings.Contains(err.Error(), "c2hvcnQ") {
		t.Fatalf("short key file: %v", err)
	}
}

func TestKeyFromEnvironment(t *testing.T) {
	e := setup(t)
	c := ctx(t)
	dir := t.TempDir()
	a := e.open(t, dir) // a key file
	if err := a.Set(c, "api", "DB_PASSWORD", plaintext); err != nil {
		t.Fatal(err)
	}
	fileKey, _ := os.ReadFile(secrets.KeyPath(dir))

	// The file's text as TERN_SECRET_KEY opens the secrets without the
	// file, and no file is made then.
	t.Setenv(secrets.KeyEnv, strings.TrimSpace(string(fileKey)))
	empty := t.TempDir()
	b := e.open(t, empty)
	if env, err := b.Env(c, "api"); err != nil || env["DB_PASSWORD"] != plaintext {
		t.Fatalf("key from the environment: %v", err)
	}
	if _, err := os.Stat(secrets.KeyPath(empty)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a key file was made although %s is set: %v", secrets.KeyEnv, err)
	}
	// URL-safe and unpadded spellings are the same key.
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(string(fileKey)))
	t.Setenv(secrets.KeyEnv, base64.RawURLEncoding.EncodeToString(raw))
	if env, err := e.open(t, "").Env(c, "api"); err != nil || env["DB_PASSWORD"] != plaintext {
		t.Fatalf("URL-safe key: %v", err)
	}

	// The variable wins over the file.
	t.Setenv(secrets.KeyEnv, randomKey(t))
	d := e.open(t, dir)
	if _, err := d.Env(c, "api"); !errors.Is(err, secrets.ErrDecrypt) {
		t.Fatalf("another key in %s than in the file: %v", secrets.KeyEnv, err)
	}

	// Malformed keys are refused, and not quoted.
	for _, v := range []string{"not base64!!", base64.StdEncoding.EncodeToString([]byte("sixteen bytes ok")), base64.StdEncoding.EncodeToString(make([]byte, 64))} {
		t.Setenv(secrets.KeyEnv, v)
		_, err := secrets.Open(t.TempDir(), e.kv, e.log)
		if err == nil || !strings.Contains(err.Error(), secrets.KeyEnv) || strings.Contains(err.Error(), v) {
			t.Fatalf("%s=%q: Open = %v", secrets.KeyEnv, v, err)
		}
	}
	// Without a key or a data dir there is nothing to use.
	t.Setenv(secrets.KeyEnv, "")
	if _, err := secrets.Open("", e.kv, e.log); err == nil {
		t.Fatal("Open with no key and no data dir")
	}
}

func TestRefused(t *testing.T) {
	e := setup(t)
	s := e.open(t, t.TempDir())
	c := ctx(t)
	for _, name := range []string{"", "1ABC", "A-B", "A.B", "A B", "A*", "É", "_HANDLER", "AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT", strings.Repeat("A", 257)} {
		if err := s.Set(c, "api", name, "v"); !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("name %q: %v", name, err)
		}
	}
	for _, fn := range []string{"", "a.b", "a*", ">", "-a"} {
		if err := s.Set(c, fn, "OK", "v"); !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("function %q: %v", fn, err)
		}
	}
	if err := s.Set(c, "api", "BIG", strings.Repeat("x", secrets.MaxValueBytes+1)); !errors.Is(err, secrets.ErrTooLarge) {
		t.Errorf("value over the limit: %v", err)
	}
	for _, v := range []string{plaintext + "\x00", plaintext + "\xff"} {
		err := s.Set(c, "api", "BAD", v)
		if !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("value %q: %v", v, err)
		}
		noValue(t, err)
	}
	if err := s.Set(c, "api", "MAX", strings.Repeat("x", secrets.MaxValueBytes)); err != nil {
		t.Errorf("value at the limit: %v", err)
	}
	if err := s.Set(c, "api", strings.Repeat("A", 256), "v"); err != nil {
		t.Errorf("name at the limit: %v", err)
	}
	if names, _ := s.Names(c, "api"); len(names) != 2 {
		t.Errorf("stored %v", names)
	}
}

// TestOtherNodeChanges: a store that cached a function's secrets sees
// another node's changes through the watch.
func TestOtherNodeChanges(t *testing.T) {
	e := setup(t)
	c := ctx(t)
	t.Setenv(secrets.KeyEnv, randomKey(t))
	a, b := e.open(t, ""), e.open(t, "")
	if err := a.Set(c, "api", "V", "1"); err != nil {
		t.Fatal(err)
	}
	if env, _ := b.Env(c, "api"); env["V"] != "1" {
		t.Fatalf("b: %v", env)
	}
	if err := a.Set(c, "api", "V", "2"); err != nil {
		t.Fatal(err)
	}
	testEventually(t, "b to see the new value", func() bool {
		env, err := b.Env(c, "api")
		return err == nil && env["V"] == "2"
	})
	if err := a.DeleteAll(c, "api"); err != nil {
		t.Fatal(err)
	}
	testEventually(t, "b to see the secrets gone", func() bool {
		env, err := b.Env(c, "api")
		return err == nil && len(env) == 0
	})
}

// TestConcurrentChanges runs loads and changes together (for -race); once
// the writes stop, every store answers the last value.
func TestConcurrentChanges(t *testing.T) {
	e := setup(t)
	c := ctx(t)
	t.Setenv(secrets.KeyEnv, randomKey(t))
	a, b := e.open(t, ""), e.open(t, "")
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := []*secrets.Store{a, b}[r%2]
			for range 50 {
				if _, err := s.Env(c, "api"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range 30 {
		if err := a.Set(c, "api", "V", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for _, s := range []*secrets.Store{a, b} {
		testEventually(t, "the last value", func() bool {
			env, err := s.Env(c, "api")
			return err == nil && env["V"] == "29"
		})
	}
	if err := a.Close(c); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(c); err != nil {
		t.Fatal("second Close:", err)
	}
}

func testEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
