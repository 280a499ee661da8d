package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2024, time.March, 12, 19, 3, 58, 390_000_000, time.FixedZone("CET", 3600))

func TestNewHTTPEvent(t *testing.T) {
	pngBody := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")

	tests := []struct {
		name        string
		method      string
		target      string
		path        string
		body        []byte
		header      map[string][]string
		remoteAddr  string
		host        string
		wantRawPath string
		wantRawQS   string
		wantQS      map[string]string
		wantCookies []string
		wantHeaders map[string]string // subset of the event's headers
		noHeaders   []string          // headers that must be absent
		wantBody    string
		wantB64     bool
		wantIP      string
		wantUA      string
	}{
		{
			name:        "get with repeated query keys",
			method:      http.MethodGet,
			target:      "/fn/hello/items?a=1&a=2&b=x",
			path:        "/items",
			wantRawPath: "/items",
			wantRawQS:   "a=1&a=2&b=x",
			wantQS:      map[string]string{"a": "1,2", "b": "x"},
			wantIP:      "192.0.2.1",
		},
		{
			name:        "query kept raw but decoded in parameters",
			method:      http.MethodGet,
			target:      "/fn/hello/?q=hello%20world&e=&x=%2B1+2",
			path:        "/",
			wantRawPath: "/",
			wantRawQS:   "q=hello%20world&e=&x=%2B1+2",
			wantQS:      map[string]string{"q": "hello world", "e": "", "x": "+1 2"},
			wantIP:      "192.0.2.1",
		},
		{
			name:   "cookies removed from headers and split",
			method: http.MethodGet,
			target: "/fn/hello",
			path:   "/",
			header: map[string][]string{
				"Cookie": {"a=1; b=2", "c=3"},
			},
			wantRawPath: "/",
			wantCookies: []string{"a=1", "b=2", "c=3"},
			noHeaders:   []string{"cookie"},
			wantIP:      "192.0.2.1",
		},
		{
			name:   "multiple header values joined and names lower-cased",
			method: http.MethodGet,
			target: "/fn/hello/x",
			path:   "/x",
			header: map[string][]string{
				"Accept":          {"text/html", "application/json"},
				"X-Custom-Header": {"one", "two", "three"},
				"User-Agent":      {"tern-test/1.0"},
			},
			host:        "fn.example.com:8080",
			wantRawPath: "/x",
			wantHeaders: map[string]string{
				"accept":          "text/html,application/json",
				"x-custom-header": "one,two,three",
				"user-agent":      "tern-test/1.0",
				"host":            "fn.example.com:8080",
			},
			wantIP: "192.0.2.1",
			wantUA: "tern-test/1.0",
		},
		{
			name:        "root path",
			method:      http.MethodGet,
			target:      "/fn/hello",
			path:        "/",
			wantRawPath: "/",
			wantIP:      "192.0.2.1",
		},
		{
			name:        "empty path means root",
			method:      http.MethodGet,
			target:      "/fn/hello",
			path:        "",
			wantRawPath: "/",
			wantIP:      "192.0.2.1",
		},
		{
			name:        "binary body is base64",
			method:      http.MethodPost,
			target:      "/fn/hello/upload",
			path:        "/upload",
			body:        pngBody,
			header:      map[string][]string{"Content-Type": {"image/png"}},
			wantRawPath: "/upload",
			wantBody:    base64.StdEncoding.EncodeToString(pngBody),
			wantB64:     true,
			wantHeaders: map[string]string{"content-type": "image/png"},
			wantIP:      "192.0.2.1",
		},
		{
			name:        "image with utf-8 bytes is still base64",
			method:      http.MethodPost,
			target:      "/fn/hello/upload",
			path:        "/upload",
			body:        []byte("GIF89a"),
			header:      map[string][]string{"Content-Type": {"image/gif"}},
			wantRawPath: "/upload",
			wantBody:    base64.StdEncoding.EncodeToString([]byte("GIF89a")),
			wantB64:     true,
			wantIP:      "192.0.2.1",
		},
		{
			name:        "json body is text",
			method:      http.MethodPost,
			target:      "/fn/hello/",
			path:        "/",
			body:        []byte(`{"msg":"héllo <world>"}`),
			header:      map[string][]string{"Content-Type": {"application/json; charset=utf-8"}},
			wantRawPath: "/",
			wantBody:    `{"msg":"héllo <world>"}`,
			wantIP:      "192.0.2.1",
		},
		{
			name:        "vendor json body is text",
			method:      http.MethodPost,
			target:      "/fn/hello/",
			path:        "/",
			body:        []byte(`{"type":"about:blank"}`),
			header:      map[string][]string{"Content-Type": {"Application/Problem+JSON"}},
			wantRawPath: "/",
			wantBody:    `{"type":"about:blank"}`,
			wantIP:      "192.0.2.1",
		},
		{
			name:        "form body is text",
			method:      http.MethodPost,
			target:      "/fn/hello/form",
			path:        "/form",
			body:        []byte("name=tern&kind=fn%21"),
			header:      map[string][]string{"Content-Type": {"application/x-www-form-urlencoded"}},
			wantRawPath: "/form",
			wantBody:    "name=tern&kind=fn%21",
			wantIP:      "192.0.2.1",
		},
		{
			name:        "text body with invalid utf-8 is base64",
			method:      http.MethodPost,
			target:      "/fn/hello/",
			path:        "/",
			body:        []byte("caf\xe9"),
			header:      map[string][]string{"Content-Type": {"text/plain"}},
			wantRawPath: "/",
			wantBody:    base64.StdEncoding.EncodeToString([]byte("caf\xe9")),
			wantB64:     true,
			wantIP:      "192.0.2.1",
		},
		{
			name:        "no content type utf-8 body is text",
			method:      http.MethodPut,
			target:      "/fn/hello/",
			path:        "/",
			body:        []byte("plain words"),
			wantRawPath: "/",
			wantBody:    "plain words",
			wantIP:      "192.0.2.1",
		},
		{
			name:        "no content type binary body is base64",
			method:      http.MethodPut,
			target:      "/fn/hello/",
			path:        "/",
			body:        []byte{0xff, 0x00, 0xfe},
			wantRawPath: "/",
			wantBody:    "/wD+",
			wantB64:     true,
			wantIP:      "192.0.2.1",
		},
		{
			name:        "empty body",
			method:      http.MethodPost,
			target:      "/fn/hello/",
			path:        "/",
			body:        []byte{},
			header:      map[string][]string{"Content-Type": {"application/octet-stream"}},
			wantRawPath: "/",
			wantIP:      "192.0.2.1",
		},
		{
			name:        "ipv4 source",
			method:      http.MethodGet,
			target:      "/fn/hello",
			path:        "/",
			remoteAddr:  "203.0.113.7:54321",
			header:      map[string][]string{"X-Forwarded-For": {"198.51.100.1"}},
			wantRawPath: "/",
			wantIP:      "203.0.113.7",
		},
		{
			name:        "ipv6 source",
			method:      http.MethodGet,
			target:      "/fn/hello",
			path:        "/",
			remoteAddr:  "[::1]:8080",
			wantRawPath: "/",
			wantIP:      "::1",
		},
		{
			name:        "source without port",
			method:      http.MethodGet,
			target:      "/fn/hello",
			path:        "/",
			remoteAddr:  "10.0.0.1",
			wantRawPath: "/",
			wantIP:      "10.0.0.1",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, bytes.NewReader(tt.body))
			for k, vs := range tt.header {
				r.Header[k] = vs
			}
			if tt.remoteAddr != "" {
				r.RemoteAddr = tt.remoteAddr
			}
			if tt.host != "" {
				r.Host = tt.host
			}

			e := NewHTTPEvent(r, tt.path, tt.body, "req-1", testNow)

			if e.Version != "2.0" || e.RouteKey != "$default" {
				t.Errorf("version/routeKey = %q/%q", e.Version, e.RouteKey)
			}
			if e.RawPath != tt.wantRawPath || e.RequestContext.HTTP.Path != tt.wantRawPath {
				t.Errorf("rawPath = %q, http.path = %q, want %q", e.RawPath, e.RequestContext.HTTP.Path, tt.wantRawPath)
			}
			if e.RawQueryString != tt.wantRawQS {
				t.Errorf("rawQueryString = %q, want %q", e.RawQueryString, tt.wantRawQS)
			}
			if !maps.Equal(e.QueryStringParameters, tt.wantQS) || (tt.wantQS == nil) != (e.QueryStringParameters == nil) {
				t.Errorf("queryStringParameters = %v, want %v", e.QueryStringParameters, tt.wantQS)
			}
			if !slices.Equal(e.Cookies, tt.wantCookies) {
				t.Errorf("cookies = %q, want %q", e.Cookies, tt.wantCookies)
			}
			for k, want := range tt.wantHeaders {
				if got, ok := e.Headers[k]; !ok || got != want {
					t.Errorf("headers[%q] = %q (present %v), want %q", k, got, ok, want)
				}
			}
			for _, k := range tt.noHeaders {
				if _, ok := e.Headers[k]; ok {
					t.Errorf("headers[%q] present, want absent", k)
				}
			}
			for k := range e.Headers {
				if k != strings.ToLower(k) {
					t.Errorf("header name %q not lower-case", k)
				}
			}
			wantHost := r.Host
			if e.Headers["host"] != wantHost {
				t.Errorf("headers[host] = %q, want %q", e.Headers["host"], wantHost)
			}
			if e.Body != tt.wantBody || e.IsBase64Encoded != tt.wantB64 {
				t.Errorf("body = %q (b64 %v), want %q (b64 %v)", e.Body, e.IsBase64Encoded, tt.wantBody, tt.wantB64)
			}
			if e.IsBase64Encoded {
				dec, err := base64.StdEncoding.DecodeString(e.Body)
				if err != nil || !bytes.Equal(dec, tt.body) {
					t.Errorf("base64 body does not round-trip: %v", err)
				}
			}
			rh := e.RequestContext.HTTP
			if rh.SourceIP != tt.wantIP {
				t.Errorf("sourceIp = %q, want %q", rh.SourceIP, tt.wantIP)
			}
			if rh.Method != tt.method || rh.Protocol != "HTTP/1.1" || rh.UserAgent != tt.wantUA {
				t.Errorf("http = %+v", rh)
			}

			// The JSON form must decode to the same event.
			b, err := e.AppendJSON(nil)
			if err != nil {
				t.Fatal(err)
			}
			var back HTTPEvent
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("AppendJSON output does not decode: %v\n%s", err, b)
			}
			if !reflect.DeepEqual(&back, normalizeEvent(e)) {
				t.Errorf("round trip mismatch:\n got %+v\nwant %+v", back, *e)
			}
		})
	}
}

