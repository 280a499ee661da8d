package gateway

import (
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ternhq/tern/internal/jsonstr"
)

// Values that Lambda function URLs put in fields that only matter for
// API Gateway features Tern does not have.
const (
	eventVersion    = "2.0"
	defaultRouteKey = "$default"
	defaultStage    = "$default"
	anonymousAcct   = "anonymous"

	// eventTimeLayout is the layout of requestContext.time,
	// e.g. "12/Mar/2020:19:03:58 +0000".
	eventTimeLayout = "02/Jan/2006:15:04:05 -0700"
)

// HTTPEvent is the Lambda function URL / API Gateway v2 request event
// (payload format version 2.0).
type HTTPEvent struct {
	Version               string            `json:"version"`
	RouteKey              string            `json:"routeKey"`
	RawPath               string            `json:"rawPath"`
	RawQueryString        string            `json:"rawQueryString"`
	Cookies               []string          `json:"cookies,omitempty"`
	Headers               map[string]string `json:"headers"`
	QueryStringParameters map[string]string `json:"queryStringParameters,omitempty"`
	RequestContext        RequestContext    `json:"requestContext"`
	Body                  string            `json:"body,omitempty"`
	IsBase64Encoded       bool              `json:"isBase64Encoded"`
}

// RequestContext is the requestContext object of an HTTPEvent.
type RequestContext struct {
	AccountID    string      `json:"accountId"`
	APIID        string      `json:"apiId"`
	DomainName   string      `json:"domainName"`
	DomainPrefix string      `json:"domainPrefix"`
	HTTP         RequestHTTP `json:"http"`
	RequestID    string      `json:"requestId"`
	RouteKey     string      `json:"routeKey"`
	Stage        string      `json:"stage"`
	Time         string      `json:"time"`
	TimeEpoch    int64       `json:"timeEpoch"`
}

// RequestHTTP is the requestContext.http object of an HTTPEvent.
type RequestHTTP struct {
	Method    string `json:"method"`
	Path      string `json:"path"`
	Protocol  string `json:"protocol"`
	SourceIP  string `json:"sourceIp"`
	UserAgent string `json:"userAgent"`
}

// NewHTTPEvent builds the event for request r.
//
// path is the path the function sees: the request path with the
// "/fn/<name>" prefix already removed ("/" when nothing is left). It is
// used for rawPath and requestContext.http.path. body is the full request
// body, already read and size-limited by the caller.
//
// requestContext.apiId is the function name, taken from the "/fn/<name>"
// prefix of r.URL.Path; a caller that routes differently can overwrite
// RequestContext.APIID on the returned event. The event does not retain r.
func NewHTTPEvent(r *http.Request, path string, body []byte, requestID string, now time.Time) *HTTPEvent {
	if path == "" {
		path = "/"
	}
	host := r.Host
	now = now.UTC()

	e := &HTTPEvent{
		Version:        eventVersion,
		RouteKey:       defaultRouteKey,
		RawPath:        path,
		RawQueryString: r.URL.RawQuery,
		RequestContext: RequestContext{
			AccountID:    anonymousAcct,
			APIID:        functionName(r.URL.Path),
			DomainName:   host,
			DomainPrefix: domainPrefix(host),
			HTTP: RequestHTTP{
				Method:    r.Method,
				Path:      path,
				Protocol:  r.Proto,
				SourceIP:  sourceIP(r.RemoteAddr),
				UserAgent: r.Header.Get("User-Agent"),
			},
			RequestID: requestID,
			RouteKey:  defaultRouteKey,
			Stage:     defaultStage,
			Time:      now.Format(eventTimeLayout),
			TimeEpoch: now.UnixMilli(),
		},
	}

	e.Headers, e.Cookies = eventHeaders(r.Header, host)
	if r.URL.RawQuery != "" {
		e.QueryStringParameters = queryParameters(r.URL.RawQuery)
	}
	e.Body, e.IsBase64Encoded = eventBody(r.Header.Get("Content-Type"), body)
	return e
}

