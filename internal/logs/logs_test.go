package logs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/store"
	"github.com/ternhq/tern/internal/testserver"
)

func TestBilledDuration(t *testing.T) {
	tests := []struct {
		in, want time.Duration
	}{
		{0, 0},
		{time.Nanosecond, time.Millisecond},
		{999 * time.Microsecond, time.Millisecond},
		{time.Millisecond, time.Millisecond},
		{time.Millisecond + 100*time.Nanosecond, 2 * time.Millisecond},
		{1500 * time.Microsecond, 2 * time.Millisecond},
		{2 * time.Millisecond, 2 * time.Millisecond},
		{time.Second + time.Nanosecond, 1001 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := logs.BilledDuration(tt.in); got != tt.want {
			t.Errorf("BilledDuration(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestReportLine(t *testing.T) {
	rss := func(n int64) func() int64 { return func() int64 { return n } }
	tests := []struct {
		name string
		r    logs.Report
		want string
	}{
		{
			"warm",
			logs.Report{Duration: 1234567 * time.Nanosecond, MemoryMB: 256, MaxRSS: rss(50 << 20)},
			"REPORT RequestId: req-1\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 256 MB\tMax Memory Used: 50 MB",
		},
		{
			"cold",
			logs.Report{Duration: 12 * time.Millisecond, MemoryMB: 128, InitDuration: 105678 * time.Microsecond, MaxRSS: rss(50<<20 + 1)},
			"REPORT RequestId: req-1\tDuration: 12.00 ms\tBilled Duration: 12 ms\tMemory Size: 128 MB\tMax Memory Used: 51 MB\tInit Duration: 105.68 ms",
		},
		{
			"rounding half up in the hundredths",
			logs.Report{Duration: 1006 * time.Microsecond, MemoryMB: 128, MaxRSS: rss(1)},
			"REPORT RequestId: req-1\tDuration: 1.01 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 1 MB",
		},
		{
			"no memory figure",
			logs.Report{Duration: 0, MemoryMB: 512},
			"REPORT RequestId: req-1\tDuration: 0.00 ms\tBilled Duration: 0 ms\tMemory Size: 512 MB\tMax Memory Used: 0 MB",
		},
		{
			"long",
			logs.Report{Duration: 3*time.Second + 1, MemoryMB: 1024, MaxRSS: rss(1 << 30)},
			"REPORT RequestId: req-1\tDuration: 3000.00 ms\tBilled Duration: 3001 ms\tMemory Size: 1024 MB\tMax Memory Used: 1024 MB",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Line("req-1"); got != tt.want {
				t.Errorf("Line =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir(), LogsMaxAge: time.Hour, LogsMaxBytes: 64 << 20}, testserver.Logger(t))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// startSink starts a sink on st and closes it (if the test did not) when
// the test ends.
func startSink(t *testing.T, st *store.Store) *logs.Sink {
	t.Helper()
	s := logs.NewSink(st.JS, 0, testserver.Logger(t))
	s.Start()
	t.Cleanup(func() { closeSink(t, s) })
	return s
}

func closeSink(t *testing.T, s *logs.Sink) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("close sink: %v", err)
	}
}

// read returns what Read gives for q, bounded in time.
func read(t *testing.T, st *store.Store, q logs.Query) []logs.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []logs.Entry
	if err := logs.Read(ctx, st.JS, q, func(e *logs.Entry) error {
		got = append(got, *e)
		return nil
	}); err != nil {
		t.Fatalf("Read(%+v): %v", q, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Read(%+v) did not return before its deadline", q)
	}
	return got
}

func entry(fn string, i int) logs.Entry {
	return logs.Entry{
		Time:      time.Now().UTC(),
		Function:  fn,
		Version:   1,
		RequestID: fmt.Sprintf("req-%d", i%10),
		Instance:  "inst-1",
		Stream:    logs.StreamStdout,
		Message:   fmt.Sprintf("%s line %d", fn, i),
	}
}

func TestSinkReadRoundTrip(t *testing.T) {
	st := openStore(t)
	s := startSink(t, st)
	const n = 1000
	for i := range n {
		s.Write(entry("alpha", i))
		s.Write(entry("beta", i))
	}
	s.WriteReport(logs.Entry{Time: time.Now(), Function: "alpha", Version: 1, RequestID: "req-r", Stream: logs.StreamPlatform},
		&logs.Report{Duration: 5 * time.Millisecond, MemoryMB: 128})
	closeSink(t, s)
	if d := s.Dropped(); d != 0 {
		t.Fatalf("dropped %d; want none", d)
	}

	got := read(t, st, logs.Query{Function: "alpha"})
	if len(got) != n+2 { // a report entry is END and REPORT
		t.Fatalf("read %d entries of alpha, want %d", len(got), n+2)
	}
	for i := range n {
		e := got[i]
		if e.Function != "alpha" || e.Message != fmt.Sprintf("alpha line %d", i) {
			t.Fatalf("entry %d = %+v, want alpha line %d", i, e, i)
		}
		if e.RequestID != fmt.Sprintf("req-%d", i%10) || e.Stream != logs.StreamStdout || e.Version != 1 || e.Instance != "inst-1" || e.Time.IsZero() {
			t.Fatalf("entry %d lost fields: %+v", i, e)
		}
	}
	if end := got[n]; end.Message != "END RequestId: req-r" || end.Stream != logs.StreamPlatform {
		t.Errorf("end entry = %+v", end)
	}
	rep := got[n+1]
	if !strings.HasPrefix(rep.Message, "REPORT RequestId: req-r\tDuration: 5.00 ms") || rep.Stream != logs.StreamPlatform {
		t.Errorf("report entry = %+v", rep)
	}

	if got := read(t, st, logs.Query{Function: "beta"}); len(got) != n || got[0].Message != "beta line 0" || got[n-1].Message != fmt.Sprintf("beta line %d", n-1) {
		t.Errorf("read %d entries of beta", len(got))
	}

	// Filters.
	byReq := read(t, st, logs.Query{Function: "alpha", RequestID: "req-3"})
	if len(byReq) != n/10 {
		t.Errorf("RequestID filter: %d entries, want %d", len(byReq), n/10)
	}
	for _, e := range byReq {
		if e.RequestID != "req-3" {
			t.Fatalf("RequestID filter let through %+v", e)
		}
	}
	byText := read(t, st, logs.Query{Function: "alpha", Grep: "line 99"})
	var msgs []string
	for _, e := range byText {
		msgs = append(msgs, e.Message)
	}
	if fmt.Sprint(msgs) != "[alpha line 99 alpha line 990 alpha line 991 alpha line 992 alpha line 993 alpha line 994 alpha line 995 alpha line 996 alpha line 997 alpha line 998 alpha line 999]" {
		t.Errorf("Grep filter = %v", msgs)
	}
	both := read(t, st, logs.Query{Function: "alpha", Grep: "line 99", RequestID: "req-9"})
	if len(both) != 2 || both[0].Message != "alpha line 99" || both[1].Message != "alpha line 999" {
		t.Errorf("RequestID and Grep = %v", both)
	}
	if got := read(t, st, logs.Query{Function: "alpha", Grep: "no such text"}); len(got) != 0 {
		t.Errorf("Grep for absent text = %d entries", len(got))
	}

	// A function whose name is a prefix of another's sees only its own.
	if got := read(t, st, logs.Query{Function: "alph"}); len(got) != 0 {
		t.Errorf("read %d entries for a prefix of a name", len(got))
	}
}

func TestReadEmptyReturnsPromptly(t *testing.T) {
	st := openStore(t)
	start := time.Now()
	if got := read(t, st, logs.Query{Function: "nobody"}); len(got) != 0 {
		t.Errorf("read %d entries of a function with none", len(got))
	}
	// Even when other functions have entries.
	s := startSink(t, st)
	s.Write(entry("somebody", 1))
	closeSink(t, s)
	if got := read(t, st, logs.Query{Function: "nobody"}); len(got) != 0 {
		t.Errorf("read %d entries of a function with none", len(got))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("reading nothing took %v", d)
	}
}

func TestReadSince(t *testing.T) {
	st := openStore(t)
	s := startSink(t, st)
	for i := range 5 {
		s.Write(entry("fn", i))
	}
	closeSink(t, s)
	old := read(t, st, logs.Query{Function: "fn"})
	if len(old) != 5 {
		t.Fatalf("read %d entries, want 5", len(old))
	}

	// The stream's time is when the store received the message: the first
	// five were acknowledged before Close returned.
	mark := time.Now()
	s2 := logs.NewSink(st.JS, 0, testserver.Logger(t))
	s2.Start()
	for i := 5; i < 8; i++ {
		s2.Write(entry("fn", i))
	}
	closeSink(t, s2)

	got := read(t, st, logs.Query{Function: "fn", Since: mark})
	var msgs []string
	for _, e := range got {
		msgs = append(msgs, e.Message)
	}
	if fmt.Sprint(msgs) != "[fn line 5 fn line 6 fn line 7]" {
		t.Errorf("since the mark: %v, want lines 5..7", msgs)
	}
	if got := read(t, st, logs.Query{Function: "fn", Since: time.Now().Add(-time.Hour)}); len(got) != 8 {
		t.Errorf("since an hour ago: %d entries, want 8", len(got))
	}
	if got := read(t, st, logs.Query{Function: "fn", Since: time.Now().Add(time.Hour)}); len(got) != 0 {
		t.Errorf("since an hour from now: %d entries, want 0", len(got))
	}
	// Until cuts by the entries' own times.
	cut := old[2].Time
	if got := read(t, st, logs.Query{Function: "fn", Until: cut}); len(got) != 3 || got[2].Message != old[2].Message {
		t.Errorf("until the third entry: %d entries", len(got))
	}
}

func TestReadFollow(t *testing.T) {
	st := openStore(t)
	s := startSink(t, st)
	s.Write(entry("live", 0))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []string
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	done := make(chan error, 1)
	go func() {
		done <- logs.Read(ctx, st.JS, logs.Query{Function: "live", Follow: true, Grep: "line"}, func(e *logs.Entry) error {
			mu.Lock()
			got = append(got, e.Message)
			mu.Unlock()
			return nil
		})
	}()
	testserver.Eventually(t, 10*time.Second, "the entry written before following", func() bool { return count() == 1 })
	for i := 1; i <= 3; i++ {
		s.Write(entry("live", i))
		s.Write(entry("other", i))
		testserver.Eventually(t, 10*time.Second, fmt.Sprintf("entry %d", i), func() bool { return count() == i+1 })
	}
	select {
	case err := <-done:
		t.Fatalf("Read with Follow returned before cancel: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Read with Follow after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read with Follow did not return after cancel")
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != "[live line 0 live line 1 live line 2 live line 3]" {
		t.Errorf("followed %v", got)
	}
}

func TestReadFollowWithNothingYet(t *testing.T) {
	st := openStore(t)
	s := startSink(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- logs.Read(ctx, st.JS, logs.Query{Function: "later", Follow: true}, func(e *logs.Entry) error {
			select {
			case first <- e.Message:
			default:
			}
			return nil
		})
	}()
	// Keep writing until the reader (started at some unknown point) sees
	// one; with DeliverAll it sees the first anyway.
	s.Write(entry("later", 1))
	select {
	case msg := <-first:
		if msg != "later line 1" {
			t.Errorf("first followed entry = %q", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no entry followed")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Read with Follow did not return after cancel")
	}
}

func TestReadCallbackError(t *testing.T) {
	st := openStore(t)
	s := startSink(t, st)
	for i := range 10 {
		s.Write(entry("fn", i))
	}
	closeSink(t, s)
	stop := errors.New("enough")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := 0
	err := logs.Read(ctx, st.JS, logs.Query{Function: "fn"}, func(*logs.Entry) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("Read = %v after %d entries, want the callback's error after 3", err, n)
	}
}

func TestCloseIdempotentAndBounded(t *testing.T) {
	st := openStore(t)
	s := startSink(t, st)
	closeSink(t, s)
	closeSink(t, s) // again: returns at once

	// A sink never started cannot flush: Close gives up when ctx is done.
	idle := logs.NewSink(st.JS, 1, testserver.Logger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := idle.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close of a sink never started = %v, want the context's error", err)
	}
}

// Large entries are split across store messages and still read back whole
// and in order.
func TestLargeEntries(t *testing.T) {
	st := openStore(t)
	s := startSink(t, st)
	big := strings.Repeat("x", 100<<10)
	for i := range 10 {
		e := entry("big", i)
		e.Message = fmt.Sprintf("%d %s", i, big)
		s.Write(e)
	}
	closeSink(t, s)
	got := read(t, st, logs.Query{Function: "big"})
	if len(got) != 10 {
		t.Fatalf("read %d entries, want 10", len(got))
	}
	for i, e := range got {
		if e.Message != fmt.Sprintf("%d %s", i, big) {
			t.Fatalf("entry %d came back wrong (%d bytes)", i, len(e.Message))
		}
	}
}
