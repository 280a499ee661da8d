package events

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/dispatch"
	"github.com/ternhq/tern/internal/manifest"
	"github.com/ternhq/tern/internal/metering"
	"github.com/ternhq/tern/internal/runtime"
	"github.com/ternhq/tern/internal/store"
)

func topicStream(topic string) string  { return store.TopicStreamPrefix + topic }
func topicSubject(topic string) string { return store.TopicSubjectPrefix + topic }
func redriveSubject(topic, fn string) string {
	return store.TopicSubjectPrefix + topic + ".redrive." + fn
}
func queueConsumer(fn string) string { return "fn_" + fn }
func queueKey(fn, topic string) string {
	return fn + "\x00" + topic
}

// CheckTopicName says what is wrong with a topic name, or nil.
func CheckTopicName(name string) error {
	switch {
	case name == "":
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "a topic needs a name")
	case len(name) > manifest.MaxTopicNameLen:
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest,
			fmt.Sprintf("topic name must be at most %d characters (got %d)", manifest.MaxTopicNameLen, len(name)))
	case !manifest.ValidName(name):
		return apierror.New(http.StatusBadRequest, apierror.CodeBadRequest,
			fmt.Sprintf("topic name %q may contain only letters, digits, '-' and '_', and must start with a letter or digit", name))
	}
	return nil
}

// TopicConfig is a topic to create.
type TopicConfig struct {
	Name string `json:"name"`
	// MaxAge and MaxBytes bound what the topic keeps (defaults from the
	// server's config).
	MaxAge   string `json:"maxAge,omitempty"`
	MaxBytes int64  `json:"maxBytes,omitempty"`
}

// TopicInfo describes a topic and the functions reading it.
type TopicInfo struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	// Depth is how many messages are not yet consumed: with readers, the
	// largest Depth among them (what the reader furthest behind has
	// still to finish); with none, every message kept, since the first
	// function to read the topic gets them all.
	Depth uint64 `json:"depth"`
	// Messages and Bytes are what the topic stores: also messages every
	// reader has finished, until the next trim drops them.
	Messages  uint64          `json:"messages"`
	Bytes     uint64          `json:"bytes"`
	MaxAge    string          `json:"maxAge"`
	MaxBytes  int64           `json:"maxBytes"`
	Created   time.Time       `json:"created"`
	Consumers []TopicConsumer `json:"consumers"`
}

// TopicConsumer is one function reading a topic: what it has not
// consumed yet (its Depth): the messages it has not taken yet (Pending)
// and those it has taken but not finished (InFlight: running, or waiting
// to be tried again). A message is consumed once the function succeeded
// with it or it was dead-lettered.
type TopicConsumer struct {
	Function    string `json:"function"`
	Depth       uint64 `json:"depth"`
	Pending     uint64 `json:"pending"`
	InFlight    int    `json:"inFlight"`
	Redelivered int    `json:"redelivered"`
}

// CreateTopic creates a topic (a stream of its own).
func (s *Service) CreateTopic(ctx context.Context, cfg TopicConfig) (*TopicInfo, error) {
	if err := CheckTopicName(cfg.Name); err != nil {
		return nil, err
	}
	maxAge := s.cfg.TopicMaxAge
	if cfg.MaxAge != "" {
		d, err := time.ParseDuration(cfg.MaxAge)
		if err != nil || d < time.Minute {
			return nil, apierror.New(http.StatusBadRequest, apierror.CodeBadRequest,
				fmt.Sprintf("maxAge %q: want a duration of at least 1m, such as 96h", cfg.MaxAge))
		}
		maxAge = d
	}
	maxBytes := s.cfg.TopicMaxBytes
	if cfg.MaxBytes < 0 {
		return nil, apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "maxBytes must not be negative")
	}
	if cfg.MaxBytes > 0 {
		maxBytes = cfg.MaxBytes
	}
	// Creating a stream with the same settings again succeeds in NATS;
	// a second create of a topic is a conflict here.
	if _, err := s.js.Stream(ctx, topicStream(cfg.Name)); err == nil {
		return nil, apierror.New(http.StatusConflict, apierror.CodeConflict, fmt.Sprintf("topic %q exists", cfg.Name))
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("creating topic %q: %w", cfg.Name, err)
	}
	_, err := s.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        topicStream(cfg.Name),
		Description: "Tern topic " + cfg.Name,
		Subjects:    []string{topicSubject(cfg.Name), topicSubject(cfg.Name) + ".redrive.>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		// A full topic refuses new messages rather than dropping ones
		// not yet delivered.
		Discard:    jetstream.DiscardNew,
		MaxAge:     maxAge,
		MaxBytes:   maxBytes,
		Duplicates: 2 * time.Minute,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil, apierror.New(http.StatusConflict, apierror.CodeConflict, fmt.Sprintf("topic %q exists", cfg.Name))
	}
	if err != nil {
		return nil, fmt.Errorf("creating topic %q: %w", cfg.Name, err)
	}
	return s.Topic(ctx, cfg.Name)
}