// functionName returns <name> from a "/fn/<name>[/...]" request path, or
// "" when the path has another shape.
func functionName(urlPath string) string {
	rest, ok := strings.CutPrefix(urlPath, "/fn/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// eventHeaders converts h to the event's lower-cased, comma-joined header
// map and pulls the cookies out of the Cookie header(s). host, when not
// empty, is added as the "host" header (net/http moves it out of h).
func eventHeaders(h http.Header, host string) (map[string]string, []string) {
	headers := make(map[string]string, len(h)+1)
	var cookies []string
	for name, values := range h {
		if len(values) == 0 {
			continue
		}
		lower := lowerHeaderName(name)
		if lower == "cookie" {
			cookies = appendCookies(cookies, values)
			continue
		}
		if lower == "host" {
			// r.Host is authoritative; it is set below.
			if host != "" {
				continue
			}
		}
		v := values[0]
		if len(values) > 1 {
			v = strings.Join(values, ",")
		}
		if prev, ok := headers[lower]; ok {
			// Only possible for a non-canonical header map with two
			// spellings of the same name.
			v = prev + "," + v
		}
		headers[lower] = v
	}
	if host != "" {
		headers["host"] = host
	}
	return headers, cookies
}

// appendCookies splits each Cookie header value into its "name=value"
// pairs and appends them to dst.
func appendCookies(dst []string, values []string) []string {
	for _, v := range values {
		for v != "" {
			var part string
			part, v, _ = strings.Cut(v, ";")
			part = strings.TrimSpace(part)
			if part != "" {
				dst = append(dst, part)
			}
		}
	}
	return dst
}

// commonHeaderNames maps frequent canonical header names to their
// lower-case form so the hot path does not allocate for them.
var commonHeaderNames = func() map[string]string {
	names := []string{
		"accept", "accept-charset", "accept-encoding", "accept-language",
		"authorization", "cache-control", "connection", "content-encoding",
		"content-length", "content-type", "cookie", "date", "dnt", "etag",
		"expect", "forwarded", "from", "host", "if-match",
		"if-modified-since", "if-none-match", "if-range",
		"if-unmodified-since", "origin", "pragma", "priority", "range",
		"referer", "sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform",
		"sec-fetch-dest", "sec-fetch-mode", "sec-fetch-site",
		"sec-fetch-user", "te", "traceparent", "tracestate",
		"upgrade", "upgrade-insecure-requests", "user-agent", "via",
		"x-amzn-trace-id", "x-api-key", "x-correlation-id",
		"x-forwarded-for", "x-forwarded-host", "x-forwarded-port",
		"x-forwarded-proto", "x-real-ip", "x-request-id",
		"x-requested-with",
	}
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[http.CanonicalHeaderKey(n)] = n
	}
	return m
}()

func lowerHeaderName(name string) string {
	if l, ok := commonHeaderNames[name]; ok {
		return l
	}
	return strings.ToLower(name)
}

// queryParameters decodes a raw query string into the event's
// queryStringParameters: repeated keys are joined with ",". Malformed
// pairs are skipped. It returns nil when nothing could be decoded.
func queryParameters(raw string) map[string]string {
	values, _ := url.ParseQuery(raw) // keeps every well-formed pair
	if len(values) == 0 {
		return nil
	}
	params := make(map[string]string, len(values))
	for k, vs := range values {
		if len(vs) == 1 {
			params[k] = vs[0]
		} else {
			params[k] = strings.Join(vs, ",")
		}
	}
	return params
}

// sourceIP returns the address part of a RemoteAddr ("1.2.3.4:5678",
// "[::1]:5678").
func sourceIP(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(remoteAddr, "["), "]")
}

// domainPrefix returns the first label of host (without any port). An IP
// literal is returned whole, since its first "label" means nothing.
func domainPrefix(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if net.ParseIP(host) != nil {
		return host
	}
	if i := strings.IndexByte(host, '.'); i >= 0 {
		return host[:i]
	}
	return host
}

// eventBody returns the event body for a request body with the given
// Content-Type: text as is, anything else base64-encoded.
func eventBody(contentType string, body []byte) (string, bool) {
	if len(body) == 0 {
		return "", false
	}
	if isTextContentType(contentType) && utf8.Valid(body) {
		return string(body), false
	}
	return base64.StdEncoding.EncodeToString(body), true
}

