package metering

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/store"
)

// AggConfig tunes an Aggregator. Zero fields take the defaults.
type AggConfig struct {
	// CloseAfter is how long after an hour's end its numbers become
	// final: records of the hour that reach the stream later are skipped
	// (counted as late). It must be longer than the longest function
	// timeout (15 min) plus the Sink's batching. Default 20 min.
	CloseAfter time.Duration
	// CheckpointEvery is how often the Aggregator closes due hours and
	// writes them to the bucket. Default 1 min.
	CheckpointEvery time.Duration
	// Now is the clock that decides which hours are closed (tests pass a
	// fake one). Default time.Now.
	Now func() time.Time
}

// DefaultCloseAfter is AggConfig.CloseAfter's default.
const DefaultCloseAfter = 20 * time.Minute

func (c AggConfig) withDefaults() AggConfig {
	if c.CloseAfter <= 0 {
		c.CloseAfter = DefaultCloseAfter
	}
	if c.CheckpointEvery <= 0 {
		c.CheckpointEvery = time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Keys of the usage bucket.
const (
	// MarkerKey holds the start of the newest closed hour, in Unix
	// seconds (decimal): every hour up to and including it is closed and
	// written under HourKey.
	MarkerKey = "closed-through"
	// hourKeyPrefix starts the key of one (hour, function) aggregate.
	hourKeyPrefix = "h."
	// valueVersion is written into every aggregate; a change of the
	// histogram's buckets or of the fields must change it.
	valueVersion = 1
)

// HourKey is the usage bucket's key of function's aggregate for the hour
// starting at hour: "h.<hour start in Unix seconds>.<function>".
func HourKey(hour time.Time, function string) string {
	return hourKeyPrefix + strconv.FormatInt(hour.Unix(), 10) + "." + function
}

// replaySkew is how much earlier than the newest closed hour's end the
// replay of the stream starts on Start: a record is published after its
// invocation started, by a clock that may run ahead of the NATS server's.
const replaySkew = 5 * time.Minute

// Errors callers may branch on.
var (
	ErrBadQuery   = errors.New("metering: bad query")
	ErrNotStarted = errors.New("metering: aggregator not started")
	ErrClosed     = errors.New("metering: aggregator closed")
)

// usage is the aggregate of one function's records of one hour. All sums
// are exact integers.
type usage struct {
	Requests   int64 `json:"requests"` // records not throttled
	Errors     int64 `json:"errors"`   // error, timeout, crash
	Throttles  int64 `json:"throttles"`
	ColdStarts int64 `json:"coldStarts"`
	BilledMS   int64 `json:"billedMs"`
	MBms       int64 `json:"mbMs"` // Σ MemoryMB × BilledMS
	CPUUS      int64 `json:"cpuUs"`
	DurationUS int64 `json:"durationUs"`
	// Durations holds the DurationUS of every record not throttled.
	Durations Histogram `json:"durationsUs"`
}

func (u *usage) add(r *Record) {
	if r.Outcome == OutcomeThrottled {
		u.Throttles++
		return
	}
	u.Requests++
	switch r.Outcome {
	case OutcomeError, OutcomeTimeout, OutcomeCrash:
		u.Errors++
	}
	if r.Cold {
		u.ColdStarts++
	}
	u.BilledMS += r.BilledMS
	u.MBms += r.MBms()
	u.CPUUS += r.CPUUS
	u.DurationUS += r.DurationUS
	u.Durations.Add(r.DurationUS)
}

func (u *usage) merge(o *usage) {
	u.Requests += o.Requests
	u.Errors += o.Errors
	u.Throttles += o.Throttles
	u.ColdStarts += o.ColdStarts
	u.BilledMS += o.BilledMS
	u.MBms += o.MBms
	u.CPUUS += o.CPUUS
	u.DurationUS += o.DurationUS
	u.Durations.Merge(&o.Durations)
}

// hourValue is what the bucket holds under HourKey.
type hourValue struct {
	V        int       `json:"v"`
	Function string    `json:"function"`
	Hour     time.Time `json:"hour"`
	usage
}

type hourKey struct {
	function string
	hour     int64 // start, Unix seconds
}

func hourOf(t time.Time) int64 { return t.UTC().Truncate(time.Hour).Unix() }

// AggStats counts what an Aggregator applied.
type AggStats struct {
	// Records applied to an hour. Skipped: records of closed hours, not
	// applied (met again in the replay on Start, or late); Late: those
	// of them that reached the stream more than CloseAfter after their
	// hour ended, so were never counted. Invalid: records that could not
	// be read.
	Records, Skipped, Late, Invalid uint64
	// Seq is the last stream sequence applied.
	Seq uint64
	// ClosedThrough is the end of the newest closed hour (zero if none):
	// numbers before it are final.
	ClosedThrough time.Time
}

// Aggregator keeps usage aggregates per function and hour, and answers
// queries about them. See the package documentation for how it stays
// exact across restarts.
type Aggregator struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	cfg AggConfig
	log *slog.Logger

	cpMu sync.Mutex // serialises Checkpoint

	mu    sync.RWMutex
	hours map[hourKey]*usage
	// Hours up to closedThrough (when closed) take no more records;
	// hours up to written (when hasWritten) are in the bucket and the
	// marker says so.
	closed        bool
	closedThrough int64
	hasWritten    bool
	written       int64
	// persisted holds closed hours after written that are in the bucket
	// already, so that a checkpoint cut short does not write them again.
	persisted map[hourKey]bool
	seq       uint64        // last stream sequence applied
	progress  chan struct{} // closed and replaced when seq advances
	stats     AggStats
	state     int // notStarted, running, stopped

	it        jetstream.MessagesContext
	stop      chan struct{}
	done      chan struct{} // the follow loop ended
	cpDone    chan struct{} // the checkpoint loop ended
	closeOnce sync.Once
	lateSeen  uint64 // owned by the checkpoint loop
}

const (
	notStarted = iota
	running
	stopped
)

// NewAggregator returns an Aggregator reading the usage stream through js
// and keeping closed hours in kv (store.Store's Usage bucket). Call Start,
// then Close.
func NewAggregator(js jetstream.JetStream, kv jetstream.KeyValue, cfg AggConfig, log *slog.Logger) *Aggregator {
	return &Aggregator{
		js:        js,
		kv:        kv,
		cfg:       cfg.withDefaults(),
		log:       log,
		hours:     make(map[hourKey]*usage),
		persisted: make(map[hourKey]bool),
		progress:  make(chan struct{}),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		cpDone:    make(chan struct{}),
	}
}

// Start loads the closed hours from the bucket, then reads the usage
// stream from the first hour not closed on, and goes on following it in a
// goroutine until Close. It returns before the replay is done: call Sync
// to wait for it.
func (a *Aggregator) Start(ctx context.Context) error {
	a.mu.Lock()
	if a.state != notStarted {
		a.mu.Unlock()
		return errors.New("metering: aggregator started twice")
	}
	a.state = running
	a.mu.Unlock()
	if err := a.start(ctx); err != nil {
		a.mu.Lock()
		a.state = stopped
		a.mu.Unlock()
		close(a.done)
		close(a.cpDone)
		return err
	}
	return nil
}

func (a *Aggregator) start(ctx context.Context) error {
	marker, ok, err := a.readMarker(ctx)
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	loaded := 0
	if ok {
		if loaded, err = a.load(ctx, marker); err != nil {
			return err
		}
		a.mu.Lock()
		a.closed, a.closedThrough = true, marker
		a.hasWritten, a.written = true, marker
		a.mu.Unlock()
		from := time.Unix(marker, 0).Add(time.Hour - replaySkew)
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &from
	}
	cons, err := a.js.OrderedConsumer(ctx, store.UsageStream, cfg)
	if err != nil {
		return fmt.Errorf("metering: usage consumer: %w", err)
	}
	// The consumer starts after this sequence: Sync has nothing to wait
	// for below it.
	var floor uint64
	if info := cons.CachedInfo(); info != nil {
		floor = info.Delivered.Stream
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("metering: read usage stream: %w", err)
	}
	a.mu.Lock()
	a.seq = max(a.seq, floor)
	a.it = it
	if a.state == stopped {
		// Close ran meanwhile: the goroutines below end at once.
		it.Stop()
	}
	a.mu.Unlock()
	go a.follow(it)
	go a.checkpointLoop()
	attrs := []any{"closed_hours_loaded", loaded, "replay_from_seq", floor + 1}
	if ok {
		attrs = append(attrs, "closed_through", time.Unix(marker, 0).UTC().Add(time.Hour))
	}
	a.log.Info("metering: aggregator started", attrs...)
	return nil
}

// readMarker returns the marker, and whether there is one.
func (a *Aggregator) readMarker(ctx context.Context) (int64, bool, error) {
	e, err := a.kv.Get(ctx, MarkerKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("metering: read %s: %w", MarkerKey, err)
	}
	m, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil || m%3600 != 0 {
		a.log.Warn("metering: unreadable marker in the usage bucket, rebuilding from the stream", "value", string(e.Value()))
		return 0, false, nil
	}
	return m, true, nil
}

// load reads every aggregate of an hour up to through from the bucket.
func (a *Aggregator) load(ctx context.Context, through int64) (int, error) {
	w, err := a.kv.Watch(ctx, hourKeyPrefix+">", jetstream.IgnoreDeletes())
	if err != nil {
		return 0, fmt.Errorf("metering: read usage bucket: %w", err)
	}
	defer w.Stop()
	n := 0
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-ctx.Done():
			return n, fmt.Errorf("metering: read usage bucket: %w", ctx.Err())
		}
		if e == nil { // all current values were delivered
			return n, nil
		}
		k, ok := parseHourKey(e.Key())
		if !ok || k.hour > through {
			continue
		}
		u, err := decodeHour(e.Value(), k)
		if err != nil {
			// Its hour is lost for this function; say so loudly.
			a.log.Error("metering: unreadable aggregate in the usage bucket, skipped", "key", e.Key(), "err", err)
			continue
		}
		a.mu.Lock()
		a.hours[k] = u
		a.mu.Unlock()
		n++
	}
}

