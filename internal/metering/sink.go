package metering

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
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

var (
	_ Publisher = (jetstream.JetStream)(nil)
	_ Recorder  = (*Sink)(nil)
)

// SinkConfig tunes a Sink. Zero fields take the defaults.
type SinkConfig struct {
	// MaxBuffered bounds the records the Sink holds: queued, being
	// published, or waiting to be published again after a failure.
	// Beyond it, new records are dropped and counted as lost. Default
	// 100,000.
	MaxBuffered int
	// Linger is how long the Sink waits after the first record of a batch
	// for more to arrive. Default 10 ms.
	Linger time.Duration
	// AckTimeout bounds the wait for the store's acknowledgements of one
	// batch; unacknowledged messages are sent again (with the same message
	// id, so the stream drops the copy if the first one did arrive).
	// Default 5 s.
	AckTimeout time.Duration
	// RetryMin and RetryMax bound the back-off between attempts while
	// the store refuses records. Defaults 100 ms and 5 s.
	RetryMin, RetryMax time.Duration
	// Observers see every record, synchronously inside Record, before the
	// Sink buffers it (also the records it then loses). They run on the
	// invocation path: they must be cheap (a few atomic adds), must not
	// block, and must neither keep nor change the record.
	Observers []Recorder
}

// DefaultMaxBuffered is SinkConfig.MaxBuffered's default.
const DefaultMaxBuffered = 100_000

func (c SinkConfig) withDefaults() SinkConfig {
	if c.MaxBuffered <= 0 {
		c.MaxBuffered = DefaultMaxBuffered
	}
	if c.Linger <= 0 {
		c.Linger = 10 * time.Millisecond
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 5 * time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(5*time.Second, c.RetryMin)
	}
	return c
}

// SinkStats counts records given to a Sink: each one is, at any moment,
// Published (acknowledged by the store), Lost (dropped because the buffer
// was full, the Sink was closed, or its function name was invalid), or
// Buffered (still held).
type SinkStats struct {
	Published uint64 `json:"published"`
	Lost      uint64 `json:"lost"`
	Buffered  uint64 `json:"buffered"`
}

// Sink publishes usage records to the usage stream off the invocation path.
// Record appends to a bounded buffer and wakes the Sink's goroutine, which
// batches what arrived, sends one message per function per batch (one
// record a line, see AppendLine, on store.UsageSubjectPrefix+function) and
// checks every acknowledgement. What the store does not acknowledge is kept
// and sent again with back-off; a record is only lost when the buffer is
// full, and then it is counted.
type Sink struct {
	pub       Publisher
	cfg       SinkConfig
	log       *slog.Logger
	observers []Recorder
	id        string // prefix of message ids, unique per Sink

	mu        sync.Mutex
	queue     []*Record
	held      int // len(queue) + records in messages not yet acknowledged
	published uint64
	lost      uint64
	closed    bool

	wake    chan struct{} // capacity 1
	started atomic.Bool

	stopOnce, abortOnce sync.Once
	stop                chan struct{} // Close was called: flush and return
	abort               chan struct{} // Close's context ended: give up
	done                chan struct{}

	// Owned by the run goroutine.
	retry          []*message
	spare          []*Record
	line           []byte // scratch for one encoded record
	seq            uint64
	reportedLost   uint64
	reportedAt     time.Time
	failReportedAt time.Time
}

// message is one store message: records of one function as JSON lines.
type message struct {
	subject string
	id      string
	data    []byte
	n       int // records in data
}

// maxMessage bounds one store message; NATS refuses payloads over its
// max_payload (1 MB by default on a server not started by Tern).
const maxMessage = 256 << 10

// lostReportEvery bounds how often a warning about lost records is logged.
const lostReportEvery = 10 * time.Second

