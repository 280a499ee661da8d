package metering

import "time"

// Outcomes of an invocation.
const (
	OutcomeSuccess   = "success"
	OutcomeError     = "error" // the function's error, or its init error
	OutcomeTimeout   = "timeout"
	OutcomeCrash     = "crash"
	OutcomeThrottled = "throttled" // never ran; not billed
	OutcomeCanceled  = "canceled"  // the caller went away while it ran
)

// Trigger kinds.
const (
	TriggerHTTP        = "http"
	TriggerAPI         = "api"
	TriggerAsync       = "async"
	TriggerQueue       = "queue"
	TriggerSchedule    = "schedule"
	TriggerCloudEvent  = "cloudevent"
	TriggerDestination = "destination"
)

// Record is what one invocation used. Durations are in microseconds and
// memory in MB, so records stay small and sums stay exact.
type Record struct {
	Function  string    `json:"function"`
	Version   int       `json:"version"`
	RequestID string    `json:"requestId"`
	Trigger   string    `json:"trigger"`
	Start     time.Time `json:"start"`
	// DurationUS is the run time; BilledMS rounds it up to whole
	// milliseconds, as Lambda bills (0 for throttled invocations).
	DurationUS int64 `json:"durationUs"`
	BilledMS   int64 `json:"billedMs"`
	// MemoryMB is the configured memory; MaxMemoryMB the peak the
	// instance used so far (its process's peak RSS).
	MemoryMB    int `json:"memoryMb"`
	MaxMemoryMB int `json:"maxMemoryMb"`
	// CPUUS is the CPU time (user and system, all threads) the
	// instance's process used since the instance's previous record: an
	// instance's records add up to its CPU while it served; one record's
	// figure is coarse (the kernel counts in 10 ms ticks).
	CPUUS int64 `json:"cpuUs"`
	// InitUS is the instance's init time, on a cold start only.
	InitUS  int64  `json:"initUs,omitempty"`
	Cold    bool   `json:"cold,omitempty"`
	Outcome string `json:"outcome"`
}

// BilledMS rounds a duration up to whole milliseconds (at least 1 for
// anything that ran).
func BilledMS(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// MBms is the record's billed memory-time: configured MB × billed ms
// (GB-seconds = MBms / 1024 / 1000).
func (r *Record) MBms() int64 { return int64(r.MemoryMB) * r.BilledMS }

// Recorder takes records; it must not block.
type Recorder interface {
	Record(*Record)
}