// normalizeEvent returns a copy of e as it looks after a JSON round trip
// (empty cookies/query maps are omitted and so decode as nil).
func normalizeEvent(e *HTTPEvent) *HTTPEvent {
	c := *e
	if len(c.Cookies) == 0 {
		c.Cookies = nil
	}
	if len(c.QueryStringParameters) == 0 {
		c.QueryStringParameters = nil
	}
	return &c
}

func TestNewHTTPEventRequestContext(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/fn/resize/images/1?size=2", strings.NewReader("x"))
	r.Host = "api.tern.example:8443"
	r.RemoteAddr = "[2001:db8::5]:40000"
	r.Header.Set("User-Agent", "curl/8.0")

	e := NewHTTPEvent(r, "/images/1", []byte("x"), "abc-123", testNow)
	rc := e.RequestContext

	want := RequestContext{
		AccountID:    "anonymous",
		APIID:        "resize",
		DomainName:   "api.tern.example:8443",
		DomainPrefix: "api",
		HTTP: RequestHTTP{
			Method:    "POST",
			Path:      "/images/1",
			Protocol:  "HTTP/1.1",
			SourceIP:  "2001:db8::5",
			UserAgent: "curl/8.0",
		},
		RequestID: "abc-123",
		RouteKey:  "$default",
		Stage:     "$default",
		Time:      "12/Mar/2024:18:03:58 +0000",
		TimeEpoch: testNow.UnixMilli(),
	}
	if rc != want {
		t.Errorf("requestContext =\n%+v\nwant\n%+v", rc, want)
	}
	if rc.TimeEpoch != 1710266638390 {
		t.Errorf("timeEpoch = %d", rc.TimeEpoch)
	}
}

