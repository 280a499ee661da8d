package cloudevents

import (
	"fmt"
	"maps"
	"math"
	"mime"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// specVersion is the only CloudEvents version this package reads and writes.
const specVersion = "1.0"

// maxNameLen is the longest attribute name accepted. The spec says names
// SHOULD NOT exceed 20 characters; Tern refuses longer ones.
const maxNameLen = 20

// Event is one CloudEvent. Empty strings are unset optional attributes.
type Event struct {
	// SpecVersion is the CloudEvents version; only "1.0" is valid.
	SpecVersion string
	// ID identifies the event within its Source. Required.
	ID string
	// Source is a URI-reference naming the context the event happened in.
	// Required.
	Source string
	// Type is the kind of event, e.g. "com.example.object.deleted".
	// Required.
	Type string
	// Subject is the subject of the event within Source. Optional.
	Subject string
	// Time is when the event happened, an RFC 3339 timestamp kept as given.
	// Optional.
	Time string
	// DataContentType is the media type of Data, kept as given (parameters
	// included). Optional; when empty and Data came from structured JSON,
	// Data is JSON.
	DataContentType string
	// DataSchema is an absolute URI of the schema Data adheres to. Optional.
	DataSchema string
	// Extensions holds every other attribute by name. Values are string,
	// bool, int64 or float64 as decoded from structured JSON; binary mode
	// yields strings only. Nil when there are none.
	Extensions map[string]any
	// Data is the event payload: the HTTP body in binary mode; in structured
	// mode the compacted JSON text of "data" for a JSON (or absent)
	// datacontenttype, the string's bytes for any other datacontenttype, or
	// the decoded bytes of "data_base64". Nil when the event has no data.
	Data []byte
	// DataIsBase64 reports that a structured event carried its data as
	// data_base64 (binary data); MarshalJSON then writes data_base64 again.
	DataIsBase64 bool
}

// contextAttributes are the attributes the spec defines, in the order
// MarshalJSON writes them; any other attribute is an extension.
var contextAttributes = []string{
	"specversion", "id", "source", "type",
	"subject", "time", "datacontenttype", "dataschema",
}

// requiredAttributes are the context attributes every event has.
var requiredAttributes = map[string]bool{"specversion": true, "id": true, "source": true, "type": true}

// attribute returns the field holding a context attribute, or nil for an
// extension.
func (e *Event) attribute(attr string) *string {
	switch attr {
	case "specversion":
		return &e.SpecVersion
	case "id":
		return &e.ID
	case "source":
		return &e.Source
	case "type":
		return &e.Type
	case "subject":
		return &e.Subject
	case "time":
		return &e.Time
	case "datacontenttype":
		return &e.DataContentType
	case "dataschema":
		return &e.DataSchema
	}
	return nil
}

// namer turns an attribute name into the name an error message uses: the
// member name in structured mode, the header name in binary mode.
type namer func(attr string) string

func memberName(attr string) string { return attr }

// Validate reports whether e is a valid CloudEvents 1.0 event: specversion
// "1.0"; id, source and type set; source a URI-reference; dataschema an
// absolute URI; time RFC 3339; datacontenttype a media type; string values
// free of control characters and noncharacters; extension names lowercase
// a-z0-9 of at most 20 characters, with string, bool, integer or finite
// float64 values. The error is an *Error with Status 400.
func (e *Event) Validate() error {
	if err := e.validate(memberName); err != nil {
		return err
	}
	return nil
}

func (e *Event) validate(name namer) *Error {
	switch e.SpecVersion {
	case specVersion:
	case "":
		return invalid("%q is required", name("specversion"))
	default:
		return invalid("%s %q is not supported (want %q)", name("specversion"), e.SpecVersion, specVersion)
	}
	for _, attr := range []string{"id", "source", "type"} {
		if *e.attribute(attr) == "" {
			return invalid("%q is required", name(attr))
		}
	}
	for _, attr := range contextAttributes {
		if problem := stringProblem(*e.attribute(attr)); problem != "" {
			return invalid("%q %s", name(attr), problem)
		}
	}
	if !isURIReference(e.Source) {
		return invalid("%q %q is not a valid URI-reference", name("source"), e.Source)
	}
	if e.DataSchema != "" && !isAbsoluteURI(e.DataSchema) {
		return invalid("%q %q is not an absolute URI", name("dataschema"), e.DataSchema)
	}
	if e.Time != "" && !isRFC3339(e.Time) {
		return invalid("%q %q is not an RFC 3339 timestamp", name("time"), e.Time)
	}
	if e.DataContentType != "" {
		if _, _, err := mime.ParseMediaType(e.DataContentType); err != nil {
			return invalid("%q %q is not a valid media type", name("datacontenttype"), e.DataContentType)
		}
	}
	// Sorted so that the first problem reported does not depend on map order.
	for _, n := range slices.Sorted(maps.Keys(e.Extensions)) {
		if err := checkExtensionName(n, name); err != nil {
			return err
		}
		if err := checkExtensionValue(n, e.Extensions[n], name); err != nil {
			return err
		}
	}
	return nil
}

// checkName reports whether attr is a well-formed attribute name.
func checkName(attr string, name namer) *Error {
	if attr == "" {
		return invalid("attribute name %q is empty", name(attr))
	}
	for i := 0; i < len(attr); i++ {
		c := attr[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return invalid("attribute name %q is invalid: use only lowercase letters a-z and digits 0-9", name(attr))
		}
	}
	if len(attr) > maxNameLen {
		return invalid("attribute name %q is longer than %d characters", name(attr), maxNameLen)
	}
	return nil
}

// checkExtensionName reports whether attr can name an extension: a
// well-formed name that is neither a context attribute nor data.
func checkExtensionName(attr string, name namer) *Error {
	if err := checkName(attr, name); err != nil {
		return err
	}
	if attr == "data" || slices.Contains(contextAttributes, attr) {
		return invalid("extension %q is reserved: it is not an extension attribute", name(attr))
	}
	return nil
}

// checkExtensionValue reports whether v is a value an extension can hold.
func checkExtensionValue(attr string, v any, name namer) *Error {
	switch v := v.(type) {
	case string:
		if v == "" {
			return invalid("extension %q must not be empty", name(attr))
		}
		if problem := stringProblem(v); problem != "" {
			return invalid("extension %q %s", name(attr), problem)
		}
	case bool, int, int32, int64:
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return invalid("extension %q must be a finite number", name(attr))
		}
	case nil:
		return invalid("extension %q has no value", name(attr))
	default:
		return invalid("extension %q must be a string, number or boolean, got %T", name(attr), v)
	}
	return nil
}

