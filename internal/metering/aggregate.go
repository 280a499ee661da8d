package metering

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
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
	// CloseAfter is how long after a minute's end its numbers become
	// final and are rolled up into the bucket: records of the minute
	// that reach the stream later are skipped (counted as late). It must
	// be longer than the longest function timeout (15 min) plus the
	// Sink's batching. The raw records must be kept longer than this (and
	// a few minutes more) for a restart to be exact. Default 20 min.
	CloseAfter time.Duration
	// CheckpointEvery is how often the Aggregator closes due minutes and
	// hours and writes them to the bucket. Default 1 min.
	CheckpointEvery time.Duration
	// MinuteTTL is how long a minute's aggregate stays in the bucket. An
	// hour's minutes are compacted into one hour aggregate once the hour
	// is closed (CloseAfter after its end), so they are only read back by
	// a restart before that. Default 48 h.
	MinuteTTL time.Duration
	// HourTTL is how long an hour's aggregate stays in the bucket, and in
	// memory. Default 90 days.
	HourTTL time.Duration
	// Now is the clock that decides which minutes are closed (tests pass
	// a fake one). Default time.Now.
	Now func() time.Time
}

// Defaults of AggConfig.
const (
	DefaultCloseAfter = 20 * time.Minute
	DefaultMinuteTTL  = 48 * time.Hour
	DefaultHourTTL    = 90 * 24 * time.Hour
)

func (c AggConfig) withDefaults() AggConfig {
	if c.CloseAfter <= 0 {
		c.CloseAfter = DefaultCloseAfter
	}
	if c.CheckpointEvery <= 0 {
		c.CheckpointEvery = time.Minute
	}
	if c.MinuteTTL <= 0 {
		c.MinuteTTL = DefaultMinuteTTL
	}
	if c.HourTTL <= 0 {
		c.HourTTL = DefaultHourTTL
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
	// MinuteMarkerKey holds the start of the newest closed minute, in
	// Unix seconds: every minute up to and including it is closed, and
	// written under MinuteKey unless its hour is written under HourKey.
	MinuteMarkerKey = "minutes-closed-through"
	// hourKeyPrefix and minuteKeyPrefix start the key of one (hour,
	// function) and one (minute, function) aggregate.
	hourKeyPrefix   = "h."
	minuteKeyPrefix = "m."
	// valueVersion is written into every aggregate; a change of the
	// histogram's buckets or of the fields must change it.
	valueVersion = 1
)

// HourKey is the usage bucket's key of function's aggregate for the hour
// starting at hour: "h.<hour start in Unix seconds>.<function>".
func HourKey(hour time.Time, function string) string {
	return hourKeyPrefix + strconv.FormatInt(hour.Unix(), 10) + "." + function
}

// MinuteKey is the usage bucket's key of function's aggregate for the
// minute starting at minute: "m.<minute start in Unix seconds>.<function>".
func MinuteKey(minute time.Time, function string) string {
	return minuteKeyPrefix + strconv.FormatInt(minute.Unix(), 10) + "." + function
}

// replaySkew is how much earlier than the newest closed minute's end the
// replay of the stream starts on Start: a record is published after its
// invocation started, by a clock that may run ahead of the NATS server's.
const replaySkew = 5 * time.Minute

// Errors callers may branch on.
var (
	ErrBadQuery   = errors.New("metering: bad query")
	ErrNotStarted = errors.New("metering: aggregator not started")
	ErrClosed     = errors.New("metering: aggregator closed")
)

// usage is the aggregate of one function's records of one minute or hour.
// All sums are exact integers.
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

// aggValue is what the bucket holds under HourKey and MinuteKey.
type aggValue struct {
	V        int       `json:"v"`
	Function string    `json:"function"`
	Hour     time.Time `json:"hour,omitzero"`
	Minute   time.Time `json:"minute,omitzero"`
	usage
}

// aggKey names one aggregate: an hour's (minute false) or a minute's.
type aggKey struct {
	function string
	start    int64 // Unix seconds
	minute   bool
}

func (k aggKey) String() string {
	if k.minute {
		return MinuteKey(time.Unix(k.start, 0), k.function)
	}
	return HourKey(time.Unix(k.start, 0), k.function)
}

// hour is the start of the hour k is in.
func (k aggKey) hour() int64 { return k.start - k.start%3600 }

func hourOf(t time.Time) int64   { return t.UTC().Truncate(time.Hour).Unix() }
func minuteOf(t time.Time) int64 { return t.UTC().Truncate(time.Minute).Unix() }

// AggStats counts what an Aggregator applied.
type AggStats struct {
	// Records applied to a minute. Skipped: records of closed minutes,
	// not applied (met again in the replay on Start, or late); Late:
	// those of them that reached the stream more than CloseAfter after
	// their minute ended, so were never counted. Invalid: records that
	// could not be read. Missed: stream messages that were gone (the
	// byte cap or the age limit of the raw records discarded them)
	// before this Aggregator read them.
	Records, Skipped, Late, Invalid, Missed uint64
	// Seq is the last stream sequence applied.
	Seq uint64
	// ClosedThrough is the end of the newest hour rolled up into hour
	// aggregates (zero if none); MinutesClosedThrough the end of the
	// newest closed minute: numbers before it are final.
	ClosedThrough, MinutesClosedThrough time.Time
	// Minutes and Hours are how many aggregates are held in memory.
	Minutes, Hours int
}

// Aggregator keeps usage aggregates per function and minute (hours not
// yet closed) and hour (closed hours), and answers queries about them.
// See the package documentation for how it stays exact across restarts.
type Aggregator struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	cfg AggConfig
	log *slog.Logger

	cpMu sync.Mutex // serialises Checkpoint

	mu sync.RWMutex
	// hours holds the aggregates of hours up to hoursThrough; minutes
	// those of the minutes of later hours.
	hours   map[aggKey]*usage
	minutes map[aggKey]*usage
	// Minutes up to closedMinute (when closed) take no more records;
	// minutes up to writtenMinute and hours up to hoursThrough (when
	// hasWritten) are in the bucket and the markers say so.
	closed        bool
	closedMinute  int64
	hasWritten    bool
	writtenMinute int64
	hoursThrough  int64
	// persisted holds aggregates past the markers that are in the bucket
	// already, with the value stored, so that a checkpoint cut short does
	// not write them again.
	persisted map[aggKey]*usage
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
	missSeen  uint64 // owned by the checkpoint loop
}

