package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/manifest"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/schedule"
)

// scheduler fires the schedule triggers of current versions. Every node
// runs one; a tick becomes an async event whose message id names the
// function, the schedule and the tick time, so JetStream keeps one copy
// however many nodes fire it.
type scheduler struct {
	svc  *Service
	wake chan struct{} // capacity 1: the entries changed

	mu      sync.Mutex
	entries map[string][]*entry // function -> its schedules
}

// entry is one schedule trigger of a function.
type entry struct {
	fn      string
	index   int
	key     string // stable across deploys of the same expression
	sched   *schedule.Schedule
	trigger manifest.Trigger
	next    time.Time
}

// ScheduleInfo describes a schedule for `tern events`.
type ScheduleInfo struct {
	Function string    `json:"function"`
	Trigger  int       `json:"trigger"`
	Schedule string    `json:"schedule"`
	Timezone string    `json:"timezone,omitempty"`
	Next     time.Time `json:"next"`
	Last     time.Time `json:"last,omitzero"`
}

func newScheduler(svc *Service) *scheduler {
	return &scheduler{svc: svc, wake: make(chan struct{}, 1), entries: make(map[string][]*entry)}
}

func scheduleKey(fn string, t manifest.Trigger) string {
	return fn + "." + shortHash(t.Schedule+"\x00"+t.Timezone+"\x00"+string(t.Payload))
}

// set replaces a function's schedules with those of v (nil: none).
func (sc *scheduler) set(fn string, v *registry.Version) {
	var list []*entry
	now := sc.svc.cfg.Now()
	sc.mu.Lock()
	old := map[string]time.Time{}
	for _, e := range sc.entries[fn] {
		old[e.key] = e.next
	}
	sc.mu.Unlock()
	if v != nil {
		for i, t := range v.Manifest.Triggers {
			if t.Schedule == "" {
				continue
			}
			s, err := schedule.Parse(t.Schedule, t.Timezone)
			if err != nil {
				// Deploy validated it; a record written by another build
				// may still hold something this one does not know.
				sc.svc.log.Warn("events: skipping a schedule", "function", fn, "schedule", t.Schedule, "err", err)
				continue
			}
			e := &entry{fn: fn, index: i, key: scheduleKey(fn, t), sched: s, trigger: t, next: s.Next(now)}
			if next, ok := old[e.key]; ok {
				e.next = next // a tick due but not fired yet still fires
			}
			list = append(list, e)
			if t.Missed == manifest.MissedLast {
				sc.svc.later(func(ctx context.Context) { sc.catchUp(ctx, e, now) })
			}
		}
	}
	sc.mu.Lock()
	if len(list) == 0 {
		delete(sc.entries, fn)
	} else {
		sc.entries[fn] = list
	}
	sc.mu.Unlock()
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

// catchUp fires the most recent tick missed since the last one fired (by
// any node), if there is one.
func (sc *scheduler) catchUp(ctx context.Context, e *entry, now time.Time) {
	kv, err := sc.svc.kv.Get(ctx, e.key)
	if err != nil {
		return // never fired: nothing was missed
	}
	lastUnix, err := strconv.ParseInt(string(kv.Value()), 10, 64)
	if err != nil {
		return
	}
	missed := e.sched.Last(now, time.Unix(lastUnix, 0))
	if missed.IsZero() {
		return
	}
	sc.svc.log.Info("events: firing a missed tick", "function", e.fn, "schedule", e.trigger.Schedule, "tick", missed)
	sc.fire(ctx, e, missed)
}

// forget drops a deleted function's tick records.
func (sc *scheduler) forget(ctx context.Context, fn string) {
	lister, err := sc.svc.kv.ListKeysFiltered(ctx, fn+".*")
	if err != nil {
		return
	}
	for k := range lister.Keys() {
		_ = sc.svc.kv.Delete(ctx, k)
	}
}

// run fires due ticks until ctx ends.
func (sc *scheduler) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := sc.svc.cfg.Now()
		var due []*entry
		var ticks []time.Time
		next := now.Add(time.Hour)
		sc.mu.Lock()
		for _, list := range sc.entries {
			for _, e := range list {
				if e.next.IsZero() {
					continue
				}
				if !e.next.After(now) {
					due = append(due, e)
					ticks = append(ticks, e.next)
					e.next = e.sched.Next(now)
				}
				if !e.next.IsZero() && e.next.Before(next) {
					next = e.next
				}
			}
		}
		sc.mu.Unlock()
		for i, e := range due {
			fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			sc.fire(fctx, e, ticks[i])
			cancel()
		}
		timer.Reset(max(next.Sub(sc.svc.cfg.Now()), time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-sc.wake:
		case <-timer.C:
		}
	}
}

// scheduledEvent is the EventBridge "Scheduled Event" shape.
type scheduledEvent struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Time       string          `json:"time"`
	Region     string          `json:"region"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

// fire submits one tick and records it as the schedule's last.
func (sc *scheduler) fire(ctx context.Context, e *entry, tick time.Time) {
	msgID := "sched:" + e.key + ":" + strconv.FormatInt(tick.Unix(), 10)
	rid := derivedID(msgID)
	payload := []byte(e.trigger.Payload)
	if len(payload) == 0 {
		b, err := json.Marshal(scheduledEvent{
			Version: "0", ID: rid, DetailType: "Scheduled Event", Source: "tern.scheduler",
			Account: "000000000000", Time: tick.UTC().Format(time.RFC3339), Region: sc.svc.cfg.Region,
			Resources: []string{fmt.Sprintf("tern:schedule/%s/%d", e.fn, e.index)}, Detail: json.RawMessage("{}"),
		})
		if err != nil {
			return
		}
		payload = b
	}
	var err error
	for attempt := range 3 {
		_, err = sc.svc.Submit(ctx, Event{Function: e.fn, Payload: payload, Source: SourceSchedule, msgID: msgID, requestID: rid})
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	if err != nil {
		sc.svc.log.Warn("events: a schedule tick was not stored", "function", e.fn, "schedule", e.trigger.Schedule, "tick", tick, "err", err)
		return
	}
	if _, err := sc.svc.kv.Put(ctx, e.key, []byte(strconv.FormatInt(tick.Unix(), 10))); err != nil && !errors.Is(err, context.Canceled) {
		sc.svc.log.Debug("events: recording a tick", "function", e.fn, "err", err)
	}
}

// list describes every schedule, soonest first.
func (sc *scheduler) list(ctx context.Context) []ScheduleInfo {
	sc.mu.Lock()
	var out []ScheduleInfo
	var keys []string
	for _, list := range sc.entries {
		for _, e := range list {
			out = append(out, ScheduleInfo{Function: e.fn, Trigger: e.index, Schedule: e.trigger.Schedule, Timezone: e.trigger.Timezone, Next: e.next})
			keys = append(keys, e.key)
		}
	}
	sc.mu.Unlock()
	for i, k := range keys {
		if kv, err := sc.svc.kv.Get(ctx, k); err == nil {
			if u, err := strconv.ParseInt(string(kv.Value()), 10, 64); err == nil {
				out[i].Last = time.Unix(u, 0).UTC()
			}
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			break
		}
	}
	slices.SortFunc(out, func(a, b ScheduleInfo) int {
		if c := a.Next.Compare(b.Next); c != 0 {
			return c
		}
		if a.Function != b.Function {
			if a.Function < b.Function {
				return -1
			}
			return 1
		}
		return a.Trigger - b.Trigger
	})
	return out
}
