package logs

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/store"
)

// Publisher is the part of JetStream the Sink needs.
type Publisher interface {
	PublishAsync(subject string, data []byte, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

var _ Publisher = (jetstream.JetStream)(nil)

// Why lines were dropped: the label of tern_log_lines_dropped_total and
// the key of Drops.
const (
	// DropLimit: an invocation printed more than its output limit.
	DropLimit = "limit"
	// DropStopped: the instance was stopped (timed out, killed, shut
	// down) while its output waited for room in the Sink.
	DropStopped = "stopped"
	// DropOverflow: platform lines (START, END, REPORT, markers) found the
	// Sink full past its overflow room, or closed.
	DropOverflow = "overflow"
	// DropStore: the store refused or did not acknowledge a message.
	DropStore = "store"
)

// DropReasons lists every reason, in a fixed order.
var DropReasons = [...]string{DropLimit, DropStopped, DropOverflow, DropStore}

func reasonIndex(r string) int {
	for i, v := range DropReasons {
		if v == r {
			return i
		}
	}
	return -1
}

// Drops counts dropped lines and their bytes (each line's text and its
// newline).
type Drops struct{ Lines, Bytes uint64 }

type item struct {
	e      Entry
	report *Report
	size   int
}

// entryOverhead is what an entry costs in the buffer besides its message
// (its fields and JSON).
const entryOverhead = 160

// Sink batches entries to the log stream off the invocation path.
//
// Its buffer is bounded in bytes. Output lines (WriteOutput) wait for room,
// so a function that prints faster than the store takes its lines is
// slowed, not cut; platform lines (Write, WriteReport) never wait: they
// may use as much again as overflow room, past which they are dropped.
// Every dropped line is counted, by reason.
type Sink struct {
	pub   Publisher
	log   *slog.Logger
	limit int // bytes of queued entries output may fill

	mu     sync.Mutex
	queue  []item
	bytes  int           // size of queue
	room   chan struct{} // closed (and replaced) when the queue is taken
	closed bool          // no more entries are taken

	wake     chan struct{} // capacity 1: the queue has entries
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}

	drops [len(DropReasons)]struct{ lines, bytes atomic.Uint64 }

	// Owned by the run goroutine: what was last reported, and when.
	reported   [len(DropReasons)]Drops
	reportedAt time.Time
}

// dropReportEvery bounds how often a warning about dropped lines is logged.
const dropReportEvery = 10 * time.Second

// DefaultBuffer is the Sink's buffer when NewSink is given 0.
const DefaultBuffer = 4 << 20

// NewSink returns a Sink whose buffer holds about buffer bytes of entries
// (0: DefaultBuffer).
func NewSink(pub Publisher, buffer int, log *slog.Logger) *Sink {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	return &Sink{
		pub: pub, log: log, limit: buffer,
		room: make(chan struct{}), wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// Start runs the publishing goroutine until Close.
func (s *Sink) Start() { go s.run() }

// Write queues a platform line without blocking; past the overflow room
// it is dropped and counted.
func (s *Sink) Write(e Entry) { s.put(item{e: e, size: len(e.Message) + entryOverhead}, 1) }

// WriteReport queues an invocation's END and REPORT lines without
// blocking; the Sink makes their text.
func (s *Sink) WriteReport(e Entry, r *Report) {
	s.put(item{e: e, report: r, size: 2*entryOverhead + 200}, 2)
}

// WriteDropped counts lines that were dropped (reason: DropLimit or
// DropStopped) and queues, as a platform line, the entry that says so:
// e as a platform line with the message "N lines (M bytes) dropped: <why>".
func (s *Sink) WriteDropped(e Entry, lines, bytes int64, reason string) {
	if lines <= 0 {
		return
	}
	s.count(reason, uint64(lines), uint64(bytes))
	e.Stream, e.Message = StreamPlatform, DroppedMessage(lines, bytes, reason)
	s.Write(e)
}

// DroppedMessage is the text of the entry that marks dropped lines.
func DroppedMessage(lines, bytes int64, reason string) string {
	why := reason
	switch reason {
	case DropLimit:
		why = "the invocation's output passed its limit"
	case DropStopped:
		why = "the instance stopped before its output was stored"
	}
	return strconv.FormatInt(lines, 10) + " lines (" + strconv.FormatInt(bytes, 10) + " bytes) dropped: " + why
}

func (s *Sink) put(it item, lines uint64) {
	s.mu.Lock()
	if s.closed || s.bytes > 2*s.limit {
		s.mu.Unlock()
		n := len(it.e.Message) + 1
		if it.report != nil {
			n = len("END RequestId: ") + len(it.e.RequestID) + 1 + len(it.report.Line(it.e.RequestID)) + 1
		}
		s.count(DropOverflow, lines, uint64(n))
		return
	}
	s.queue = append(s.queue, it)
	s.bytes += it.size
	s.mu.Unlock()
	s.signal()
}

// WriteOutput queues a line of a function's output, waiting while the
// buffer is full, until abort is closed. It reports whether the line was
// queued; a line that was not is the caller's to count (WriteDropped).
func (s *Sink) WriteOutput(e Entry, abort <-chan struct{}) bool {
	it := item{e: e, size: len(e.Message) + entryOverhead}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return false
		}
		if s.bytes+it.size <= s.limit || s.bytes == 0 {
			s.queue = append(s.queue, it)
			s.bytes += it.size
			s.mu.Unlock()
			s.signal()
			return true
		}
		room := s.room
		s.mu.Unlock()
		select {
		case <-room:
		case <-abort:
			return false
		}
	}
}

func (s *Sink) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Sink) count(reason string, lines, bytes uint64) {
	i := reasonIndex(reason)
	if i < 0 {
		return
	}
	s.drops[i].lines.Add(lines)
	s.drops[i].bytes.Add(bytes)
}

