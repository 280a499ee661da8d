package cloudevents

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

const testMaxBytes = 1 << 16

// reqSpec describes a request to Read.
type reqSpec struct {
	contentType string
	headers     []string // "Name: value", in order; a name may repeat
	body        string
}

func (s reqSpec) request() *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(s.body))
	if s.contentType != "" {
		r.Header.Set("Content-Type", s.contentType)
	}
	for _, h := range s.headers {
		name, value, _ := strings.Cut(h, ":")
		r.Header.Add(strings.TrimSpace(name), strings.TrimLeft(value, " "))
	}
	return r
}

// ceHeaders returns the four required binary-mode headers followed by more.
func ceHeaders(more ...string) []string {
	return append([]string{
		"ce-specversion: 1.0",
		"ce-id: 1234",
		"ce-source: /mycontext",
		"ce-type: com.example.someevent",
	}, more...)
}

// without returns headers minus the one whose name is name.
func without(headers []string, name string) []string {
	var out []string
	for _, h := range headers {
		if !strings.HasPrefix(h, name+":") {
			out = append(out, h)
		}
	}
	return out
}

// base returns an event with the required attributes of ceHeaders.
func base(modify func(e *Event)) *Event {
	e := &Event{SpecVersion: "1.0", ID: "1234", Source: "/mycontext", Type: "com.example.someevent"}
	if modify != nil {
		modify(e)
	}
	return e
}

const (
	ctStructured = "application/cloudevents+json"
	ctBatch      = "application/cloudevents-batch+json"
	required     = `"specversion":"1.0","id":"1234","source":"/mycontext","type":"com.example.someevent"`
)

