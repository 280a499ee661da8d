package cloudevents

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Media types of the event formats Read understands.
const (
	mediaStructured = "application/cloudevents+json"
	mediaBatch      = "application/cloudevents-batch+json"
)

// headerPrefix starts every binary-mode attribute header (compared in lower
// case).
const headerPrefix = "ce-"

// Read returns the events a request carries, in the content mode its
// Content-Type selects (see the package documentation): binary (ce-*
// headers, the body is the data, Content-Type is datacontenttype),
// structured (application/cloudevents+json, optionally with charset=utf-8)
// or batched (application/cloudevents-batch+json, a non-empty JSON array of
// structured events).
//
// At most maxBytes of the body are read; a longer body is a 413 (a
// maxBytes below zero counts as zero). Every event returned is valid. The
// error is always an *Error.
func Read(r *http.Request, maxBytes int64) ([]*Event, error) {
	events, err := read(r, maxBytes)
	if err != nil {
		return nil, err
	}
	return events, nil
}

func read(r *http.Request, maxBytes int64) ([]*Event, *Error) {
	contentType := r.Header.Get("Content-Type")
	media := mediaType(contentType)
	switch {
	case strings.HasPrefix(media, "application/cloudevents-batch"):
		if err := checkFormat(contentType, media, mediaBatch); err != nil {
			return nil, err
		}
		body, err := readBody(r, maxBytes)
		if err != nil {
			return nil, err
		}
		return readBatch(body)
	case strings.HasPrefix(media, "application/cloudevents"):
		if err := checkFormat(contentType, media, mediaStructured); err != nil {
			return nil, err
		}
		body, err := readBody(r, maxBytes)
		if err != nil {
			return nil, err
		}
		e, err := readStructured(body)
		if err != nil {
			return nil, err
		}
		return []*Event{e}, nil
	}
	attrs, err := binaryAttributes(r.Header)
	if err != nil {
		return nil, err
	}
	if len(attrs) == 0 {
		return nil, invalid("the request is not a CloudEvent: send binary mode with ce-specversion: 1.0, " +
			"ce-id, ce-source and ce-type headers and the data as the body, or structured mode with " +
			"Content-Type: application/cloudevents+json and the event as a JSON object")
	}
	body, err := readBody(r, maxBytes)
	if err != nil {
		return nil, err
	}
	e, err := readBinary(attrs, contentType, body)
	if err != nil {
		return nil, err
	}
	return []*Event{e}, nil
}

// mediaType returns the media type of a Content-Type value in lower case,
// without parameters; "" when there is none.
func mediaType(contentType string) string {
	media, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(media))
}

// isJSONMedia reports whether a media type (as mediaType returns it)
// declares JSON: subtype json or a +json suffix.
func isJSONMedia(media string) bool {
	_, sub, ok := strings.Cut(media, "/")
	return ok && (sub == "json" || strings.HasSuffix(sub, "+json"))
}

// checkFormat checks that a cloudevents Content-Type is the JSON format
// want, in UTF-8.
func checkFormat(contentType, media, want string) *Error {
	if media != want {
		return &Error{
			Status: http.StatusUnsupportedMediaType,
			Message: fmt.Sprintf("cloudevent: event format %q is not supported (want %s or %s)",
				media, mediaStructured, mediaBatch),
		}
	}
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return invalid("Content-Type %q is malformed: %v", contentType, err)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return &Error{
			Status:  http.StatusUnsupportedMediaType,
			Message: fmt.Sprintf("cloudevent: charset %q is not supported (want utf-8)", cs),
		}
	}
	return nil
}

// readBody reads the whole body, refusing one over maxBytes without
// reading more than maxBytes+1 bytes of it.
func readBody(r *http.Request, maxBytes int64) ([]byte, *Error) {
	maxBytes = max(maxBytes, 0)
	if r.ContentLength > maxBytes {
		return nil, tooLarge(maxBytes)
	}
	if r.Body == nil {
		return nil, nil
	}
	limit := maxBytes
	if limit < math.MaxInt64 {
		limit++
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, tooLarge(min(tooBig.Limit, maxBytes))
		}
		return nil, invalid("reading the request body: %v", err)
	}
	if int64(len(body)) > maxBytes {
		return nil, tooLarge(maxBytes)
	}
	return body, nil
}

func tooLarge(maxBytes int64) *Error {
	return &Error{
		Status:  http.StatusRequestEntityTooLarge,
		Message: fmt.Sprintf("cloudevent: the request body is larger than %d bytes", maxBytes),
	}
}

// Binary mode.

// binaryName names an attribute as binary mode carries it.
func binaryName(attr string) string {
	if attr == "datacontenttype" {
		return "Content-Type"
	}
	return headerPrefix + attr
}

