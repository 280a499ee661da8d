package events

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/store"
)

// logBuffer collects a logger's output for a test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSettleRealStore settles messages of a real work queue: a confirmed
// ack removes its message; an ack nobody confirms (its consumer is gone:
// the message comes again), a nak and a progress signal on a closed
// connection are each logged with the function, topic, sequence and
// request id, and counted.
func TestSettleRealStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	var logs logBuffer
	s := &Service{log: slog.New(slog.NewTextHandler(&logs, nil))}

	stream, err := st.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "SETTLE_TEST", Subjects: []string{"settle.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	consumer := func() jetstream.Consumer {
		c, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	take := func(c jetstream.Consumer, rid string) jetstream.Msg {
		t.Helper()
		m := nats.NewMsg("settle.fn")
		m.Header.Set(hdrRequestID, rid)
		m.Data = []byte(`{}`)
		if _, err := st.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
		msg, err := c.Next(jetstream.FetchMaxWait(30 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	msgs := func() uint64 {
		t.Helper()
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}

	c := consumer()
	s.ack(ctx, take(c, "rid-1"), "fn", "orders")
	if n, f := msgs(), s.SettleFailures(); n != 0 || f[settleAck] != 0 {
		t.Fatalf("after a confirmed ack: %d messages in the stream, failures %v; want 0 and none", n, f)
	}

	msg := take(c, "rid-2")
	if err := stream.DeleteConsumer(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	s.ack(ctx, msg, "fn", "orders")
	if f := s.SettleFailures(); f[settleAck] != 1 {
		t.Errorf("an ack without a confirmation: failures %v, want 1 ack", f)
	}
	for _, want := range []string{"ack failed", "function=fn", "topic=orders", "stream=SETTLE_TEST", "sequence=2", "request_id=rid-2"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q lacks %q", logs.String(), want)
		}
	}

	// What the lost ack leads to: the message is handed out again.
	msg, err = consumer().Next(jetstream.FetchMaxWait(30 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if rid := msg.Headers().Get(hdrRequestID); rid != "rid-2" {
		t.Fatalf("after a lost ack, got %q, want rid-2 again", rid)
	}
	logs.buf.Reset()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	s.nak(msg, time.Second, "fn", "")
	s.nak(msg, 0, "fn", "")
	s.inProgress(msg, "fn", "")
	s.ack(ctx, msg, "fn", "")
	if f := s.SettleFailures(); f[settleNak] != 2 || f[settleInProgress] != 1 || f[settleAck] != 2 {
		t.Errorf("on a closed connection: failures %v, want 2 naks, 1 in_progress, 2 acks", f)
	}
	for _, want := range []string{"nak failed", "progress signal failed", "sequence=2", "request_id=rid-2"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q lacks %q", logs.String(), want)
		}
	}
}

// ackMsg is a message whose confirmed ack answers from a list of results;
// what else of jetstream.Msg a test calls must be set.
type ackMsg struct {
	jetstream.Msg
	results []error
	tries   int
}

func (m *ackMsg) DoubleAck(ctx context.Context) error {
	m.tries++
	if m.tries > len(m.results) {
		return errors.New("ackMsg: no more results")
	}
	return m.results[m.tries-1]
}

func (m *ackMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Stream: "S", Sequence: jetstream.SequencePair{Stream: 7}, NumDelivered: 1}, nil
}

func (m *ackMsg) Headers() nats.Header { return nats.Header{} }

// TestAckRetries: a final ack whose confirmation does not come is sent
// again, up to ackTries; one that cannot succeed is not.
func TestAckRetries(t *testing.T) {
	lost := context.DeadlineExceeded
	for _, c := range []struct {
		name     string
		results  []error
		tries    int
		failures uint64
	}{
		{"confirmed", []error{nil}, 1, 0},
		{"confirmed on the third try", []error{lost, nats.ErrNoResponders, nil}, 3, 0},
		{"never confirmed", []error{lost, lost, lost, lost}, ackTries, 1},
		{"already acked", []error{jetstream.ErrMsgAlreadyAckd, nil}, 1, 1},
		{"connection closed", []error{nats.ErrConnectionClosed, nil}, 1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs logBuffer
			s := &Service{log: slog.New(slog.NewTextHandler(&logs, nil))}
			m := &ackMsg{results: c.results}
			s.ack(context.Background(), m, "fn", "")
			if m.tries != c.tries || s.SettleFailures()[settleAck] != c.failures {
				t.Errorf("%d tries, %d failures; want %d and %d", m.tries, s.SettleFailures()[settleAck], c.tries, c.failures)
			}
			if logged := strings.Contains(logs.String(), "ack failed"); logged != (c.failures > 0) {
				t.Errorf("logged %v, want %v: %q", logged, c.failures > 0, logs.String())
			}
		})
	}
}