var readTests = []struct {
	name string
	req  reqSpec
	want []*Event
}{
	// Binary mode.
	{
		name: "binary with JSON data",
		req: reqSpec{
			contentType: "application/json; charset=utf-8",
			headers: ceHeaders(
				"ce-time: 2018-04-05T03:56:24Z",
				"ce-subject: larger-context",
				"ce-dataschema: https://example.com/schema.json",
			),
			body: "{\n  \"a\": 1\n}",
		},
		want: []*Event{base(func(e *Event) {
			e.Time = "2018-04-05T03:56:24Z"
			e.Subject = "larger-context"
			e.DataSchema = "https://example.com/schema.json"
			e.DataContentType = "application/json; charset=utf-8"
			e.Data = []byte("{\n  \"a\": 1\n}")
		})},
	},
	{
		name: "binary percent-encoded header",
		req: reqSpec{
			contentType: "text/plain",
			headers:     ceHeaders("ce-subject: Euro%20%E2%82%AC%20%f0%9f%98%80", "ce-comexampleext: 100%25"),
			body:        "hello",
		},
		want: []*Event{base(func(e *Event) {
			e.Subject = "Euro € 😀"
			e.Extensions = map[string]any{"comexampleext": "100%"}
			e.DataContentType = "text/plain"
			e.Data = []byte("hello")
		})},
	},
	{
		name: "binary quoted-string header",
		req: reqSpec{
			headers: ceHeaders(`ce-subject: "say \"hi\" there"`),
		},
		want: []*Event{base(func(e *Event) { e.Subject = `say "hi" there` })},
	},
	{
		name: "binary extension headers in any case",
		req: reqSpec{
			contentType: "application/octet-stream",
			headers:     ceHeaders("CE-Traceparent: 00-abc-01", "ce-comexampleothervalue: 5"),
			body:        "\x00\x01\xff",
		},
		want: []*Event{base(func(e *Event) {
			e.Extensions = map[string]any{"traceparent": "00-abc-01", "comexampleothervalue": "5"}
			e.DataContentType = "application/octet-stream"
			e.Data = []byte("\x00\x01\xff")
		})},
	},
	{
		name: "binary empty body and no content type",
		req:  reqSpec{headers: ceHeaders()},
		want: []*Event{base(nil)},
	},
	// Structured mode.
	{
		name: "structured JSON data is compacted",
		req: reqSpec{
			contentType: ctStructured,
			body: `{` + required + `, "time": "2018-04-05T17:31:00Z", "subject": null,
				"datacontenttype": "application/json", "data": { "appinfoA" : "abc", "appinfoB": 123 }}`,
		},
		want: []*Event{base(func(e *Event) {
			e.Time = "2018-04-05T17:31:00Z"
			e.DataContentType = "application/json"
			e.Data = []byte(`{"appinfoA":"abc","appinfoB":123}`)
		})},
	},
	{
		name: "structured data without content type is JSON",
		req: reqSpec{
			contentType: ctStructured + "; charset=UTF-8",
			body:        `{` + required + `,"data":"I'm just a string"}`,
		},
		want: []*Event{base(func(e *Event) { e.Data = []byte(`"I'm just a string"`) })},
	},
	{
		name: "structured explicit null JSON data",
		req: reqSpec{
			contentType: ctStructured,
			body:        `{` + required + `,"datacontenttype":"application/vnd.api+json","data":null}`,
		},
		want: []*Event{base(func(e *Event) {
			e.DataContentType = "application/vnd.api+json"
			e.Data = []byte("null")
		})},
	},
	{
		name: "structured string data",
		req: reqSpec{
			contentType: ctStructured,
			body:        `{` + required + `,"datacontenttype":"application/xml","data":"<much wow=\"xml\"/>"}`,
		},
		want: []*Event{base(func(e *Event) {
			e.DataContentType = "application/xml"
			e.Data = []byte(`<much wow="xml"/>`)
		})},
	},
	{
		name: "structured data_base64",
		req: reqSpec{
			contentType: ctStructured,
			body:        `{` + required + `,"datacontenttype":"application/octet-stream","data_base64":"AAEC/w==","data":null}`,
		},
		want: []*Event{base(func(e *Event) {
			e.DataContentType = "application/octet-stream"
			e.Data = []byte{0, 1, 2, 0xff}
			e.DataIsBase64 = true
		})},
	},
	{
		name: "structured unpadded data_base64",
		req: reqSpec{
			contentType: ctStructured,
			body:        `{` + required + `,"data_base64":"AAEC/w"}`,
		},
		want: []*Event{base(func(e *Event) {
			e.Data = []byte{0, 1, 2, 0xff}
			e.DataIsBase64 = true
		})},
	},
	{
		name: "structured extensions",
		req: reqSpec{
			contentType: ctStructured,
			headers:     []string{"ce-specversion: 0.3"}, // ignored: the body is the event
			body: `{` + required + `,"comexampleextension1":"value","comexampleothervalue":5,
				"ratio":0.5,"big":1e3,"huge":99999999999999999999,"flag":true,"unsetextension":null}`,
		},
		want: []*Event{base(func(e *Event) {
			e.Extensions = map[string]any{
				"comexampleextension1": "value",
				"comexampleothervalue": int64(5),
				"ratio":                0.5,
				"big":                  1000.0,
				"huge":                 1e20,
				"flag":                 true,
			}
		})},
	},
	{
		name: "structured despite ce- headers without ce-specversion",
		req: reqSpec{
			contentType: ctStructured,
			headers:     without(ceHeaders(), "ce-specversion"),
			body:        `{"specversion":"1.0","id":"9","source":"/other","type":"t"}`,
		},
		want: []*Event{{SpecVersion: "1.0", ID: "9", Source: "/other", Type: "t"}},
	},
	// Batched mode.
	{
		name: "batch of two",
		req: reqSpec{
			contentType: ctBatch + "; charset=utf-8",
			body: `[{` + required + `,"data_base64":"aGk="},
				{"specversion":"1.0","id":"2","source":"urn:x","type":"t","datacontenttype":"text/plain","data":"hi"}]`,
		},
		want: []*Event{
			base(func(e *Event) { e.Data, e.DataIsBase64 = []byte("hi"), true }),
			{SpecVersion: "1.0", ID: "2", Source: "urn:x", Type: "t", DataContentType: "text/plain", Data: []byte("hi")},
		},
	},
}