func parseHourKey(key string) (hourKey, bool) {
	rest, ok := strings.CutPrefix(key, hourKeyPrefix)
	if !ok {
		return hourKey{}, false
	}
	hs, fn, ok := strings.Cut(rest, ".")
	if !ok || !validFunction(fn) {
		return hourKey{}, false
	}
	h, err := strconv.ParseInt(hs, 10, 64)
	if err != nil || h%3600 != 0 {
		return hourKey{}, false
	}
	return hourKey{fn, h}, true
}

func encodeHour(k hourKey, u *usage) ([]byte, error) {
	return json.Marshal(hourValue{V: valueVersion, Function: k.function, Hour: time.Unix(k.hour, 0).UTC(), usage: *u})
}

func decodeHour(data []byte, k hourKey) (*usage, error) {
	var v hourValue
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	if v.V != valueVersion {
		return nil, fmt.Errorf("version %d, want %d", v.V, valueVersion)
	}
	if v.Function != k.function || v.Hour.Unix() != k.hour {
		return nil, fmt.Errorf("holds %s at %s", v.Function, v.Hour)
	}
	return &v.usage, nil
}

// follow applies the stream's messages until Close.
func (a *Aggregator) follow(it jetstream.MessagesContext) {
	defer close(a.done)
	var recs []Record
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			a.log.Warn("metering: read usage stream", "err", err)
			select {
			case <-a.stop:
				return
			case <-time.After(time.Second):
			}
			continue
		}
		md, err := msg.Metadata()
		if err != nil {
			a.log.Warn("metering: usage message without metadata", "err", err)
			continue
		}
		invalid := 0
		recs, invalid = decodeLines(msg.Data(), recs[:0])
		a.apply(strings.TrimPrefix(msg.Subject(), store.UsageSubjectPrefix), recs, invalid, md.Sequence.Stream, md.Timestamp)
	}
}

