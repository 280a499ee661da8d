package events

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Headers carried by Tern's event messages.
const (
	hdrRequestID = "Tern-Request-Id"
	hdrQualifier = "Tern-Qualifier" // alias or version the event asked for
	hdrEnqueued  = "Tern-Enqueued"  // when the event was first accepted (RFC 3339)
	hdrAttempt   = "Tern-Attempt"   // 1 for the first run, 2 for the first retry...
	hdrSource    = "Tern-Source"    // api, schedule, cloudevent, destination, replay
	hdrTraceID   = "Tern-Trace-Id"
	hdrMessageID = "Tern-Message-Id" // a queue message's id
	hdrAttr      = "Tern-Attr-"      // prefix of queue message attributes

	// Dead letters say where they came from and why they failed.
	hdrDLQKind      = "Tern-Dlq-Kind" // async or queue
	hdrDLQTopic     = "Tern-Dlq-Topic"
	hdrDLQErrorType = "Tern-Dlq-Error-Type"
	hdrDLQError     = "Tern-Dlq-Error"
	hdrDLQAttempts  = "Tern-Dlq-Attempts"
	hdrDLQFailed    = "Tern-Dlq-Failed"
)

// headerValue makes s safe as a single header line of bounded size.
func headerValue(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max]
	}
	return s
}

func headerTime(h nats.Header, key string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, h.Get(key))
	if err != nil {
		return time.Time{}
	}
	return t
}

func headerInt(h nats.Header, key string, def int) int {
	n, err := strconv.Atoi(h.Get(key))
	if err != nil || n < 1 {
		return def
	}
	return n
}

// derivedID turns any key into a stable id shaped like a request id (a
// UUID), so that resubmissions of one event carry the same id.
func derivedID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	b := h.Sum(nil)[:16]
	b[6] = b[6]&0x0f | 0x50 // a name-based (v5-like) UUID
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b)
	return fmt.Sprintf("%s-%s-%s-%s-%s", x[:8], x[8:12], x[12:16], x[16:20], x[20:])
}

// fullHash is a digest usable as a KV key.
func fullHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// shortHash is a compact digest for message ids.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}
