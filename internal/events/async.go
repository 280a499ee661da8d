package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/dispatch"
	"github.com/ternhq/tern/internal/manifest"
	"github.com/ternhq/tern/internal/metering"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/runtime"
	"github.com/ternhq/tern/internal/store"
)

// Sources of async events, in the Tern-Source header.
const (
	SourceAPI         = "api"
	SourceSchedule    = "schedule"
	SourceCloudEvent  = "cloudevent"
	SourceDestination = "destination"
	SourceReplay      = "replay"
)

// MaxIdempotencyKey is the longest idempotency key accepted.
const MaxIdempotencyKey = 256

// Event is an asynchronous invocation to accept.
type Event struct {
	// Function is "name" or "name@qualifier" (alias or version, resolved
	// when the event runs).
	Function string
	Payload  []byte
	// IdempotencyKey, when set, makes resubmissions within the dedupe
	// window of the same key a no-op that answers the same request id.
	IdempotencyKey string
	TraceID        string
	Source         string
	// msgID de-duplicates internal submissions (schedule ticks, CloudEvents).
	msgID     string
	requestID string
}

// Accepted is the answer to Submit.
type Accepted struct {
	RequestID string `json:"requestId"`
	// Duplicate: an event with the same idempotency key (or tick, or
	// CloudEvent id) was accepted before; nothing new was stored.
	Duplicate bool `json:"duplicate,omitempty"`
}

// Submit stores an async event and returns once JetStream has it. The
// function must exist; the payload must be JSON within MaxEventBytes.
func (s *Service) Submit(ctx context.Context, ev Event) (*Accepted, error) {
	name, qualifier, _ := strings.Cut(ev.Function, "@")
	if _, err := s.fns.Resolve(ev.Function); err != nil {
		return nil, err
	}
	if int64(len(ev.Payload)) > s.cfg.MaxEventBytes {
		return nil, apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge,
			fmt.Sprintf("the event is %d bytes, more than the %d allowed for asynchronous events", len(ev.Payload), s.cfg.MaxEventBytes))
	}
	if len(ev.IdempotencyKey) > MaxIdempotencyKey {
		return nil, apierror.New(http.StatusBadRequest, apierror.CodeBadRequest,
			fmt.Sprintf("the idempotency key is %d bytes, more than the %d allowed", len(ev.IdempotencyKey), MaxIdempotencyKey))
	}
	if full, err := s.backlog.full(ctx, s.js, s.cfg.MaxBacklogBytes); err != nil {
		return nil, fmt.Errorf("%w: %w", errUnavailable, err)
	} else if full {
		return nil, apierror.New(http.StatusTooManyRequests, apierror.CodeThrottled,
			"the asynchronous event backlog is full; try again later")
	}
	rid, msgID := ev.requestID, ev.msgID
	if ev.IdempotencyKey != "" {
		rid = derivedID("idempotency", name, ev.IdempotencyKey)
		msgID = "idem:" + name + ":" + shortHash(ev.IdempotencyKey)
	}
	if rid == "" {
		rid = runtime.NewRequestID()
	}
	// JetStream de-duplicates by message id only while the stream still
	// holds the message; the work queue drops it once run, and a restart
	// forgets ids of dropped messages. The bucket remembers them for the
	// whole window.
	seenKey := ""
	if msgID != "" {
		seenKey = fullHash(msgID)
		if e, err := s.seen.Get(ctx, seenKey); err == nil {
			return &Accepted{RequestID: string(e.Value()), Duplicate: true}, nil
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("%w: %w", errUnavailable, err)
		}
	}
	if ev.Source == "" {
		ev.Source = SourceAPI
	}
	msg := nats.NewMsg(store.AsyncSubjectPrefix + name)
	msg.Data = ev.Payload
	msg.Header.Set(hdrRequestID, rid)
	msg.Header.Set(hdrEnqueued, s.cfg.Now().UTC().Format(time.RFC3339Nano))
	msg.Header.Set(hdrSource, ev.Source)
	if qualifier != "" {
		msg.Header.Set(hdrQualifier, qualifier)
	}
	if ev.TraceID != "" {
		msg.Header.Set(hdrTraceID, headerValue(ev.TraceID, 512))
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := s.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: storing the event: %w", errUnavailable, err)
	}
	if seenKey != "" {
		if _, err := s.seen.Put(ctx, seenKey, []byte(rid)); err != nil {
			s.log.Warn("events: remembering an event id", "function", name, "err", err)
		}
	}
	s.backlog.add(int64(len(ev.Payload)))
	s.ensureAsyncWorker(name)
	return &Accepted{RequestID: rid, Duplicate: ack.Duplicate}, nil
}

