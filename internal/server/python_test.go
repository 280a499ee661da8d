package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/testserver"
)

func TestPythonFunction(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: py\nruntime: python\nhandler: app.handler\nenvironment:\n  GREETING: hello\n",
		"app.py": `import os, logging
from helper import shout
logger = logging.getLogger()

def handler(event, context):
    if event.get("rawPath") == "/fail":
        raise ValueError("bad value")
    print("printed", context.aws_request_id)
    logger.info("logged")
    return {"statusCode": 200, "headers": {"content-type": "text/plain"},
            "body": shout(os.environ["GREETING"]) + " " + event["rawPath"] + " " + context.function_name}
`,
		"python/helper.py": "def shout(s):\n    return s.upper()\n",
	})
	status, h, body := s.Do("GET", "/fn/py/x", nil, nil)
	if status != 200 || string(body) != "HELLO /x py" {
		t.Fatalf("%d %s", status, body)
	}
	rid := h.Get("X-Tern-Request-Id")
	status, _, body = s.Do("POST", "/v1/functions/py/invoke", strings.NewReader(`{"rawPath":"/fail"}`), map[string]string{"Authorization": "Bearer " + s.Token()})
	var e struct {
		ErrorType, ErrorMessage string
		StackTrace              []string
	}
	if status != 502 || json.Unmarshal(body, &e) != nil || e.ErrorType != "ValueError" || e.ErrorMessage != "bad value" || len(e.StackTrace) == 0 {
		t.Fatalf("function error: %d %s", status, body)
	}
	out, err := s.Client.Invoke(context.Background(), "py", []byte(`{"rawPath":"/direct"}`))
	if err != nil || !strings.Contains(string(out), "HELLO /direct py") {
		t.Fatalf("invoke: %s %v", out, err)
	}
	var lines []string
	testserver.Eventually(t, 5*time.Second, "the python function's log lines", func() bool {
		lines = lines[:0]
		_ = s.Client.Logs(context.Background(), "py", client.LogQuery{RequestID: rid}, func(en *logs.Entry) error {
			lines = append(lines, en.Message)
			return nil
		})
		return len(lines) >= 5
	})
	all := strings.Join(lines, "\n")
	for _, want := range []string{"START RequestId: " + rid, "printed " + rid, "INFO\tlogged", "END RequestId: " + rid, "REPORT RequestId: " + rid} {
		if !strings.Contains(all, want) {
			t.Errorf("logs lack %q:\n%s", want, all)
		}
	}
	// A handler module the package lacks is refused at deploy; a function
	// the module lacks is an init error at the first call.
	zip := testserver.Zip(t, [2]string{"tern.yaml", "name: pybad\nruntime: python\nhandler: missing.handler\n"}, [2]string{"app.py", "x = 1\n"})
	status, _, body = s.Do("POST", "/v1/functions", bytes.NewReader(zip), map[string]string{"Authorization": "Bearer " + s.Token()})
	if status != 400 || !strings.Contains(string(body), "Runtime.ImportModuleError") {
		t.Fatalf("missing module: %d %s", status, body)
	}
	s.Deploy(map[string]string{"tern.yaml": "name: pybad\nruntime: python\nhandler: app.nothere\n", "app.py": "x = 1\n"})
	status, _, body = s.Do("POST", "/v1/functions/pybad/invoke", nil, map[string]string{"Authorization": "Bearer " + s.Token()})
	if status != 502 || !strings.Contains(string(body), "Runtime.HandlerNotFound") {
		t.Fatalf("missing function: %d %s", status, body)
	}
}
