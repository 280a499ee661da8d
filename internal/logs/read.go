package logs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/store"
)

// Query selects the entries Read returns.
type Query struct {
	Function  string
	Since     time.Time // zero: everything kept
	Until     time.Time // zero: up to the newest (not with Follow)
	RequestID string    // only this invocation's lines
	Grep      string    // only lines containing this text
	Follow    bool      // keep waiting for new entries until ctx is done
}

func (q *Query) match(e *Entry) bool {
	if q.RequestID != "" && e.RequestID != q.RequestID {
		return false
	}
	if q.Grep != "" && !strings.Contains(e.Message, q.Grep) {
		return false
	}
	return true
}

// Read calls fn for each entry of q.Function in order. Without Follow it
// returns after the newest entry; with Follow it returns when ctx is done.
func Read(ctx context.Context, js jetstream.JetStream, q Query, fn func(*Entry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // also ends the goroutine that stops the iterator
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{store.LogsSubjectPrefix + q.Function},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
	if !q.Since.IsZero() {
		since := q.Since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	cons, err := js.OrderedConsumer(ctx, store.LogsStream, cfg)
	if err != nil {
		return fmt.Errorf("logs: consumer: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("logs: consumer info: %w", err)
	}
	if info.NumPending == 0 && !q.Follow {
		return nil
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("logs: read: %w", err)
	}
	defer it.Stop()
	go func() {
		<-ctx.Done()
		it.Stop()
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("logs: read: %w", err)
		}
		// A message holds one or more entries, one JSON object a line.
		for data := msg.Data(); len(data) > 0; {
			line := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				data = nil
			}
			var e Entry
			if err := json.Unmarshal(line, &e); err != nil {
				continue
			}
			if !q.Until.IsZero() && e.Time.After(q.Until) {
				return nil // entries are in time order: the rest is later still
			}
			if q.match(&e) {
				if err := fn(&e); err != nil {
					return err
				}
			}
		}
		if !q.Follow {
			if md, err := msg.Metadata(); err == nil && md.NumPending == 0 {
				return nil
			}
		}
	}
}
