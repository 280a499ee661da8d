package logs

import (
	"strconv"
	"strings"
	"time"

	"github.com/ternhq/tern/internal/jsonstr"
)

// Streams an entry can come from.
const (
	StreamStdout   = "stdout"
	StreamStderr   = "stderr"
	StreamPlatform = "platform"
)

// Entry is one log line of one function.
type Entry struct {
	Time      time.Time `json:"time"`
	Function  string    `json:"function"`
	Version   int       `json:"version"`
	RequestID string    `json:"requestId,omitempty"`
	Instance  string    `json:"instance,omitempty"`
	Stream    string    `json:"stream"`
	Message   string    `json:"message"`
}

// Report is what the REPORT line says about one invocation. Its memory
// figure is read when the line is written, off the invocation path. A
// Report entry stands for two lines: END, then REPORT.
type Report struct {
	Duration     time.Duration
	MemoryMB     int
	InitDuration time.Duration // zero on a warm start
	MaxRSS       func() int64  // bytes; may be nil
}

// BilledDuration rounds d up to the next whole millisecond, as Lambda bills.
func BilledDuration(d time.Duration) time.Duration {
	return (d + time.Millisecond - 1).Truncate(time.Millisecond)
}

// Line formats r as Lambda does.
func (r *Report) Line(requestID string) string {
	var b strings.Builder
	b.Grow(160)
	b.WriteString("REPORT RequestId: ")
	b.WriteString(requestID)
	b.WriteString("\tDuration: ")
	b.WriteString(ms(r.Duration))
	b.WriteString(" ms\tBilled Duration: ")
	b.WriteString(strconv.FormatInt(BilledDuration(r.Duration).Milliseconds(), 10))
	b.WriteString(" ms\tMemory Size: ")
	b.WriteString(strconv.Itoa(r.MemoryMB))
	b.WriteString(" MB\tMax Memory Used: ")
	var used int64
	if r.MaxRSS != nil {
		used = r.MaxRSS()
	}
	b.WriteString(strconv.FormatInt((used+(1<<20)-1)>>20, 10))
	b.WriteString(" MB")
	if r.InitDuration > 0 {
		b.WriteString("\tInit Duration: ")
		b.WriteString(ms(r.InitDuration))
		b.WriteString(" ms")
	}
	return b.String()
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64)
}

// appendJSON appends e as one JSON object, as encoding/json would write it,
// without reflection: this runs for every line of every invocation.
func (e *Entry) appendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","function":`...)
	b = jsonstr.Append(b, e.Function)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(e.Version), 10)
	if e.RequestID != "" {
		b = append(b, `,"requestId":`...)
		b = jsonstr.Append(b, e.RequestID)
	}
	if e.Instance != "" {
		b = append(b, `,"instance":`...)
		b = jsonstr.Append(b, e.Instance)
	}
	b = append(b, `,"stream":`...)
	b = jsonstr.Append(b, e.Stream)
	b = append(b, `,"message":`...)
	b = jsonstr.Append(b, e.Message)
	return append(b, '}')
}