func TestRead(t *testing.T) {
	for _, tt := range readTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read(tt.req.request(), testMaxBytes)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Read:\n got %s\nwant %s", dump(got), dump(tt.want))
			}
		})
	}
}

var readErrorTests = []struct {
	name   string
	req    reqSpec
	status int
	want   string // the message, or a part of it
}{
	// Choosing a mode.
	{"not a cloudevent", reqSpec{contentType: "application/json", body: `{}`}, 400,
		"cloudevent: the request is not a CloudEvent: send binary mode with ce-specversion: 1.0, ce-id, ce-source and ce-type headers"},
	{"unsupported format", reqSpec{contentType: "application/cloudevents+xml", body: `<e/>`}, 415,
		`cloudevent: event format "application/cloudevents+xml" is not supported`},
	{"unsupported batch format", reqSpec{contentType: "application/cloudevents-batch+avro"}, 415,
		`event format "application/cloudevents-batch+avro" is not supported`},
	{"unsupported charset", reqSpec{contentType: ctStructured + "; charset=latin1", body: `{}`}, 415,
		`cloudevent: charset "latin1" is not supported (want utf-8)`},
	{"malformed content type", reqSpec{contentType: ctStructured + "; charset", body: `{}`}, 400,
		`Content-Type "application/cloudevents+json; charset" is malformed`},
	{"too large", reqSpec{contentType: ctStructured, body: `{` + required + `,"data":"` + strings.Repeat("x", testMaxBytes) + `"}`}, 413,
		"cloudevent: the request body is larger than 65536 bytes"},
	{"binary too large", reqSpec{headers: ceHeaders(), body: strings.Repeat("x", testMaxBytes+1)}, 413,
		"larger than 65536 bytes"},

	// Binary mode.
	{"binary missing specversion", reqSpec{headers: without(ceHeaders(), "ce-specversion")}, 400,
		`cloudevent: "ce-specversion" is required`},
	{"binary missing id", reqSpec{headers: without(ceHeaders(), "ce-id")}, 400,
		`cloudevent: "ce-id" is required`},
	{"binary missing source", reqSpec{headers: without(ceHeaders(), "ce-source")}, 400,
		`cloudevent: "ce-source" is required`},
	{"binary missing type", reqSpec{headers: without(ceHeaders(), "ce-type")}, 400,
		`cloudevent: "ce-type" is required`},
	{"binary empty id", reqSpec{headers: append(without(ceHeaders(), "ce-id"), "ce-id: ")}, 400,
		`cloudevent: "ce-id" is required`},
	{"binary bad specversion", reqSpec{headers: append(without(ceHeaders(), "ce-specversion"), "ce-specversion: 0.3")}, 400,
		`cloudevent: ce-specversion "0.3" is not supported (want "1.0")`},
	{"binary bad time", reqSpec{headers: ceHeaders("ce-time: yesterday")}, 400,
		`cloudevent: "ce-time" "yesterday" is not an RFC 3339 timestamp`},
	{"binary bad attribute name", reqSpec{headers: ceHeaders("ce-my_ext: x")}, 400,
		`cloudevent: attribute name "ce-my_ext" is invalid: use only lowercase letters a-z and digits 0-9`},
	{"binary attribute name too long", reqSpec{headers: ceHeaders("ce-abcdefghijklmnopqrstu: x")}, 400,
		`cloudevent: attribute name "ce-abcdefghijklmnopqrstu" is longer than 20 characters`},
	{"binary bad percent escape", reqSpec{headers: ceHeaders("ce-subject: 100%zz")}, 400,
		`cloudevent: header "ce-subject" has an invalid percent escape at byte 3 (want %XX)`},
	{"binary truncated percent escape", reqSpec{headers: ceHeaders("ce-subject: a%4")}, 400,
		`header "ce-subject" has an invalid percent escape`},
	{"binary overlong UTF-8", reqSpec{headers: ceHeaders("ce-subject: %C0%A0")}, 400,
		`cloudevent: header "ce-subject" is not valid UTF-8 once percent-decoded`},
	{"binary control character", reqSpec{headers: ceHeaders("ce-subject: a%0Ab")}, 400,
		`cloudevent: "ce-subject" contains control character U+000A`},
	{"binary malformed quoted string", reqSpec{headers: ceHeaders(`ce-subject: "abc`)}, 400,
		`cloudevent: header "ce-subject" has a malformed quoted string`},
	{"binary datacontenttype header", reqSpec{headers: ceHeaders("ce-datacontenttype: text/plain")}, 400,
		`cloudevent: header "ce-datacontenttype" is not allowed in binary mode`},
	{"binary repeated header", reqSpec{headers: ceHeaders("ce-id: 5678")}, 400,
		`cloudevent: header "ce-id" appears more than once`},
	{"binary empty optional", reqSpec{headers: ceHeaders("ce-subject: ")}, 400,
		`cloudevent: "ce-subject" must not be empty when present`},
	{"binary empty extension", reqSpec{headers: ceHeaders("ce-ext: ")}, 400,
		`cloudevent: extension "ce-ext" must not be empty`},
	{"binary reserved data header", reqSpec{headers: ceHeaders("ce-data: x")}, 400,
		`cloudevent: extension "ce-data" is reserved`},
	{"binary bad source", reqSpec{headers: append(without(ceHeaders(), "ce-source"), "ce-source: a%20b")}, 400,
		`cloudevent: "ce-source" "a b" is not a valid URI-reference`},
	{"binary relative dataschema", reqSpec{headers: ceHeaders("ce-dataschema: /schema")}, 400,
		`cloudevent: "ce-dataschema" "/schema" is not an absolute URI`},
	{"binary bad content type", reqSpec{contentType: "not a media type", headers: ceHeaders()}, 400,
		`cloudevent: "Content-Type" "not a media type" is not a valid media type`},

	// Structured mode.
	{"structured missing specversion", reqSpec{contentType: ctStructured,
		body: `{"id":"1","source":"/s","type":"t"}`}, 400, `cloudevent: "specversion" is required`},
	{"structured missing id", reqSpec{contentType: ctStructured,
		body: `{"specversion":"1.0","source":"/s","type":"t"}`}, 400, `cloudevent: "id" is required`},
	{"structured null id", reqSpec{contentType: ctStructured,
		body: `{"specversion":"1.0","id":null,"source":"/s","type":"t"}`}, 400, `cloudevent: "id" is required`},
	{"structured missing source", reqSpec{contentType: ctStructured,
		body: `{"specversion":"1.0","id":"1","type":"t"}`}, 400, `cloudevent: "source" is required`},
	{"structured missing type", reqSpec{contentType: ctStructured,
		body: `{"specversion":"1.0","id":"1","source":"/s"}`}, 400, `cloudevent: "type" is required`},
	{"structured bad specversion", reqSpec{contentType: ctStructured,
		body: `{"specversion":"0.3","id":"1","source":"/s","type":"t"}`}, 400,
		`cloudevent: specversion "0.3" is not supported (want "1.0")`},
	{"structured numeric specversion", reqSpec{contentType: ctStructured,
		body: `{"specversion":1.0,"id":"1","source":"/s","type":"t"}`}, 400,
		`cloudevent: "specversion" must be a JSON string, got number`},
	{"structured numeric id", reqSpec{contentType: ctStructured,
		body: `{"specversion":"1.0","id":1,"source":"/s","type":"t"}`}, 400,
		`cloudevent: "id" must be a JSON string, got number`},
	{"structured bad time", reqSpec{contentType: ctStructured,
		body: `{` + required + `,"time":"2018-04-05 17:31"}`}, 400,
		`cloudevent: "time" "2018-04-05 17:31" is not an RFC 3339 timestamp`},
	{"structured empty subject", reqSpec{contentType: ctStructured,
		body: `{` + required + `,"subject":""}`}, 400, `cloudevent: "subject" must not be empty when present`},
	{"structured bad attribute name", reqSpec{contentType: ctStructured,
		body: `{` + required + `,"myExt":"x"}`}, 400,
		`cloudevent: attribute name "myExt" is invalid: use only lowercase letters a-z and digits 0-9`},
	{"structured attribute name too long", reqSpec{contentType: ctStructured,
		body: `{` + required + `,"abcdefghijklmnopqrstu":"x"}`}, 400,
		`cloudevent: attribute name "abcdefghijklmnopqrstu" is longer than 20 characters`},
	{"structured data and data_base64", reqSpec{contentType: ctStructured,
		body: `{` + required + `,"data":{},"data_base64":"AA=="}`}, 400,
		`cloudevent: "data" and "data_base64" are mutually exclusive: send one`},
	{"structured bad base64", reqSpec{contentType: ctStructured,
		body: `{` + required + `,"data_base64":"not base64!"}`}, 400, `cloudevent: "data_base64" is not valid base64`},
	{"structured numeric data_base64", reqSpec{contentType: ctStructured,
		body: `{` + required + `,"data_base64":12}`}, 400, `cloudevent: "data_base64" must be a JSON string, got number`},
	{"structured object data with text type", reqSpec{contentType: ctStructured,
		body: `{` + required + `,"datacontenttype":"text/plain","data":{"a":1}}`}, 400,
		`cloudevent: "data" must be a JSON string when datacontenttype "text/plain" is not JSON, got object`},
	{"structured object extension", reqSpec{contentType: ctStructured,
		body: `{` + required + `,"ext":{"a":1}}`}, 400,
		`cloudevent: extension "ext" must be a string, number or boolean, got object`},
	{"structured array extension", reqSpec{contentType: ctStructured,
		body: `{` + required + `,"ext":[1]}`}, 400,
		`cloudevent: extension "ext" must be a string, number or boolean, got array`},
	{"structured number out of range", reqSpec{contentType: ctStructured,
		body: `{` + required + `,"ext":1e400}`}, 400, `cloudevent: extension "ext" number 1e400 is out of range`},
	{"structured duplicate member", reqSpec{contentType: ctStructured,
		body: `{` + required + `,"id":"again"}`}, 400, `cloudevent: member "id" appears more than once`},
	{"structured not JSON", reqSpec{contentType: ctStructured, body: `{"specversion":`}, 400,
		"cloudevent: the body is not valid JSON"},
	{"structured trailing data", reqSpec{contentType: ctStructured, body: `{` + required + `} {}`}, 400,
		"cloudevent: the body is not valid JSON"},
	{"structured invalid UTF-8", reqSpec{contentType: ctStructured, body: "{" + required + ",\"subject\":\"\xff\"}"}, 400,
		"cloudevent: the body is not valid UTF-8"},
	{"structured empty body", reqSpec{contentType: ctStructured}, 400, "cloudevent: the body is empty"},
	{"structured array", reqSpec{contentType: ctStructured, body: `[{` + required + `}]`}, 400,
		"cloudevent: a structured event must be a JSON object, got array"},

	// Batched mode.
	{"batch empty", reqSpec{contentType: ctBatch, body: ` [ ] `}, 400, "cloudevent: the batch is empty: send at least one event"},
	{"batch not an array", reqSpec{contentType: ctBatch, body: `{` + required + `}`}, 400,
		"cloudevent: a batch must be a JSON array of events, got object"},
	{"batch bad event", reqSpec{contentType: ctBatch, body: `[{` + required + `},{"specversion":"1.0","source":"/s","type":"t"}]`}, 400,
		`cloudevent: batch[1]: "id" is required`},
	{"batch non-object event", reqSpec{contentType: ctBatch, body: `["x"]`}, 400,
		"cloudevent: batch[0]: an event must be a JSON object, got string"},
}