// decodeLines appends the records of a message (JSON lines) to recs, and
// counts lines it could not read.
func decodeLines(data []byte, recs []Record) ([]Record, int) {
	invalid := 0
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		recs = append(recs, Record{})
		if err := json.Unmarshal(line, &recs[len(recs)-1]); err != nil {
			recs = recs[:len(recs)-1]
			invalid++
		}
	}
	return recs, invalid
}

// apply adds the records of the message with stream sequence seq, stored
// at ts.
func (a *Aggregator) apply(subjectFunction string, recs []Record, invalid int, seq uint64, ts time.Time) {
	lateAfter := ts.Add(-time.Hour - a.cfg.CloseAfter).Unix() // hours before this are late at ts
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats.Invalid += uint64(invalid)
	for i := range recs {
		r := &recs[i]
		fn := cmp.Or(r.Function, subjectFunction)
		if !validFunction(fn) || r.Start.IsZero() {
			a.stats.Invalid++
			continue
		}
		k := hourKey{fn, hourOf(r.Start)}
		if a.closed && k.hour <= a.closedThrough {
			a.stats.Skipped++
			if k.hour < lateAfter {
				a.stats.Late++
			}
			continue
		}
		u := a.hours[k]
		if u == nil {
			u = new(usage)
			a.hours[k] = u
		}
		u.add(r)
		a.stats.Records++
	}
	if seq > a.seq {
		a.seq = seq
	}
	close(a.progress)
	a.progress = make(chan struct{})
}

