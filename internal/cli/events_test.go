package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/testserver"
)

func TestCLIEvents(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	t.Setenv("TERN_SERVER", s.URL())
	t.Setenv("TERN_TOKEN", s.Token())
	rec := testserver.NewCollector(t)
	// Fails on events that ask it to, so they end as dead letters.
	dir := testserver.WriteFunction(t, map[string]string{
		"tern.yaml": "name: ev\nruntime: nodejs\nhandler: index.handler\nenvironment:\n  RECORD_URL: " + rec.URL + "\n" +
			"async: {retries: 0}\ntriggers:\n  - queue: {topic: jobs}\n  - schedule: \"0 12 * * *\"\n    timezone: Europe/Paris\n",
		"index.js": testserver.RecordJS + `
exports.handler = async (e) => {
  if (e.fail) throw new Error("asked to fail");
  await record(JSON.stringify(e));
  return {};
};`,
	})
	code, _, errOut := run(t, "", "deploy", dir)
	if code != 1 || !strings.Contains(errOut, `no topic named "jobs"`) {
		t.Fatalf("deploy before the topic exists: %d %q", code, errOut)
	}
	if code, stdout, errOut := run(t, "", "topic", "create", "jobs"); code != 0 || !strings.Contains(stdout, "created topic jobs (subject tern.topic.jobs") {
		t.Fatalf("topic create: %d %q %q", code, stdout, errOut)
	}
	if code, stdout, errOut := run(t, "", "deploy", dir); code != 0 {
		t.Fatalf("deploy: %d %q %q", code, stdout, errOut)
	}
	if code, stdout, _ := run(t, "", "publish", "jobs", "hello", "--attr", "kind=greeting"); code != 0 || !strings.Contains(stdout, "published") {
		t.Fatalf("publish: %d %q", code, stdout)
	}
	if code, stdout, _ := run(t, "", "invoke", "ev", "--async", "--data", `{"n":1}`, "--idempotency-key", "k1"); code != 0 || !strings.HasPrefix(stdout, "queued ") {
		t.Fatalf("invoke --async: %d %q", code, stdout)
	}
	if code, stdout, _ := run(t, "", "invoke", "ev", "--async", "--data", `{"n":1}`, "--idempotency-key", "k1"); code != 0 || !strings.Contains(stdout, "duplicate") {
		t.Fatalf("invoke --async again: %d %q", code, stdout)
	}
	if code, _, _ := run(t, "", "invoke", "ev", "--async", "--data", `{"fail":true}`); code != 0 {
		t.Fatalf("invoke --async failing: %d", code)
	}
	testserver.Eventually(t, 10*time.Second, "the queue message and the async event run", func() bool {
		return len(rec.Lines()) == 2
	})
	var stdout string
	testserver.Eventually(t, 10*time.Second, "a dead letter", func() bool {
		code, stdout, _ = run(t, "", "dlq", "ev")
		return code == 0 && strings.Contains(stdout, "asked to fail")
	})
	if !strings.Contains(stdout, `{"fail":true}`) || !strings.Contains(stdout, "async") {
		t.Errorf("dlq: %q", stdout)
	}
	code, stdout, _ = run(t, "", "events")
	if code != 0 || !strings.Contains(stdout, "0 12 * * *") || !strings.Contains(stdout, "Europe/Paris") || !strings.Contains(stdout, "jobs") {
		t.Errorf("events: %d %q", code, stdout)
	}
	if code, stdout, _ := run(t, "", "topic", "ls"); code != 0 || !strings.Contains(stdout, "jobs") || !strings.Contains(stdout, "ev") {
		t.Errorf("topic ls: %d %q", code, stdout)
	}
	if code, _, errOut := run(t, "", "topic", "rm", "jobs"); code != 1 || !strings.Contains(errOut, "used by ev") {
		t.Errorf("topic rm in use: %d %q", code, errOut)
	}
	if code, stdout, _ := run(t, "", "dlq", "replay", "ev"); code != 0 || !strings.Contains(stdout, "replayed 1") {
		t.Errorf("dlq replay: %d %q", code, stdout)
	}
	for _, bad := range [][]string{{"dlq", "replay"}, {"dlq", "replay", "ev", "x"}, {"publish", "jobs"}, {"publish", "jobs", "x", "--attr", "novalue"}, {"invoke", "ev", "--idempotency-key", "k"}} {
		if code, _, _ := run(t, "", bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}