// stringProblem says what makes s an invalid CloudEvents String, or ""
// when it is valid: it must be UTF-8 without control characters
// (U+0000-U+001F, U+007F-U+009F) or noncharacters.
func stringProblem(s string) string {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !isRuneErrorAt(s, i):
			return "is not valid UTF-8"
		case r <= 0x1f || (r >= 0x7f && r <= 0x9f):
			return fmt.Sprintf("contains control character %U", r)
		case (r >= 0xfdd0 && r <= 0xfdef) || r&0xfffe == 0xfffe:
			return fmt.Sprintf("contains noncharacter %U", r)
		}
	}
	return ""
}

// isRuneErrorAt reports whether s holds an encoded U+FFFD at i, as opposed
// to an invalid byte that ranging decoded as U+FFFD.
func isRuneErrorAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 3
}

// isRFC3339 reports whether s is an RFC 3339 date-time. time.Parse also
// takes a comma before fractional seconds, which RFC 3339 does not, and
// refuses the lowercase t and z that RFC 3339 allows.
func isRFC3339(s string) bool {
	if strings.IndexByte(s, ',') >= 0 {
		return false
	}
	_, err := time.Parse(time.RFC3339Nano, strings.ToUpper(s))
	return err == nil
}

// isURIReference reports whether s is an RFC 3986 URI-reference: only the
// characters RFC 3986 allows, well-formed percent escapes, and a structure
// net/url accepts.
func isURIReference(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~:/?#[]@!$&'()*+,;=", c) >= 0:
		default:
			return false
		}
	}
	_, err := url.Parse(s)
	return err == nil
}

// isAbsoluteURI reports whether s is a URI-reference with a scheme.
func isAbsoluteURI(s string) bool {
	if !isURIReference(s) {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme != ""
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}
