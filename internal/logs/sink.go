package logs

import (
	"bytes"
	"context"
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
	failed  atomic.Int64

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}

	// Owned by the run goroutine: when drops were last reported.
	reportedDrops uint64
	reportedAt    time.Time
}

// dropReportEvery bounds how often a warning about dropped entries is logged.
const dropReportEvery = 10 * time.Second

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

// WriteReport queues an invocation's END and REPORT lines; the Sink makes
// their text.
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
func (s *Sink) Failed() int64   { return s.failed.Load() }

// linger is how long the Sink waits for more entries after the first one of
// a batch: a few milliseconds of log latency buy one store message for many
// entries instead of one each.
const linger = 10 * time.Millisecond

// maxMessage bounds one store message (NATS refuses payloads over 1 MB).
const maxMessage = 256 << 10

func (s *Sink) run() {
	defer close(s.done)
	batch := make([]item, 0, 512)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case it := <-s.ch:
			// Sleep through the linger without listening, so that entries
			// arriving meanwhile do not each wake this goroutine; then take
			// what came.
			batch = append(batch[:0], it)
			timer.Reset(linger)
			select {
			case <-timer.C:
			case <-s.stop:
				timer.Stop()
			}
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
				batch = batch[:0]
			drain:
				for len(batch) < cap(batch) {
					select {
					case it := <-s.ch:
						batch = append(batch, it)
					default:
						break drain
					}
				}
				if len(batch) == 0 {
					return
				}
				s.publish(batch)
			}
		}
	}
}

// publish sends a batch as one message per function: its entries as JSON
// lines, split where a message would grow past maxMessage.
func (s *Sink) publish(batch []item) {
	if d := s.dropped.Load(); d != s.reportedDrops && time.Since(s.reportedAt) >= dropReportEvery {
		s.log.Warn("logs: entries dropped because the buffer was full", "dropped_total", d, "since_last_report", d-s.reportedDrops)
		s.reportedDrops, s.reportedAt = d, time.Now()
	}
	bufs := make(map[string][]byte, 4)
	for i := range batch {
		it := &batch[i]
		buf := bufs[it.e.Function]
		if len(buf) > maxMessage {
			s.send(it.e.Function, buf)
			buf = nil
		}
		if it.report != nil {
			// END, then REPORT.
			end := it.e
			end.Message = "END RequestId: " + it.e.RequestID
			buf = append(end.appendJSON(buf), '\n')
			it.e.Message = it.report.Line(it.e.RequestID)
		}
		buf = append(it.e.appendJSON(buf), '\n')
		bufs[it.e.Function] = buf
	}
	for fn, buf := range bufs {
		s.send(fn, buf)
	}
	select {
	case <-s.pub.PublishAsyncComplete():
	case <-time.After(5 * time.Second):
		s.log.Warn("logs: store slow to acknowledge log entries")
	}
}

func (s *Sink) send(function string, data []byte) {
	if _, err := s.pub.PublishAsync(store.LogsSubjectPrefix+function, data); err != nil {
		lost := int64(bytes.Count(data, []byte{'\n'}))
		if n := s.failed.Add(lost); n == lost || n/1000 != (n-lost)/1000 {
			s.log.Warn("logs: publish failed", "err", err, "failed_total", n)
		}
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