const (
	notStarted = iota
	running
	stopped
)

// NewAggregator returns an Aggregator reading the usage stream through js
// and keeping closed minutes and hours in kv (store.Store's Usage bucket,
// which allows per-key TTLs). Call Start, then Close.
func NewAggregator(js jetstream.JetStream, kv jetstream.KeyValue, cfg AggConfig, log *slog.Logger) *Aggregator {
	return &Aggregator{
		js:        js,
		kv:        kv,
		cfg:       cfg.withDefaults(),
		log:       log,
		hours:     make(map[aggKey]*usage),
		minutes:   make(map[aggKey]*usage),
		persisted: make(map[aggKey]*usage),
		progress:  make(chan struct{}),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		cpDone:    make(chan struct{}),
	}
}

// Start loads the closed hours and minutes from the bucket, then reads the
// usage stream from the first minute not closed on, and goes on following
// it in a goroutine until Close. It returns before the replay is done:
// call Sync to wait for it.
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
	hourMarker, hasHour, err := a.readMarker(ctx, MarkerKey, 3600)
	if err != nil {
		return err
	}
	minuteMarker, hasMinute, err := a.readMarker(ctx, MinuteMarkerKey, 60)
	if err != nil {
		return err
	}
	// Hours up to H are closed with all their minutes: M ≥ H's last
	// minute. A bucket written before minute aggregates has no M; one
	// whose hour marker was lost gets the hours that M closed whole.
	switch {
	case hasHour && (!hasMinute || minuteMarker < hourMarker+3600-60):
		minuteMarker, hasMinute = hourMarker+3600-60, true
	case hasMinute && !hasHour:
		hourMarker, hasHour = (minuteMarker+60)-(minuteMarker+60)%3600-3600, true
		a.log.Warn("metering: usage bucket without its hour marker; taking the hours the minute marker closed", "hours_through", time.Unix(hourMarker, 0).UTC())
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	loadedH, loadedM := 0, 0
	if hasMinute {
		if loadedH, loadedM, err = a.load(ctx, hourMarker, minuteMarker); err != nil {
			return err
		}
		a.mu.Lock()
		a.closed, a.closedMinute = true, minuteMarker
		a.hasWritten, a.writtenMinute, a.hoursThrough = true, minuteMarker, hourMarker
		a.mu.Unlock()
		from := time.Unix(minuteMarker, 0).Add(time.Minute - replaySkew)
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
	attrs := []any{"closed_hours_loaded", loadedH, "closed_minutes_loaded", loadedM, "replay_from_seq", floor + 1}
	if hasMinute {
		attrs = append(attrs, "closed_through", time.Unix(minuteMarker, 0).UTC().Add(time.Minute))
	}
	a.log.Info("metering: aggregator started", attrs...)
	return nil
}

// readMarker returns a marker (a multiple of unit), and whether there is
// one.
func (a *Aggregator) readMarker(ctx context.Context, key string, unit int64) (int64, bool, error) {
	e, err := a.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("metering: read %s: %w", key, err)
	}
	m, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil || m%unit != 0 {
		a.log.Warn("metering: unreadable marker in the usage bucket, ignored", "key", key, "value", string(e.Value()))
		return 0, false, nil
	}
	return m, true, nil
}

