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

// TestLambdaEnvironmentAsDocumented checks what the README says of the
// Lambda variables beyond TestLambdaEnvironment, in a Node.js, a Python and
// an http function: AWS_LAMBDA_INITIALIZATION_TYPE, LAMBDA_RUNTIME_DIR and
// _HANDLER per runtime, _X_AMZN_TRACE_ID in Tern's bootstraps, no
// AWS_EXECUTION_ENV for http, and TZ and LANG as defaults the function's
// environment may change (while a reserved name is refused).
func TestLambdaEnvironmentAsDocumented(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: docjs\nruntime: nodejs\nhandler: index.handler\nenvironment:\n  TZ: Europe/Paris\n",
		"index.js":  `exports.handler = async () => process.env;`,
	})
	s.Deploy(map[string]string{
		"tern.yaml": "name: docpy\nruntime: python\nhandler: app.handler\nenvironment:\n  LANG: C.UTF-8\n",
		"app.py":    "import os\ndef handler(event, context):\n    return dict(os.environ)\n",
	})
	s.Deploy(map[string]string{
		"tern.yaml": "name: dochttp\nruntime: http\ncommand: node server.js\n",
		"server.js": `require("http").createServer((req, res) => res.end(JSON.stringify(process.env))).listen(process.env.PORT);`,
	})
	envOf := func(fn string) map[string]string {
		t.Helper()
		var out []byte
		if fn == "dochttp" {
			status, _, body := s.Do("GET", "/fn/dochttp/", nil, nil)
			if status != 200 {
				t.Fatalf("GET /fn/dochttp/: %d %s", status, body)
			}
			out = body
		} else {
			var err error
			if out, err = s.Client.Invoke(context.Background(), fn, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
		}
		env := map[string]string{}
		if err := json.Unmarshal(out, &env); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		return env
	}
	taskRoot := "/var/task"
	if !s.Server.Jailed() {
		taskRoot = "" // the code's folder in the data dir
	}
	for _, c := range []struct {
		fn, handler, runtimeDir, tz, lang string
		execEnv, trace                    bool
	}{
		{"docjs", "index.handler", "/nodejs", "Europe/Paris", "en_US.UTF-8", true, true},
		{"docpy", "app.handler", "/python", ":UTC", "C.UTF-8", true, true},
		{"dochttp", "command", "", ":UTC", "en_US.UTF-8", false, false},
	} {
		env := envOf(c.fn)
		for k, want := range map[string]string{
			"AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
			"_HANDLER":                       c.handler,
			"TZ":                             c.tz,
			"LANG":                           c.lang,
		} {
			if env[k] != want {
				t.Errorf("%s: %s = %q, want %q", c.fn, k, env[k], want)
			}
		}
		if taskRoot != "" && env["LAMBDA_TASK_ROOT"] != taskRoot {
			t.Errorf("%s: LAMBDA_TASK_ROOT = %q, want %q", c.fn, env["LAMBDA_TASK_ROOT"], taskRoot)
		}
		// Tern's bootstrap for nodejs and python; the code for http.
		if c.runtimeDir != "" && !strings.HasSuffix(env["LAMBDA_RUNTIME_DIR"], c.runtimeDir) ||
			c.runtimeDir == "" && env["LAMBDA_RUNTIME_DIR"] != env["LAMBDA_TASK_ROOT"] {
			t.Errorf("%s: LAMBDA_RUNTIME_DIR = %q (task root %q)", c.fn, env["LAMBDA_RUNTIME_DIR"], env["LAMBDA_TASK_ROOT"])
		}
		if _, ok := env["AWS_EXECUTION_ENV"]; ok != c.execEnv {
			t.Errorf("%s: AWS_EXECUTION_ENV = %q, present %v, want %v", c.fn, env["AWS_EXECUTION_ENV"], ok, c.execEnv)
		}
		if v := env["_X_AMZN_TRACE_ID"]; (v != "") != c.trace || c.trace && !strings.HasPrefix(v, "Root=1-") {
			t.Errorf("%s: _X_AMZN_TRACE_ID = %q", c.fn, v)
		}
	}
	for _, name := range []string{"_X_AMZN_TRACE_ID", "AWS_LAMBDA_INITIALIZATION_TYPE", "LAMBDA_RUNTIME_DIR"} {
		bad := map[string]string{"index.js": `exports.handler = async () => ({});`,
			"tern.yaml": "name: docbad\nruntime: nodejs\nhandler: index.handler\nenvironment:\n  " + name + ": x\n"}
		if err := deployErr(t, s, bad); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("environment %s: %v, want it refused as reserved", name, err)
		}
	}
}