// Sync returns once every record published to the stream before the call
// has been applied (or ctx ends, or the Aggregator is closed).
func (a *Aggregator) Sync(ctx context.Context) error {
	a.mu.RLock()
	state := a.state
	a.mu.RUnlock()
	switch state {
	case notStarted:
		return ErrNotStarted
	case stopped:
		return ErrClosed
	}
	st, err := a.js.Stream(ctx, store.UsageStream)
	if err != nil {
		return fmt.Errorf("metering: usage stream: %w", err)
	}
	info := st.CachedInfo()
	if info.State.Msgs == 0 {
		return nil
	}
	target := info.State.LastSeq
	for {
		a.mu.RLock()
		seq, progress := a.seq, a.progress
		a.mu.RUnlock()
		if seq >= target {
			return nil
		}
		select {
		case <-progress:
		case <-a.done:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("metering: sync: %w", ctx.Err())
		}
	}
}

// Checkpoint closes every hour that is due (Now ≥ its end + CloseAfter),
// once the Aggregator has applied everything published before, and writes
// the closed hours and then the marker to the bucket. The Aggregator calls
// it every CheckpointEvery; callers may call it too (tests, shutdown).
func (a *Aggregator) Checkpoint(ctx context.Context) error {
	a.cpMu.Lock()
	defer a.cpMu.Unlock()
	now := a.cfg.Now()
	// Everything published before now is applied after this: all records
	// of the hours closed below, which ended at least CloseAfter ago.
	if err := a.Sync(ctx); err != nil {
		return err
	}
	through := now.UTC().Add(-a.cfg.CloseAfter).Truncate(time.Hour).Add(-time.Hour).Unix()

	type todo struct {
		k hourKey
		u *usage
	}
	var work []todo
	a.mu.Lock()
	if !a.closed || through > a.closedThrough {
		a.closed, a.closedThrough = true, through
	}
	through = a.closedThrough
	if a.hasWritten && a.written >= through {
		a.mu.Unlock()
		return nil
	}
	for k, u := range a.hours {
		if k.hour <= through && (!a.hasWritten || k.hour > a.written) && !a.persisted[k] {
			work = append(work, todo{k, u})
		}
	}
	a.mu.Unlock()
	slices.SortFunc(work, func(x, y todo) int {
		return cmp.Or(cmp.Compare(x.k.hour, y.k.hour), strings.Compare(x.k.function, y.k.function))
	})
	// Closed hours take no more records, so u is read without the lock.
	for _, w := range work {
		if err := a.writeHour(ctx, w.k, w.u); err != nil {
			return err
		}
		a.mu.Lock()
		a.persisted[w.k] = true
		a.mu.Unlock()
	}
	if err := a.advanceMarker(ctx, through); err != nil {
		return err
	}
	a.mu.Lock()
	a.hasWritten, a.written = true, through
	for k := range a.persisted {
		if k.hour <= through {
			delete(a.persisted, k)
		}
	}
	a.mu.Unlock()
	if len(work) > 0 {
		a.log.Debug("metering: hours closed", "closed_through", time.Unix(through, 0).UTC().Add(time.Hour), "aggregates_written", len(work))
	}
	return nil
}

