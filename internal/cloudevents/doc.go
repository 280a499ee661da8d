// Package cloudevents reads CloudEvents 1.0 from HTTP requests (the HTTP
// protocol binding) and writes them in the JSON event format. It serves
// POST /v1/events, whose events are fanned out to subscribed functions.
//
// Read picks the content mode from the request:
//
//   - Content-Type application/cloudevents-batch+json: batched mode, a JSON
//     array of structured events. An empty array is refused (the binding
//     allows it; an ingress has nothing to do with it).
//   - Content-Type application/cloudevents+json: structured mode, one JSON
//     object. Any ce-* headers are ignored; the body is authoritative.
//   - any other Content-Type (or none) with ce-* headers: binary mode; the
//     ce-* headers are the attributes, the body is the data and Content-Type
//     is datacontenttype.
//   - otherwise a 400 that says how to send an event.
//
// Other application/cloudevents* formats (xml, avro, ...) answer 415.
//
// Decisions a caller should know:
//
//   - Every error is an *Error whose Status is 400, 413 or 415 and whose
//     Message names the attribute ("ce-source" in binary mode, "source" in
//     structured mode, "batch[2]: ..." inside a batch).
//   - A JSON null for an optional attribute or an extension means unset, as
//     the JSON format requires; a null required attribute is "required".
//   - Duplicate member names in an event object are refused; duplicates
//     nested inside data are data and pass through. A ce-* header sent twice
//     is refused.
//   - Optional attributes that are present must be non-empty; ce-
//     datacontenttype is refused in binary mode (Content-Type carries it).
//   - Structured data with a JSON (or absent) datacontenttype is kept as
//     compacted JSON text; binary-mode bodies are kept byte for byte and are
//     not checked against their Content-Type. An event whose datacontenttype
//     is empty but whose data came as JSON should be forwarded in binary
//     mode with Content-Type application/json (the implied type).
//   - Structured data with a non-JSON datacontenttype must be a JSON string
//     (null means no data). "data": null beside data_base64 counts as unset;
//     any other data beside data_base64 is refused.
//   - time is RFC 3339 as written (lowercase t and z allowed, a comma before
//     fractional seconds is not) and is kept as given, not normalised.
//   - data_base64 accepts padded and unpadded standard base64.
//   - Extension numbers decode to int64 when they are integers that fit,
//     float64 otherwise; MarshalJSON writes a float64 with a fraction or
//     exponent so it decodes as float64 again.
//
// Event.MarshalJSON validates first, so it never writes an event Read would
// refuse, and Read(MarshalJSON(e)) == e for any event Read returned in
// structured or batched mode.
package cloudevents
