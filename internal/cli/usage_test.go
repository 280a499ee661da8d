package cli_test

import (
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/testserver"
)

func TestCLIUsage(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.Prices.FreeRequests = 1_000_000
	s := testserver.Start(t, cfg)
	t.Setenv("TERN_SERVER", s.URL())
	t.Setenv("TERN_TOKEN", s.Token())
	s.Deploy(map[string]string{
		"tern.yaml": "name: metered\nruntime: nodejs\nhandler: index.handler\nmemory: 512\n",
		"index.js":  `exports.handler = async (e) => { if (e.fail) throw new Error("no"); return 1; };`,
	})
	for _, data := range []string{`{}`, `{}`, `{"fail":true}`} {
		run(t, "", "invoke", "metered", "--data", data)
	}
	code, out, errOut := run(t, "", "usage", "--format", "json")
	if code != 0 {
		t.Fatalf("usage --format json: %d %q", code, errOut)
	}
	var rep struct {
		Rows []struct {
			Key                        string
			Requests, Errors, BilledMs int64
			MbMs                       int64
		}
		Totals struct {
			Requests     int64
			FreeRequests int64
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if len(rep.Rows) != 1 || rep.Rows[0].Key != "metered" || rep.Rows[0].Requests != 3 || rep.Rows[0].Errors != 1 ||
		rep.Rows[0].MbMs != 512*rep.Rows[0].BilledMs || rep.Totals.FreeRequests != 3 {
		t.Errorf("usage: %s", out)
	}
	code, out, _ = run(t, "", "usage")
	if code != 0 || !strings.Contains(out, "metered") || !strings.Contains(out, "total") || !strings.Contains(out, "free tier: 3 requests") {
		t.Errorf("usage table: %d %q", code, out)
	}
	code, out, _ = run(t, "", "usage", "--by", "hour", "--format", "csv")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "hour,") || !strings.Contains(lines[1], ",3,1,") {
		t.Errorf("usage csv: %d %q", code, out)
	}
	for _, bad := range [][]string{{"usage", "--by", "week"}, {"usage", "--format", "xml"}, {"usage", "extra"}} {
		if code, _, _ := run(t, "", bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
	if code, _, errOut := run(t, "", "usage", "--since", "yesterday"); code != 1 || !strings.Contains(errOut, "since") {
		t.Errorf("bad --since: %d %q", code, errOut)
	}
}

// TestCLIUsageAcrossRollup checks that `tern usage` says the same before
// the raw records are rolled up, after (the server's rollup clock moved
// on), and after a restart that reads the rollups.
func TestCLIUsageAcrossRollup(t *testing.T) {
	var offset atomic.Int64 // added to the rollup clock
	cfg := testserver.Config(t.TempDir())
	cfg.UsageClock = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	cfg.UsageCheckpointEvery = 50 * time.Millisecond
	s := testserver.Start(t, cfg)
	t.Setenv("TERN_SERVER", s.URL())
	t.Setenv("TERN_TOKEN", s.Token())
	s.Deploy(map[string]string{
		"tern.yaml": "name: rolled\nruntime: nodejs\nhandler: index.handler\nmemory: 256\n",
		"index.js":  `exports.handler = async (e) => { if (e.fail) throw new Error("no"); return 1; };`,
	})
	for _, data := range []string{`{}`, `{}`, `{"fail":true}`, `{}`} {
		run(t, "", "invoke", "rolled", "--data", data)
	}
	outputs := func() []string {
		t.Helper()
		var outs []string
		for _, args := range [][]string{{"usage"}, {"usage", "--by", "hour", "--format", "csv"}, {"usage", "--by", "day"}} {
			code, out, errOut := run(t, "", args...)
			if code != 0 {
				t.Fatalf("%v: %d %q", args, code, errOut)
			}
			outs = append(outs, out)
		}
		return outs
	}
	closedThrough := func() time.Time {
		t.Helper()
		_, out, _ := run(t, "", "usage", "--format", "json")
		var rep struct{ ClosedThrough time.Time }
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("json: %v\n%s", err, out)
		}
		return rep.ClosedThrough
	}
	before := outputs()
	if !strings.Contains(before[0], "rolled") || !strings.Contains(before[1], ",4,1,") {
		t.Fatalf("usage before the roll-up:\n%s", strings.Join(before, "\n"))
	}
	if ct := closedThrough(); ct.After(time.Now().Add(-15 * time.Minute)) {
		t.Fatalf("closed through %v already", ct)
	}

	// Two hours on, every minute and hour of these records is rolled up.
	offset.Store(int64(2 * time.Hour))
	testserver.Eventually(t, 30*time.Second, "the roll-up", func() bool {
		return closedThrough().After(time.Now().Add(time.Hour))
	})
	if after := outputs(); !slices.Equal(after, before) {
		t.Fatalf("usage after the roll-up:\n%s\nbefore:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
	s.Stop()
	s = testserver.Start(t, cfg)
	t.Setenv("TERN_SERVER", s.URL())
	t.Setenv("TERN_TOKEN", s.Token())
	if after := outputs(); !slices.Equal(after, before) {
		t.Fatalf("usage after a restart:\n%s\nbefore:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
}