// binaryAttributes returns the decoded values of the ce-* headers by
// attribute name (the header name without ce-, in lower case).
func binaryAttributes(h http.Header) (map[string]string, *Error) {
	var attrs map[string]string
	for _, k := range slices.Sorted(maps.Keys(h)) {
		lower := strings.ToLower(k)
		if !strings.HasPrefix(lower, headerPrefix) {
			continue
		}
		attr := lower[len(headerPrefix):]
		if err := checkName(attr, binaryName); err != nil {
			return nil, err
		}
		if len(h[k]) == 0 {
			continue
		}
		if _, dup := attrs[attr]; dup || len(h[k]) > 1 {
			return nil, invalid("header %q appears more than once", binaryName(attr))
		}
		v, problem := decodeHeaderValue(h[k][0])
		if problem != "" {
			return nil, invalid("header %q %s", binaryName(attr), problem)
		}
		if attrs == nil {
			attrs = make(map[string]string)
		}
		attrs[attr] = v
	}
	return attrs, nil
}

// decodeHeaderValue undoes the binding's header encoding: an optional
// RFC 7230 quoted-string, then one round of percent-decoding to UTF-8. It
// returns what is wrong with v when it cannot be decoded.
func decodeHeaderValue(v string) (string, string) {
	v = strings.Trim(v, " \t")
	if strings.HasPrefix(v, `"`) {
		unquoted, ok := unquote(v)
		if !ok {
			return "", "has a malformed quoted string"
		}
		v = unquoted
	}
	if strings.IndexByte(v, '%') >= 0 {
		buf := make([]byte, 0, len(v))
		for i := 0; i < len(v); i++ {
			if v[i] != '%' {
				buf = append(buf, v[i])
				continue
			}
			if i+2 >= len(v) || !isHex(v[i+1]) || !isHex(v[i+2]) {
				return "", fmt.Sprintf("has an invalid percent escape at byte %d (want %%XX)", i)
			}
			buf = append(buf, unhex(v[i+1])<<4|unhex(v[i+2]))
			i += 2
		}
		v = string(buf)
	}
	if !utf8.ValidString(v) {
		return "", "is not valid UTF-8 once percent-decoded"
	}
	return v, ""
}

// unquote decodes a value that is wholly one RFC 7230 quoted-string.
func unquote(v string) (string, bool) {
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			i++
			if i == len(v) {
				return "", false
			}
			b.WriteByte(v[i])
		case '"':
			return b.String(), i == len(v)-1
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// readBinary builds a binary-mode event from its decoded ce-* attributes,
// the Content-Type header and the body.
func readBinary(attrs map[string]string, contentType string, body []byte) (*Event, *Error) {
	if _, ok := attrs["datacontenttype"]; ok {
		return nil, invalid("header %q is not allowed in binary mode: send the data's media type as Content-Type",
			headerPrefix+"datacontenttype")
	}
	e := &Event{DataContentType: strings.Trim(contentType, " \t")}
	for _, attr := range slices.Sorted(maps.Keys(attrs)) {
		if err := e.set(attr, attrs[attr], binaryName); err != nil {
			return nil, err
		}
	}
	if len(body) > 0 {
		e.Data = body
	}
	if err := e.validate(binaryName); err != nil {
		return nil, err
	}
	return e, nil
}

// set sets a context attribute, or a string extension for any other name.
// Optional attributes that are present must not be empty; an empty required
// attribute is left for validate to report as missing.
func (e *Event) set(attr, v string, name namer) *Error {
	field := e.attribute(attr)
	if field == nil {
		if err := checkExtensionName(attr, name); err != nil {
			return err
		}
		if e.Extensions == nil {
			e.Extensions = make(map[string]any)
		}
		e.Extensions[attr] = v
		return nil
	}
	if v == "" && !requiredAttributes[attr] {
		return invalid("%q must not be empty when present", name(attr))
	}
	*field = v
	return nil
}

// Structured and batched mode.

// readStructured reads a body holding one event in the JSON format.
func readStructured(body []byte) (*Event, *Error) {
	raw, err := parseJSON(body)
	if err != nil {
		return nil, err
	}
	if jsonKind(raw) != "object" {
		return nil, invalid("a structured event must be a JSON object, got %s", jsonKind(raw))
	}
	return readObject(raw)
}

// readBatch reads a body holding a non-empty JSON array of events.
func readBatch(body []byte) ([]*Event, *Error) {
	raw, err := parseJSON(body)
	if err != nil {
		return nil, err
	}
	if jsonKind(raw) != "array" {
		return nil, invalid("a batch must be a JSON array of events, got %s", jsonKind(raw))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, invalid("the batch is not valid JSON: %v", err)
	}
	if len(items) == 0 {
		return nil, invalid("the batch is empty: send at least one event")
	}
	events := make([]*Event, 0, len(items))
	for i, item := range items {
		if jsonKind(item) != "object" {
			return nil, invalid("batch[%d]: an event must be a JSON object, got %s", i, jsonKind(item))
		}
		e, err := readObject(item)
		if err != nil {
			err.Message = fmt.Sprintf("cloudevent: batch[%d]: %s", i, strings.TrimPrefix(err.Message, "cloudevent: "))
			return nil, err
		}
		events = append(events, e)
	}
	return events, nil
}

// parseJSON checks that body is exactly one UTF-8 JSON value and returns it
// without surrounding whitespace.
func parseJSON(body []byte) (json.RawMessage, *Error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, invalid("the body is empty")
	}
	if !utf8.Valid(body) {
		return nil, invalid("the body is not valid UTF-8")
	}
	var raw json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, invalid("the body is not valid JSON: %v", err)
	}
	return bytes.TrimSpace(raw), nil
}

