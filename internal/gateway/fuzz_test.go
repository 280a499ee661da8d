package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// FuzzHTTPEvent maps arbitrary requests to the Lambda HTTP event: it must
// never panic and always give valid JSON.
func FuzzHTTPEvent(f *testing.F) {
	f.Add("GET", "/fn/x/a%2Fb", "a=1&a=2&b", "Cookie", "c=1; d=2", []byte("body"))
	f.Add("POST", "/fn/x", "", "Content-Type", "application/octet-stream", []byte{0xff, 0xfe, 0})
	f.Add("PUT", "/fn/x/%zz", "%%", "X-Multi", "a,b", []byte(`{"k":"v"}`))
	f.Fuzz(func(t *testing.T, method, path, query, hk, hv string, body []byte) {
		u := &url.URL{Path: path, RawQuery: query}
		r, err := http.NewRequest(method, "http://example.com"+u.RequestURI(), bytes.NewReader(body))
		if err != nil {
			return
		}
		if hk != "" {
			r.Header.Add(hk, hv)
		}
		ev := NewHTTPEvent(r, u.Path, body, "rid", time.Unix(0, 0))
		ev.RawPath = rawPath(r.URL.EscapedPath())
		out, err := ev.AppendJSON(nil)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON: %s", out)
		}
	})
}

// FuzzWriteResult turns arbitrary function results into HTTP responses:
// it must never panic, and a result it accepts gives a valid status.
func FuzzWriteResult(f *testing.F) {
	for _, s := range []string{`{"statusCode":201,"headers":{"a":"b"},"body":"x"}`, `"text"`, `{"statusCode":99}`,
		`{"statusCode":200,"isBase64Encoded":true,"body":"!!"}`, `{"cookies":["a=1"],"multiValueHeaders":{"x":["1","2"]}}`, `[1,2]`, `nul`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		w := httptest.NewRecorder()
		if err := WriteResult(w, payload); err != nil {
			return
		}
		if w.Code < 100 || w.Code > 599 {
			t.Fatalf("status %d for %s", w.Code, payload)
		}
	})
}
