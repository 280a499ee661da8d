package events

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Settling a message: what JetStream is told about a message a worker
// took. None of it may be dropped silently. A lost ack hands the message
// out again after AckWait, so the function runs twice; a lost nak or
// progress signal only changes when the message comes back. So the final
// ack waits for the server's confirmation and is tried again, and every
// failure is logged and counted (SettleFailures, on /metrics).

// Settle actions, the label of SettleFailures.
const (
	settleAck        = "ack"
	settleNak        = "nak"
	settleInProgress = "in_progress"
)

// Bounds of one final ack: each try waits ackTimeout for the server's
// confirmation, ackTries in all.
const (
	ackTimeout = 2 * time.Second
	ackTries   = 3
)

// settleCounts counts settle calls that failed, by action.
type settleCounts struct {
	ack, nak, inProgress atomic.Uint64
}

// SettleFailures counts the acks (after their retries), naks and progress
// signals JetStream did not take, by action (ack, nak, in_progress).
func (s *Service) SettleFailures() map[string]uint64 {
	return map[string]uint64{
		settleAck:        s.settleFailed.ack.Load(),
		settleNak:        s.settleFailed.nak.Load(),
		settleInProgress: s.settleFailed.inProgress.Load(),
	}
}

// ack settles msg as done for function fn (and topic, for a queue
// message) and waits for JetStream to confirm it, trying again while the
// confirmation does not come and ctx lasts. A second ack of a message
// the server already took is confirmed too, so a retry never does harm.
func (s *Service) ack(ctx context.Context, msg jetstream.Msg, fn, topic string) {
	var err error
	for try := 1; try <= ackTries; try++ {
		actx, cancel := context.WithTimeout(ctx, ackTimeout)
		err = msg.DoubleAck(actx)
		cancel()
		if err == nil || !ackRetryable(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		s.settleFailed.ack.Add(1)
		s.warnSettle(settleAck, msg, fn, topic, err)
	}
}

// ackRetryable reports whether an ack that failed with err may succeed
// when sent again: a confirmation that did not come, not a message that
// cannot be acked or a connection that is gone.
func ackRetryable(err error) bool {
	switch {
	case errors.Is(err, jetstream.ErrMsgAlreadyAckd), errors.Is(err, jetstream.ErrMsgNotBound),
		errors.Is(err, jetstream.ErrMsgNoReply), errors.Is(err, nats.ErrConnectionClosed):
		return false
	}
	return true
}

// nak gives msg back to be delivered again after delay (at once if 0).
func (s *Service) nak(msg jetstream.Msg, delay time.Duration, fn, topic string) {
	var err error
	if delay > 0 {
		err = msg.NakWithDelay(delay)
	} else {
		err = msg.Nak()
	}
	if err != nil {
		s.settleFailed.nak.Add(1)
		s.warnSettle(settleNak, msg, fn, topic, err)
	}
}

// inProgress tells JetStream that msg is still being worked on.
func (s *Service) inProgress(msg jetstream.Msg, fn, topic string) {
	if err := msg.InProgress(); err != nil {
		s.settleFailed.inProgress.Add(1)
		s.warnSettle(settleInProgress, msg, fn, topic, err)
	}
}

// warnSettle logs a settle call that failed and what it leads to.
func (s *Service) warnSettle(action string, msg jetstream.Msg, fn, topic string, err error) {
	attrs := []any{"function", fn}
	if topic != "" {
		attrs = append(attrs, "topic", topic)
	}
	if md, merr := msg.Metadata(); merr == nil {
		attrs = append(attrs, "stream", md.Stream, "sequence", md.Sequence.Stream,
			"delivered", md.NumDelivered)
	}
	if rid := msg.Headers().Get(hdrRequestID); rid != "" {
		attrs = append(attrs, "request_id", rid)
	}
	attrs = append(attrs, "err", err)
	switch action {
	case settleAck:
		s.log.Warn("events: ack failed; the message will be delivered again after the ack wait", attrs...)
	case settleNak:
		s.log.Warn("events: nak failed; the message comes back after the ack wait", attrs...)
	default:
		s.log.Warn("events: progress signal failed; the message may be delivered again while it runs", attrs...)
	}
}