// backlogGauge caches the async stream's size for a moment, so that
// Submit does not ask the server on every event.
type backlogGauge struct {
	mu    sync.Mutex
	bytes int64
	at    time.Time
}

func (g *backlogGauge) full(ctx context.Context, js jetstream.JetStream, limit int64) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Since(g.at) > 250*time.Millisecond {
		st, err := js.Stream(ctx, store.AsyncStream)
		if err != nil {
			return false, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return false, err
		}
		g.bytes, g.at = int64(info.State.Bytes), time.Now()
	}
	return g.bytes >= limit, nil
}

func (g *backlogGauge) add(n int64) {
	g.mu.Lock()
	g.bytes += n
	g.mu.Unlock()
}

func asyncConsumer(name string) string { return "async_" + name }

// ensureAsyncWorker starts the function's async worker on this node if
// it is not running.
func (s *Service) ensureAsyncWorker(name string) {
	v, err := s.fns.Resolve(name)
	if err != nil {
		return // deleted meanwhile
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.async[name] != nil {
		return
	}
	conc := v.Manifest.AsyncConcurrency()
	ctx, cancel := context.WithCancel(s.ctx)
	w := &worker{cancel: cancel, done: make(chan struct{}), conc: conc}
	s.async[name] = w
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(w.done)
		defer func() {
			s.mu.Lock()
			if s.async[name] == w {
				delete(s.async, name)
			}
			s.mu.Unlock()
			cancel()
		}()
		if err := s.runAsync(ctx, name, conc); err != nil && ctx.Err() == nil {
			s.log.Warn("events: async worker stopped", "function", name, "err", err)
		}
	}()
}

