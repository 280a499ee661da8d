// Package audit keeps the record of who changed what and when: one JSON
// entry per change (deploy, delete, aliases, rollback, topics, dead-letter
// replays, keys, secrets) in a JetStream stream, and reads it back.
//
// An entry names the principal (a key id or "admin-token") and its role,
// the action, its target and its outcome. It never holds a secret's value
// or a key's secret. Entries about a function are on the subject
// <prefix>fn.<function>, the others on <prefix><kind>.<target> (kind is the
// action up to its first '.', as "topic" or "key"), so reading one
// function's entries reads only those.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Actions.
const (
	ActionDeploy       = "deploy"
	ActionDelete       = "delete"
	ActionAliasSet     = "alias.set"
	ActionAliasDelete  = "alias.delete"
	ActionRollback     = "rollback"
	ActionTopicCreate  = "topic.create"
	ActionTopicDelete  = "topic.delete"
	ActionDLQReplay    = "dlq.replay"
	ActionKeyCreate    = "key.create"
	ActionKeyRevoke    = "key.revoke"
	ActionSecretSet    = "secret.set"
	ActionSecretDelete = "secret.delete"
)

// OutcomeOK is the outcome of a change that was made; any other outcome is
// the API error code the request was answered with.
const OutcomeOK = "ok"

// Entry is one change.
type Entry struct {
	Time time.Time `json:"time"`
	// Principal is the key id, or "admin-token".
	Principal string `json:"principal"`
	Role      string `json:"role"`
	Action    string `json:"action"`
	// Function the change is about, if any.
	Function string `json:"function,omitempty"`
	// Target: the function, "function@alias", topic, key id or secret
	// name.
	Target  string `json:"target,omitempty"`
	Version int    `json:"version,omitempty"`
	// Detail says more where the action needs it (an alias's routes).
	Detail  string `json:"detail,omitempty"`
	Remote  string `json:"remote,omitempty"`
	Outcome string `json:"outcome"`
}

// Log writes and reads the audit stream.
type Log struct {
	js     jetstream.JetStream
	stream string
	prefix string
}

// New returns the log over stream, whose subjects are subjectPrefix+">".
func New(js jetstream.JetStream, stream, subjectPrefix string) *Log {
	return &Log{js: js, stream: stream, prefix: subjectPrefix}
}

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// token is s as one subject token: names Tern accepts are already; any
// other is "_" (found by reading everything).
func token(s string) string {
	if tokenRE.MatchString(s) {
		return s
	}
	return "_"
}

func (l *Log) subject(e *Entry) string {
	if e.Function != "" {
		return l.prefix + "fn." + token(e.Function)
	}
	kind, _, _ := strings.Cut(e.Action, ".")
	return l.prefix + token(kind) + "." + token(e.Target)
}

// Record stores e (its Time set to now if zero) and returns once the
// stream has it.
func (l *Log) Record(ctx context.Context, e Entry) error {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if _, err := l.js.Publish(ctx, l.subject(&e), b); err != nil {
		return fmt.Errorf("audit: record %s: %w", e.Action, err)
	}
	return nil
}

// ErrBadQuery marks a query that cannot be answered as asked.
var ErrBadQuery = errors.New("bad audit query")

// Query selects entries.
type Query struct {
	Since time.Time // zero: everything kept
	// Function: only entries about this function.
	Function string
	// Limit keeps the newest entries only (default 1000, at most 10000).
	Limit int
}

// DefaultLimit and MaxLimit bound what Read returns.
const (
	DefaultLimit = 1000
	MaxLimit     = 10000
)

// Read returns the entries q selects, oldest first.
func (l *Log) Read(ctx context.Context, q Query) ([]Entry, error) {
	switch {
	case q.Limit == 0:
		q.Limit = DefaultLimit
	case q.Limit < 0 || q.Limit > MaxLimit:
		return nil, fmt.Errorf("%w: limit: want 1 to %d", ErrBadQuery, MaxLimit)
	}
	filter := l.prefix + ">"
	if q.Function != "" {
		if !tokenRE.MatchString(q.Function) {
			return nil, fmt.Errorf("%w: function %q: want a function name", ErrBadQuery, q.Function)
		}
		filter = l.prefix + "fn." + q.Function
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !q.Since.IsZero() {
		since := q.Since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	cons, err := l.js.OrderedConsumer(ctx, l.stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("audit: consumer: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: consumer info: %w", err)
	}
	out := []Entry{}
	for left := info.NumPending; left > 0; {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("audit: read: %w", err)
		}
		batch, err := cons.Fetch(int(min(left, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("audit: read: %w", err)
		}
		got := uint64(0)
		for m := range batch.Messages() {
			got++
			var e Entry
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				continue
			}
			out = append(out, e)
			if len(out) > 2*q.Limit {
				out = append(out[:0], out[len(out)-q.Limit:]...)
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("audit: read: %w", err)
		}
		if got == 0 {
			break // the stream dropped messages to its limits meanwhile
		}
		left -= min(got, left)
	}
	if len(out) > q.Limit {
		out = out[len(out)-q.Limit:]
	}
	return out, nil
}
