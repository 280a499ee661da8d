package cloudevents

import (
	"fmt"
	"net/http"
)

// Error is why a request does not carry acceptable CloudEvents. Status is
// the HTTP status to answer: 400 for a malformed or invalid event, 413 for a
// body over the limit, 415 for an event format this package does not read.
type Error struct {
	Status  int
	Message string
}

// Error returns the message, which starts with "cloudevent: ".
func (e *Error) Error() string { return e.Message }

// invalid returns a 400 *Error.
func invalid(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Message: "cloudevent: " + fmt.Sprintf(format, args...)}
}