func errNoTopic(name string) error {
	return apierror.New(http.StatusNotFound, apierror.CodeNotFound, fmt.Sprintf("no topic named %q", name))
}

// Topic describes one topic.
func (s *Service) Topic(ctx context.Context, name string) (*TopicInfo, error) {
	if err := CheckTopicName(name); err != nil {
		return nil, err
	}
	st, err := s.js.Stream(ctx, topicStream(name))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, errNoTopic(name)
	}
	if err != nil {
		return nil, fmt.Errorf("topic %q: %w", name, err)
	}
	return s.topicInfo(ctx, name, st)
}

func (s *Service) topicInfo(ctx context.Context, name string, st jetstream.Stream) (*TopicInfo, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("topic %q: %w", name, err)
	}
	t := &TopicInfo{
		Name: name, Subject: topicSubject(name), Messages: info.State.Msgs, Bytes: info.State.Bytes,
		MaxAge: manifest.Duration(info.Config.MaxAge).String(), MaxBytes: info.Config.MaxBytes,
		Created: info.Created, Consumers: []TopicConsumer{},
	}
	lister := st.ListConsumers(ctx)
	for ci := range lister.Info() {
		fn, ok := strings.CutPrefix(ci.Name, "fn_")
		if !ok {
			continue
		}
		c := TopicConsumer{Function: fn, Pending: ci.NumPending, InFlight: ci.NumAckPending, Redelivered: ci.NumRedelivered}
		c.Depth = c.Pending + uint64(c.InFlight)
		t.Consumers = append(t.Consumers, c)
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("topic %q: consumers: %w", name, err)
	}
	t.Depth = topicDepth(t.Messages, t.Consumers)
	slices.SortFunc(t.Consumers, func(a, b TopicConsumer) int { return strings.Compare(a.Function, b.Function) })
	return t, nil
}

// topicDepth is a topic's depth: the largest of its readers' depths, or
// with no reader every message it keeps.
func topicDepth(stored uint64, readers []TopicConsumer) uint64 {
	if len(readers) == 0 {
		return stored
	}
	var d uint64
	for _, c := range readers {
		d = max(d, c.Depth)
	}
	return d
}

