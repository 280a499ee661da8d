package events

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/store"
)

// DeadLetter is an event that failed for good.
type DeadLetter struct {
	// ID is the letter's sequence in the dead-letter stream; replay and
	// listing use it.
	ID        uint64    `json:"id"`
	Kind      string    `json:"kind"` // async or queue
	Topic     string    `json:"topic,omitempty"`
	RequestID string    `json:"requestId,omitempty"`
	MessageID string    `json:"messageId,omitempty"`
	ErrorType string    `json:"errorType"`
	Error     string    `json:"error"`
	Attempts  int       `json:"attempts"`
	Enqueued  time.Time `json:"enqueued,omitzero"`
	Failed    time.Time `json:"failed"`
	Payload   []byte    `json:"payload"`
}

// DeadLetters lists a function's dead letters, oldest first, at most limit.
func (s *Service) DeadLetters(ctx context.Context, fn string, limit int) ([]DeadLetter, error) {
	out := []DeadLetter{}
	cons, err := s.js.OrderedConsumer(ctx, store.DeadLetterStream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{store.DeadLetterSubjectPrefix + fn},
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("reading dead letters: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading dead letters: %w", err)
	}
	left := int(info.NumPending)
	for left > 0 && len(out) < limit {
		b, err := cons.Fetch(min(left, limit-len(out), 256), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("reading dead letters: %w", err)
		}
		got := 0
		for m := range b.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			out = append(out, letterOf(md.Sequence.Stream, m.Headers(), m.Data()))
		}
		if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("reading dead letters: %w", err)
		}
		if got == 0 {
			break
		}
		left -= got
	}
	return out, nil
}

func letterOf(seq uint64, h nats.Header, data []byte) DeadLetter {
	attempts, _ := strconv.Atoi(h.Get(hdrDLQAttempts))
	return DeadLetter{
		ID: seq, Kind: h.Get(hdrDLQKind), Topic: h.Get(hdrDLQTopic), RequestID: h.Get(hdrRequestID),
		MessageID: h.Get(hdrMessageID), ErrorType: h.Get(hdrDLQErrorType), Error: h.Get(hdrDLQError),
		Attempts: attempts, Enqueued: headerTime(h, hdrEnqueued), Failed: headerTime(h, hdrDLQFailed),
		Payload: data,
	}
}

// Replay sends dead letters back where they came from (an async event to
// the function's queue with fresh attempts; a queue message to this
// function's consumer of its topic) and removes them from the dead-letter
// stream. No ids: all of the function's letters. It returns the ids sent.
func (s *Service) Replay(ctx context.Context, fn string, ids []uint64) ([]uint64, error) {
	if _, err := s.fns.Resolve(fn); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		all, err := s.DeadLetters(ctx, fn, 1<<20)
		if err != nil {
			return nil, err
		}
		for _, l := range all {
			ids = append(ids, l.ID)
		}
	}
	st, err := s.js.Stream(ctx, store.DeadLetterStream)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	// Every id is checked before any letter is sent.
	raws := make([]*jetstream.RawStreamMsg, len(ids))
	for i, id := range ids {
		raw, err := st.GetMsg(ctx, id)
		if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && raw.Subject != store.DeadLetterSubjectPrefix+fn) {
			return nil, apierror.New(http.StatusNotFound, apierror.CodeNotFound, fmt.Sprintf("%s has no dead letter %d; nothing was replayed", fn, id))
		}
		if err != nil {
			return nil, fmt.Errorf("dead letter %d: %w", id, err)
		}
		raws[i] = raw
	}
	sent := []uint64{}
	for i, id := range ids {
		raw := raws[i]
		if err := s.resend(ctx, fn, id, raw); err != nil {
			return sent, fmt.Errorf("replaying dead letter %d (after %d sent): %w", id, len(sent), err)
		}
		if err := st.DeleteMsg(ctx, id); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return sent, fmt.Errorf("removing replayed dead letter %d: %w", id, err)
		}
		sent = append(sent, id)
	}
	return sent, nil
}

func (s *Service) resend(ctx context.Context, fn string, id uint64, raw *jetstream.RawStreamMsg) error {
	h := raw.Header
	var subject string
	switch h.Get(hdrDLQKind) {
	case "queue":
		topic := h.Get(hdrDLQTopic)
		if _, err := s.js.Stream(ctx, topicStream(topic)); errors.Is(err, jetstream.ErrStreamNotFound) {
			return apierror.New(http.StatusConflict, apierror.CodeConflict, fmt.Sprintf("dead letter %d came from topic %q, which no longer exists", id, topic))
		} else if err != nil {
			return err
		}
		subject = redriveSubject(topic, fn)
	default:
		subject = store.AsyncSubjectPrefix + fn
	}
	msg := nats.NewMsg(subject)
	msg.Data = raw.Data
	for k, vs := range h {
		if strings.HasPrefix(k, "Tern-Dlq-") || strings.HasPrefix(k, "Nats-") || k == hdrAttempt {
			continue
		}
		msg.Header[k] = vs
	}
	if h.Get(hdrDLQKind) != "queue" {
		msg.Header.Set(hdrEnqueued, s.cfg.Now().UTC().Format(time.RFC3339Nano))
		msg.Header.Set(hdrSource, SourceReplay)
	}
	// The id makes a replay that is retried after a failed delete send
	// the letter once.
	if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgID("replay:"+fn+":"+strconv.FormatUint(id, 10))); err != nil {
		return err
	}
	if h.Get(hdrDLQKind) != "queue" {
		s.ensureAsyncWorker(fn)
	}
	return nil
}