// jsonKind names the kind of a valid JSON value.
func jsonKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// readObject reads one event from a JSON object already checked for
// syntax.
func readObject(raw []byte) (*Event, *Error) {
	members, err := objectMembers(raw)
	if err != nil {
		return nil, err
	}
	e := &Event{}
	for _, attr := range contextAttributes {
		v, ok := members[attr]
		if !ok {
			continue
		}
		delete(members, attr)
		switch jsonKind(v) {
		case "null":
			continue // unset, as the JSON format requires
		case "string":
		default:
			return nil, invalid("%q must be a JSON string, got %s", attr, jsonKind(v))
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, invalid("%q is not a valid JSON string: %v", attr, err)
		}
		if err := e.set(attr, s, memberName); err != nil {
			return nil, err
		}
	}
	if err := e.readData(members); err != nil {
		return nil, err
	}
	for _, attr := range slices.Sorted(maps.Keys(members)) {
		if err := checkExtensionName(attr, memberName); err != nil {
			return nil, err
		}
		v, err := extensionValue(attr, members[attr])
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue // null: unset
		}
		if e.Extensions == nil {
			e.Extensions = make(map[string]any)
		}
		e.Extensions[attr] = v
	}
	if err := e.validate(memberName); err != nil {
		return nil, err
	}
	return e, nil
}

// objectMembers returns the members of a JSON object by name, refusing a
// name that appears twice.
func objectMembers(raw []byte) (map[string]json.RawMessage, *Error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // the opening brace
		return nil, invalid("the event is not valid JSON: %v", err)
	}
	members := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, invalid("the event is not valid JSON: %v", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, invalid("the event is not valid JSON: unexpected %v", tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, invalid("the event is not valid JSON: %v", err)
		}
		if _, dup := members[key]; dup {
			return nil, invalid("member %q appears more than once", key)
		}
		members[key] = v
	}
	return members, nil
}

// readData sets Data from the data or data_base64 member, removing both
// from members.
func (e *Event) readData(members map[string]json.RawMessage) *Error {
	data, hasData := members["data"]
	b64, hasBase64 := members["data_base64"]
	delete(members, "data")
	delete(members, "data_base64")
	if hasBase64 && jsonKind(b64) == "null" {
		hasBase64 = false
	}
	if hasData && hasBase64 && jsonKind(data) == "null" {
		hasData = false // a null beside data_base64 is an unset member, not a null payload
	}
	switch {
	case hasData && hasBase64:
		return invalid(`"data" and "data_base64" are mutually exclusive: send one`)
	case hasBase64:
		if jsonKind(b64) != "string" {
			return invalid(`"data_base64" must be a JSON string, got %s`, jsonKind(b64))
		}
		var s string
		if err := json.Unmarshal(b64, &s); err != nil {
			return invalid(`"data_base64" is not a valid JSON string: %v`, err)
		}
		decoded, err := decodeBase64(s)
		if err != nil {
			return invalid(`"data_base64" is not valid base64: %v`, err)
		}
		e.Data = decoded
		e.DataIsBase64 = true
	case hasData && (e.DataContentType == "" || isJSONMedia(mediaType(e.DataContentType))):
		var buf bytes.Buffer
		if err := json.Compact(&buf, data); err != nil {
			return invalid(`"data" is not valid JSON: %v`, err)
		}
		e.Data = buf.Bytes()
	case hasData:
		switch jsonKind(data) {
		case "null":
		case "string":
			var s string
			if err := json.Unmarshal(data, &s); err != nil {
				return invalid(`"data" is not a valid JSON string: %v`, err)
			}
			e.Data = []byte(s)
		default:
			return invalid(`"data" must be a JSON string when datacontenttype %q is not JSON, got %s (send binary data as data_base64)`,
				e.DataContentType, jsonKind(data))
		}
	}
	return nil
}

// decodeBase64 decodes standard base64, padded or not.
func decodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if raw, rawErr := base64.RawStdEncoding.DecodeString(s); rawErr == nil {
			return raw, nil
		}
		return nil, err
	}
	return b, nil
}

// extensionValue decodes an extension's JSON value: a string, bool, int64
// or float64, or nil for null.
func extensionValue(attr string, raw json.RawMessage) (any, *Error) {
	switch kind := jsonKind(raw); kind {
	case "null":
		return nil, nil
	case "string":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, invalid("extension %q is not a valid JSON string: %v", attr, err)
		}
		return s, nil
	case "boolean":
		return raw[0] == 't', nil
	case "number":
		s := string(bytes.TrimSpace(raw))
		if !strings.ContainsAny(s, ".eE") {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return n, nil
			}
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, invalid("extension %q number %s is out of range", attr, s)
		}
		return f, nil
	default:
		return nil, invalid("extension %q must be a string, number or boolean, got %s", attr, kind)
	}
}