// Topics describes every topic.
func (s *Service) Topics(ctx context.Context) ([]TopicInfo, error) {
	out := []TopicInfo{}
	names := s.js.StreamNames(ctx, jetstream.WithStreamListSubject(store.TopicSubjectPrefix+">"))
	var list []string
	for n := range names.Name() {
		if t, ok := strings.CutPrefix(n, store.TopicStreamPrefix); ok {
			list = append(list, t)
		}
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	slices.Sort(list)
	for _, n := range list {
		t, err := s.Topic(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, *t)
	}
	return out, nil
}

// DeleteTopic deletes a topic and its messages. A topic that a function
// reads or sends its results to cannot be deleted.
func (s *Service) DeleteTopic(ctx context.Context, name string) error {
	if err := CheckTopicName(name); err != nil {
		return err
	}
	var users []string
	for _, v := range s.fns.List() {
		m := &v.Manifest
		uses := slices.ContainsFunc(m.Triggers, func(t manifest.Trigger) bool { return t.Queue != nil && t.Queue.Topic == name })
		for _, d := range []*manifest.Destination{m.Async.OnSuccess, m.Async.OnFailure} {
			uses = uses || (d != nil && d.Topic == name)
		}
		if uses {
			users = append(users, v.Function)
		}
	}
	if len(users) > 0 {
		return apierror.New(http.StatusConflict, apierror.CodeConflict,
			fmt.Sprintf("topic %q is used by %s; change or delete them first", name, strings.Join(users, ", ")))
	}
	err := s.js.DeleteStream(ctx, topicStream(name))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return errNoTopic(name)
	}
	if err != nil {
		return fmt.Errorf("deleting topic %q: %w", name, err)
	}
	return nil
}

// trimTopic drops the messages every function reading the topic has
// finished with. A topic nobody reads keeps everything (until its age
// limit), for the first function that reads it.
func (s *Service) trimTopic(ctx context.Context, topic string) {
	st, err := s.js.Stream(ctx, topicStream(topic))
	if err != nil {
		return
	}
	floor, readers := uint64(0), 0
	lister := st.ListConsumers(ctx)
	for ci := range lister.Info() {
		if !strings.HasPrefix(ci.Name, "fn_") {
			continue
		}
		if readers == 0 || ci.AckFloor.Stream < floor {
			floor = ci.AckFloor.Stream
		}
		readers++
	}
	if lister.Err() != nil || readers == 0 || floor == 0 {
		return
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
		s.log.Debug("events: trimming a topic", "topic", topic, "err", err)
	}
}

// trimTopics trims every topic.
func (s *Service) trimTopics(ctx context.Context) {
	names := s.js.StreamNames(ctx, jetstream.WithStreamListSubject(store.TopicSubjectPrefix+">"))
	var topics []string
	for n := range names.Name() {
		if t, ok := strings.CutPrefix(n, store.TopicStreamPrefix); ok {
			topics = append(topics, t)
		}
	}
	for _, t := range topics {
		s.trimTopic(ctx, t)
	}
}

// consumerGone tells a fetch error that will not pass: the consumer or
// its stream is gone.
func consumerGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrNoResponders)
}

// Published is the answer to Publish.
type Published struct {
	MessageID string `json:"messageId"`
	Sequence  uint64 `json:"sequence"`
}

// Publish stores a message on a topic. attrs become the message's
// attributes (SQS messageAttributes).
func (s *Service) Publish(ctx context.Context, topic string, data []byte, attrs map[string]string) (*Published, error) {
	if err := CheckTopicName(topic); err != nil {
		return nil, err
	}
	if int64(len(data)) > s.cfg.MaxEventBytes {
		return nil, apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge,
			fmt.Sprintf("the message is %d bytes, more than the %d allowed", len(data), s.cfg.MaxEventBytes))
	}
	if !utf8.Valid(data) {
		return nil, apierror.New(http.StatusBadRequest, apierror.CodeBadRequest, "a message body must be UTF-8 text (encode binary data, e.g. as base64)")
	}
	msg := nats.NewMsg(topicSubject(topic))
	msg.Data = data
	id := newMessageID()
	msg.Header.Set(hdrMessageID, id)
	for k, v := range attrs {
		if !attrNameRE.MatchString(k) || len(k) > 256 {
			return nil, apierror.New(http.StatusBadRequest, apierror.CodeBadRequest,
				fmt.Sprintf("attribute name %q: use letters, digits, '-', '_' and '.' (at most 256)", k))
		}
		msg.Header.Set(hdrAttr+k, headerValue(v, 4096))
	}
	ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(topicStream(topic)))
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return nil, errNoTopic(topic)
	}
	var apiErr *jetstream.APIError
	if err != nil {
		if errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum") {
			return nil, apierror.New(http.StatusTooManyRequests, apierror.CodeThrottled, fmt.Sprintf("topic %q is full", topic))
		}
		return nil, fmt.Errorf("%w: publishing to %q: %w", errUnavailable, topic, err)
	}
	return &Published{MessageID: id, Sequence: ack.Sequence}, nil
}

var attrNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// newMessageID is a random UUID, as SQS message ids are.
func newMessageID() string { return runtime.NewRequestID() }

// syncQueues starts (again) the queue workers of a function's current
// version and removes the consumers of topics it no longer reads.
func (s *Service) syncQueues(name string, m *manifest.Manifest) {
	var want []string
	for _, t := range m.Triggers {
		if t.Queue != nil {
			want = append(want, t.Queue.Topic)
		}
	}
	s.mu.Lock()
	had := s.topics[name]
	s.topics[name] = want
	for _, t := range had {
		if w := s.queues[queueKey(name, t)]; w != nil {
			w.cancel()
		}
	}
	s.mu.Unlock()
	for _, t := range had {
		if !slices.Contains(want, t) {
			s.later(func(ctx context.Context) { s.deleteQueueConsumer(ctx, name, t) })
		}
	}
	for _, t := range m.Triggers {
		if t.Queue != nil {
			s.startQueue(name, *t.Queue)
		}
	}
}

func (s *Service) deleteQueueConsumer(ctx context.Context, fn, topic string) {
	// What every reader has finished goes first, so that a function that
	// reads the topic again later does not get it again.
	s.trimTopic(ctx, topic)
	err := s.js.DeleteConsumer(ctx, topicStream(topic), queueConsumer(fn))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		s.log.Warn("events: removing a queue consumer", "function", fn, "topic", topic, "err", err)
	}
}

