// A function written for AWS Lambda's provided runtimes with aws-lambda-go,
// unchanged: the conformance test builds it and runs it on Tern.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

func echo(ctx context.Context, req events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
	if req.RawPath == "/fail" {
		return events.LambdaFunctionURLResponse{}, errors.New("asked to fail")
	}
	lc, _ := lambdacontext.FromContext(ctx)
	deadline, _ := ctx.Deadline()
	body, _ := json.Marshal(map[string]any{
		"rawPath":     req.RawPath,
		"method":      req.RequestContext.HTTP.Method,
		"query":       req.QueryStringParameters,
		"body":        req.Body,
		"requestId":   lc.AwsRequestID,
		"arn":         lc.InvokedFunctionArn,
		"function":    lambdacontext.FunctionName,
		"hasDeadline": !deadline.IsZero(),
		"trace":       os.Getenv("_X_AMZN_TRACE_ID"),
		"custom":      lc.ClientContext.Custom,
	})
	return events.LambdaFunctionURLResponse{StatusCode: 200, Headers: map[string]string{"Content-Type": "application/json"}, Body: string(body)}, nil
}

func main() { lambda.Start(echo) }