// Drops reports the lines dropped so far, by reason (DropReasons).
func (s *Sink) Drops() map[string]Drops {
	out := make(map[string]Drops, len(DropReasons))
	for i, r := range DropReasons {
		out[r] = Drops{Lines: s.drops[i].lines.Load(), Bytes: s.drops[i].bytes.Load()}
	}
	return out
}

// Dropped is how many lines were dropped for any reason.
func (s *Sink) Dropped() uint64 {
	var n uint64
	for i := range s.drops {
		n += s.drops[i].lines.Load()
	}
	return n
}

// Buffered is how many bytes of entries wait to be published.
func (s *Sink) Buffered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// linger is how long the Sink waits for more entries after the first one of
// a batch: a few milliseconds of log latency buy one store message for many
// entries instead of one each. A Sink that is behind does not linger.
const linger = 10 * time.Millisecond

// behind is the buffer's fill, in bytes, above which the Sink publishes at
// once.
const behind = 64 << 10

// maxMessage bounds one store message (NATS refuses payloads over 1 MB).
const maxMessage = 512 << 10

// ackWait bounds the wait for the store to acknowledge a batch.
const ackWait = 30 * time.Second

func (s *Sink) run() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var spare []item
	stopping := false
	for {
		if !stopping {
			select {
			case <-s.wake:
			case <-s.stop:
				stopping = true
			}
		}
		if !stopping && s.Buffered() < behind {
			// Sleep through the linger without listening, so that entries
			// arriving meanwhile do not each wake this goroutine.
			timer.Reset(linger)
			select {
			case <-timer.C:
			case <-s.stop:
				timer.Stop()
				stopping = true
			}
		}
		// Take the whole queue: writers waiting for room go on filling a
		// new one while this batch is published.
		s.mu.Lock()
		batch := s.queue
		s.queue, s.bytes = spare[:0], 0
		close(s.room)
		s.room = make(chan struct{})
		if stopping && len(batch) == 0 {
			s.closed = true
			s.mu.Unlock()
			s.reportDrops(true)
			return
		}
		s.mu.Unlock()
		if len(batch) > 0 {
			s.publish(batch)
		}
		s.reportDrops(false)
		clear(batch) // let go of the messages
		spare = batch
	}
}

