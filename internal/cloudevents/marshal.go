package cloudevents

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MarshalJSON writes e in the structured JSON format
// (application/cloudevents+json): the context attributes, then the
// extensions as top-level members in name order, then the data:
//
//   - as data_base64 when DataIsBase64 is set;
//   - as embedded JSON when datacontenttype declares JSON (application/json,
//     */*+json) or is empty, and Data is valid UTF-8 JSON;
//   - as a JSON string when datacontenttype is set, is not JSON, and Data is
//     valid UTF-8 (text/*, application/xml and the like);
//   - as data_base64 otherwise (binary data, or bytes that do not match a
//     JSON datacontenttype).
//
// A nil Data writes no data member. An invalid event is refused with the
// *Error Validate returns.
func (e *Event) MarshalJSON() ([]byte, error) {
	if err := e.validate(memberName); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteByte('{')
	sep := func(name string) {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		writeString(&b, name)
		b.WriteByte(':')
	}
	for _, attr := range contextAttributes {
		if v := *e.attribute(attr); v != "" {
			sep(attr)
			writeString(&b, v)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(e.Extensions)) {
		sep(n)
		switch v := e.Extensions[n].(type) {
		case string:
			writeString(&b, v)
		case bool:
			b.WriteString(strconv.FormatBool(v))
		case int:
			b.WriteString(strconv.FormatInt(int64(v), 10))
		case int32:
			b.WriteString(strconv.FormatInt(int64(v), 10))
		case int64:
			b.WriteString(strconv.FormatInt(v, 10))
		case float64:
			b.WriteString(formatFloat(v))
		default: // validate admits no other type
			return nil, fmt.Errorf("cloudevent: extension %q has unsupported type %T", n, v)
		}
	}
	if e.Data != nil {
		jsonType := e.DataContentType == "" || isJSONMedia(mediaType(e.DataContentType))
		switch {
		case !e.DataIsBase64 && jsonType && utf8.Valid(e.Data) && json.Valid(e.Data):
			sep("data")
			if err := json.Compact(&b, e.Data); err != nil {
				return nil, fmt.Errorf("cloudevent: compacting data: %w", err)
			}
		case !e.DataIsBase64 && !jsonType && utf8.Valid(e.Data):
			sep("data")
			writeString(&b, string(e.Data))
		default:
			sep("data_base64")
			b.WriteByte('"')
			b.WriteString(base64.StdEncoding.EncodeToString(e.Data))
			b.WriteByte('"')
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// writeString writes s as a JSON string, leaving <, > and & unescaped.
func writeString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode ends with a newline
}

// formatFloat formats f so that it reads back as a float64, not an int64:
// always with a fraction or an exponent.
func formatFloat(f float64) string {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return s
}