func TestReadErrors(t *testing.T) {
	for _, tt := range readErrorTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read(tt.req.request(), testMaxBytes)
			if err == nil {
				t.Fatalf("Read succeeded with %s, want error %q", dump(got), tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Read error %T %v, want *Error", err, err)
			}
			if ce.Status != tt.status {
				t.Errorf("Status = %d, want %d (%s)", ce.Status, tt.status, ce.Message)
			}
			if !strings.Contains(ce.Message, tt.want) {
				t.Errorf("Message = %q, want it to contain %q", ce.Message, tt.want)
			}
		})
	}
}

// unknownLength hides a body's length from Read.
type unknownLength struct{ io.Reader }

func TestReadLimitsUnknownLength(t *testing.T) {
	body := strings.Repeat("x", 100)
	r := reqSpec{headers: ceHeaders()}.request()
	r.Body = io.NopCloser(unknownLength{strings.NewReader(body)})
	r.ContentLength = -1

	_, err := Read(r, 99)
	var ce *Error
	if !errors.As(err, &ce) || ce.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("Read over the limit: %v, want a 413 *Error", err)
	}

	r.Body = io.NopCloser(unknownLength{strings.NewReader(body)})
	events, err := Read(r, 100)
	if err != nil || len(events) != 1 || string(events[0].Data) != body {
		t.Fatalf("Read at the limit = %s, %v; want the body as data", dump(events), err)
	}
}

