package jsonstr

import (
	"encoding/json"
	"testing"
)

func TestAppendMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", "tab\there", "new\nline\r", `quote " back \ slash`, "<html> & more",
		"ctl \x00\x01\x08\x0c\x1f\x7f", "utf8 é 中文 🙂", "bad \xff\xfe utf8", "line sep \u2028 \u2029",
	} {
		want, _ := json.Marshal(s)
		if got := Append(nil, s); string(got) != string(want) {
			t.Errorf("Append(%q) = %s, want %s", s, got, want)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	buf := make([]byte, 0, 256)
	for b.Loop() {
		buf = Append(buf[:0], "2026-11-26T07:00:00.000Z\tabc-123\tINFO\thello world <b>")
	}
}