// startQueue runs a queue trigger's worker until the function changes.
func (s *Service) startQueue(fn string, q manifest.QueueTrigger) {
	key := queueKey(fn, q.Topic)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	old := s.queues[key]
	ctx, cancel := context.WithCancel(s.ctx)
	w := &worker{cancel: cancel, done: make(chan struct{}), conc: q.Concurrency}
	s.queues[key] = w
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(w.done)
		defer cancel()
		if old != nil {
			<-old.done
		}
		for ctx.Err() == nil {
			err := s.runQueue(ctx, fn, q)
			if ctx.Err() != nil {
				break
			}
			s.log.Warn("events: queue worker", "function", fn, "topic", q.Topic, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
		s.mu.Lock()
		if s.queues[key] == w {
			delete(s.queues, key)
		}
		s.mu.Unlock()
	}()
}

// runQueue reads a topic for a function: Concurrency loops, each taking
// a batch, running it and settling its messages.
func (s *Service) runQueue(ctx context.Context, fn string, q manifest.QueueTrigger) error {
	batch, conc := max(q.Batch, 1), max(q.Concurrency, 1)
	cons, err := s.js.CreateOrUpdateConsumer(ctx, topicStream(q.Topic), jetstream.ConsumerConfig{
		Durable:        queueConsumer(fn),
		Description:    "Tern queue trigger of " + fn,
		FilterSubjects: []string{topicSubject(q.Topic), redriveSubject(q.Topic, fn)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		// Messages wait up to the window for their batch to fill before
		// the worker keeps them alive.
		AckWait:    s.cfg.AckWait + q.Window.D(),
		MaxDeliver: -1,
		// Failed messages wait out their back-off as pending.
		MaxAckPending: batch*conc + 1000,
	})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	errs := make(chan error, conc)
	for range conc {
		go func() { errs <- s.queueLoop(ctx, fn, q, cons) }()
	}
	var first error
	for range conc {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (s *Service) queueLoop(ctx context.Context, fn string, q manifest.QueueTrigger, cons jetstream.Consumer) error {
	for ctx.Err() == nil {
		msgs, err := nextBatch(ctx, cons, q)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if consumerGone(err) {
				return err // startQueue makes it again
			}
			s.log.Debug("events: queue fetch", "function", fn, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		s.running.Add(1)
		s.runBatch(s.runCtx, fn, q, msgs)
		s.running.Done()
	}
	return nil
}

// nextBatch waits for messages: with no window, for the first one, then
// takes what else is there at once; with a window, up to Batch within it.
func nextBatch(ctx context.Context, cons jetstream.Consumer, q manifest.QueueTrigger) ([]jetstream.Msg, error) {
	var msgs []jetstream.Msg
	collect := func(b jetstream.MessageBatch) error {
		for m := range b.Messages() {
			msgs = append(msgs, m)
		}
		err := b.Error()
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return nil
		}
		return err
	}
	wait := 5 * time.Second
	n := max(q.Batch, 1)
	if q.Window > 0 {
		wait = q.Window.D()
	} else {
		n = 1
	}
	fctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	b, err := cons.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		return nil, err
	}
	if err := collect(b); err != nil && len(msgs) == 0 {
		return nil, err
	}
	if q.Window == 0 && len(msgs) == 1 && q.Batch > 1 {
		b, err := cons.FetchNoWait(q.Batch - 1)
		if err == nil {
			_ = collect(b)
		}
	}
	return msgs, nil
}

// sqsEvent is the SQS event shape a queue trigger delivers.
type sqsEvent struct {
	Records []sqsRecord `json:"Records"`
}

type sqsRecord struct {
	MessageID         string                  `json:"messageId"`
	ReceiptHandle     string                  `json:"receiptHandle"`
	Body              string                  `json:"body"`
	Attributes        map[string]string       `json:"attributes"`
	MessageAttributes map[string]sqsAttribute `json:"messageAttributes"`
	MD5OfBody         string                  `json:"md5OfBody"`
	EventSource       string                  `json:"eventSource"`
	EventSourceARN    string                  `json:"eventSourceARN"`
	AWSRegion         string                  `json:"awsRegion"`
}

type sqsAttribute struct {
	StringValue      string   `json:"stringValue"`
	StringListValues []string `json:"stringListValues"`
	BinaryListValues []string `json:"binaryListValues"`
	DataType         string   `json:"dataType"`
}

// messageID is a queue message's id: the one given at publish, or one
// derived from its place in the topic (for plain NATS publishes).
func messageID(topic string, msg jetstream.Msg, md *jetstream.MsgMetadata) string {
	if id := msg.Headers().Get(hdrMessageID); id != "" {
		return id
	}
	return derivedID("topic", topic, strconv.FormatUint(md.Sequence.Stream, 10))
}

func sqsRecordOf(region, topic string, msg jetstream.Msg, md *jetstream.MsgMetadata, id string) sqsRecord {
	body := msg.Data()
	sum := md5.Sum(body)
	r := sqsRecord{
		MessageID:     id,
		ReceiptHandle: topic + ":" + strconv.FormatUint(md.Sequence.Stream, 10) + ":" + strconv.FormatUint(md.NumDelivered, 10),
		Attributes: map[string]string{
			"ApproximateReceiveCount":          strconv.FormatUint(md.NumDelivered, 10),
			"SentTimestamp":                    strconv.FormatInt(md.Timestamp.UnixMilli(), 10),
			"SenderId":                         "tern",
			"ApproximateFirstReceiveTimestamp": strconv.FormatInt(md.Timestamp.UnixMilli(), 10),
		},
		MessageAttributes: map[string]sqsAttribute{},
		MD5OfBody:         hex.EncodeToString(sum[:]),
		EventSource:       "tern:topic",
		EventSourceARN:    "tern:topic:" + topic,
		AWSRegion:         region,
	}
	if utf8.Valid(body) {
		r.Body = string(body)
	} else {
		// Plain NATS publishes may carry binary data; SQS bodies are text.
		r.Body = base64.StdEncoding.EncodeToString(body)
		r.MessageAttributes["tern-body-encoding"] = sqsAttribute{StringValue: "base64", StringListValues: []string{}, BinaryListValues: []string{}, DataType: "String"}
	}
	for k, vs := range msg.Headers() {
		name := ""
		switch {
		case strings.HasPrefix(k, hdrAttr):
			name = k[len(hdrAttr):]
		case strings.HasPrefix(k, "Nats-"), strings.HasPrefix(k, "Tern-"):
			continue
		default:
			name = k // a plain NATS client's header
		}
		if len(vs) > 0 {
			r.MessageAttributes[name] = sqsAttribute{StringValue: vs[0], StringListValues: []string{}, BinaryListValues: []string{}, DataType: "String"}
		}
	}
	return r
}

// runBatch invokes the function with a batch and settles each message:
// ack on success, a delayed redelivery on failure, the dead-letter
// stream once a message has had its MaxReceives.
func (s *Service) runBatch(ctx context.Context, fn string, q manifest.QueueTrigger, msgs []jetstream.Msg) {
	ids := make([]string, len(msgs))
	mds := make([]*jetstream.MsgMetadata, len(msgs))
	ev := sqsEvent{Records: make([]sqsRecord, 0, len(msgs))}
	for i, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			md = &jetstream.MsgMetadata{NumDelivered: 1}
		}
		mds[i] = md
		ids[i] = messageID(q.Topic, m, md)
		ev.Records = append(ev.Records, sqsRecordOf(s.cfg.Region, q.Topic, m, md, ids[i]))
	}
	v, err := s.fns.Resolve(fn)
	if err != nil {
		for _, m := range msgs {
			s.nak(m, 0, fn, q.Topic) // the trigger goes with its function; others may still read
		}
		return
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		s.log.Error("events: encoding a batch", "function", fn, "err", err)
		return
	}
	stops := make([]func(), len(msgs))
	for i, m := range msgs {
		stops[i] = s.keepAlive(m, fn, q.Topic)
	}
	res := s.invoke(ctx, v, &dispatch.Request{RequestID: newMessageID(), Payload: payload, Trigger: metering.TriggerQueue})
	for _, stop := range stops {
		stop()
	}
	failed := map[string]bool{}
	switch res.errType {
	case "":
		var ok bool
		if failed, ok = batchItemFailures(res.out.Result.Payload, ids); !ok {
			res.errType, res.errMsg = "InvalidBatchItemFailures", "the function's batchItemFailures named an unknown or empty itemIdentifier"
			failed = nil
		}
	case errTypeThrottled, errTypeStopping:
		for _, m := range msgs {
			s.nak(m, s.cfg.ThrottleDelay, fn, q.Topic)
		}
		return
	}
	for i, m := range msgs {
		if res.errType == "" && !failed[ids[i]] {
			s.ack(ctx, m, fn, q.Topic)
			continue
		}
		r := res
		if res.errType == "" {
			r = &attemptResult{errType: "BatchItemFailure", errMsg: "the function reported this message as failed"}
		}
		if int(mds[i].NumDelivered) >= q.MaxReceives {
			s.deadLetter(ctx, fn, m, m.Headers(), r, int(mds[i].NumDelivered), "queue", q.Topic)
			continue
		}
		s.nak(m, redeliveryDelay(int(mds[i].NumDelivered)), fn, q.Topic)
	}
}

// redeliveryDelay backs off a failing message: 1 s, 2 s, 4 s... at most 1 m.
func redeliveryDelay(delivered int) time.Duration {
	return min(time.Second<<min(max(delivered-1, 0), 6), time.Minute)
}

// batchItemFailures reads a partial batch response. It returns the
// failed ids, and false if the response names an id not in the batch
// (then the whole batch counts as failed, as on Lambda).
func batchItemFailures(payload []byte, ids []string) (map[string]bool, bool) {
	var resp struct {
		Failures []struct {
			ID *string `json:"itemIdentifier"`
		} `json:"batchItemFailures"`
	}
	if json.Unmarshal(payload, &resp) != nil {
		return nil, true // any other result: the batch succeeded
	}
	failed := map[string]bool{}
	for _, f := range resp.Failures {
		if f.ID == nil || *f.ID == "" || !slices.Contains(ids, *f.ID) {
			return nil, false
		}
		failed[*f.ID] = true
	}
	return failed, true
}
