package events

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/store"
)

// AsyncInfo is one function's async backlog.
type AsyncInfo struct {
	Function string `json:"function"`
	// Waiting events not yet taken; Delayed retries waiting for their
	// time; InFlight events taken and running; DeadLetters kept.
	Waiting     uint64 `json:"waiting"`
	Delayed     uint64 `json:"delayed"`
	InFlight    int    `json:"inFlight"`
	DeadLetters uint64 `json:"deadLetters"`
}

// Overview is what `tern events` shows.
type Overview struct {
	Schedules []ScheduleInfo `json:"schedules"`
	Topics    []TopicInfo    `json:"topics"`
	Async     []AsyncInfo    `json:"async"`
}

// Overview describes the node's schedules, every topic and the async
// backlog of every function that has one (or has dead letters).
func (s *Service) Overview(ctx context.Context) (*Overview, error) {
	o := &Overview{Schedules: s.sch.list(ctx), Async: []AsyncInfo{}}
	if o.Schedules == nil {
		o.Schedules = []ScheduleInfo{}
	}
	topics, err := s.Topics(ctx)
	if err != nil {
		return nil, err
	}
	o.Topics = topics
	byFn := map[string]*AsyncInfo{}
	get := func(fn string) *AsyncInfo {
		if a := byFn[fn]; a != nil {
			return a
		}
		a := &AsyncInfo{Function: fn}
		byFn[fn] = a
		return a
	}
	counts, err := subjectCounts(ctx, s.js, store.AsyncStream, ">")
	if err != nil {
		return nil, err
	}
	for subj, n := range counts {
		if fn, ok := strings.CutPrefix(subj, store.AsyncSubjectPrefix); ok {
			get(fn).Waiting += n
		} else if rest, ok := strings.CutPrefix(subj, store.DelaySubjectPrefix); ok {
			fn, _, _ := strings.Cut(rest, ".")
			get(fn).Delayed += n
		}
	}
	dl, err := subjectCounts(ctx, s.js, store.DeadLetterStream, store.DeadLetterSubjectPrefix+">")
	if err != nil {
		return nil, err
	}
	for subj, n := range dl {
		get(strings.TrimPrefix(subj, store.DeadLetterSubjectPrefix)).DeadLetters = n
	}
	for fn, a := range byFn {
		if ci, err := s.js.Consumer(ctx, store.AsyncStream, asyncConsumer(fn)); err == nil {
			if info, err := ci.Info(ctx); err == nil {
				a.InFlight = info.NumAckPending
			}
		}
		o.Async = append(o.Async, *a)
	}
	slices.SortFunc(o.Async, func(a, b AsyncInfo) int { return strings.Compare(a.Function, b.Function) })
	return o, nil
}

// subjectCounts returns how many messages each subject of a stream holds.
func subjectCounts(ctx context.Context, js jetstream.JetStream, stream, filter string) (map[string]uint64, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	return info.State.Subjects, nil
}

// sweep starts async workers for functions with waiting events and no
// worker on this node: events accepted by other nodes, retries the NATS
// server moved back at their time, and events left from before a restart.
// Every TrimInterval it also trims the topics of what their readers
// finished.
func (s *Service) sweep() {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	lastTrim := time.Now()
	for {
		if time.Since(lastTrim) >= s.cfg.TrimInterval {
			lastTrim = time.Now()
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			s.trimTopics(ctx)
			cancel()
		}
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		counts, err := subjectCounts(ctx, s.js, store.AsyncStream, store.AsyncSubjectPrefix+">")
		cancel()
		if err == nil {
			for subj, n := range counts {
				if n == 0 {
					continue
				}
				fn := strings.TrimPrefix(subj, store.AsyncSubjectPrefix)
				s.mu.Lock()
				running := s.async[fn] != nil
				s.mu.Unlock()
				if !running {
					s.ensureAsyncWorker(fn)
				}
			}
		} else if s.ctx.Err() == nil {
			s.log.Debug("events: sweep", "err", err)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}