// reportDrops logs, at most every dropReportEvery (or when final), how
// many lines were dropped since the last report, by reason.
func (s *Sink) reportDrops(final bool) {
	if !final && time.Since(s.reportedAt) < dropReportEvery {
		return
	}
	var attrs []any
	var lines, bytes uint64
	for i, r := range DropReasons {
		d := Drops{Lines: s.drops[i].lines.Load(), Bytes: s.drops[i].bytes.Load()}
		if d.Lines == s.reported[i].Lines {
			continue
		}
		l, b := d.Lines-s.reported[i].Lines, d.Bytes-s.reported[i].Bytes
		lines += l
		bytes += b
		attrs = append(attrs, slog.Group(r, "lines", l, "bytes", b))
		s.reported[i] = d
	}
	if lines == 0 {
		return
	}
	s.reportedAt = time.Now()
	attrs = append([]any{"lines", lines, "bytes", bytes}, attrs...)
	s.log.Warn("logs: function output lines dropped", attrs...)
}

// pending is one published message waiting for its acknowledgement.
type pending struct {
	ack          jetstream.PubAckFuture
	lines, bytes uint64
}

// publish sends a batch as messages of one function each: its entries as
// JSON lines, split where a message would grow past maxMessage. It waits
// for the store to acknowledge them, counting what it refused.
func (s *Sink) publish(batch []item) {
	type buf struct {
		data         []byte
		lines, bytes uint64
	}
	bufs := make(map[string]*buf, 4)
	var acks []pending
	send := func(function string, b *buf) {
		if len(b.data) == 0 {
			return
		}
		f, err := s.pub.PublishAsync(store.LogsSubjectPrefix+function, b.data)
		if err != nil {
			s.count(DropStore, b.lines, b.bytes)
		} else {
			acks = append(acks, pending{ack: f, lines: b.lines, bytes: b.bytes})
		}
		*b = buf{}
	}
	for i := range batch {
		it := &batch[i]
		b := bufs[it.e.Function]
		if b == nil {
			b = &buf{}
			bufs[it.e.Function] = b
		}
		if len(b.data)+len(it.e.Message)+entryOverhead > maxMessage {
			send(it.e.Function, b)
		}
		if it.report != nil {
			// END, then REPORT.
			end := it.e
			end.Message = "END RequestId: " + it.e.RequestID
			b.data = append(end.appendJSON(b.data), '\n')
			b.lines++
			b.bytes += uint64(len(end.Message) + 1)
			it.e.Message = it.report.Line(it.e.RequestID)
		}
		b.data = append(it.e.appendJSON(b.data), '\n')
		b.lines++
		b.bytes += uint64(len(it.e.Message) + 1)
	}
	for fn, b := range bufs {
		send(fn, b)
	}
	deadline := time.NewTimer(ackWait)
	defer deadline.Stop()
	var late bool
	for _, p := range acks {
		if late {
			select {
			case <-p.ack.Ok():
				continue
			default:
			}
			s.count(DropStore, p.lines, p.bytes)
			continue
		}
		select {
		case <-p.ack.Ok():
		case err := <-p.ack.Err():
			s.log.Debug("logs: store refused log entries", "err", err, "lines", p.lines)
			s.count(DropStore, p.lines, p.bytes)
		case <-deadline.C:
			s.log.Warn("logs: store did not acknowledge log entries in time", "wait", ackWait)
			late = true
			s.count(DropStore, p.lines, p.bytes)
		}
	}
}

// Close flushes queued entries and stops the Sink, waiting at most until ctx
// is done.
func (s *Sink) Close(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("logs: flush: %w", ctx.Err())
	}
}
