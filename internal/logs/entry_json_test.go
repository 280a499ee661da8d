package logs

import (
	"encoding/json"
	"testing"
	"time"
)

// appendJSON writes what encoding/json writes.
func TestEntryAppendJSONMatchesEncodingJSON(t *testing.T) {
	for _, msg := range []string{
		"plain", "tab\there", "new\nline\r", `quote " back \ slash`, "<html> & more",
		"ctl \x00\x01\x1f", "utf8 é 中文 🙂", "bad \xff utf8", "line sep \u2028 \u2029", "",
	} {
		e := Entry{Time: time.Date(2026, 11, 26, 7, 0, 0, 123456789, time.UTC), Function: "fn", Version: 3,
			RequestID: "id-1", Instance: "i1", Stream: StreamStdout, Message: msg}
		want, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.appendJSON(nil); string(got) != string(want) {
			t.Errorf("message %q:\n got %s\nwant %s", msg, got, want)
		}
	}
	e := Entry{Time: time.Unix(0, 0).UTC(), Function: "f", Stream: StreamPlatform, Message: "m"}
	want, _ := json.Marshal(&e)
	if got := e.appendJSON(nil); string(got) != string(want) {
		t.Errorf("empty optional fields:\n got %s\nwant %s", got, want)
	}
}
