// The conformance protocol (see ../README.md) as an aws-lambda-go function.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

type echo struct {
	Method      string   `json:"method"`
	Path        string   `json:"path"`
	RawQuery    string   `json:"rawQuery"`
	Query       []string `json:"query"`
	Multi       []string `json:"multi"`
	Single      string   `json:"single"`
	ContentType string   `json:"contentType"`
	Cookies     []string `json:"cookies"`
	BodyLen     int      `json:"bodyLen"`
	SHA256      string   `json:"sha256"`
	Base64      bool     `json:"base64"`
}

func handle(ctx context.Context, req events.LambdaFunctionURLRequest) (any, error) {
	switch req.RawPath {
	case "/echo":
		body := []byte(req.Body)
		if req.IsBase64Encoded {
			var err error
			if body, err = base64.StdEncoding.DecodeString(req.Body); err != nil {
				return nil, err
			}
		}
		sum := sha256.Sum256(body)
		e := echo{
			Method:      req.RequestContext.HTTP.Method,
			Path:        req.RawPath,
			RawQuery:    req.RawQueryString,
			Query:       []string{},
			Multi:       []string{},
			Single:      req.Headers["x-single"],
			ContentType: req.Headers["content-type"],
			Cookies:     req.Cookies,
			BodyLen:     len(body),
			SHA256:      hex.EncodeToString(sum[:]),
			Base64:      req.IsBase64Encoded,
		}
		if e.Cookies == nil {
			e.Cookies = []string{}
		}
		if v, ok := req.QueryStringParameters["a"]; ok {
			e.Query = append(e.Query, v)
		}
		if v, ok := req.Headers["x-multi"]; ok {
			e.Multi = append(e.Multi, v)
		}
		b, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		return events.LambdaFunctionURLResponse{StatusCode: 200, Headers: map[string]string{"Content-Type": "application/json"}, Body: string(b)}, nil
	case "/binary":
		b := make([]byte, 256)
		for i := range b {
			b[i] = byte(i)
		}
		return events.LambdaFunctionURLResponse{StatusCode: 200, Headers: map[string]string{"Content-Type": "application/octet-stream"},
			Body: base64.StdEncoding.EncodeToString(b), IsBase64Encoded: true}, nil
	case "/cookies":
		return events.LambdaFunctionURLResponse{StatusCode: 200, Cookies: []string{"c1=v1; Path=/", "c2=v2; HttpOnly"}, Body: "{}"}, nil
	case "/text":
		return events.LambdaFunctionURLResponse{StatusCode: 200, Headers: map[string]string{"Content-Type": "text/plain"}, Body: "plain text, not JSON"}, nil
	case "/status-only":
		return map[string]any{"statusCode": 204}, nil
	case "/plain":
		return "just a string", nil
	}
	return events.LambdaFunctionURLResponse{StatusCode: 404, Body: "no such path"}, nil
}

func main() { lambda.Start(handle) }
