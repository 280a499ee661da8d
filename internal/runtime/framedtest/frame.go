package framedtest

import (
	"encoding/binary"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"
)

// Frame types of docs/runtime-protocol.md.
const (
	Specialize = 1
	Ready      = 2
	InitError  = 3
	Invoke     = 4
	Response   = 5
	Error      = 6
	Booted     = 7
)

// ARN is the invoked function ARN InvokeHeader sends.
const ARN = "arn:aws:lambda:local:000000000000:function:fn:7"

// WaitTimeout bounds every wait for a runtime: a frame, an exit, output.
const WaitTimeout = 15 * time.Second

// Frame is one decoded frame.
type Frame struct {
	Type   byte
	Header []byte
	Body   []byte
}

// AppendFrame encodes a frame: n (uint32 BE), type, h (uint16 BE), header,
// body.
func AppendFrame(dst []byte, typ byte, header, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(3+len(header)+len(body)))
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(header)))
	dst = append(dst, header...)
	return append(dst, body...)
}

// MustJSON marshals v.
func MustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// HeaderFields decodes the frame's header into a map, insisting on an
// object.
func (f Frame) HeaderFields(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(f.Header, &m); err != nil || m == nil {
		t.Fatalf("frame type %d: header %q is not a JSON object (%v)", f.Type, f.Header, err)
	}
	return m
}

// SpecializeHeader returns a SPECIALIZE header; concurrency 0 is not sent.
func SpecializeHeader(t testing.TB, handler, taskRoot string, env map[string]string, concurrency int) []byte {
	h := map[string]any{"handler": handler, "taskRoot": taskRoot, "env": env}
	if concurrency != 0 {
		h["concurrency"] = concurrency
	}
	return MustJSON(t, h)
}

// InvokeHeader returns an INVOKE header for id with the usual fields (a
// deadline 30 s away, ARN) plus extra; a nil value in extra removes a field.
func InvokeHeader(t testing.TB, id string, extra map[string]any) []byte {
	h := map[string]any{"id": id, "deadline": time.Now().Add(30 * time.Second).UnixMilli(), "arn": ARN}
	maps.Copy(h, extra)
	maps.DeleteFunc(h, func(_ string, v any) bool { return v == nil })
	return MustJSON(t, h)
}

// WantResponse checks that fr is a RESPONSE whose body is want.
func WantResponse(t testing.TB, fr Frame, want string) {
	t.Helper()
	if fr.Type != Response {
		t.Fatalf("got frame type %d %s %s, want RESPONSE %s", fr.Type, fr.Header, fr.Body, want)
	}
	if string(fr.Body) != want {
		t.Fatalf("response = %s, want %s", fr.Body, want)
	}
}

// DecodeResponse checks that fr is a RESPONSE and decodes its body into v.
func DecodeResponse(t testing.TB, fr Frame, v any) {
	t.Helper()
	if fr.Type != Response {
		t.Fatalf("got frame type %d %s %s, want RESPONSE", fr.Type, fr.Header, fr.Body)
	}
	if err := json.Unmarshal(fr.Body, v); err != nil {
		t.Fatalf("response %s: %v", fr.Body, err)
	}
}

// WantError checks an ERROR or INIT_ERROR frame (typ): the header's type is
// the body's errorType, which is errorType, the body's errorMessage contains
// message, and the body has a stackTrace array, which it returns.
func WantError(t testing.TB, fr Frame, typ byte, errorType, message string) []string {
	t.Helper()
	if fr.Type != typ {
		t.Fatalf("got frame type %d %s %s, want %d with %s", fr.Type, fr.Header, fr.Body, typ, errorType)
	}
	var v struct {
		ErrorType    string    `json:"errorType"`
		ErrorMessage string    `json:"errorMessage"`
		StackTrace   *[]string `json:"stackTrace"`
	}
	if err := json.Unmarshal(fr.Body, &v); err != nil {
		t.Fatalf("error body %q: %v", fr.Body, err)
	}
	if v.StackTrace == nil {
		t.Fatalf("error body %q has no stackTrace array", fr.Body)
	}
	if got := fr.HeaderFields(t)["type"]; got != v.ErrorType {
		t.Errorf("header type = %v, body errorType %q", got, v.ErrorType)
	}
	if v.ErrorType != errorType {
		t.Errorf("errorType = %q, want %q (message %q)", v.ErrorType, errorType, v.ErrorMessage)
	}
	if !strings.Contains(v.ErrorMessage, message) {
		t.Errorf("errorMessage = %q, want it to contain %q", v.ErrorMessage, message)
	}
	return *v.StackTrace
}
