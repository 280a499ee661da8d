package gateway

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
)

func TestWriteResult(t *testing.T) {
	tests := []struct {
		name       string
		payload    string
		wantStatus int
		wantBody   string
		wantHeader map[string][]string // exact values for these headers
		noHeader   []string            // headers that must be absent
	}{
		{
			name: "structured with headers and cookies",
			payload: `{"statusCode":201,"headers":{"content-type":"text/plain","x-request-id":"abc","x-count":3,"x-flag":true,"x-null":null},` +
				`"cookies":["a=1; Path=/","b=2; HttpOnly"],"body":"created"}`,
			wantStatus: http.StatusCreated,
			wantBody:   "created",
			wantHeader: map[string][]string{
				"Content-Type":   {"text/plain"},
				"X-Request-Id":   {"abc"},
				"X-Count":        {"3"},
				"X-Flag":         {"true"},
				"Set-Cookie":     {"a=1; Path=/", "b=2; HttpOnly"},
				"Content-Length": {"7"},
			},
			noHeader: []string{"X-Null"},
		},
		{
			name:       "base64 body",
			payload:    `{"statusCode":200,"headers":{"Content-Type":"image/png"},"body":"iVBORw0KGgo=","isBase64Encoded":true}`,
			wantStatus: http.StatusOK,
			wantBody:   "\x89PNG\r\n\x1a\n",
			wantHeader: map[string][]string{
				"Content-Type":   {"image/png"},
				"Content-Length": {"8"},
			},
		},
		{
			name:       "base64 flag false leaves body alone",
			payload:    `{"statusCode":200,"body":"aGk=","isBase64Encoded":false}`,
			wantStatus: http.StatusOK,
			wantBody:   "aGk=",
		},
		{
			name:       "missing content type defaults to json",
			payload:    `{"statusCode":404,"body":"{\"error\":\"not found\"}"}`,
			wantStatus: http.StatusNotFound,
			wantBody:   `{"error":"not found"}`,
			wantHeader: map[string][]string{
				"Content-Type":   {"application/json"},
				"Content-Length": {"21"},
			},
		},
		{
			name:       "no body",
			payload:    `{"statusCode":202}`,
			wantStatus: http.StatusAccepted,
			wantBody:   "",
			wantHeader: map[string][]string{
				"Content-Type":   {"application/json"},
				"Content-Length": {"0"},
			},
		},
		{
			name:       "non-string body sent as json text",
			payload:    `{"statusCode":200,"body":{"a":[1,2]}}`,
			wantStatus: http.StatusOK,
			wantBody:   `{"a":[1,2]}`,
		},
		{
			name:       "status 204 has no body",
			payload:    `{"statusCode":204,"body":"ignored"}`,
			wantStatus: http.StatusNoContent,
			wantBody:   "",
			noHeader:   []string{"Content-Length"},
		},
		{
			name:       "status 599 allowed",
			payload:    `{"statusCode":599}`,
			wantStatus: 599,
		},
		{
			name: "multiValueHeaders",
			payload: `{"statusCode":200,"headers":{"X-One":"a"},` +
				`"multiValueHeaders":{"x-one":["b"],"Vary":["Accept","Origin"],"X-Num":[1,2.5]},"body":"ok"}`,
			wantStatus: http.StatusOK,
			wantBody:   "ok",
			wantHeader: map[string][]string{
				"X-One": {"a", "b"},
				"Vary":  {"Accept", "Origin"},
				"X-Num": {"1", "2.5"},
			},
		},
		{
			name: "crlf injection skipped",
			payload: `{"statusCode":200,"headers":{"X-Ok":"fine","X-Bad":"v\r\nSet-Cookie: evil=1","Bad\r\nName":"x","X-Nul":"a\u0000b"},` +
				`"multiValueHeaders":{"X-Multi":["ok","bad\nvalue"]},` +
				`"cookies":["good=1","evil=1\r\nX-Injected: yes"],"body":"ok"}`,
			wantStatus: http.StatusOK,
			wantBody:   "ok",
			wantHeader: map[string][]string{
				"X-Ok":       {"fine"},
				"X-Multi":    {"ok"},
				"Set-Cookie": {"good=1"},
			},
			noHeader: []string{"X-Bad", "Bad\r\nName", "X-Injected", "X-Nul"},
		},
		{
			name:       "function content-length ignored",
			payload:    `{"statusCode":200,"headers":{"Content-Length":"999","Transfer-Encoding":"chunked"},"body":"abc"}`,
			wantStatus: http.StatusOK,
			wantBody:   "abc",
			wantHeader: map[string][]string{
				"Content-Length": {"3"},
			},
			noHeader: []string{"Transfer-Encoding"},
		},
		{
			name:       "string value",
			payload:    `"hi"`,
			wantStatus: http.StatusOK,
			wantBody:   `"hi"`,
			wantHeader: map[string][]string{
				"Content-Type":   {"application/json"},
				"Content-Length": {"4"},
			},
		},
		{
			name:       "number value",
			payload:    `42`,
			wantStatus: http.StatusOK,
			wantBody:   `42`,
			wantHeader: map[string][]string{"Content-Type": {"application/json"}},
		},
		{
			name:       "array value",
			payload:    `[1,2]`,
			wantStatus: http.StatusOK,
			wantBody:   `[1,2]`,
			wantHeader: map[string][]string{"Content-Type": {"application/json"}},
		},
		{
			name:       "object without statusCode",
			payload:    `{"a":1}`,
			wantStatus: http.StatusOK,
			wantBody:   `{"a":1}`,
			wantHeader: map[string][]string{"Content-Type": {"application/json"}},
		},
		{
			name:       "object with differently cased statusCode key is data",
			payload:    `{"StatusCode":500,"body":"x"}`,
			wantStatus: http.StatusOK,
			wantBody:   `{"StatusCode":500,"body":"x"}`,
		},
		{
			name:       "null",
			payload:    `null`,
			wantStatus: http.StatusOK,
			wantBody:   `null`,
			wantHeader: map[string][]string{"Content-Type": {"application/json"}},
		},
		{
			name:       "boolean",
			payload:    `true`,
			wantStatus: http.StatusOK,
			wantBody:   `true`,
		},
		{
			name:       "payload bytes sent unchanged",
			payload:    " { \"a\" : [ 1 , 2 ] }\n",
			wantStatus: http.StatusOK,
			wantBody:   " { \"a\" : [ 1 , 2 ] }\n",
		},
		{
			name:       "empty payload",
			payload:    ``,
			wantStatus: http.StatusOK,
			wantBody:   ``,
			wantHeader: map[string][]string{
				"Content-Type":   {"application/json"},
				"Content-Length": {"0"},
			},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := WriteResult(rec, []byte(tt.payload)); err != nil {
				t.Fatalf("WriteResult: %v", err)
			}
			res := rec.Result()
			if res.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", res.StatusCode, tt.wantStatus)
			}
			if got := rec.Body.String(); got != tt.wantBody {
				t.Errorf("body = %q, want %q", got, tt.wantBody)
			}
			for k, want := range tt.wantHeader {
				if got := res.Header.Values(k); !slices.Equal(got, want) {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			for _, k := range tt.noHeader {
				if got := rec.Header().Values(k); len(got) > 0 {
					t.Errorf("header %q = %q, want absent", k, got)
				}
			}
			for k, vs := range rec.Header() {
				if !validHeaderName(k) {
					t.Errorf("invalid header name written: %q", k)
				}
				for _, v := range vs {
					if !validHeaderValue(v) {
						t.Errorf("invalid header value written: %s: %q", k, v)
					}
				}
			}
			if bodyAllowed(tt.wantStatus) {
				if cl := res.Header.Get("Content-Length"); cl != strconv.Itoa(len(tt.wantBody)) {
					t.Errorf("Content-Length = %q, want %d", cl, len(tt.wantBody))
				}
			}
		})
	}
}

