package logs

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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
	b = appendString(b, e.Function)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(e.Version), 10)
	if e.RequestID != "" {
		b = append(b, `,"requestId":`...)
		b = appendString(b, e.RequestID)
	}
	if e.Instance != "" {
		b = append(b, `,"instance":`...)
		b = appendString(b, e.Instance)
	}
	b = append(b, `,"stream":`...)
	b = appendString(b, e.Stream)
	b = append(b, `,"message":`...)
	b = appendString(b, e.Message)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does
// (HTML characters included); invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
