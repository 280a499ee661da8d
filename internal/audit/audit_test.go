package audit_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/audit"
	"github.com/ternhq/tern/internal/store"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func openLog(t *testing.T) (*audit.Log, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir()}, slog.New(slog.NewTextHandler(tWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	_, err = st.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "TEST_AUDIT", Subjects: []string{"test.audit.>"}, MaxAge: 90 * 24 * time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	return audit.New(st.JS, "TEST_AUDIT", "test.audit."), st.JS
}

func TestRecordAndRead(t *testing.T) {
	l, js := openLog(t)
	ctx := context.Background()
	entries := []audit.Entry{
		{Principal: "admin-token", Role: "admin", Action: audit.ActionDeploy, Function: "a", Target: "a", Version: 1, Outcome: audit.OutcomeOK},
		{Principal: "0123456789ab", Role: "deployer", Action: audit.ActionAliasSet, Function: "a", Target: "a@live", Version: 1, Outcome: audit.OutcomeOK},
		{Principal: "0123456789ab", Role: "deployer", Action: audit.ActionDelete, Function: "b", Target: "b", Outcome: "forbidden"},
		{Principal: "admin-token", Role: "admin", Action: audit.ActionKeyCreate, Target: "0123456789ab", Outcome: audit.OutcomeOK},
		{Principal: "admin-token", Role: "admin", Action: audit.ActionTopicCreate, Target: "", Outcome: "bad_request"},
		{Principal: "admin-token", Role: "admin", Action: audit.ActionSecretSet, Function: "a", Target: "API.KEY with spaces", Outcome: audit.OutcomeOK},
	}
	for _, e := range entries {
		if err := l.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	all, err := l.Read(ctx, audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(entries) {
		t.Fatalf("read %d entries, want %d: %+v", len(all), len(entries), all)
	}
	for i, e := range all {
		if e.Time.IsZero() || time.Since(e.Time) > time.Minute {
			t.Errorf("entry %d time %v", i, e.Time)
		}
		e.Time = time.Time{}
		if e != entries[i] {
			t.Errorf("entry %d = %+v, want %+v", i, e, entries[i])
		}
	}

	// Subjects: by function, else by kind and target.
	info, err := js.Stream(ctx, "TEST_AUDIT")
	if err != nil {
		t.Fatal(err)
	}
	si, err := info.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"test.audit.fn.a", "test.audit.fn.b", "test.audit.key.0123456789ab", "test.audit.topic._"} {
		if si.State.Subjects[subj] == 0 {
			t.Errorf("no entry on %s: %v", subj, si.State.Subjects)
		}
	}

	fa, err := l.Read(ctx, audit.Query{Function: "a"})
	if err != nil || len(fa) != 3 || fa[0].Action != audit.ActionDeploy || fa[1].Action != audit.ActionAliasSet || fa[2].Action != audit.ActionSecretSet {
		t.Errorf("function a: %+v, %v", fa, err)
	}
	if none, err := l.Read(ctx, audit.Query{Function: "nothing"}); err != nil || len(none) != 0 || none == nil {
		t.Errorf("function nothing: %#v, %v", none, err)
	}
	last, err := l.Read(ctx, audit.Query{Limit: 2})
	if err != nil || len(last) != 2 || last[1].Action != audit.ActionSecretSet || last[0].Action != audit.ActionTopicCreate {
		t.Errorf("limit 2: %+v, %v", last, err)
	}
	if later, err := l.Read(ctx, audit.Query{Since: time.Now().Add(time.Minute)}); err != nil || len(later) != 0 {
		t.Errorf("since the future: %+v, %v", later, err)
	}
	if since, err := l.Read(ctx, audit.Query{Since: time.Now().Add(-time.Minute)}); err != nil || len(since) != len(entries) {
		t.Errorf("since a minute ago: %d entries, %v", len(since), err)
	}
	for _, q := range []audit.Query{{Function: "a.b"}, {Function: "*"}, {Function: ">"}, {Limit: -1}, {Limit: audit.MaxLimit + 1}} {
		if _, err := l.Read(ctx, q); !errors.Is(err, audit.ErrBadQuery) {
			t.Errorf("Read(%+v) = %v, want ErrBadQuery", q, err)
		}
	}
}

func TestReadMany(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	const n = 1234
	for i := range n {
		if err := l.Record(ctx, audit.Entry{Principal: "admin-token", Role: "admin", Action: audit.ActionDeploy, Function: "f", Version: i + 1, Outcome: audit.OutcomeOK}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := l.Read(ctx, audit.Query{Function: "f"})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != audit.DefaultLimit || es[0].Version != n-audit.DefaultLimit+1 || es[len(es)-1].Version != n {
		t.Errorf("read %d entries, versions %d to %d; want the newest %d", len(es), es[0].Version, es[len(es)-1].Version, audit.DefaultLimit)
	}
	es, err = l.Read(ctx, audit.Query{Limit: audit.MaxLimit})
	if err != nil || len(es) != n {
		t.Errorf("read %d, %v; want all %d", len(es), err, n)
	}
}
