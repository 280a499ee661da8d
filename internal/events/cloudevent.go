package events

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/ternhq/tern/internal/cloudevents"
	"github.com/ternhq/tern/internal/manifest"
)

// subscriptions maps functions to the CloudEvent filters of their current
// versions.
type subscriptions struct {
	mu   sync.RWMutex
	byFn map[string][]manifest.CloudEventTrigger
}

func newSubscriptions() *subscriptions {
	return &subscriptions{byFn: make(map[string][]manifest.CloudEventTrigger)}
}

func (s *subscriptions) set(fn string, triggers []manifest.Trigger) {
	var subs []manifest.CloudEventTrigger
	for _, t := range triggers {
		if t.CloudEvent != nil {
			subs = append(subs, *t.CloudEvent)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(subs) == 0 {
		delete(s.byFn, fn)
		return
	}
	s.byFn[fn] = subs
}

// match returns the functions subscribed to an event, sorted.
func (s *subscriptions) match(typ, source string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var fns []string
	for fn, subs := range s.byFn {
		if slices.ContainsFunc(subs, func(f manifest.CloudEventTrigger) bool {
			return (f.Type == "" || f.Type == typ) && (f.Source == "" || f.Source == source)
		}) {
			fns = append(fns, fn)
		}
	}
	slices.Sort(fns)
	return fns
}

// Delivery says which functions an ingested CloudEvent was queued for.
type Delivery struct {
	ID        string   `json:"id"`
	Source    string   `json:"source"`
	Type      string   `json:"type"`
	Functions []string `json:"functions"`
	// Duplicate lists the functions that had this event (same source and
	// id) already.
	Duplicate []string `json:"duplicate,omitempty"`
}

// Ingest queues each event as an async invocation of every function
// whose filter it matches (in the structured JSON form). It returns once
// all are stored; on an error, the events stored before it stay stored,
// and sending the same events again does not run them twice.
func (s *Service) Ingest(ctx context.Context, evs []*cloudevents.Event) ([]Delivery, error) {
	out := make([]Delivery, 0, len(evs))
	for _, ev := range evs {
		body, err := ev.MarshalJSON()
		if err != nil {
			return out, fmt.Errorf("encoding cloudevent %q: %w", ev.ID, err)
		}
		d := Delivery{ID: ev.ID, Source: ev.Source, Type: ev.Type, Functions: []string{}}
		for _, fn := range s.subs.match(ev.Type, ev.Source) {
			key := ev.Source + "\x00" + ev.ID
			acc, err := s.Submit(ctx, Event{Function: fn, Payload: body, Source: SourceCloudEvent,
				msgID: "ce:" + fn + ":" + shortHash(key), requestID: derivedID("cloudevent", fn, key)})
			if err != nil {
				return out, fmt.Errorf("queueing cloudevent %q for %s: %w", ev.ID, fn, err)
			}
			d.Functions = append(d.Functions, fn)
			if acc.Duplicate {
				d.Duplicate = append(d.Duplicate, fn)
			}
		}
		out = append(out, d)
	}
	return out, nil
}