// isTextContentType reports whether a body of this content type is passed
// to the function as text (provided it is valid UTF-8). An empty content
// type counts as text.
func isTextContentType(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt == "" {
		return true
	}
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok {
		return false
	}
	switch typ {
	case "text":
		return true
	case "application":
		switch sub {
		case "json", "xml", "javascript", "x-www-form-urlencoded":
			return true
		}
		return strings.HasSuffix(sub, "+json") || strings.HasSuffix(sub, "+xml")
	}
	return false
}

// AppendJSON appends the event's JSON encoding to dst and returns the
// extended buffer. The output is the same as json.Marshal(e) produces.
func (e *HTTPEvent) AppendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, `{"version":`...)
	dst = jsonstr.Append(dst, e.Version)
	dst = append(dst, `,"routeKey":`...)
	dst = jsonstr.Append(dst, e.RouteKey)
	dst = append(dst, `,"rawPath":`...)
	dst = jsonstr.Append(dst, e.RawPath)
	dst = append(dst, `,"rawQueryString":`...)
	dst = jsonstr.Append(dst, e.RawQueryString)
	if len(e.Cookies) > 0 {
		dst = append(dst, `,"cookies":[`...)
		for i, c := range e.Cookies {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonstr.Append(dst, c)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"headers":`...)
	dst = appendJSONStringMap(dst, e.Headers)
	if len(e.QueryStringParameters) > 0 {
		dst = append(dst, `,"queryStringParameters":`...)
		dst = appendJSONStringMap(dst, e.QueryStringParameters)
	}

	rc := &e.RequestContext
	dst = append(dst, `,"requestContext":{"accountId":`...)
	dst = jsonstr.Append(dst, rc.AccountID)
	dst = append(dst, `,"apiId":`...)
	dst = jsonstr.Append(dst, rc.APIID)
	dst = append(dst, `,"domainName":`...)
	dst = jsonstr.Append(dst, rc.DomainName)
	dst = append(dst, `,"domainPrefix":`...)
	dst = jsonstr.Append(dst, rc.DomainPrefix)
	dst = append(dst, `,"http":{"method":`...)
	dst = jsonstr.Append(dst, rc.HTTP.Method)
	dst = append(dst, `,"path":`...)
	dst = jsonstr.Append(dst, rc.HTTP.Path)
	dst = append(dst, `,"protocol":`...)
	dst = jsonstr.Append(dst, rc.HTTP.Protocol)
	dst = append(dst, `,"sourceIp":`...)
	dst = jsonstr.Append(dst, rc.HTTP.SourceIP)
	dst = append(dst, `,"userAgent":`...)
	dst = jsonstr.Append(dst, rc.HTTP.UserAgent)
	dst = append(dst, `},"requestId":`...)
	dst = jsonstr.Append(dst, rc.RequestID)
	dst = append(dst, `,"routeKey":`...)
	dst = jsonstr.Append(dst, rc.RouteKey)
	dst = append(dst, `,"stage":`...)
	dst = jsonstr.Append(dst, rc.Stage)
	dst = append(dst, `,"time":`...)
	dst = jsonstr.Append(dst, rc.Time)
	dst = append(dst, `,"timeEpoch":`...)
	dst = strconv.AppendInt(dst, rc.TimeEpoch, 10)
	dst = append(dst, '}')

	if e.Body != "" {
		dst = append(dst, `,"body":`...)
		dst = jsonstr.Append(dst, e.Body)
	}
	dst = append(dst, `,"isBase64Encoded":`...)
	dst = strconv.AppendBool(dst, e.IsBase64Encoded)
	dst = append(dst, '}')
	return dst, nil
}

// appendJSONStringMap appends m as a JSON object with its keys sorted, or
// null when m is nil.
func appendJSONStringMap(dst []byte, m map[string]string) []byte {
	if m == nil {
		return append(dst, "null"...)
	}
	var stack [48]string
	keys := stack[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonstr.Append(dst, k)
		dst = append(dst, ':')
		dst = jsonstr.Append(dst, m[k])
	}
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string, escaped the way
// encoding/json escapes it by default (HTML-safe, invalid UTF-8 replaced
// by U+FFFD, U+2028 and U+2029 escaped).