func TestReadMaxBytesReader(t *testing.T) {
	r := reqSpec{headers: ceHeaders(), body: strings.Repeat("x", 100)}.request()
	r.ContentLength = -1
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 10)
	_, err := Read(r, 1000)
	var ce *Error
	if !errors.As(err, &ce) || ce.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("Read with a MaxBytesReader body: %v, want a 413 *Error", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		event *Event
		want  string // "" for valid
	}{
		{"minimal", base(nil), ""},
		{"all extension types", base(func(e *Event) {
			e.Extensions = map[string]any{"s": "x", "b": false, "i": 1, "i32": int32(2), "i64": int64(3), "f": 1.5}
		}), ""},
		{"missing specversion", base(func(e *Event) { e.SpecVersion = "" }), `cloudevent: "specversion" is required`},
		{"bad specversion", base(func(e *Event) { e.SpecVersion = "0.3" }), `cloudevent: specversion "0.3" is not supported (want "1.0")`},
		{"missing source", base(func(e *Event) { e.Source = "" }), `cloudevent: "source" is required`},
		{"urn source", base(func(e *Event) { e.Source = "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66" }), ""},
		{"bad source", base(func(e *Event) { e.Source = "http://[::1" }), `cloudevent: "source" "http://[::1" is not a valid URI-reference`},
		{"nonchar subject", base(func(e *Event) { e.Subject = "a\uFFFEb" }), `cloudevent: "subject" contains noncharacter U+FFFE`},
		{"invalid UTF-8 type", base(func(e *Event) { e.Type = "a\xffb" }), `cloudevent: "type" is not valid UTF-8`},
		{"lowercase time", base(func(e *Event) { e.Time = "2018-04-05t17:31:00z" }), ""},
		{"comma time", base(func(e *Event) { e.Time = "2018-04-05T17:31:00,5Z" }),
			`cloudevent: "time" "2018-04-05T17:31:00,5Z" is not an RFC 3339 timestamp`},
		{"fractional time", base(func(e *Event) { e.Time = "2018-04-05T17:31:00.123456+02:00" }), ""},
		{"object extension", base(func(e *Event) { e.Extensions = map[string]any{"ext": map[string]any{}} }),
			`cloudevent: extension "ext" must be a string, number or boolean, got map[string]interface {}`},
		{"nil extension", base(func(e *Event) { e.Extensions = map[string]any{"ext": nil} }), `cloudevent: extension "ext" has no value`},
		{"core-named extension", base(func(e *Event) { e.Extensions = map[string]any{"subject": "x"} }),
			`cloudevent: extension "subject" is reserved: it is not an extension attribute`},
		{"uppercase extension", base(func(e *Event) { e.Extensions = map[string]any{"Ext": "x"} }),
			`cloudevent: attribute name "Ext" is invalid`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.event.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate succeeded, want %q", tt.want)
			case tt.want != "" && !strings.HasPrefix(err.Error(), tt.want):
				t.Fatalf("Validate = %q, want %q", err, tt.want)
			}
			if err != nil {
				if _, ok := err.(*Error); !ok {
					t.Errorf("Validate error is %T, want *Error", err)
				}
				if _, merr := tt.event.MarshalJSON(); merr == nil {
					t.Errorf("MarshalJSON of an invalid event succeeded")
				}
			}
		})
	}
}

