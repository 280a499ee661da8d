package logs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/store"
)

// Publisher is the part of JetStream the Sink needs.
type Publisher interface {
	PublishAsync(subject string, data []byte, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
	PublishAsyncComplete() <-chan struct{}
}

var _ Publisher = (jetstream.JetStream)(nil)

type item struct {
	e      Entry
	report *Report
}

// Sink batches entries to the log stream off the invocation path.
type Sink struct {
	pub     Publisher
	log     *slog.Logger
	ch      chan item
	dropped atomic.Uint64
	failed  atomic.Uint64

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// NewSink returns a Sink with room for buffer entries in flight.
func NewSink(pub Publisher, buffer int, log *slog.Logger) *Sink {
	if buffer <= 0 {
		buffer = 8192
	}
	return &Sink{pub: pub, log: log, ch: make(chan item, buffer), stop: make(chan struct{}), done: make(chan struct{})}
}

// Start runs the publishing goroutine until Close.
func (s *Sink) Start() { go s.run() }

// Write queues e without blocking; when the buffer is full, e is dropped
// and counted.
func (s *Sink) Write(e Entry) { s.put(item{e: e}) }

// WriteReport queues a REPORT line whose text is made by the Sink.
func (s *Sink) WriteReport(e Entry, r *Report) { s.put(item{e: e, report: r}) }

func (s *Sink) put(it item) {
	select {
	case s.ch <- it:
	default:
		s.dropped.Add(1)
	}
}

// Dropped is how many entries were dropped because the buffer was full;
// Failed how many the store refused.
func (s *Sink) Dropped() uint64 { return s.dropped.Load() }
func (s *Sink) Failed() uint64  { return s.failed.Load() }

func (s *Sink) run() {
	defer close(s.done)
	batch := make([]item, 0, 256)
	for {
		select {
		case it := <-s.ch:
			batch = append(batch[:0], it)
		fill:
			for len(batch) < cap(batch) {
				select {
				case it := <-s.ch:
					batch = append(batch, it)
				default:
					break fill
				}
			}
			s.publish(batch)
		case <-s.stop:
			// Flush what is queued, then stop.
			for {
				select {
				case it := <-s.ch:
					s.publish([]item{it})
				default:
					return
				}
			}
		}
	}
}

func (s *Sink) publish(batch []item) {
	for i := range batch {
		it := &batch[i]
		if it.report != nil {
			it.e.Message = it.report.Line(it.e.RequestID)
		}
		data, err := json.Marshal(&it.e)
		if err != nil {
			s.failed.Add(1)
			continue
		}
		if _, err := s.pub.PublishAsync(store.LogsSubjectPrefix+it.e.Function, data); err != nil {
			if n := s.failed.Add(1); n == 1 || n%1000 == 0 {
				s.log.Warn("logs: publish failed", "err", err, "failed_total", n)
			}
		}
	}
	select {
	case <-s.pub.PublishAsyncComplete():
	case <-time.After(5 * time.Second):
		s.log.Warn("logs: store slow to acknowledge log entries")
	}
}

// Close flushes queued entries and stops the Sink, waiting at most until ctx
// is done.
func (s *Sink) Close(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	select {
	case <-s.done:
	case <-ctx.Done():
		return fmt.Errorf("logs: flush: %w", ctx.Err())
	}
	if d := s.dropped.Load(); d > 0 {
		s.log.Warn("logs: entries dropped because the buffer was full", "dropped", d)
	}
	return nil
}
