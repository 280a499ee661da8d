package metering_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/metering"
	"github.com/ternhq/tern/internal/store"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// How a fakePub fails while failing.
const (
	failPublish = "publish error" // PublishAsync returns an error
	failAck     = "ack error"     // the ack future reports an error
	failNoAck   = "no ack"        // the ack never comes
)

// fakePub is a Publisher that fails (in mode) while failing is set.
type fakePub struct {
	mode    string
	failing atomic.Bool

	mu       sync.Mutex
	attempts int
	stored   []string // subject + "\n" + data of acknowledged messages
}

type fakeFuture struct {
	ok  chan *jetstream.PubAck
	err chan error
	msg *nats.Msg
}

func (f *fakeFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *fakeFuture) Err() <-chan error            { return f.err }
func (f *fakeFuture) Msg() *nats.Msg               { return f.msg }

func (p *fakePub) PublishAsync(subject string, data []byte, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	f := &fakeFuture{ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1), msg: &nats.Msg{Subject: subject, Data: data}}
	if p.failing.Load() {
		switch p.mode {
		case failPublish:
			return nil, errors.New("nats: no responders available for request")
		case failAck:
			f.err <- errors.New("nats: stream unavailable")
		case failNoAck:
		}
		return f, nil
	}
	p.stored = append(p.stored, subject+"\n"+string(data))
	f.ok <- &jetstream.PubAck{Stream: store.UsageStream}
	return f, nil
}

func (p *fakePub) Attempts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts
}

// StoredRecords counts the records in acknowledged messages.
func (p *fakePub) StoredRecords() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.stored {
		_, data, _ := strings.Cut(m, "\n")
		n += bytes.Count([]byte(data), []byte{'\n'})
	}
	return n
}

func fastRetry(max int) metering.SinkConfig {
	return metering.SinkConfig{MaxBuffered: max, Linger: time.Millisecond, AckTimeout: 20 * time.Millisecond,
		RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond}
}

func rec(fn string, i int) *metering.Record {
	return &metering.Record{Function: fn, Version: 1, RequestID: "r" + string(rune('a'+i%26)), Trigger: metering.TriggerAPI,
		Start: time.Now().UTC(), DurationUS: 1500, BilledMS: 2, MemoryMB: 128, Outcome: metering.OutcomeSuccess}
}

func closeSink(t *testing.T, s *metering.Sink) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("close sink: %v", err)
	}
}

func TestSinkRetriesWhileThereIsRoom(t *testing.T) {
	for _, mode := range []string{failPublish, failAck, failNoAck} {
		t.Run(mode, func(t *testing.T) {
			pub := &fakePub{mode: mode}
			pub.failing.Store(true)
			s := metering.NewSink(pub, fastRetry(1000), testLogger(t))
			s.Start()
			defer closeSink(t, s)
			const n = 300
			for i := range n {
				s.Record(rec([]string{"a", "b", "c"}[i%3], i))
			}
			// Several failed attempts: nothing lost, nothing published.
			waitFor(t, "retries", func() bool { return pub.Attempts() >= 10 })
			if got, want := s.Stats(), (metering.SinkStats{Buffered: n}); got != want {
				t.Fatalf("while failing: Stats = %+v, want %+v", got, want)
			}
			pub.failing.Store(false)
			waitFor(t, "records published", func() bool { return s.Stats().Published == n })
			if got, want := s.Stats(), (metering.SinkStats{Published: n}); got != want {
				t.Fatalf("after recovery: Stats = %+v, want %+v", got, want)
			}
			if got := pub.StoredRecords(); got != n {
				t.Fatalf("store holds %d records, want %d", got, n)
			}
		})
	}
}

