package metering

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

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

// recordFormat tags the compact line encoding of a Record (the first
// element of its JSON array); a change of the fields must change it.
const recordFormat = 1

// AppendLine appends r's line in the usage stream to b, without the
// newline: a JSON array [format, requestId, version, trigger, start (Unix
// µs), durationUs, billedMs, memoryMb, maxMemoryMb, cpuUs, initUs, cold
// (0 or 1), outcome]. The function is left out: it is the message's
// subject. About 100 bytes, against 230 for the record as a JSON object.
func AppendLine(b []byte, r *Record) []byte {
	b = append(b, '[')
	b = strconv.AppendInt(b, recordFormat, 10)
	b = append(b, ',')
	b = appendJSONString(b, r.RequestID)
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(r.Version), 10)
	b = append(b, ',')
	b = appendJSONString(b, r.Trigger)
	for _, v := range [...]int64{r.Start.UnixMicro(), r.DurationUS, r.BilledMS, int64(r.MemoryMB), int64(r.MaxMemoryMB), r.CPUUS, r.InitUS} {
		b = append(b, ',')
		b = strconv.AppendInt(b, v, 10)
	}
	if r.Cold {
		b = append(b, ",1,"...)
	} else {
		b = append(b, ",0,"...)
	}
	b = appendJSONString(b, r.Outcome)
	return append(b, ']')
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := json.Marshal(s) // never fails for a string
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// ParseLine reads one line of a usage message: the compact array of
// AppendLine, or a Record as a JSON object (what servers before it
// wrote). function fills Function when the line has none (it is the
// message's subject).
func ParseLine(line []byte, function string) (Record, error) {
	var r Record
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '[' {
		err := json.Unmarshal(line, &r)
		if r.Function == "" {
			r.Function = function
		}
		return r, err
	}
	var f []json.RawMessage
	if err := json.Unmarshal(line, &f); err != nil {
		return r, err
	}
	if len(f) < 13 || string(f[0]) != strconv.Itoa(recordFormat) {
		return r, fmt.Errorf("metering: usage line of an unknown format %.20s", line)
	}
	var ints [8]int64
	for i := range ints {
		v, err := strconv.ParseInt(string(f[4+i]), 10, 64)
		if err != nil {
			return r, fmt.Errorf("metering: usage line field %d: %w", 4+i, err)
		}
		ints[i] = v
	}
	if err := errors.Join(json.Unmarshal(f[1], &r.RequestID), json.Unmarshal(f[3], &r.Trigger), json.Unmarshal(f[12], &r.Outcome)); err != nil {
		return r, fmt.Errorf("metering: usage line: %w", err)
	}
	v, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return r, fmt.Errorf("metering: usage line version: %w", err)
	}
	r.Function, r.Version = function, v
	r.Start = time.UnixMicro(ints[0]).UTC()
	r.DurationUS, r.BilledMS = ints[1], ints[2]
	r.MemoryMB, r.MaxMemoryMB = int(ints[3]), int(ints[4])
	r.CPUUS, r.InitUS, r.Cold = ints[5], ints[6], ints[7] != 0
	return r, nil
}

// ParseMessage appends the records of one usage message (lines, see
// AppendLine) on the subject of function to recs, and counts the lines it
// could not read.
func ParseMessage(data []byte, function string, recs []Record) ([]Record, int) {
	invalid := 0
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		r, err := ParseLine(line, function)
		if err != nil {
			invalid++
			continue
		}
		recs = append(recs, r)
	}
	return recs, invalid
}