func TestWriteResultErrors(t *testing.T) {
	tests := []struct {
		name    string
		payload string
	}{
		{"status too low", `{"statusCode":99}`},
		{"status 1xx continue", `{"statusCode":100}`},
		{"status 1xx switching", `{"statusCode":101}`},
		{"status 199", `{"statusCode":199}`},
		{"status zero", `{"statusCode":0}`},
		{"status too high", `{"statusCode":600}`},
		{"status negative", `{"statusCode":-200}`},
		{"status fractional", `{"statusCode":200.5}`},
		{"status string", `{"statusCode":"200"}`},
		{"status null", `{"statusCode":null}`},
		{"status huge", `{"statusCode":1e400}`},
		{"bad base64 body", `{"statusCode":200,"body":"not base64!!","isBase64Encoded":true}`},
		{"isBase64Encoded not bool", `{"statusCode":200,"body":"aGk=","isBase64Encoded":"yes"}`},
		{"headers not object", `{"statusCode":200,"headers":["a"]}`},
		{"multiValueHeaders not arrays", `{"statusCode":200,"multiValueHeaders":{"a":"b"}}`},
		{"cookies not array", `{"statusCode":200,"cookies":"a=1"}`},
		{"invalid json", `{"statusCode":200`},
		{"invalid json text", `hello`},
		{"trailing garbage", `{"a":1} x`},
		{"two values", `1 2`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			err := WriteResult(rec, []byte(tt.payload))
			if err == nil {
				t.Fatalf("WriteResult(%s) = nil error; status %d", tt.payload, rec.Code)
			}
			if !errors.Is(err, ErrInvalidResult) {
				t.Errorf("error %v does not wrap ErrInvalidResult", err)
			}
			if rec.Body.Len() != 0 || len(rec.Header()) != 0 || rec.Flushed {
				t.Errorf("something was written: headers %v body %q", rec.Header(), rec.Body)
			}
			// The caller must still be able to answer 502.
			http.Error(rec, "bad gateway", http.StatusBadGateway)
			if rec.Code != http.StatusBadGateway {
				t.Errorf("status after error = %d, want 502", rec.Code)
			}
		})
	}
}