func TestMarshalJSON(t *testing.T) {
	tests := []struct {
		name  string
		event *Event
		want  string
	}{
		{"no data", base(func(e *Event) { e.Subject = "<s>" }), `{` + required + `,"subject":"<s>"}`},
		{"JSON data", base(func(e *Event) {
			e.DataContentType = "application/cloudevents+json; charset=utf-8" // */*+json
			e.Data = []byte("{ \"a\" : [1, 2] }")
		}), `{` + required + `,"datacontenttype":"application/cloudevents+json; charset=utf-8","data":{"a":[1,2]}}`},
		{"untyped JSON data", base(func(e *Event) { e.Data = []byte(`"str"`) }), `{` + required + `,"data":"str"}`},
		{"untyped non-JSON data", base(func(e *Event) { e.Data = []byte(`str`) }), `{` + required + `,"data_base64":"c3Ry"}`},
		{"invalid JSON for JSON type", base(func(e *Event) {
			e.DataContentType = "application/json"
			e.Data = []byte(`{`)
		}), `{` + required + `,"datacontenttype":"application/json","data_base64":"ew=="}`},
		{"text data", base(func(e *Event) {
			e.DataContentType = "text/plain"
			e.Data = []byte("a \"b\"\n<c>")
		}), `{` + required + `,"datacontenttype":"text/plain","data":"a \"b\"\n<c>"}`},
		{"binary data", base(func(e *Event) {
			e.DataContentType = "application/octet-stream"
			e.Data = []byte{0xff, 0}
		}), `{` + required + `,"datacontenttype":"application/octet-stream","data_base64":"/wA="}`},
		{"base64 kept", base(func(e *Event) {
			e.DataContentType = "text/plain"
			e.Data = []byte("hi")
			e.DataIsBase64 = true
		}), `{` + required + `,"datacontenttype":"text/plain","data_base64":"aGk="}`},
		{"extensions", base(func(e *Event) {
			e.Extensions = map[string]any{"b": true, "f": 3.0, "g": 1e21, "i": 7, "s": "x"}
		}), `{` + required + `,"b":true,"f":3.0,"g":1e+21,"i":7,"s":"x"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.event.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("MarshalJSON:\n got %s\nwant %s", got, tt.want)
			}
			viaJSON, err := json.Marshal(tt.event)
			if err != nil || !json.Valid(viaJSON) {
				t.Errorf("json.Marshal = %s, %v", viaJSON, err)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		member string // the data member MarshalJSON must write
	}{
		{"JSON data", `{` + required + `,"datacontenttype":"application/json","data":{"a": [1, "<&>", null]}}`, `"data":{`},
		{"untyped JSON data", `{` + required + `,"data":"just a string"}`, `"data":"`},
		{"JSON null data", `{` + required + `,"data":null}`, `"data":null`},
		{"text data", `{` + required + `,"datacontenttype":"text/plain; charset=utf-8","data":"line\n\u00e9\u0000"}`, `"data":"`},
		{"empty text data", `{` + required + `,"datacontenttype":"text/csv","data":""}`, `"data":""`},
		{"binary data", `{` + required + `,"datacontenttype":"image/png","data_base64":"iVBORw0KGgo="}`, `"data_base64":"`},
		{"empty binary data", `{` + required + `,"data_base64":""}`, `"data_base64":""`},
		{"no data, all attributes and extensions", `{` + required + `,"subject":"s","time":"2020-01-01T00:00:00.5Z",
			"dataschema":"https://example.com/s","datacontenttype":"application/json",
			"i":-7,"f":1e3,"g":-0.0,"h":2.5e-8,"s":"\u2028","b":false}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := readOne(t, tt.body)
			out, err := first.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON: %v", err)
			}
			if tt.member != "" && !bytes.Contains(out, []byte(tt.member)) {
				t.Errorf("MarshalJSON = %s, want it to contain %s", out, tt.member)
			}
			second := readOne(t, string(out))
			if !reflect.DeepEqual(first, second) {
				t.Errorf("round trip changed the event:\nfirst  %s\nsecond %s\n(via %s)", dump(first), dump(second), out)
			}
		})
	}
}

func readOne(t *testing.T, body string) *Event {
	t.Helper()
	events, err := Read(reqSpec{contentType: ctStructured, body: body}.request(), testMaxBytes)
	if err != nil {
		t.Fatalf("Read %s: %v", body, err)
	}
	if len(events) != 1 {
		t.Fatalf("Read %s: %d events, want 1", body, len(events))
	}
	return events[0]
}

// dump formats events for failure messages.
func dump(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func FuzzRead(f *testing.F) {
	for _, tt := range readTests {
		f.Add(tt.req.contentType, strings.Join(tt.req.headers, "\n"), []byte(tt.req.body))
	}
	for _, tt := range readErrorTests {
		if len(tt.req.body) < 4096 {
			f.Add(tt.req.contentType, strings.Join(tt.req.headers, "\n"), []byte(tt.req.body))
		}
	}
	f.Fuzz(func(t *testing.T, contentType, headers string, body []byte) {
		var lines []string
		if headers != "" {
			lines = strings.Split(headers, "\n")
		}
		spec := reqSpec{contentType: contentType, headers: lines, body: string(body)}
		events, err := Read(spec.request(), 4096)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v, want *Error", err, err)
			}
			switch ce.Status {
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			default:
				t.Fatalf("status %d: %s", ce.Status, ce.Message)
			}
			if !strings.HasPrefix(ce.Message, "cloudevent: ") {
				t.Fatalf("message %q lacks the cloudevent: prefix", ce.Message)
			}
			return
		}
		if len(events) == 0 {
			t.Fatal("Read returned no events and no error")
		}
		structured := strings.HasPrefix(mediaType(spec.request().Header.Get("Content-Type")), "application/cloudevents")
		for _, e := range events {
			if err := e.Validate(); err != nil {
				t.Fatalf("accepted event does not validate: %v", err)
			}
			out, err := e.MarshalJSON()
			if err != nil {
				t.Fatalf("MarshalJSON: %v", err)
			}
			if !json.Valid(out) {
				t.Fatalf("MarshalJSON wrote invalid JSON: %s", out)
			}
			again := readOne(t, string(out))
			if structured {
				if !reflect.DeepEqual(e, again) {
					t.Fatalf("round trip changed the event:\nfirst  %s\nsecond %s\n(via %s)", dump(e), dump(again), out)
				}
			} else {
				checkBinaryRoundTrip(t, e, again)
			}
			out2, err := again.MarshalJSON()
			if err != nil || !bytes.Equal(out, out2) {
				t.Fatalf("second MarshalJSON = %s, %v; want %s", out2, err, out)
			}
		}
	})
}

// checkBinaryRoundTrip checks that a binary-mode event written as JSON and
// read back kept its attributes and the meaning of its data: the bytes, or
// the compacted JSON text when the data was written as embedded JSON.
func checkBinaryRoundTrip(t *testing.T, e, again *Event) {
	t.Helper()
	a, b := *e, *again
	a.Data, a.DataIsBase64, b.Data, b.DataIsBase64 = nil, false, nil, false
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("round trip changed the attributes:\nfirst  %s\nsecond %s", dump(e), dump(again))
	}
	want := e.Data
	if !again.DataIsBase64 && e.Data != nil && (e.DataContentType == "" || isJSONMedia(mediaType(e.DataContentType))) {
		var buf bytes.Buffer
		if err := json.Compact(&buf, e.Data); err != nil {
			t.Fatalf("data %q was embedded as JSON but is not JSON: %v", e.Data, err)
		}
		want = buf.Bytes()
	}
	if !bytes.Equal(want, again.Data) || (want == nil) != (again.Data == nil) {
		t.Fatalf("round trip changed the data: %q became %q", e.Data, again.Data)
	}
}
