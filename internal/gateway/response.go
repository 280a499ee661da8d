package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
)

// ErrInvalidResult is wrapped by every error WriteResult returns for a
// result it cannot turn into a response. Nothing has been written to the
// ResponseWriter when such an error is returned, so the caller can still
// answer 502. Any other error from WriteResult comes from writing the
// body, after the status line has been sent.
var ErrInvalidResult = errors.New("invalid function result")

// defaultContentType is the Content-Type of a response whose function did
// not choose one.
const defaultContentType = "application/json"

// WriteResult writes the function's result to w.
//
// payload is the raw JSON the function returned. A JSON object with a
// "statusCode" key is a structured response (statusCode, headers,
// multiValueHeaders, cookies, body, isBase64Encoded); any other JSON value
// is sent as is with status 200 and Content-Type application/json. An
// empty payload gives 200 with an empty application/json body.
func WriteResult(w http.ResponseWriter, payload []byte) error {
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) == 0 {
		return writeResponse(w, http.StatusOK, nil, nil)
	}
	if !json.Valid(trimmed) {
		return fmt.Errorf("%w: not valid JSON", ErrInvalidResult)
	}
	if trimmed[0] == '{' {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &fields); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidResult, err)
		}
		if _, ok := fields["statusCode"]; ok {
			return writeStructured(w, fields)
		}
	}
	return writeResponse(w, http.StatusOK, nil, payload)
}

// writeStructured writes a structured (statusCode-bearing) result.
func writeStructured(w http.ResponseWriter, fields map[string]json.RawMessage) error {
	status, err := parseStatusCode(fields["statusCode"])
	if err != nil {
		return err
	}

	header := make(http.Header)
	if raw, ok := fields["headers"]; ok && !isJSONNull(raw) {
		var headers map[string]json.RawMessage
		if err := json.Unmarshal(raw, &headers); err != nil {
			return fmt.Errorf("%w: headers must be an object", ErrInvalidResult)
		}
		for name, v := range headers {
			if value, ok := headerText(v); ok {
				setHeader(header, name, value, false)
			}
		}
	}
	if raw, ok := fields["multiValueHeaders"]; ok && !isJSONNull(raw) {
		var headers map[string][]json.RawMessage
		if err := json.Unmarshal(raw, &headers); err != nil {
			return fmt.Errorf("%w: multiValueHeaders must be an object of arrays", ErrInvalidResult)
		}
		for name, vs := range headers {
			for _, v := range vs {
				if value, ok := headerText(v); ok {
					setHeader(header, name, value, true)
				}
			}
		}
	}
	if raw, ok := fields["cookies"]; ok && !isJSONNull(raw) {
		var cookies []json.RawMessage
		if err := json.Unmarshal(raw, &cookies); err != nil {
			return fmt.Errorf("%w: cookies must be an array", ErrInvalidResult)
		}
		for _, c := range cookies {
			var s string
			if json.Unmarshal(c, &s) == nil && s != "" {
				setHeader(header, "Set-Cookie", s, true)
			}
		}
	}

	body, err := structuredBody(fields["body"], fields["isBase64Encoded"])
	if err != nil {
		return err
	}
	return writeResponse(w, status, header, body)
}

// parseStatusCode validates a statusCode value: an integral JSON number
// in 100..599.
func parseStatusCode(raw json.RawMessage) (int, error) {
	var f float64
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) || json.Unmarshal(raw, &f) != nil {
		return 0, fmt.Errorf("%w: statusCode %s is not a number", ErrInvalidResult, raw)
	}
	// 1xx are interim answers net/http sends on its own terms: a function
	// cannot end a request with one.
	if f != math.Trunc(f) || f < 200 || f > 599 {
		return 0, fmt.Errorf("%w: statusCode %s out of range 200-599", ErrInvalidResult, raw)
	}
	return int(f), nil
}

// structuredBody returns the bytes of a structured result's body field.
// A string body is used as is (base64-decoded when isBase64Encoded is
// true); a missing or null body is empty; any other JSON value is sent as
// its JSON text.
func structuredBody(raw, rawB64 json.RawMessage) ([]byte, error) {
	if len(raw) == 0 || isJSONNull(raw) {
		return nil, nil
	}
	if raw[0] != '"' {
		return raw, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%w: body: %v", ErrInvalidResult, err)
	}
	var b64 bool
	if len(rawB64) > 0 && !isJSONNull(rawB64) {
		if err := json.Unmarshal(rawB64, &b64); err != nil {
			return nil, fmt.Errorf("%w: isBase64Encoded must be a boolean", ErrInvalidResult)
		}
	}
	if !b64 {
		return []byte(s), nil
	}
	body, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: body is not valid base64: %v", ErrInvalidResult, err)
	}
	return body, nil
}

// headerText returns the header value for a JSON value: strings as is,
// numbers and booleans as their JSON text. Null, objects and arrays have
// no header value.
func headerText(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	case 't', 'f', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return string(raw), true
	}
	return "", false
}

// setHeader sets (or, with add, adds) a header from the function, skipping
// it when the name or value could corrupt the response, or when it is a
// framing header that WriteResult computes itself.
func setHeader(h http.Header, name, value string, add bool) {
	if !validHeaderName(name) || !validHeaderValue(value) {
		return
	}
	key := http.CanonicalHeaderKey(name)
	switch key {
	case "Content-Length", "Transfer-Encoding":
		return
	}
	if add {
		h[key] = append(h[key], value)
	} else {
		h[key] = []string{value}
	}
}

// validHeaderName reports whether name is a non-empty HTTP token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// validHeaderValue reports whether value has no control characters other
// than horizontal tab (in particular no CR or LF).
func validHeaderValue(value string) bool {
	for i := 0; i < len(value); i++ {
		c := value[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// writeResponse copies header into w, adds Content-Type (when missing)
// and Content-Length, and writes the status and body.
func writeResponse(w http.ResponseWriter, status int, header http.Header, body []byte) error {
	dst := w.Header()
	for k, vs := range header {
		dst[k] = vs
	}
	if !bodyAllowed(status) {
		dst.Del("Content-Length")
		w.WriteHeader(status)
		return nil
	}
	if len(dst["Content-Type"]) == 0 {
		dst["Content-Type"] = []string{defaultContentType}
	}
	dst["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	if len(body) == 0 {
		return nil
	}
	_, err := w.Write(body)
	return err
}

// bodyAllowed reports whether a response with this status may have a
// body (RFC 9110: not 1xx, 204 or 304).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

func isJSONNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}
