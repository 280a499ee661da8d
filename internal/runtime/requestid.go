package runtime

import (
	"encoding/hex"
	"math/rand/v2"
	"strconv"
	"time"
)

// NewRequestID returns a random request id in the UUID form Lambda uses.
// It need not be unguessable, only unique, so it avoids a syscall.
func NewRequestID() string {
	var b [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // variant 10
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// NewTraceID returns a trace header in the X-Ray form Lambda passes to
// functions (Lambda-Runtime-Trace-Id, _X_AMZN_TRACE_ID):
// Root=1-<epoch seconds, hex>-<96 random bits, hex>;Sampled=0.
func NewTraceID(now time.Time) string {
	var b [54]byte
	s := append(b[:0], "Root=1-"...)
	s = strconv.AppendUint(s, uint64(now.Unix())&0xffffffff, 16)
	s = append(s, '-')
	var r [12]byte
	a, c := rand.Uint64(), rand.Uint32()
	for i := range 8 {
		r[i] = byte(a >> (8 * i))
	}
	for i := range 4 {
		r[8+i] = byte(c >> (8 * i))
	}
	s = hex.AppendEncode(s, r[:])
	s = append(s, ";Sampled=0"...)
	return string(s)
}
