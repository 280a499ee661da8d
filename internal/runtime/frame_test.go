package runtime

import (
	"bufio"
	"bytes"
	"testing"
)

func TestParseAnswerHeader(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    answerHeader
		wantErr bool
	}{
		{`{"id":"abc-1"}`, answerHeader{ID: "abc-1"}, false},
		{`{"id":"a","type":"TypeError"}`, answerHeader{ID: "a", Type: "TypeError"}, false},
		{`{"id":"a","type":"X","fatal":true}`, answerHeader{ID: "a", Type: "X", Fatal: true}, false},
		{`{"id":"a\"b"}`, answerHeader{ID: `a"b`}, false},
		{`{"id":"a\\b"}`, answerHeader{ID: `a\b`}, false},
		{`{"type":"T","id":"z"}`, answerHeader{ID: "z", Type: "T"}, false},
		{``, answerHeader{}, false},
		{`{"id":`, answerHeader{}, true},
		{`[1]`, answerHeader{}, true},
	} {
		got, err := parseAnswerHeader([]byte(c.in))
		if (err != nil) != c.wantErr || (err == nil && got != c.want) {
			t.Errorf("parseAnswerHeader(%s) = %+v, %v; want %+v (error %v)", c.in, got, err, c.want, c.wantErr)
		}
	}
}

func TestFrameRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 100<<10)
	var buf bytes.Buffer
	buf.Write(appendFrame(nil, frameResponse, []byte(`{"id":"1"}`), []byte(`"ok"`)))
	buf.Write(appendFrame(nil, frameResponse, []byte(`{"id":"2"}`), big))
	buf.Write(appendFrame(nil, frameReady, []byte(`{}`), nil))
	r := bufio.NewReader(&buf)
	f, err := readFrame(r, 1<<20)
	if err != nil || f.typ != frameResponse || string(f.header) != `{"id":"1"}` || string(f.body) != `"ok"` {
		t.Fatalf("first frame %+v %v", f, err)
	}
	f, err = readFrame(r, 1<<10) // over the limit: read past
	if err != nil || f.skipped != int64(len(big)) || f.body != nil {
		t.Fatalf("oversized frame: skipped %d body %d err %v", f.skipped, len(f.body), err)
	}
	f, err = readFrame(r, 1<<20)
	if err != nil || f.typ != frameReady {
		t.Fatalf("frame after the oversized one: %+v %v", f, err)
	}
	for _, bad := range [][]byte{
		{0, 0, 0, 2, 5, 0, 0},      // n < 3
		{0, 0, 0, 4, 5, 0, 9, 'x'}, // header longer than the frame
	} {
		if _, err := readFrame(bufio.NewReader(bytes.NewReader(bad)), 1<<20); err == nil {
			t.Errorf("readFrame(%v) accepted a malformed frame", bad)
		}
	}
}