// runAsync takes the function's waiting events and runs up to conc at a
// time, until ctx ends or nothing came for IdleWorker.
func (s *Service) runAsync(ctx context.Context, name string, conc int) error {
	cons, err := s.js.CreateOrUpdateConsumer(ctx, store.AsyncStream, jetstream.ConsumerConfig{
		Durable:       asyncConsumer(name),
		Description:   "Tern async invocations of " + name,
		FilterSubject: store.AsyncSubjectPrefix + name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxAckPending: conc,
		MaxDeliver:    -1,
		// A function nobody sends events to gives its consumer back.
		InactiveThreshold: 24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	return s.consume(ctx, cons, conc, func(ctx context.Context, msg jetstream.Msg) {
		s.runEvent(ctx, name, msg)
	})
}

// consume hands each message to handle in its own goroutine, with at
// most conc running, until ctx ends or the consumer stayed idle for
// IdleWorker with nothing running. Handlers run under the service's run
// context, so a worker that stops (a new version, idleness) lets its
// running invocations finish.
func (s *Service) consume(ctx context.Context, cons jetstream.Consumer, conc int, handle func(context.Context, jetstream.Msg)) error {
	slots := make(chan struct{}, conc)
	idleSince := time.Now()
	for ctx.Err() == nil {
		// Take as many as there are free slots (at least one).
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		free := 1
	more:
		for free < conc {
			select {
			case slots <- struct{}{}:
				free++
			default:
				break more
			}
		}
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		batch, err := cons.Fetch(free, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			for range free {
				<-slots
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			s.running.Add(1)
			go func() {
				defer s.running.Done()
				defer func() { <-slots }()
				handle(s.runCtx, msg)
			}()
		}
		cancel()
		for range free - got {
			<-slots
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			if consumerGone(err) {
				return err
			}
			s.log.Debug("events: fetch", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
		if got > 0 || len(slots) > 0 {
			idleSince = time.Now()
		} else if time.Since(idleSince) >= s.cfg.IdleWorker {
			return nil
		}
	}
	return nil
}

// keepAlive tells JetStream that msg is still being worked on until the
// returned stop is called.
func (s *Service) keepAlive(msg jetstream.Msg, fn, topic string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				s.inProgress(msg, fn, topic)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// attemptResult is how one run of an event ended, as retries see it.
type attemptResult struct {
	out       *dispatch.Outcome
	v         *registry.Version
	errType   string // "" when it succeeded
	errMsg    string
	errBody   []byte
	retryable bool // a failure that may succeed later
}

// runEvent runs one async event and settles it: ack, a delayed retry,
// or a dead letter.
func (s *Service) runEvent(ctx context.Context, name string, msg jetstream.Msg) {
	h := msg.Headers()
	if h == nil {
		h = nats.Header{}
	}
	md, err := msg.Metadata()
	if err != nil {
		s.log.Error("events: an async message without metadata", "function", name, "err", err)
		s.nak(msg, s.cfg.ThrottleDelay, name, "")
		return
	}
	// Events published by plain NATS clients carry none of Tern's
	// headers: give them a stable request id and their store time.
	if h.Get(hdrRequestID) == "" {
		h.Set(hdrRequestID, derivedID("async", md.Stream, strconv.FormatUint(md.Sequence.Stream, 10)))
	}
	if h.Get(hdrEnqueued) == "" {
		h.Set(hdrEnqueued, md.Timestamp.UTC().Format(time.RFC3339Nano))
	}
	rid := h.Get(hdrRequestID)
	attempt := headerInt(h, hdrAttempt, 1)
	enqueued := headerTime(h, hdrEnqueued)
	target := name
	if q := h.Get(hdrQualifier); q != "" {
		target += "@" + q
	}
	v, err := s.fns.Resolve(target)
	if err != nil {
		if _, lerr := s.fns.Resolve(name); lerr != nil {
			// Deleted: its events go with it.
			s.log.Info("events: dropping an event of a deleted function", "function", name, "request_id", rid)
			s.ack(ctx, msg, name, "")
			return
		}
		s.deadLetter(ctx, name, msg, h, &attemptResult{errType: "ResourceNotFound", errMsg: err.Error()}, attempt, "async", "")
		return
	}
	m := &v.Manifest
	if !enqueued.IsZero() && s.cfg.Now().Sub(enqueued) > m.Async.MaxAgeOrDefault() {
		res := &attemptResult{v: v, errType: "EventAgeExceeded", errMsg: fmt.Sprintf("the event is older than async.maxAge (%s)", m.Async.MaxAgeOrDefault())}
		s.finishFailed(ctx, name, msg, h, res, attempt-1, "EventAgeExceeded")
		return
	}

	stop := s.keepAlive(msg, name, "")
	res := s.invoke(ctx, v, &dispatch.Request{RequestID: rid, Payload: msg.Data(), TraceID: h.Get(hdrTraceID), Trigger: triggerOf(h.Get(hdrSource))})
	stop()

	switch {
	case res.errType == "":
		s.deliver(ctx, m.Async.OnSuccess, v, rid, md, attempt, "Success", msg.Data(), res)
		s.ack(ctx, msg, name, "")
	case res.errType == errTypeThrottled, res.errType == errTypeStopping:
		// Not the function's fault: try again later without using an
		// attempt.
		s.nak(msg, s.cfg.ThrottleDelay, name, "")
	case !res.retryable:
		s.finishFailed(ctx, name, msg, h, res, attempt, "RetriesExhausted")
	case attempt <= m.Async.RetryCount():
		if err := s.retryLater(ctx, name, msg, h, md, attempt, m.Async.BackoffOrDefault()); err != nil {
			s.log.Warn("events: scheduling a retry", "function", name, "request_id", rid, "err", err)
			s.nak(msg, s.cfg.ThrottleDelay, name, "")
			return
		}
		s.ack(ctx, msg, name, "")
	default:
		s.finishFailed(ctx, name, msg, h, res, attempt, "RetriesExhausted")
	}
}

// triggerOf names what caused an async event, for its usage record.
func triggerOf(source string) string {
	switch source {
	case SourceSchedule:
		return metering.TriggerSchedule
	case SourceCloudEvent:
		return metering.TriggerCloudEvent
	case SourceDestination:
		return metering.TriggerDestination
	}
	return metering.TriggerAsync
}

// Error types that are not the function's.
const (
	errTypeThrottled = "Tern.Throttled"
	errTypeStopping  = "Tern.Stopping"
)

// invoke runs one attempt and classifies its end.
func (s *Service) invoke(ctx context.Context, v *registry.Version, req *dispatch.Request) *attemptResult {
	out, err := s.inv.InvokeRequest(ctx, v, req)
	res := &attemptResult{out: out, v: v}
	var ie *runtime.InitError
	var failure *runtime.Failure
	switch {
	case err == nil && out.Result.Error == nil:
	case err == nil:
		res.errType, res.errBody, res.retryable = out.Result.Error.Type, out.Result.Error.Body, true
		res.errMsg = errorMessage(out.Result.Error.Body)
	case errors.Is(err, dispatch.ErrThrottled):
		res.errType = errTypeThrottled
	case errors.Is(err, dispatch.ErrClosed), ctx.Err() != nil:
		res.errType = errTypeStopping
	case errors.Is(err, dispatch.ErrGone):
		res.errType, res.errMsg = "ResourceNotFound", err.Error()
	case errors.As(err, &ie):
		res.errType, res.errBody, res.retryable = ie.Type, ie.Body, true
		res.errMsg = errorMessage(ie.Body)
	case errors.As(err, &failure):
		res.errType, res.errBody, res.errMsg, res.retryable = failure.Type, failure.Body, failure.Message, true
	case errors.Is(err, runtime.ErrTimeout):
		res.errType, res.errMsg, res.retryable = "Sandbox.Timedout", err.Error(), true
	default:
		res.errType, res.errMsg, res.retryable = "Runtime.ExitError", err.Error(), true
	}
	return res
}

// errorMessage pulls errorMessage out of a Lambda error body.
func errorMessage(body []byte) string {
	var e struct {
		Message string `json:"errorMessage"`
	}
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return e.Message
	}
	if len(body) > 512 {
		body = body[:512]
	}
	return string(body)
}

// retryLater stores a copy of the event that the NATS server moves back
// onto the function's subject after the back-off (doubling per attempt).
// The copy's subject and id name the message it replaces (its place in
// the stream), so storing it twice for one message is harmless, and a
// replayed event gets retries of its own.
func (s *Service) retryLater(ctx context.Context, name string, msg jetstream.Msg, h nats.Header, md *jetstream.MsgMetadata, attempt int, backoff time.Duration) error {
	seq := strconv.FormatUint(md.Sequence.Stream, 10)
	next := strconv.Itoa(attempt + 1)
	retry := nats.NewMsg(store.DelaySubjectPrefix + name + "." + seq + "." + next)
	retry.Data = msg.Data()
	for k, vs := range h {
		if strings.HasPrefix(k, "Tern-") {
			retry.Header[k] = vs
		}
	}
	retry.Header.Set(hdrAttempt, next)
	at := retryAt(s.cfg.Now(), backoff, attempt)
	_, err := s.js.PublishMsg(ctx, retry,
		jetstream.WithMsgID("retry:"+name+":"+seq),
		jetstream.WithScheduleAt(at),
		jetstream.WithScheduleTarget(store.AsyncSubjectPrefix+name))
	return err
}

// retryAt is when the retry after failed attempt number attempt (from 1)
// may run, the attempt having failed at failed: the back-off doubled per
// attempt after the first, rounded up to a whole second, because a NATS
// message schedule ("@at", RFC 3339) keeps whole seconds only and would
// otherwise cut up to a second off the wait.
func retryAt(failed time.Time, backoff time.Duration, attempt int) time.Time {
	at := failed.Add(backoff << (attempt - 1))
	if t := at.Truncate(time.Second); t.Before(at) {
		return t.Add(time.Second)
	}
	return at
}

// finishFailed dead-letters an event that will not be tried again and
// tells its onFailure destination.
func (s *Service) finishFailed(ctx context.Context, name string, msg jetstream.Msg, h nats.Header, res *attemptResult, attempts int, condition string) {
	if res.v != nil {
		md, _ := msg.Metadata()
		s.deliver(ctx, res.v.Manifest.Async.OnFailure, res.v, h.Get(hdrRequestID), md, attempts, condition, msg.Data(), res)
	}
	s.deadLetter(ctx, name, msg, h, res, attempts, "async", "")
}

// deadLetter moves msg to the function's dead-letter subject, then acks
// it. If storing the letter fails, the event is given back instead.
func (s *Service) deadLetter(ctx context.Context, name string, msg jetstream.Msg, h nats.Header, res *attemptResult, attempts int, kind, topic string) {
	dl := nats.NewMsg(store.DeadLetterSubjectPrefix + name)
	dl.Data = msg.Data()
	for k, vs := range h {
		if !strings.HasPrefix(k, "Nats-") {
			dl.Header[k] = vs
		}
	}
	// One letter per function and message: two functions reading one
	// topic each keep their own.
	md, _ := msg.Metadata()
	id := name + ":" + h.Get(hdrRequestID)
	if md != nil {
		id = name + ":" + md.Stream + ":" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	dl.Header.Set(hdrDLQKind, kind)
	if topic != "" {
		dl.Header.Set(hdrDLQTopic, topic)
	}
	dl.Header.Set(hdrDLQErrorType, headerValue(res.errType, 256))
	dl.Header.Set(hdrDLQError, headerValue(res.errMsg, 1024))
	dl.Header.Set(hdrDLQAttempts, strconv.Itoa(attempts))
	dl.Header.Set(hdrDLQFailed, s.cfg.Now().UTC().Format(time.RFC3339Nano))
	if _, err := s.js.PublishMsg(ctx, dl, jetstream.WithMsgID("dlq:"+id)); err != nil {
		s.log.Warn("events: storing a dead letter; the event stays queued", "function", name, "err", err)
		s.nak(msg, s.cfg.ThrottleDelay, name, topic)
		return
	}
	s.log.Info("events: dead-lettered", "function", name, "kind", kind, "error_type", res.errType, "attempts", attempts)
	s.ack(ctx, msg, name, topic)
}

// record is the invocation record a destination gets (Lambda's shape).
type record struct {
	Version        string          `json:"version"`
	Timestamp      string          `json:"timestamp"`
	RequestContext recordRequest   `json:"requestContext"`
	RequestPayload json.RawMessage `json:"requestPayload"`
	Response       recordResponse  `json:"responseContext"`
	ResponsePaylod json.RawMessage `json:"responsePayload,omitempty"`
}

type recordRequest struct {
	RequestID   string `json:"requestId"`
	FunctionArn string `json:"functionArn"`
	Condition   string `json:"condition"`
	InvokeCount int    `json:"approximateInvokeCount"`
}

type recordResponse struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	FunctionError   string `json:"functionError,omitempty"`
}

// deliver sends the invocation record to a destination (if any).
// Failing to is logged; it does not undo the event's outcome.
func (s *Service) deliver(ctx context.Context, d *manifest.Destination, v *registry.Version, rid string, md *jetstream.MsgMetadata, attempts int, condition string, payload []byte, res *attemptResult) {
	if d == nil {
		return
	}
	// The record's id names the message that ended (a replayed event's
	// end is another record).
	key := rid
	if md != nil {
		key = md.Stream + ":" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	rec := record{
		Version:   "1.0",
		Timestamp: s.cfg.Now().UTC().Format(time.RFC3339Nano),
		RequestContext: recordRequest{
			RequestID: rid, FunctionArn: "tern:function:" + v.Function + ":" + strconv.Itoa(v.Number),
			Condition: condition, InvokeCount: attempts,
		},
		RequestPayload: jsonOrString(payload),
		Response:       recordResponse{StatusCode: 200, ExecutedVersion: strconv.Itoa(v.Number)},
	}
	switch {
	case res.errType == "":
		if res.out != nil && res.out.Result != nil {
			rec.ResponsePaylod = jsonOrString(res.out.Result.Payload)
		}
	default:
		rec.Response.FunctionError = "Unhandled"
		if len(res.errBody) > 0 {
			rec.ResponsePaylod = jsonOrString(res.errBody)
		} else {
			b, _ := json.Marshal(map[string]string{"errorType": res.errType, "errorMessage": res.errMsg})
			rec.ResponsePaylod = b
		}
	}
	body, err := json.Marshal(rec)
	if err == nil && int64(len(body)) > s.cfg.MaxEventBytes {
		// Keep the record within what a destination accepts: drop the
		// payloads, not the record.
		rec.RequestPayload, rec.ResponsePaylod = json.RawMessage("null"), nil
		body, err = json.Marshal(rec)
	}
	if err == nil {
		switch {
		case d.Function != "":
			_, err = s.Submit(ctx, Event{Function: d.Function, Payload: body, Source: SourceDestination,
				msgID: "dest:" + condition + ":" + key, requestID: derivedID("destination", condition, key)})
		case d.Topic != "":
			_, err = s.Publish(ctx, d.Topic, body, nil)
		}
	}
	if err != nil {
		s.log.Warn("events: sending to a destination", "function", v.Function, "request_id", rid, "condition", condition, "err", err)
	}
}

// jsonOrString keeps JSON as it is and quotes anything else.
func jsonOrString(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	if json.Valid(b) {
		return b
	}
	q, _ := json.Marshal(string(b))
	return q
}
