package runtime

import (
	"encoding/json"
	"strings"
)

// errorBody builds the Lambda error JSON for an error Tern itself reports.
func errorBody(errType, msg string) []byte {
	b, _ := json.Marshal(struct {
		ErrorType    string   `json:"errorType"`
		ErrorMessage string   `json:"errorMessage"`
		StackTrace   []string `json:"stackTrace"`
	}{errType, msg, []string{}})
	return b
}

// normalizeError makes the body a runtime posted to /error or /init/error
// into the Lambda error JSON: a well-formed body is kept; anything else is
// wrapped. errType comes from the Lambda-Runtime-Function-Error-Type header
// when the body does not name one.
func normalizeError(body []byte, headerType string) *FunctionError {
	var e struct {
		ErrorType    string          `json:"errorType"`
		ErrorMessage string          `json:"errorMessage"`
		StackTrace   json.RawMessage `json:"stackTrace"`
	}
	if json.Unmarshal(body, &e) == nil && (e.ErrorType != "" || e.ErrorMessage != "") {
		if e.ErrorType == "" {
			e.ErrorType = headerType
		}
		if e.ErrorType == "" {
			e.ErrorType = "Unhandled"
		}
		if len(e.StackTrace) == 0 {
			e.StackTrace = json.RawMessage("[]")
		}
		out, _ := json.Marshal(e)
		return &FunctionError{Type: e.ErrorType, Body: out}
	}
	t := headerType
	if t == "" {
		t = "Unhandled"
	}
	return &FunctionError{Type: t, Body: errorBody(t, strings.TrimSpace(string(body)))}
}