// NewSink returns a Sink publishing through pub. Call Start, then Close.
func NewSink(pub Publisher, cfg SinkConfig, log *slog.Logger) *Sink {
	cfg = cfg.withDefaults()
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return &Sink{
		pub:       pub,
		cfg:       cfg,
		log:       log,
		observers: cfg.Observers,
		id:        "u" + hex.EncodeToString(b[:]),
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		abort:     make(chan struct{}),
		done:      make(chan struct{}),
	}
}

// Start runs the publishing goroutine until Close.
func (s *Sink) Start() {
	if s.started.CompareAndSwap(false, true) {
		go s.run()
	}
}

// Record hands r to the Sink, which owns it from then on: the caller must
// not change it afterwards. It never blocks: it calls the observers,
// appends r to the buffer under a short lock and wakes the publisher.
func (s *Sink) Record(r *Record) {
	if r == nil {
		return
	}
	for _, o := range s.observers {
		o.Record(r)
	}
	s.mu.Lock()
	if s.closed || s.held >= s.cfg.MaxBuffered {
		s.lost++
		s.mu.Unlock()
		return
	}
	s.queue = append(s.queue, r)
	s.held++
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Stats returns the Sink's counters, consistent with each other.
func (s *Sink) Stats() SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SinkStats{Published: s.published, Lost: s.lost, Buffered: uint64(s.held)}
}

// Close stops taking records (later ones are counted lost), publishes what
// the Sink holds and stops it. If ctx ends first, the Sink gives up: what
// it still holds is counted lost (some of it may have reached the store
// unacknowledged) and Close returns ctx's error. Close is idempotent.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	if s.started.CompareAndSwap(false, true) {
		// Never started: nothing can publish what is queued.
		close(s.done)
		s.giveUp()
	}
	var err error
	select {
	case <-s.done:
	case <-ctx.Done():
		s.abortOnce.Do(func() { close(s.abort) })
		<-s.done
		err = fmt.Errorf("metering: flush usage records: %w", ctx.Err())
	}
	if st := s.Stats(); st.Lost > 0 {
		s.log.Warn("metering: usage records lost", "lost", st.Lost, "published", st.Published)
	}
	return err
}

func (s *Sink) run() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// sleep waits d, or until ch is closed (then it reports true).
	sleep := func(d time.Duration, ch <-chan struct{}) bool {
		timer.Reset(d)
		select {
		case <-timer.C:
			return false
		case <-ch:
			timer.Stop()
			return true
		}
	}
	var backoff time.Duration
	stopping := false
	for {
		switch {
		case stopping && backoff > 0:
			if sleep(backoff, s.abort) {
				s.giveUp()
				return
			}
		case stopping:
		case backoff > 0:
			// Records wait for a retry: new ones join it.
			stopping = sleep(backoff, s.stop)
		default:
			select {
			case <-s.wake:
				// Sleep through the linger without listening, so that
				// records arriving meanwhile do not each wake this
				// goroutine; then take what came.
				stopping = sleep(s.cfg.Linger, s.stop)
			case <-s.stop:
				stopping = true
			}
		}
		if s.flush() {
			backoff = 0
		} else {
			backoff = min(max(2*backoff, s.cfg.RetryMin), s.cfg.RetryMax)
		}
		select {
		case <-s.abort:
			s.giveUp()
			return
		default:
		}
		if stopping && backoff == 0 && s.Stats().Buffered == 0 {
			return
		}
	}
}

// giveUp counts everything still held as lost.
func (s *Sink) giveUp() {
	s.mu.Lock()
	s.lost += uint64(s.held)
	s.held = 0
	s.queue = nil
	s.mu.Unlock()
	s.retry = nil
}