func TestSinkCountsLossWhenFull(t *testing.T) {
	pub := &fakePub{mode: failPublish}
	pub.failing.Store(true)
	const max = 10
	s := metering.NewSink(pub, fastRetry(max), testLogger(t))
	s.Start()
	defer closeSink(t, s)

	steps := []struct {
		record int
		want   metering.SinkStats
	}{
		{7, metering.SinkStats{Buffered: 7}},
		{8, metering.SinkStats{Buffered: 10, Lost: 5}},
		{3, metering.SinkStats{Buffered: 10, Lost: 8}},
	}
	for _, st := range steps {
		for i := range st.record {
			s.Record(rec("fn", i))
		}
		if got := s.Stats(); got != st.want {
			t.Fatalf("after %d more records: Stats = %+v, want %+v", st.record, got, st.want)
		}
	}
	waitFor(t, "a retry", func() bool { return pub.Attempts() >= 3 })
	pub.failing.Store(false)
	waitFor(t, "records published", func() bool { return s.Stats().Published == max })
	if got, want := s.Stats(), (metering.SinkStats{Published: max, Lost: 8}); got != want {
		t.Fatalf("after recovery: Stats = %+v, want %+v", got, want)
	}
	// Room again.
	for i := range 4 {
		s.Record(rec("fn", i))
	}
	waitFor(t, "more records published", func() bool { return s.Stats().Published == max+4 })
	if got := pub.StoredRecords(); got != max+4 {
		t.Fatalf("store holds %d records, want %d", got, max+4)
	}
}

func TestSinkCloseGivesUpWithContext(t *testing.T) {
	pub := &fakePub{mode: failAck}
	pub.failing.Store(true)
	s := metering.NewSink(pub, fastRetry(100), testLogger(t))
	s.Start()
	for i := range 20 {
		s.Record(rec("fn", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want deadline exceeded", err)
	}
	if got, want := s.Stats(), (metering.SinkStats{Lost: 20}); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	s.Record(rec("fn", 0)) // after Close: counted, never panics
	if got := s.Stats().Lost; got != 21 {
		t.Fatalf("Lost after Close = %d, want 21", got)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSinkCloseFlushes(t *testing.T) {
	pub := &fakePub{}
	s := metering.NewSink(pub, metering.SinkConfig{Linger: time.Hour}, testLogger(t))
	s.Start()
	for i := range 50 {
		s.Record(rec("fn", i))
	}
	closeSink(t, s)
	if got, want := s.Stats(), (metering.SinkStats{Published: 50}); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
}

type countingObserver struct{ n atomic.Int64 }

func (o *countingObserver) Record(*metering.Record) { o.n.Add(1) }

func TestSinkObserversAndInvalidNames(t *testing.T) {
	pub := &fakePub{}
	obs := &countingObserver{}
	cfg := fastRetry(100)
	cfg.Observers = []metering.Recorder{obs}
	s := metering.NewSink(pub, cfg, testLogger(t))
	s.Start()
	s.Record(rec("good", 0))
	s.Record(rec("bad.name", 1))
	s.Record(rec("", 2))
	s.Record(nil)
	if got := obs.n.Load(); got != 3 {
		t.Fatalf("observer saw %d records, want 3", got)
	}
	waitFor(t, "all accounted for", func() bool { st := s.Stats(); return st.Buffered == 0 && st.Published+st.Lost == 3 })
	if got, want := s.Stats(), (metering.SinkStats{Published: 1, Lost: 2}); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	closeSink(t, s)
}

// BenchmarkSinkRecord measures Record on the invocation path when the
// record is taken (the buffer has room; the publisher is not running, so
// nothing competes for the lock but other callers).
func BenchmarkSinkRecord(b *testing.B) {
	s := metering.NewSink(discardPub{}, metering.SinkConfig{MaxBuffered: b.N + 1}, slog.New(slog.DiscardHandler))
	r := rec("fn", 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Record(r)
		}
	})
	b.StopTimer()
	if st := s.Stats(); st.Buffered != uint64(b.N) {
		b.Fatalf("stats %+v after %d records", st, b.N)
	}
}

// BenchmarkSinkPublish measures the publisher: records encoded and
// acknowledged per second, one goroutine.
func BenchmarkSinkPublish(b *testing.B) {
	s := metering.NewSink(discardPub{}, metering.SinkConfig{MaxBuffered: 1 << 30}, slog.New(slog.DiscardHandler))
	r := rec("fn", 0)
	for range b.N {
		s.Record(r)
	}
	b.ResetTimer()
	s.Start()
	if err := s.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	if st := s.Stats(); st.Published != uint64(b.N) {
		b.Fatalf("stats %+v after %d records", st, b.N)
	}
}

// discardPub acknowledges every message at once and keeps nothing.
type discardPub struct{}

func (discardPub) PublishAsync(subject string, data []byte, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f := &fakeFuture{ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	f.ok <- &jetstream.PubAck{}
	return f, nil
}