// failWriter records what WriteResult sends and fails body writes.
type failWriter struct {
	h      http.Header
	status int
}

func (f *failWriter) Header() http.Header         { return f.h }
func (f *failWriter) WriteHeader(code int)        { f.status = code }
func (f *failWriter) Write(b []byte) (int, error) { return 0, errors.New("connection reset") }

func TestWriteResultWriteError(t *testing.T) {
	w := &failWriter{h: http.Header{}}
	err := WriteResult(w, []byte(`{"statusCode":200,"body":"x"}`))
	if err == nil || errors.Is(err, ErrInvalidResult) {
		t.Fatalf("err = %v, want a plain write error", err)
	}
	if w.status != http.StatusOK {
		t.Errorf("status = %d", w.status)
	}
}

func TestWriteResultOverServer(t *testing.T) {
	// End to end through net/http, to check the framing headers are
	// consistent with what the server sends.
	payload := `{"statusCode":418,"headers":{"x-tern":"1"},"cookies":["a=1","b=2"],"body":"short and stout"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := WriteResult(w, []byte(payload)); err != nil {
			t.Errorf("WriteResult: %v", err)
		}
	}))
	defer srv.Close()

	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusTeapot || string(body) != "short and stout" {
		t.Errorf("got %d %q", res.StatusCode, body)
	}
	if res.ContentLength != int64(len("short and stout")) {
		t.Errorf("ContentLength = %d", res.ContentLength)
	}
	if got := res.Header.Values("Set-Cookie"); !slices.Equal(got, []string{"a=1", "b=2"}) {
		t.Errorf("Set-Cookie = %q", got)
	}
	if res.Header.Get("X-Tern") != "1" || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers = %v", res.Header)
	}
}