// load reads from the bucket every hour aggregate up to hoursThrough and
// every minute aggregate of a later hour up to minutesThrough.
func (a *Aggregator) load(ctx context.Context, hoursThrough, minutesThrough int64) (hours, minutes int, err error) {
	w, err := a.kv.Watch(ctx, ">", jetstream.IgnoreDeletes())
	if err != nil {
		return 0, 0, fmt.Errorf("metering: read usage bucket: %w", err)
	}
	defer w.Stop()
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-ctx.Done():
			return hours, minutes, fmt.Errorf("metering: read usage bucket: %w", ctx.Err())
		}
		if e == nil { // all current values were delivered
			return hours, minutes, nil
		}
		k, ok := parseKey(e.Key())
		if !ok {
			continue
		}
		if k.minute && (k.hour() <= hoursThrough || k.start > minutesThrough) || !k.minute && k.start > hoursThrough {
			continue
		}
		u, err := decodeAgg(e.Value(), k)
		if err != nil {
			// Its numbers are lost for this function; say so loudly.
			a.log.Error("metering: unreadable aggregate in the usage bucket, skipped", "key", e.Key(), "err", err)
			continue
		}
		a.mu.Lock()
		if k.minute {
			a.minutes[k] = u
			minutes++
		} else {
			a.hours[k] = u
			hours++
		}
		a.mu.Unlock()
	}
}

// parseHourKey parses an hour aggregate's key.
func parseHourKey(key string) (aggKey, bool) {
	k, ok := parseKey(key)
	return k, ok && !k.minute
}

// parseKey parses an hour or minute aggregate's key.
func parseKey(key string) (aggKey, bool) {
	var k aggKey
	rest, ok := strings.CutPrefix(key, hourKeyPrefix)
	unit := int64(3600)
	if !ok {
		if rest, ok = strings.CutPrefix(key, minuteKeyPrefix); !ok {
			return aggKey{}, false
		}
		k.minute, unit = true, 60
	}
	ts, fn, ok := strings.Cut(rest, ".")
	if !ok || !validFunction(fn) {
		return aggKey{}, false
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || t%unit != 0 {
		return aggKey{}, false
	}
	k.function, k.start = fn, t
	return k, true
}

func encodeAgg(k aggKey, u *usage) ([]byte, error) {
	v := aggValue{V: valueVersion, Function: k.function, usage: *u}
	if k.minute {
		v.Minute = time.Unix(k.start, 0).UTC()
	} else {
		v.Hour = time.Unix(k.start, 0).UTC()
	}
	return json.Marshal(v)
}

func decodeAgg(data []byte, k aggKey) (*usage, error) {
	var v aggValue
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	if v.V != valueVersion {
		return nil, fmt.Errorf("version %d, want %d", v.V, valueVersion)
	}
	at := v.Hour
	if k.minute {
		at = v.Minute
	}
	if v.Function != k.function || at.Unix() != k.start {
		return nil, fmt.Errorf("holds %s at %s", v.Function, at)
	}
	return &v.usage, nil
}

// follow applies the stream's messages until Close.
func (a *Aggregator) follow(it jetstream.MessagesContext) {
	defer close(a.done)
	var recs []Record
	var last uint64
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
		if last > 0 && md.Sequence.Stream > last+1 {
			// Messages between were removed before this reader got
			// there: the raw records' limits are too tight.
			a.mu.Lock()
			a.stats.Missed += md.Sequence.Stream - last - 1
			a.mu.Unlock()
		}
		last = md.Sequence.Stream
		fn := strings.TrimPrefix(msg.Subject(), store.UsageSubjectPrefix)
		invalid := 0
		recs, invalid = ParseMessage(msg.Data(), fn, recs[:0])
		a.apply(fn, recs, invalid, md.Sequence.Stream, md.Timestamp)
	}
}

