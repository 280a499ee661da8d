package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ternhq/tern/internal/testserver"
)

// TestLambdaEnvironment checks that every function gets the variables
// Lambda sets, with the server's region, in each runtime Tern bootstraps.
func TestLambdaEnvironment(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.Region = "eu-west-3"
	s := testserver.Start(t, cfg)
	s.Deploy(map[string]string{
		"tern.yaml": "name: envjs\nruntime: nodejs\nhandler: index.handler\nmemory: 384\n",
		"index.js":  `exports.handler = async (e, ctx) => ({env: process.env, arn: ctx.invokedFunctionArn});`,
	})
	s.Deploy(map[string]string{
		"tern.yaml": "name: envpy\nruntime: python\nhandler: app.handler\nmemory: 384\n",
		"app.py":    "import os\ndef handler(event, context):\n    return {'env': dict(os.environ), 'arn': context.invoked_function_arn}\n",
	})
	for _, c := range []struct{ fn, execEnv string }{
		{"envjs", "AWS_Lambda_nodejs"},
		{"envpy", "AWS_Lambda_python3"},
	} {
		t.Run(c.fn, func(t *testing.T) {
			out, err := s.Client.Invoke(context.Background(), c.fn, []byte(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Env map[string]string
				Arn string
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			env := got.Env
			runtimeDir := "/var/runtime/"
			if !s.Server.Jailed() {
				runtimeDir = cfg.DataDir + "/runtime/"
			}
			for k, want := range map[string]string{
				"AWS_LAMBDA_FUNCTION_NAME":        c.fn,
				"AWS_LAMBDA_FUNCTION_VERSION":     "1",
				"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "384",
				"AWS_LAMBDA_LOG_GROUP_NAME":       "/tern/" + c.fn,
				"AWS_REGION":                      "eu-west-3",
				"AWS_DEFAULT_REGION":              "eu-west-3",
				"TZ":                              ":UTC",
			} {
				if env[k] != want {
					t.Errorf("%s = %q, want %q", k, env[k], want)
				}
			}
			for k, prefix := range map[string]string{
				"AWS_LAMBDA_LOG_STREAM_NAME": "",
				"AWS_EXECUTION_ENV":          c.execEnv,
				"LAMBDA_TASK_ROOT":           "/",
				"LAMBDA_RUNTIME_DIR":         runtimeDir,
				"AWS_LAMBDA_RUNTIME_API":     "",
			} {
				if v, ok := env[k]; !ok || v == "" || !strings.HasPrefix(v, prefix) {
					t.Errorf("%s = %q, want a value starting with %q", k, v, prefix)
				}
			}
			if want := "arn:aws:lambda:eu-west-3:000000000000:function:" + c.fn + ":1"; got.Arn != want {
				t.Errorf("invoked function ARN %q, want %q", got.Arn, want)
			}
		})
	}
}
