// Package gateway serves HTTP triggers: /fn/<name> and /fn/<name>/<path...>.
//
// A request becomes the Lambda function URL event (payload format 2.0, see
// event.go), is invoked through the dispatcher with the function's timeout,
// and the function's result becomes the HTTP response as a function URL
// makes it (response.go). The function sees the path without the
// /fn/<name> prefix, as a function URL has none.
//
// Status codes: a function error 502 with the error JSON; a timeout 504; a
// crashed instance 502; a full queue or a wait past the queue bound 429; an
// unknown function 404; a body over the limit 413 (see package apierror).
//
// The warm path here costs one map lookup to resolve the function, one
// read of the body, one JSON encoding of the event: no store round trip.
package gateway