// apply adds the records of the message with stream sequence seq, stored
// at ts.
func (a *Aggregator) apply(subjectFunction string, recs []Record, invalid int, seq uint64, ts time.Time) {
	lateAfter := ts.Add(-time.Minute - a.cfg.CloseAfter).Unix() // minutes before this are late at ts
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
		k := aggKey{function: fn, start: minuteOf(r.Start), minute: true}
		if a.closed && k.start <= a.closedMinute {
			a.stats.Skipped++
			if k.start < lateAfter {
				a.stats.Late++
			}
			continue
		}
		u := a.minutes[k]
		if u == nil {
			u = new(usage)
			a.minutes[k] = u
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

// Checkpoint closes every minute that is due (Now ≥ its end +
// CloseAfter), once the Aggregator has applied everything published
// before, and rolls it up: the minutes of an hour that closed whole go to
// the bucket as one hour aggregate, those of other hours as minute
// aggregates; then the markers move. The Aggregator calls it every
// CheckpointEvery; callers may call it too (tests, shutdown).
func (a *Aggregator) Checkpoint(ctx context.Context) error {
	a.cpMu.Lock()
	defer a.cpMu.Unlock()
	now := a.cfg.Now()
	// Everything published before now is applied after this: all records
	// of the minutes closed below, which ended at least CloseAfter ago.
	if err := a.Sync(ctx); err != nil {
		return err
	}
	through := now.UTC().Add(-a.cfg.CloseAfter).Truncate(time.Minute).Add(-time.Minute).Unix()

	type todo struct {
		k aggKey
		u *usage
	}
	var hourWork, minuteWork []todo
	a.mu.Lock()
	if !a.closed || through > a.closedMinute {
		a.closed, a.closedMinute = true, through
	}
	through = a.closedMinute
	hoursThrough := (through + 60) - (through+60)%3600 - 3600 // the newest hour whose minutes are all closed
	if a.hasWritten && a.writtenMinute >= through {
		a.mu.Unlock()
		return nil
	}
	merged := make(map[aggKey]*usage)
	for k, u := range a.minutes {
		if k.start > through {
			continue
		}
		if h := k.hour(); h <= hoursThrough {
			if a.hasWritten && h <= a.hoursThrough {
				continue // cannot happen: such minutes were dropped
			}
			hk := aggKey{function: k.function, start: h}
			m := merged[hk]
			if m == nil {
				m = new(usage)
				merged[hk] = m
			}
			m.merge(u)
			continue
		}
		if (!a.hasWritten || k.start > a.writtenMinute) && a.persisted[k] == nil {
			minuteWork = append(minuteWork, todo{k, u})
		}
	}
	for k, u := range merged {
		if p := a.persisted[k]; p != nil {
			merged[k] = p
		} else {
			hourWork = append(hourWork, todo{k, u})
		}
	}
	a.mu.Unlock()
	order := func(x, y todo) int {
		return cmp.Or(cmp.Compare(x.k.start, y.k.start), strings.Compare(x.k.function, y.k.function))
	}
	slices.SortFunc(hourWork, order)
	slices.SortFunc(minuteWork, order)
	// Closed minutes take no more records, so u is read without the lock.
	for _, w := range append(hourWork, minuteWork...) {
		stored, err := a.write(ctx, w.k, w.u)
		if err != nil {
			return err
		}
		a.mu.Lock()
		a.persisted[w.k] = stored
		if !w.k.minute {
			merged[w.k] = stored
		}
		a.mu.Unlock()
	}
	if err := a.advanceMarker(ctx, MinuteMarkerKey, through, 60); err != nil {
		return err
	}
	if err := a.advanceMarker(ctx, MarkerKey, hoursThrough, 3600); err != nil {
		return err
	}
	a.mu.Lock()
	// The hours' aggregates replace their minutes in one step, so a
	// query never counts both or neither.
	maps.Copy(a.hours, merged)
	for k := range a.minutes {
		if k.hour() <= hoursThrough {
			delete(a.minutes, k)
		}
	}
	a.hasWritten, a.writtenMinute, a.hoursThrough = true, through, hoursThrough
	for k := range a.persisted {
		if k.start <= through {
			delete(a.persisted, k)
		}
	}
	// Hours the bucket no longer keeps are forgotten here too.
	expired := now.Add(-a.cfg.HourTTL).Unix()
	for k := range a.hours {
		if k.start+3600 <= expired {
			delete(a.hours, k)
		}
	}
	a.mu.Unlock()
	if len(hourWork)+len(minuteWork) > 0 {
		a.log.Debug("metering: usage rolled up", "minutes_closed_through", time.Unix(through, 0).UTC().Add(time.Minute),
			"hour_aggregates", len(hourWork), "minute_aggregates", len(minuteWork))
	}
	return nil
}

// write creates k's aggregate in the bucket, with its TTL, and returns
// the value stored. If it is there already (another server, or this one
// before a restart, closed it), the stored one wins: this Aggregator
// adopts it (a minute's at once, an hour's through what write returns),
// so that all agree.
func (a *Aggregator) write(ctx context.Context, k aggKey, u *usage) (*usage, error) {
	key := k.String()
	val, err := encodeAgg(k, u)
	if err != nil {
		return nil, fmt.Errorf("metering: encode %s: %w", key, err)
	}
	ttl := a.cfg.HourTTL
	if k.minute {
		ttl = a.cfg.MinuteTTL
	}
	_, err = a.kv.Create(ctx, key, val, jetstream.KeyTTL(ttl))
	if err == nil {
		return u, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("metering: write %s: %w", key, err)
	}
	e, err := a.kv.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("metering: read %s: %w", key, err)
	}
	if bytes.Equal(e.Value(), val) {
		return u, nil
	}
	stored, err := decodeAgg(e.Value(), k)
	if err != nil {
		a.log.Warn("metering: unreadable aggregate in the usage bucket, replaced", "key", key, "err", err)
		if _, err := a.kv.Update(ctx, key, val, e.Revision()); err != nil {
			return nil, fmt.Errorf("metering: write %s: %w", key, err)
		}
		return u, nil
	}
	a.log.Info("metering: another server closed this aggregate with other numbers; taking the stored ones", "key", key,
		"requests_here", u.Requests, "requests_stored", stored.Requests)
	if k.minute {
		a.mu.Lock()
		a.minutes[k] = stored
		a.mu.Unlock()
	}
	return stored, nil
}

// advanceMarker moves the marker key forward to through (never back).
func (a *Aggregator) advanceMarker(ctx context.Context, key string, through, unit int64) error {
	val := []byte(strconv.FormatInt(through, 10))
	var err error
	for range 5 {
		var e jetstream.KeyValueEntry
		e, err = a.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = a.kv.Create(ctx, key, val)
		case err != nil:
			return fmt.Errorf("metering: read %s: %w", key, err)
		default:
			if cur, perr := strconv.ParseInt(string(e.Value()), 10, 64); perr == nil && cur >= through && cur%unit == 0 {
				return nil
			}
			_, err = a.kv.Update(ctx, key, val, e.Revision())
		}
		if err == nil || !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("metering: write %s: %w", key, err)
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
		st := a.Stats()
		if st.Late != a.lateSeen {
			a.log.Warn("metering: usage records arrived after their minute was closed and were not counted",
				"late_total", st.Late, "since_last_report", st.Late-a.lateSeen)
			a.lateSeen = st.Late
		}
		if st.Missed != a.missSeen {
			a.log.Warn("metering: usage messages were discarded by the raw records' limits before they were rolled up; raise --usage-raw-max-bytes or --usage-raw-max-age",
				"missed_total", st.Missed, "since_last_report", st.Missed-a.missSeen)
			a.missSeen = st.Missed
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
		st.MinutesClosedThrough = time.Unix(a.closedMinute, 0).UTC().Add(time.Minute)
	}
	if a.hasWritten {
		st.ClosedThrough = time.Unix(a.hoursThrough, 0).UTC().Add(time.Hour)
	}
	st.Minutes, st.Hours = len(a.minutes), len(a.hours)
	return st
}

// Close stops following the stream and waits for the Aggregator's
// goroutines, at most until ctx ends. Minutes not yet closed are not
// written: the next Start reads them from the stream again. Close is
// idempotent.
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