// flush publishes the messages waiting for a retry and the queued records,
// and waits for the acknowledgements. It reports whether everything was
// acknowledged; what was not waits in s.retry.
func (s *Sink) flush() bool {
	s.mu.Lock()
	batch := s.queue
	s.queue = s.spare
	s.mu.Unlock()
	msgs := s.build(s.retry, batch)
	clear(batch)
	s.spare = batch[:0]
	s.retry = nil
	if len(msgs) == 0 {
		return true
	}
	s.reportLost()

	futures := make([]jetstream.PubAckFuture, len(msgs))
	var firstErr error
	for i, m := range msgs {
		f, err := s.pub.PublishAsync(m.subject, m.data, jetstream.WithMsgID(m.id))
		if err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		futures[i] = f
	}
	deadline := time.NewTimer(s.cfg.AckTimeout)
	defer deadline.Stop()
	expired := false
	acked := 0
	for i, f := range futures {
		ok := false
		switch {
		case f == nil:
		case expired:
			select {
			case <-f.Ok():
				ok = true
			case err := <-f.Err():
				firstErr = cmp.Or(firstErr, err)
			default:
			}
		default:
			select {
			case <-f.Ok():
				ok = true
			case err := <-f.Err():
				firstErr = cmp.Or(firstErr, err)
			case <-deadline.C:
				expired = true
				firstErr = cmp.Or(firstErr, errAckTimeout)
			case <-s.abort:
				expired = true
			}
		}
		if ok {
			acked += msgs[i].n
		} else {
			s.retry = append(s.retry, msgs[i])
		}
	}
	s.mu.Lock()
	s.held -= acked
	s.published += uint64(acked)
	s.mu.Unlock()
	if len(s.retry) == 0 {
		return true
	}
	waiting := 0
	for _, m := range s.retry {
		waiting += m.n
	}
	if time.Since(s.failReportedAt) >= lostReportEvery {
		s.log.Warn("metering: usage records not stored yet, will retry", "err", firstErr, "records", waiting)
		s.failReportedAt = time.Now()
	}
	return false
}

var errAckTimeout = errors.New("metering: no acknowledgement from the store")

// build appends to msgs the batch's records as messages, one per function
// (more if one would grow past maxMessage). A record that cannot be
// published (invalid function name) is counted lost.
func (s *Sink) build(msgs []*message, batch []*Record) []*message {
	if len(batch) == 0 {
		return msgs
	}
	open := make(map[string]*message, 8)
	invalid := 0
	for _, r := range batch {
		if !validFunction(r.Function) {
			invalid++
			s.log.Error("metering: usage record with an invalid function name", "function", r.Function, "request_id", r.RequestID)
			continue
		}
		line := AppendLine(s.line[:0], r)
		s.line = line
		m := open[r.Function]
		if m == nil || (m.n > 0 && len(m.data)+len(line) > maxMessage) {
			s.seq++
			m = &message{subject: store.UsageSubjectPrefix + r.Function, id: s.id + "-" + strconv.FormatUint(s.seq, 10)}
			open[r.Function] = m
			msgs = append(msgs, m)
		}
		m.data = append(append(m.data, line...), '\n')
		m.n++
	}
	if invalid > 0 {
		s.mu.Lock()
		s.held -= invalid
		s.lost += uint64(invalid)
		s.mu.Unlock()
	}
	return msgs
}

// reportLost logs, at most every lostReportEvery, how many records were
// lost since the last report.
func (s *Sink) reportLost() {
	s.mu.Lock()
	lost := s.lost
	s.mu.Unlock()
	if lost != s.reportedLost && time.Since(s.reportedAt) >= lostReportEvery {
		s.log.Warn("metering: usage records lost because the buffer was full", "lost_total", lost, "since_last_report", lost-s.reportedLost)
		s.reportedLost, s.reportedAt = lost, time.Now()
	}
}

// validFunction reports whether name can be a subject token and a KV key
// part: [A-Za-z0-9_-], 1 to 128 characters.
func validFunction(name string) bool {
	if name == "" || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Flush waits until every record handed to the Sink before the call is
// stored (or counted lost), or ctx ends. Records that come later do not
// hold it up.
func (s *Sink) Flush(ctx context.Context) error {
	st := s.Stats()
	target := st.Published + st.Lost + st.Buffered
	for {
		st := s.Stats()
		if st.Published+st.Lost >= target {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("metering: flushing usage records: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}
