package cli_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/events"
	"github.com/ternhq/tern/internal/testserver"
)

// TestCLITopicDepthCountsWhatIsNotConsumed publishes 10 messages to a
// topic nobody reads (its depth is all 10, kept for the first reader),
// then lets two functions read it: "picky" keeps failing the 3 messages
// whose body starts with "fail" (so they stay in flight), "eager"
// finishes all. A reader's depth is what it has not finished; the topic's
// is its furthest-behind reader's, 3, whatever the topic still stores.
func TestCLITopicDepthCountsWhatIsNotConsumed(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	t.Setenv("TERN_SERVER", s.URL())
	t.Setenv("TERN_TOKEN", s.Token())
	if code, stdout, errOut := run(t, "", "topic", "create", "work"); code != 0 {
		t.Fatalf("topic create: %d %q %q", code, stdout, errOut)
	}
	for i := range 10 {
		body := fmt.Sprintf("ok-%d", i)
		if i%3 == 1 {
			body = fmt.Sprintf("fail-%d", i)
		}
		if code, stdout, errOut := run(t, "", "publish", "work", body); code != 0 {
			t.Fatalf("publish: %d %q %q", code, stdout, errOut)
		}
	}
	topic := func() events.TopicInfo {
		t.Helper()
		code, stdout, errOut := run(t, "", "events", "--json")
		if code != 0 {
			t.Fatalf("events --json: %d %q", code, errOut)
		}
		var o events.Overview
		if err := json.Unmarshal([]byte(stdout), &o); err != nil || len(o.Topics) != 1 {
			t.Fatalf("events --json: %v %q", err, stdout)
		}
		if !strings.Contains(stdout, `"depth"`) {
			t.Fatalf("events --json has no depth: %q", stdout)
		}
		return o.Topics[0]
	}
	if tp := topic(); tp.Depth != 10 || tp.Messages != 10 {
		t.Errorf("unread topic: depth %d, stored %d; want 10 and 10", tp.Depth, tp.Messages)
	}
	_, stdout, _ := run(t, "", "topic", "ls")
	if !strings.Contains(stdout, "DEPTH") || !hasRow(stdout, "work", "10", "10") {
		t.Errorf("topic ls of an unread topic:\n%s", stdout)
	}

	handler := `exports.handler = async (e) => ({
  batchItemFailures: process.env.PICKY ? e.Records.filter(r => r.body.startsWith("fail")).map(r => ({itemIdentifier: r.messageId})) : [],
});`
	for _, fn := range []struct{ name, env string }{{"picky", "environment: {PICKY: \"1\"}\n"}, {"eager", ""}} {
		dir := testserver.WriteFunction(t, map[string]string{
			"tern.yaml": "name: " + fn.name + "\nruntime: nodejs\nhandler: index.handler\n" + fn.env +
				"triggers:\n  - queue: {topic: work, batch: 10, maxReceives: 1000}\n",
			"index.js": handler,
		})
		if code, stdout, errOut := run(t, "", "deploy", dir); code != 0 {
			t.Fatalf("deploy %s: %d %q %q", fn.name, code, stdout, errOut)
		}
	}
	var tp events.TopicInfo
	testserver.Eventually(t, 30*time.Second, "picky has 3 messages left and eager none", func() bool {
		tp = topic()
		depth := map[string]uint64{}
		for _, c := range tp.Consumers {
			depth[c.Function] = c.Depth
		}
		return len(depth) == 2 && depth["picky"] == 3 && depth["eager"] == 0
	})
	if tp.Depth != 3 {
		t.Errorf("topic depth %d, want 3 (picky's): %+v", tp.Depth, tp)
	}
	for _, c := range tp.Consumers {
		if c.Depth != c.Pending+uint64(c.InFlight) {
			t.Errorf("%s: depth %d is not pending %d + in flight %d", c.Function, c.Depth, c.Pending, c.InFlight)
		}
	}
	if tp.Messages < 3 {
		t.Errorf("the topic stores %d messages, fewer than picky has still to finish", tp.Messages)
	}
	_, stdout, _ = run(t, "", "topic", "ls")
	if !hasRow(stdout, "work", "3", "", "", "picky", "3") || !hasRow(stdout, "work", "3", "", "", "eager", "0", "0", "0") {
		t.Errorf("topic ls:\n%s", stdout)
	}
}

// hasRow tells whether a table (columns at least two spaces apart) has a
// line whose first cells are want ("" matches any cell).
func hasRow(table string, want ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		f := cellSep.Split(strings.TrimSpace(line), -1)
		if len(f) < len(want) {
			continue
		}
		ok := true
		for i, w := range want {
			if w != "" && f[i] != w {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

var cellSep = regexp.MustCompile(`\s{2,}`)
