package store_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/store"
	"github.com/ternhq/tern/internal/testserver"
)

func config(dir string) store.Config {
	return store.Config{Dir: dir, LogsMaxAge: time.Hour, LogsMaxBytes: 64 << 20}
}

func open(t *testing.T, cfg store.Config, log *slog.Logger) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, cfg, log)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestOpenCreatesBucketsAndStreams(t *testing.T) {
	st := open(t, config(t.TempDir()), testserver.Logger(t))
	if st.NC == nil || st.JS == nil || st.Functions == nil || st.Code == nil {
		t.Fatalf("Open left a field nil: %+v", st)
	}
	if !st.NC.IsConnected() {
		t.Errorf("connection not connected")
	}

	kv, err := st.JS.KeyValue(ctx(t), store.FunctionsBucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", store.FunctionsBucket, err)
	}
	kvs, err := kv.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if kvs.History() != 1 || kvs.BackingStore() != "JetStream" {
		t.Errorf("bucket status: history %d, backing %s", kvs.History(), kvs.BackingStore())
	}
	if _, err := st.JS.ObjectStore(ctx(t), store.CodeBucket); err != nil {
		t.Fatalf("object store %s: %v", store.CodeBucket, err)
	}
	s, err := st.JS.Stream(ctx(t), store.LogsStream)
	if err != nil {
		t.Fatalf("stream %s: %v", store.LogsStream, err)
	}
	info, err := s.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if len(c.Subjects) != 1 || c.Subjects[0] != store.LogsSubjectPrefix+">" {
		t.Errorf("stream subjects = %v", c.Subjects)
	}
	if c.MaxAge != time.Hour || c.MaxBytes != 64<<20 || c.Storage != jetstream.FileStorage || c.Discard != jetstream.DiscardOld || c.Replicas != 1 {
		t.Errorf("stream config = age %v, bytes %d, storage %v, discard %v, replicas %d", c.MaxAge, c.MaxBytes, c.Storage, c.Discard, c.Replicas)
	}

	// The handles work.
	if _, err := st.Functions.Put(ctx(t), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Code.PutBytes(ctx(t), "obj", []byte("code")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.JS.Publish(ctx(t), store.LogsSubjectPrefix+"fn", []byte("line")); err != nil {
		t.Fatal(err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, config(t.TempDir()), testserver.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !st.NC.IsClosed() {
		t.Errorf("connection still open after Close")
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Concurrent calls too.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { st.Close() })
	}
	wg.Wait()
}

func TestDataSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, config(dir), testserver.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Functions.Put(ctx, "fn.hello", []byte(`{"name":"hello"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Code.PutBytes(ctx, "abc", []byte("zip bytes")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.JS.Publish(ctx, store.LogsSubjectPrefix+"hello", []byte("a log line")); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st = open(t, config(dir), testserver.Logger(t))
	e, err := st.Functions.Get(ctx, "fn.hello")
	if err != nil || string(e.Value()) != `{"name":"hello"}` {
		t.Fatalf("KV after reopen = %v, %v", e, err)
	}
	b, err := st.Code.GetBytes(ctx, "abc")
	if err != nil || string(b) != "zip bytes" {
		t.Fatalf("object after reopen = %q, %v", b, err)
	}
	s, err := st.JS.Stream(ctx, store.LogsStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, store.LogsSubjectPrefix+"hello")
	if err != nil || string(msg.Data) != "a log line" {
		t.Fatalf("log after reopen = %v, %v", msg, err)
	}
	// Reopening updates the stream's limits to the new config.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := config(dir)
	cfg.LogsMaxAge = 2 * time.Hour
	st = open(t, cfg, testserver.Logger(t))
	s, err = st.JS.Stream(ctx, store.LogsStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxAge; got != 2*time.Hour {
		t.Errorf("stream max age after reopen with a new limit = %v", got)
	}
}

// capture is a slog handler that logs to t and keeps the attributes.
type capture struct {
	slog.Handler
	mu    *sync.Mutex
	attrs map[string]string
}

func (c capture) Handle(ctx context.Context, r slog.Record) error {
	c.mu.Lock()
	r.Attrs(func(a slog.Attr) bool {
		c.attrs[a.Key] = a.Value.String()
		return true
	})
	c.mu.Unlock()
	return c.Handler.Handle(ctx, r)
}

func TestClientListen(t *testing.T) {
	c := capture{Handler: testserver.Logger(t).Handler(), mu: new(sync.Mutex), attrs: map[string]string{}}
	cfg := config(t.TempDir())
	cfg.ClientListen = "127.0.0.1:0"
	cfg.ClientToken = "secret-token"
	st := open(t, cfg, slog.New(c))

	c.mu.Lock()
	url := c.attrs["client_url"]
	c.mu.Unlock()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") {
		t.Fatalf("client_url logged = %q", url)
	}
	if strings.HasSuffix(url, ":4222") {
		t.Errorf("port 0 opened the default port 4222, not a free one")
	}

	// A plain client over TCP sees what Tern writes.
	if _, err := st.Functions.Put(ctx(t), "fn.x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	// Without the token the port answers nothing.
	if nc, err := nats.Connect(url, nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a client without the token connected")
	}
	if nc, err := nats.Connect(url, nats.Timeout(5*time.Second), nats.Token("wrong")); err == nil {
		nc.Close()
		t.Fatal("a client with a wrong token connected")
	}
	if u := st.ClientURLWithToken(); u != strings.Replace(url, "nats://", "nats://secret-token@", 1) {
		t.Errorf("ClientURLWithToken = %q", u)
	}
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second), nats.Token("secret-token"))
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx(t), store.FunctionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx(t), "fn.x")
	if err != nil || string(e.Value()) != "1" {
		t.Fatalf("plain client's Get = %v, %v", e, err)
	}
}

func TestNoClientPortByDefault(t *testing.T) {
	c := capture{Handler: testserver.Logger(t).Handler(), mu: new(sync.Mutex), attrs: map[string]string{}}
	open(t, config(t.TempDir()), slog.New(c))
	c.mu.Lock()
	defer c.mu.Unlock()
	if url, ok := c.attrs["client_url"]; ok {
		t.Errorf("embedded server opened a client port (%s) without ClientListen", url)
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  store.Config
		want []string
	}{
		{"unreachable URL", store.Config{URL: "nats://127.0.0.1:1", LogsMaxAge: time.Hour, LogsMaxBytes: 1 << 20},
			[]string{"store: connect nats://127.0.0.1:1:", "no servers available"}},
		{"no dir", store.Config{LogsMaxAge: time.Hour, LogsMaxBytes: 1 << 20},
			[]string{"data directory"}},
		{"open port without a token", store.Config{Dir: t.TempDir(), ClientListen: "127.0.0.1:0", LogsMaxAge: time.Hour, LogsMaxBytes: 1 << 20},
			[]string{"client port needs a token"}},
		{"bad listen address", store.Config{Dir: t.TempDir(), ClientListen: "nope", ClientToken: "t", LogsMaxAge: time.Hour, LogsMaxBytes: 1 << 20},
			[]string{"client listen address"}},
		{"bad listen port", store.Config{Dir: t.TempDir(), ClientListen: "127.0.0.1:99999", ClientToken: "t", LogsMaxAge: time.Hour, LogsMaxBytes: 1 << 20},
			[]string{"client listen address", "bad port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			st, err := store.Open(ctx, tt.cfg, testserver.Logger(t))
			if err == nil {
				st.Close()
				t.Fatal("Open succeeded")
			}
			if st != nil {
				t.Errorf("Open returned a store with an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("failing took %v", d)
			}
		})
	}
}

// A store whose client port is open can be used as an external one.
func TestExternalURL(t *testing.T) {
	c := capture{Handler: testserver.Logger(t).Handler(), mu: new(sync.Mutex), attrs: map[string]string{}}
	cfg := config(t.TempDir())
	cfg.ClientListen = "127.0.0.1:0"
	cfg.ClientToken = "tok"
	embedded := open(t, cfg, slog.New(c))
	url := embedded.ClientURLWithToken()

	ext := open(t, store.Config{URL: url, LogsMaxAge: time.Hour, LogsMaxBytes: 64 << 20}, testserver.Logger(t))
	if _, err := ext.Functions.Put(ctx(t), "fn.ext", []byte("via url")); err != nil {
		t.Fatal(err)
	}
	e, err := embedded.Functions.Get(ctx(t), "fn.ext")
	if err != nil || string(e.Value()) != "via url" {
		t.Fatalf("embedded side Get = %v, %v", e, err)
	}
	if err := ext.Close(); err != nil {
		t.Errorf("Close of an external store: %v", err)
	}
	// Closing the external client leaves the embedded server running.
	if _, err := embedded.Functions.Get(ctx(t), "fn.ext"); err != nil {
		t.Errorf("embedded store after the external one closed: %v", err)
	}
}

func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                  "nats://127.0.0.1:4222",
		"nats://tok@127.0.0.1:4222":              "nats://***@127.0.0.1:4222",
		"nats://u:p@a:1, tls://t@b:2,nats://c:3": "nats://***@a:1,tls://***@b:2,nats://c:3",
		"127.0.0.1:4222":                         "127.0.0.1:4222",
	} {
		if got := store.RedactURLs(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
