package logs_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/store"
	"github.com/ternhq/tern/internal/testserver"
)

// syncBuffer is a bytes.Buffer a logger and a test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Platform lines never wait: past twice the buffer they are dropped, and
// every one is counted, in Drops and in the server's warning.
func TestPlatformLinesOverflowCounted(t *testing.T) {
	st := openStore(t)
	var warn syncBuffer
	s := logs.NewSink(st.JS, 4096, slog.New(slog.NewTextHandler(&warn, nil))) // not started: nothing drains it
	const n = 200
	var msgBytes uint64
	for i := range n {
		e := entry("fn", i)
		s.Write(e) // returns at once, room or not
		msgBytes += uint64(len(e.Message) + 1)
	}
	d := s.Drops()[logs.DropOverflow]
	if d.Lines == 0 || d.Lines >= n {
		t.Fatalf("dropped %d of %d lines; want some dropped and some kept", d.Lines, n)
	}
	s.Start()
	closeSink(t, s)
	got := read(t, st, logs.Query{Function: "fn"})
	if uint64(len(got))+d.Lines != n {
		t.Errorf("kept %d + dropped %d = %d, want %d", len(got), d.Lines, uint64(len(got))+d.Lines, n)
	}
	var keptBytes uint64
	for i, e := range got {
		keptBytes += uint64(len(e.Message) + 1)
		if want := fmt.Sprintf("fn line %d", i); e.Message != want {
			t.Fatalf("entry %d is %q, want %q: the first ones are kept, in order", i, e.Message, want)
		}
	}
	if keptBytes+d.Bytes != msgBytes {
		t.Errorf("bytes kept %d + dropped %d != written %d", keptBytes, d.Bytes, msgBytes)
	}
	if want := fmt.Sprintf("lines=%d bytes=%d overflow.lines=%d", d.Lines, d.Bytes, d.Lines); !strings.Contains(warn.String(), want) {
		t.Errorf("server log lacks %q:\n%s", want, warn.String())
	}
}

// Output waits for room instead of being dropped, and goes on once the
// sink drains; with abort closed it gives up and says so.
func TestWriteOutputWaitsForRoom(t *testing.T) {
	st := openStore(t)
	s := logs.NewSink(st.JS, 1024, testserver.Logger(t)) // not started yet
	never := make(chan struct{})
	aborted := make(chan struct{})
	close(aborted)
	// Fill it: a line that finds no room, with abort closed, is refused
	// at once and not counted by the sink (the caller counts what it
	// loses).
	queued := 0
	for s.WriteOutput(entry("fn", queued), aborted) {
		queued++
	}
	if queued == 0 {
		t.Fatal("an empty sink refused a line")
	}
	if d := s.Dropped(); d != 0 {
		t.Errorf("the sink counted %d drops of its own", d)
	}
	// One that may wait returns once the sink runs (not before: nothing
	// drains it).
	done := make(chan bool, 1)
	go func() { done <- s.WriteOutput(entry("fn", queued), never) }()
	select {
	case ok := <-done:
		t.Fatalf("WriteOutput returned %v while the buffer was full and nothing drained it", ok)
	default:
	}
	s.Start()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("WriteOutput gave up although abort was never closed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WriteOutput still waits after the sink started")
	}
	queued++
	closeSink(t, s)
	if got := read(t, st, logs.Query{Function: "fn"}); len(got) != queued {
		t.Errorf("read %d entries, want %d", len(got), queued)
	}
	// Closed: output is refused, platform lines are counted as dropped.
	if s.WriteOutput(entry("fn", 0), never) {
		t.Error("a closed sink took output")
	}
	s.Write(entry("fn", 0))
	if d := s.Drops()[logs.DropOverflow]; d.Lines != 1 {
		t.Errorf("a platform line after Close: overflow %+v, want 1 line", d)
	}
}

