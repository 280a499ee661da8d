package dispatch

import (
	"errors"
	"sync/atomic"

	"github.com/ternhq/tern/internal/runtime"
)

// counters are one function's invocation counts since this server started
// (all versions together). Hot path: atomics only.
type counters struct {
	invocations    atomic.Int64
	coldStarts     atomic.Int64
	warmStarts     atomic.Int64
	queued         atomic.Int64 // had to wait for an instance
	throttled      atomic.Int64
	functionErrors atomic.Int64
	timeouts       atomic.Int64
	crashes        atomic.Int64
}

// Counts is a snapshot of one function's counters.
type Counts struct {
	Invocations    int64 `json:"invocations"`
	ColdStarts     int64 `json:"coldStarts"`
	WarmStarts     int64 `json:"warmStarts"`
	Queued         int64 `json:"queued"`
	Throttled      int64 `json:"throttled"`
	FunctionErrors int64 `json:"functionErrors"`
	Timeouts       int64 `json:"timeouts"`
	Crashes        int64 `json:"crashes"`
}

func (c *counters) snapshot() Counts {
	return Counts{
		Invocations:    c.invocations.Load(),
		ColdStarts:     c.coldStarts.Load(),
		WarmStarts:     c.warmStarts.Load(),
		Queued:         c.queued.Load(),
		Throttled:      c.throttled.Load(),
		FunctionErrors: c.functionErrors.Load(),
		Timeouts:       c.timeouts.Load(),
		Crashes:        c.crashes.Load(),
	}
}

// record counts one finished invocation attempt.
func (c *counters) record(out *Outcome, err error) {
	switch {
	case errors.Is(err, ErrThrottled):
		c.throttled.Add(1)
		return
	case out == nil:
		return // never ran: deleted, closed, failed to start
	}
	c.invocations.Add(1)
	if out.Cold {
		c.coldStarts.Add(1)
	} else {
		c.warmStarts.Add(1)
	}
	switch {
	case errors.Is(err, runtime.ErrTimeout):
		c.timeouts.Add(1)
	case errors.Is(err, runtime.ErrCrashed), errors.Is(err, runtime.ErrStopped):
		c.crashes.Add(1)
	case err == nil && out.Result != nil && out.Result.Error != nil:
		c.functionErrors.Add(1)
	}
}

// Counts returns fn's counters (zero if it has none yet).
func (d *Dispatcher) Counts(fn string) Counts {
	d.mu.RLock()
	c := d.counts[fn]
	d.mu.RUnlock()
	if c == nil {
		return Counts{}
	}
	return c.snapshot()
}