// writeHour creates k's aggregate in the bucket. If it is there already
// (another server, or this one before a restart, closed the hour), the
// stored one wins: this Aggregator adopts it, so that all agree.
func (a *Aggregator) writeHour(ctx context.Context, k hourKey, u *usage) error {
	key := HourKey(time.Unix(k.hour, 0), k.function)
	val, err := encodeHour(k, u)
	if err != nil {
		return fmt.Errorf("metering: encode %s: %w", key, err)
	}
	_, err = a.kv.Create(ctx, key, val)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("metering: write %s: %w", key, err)
	}
	e, err := a.kv.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("metering: read %s: %w", key, err)
	}
	if bytes.Equal(e.Value(), val) {
		return nil
	}
	stored, err := decodeHour(e.Value(), k)
	if err != nil {
		a.log.Warn("metering: unreadable aggregate in the usage bucket, replaced", "key", key, "err", err)
		if _, err := a.kv.Put(ctx, key, val); err != nil {
			return fmt.Errorf("metering: write %s: %w", key, err)
		}
		return nil
	}
	a.log.Info("metering: another server closed this hour with other numbers; taking the stored ones", "key", key,
		"requests_here", u.Requests, "requests_stored", stored.Requests)
	a.mu.Lock()
	a.hours[k] = stored
	a.mu.Unlock()
	return nil
}

// advanceMarker moves the marker forward to through (never back).
func (a *Aggregator) advanceMarker(ctx context.Context, through int64) error {
	val := []byte(strconv.FormatInt(through, 10))
	var err error
	for range 5 {
		var e jetstream.KeyValueEntry
		e, err = a.kv.Get(ctx, MarkerKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = a.kv.Create(ctx, MarkerKey, val)
		case err != nil:
			return fmt.Errorf("metering: read %s: %w", MarkerKey, err)
		default:
			if cur, perr := strconv.ParseInt(string(e.Value()), 10, 64); perr == nil && cur >= through && cur%3600 == 0 {
				return nil
			}
			_, err = a.kv.Update(ctx, MarkerKey, val, e.Revision())
		}
		if err == nil || !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("metering: write %s: %w", MarkerKey, err)
	}
	return nil
}

func (a *Aggregator) checkpointLoop() {
	defer close(a.cpDone)
	t := time.NewTicker(a.cfg.CheckpointEvery)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.CheckpointEvery)
		go func() {
			select {
			case <-a.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := a.Checkpoint(ctx)
		cancel()
		if err != nil && !errors.Is(err, ErrClosed) {
			a.log.Warn("metering: checkpoint", "err", err)
		}
		if st := a.Stats(); st.Late != a.lateSeen {
			a.log.Warn("metering: usage records arrived after their hour was closed and were not counted",
				"late_total", st.Late, "since_last_report", st.Late-a.lateSeen)
			a.lateSeen = st.Late
		}
	}
}

// Stats returns the Aggregator's counters.
func (a *Aggregator) Stats() AggStats {
	a.mu.RLock()
	defer a.mu.RUnlock()
	st := a.stats
	st.Seq = a.seq
	if a.closed {
		st.ClosedThrough = time.Unix(a.closedThrough, 0).UTC().Add(time.Hour)
	}
	return st
}

// Close stops following the stream and waits for the Aggregator's
// goroutines, at most until ctx ends. Hours not yet closed are not written:
// the next Start reads them from the stream again. Close is idempotent.
func (a *Aggregator) Close(ctx context.Context) error {
	a.closeOnce.Do(func() {
		a.mu.Lock()
		it := a.it
		if a.state == notStarted {
			close(a.done)
			close(a.cpDone)
		}
		a.state = stopped
		a.mu.Unlock()
		close(a.stop)
		if it != nil {
			it.Stop()
		}
	})
	for _, ch := range []chan struct{}{a.done, a.cpDone} {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("metering: close aggregator: %w", ctx.Err())
		}
	}
	return nil
}
