// A Go function for runtime provided, written with aws-lambda-go as for
// AWS Lambda. Tern runs the executable bootstrap; see README.md.
package main

import (
	"context"
	"encoding/json"
	"runtime"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(ctx context.Context, req events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
	body, err := json.Marshal(map[string]string{"example": "go", "go": runtime.Version(), "path": req.RawPath})
	if err != nil {
		return events.LambdaFunctionURLResponse{}, err
	}
	return events.LambdaFunctionURLResponse{StatusCode: 200, Headers: map[string]string{"Content-Type": "application/json"}, Body: string(body)}, nil
}

func main() { lambda.Start(handle) }