// Many writers at once, each pushing more than the buffer holds: every
// line is kept, in each writer's order.
func TestWriteOutputConcurrentAllKept(t *testing.T) {
	st := openStore(t)
	s := logs.NewSink(st.JS, 16<<10, testserver.Logger(t))
	s.Start()
	const writers, per = 4, 2000
	never := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				e := entry("fn", i)
				e.Instance = fmt.Sprint("w", w)
				e.Message = fmt.Sprintf("%d %s", i, strings.Repeat("y", 180))
				if !s.WriteOutput(e, never) {
					t.Errorf("writer %d: line %d refused", w, i)
					return
				}
			}
		})
	}
	wg.Wait()
	closeSink(t, s)
	got := read(t, st, logs.Query{Function: "fn"})
	if len(got) != writers*per || s.Dropped() != 0 {
		t.Fatalf("read %d entries, dropped %d; want %d and none", len(got), s.Dropped(), writers*per)
	}
	next := map[string]int{}
	for _, e := range got {
		if want := fmt.Sprintf("%d ", next[e.Instance]); !strings.HasPrefix(e.Message, want) {
			t.Fatalf("writer %s: got %.10q, want line %d next", e.Instance, e.Message, next[e.Instance])
		}
		next[e.Instance]++
	}
}

// WriteDropped counts what the caller lost and writes one entry with the
// exact numbers; the server's warning has them too.
func TestWriteDroppedMarker(t *testing.T) {
	st := openStore(t)
	var warn syncBuffer
	s := logs.NewSink(st.JS, 0, slog.New(slog.NewTextHandler(&warn, nil)))
	s.Start()
	e := entry("fn", 1)
	s.WriteDropped(e, 15000, 3000000, logs.DropLimit)
	s.WriteDropped(e, 7, 700, logs.DropStopped)
	s.WriteDropped(e, 0, 0, logs.DropLimit) // nothing lost: no entry
	closeSink(t, s)
	drops := s.Drops()
	if drops[logs.DropLimit] != (logs.Drops{Lines: 15000, Bytes: 3000000}) || drops[logs.DropStopped] != (logs.Drops{Lines: 7, Bytes: 700}) {
		t.Errorf("Drops = %+v", drops)
	}
	if s.Dropped() != 15007 {
		t.Errorf("Dropped = %d, want 15007", s.Dropped())
	}
	got := read(t, st, logs.Query{Function: "fn"})
	var msgs []string
	for _, g := range got {
		if g.Stream != logs.StreamPlatform || g.RequestID != e.RequestID {
			t.Errorf("marker %+v: want a platform line of the request", g)
		}
		msgs = append(msgs, g.Message)
	}
	want := []string{
		"15000 lines (3000000 bytes) dropped: the invocation's output passed its limit",
		"7 lines (700 bytes) dropped: the instance stopped before its output was stored",
	}
	if fmt.Sprint(msgs) != fmt.Sprint(want) {
		t.Errorf("markers %q, want %q", msgs, want)
	}
	if !strings.Contains(warn.String(), "lines=15007 bytes=3000700 limit.lines=15000 limit.bytes=3000000 stopped.lines=7 stopped.bytes=700") {
		t.Errorf("server log:\n%s", warn.String())
	}
}

// What the store refuses is counted exactly, by line.
func TestStoreRefusalCounted(t *testing.T) {
	st := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.JS.DeleteStream(ctx, store.LogsStream); err != nil {
		t.Fatal(err)
	}
	s := startSink(t, st)
	for i := range 300 {
		s.Write(entry("fn", i))
	}
	s.WriteReport(entry("fn", 300), &logs.Report{})
	closeSink(t, s)
	if d := s.Drops()[logs.DropStore]; d.Lines != 302 {
		t.Errorf("store drops %+v, want 302 lines (300, END and REPORT)", d)
	}
}

// BenchmarkSinkOutput measures how many lines of output a Sink takes into
// a real embedded store, start to acknowledged: b.N lines of 200 B from
// one writer, waiting for room as an instance's output reader does.
func BenchmarkSinkOutput(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Dir: b.TempDir(), LogsMaxAge: time.Hour, LogsMaxBytes: 1 << 30}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	s := logs.NewSink(st.JS, 0, slog.New(slog.DiscardHandler))
	s.Start()
	msg := strings.Repeat("z", 199)
	never := make(chan struct{})
	b.SetBytes(200)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.WriteOutput(logs.Entry{Time: time.Now(), Function: "bench", Version: 1, RequestID: "8f0e3c52-7d5a-4a51-9d8e-2b6f0c1a9e77",
			Instance: "inst", Stream: logs.StreamStdout, Message: msg}, never)
	}
	if err := s.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if s.Dropped() != 0 {
		b.Fatalf("dropped %d", s.Dropped())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