func TestDomainPrefix(t *testing.T) {
	tests := map[string]string{
		"fn.example.com":      "fn",
		"fn.example.com:8080": "fn",
		"localhost":           "localhost",
		"localhost:9000":      "localhost",
		"127.0.0.1:8080":      "127.0.0.1",
		"[::1]:8080":          "::1",
		"":                    "",
	}
	for host, want := range tests {
		if got := domainPrefix(host); got != want {
			t.Errorf("domainPrefix(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestIsTextContentType(t *testing.T) {
	tests := map[string]bool{
		"":                                  true,
		"text/plain":                        true,
		"text/html; charset=utf-8":          true,
		"TEXT/CSV":                          true,
		"application/json":                  true,
		"application/ld+json":               true,
		"application/xml":                   true,
		"application/atom+xml":              true,
		"application/javascript":            true,
		"application/x-www-form-urlencoded": true,
		"application/octet-stream":          false,
		"application/pdf":                   false,
		"image/png":                         false,
		"multipart/form-data; boundary=x":   false,
		"garbage":                           false,
	}
	for ct, want := range tests {
		if got := isTextContentType(ct); got != want {
			t.Errorf("isTextContentType(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestHTTPEventJSONFieldNames(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/fn/hello/p?a=1", strings.NewReader("hi"))
	r.Header.Set("Cookie", "s=1")
	r.Header.Set("Content-Type", "text/plain")
	e := NewHTTPEvent(r, "/p", []byte("hi"), "rid", testNow)

	b, err := e.AppendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}

	wantTop := []string{"body", "cookies", "headers", "isBase64Encoded", "queryStringParameters",
		"rawPath", "rawQueryString", "requestContext", "routeKey", "version"}
	if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, wantTop) {
		t.Errorf("top-level keys = %q, want %q", got, wantTop)
	}
	rc, _ := m["requestContext"].(map[string]any)
	wantRC := []string{"accountId", "apiId", "domainName", "domainPrefix", "http", "requestId",
		"routeKey", "stage", "time", "timeEpoch"}
	if got := slices.Sorted(maps.Keys(rc)); !slices.Equal(got, wantRC) {
		t.Errorf("requestContext keys = %q, want %q", got, wantRC)
	}
	h, _ := rc["http"].(map[string]any)
	wantHTTP := []string{"method", "path", "protocol", "sourceIp", "userAgent"}
	if got := slices.Sorted(maps.Keys(h)); !slices.Equal(got, wantHTTP) {
		t.Errorf("http keys = %q, want %q", got, wantHTTP)
	}
	if v, ok := rc["timeEpoch"].(float64); !ok || int64(v) != testNow.UnixMilli() {
		t.Errorf("timeEpoch = %v", rc["timeEpoch"])
	}
	if v, ok := m["isBase64Encoded"].(bool); !ok || v {
		t.Errorf("isBase64Encoded = %v", m["isBase64Encoded"])
	}

	// Without body, cookies or query those keys are omitted; headers and
	// isBase64Encoded are always present.
	r = httptest.NewRequest(http.MethodGet, "/fn/hello", nil)
	e = NewHTTPEvent(r, "/", nil, "rid", testNow)
	b, _ = e.AppendJSON(nil)
	m = nil
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"body", "cookies", "queryStringParameters"} {
		if _, ok := m[k]; ok {
			t.Errorf("key %q present for bare GET", k)
		}
	}
	for _, k := range []string{"headers", "isBase64Encoded", "rawQueryString"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing for bare GET", k)
		}
	}
}

// AppendJSON is hand-written; it must produce exactly what encoding/json
// produces for the struct tags.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	events := []*HTTPEvent{
		{},
		{Headers: map[string]string{}},
		{
			Version:               "2.0",
			RouteKey:              "$default",
			RawPath:               "/a b/ü",
			RawQueryString:        "x=<script>&y=\"q\"",
			Cookies:               []string{"a=1", "b=\\2", ""},
			Headers:               map[string]string{"z": "1", "a": "2", "m": "tab\there", "ctl": "\x00\x01\x1f\x7f"},
			QueryStringParameters: map[string]string{"x": "<script>", "y": `"q"`, "&": "amp"},
			RequestContext: RequestContext{
				AccountID: "anonymous", APIID: "fn", DomainName: "h", DomainPrefix: "h",
				HTTP:      RequestHTTP{Method: "GET", Path: "/\u2028\u2029", Protocol: "HTTP/2.0", SourceIP: "::1", UserAgent: "bad\xffutf8\xc3"},
				RequestID: "r\b\f\n\r", RouteKey: "$default", Stage: "$default",
				Time: "01/Jan/2024:00:00:00 +0000", TimeEpoch: -5,
			},
			Body:            "emoji 😀 and \u00e9 and \\ and /",
			IsBase64Encoded: true,
		},
	}
	r := httptest.NewRequest(http.MethodPost, "/fn/x/y?a=1&a=2", strings.NewReader("{}"))
	r.Header.Set("Cookie", "a=b; c=d")
	r.Header.Add("Accept", "a")
	r.Header.Add("Accept", "b")
	events = append(events, NewHTTPEvent(r, "/y", []byte("{}"), "id", testNow))

	for i, e := range events {
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.AppendJSON([]byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(got, []byte("prefix")) {
			t.Fatalf("event %d: AppendJSON dropped dst contents", i)
		}
		got = got[len("prefix"):]
		if !bytes.Equal(got, want) {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func TestAppendJSONManyHeaders(t *testing.T) {
	// More keys than appendJSONStringMap's stack buffer holds.
	e := &HTTPEvent{Headers: map[string]string{}}
	for i := range 200 {
		e.Headers["x-h-"+strconv.Itoa(i)] = strconv.Itoa(i * i)
	}
	want, _ := json.Marshal(e)
	got, _ := e.AppendJSON(nil)
	if !bytes.Equal(got, want) {
		t.Errorf("mismatch with many headers")
	}
}

func BenchmarkNewHTTPEventAppendJSON(b *testing.B) {
	body := []byte(`{"name":"tern","items":[1,2,3],"nested":{"ok":true}}`)
	r := httptest.NewRequest(http.MethodPost, "/fn/hello/api/items?page=2&sort=asc&tag=a&tag=b", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Accept-Encoding", "gzip, deflate, br")
	r.Header.Set("Accept-Language", "en-US,en;q=0.9")
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")
	r.Header.Set("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc")
	r.Header.Set("Cookie", "session=abc123; theme=dark; lang=en")
	r.Header.Set("X-Request-Id", "7f6c1d2e")
	r.Header.Set("Content-Length", "52")

	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		e := NewHTTPEvent(r, "/api/items", body, "0b5c1c39-6d1d-4d1a-9c52-3f2b5f0a9e11", testNow)
		var err error
		buf, err = e.AppendJSON(buf[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func TestRawPathKeepsEncoding(t *testing.T) {
	for _, c := range []struct{ escaped, want string }{
		{"/fn/hello", "/"},
		{"/fn/hello/", "/"},
		{"/fn/hello/a%2Fb/c%20d", "/a%2Fb/c%20d"},
		{"/fn/hello/x", "/x"},
		{"/fn/hello@prod/x/y", "/x/y"},
		{"/fn/hello@7", "/"},
	} {
		if got := rawPath(c.escaped); got != c.want {
			t.Errorf("rawPath(%q) = %q, want %q", c.escaped, got, c.want)
		}
	}
}

func TestTraceHeader(t *testing.T) {
	for _, tc := range []struct {
		name, amzn, traceparent, want string
	}{
		{"lambda header kept", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1", "", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"},
		{"lambda header wins", "Root=1-5759e988-bd862e3fe1be46a994272793", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Root=1-5759e988-bd862e3fe1be46a994272793"},
		{"traceparent sampled", "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"},
		{"traceparent not sampled", "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=0"},
		{"future version with more fields", "", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-xyz", "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"},
		{"version ff", "", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""},
		{"upper case", "", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", ""},
		{"zero trace id", "", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		{"short", "", "00-4bf92f35-00f067aa0ba902b7-01", ""},
		{"bad lambda header", "nope", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tc.amzn != "" {
				r.Header.Set("X-Amzn-Trace-Id", tc.amzn)
			}
			if tc.traceparent != "" {
				r.Header.Set("Traceparent", tc.traceparent)
			}
			if got := TraceHeader(r); got != tc.want {
				t.Errorf("TraceHeader = %q, want %q", got, tc.want)
			}
		})
	}
}
