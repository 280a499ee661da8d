package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ternhq/tern/internal/archive"
	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/events"
	"github.com/ternhq/tern/internal/testserver"
)

// recorderJS records every event it gets with the collector at
// $RECORD_URL as one JSON line (with when it started and ended, after
// sleeping $SLEEP_MS) and fails (throws) while the recorder is set failing
// or for its first $FAIL_TIMES runs (both read from $STATE_URL once the
// line is recorded); queue records whose body starts with "fail" are
// reported as batch item failures.
const recorderJS = testserver.RecordJS + `
const state = () => new Promise((resolve, reject) => {
  require("http").get(process.env.STATE_URL, (res) => {
    let b = "";
    res.setEncoding("utf8");
    res.on("data", (d) => { b += d; });
    res.on("end", () => { try { resolve(JSON.parse(b)); } catch (e) { reject(e); } });
  }).on("error", reject);
});
exports.handler = async (event, context) => {
  const start = Date.now();
  if (process.env.SLEEP_MS) await new Promise(r => setTimeout(r, +process.env.SLEEP_MS));
  await record(JSON.stringify({rid: context.awsRequestId, start, end: Date.now(), event}));
  const {failing, runs} = await state();
  if (failing || runs <= +(process.env.FAIL_TIMES || 0)) {
    const e = new Error("failing on purpose"); e.name = "PurposeError"; throw e;
  }
  if (event.Records) {
    const failures = event.Records.filter(r => r.body.startsWith("fail")).map(r => ({itemIdentifier: r.messageId}));
    return {batchItemFailures: failures};
  }
  return {ok: true};
};`

type recorded struct {
	RID        string          `json:"rid"`
	Start, End int64           // unix ms
	Event      json.RawMessage `json:"event"`
}

// recorder is where a recorder function records its runs (a collector) and
// what it asks whether to fail (a loopback state server answering
// {"failing": bool, "runs": lines recorded so far}).
type recorder struct {
	*testserver.Collector
	stateURL string
	failing  atomic.Bool
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	r := &recorder{Collector: testserver.NewCollector(t)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"failing": r.failing.Load(), "runs": len(r.Lines())})
	}))
	t.Cleanup(srv.Close)
	r.stateURL = srv.URL
	return r
}

// readRecords returns what a recorder function recorded so far.
func readRecords(t *testing.T, rec *recorder) []recorded {
	t.Helper()
	var out []recorded
	for _, line := range rec.Lines() {
		var r recorded
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// deployRecorder deploys a recorder function with extra manifest lines
// (lines indented by two spaces first add environment variables) and
// returns where it records.
func deployRecorder(t *testing.T, s *testserver.Server, name, extra string) *recorder {
	t.Helper()
	rec := newRecorder(t)
	m := fmt.Sprintf("name: %s\nruntime: nodejs\nhandler: index.handler\ntimeout: 5s\nenvironment:\n  RECORD_URL: %s\n  STATE_URL: %s\n%s",
		name, rec.URL, rec.stateURL, extra)
	s.Deploy(map[string]string{"tern.yaml": m, "index.js": recorderJS})
	return rec
}

func setFailing(t *testing.T, rec *recorder, on bool) {
	t.Helper()
	rec.failing.Store(on)
}

func TestAsyncInvocation(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	out := deployRecorder(t, s, "rec", "")
	ctx := context.Background()

	var ids []string
	for i := range 5 {
		acc, err := s.Client.InvokeAsync(ctx, "rec", []byte(fmt.Sprintf(`{"n":%d}`, i)), "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, acc.RequestID)
	}
	testserver.Eventually(t, 10*time.Second, "five async events run", func() bool { return len(readRecords(t, out)) == 5 })
	seen := map[string]bool{}
	for _, r := range readRecords(t, out) {
		seen[r.RID] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("request %s did not run with its id (ran: %v)", id, seen)
		}
	}

	// The raw API: 202 and a request id, Lambda's header accepted too.
	status, h, body := s.Do("POST", "/v1/functions/rec/invoke", strings.NewReader(`{"raw":true}`),
		map[string]string{"Authorization": "Bearer " + s.Token(), "X-Amz-Invocation-Type": "Event"})
	if status != http.StatusAccepted || h.Get("X-Tern-Request-Id") == "" {
		t.Fatalf("async invoke: %d %s", status, body)
	}

	// An idempotency key stores the event once and answers the same id.
	a1, err := s.Client.InvokeAsync(ctx, "rec", []byte(`{"key":1}`), "order-17")
	if err != nil {
		t.Fatal(err)
	}
	a2, err := s.Client.InvokeAsync(ctx, "rec", []byte(`{"key":1}`), "order-17")
	if err != nil {
		t.Fatal(err)
	}
	if a1.RequestID != a2.RequestID || a1.Duplicate || !a2.Duplicate {
		t.Errorf("idempotent resubmission: first %+v, second %+v", a1, a2)
	}
	testserver.Eventually(t, 10*time.Second, "the keyed event runs", func() bool { return len(readRecords(t, out)) >= 7 })
	time.Sleep(500 * time.Millisecond)
	if n := len(readRecords(t, out)); n != 7 {
		t.Errorf("%d runs, want 7 (5 + raw + one keyed)", n)
	}

	// Bad input changes nothing.
	for _, tc := range []struct {
		name, fn, body string
		header         map[string]string
		status         int
	}{
		{"unknown function", "nope", `{}`, nil, 404},
		{"not JSON", "rec", `{`, nil, 400},
		{"too large", "rec", `{"x":"` + strings.Repeat("a", 1<<20) + `"}`, nil, 413},
		{"bad type", "rec", `{}`, map[string]string{"X-Tern-Invocation-Type": "Later"}, 400},
	} {
		h := map[string]string{"Authorization": "Bearer " + s.Token(), "X-Tern-Invocation-Type": "Event"}
		for k, v := range tc.header {
			h[k] = v
		}
		status, _, body := s.Do("POST", "/v1/functions/"+tc.fn+"/invoke", strings.NewReader(tc.body), h)
		if status != tc.status {
			t.Errorf("%s: status %d (%s), want %d", tc.name, status, body, tc.status)
		}
	}
}

func TestAsyncRetriesDeadLetterAndReplay(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	ctx := context.Background()
	if _, err := s.Client.CreateTopic(ctx, events.TopicConfig{Name: "failures"}); err != nil {
		t.Fatal(err)
	}
	watchOut := deployRecorder(t, s, "watch", "triggers:\n  - queue: {topic: failures, batch: 1}\n")
	out := deployRecorder(t, s, "flaky", "async:\n  retries: 2\n  backoff: 1s\n  onFailure: {topic: failures}\n")
	setFailing(t, out, true)

	acc, err := s.Client.InvokeAsync(ctx, "flaky", []byte(`{"order":42}`), "")
	if err != nil {
		t.Fatal(err)
	}
	// Three attempts (1 + 2 retries, 1 s then 2 s apart), then a dead letter.
	var letters []events.DeadLetter
	testserver.Eventually(t, 20*time.Second, "the event is dead-lettered", func() bool {
		letters, err = s.Client.DeadLetters(ctx, "flaky", 10)
		return err == nil && len(letters) == 1
	})
	runs := readRecords(t, out)
	if len(runs) != 3 {
		t.Fatalf("%d attempts, want 3", len(runs))
	}
	for _, r := range runs {
		if r.RID != acc.RequestID {
			t.Errorf("attempt ran as %s, want the event's request id %s", r.RID, acc.RequestID)
		}
	}
	l := letters[0]
	if l.Kind != "async" || l.Attempts != 3 || l.ErrorType != "PurposeError" || !strings.Contains(l.Error, "failing on purpose") ||
		l.RequestID != acc.RequestID || string(l.Payload) != `{"order":42}` {
		t.Errorf("dead letter: %+v", l)
	}
	// The onFailure destination got Lambda's invocation record.
	testserver.Eventually(t, 10*time.Second, "the failure destination receives a record", func() bool { return len(readRecords(t, watchOut)) >= 1 })
	var batch struct {
		Records []struct{ Body string } `json:"Records"`
	}
	if err := json.Unmarshal(readRecords(t, watchOut)[0].Event, &batch); err != nil || len(batch.Records) != 1 {
		t.Fatalf("destination batch: %v", err)
	}
	var rec struct {
		RequestContext struct {
			RequestID, Condition   string
			ApproximateInvokeCount int
		}
		RequestPayload json.RawMessage
	}
	if err := json.Unmarshal([]byte(batch.Records[0].Body), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.RequestContext.Condition != "RetriesExhausted" || rec.RequestContext.RequestID != acc.RequestID ||
		rec.RequestContext.ApproximateInvokeCount != 3 || string(rec.RequestPayload) != `{"order":42}` {
		t.Errorf("destination record: %s", batch.Records[0].Body)
	}

	// Replayed while still failing: three more attempts and a new letter
	// (a replayed event gets retries of its own).
	if sent, err := s.Client.Replay(ctx, "flaky", nil); err != nil || len(sent) != 1 {
		t.Fatalf("replay: %v %v", sent, err)
	}
	testserver.Eventually(t, 20*time.Second, "the replayed event is dead-lettered again", func() bool {
		letters, err = s.Client.DeadLetters(ctx, "flaky", 10)
		return err == nil && len(letters) == 1 && len(readRecords(t, out)) == 6
	})

	// Fixed, then replayed: it runs once more and leaves the dead letters.
	setFailing(t, out, false)
	sent, err := s.Client.Replay(ctx, "flaky", nil)
	if err != nil || len(sent) != 1 {
		t.Fatalf("replay: %v %v", sent, err)
	}
	testserver.Eventually(t, 10*time.Second, "the replayed event runs", func() bool { return len(readRecords(t, out)) == 7 })
	if letters, err := s.Client.DeadLetters(ctx, "flaky", 10); err != nil || len(letters) != 0 {
		t.Errorf("dead letters after replay: %v %v", letters, err)
	}
	if _, err := s.Client.Replay(ctx, "flaky", []uint64{999999}); !isStatus(err, 404) {
		t.Errorf("replaying an unknown letter: %v", err)
	}
}

func isStatus(err error, status int) bool {
	e, ok := err.(*client.Error)
	return ok && e.Status == status
}

func TestQueueTrigger(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	ctx := context.Background()

	// A trigger on a topic that does not exist is refused.
	bad := map[string]string{"index.js": recorderJS, "tern.yaml": "name: q\nruntime: nodejs\nhandler: index.handler\ntriggers:\n  - queue: {topic: orders}\n"}
	if err := deployErr(t, s, bad); err == nil || !strings.Contains(err.Error(), `no topic named "orders"`) {
		t.Fatalf("deploy with an unknown topic: %v", err)
	}

	if _, err := s.Client.CreateTopic(ctx, events.TopicConfig{Name: "orders"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.CreateTopic(ctx, events.TopicConfig{Name: "orders"}); !isStatus(err, 409) {
		t.Errorf("creating a topic twice: %v", err)
	}
	// Messages sent before the function exists wait for it.
	for i := range 5 {
		if _, err := s.Client.Publish(ctx, "orders", []byte(fmt.Sprintf("early-%d", i)), map[string]string{"Kind": "early"}); err != nil {
			t.Fatal(err)
		}
	}
	out := deployRecorder(t, s, "q", "triggers:\n  - queue: {topic: orders, batch: 10, window: 300ms, maxReceives: 2}\n")
	for i := range 20 {
		body := fmt.Sprintf("ok-%d", i)
		if i%10 == 3 {
			body = fmt.Sprintf("fail-%d", i)
		}
		if _, err := s.Client.Publish(ctx, "orders", []byte(body), nil); err != nil {
			t.Fatal(err)
		}
	}
	// 25 messages: 23 succeed once; 2 fail twice (maxReceives 2) and are
	// dead-lettered.
	testserver.Eventually(t, 20*time.Second, "failing messages are dead-lettered", func() bool {
		l, err := s.Client.DeadLetters(ctx, "q", 10)
		return err == nil && len(l) == 2
	})
	bodies := map[string]int{}
	maxBatch := 0
	for _, r := range readRecords(t, out) {
		var ev struct {
			Records []struct {
				MessageID, Body, EventSourceARN string
				Attributes                      map[string]string
				MessageAttributes               map[string]struct{ StringValue string }
			}
		}
		if err := json.Unmarshal(r.Event, &ev); err != nil {
			t.Fatal(err)
		}
		maxBatch = max(maxBatch, len(ev.Records))
		for _, rec := range ev.Records {
			bodies[rec.Body]++
			if rec.EventSourceARN != "tern:topic:orders" || rec.MessageID == "" || rec.Attributes["ApproximateReceiveCount"] == "" {
				t.Errorf("record: %+v", rec)
			}
			if strings.HasPrefix(rec.Body, "early") && rec.MessageAttributes["Kind"].StringValue != "early" {
				t.Errorf("attributes lost: %+v", rec.MessageAttributes)
			}
		}
	}
	if len(bodies) != 25 {
		t.Errorf("%d distinct messages delivered, want 25: %v", len(bodies), bodies)
	}
	for b, n := range bodies {
		want := 1
		if strings.HasPrefix(b, "fail") {
			want = 2
		}
		if n != want {
			t.Errorf("%s delivered %d times, want %d", b, n, want)
		}
	}
	if maxBatch < 2 {
		t.Errorf("largest batch %d: messages were not batched", maxBatch)
	}
	letters, _ := s.Client.DeadLetters(ctx, "q", 10)
	for _, l := range letters {
		if l.Kind != "queue" || l.Topic != "orders" || l.Attempts != 2 || !strings.HasPrefix(string(l.Payload), "fail") {
			t.Errorf("dead letter: %+v", l)
		}
	}
	// The topic cannot go while a function reads it; unknown topics are 404.
	if err := s.Client.DeleteTopic(ctx, "orders"); !isStatus(err, 409) {
		t.Errorf("deleting a topic in use: %v", err)
	}
	if _, err := s.Client.Publish(ctx, "nope", []byte("x"), nil); !isStatus(err, 404) {
		t.Errorf("publishing to an unknown topic: %v", err)
	}
	ov, err := s.Client.Events(ctx)
	if err != nil || len(ov.Topics) != 1 || len(ov.Topics[0].Consumers) != 1 || ov.Topics[0].Consumers[0].Function != "q" {
		t.Errorf("overview: %+v %v", ov, err)
	}
}

// deployErr deploys files and returns the error, without failing.
func deployErr(t *testing.T, s *testserver.Server, files map[string]string) error {
	t.Helper()
	var buf bytes.Buffer
	if _, err := archive.Build(testserver.WriteFunction(t, files), &buf); err != nil {
		t.Fatal(err)
	}
	_, err := s.Client.Deploy(context.Background(), &buf)
	return err
}

func TestScheduleFires(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	out := deployRecorder(t, s, "tick", "triggers:\n  - schedule: rate(1 second)\n")
	fixed := deployRecorder(t, s, "fixed", "triggers:\n  - schedule: rate(1 second)\n    payload: {job: cleanup, keep: [1, 2]}\n")
	testserver.Eventually(t, 10*time.Second, "three ticks", func() bool { return len(readRecords(t, out)) >= 3 })
	testserver.Eventually(t, 10*time.Second, "a tick with a fixed payload", func() bool { return len(readRecords(t, fixed)) >= 1 })
	if got := string(readRecords(t, fixed)[0].Event); got != `{"job":"cleanup","keep":[1,2]}` {
		t.Errorf("fixed payload: %s", got)
	}
	times := map[string]bool{}
	for _, r := range readRecords(t, out) {
		var ev struct {
			DetailType string `json:"detail-type"`
			Time       string
			Resources  []string
		}
		if err := json.Unmarshal(r.Event, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.DetailType != "Scheduled Event" || len(ev.Resources) != 1 {
			t.Errorf("event: %s", r.Event)
		}
		if times[ev.Time] {
			t.Errorf("tick %s fired twice", ev.Time)
		}
		times[ev.Time] = true
	}
	ov, err := s.Client.Events(context.Background())
	if err != nil || len(ov.Schedules) != 2 || ov.Schedules[0].Next.IsZero() {
		t.Errorf("overview: %+v %v", ov, err)
	}
	// A wrong expression is refused at deploy.
	for _, expr := range []string{"rate(0 minutes)", "cron(0 12 * * * *)", "61 * * * *"} {
		files := map[string]string{"index.js": recorderJS, "tern.yaml": "name: bad\nruntime: nodejs\nhandler: index.handler\ntriggers:\n  - schedule: \"" + expr + "\"\n"}
		if err := deployErr(t, s, files); !isStatus(err, 400) {
			t.Errorf("schedule %q: %v", expr, err)
		}
	}
}

func TestCloudEvents(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	a := deployRecorder(t, s, "a", "triggers:\n  - cloudevent: {type: com.example.created}\n")
	b := deployRecorder(t, s, "b", "triggers:\n  - cloudevent: {type: com.example.created, source: /orders}\n")
	c := deployRecorder(t, s, "c", "triggers:\n  - cloudevent: {source: /other}\n")
	ctx := context.Background()

	ev := `{"specversion":"1.0","id":"e-1","source":"/orders","type":"com.example.created","datacontenttype":"application/json","data":{"n":1}}`
	ds, err := s.Client.SendCloudEvent(ctx, []byte(ev))
	if err != nil || len(ds) != 1 || strings.Join(ds[0].Functions, ",") != "a,b" {
		t.Fatalf("deliveries: %+v %v", ds, err)
	}
	// Binary mode, the same id and source: a duplicate, not run again.
	status, _, body := s.Do("POST", "/v1/events", strings.NewReader(`{"n":1}`), map[string]string{
		"Authorization": "Bearer " + s.Token(), "Content-Type": "application/json",
		"Ce-Specversion": "1.0", "Ce-Id": "e-1", "Ce-Source": "/orders", "Ce-Type": "com.example.created"})
	if status != http.StatusAccepted || !strings.Contains(string(body), `"duplicate":["a","b"]`) {
		t.Errorf("binary duplicate: %d %s", status, body)
	}
	testserver.Eventually(t, 10*time.Second, "a and b run", func() bool {
		return len(readRecords(t, a)) == 1 && len(readRecords(t, b)) == 1
	})
	var got struct {
		SpecVersion string `json:"specversion"`
		ID, Type    string
		Data        struct{ N int }
	}
	if err := json.Unmarshal(readRecords(t, b)[0].Event, &got); err != nil || got.ID != "e-1" || got.Data.N != 1 {
		t.Errorf("event as delivered: %s", readRecords(t, b)[0].Event)
	}
	time.Sleep(300 * time.Millisecond)
	if len(readRecords(t, c)) != 0 || len(readRecords(t, a)) != 1 {
		t.Errorf("c ran %d times (want 0), a %d (want 1)", len(readRecords(t, c)), len(readRecords(t, a)))
	}
	// Malformed events are refused.
	for _, bad := range []string{`{"specversion":"0.3","id":"x","source":"/s","type":"t"}`, `{"id":"x"}`, `[`} {
		status, _, body := s.Do("POST", "/v1/events", strings.NewReader(bad), map[string]string{
			"Authorization": "Bearer " + s.Token(), "Content-Type": "application/cloudevents+json"})
		if status != 400 {
			t.Errorf("%s: %d %s", bad, status, body)
		}
	}
}

func TestAsyncRetryThenSuccess(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	ctx := context.Background()
	audit := deployRecorder(t, s, "audit", "")
	out := deployRecorder(t, s, "twice", "  FAIL_TIMES: 2\nasync:\n  retries: 2\n  backoff: 1s\n  onSuccess: {function: audit}\n")
	acc, err := s.Client.InvokeAsync(ctx, "twice", []byte(`{"job":1}`), "")
	if err != nil {
		t.Fatal(err)
	}
	// Fails twice (after 1 s, then 2 s), succeeds the third time.
	testserver.Eventually(t, 15*time.Second, "the success record reaches the destination", func() bool { return len(readRecords(t, audit)) == 1 })
	runs := readRecords(t, out)
	if len(runs) != 3 {
		t.Fatalf("%d runs, want 3", len(runs))
	}
	if gap := runs[2].Start - runs[1].End; gap < 1500 {
		t.Errorf("second retry came %d ms after the first, want about 2 s (doubling back-off)", gap)
	}
	var rec struct {
		RequestContext struct {
			RequestID, Condition   string
			ApproximateInvokeCount int
		}
		ResponseContext struct{ ExecutedVersion string }
		ResponsePayload struct{ OK bool }
	}
	if err := json.Unmarshal(readRecords(t, audit)[0].Event, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.RequestContext.Condition != "Success" || rec.RequestContext.RequestID != acc.RequestID ||
		rec.RequestContext.ApproximateInvokeCount != 3 || !rec.ResponsePayload.OK || rec.ResponseContext.ExecutedVersion != "1" {
		t.Errorf("success record: %s", readRecords(t, audit)[0].Event)
	}
	if l, err := s.Client.DeadLetters(ctx, "twice", 10); err != nil || len(l) != 0 {
		t.Errorf("dead letters: %v %v", l, err)
	}
}

// TestAsyncRetryWaitsForTheBackoff checks, with the function's own clock,
// that no retry starts before the failed attempt ended plus the back-off
// (doubled for the second retry).
func TestAsyncRetryWaitsForTheBackoff(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	out := deployRecorder(t, s, "slowretry", "  FAIL_TIMES: 2\nasync:\n  retries: 2\n  backoff: 2s\n")
	if _, err := s.Client.InvokeAsync(context.Background(), "slowretry", []byte(`{}`), ""); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 40*time.Second, "three attempts", func() bool { return len(readRecords(t, out)) == 3 })
	runs := readRecords(t, out)
	for i, want := range []int64{2000, 4000} {
		// End is recorded before the attempt fails, so the gap from the
		// failure Tern saw is smaller still.
		gap := runs[i+1].Start - runs[i].End
		t.Logf("retry %d: %d ms after the failed attempt ended", i+1, gap)
		if gap < want {
			t.Errorf("retry %d started %d ms after attempt %d ended, want at least %d ms (backoff 2s, doubling)", i+1, gap, i+1, want)
		}
	}
}

func TestAsyncMaxEventAge(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	ctx := context.Background()
	out := deployRecorder(t, s, "old", "async:\n  maxAge: 1s\n  backoff: 2s\n")
	setFailing(t, out, true)
	if _, err := s.Client.InvokeAsync(ctx, "old", []byte(`{}`), ""); err != nil {
		t.Fatal(err)
	}
	var letters []events.DeadLetter
	testserver.Eventually(t, 15*time.Second, "the aged event is dead-lettered", func() bool {
		var err error
		letters, err = s.Client.DeadLetters(ctx, "old", 10)
		return err == nil && len(letters) == 1
	})
	if l := letters[0]; l.ErrorType != "EventAgeExceeded" || l.Attempts != 1 {
		t.Errorf("letter: %+v", l)
	}
	if n := len(readRecords(t, out)); n != 1 {
		t.Errorf("%d runs, want 1 (the retry was too old to run)", n)
	}
}

func TestAsyncConcurrencyBound(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	ctx := context.Background()
	out := deployRecorder(t, s, "slow", "  SLEEP_MS: 300\nscale: {max: 10}\nasync:\n  concurrency: 2\n")
	for i := range 8 {
		if _, err := s.Client.InvokeAsync(ctx, "slow", []byte(fmt.Sprintf(`{"i":%d}`, i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	testserver.Eventually(t, 20*time.Second, "eight slow events run", func() bool { return len(readRecords(t, out)) == 8 })
	runs := readRecords(t, out)
	most := 0
	for _, a := range runs {
		n := 0
		for _, b := range runs {
			if b.Start <= a.Start && a.Start < b.End {
				n++
			}
		}
		most = max(most, n)
	}
	if most != 2 {
		t.Errorf("at most %d ran at once, want 2 (async.concurrency)", most)
	}
}

func TestScheduleMissedTicks(t *testing.T) {
	for _, tc := range []struct {
		missed string
		want   int // ticks from the downtime fired after the restart
	}{{"skip", 0}, {"last", 1}} {
		t.Run(tc.missed, func(t *testing.T) {
			t.Parallel()
			cfg := testserver.Config(t.TempDir())
			s := testserver.Start(t, cfg)
			out := deployRecorder(t, s, "tick", "triggers:\n  - schedule: rate(2 seconds)\n    missed: "+tc.missed+"\n")
			testserver.Eventually(t, 10*time.Second, "a tick", func() bool { return len(readRecords(t, out)) >= 1 })
			s.Stop()
			down := time.Now()
			// Restart just after a tick that fell while no server ran, so
			// that no other tick passes while the server starts.
			missed := down.Add(time.Second).Truncate(2 * time.Second).Add(2 * time.Second)
			time.Sleep(time.Until(missed.Add(300 * time.Millisecond)))
			up := time.Now()
			s = testserver.Start(t, cfg)
			testserver.Eventually(t, 10*time.Second, "a tick after the restart", func() bool {
				for _, r := range readRecords(t, out) {
					if tickTime(t, r).After(up) {
						return true
					}
				}
				return false
			})
			s.Stop()
			var during []time.Time
			for _, r := range readRecords(t, out) {
				if tt := tickTime(t, r); tt.After(down) && tt.Before(up) {
					during = append(during, tt)
				}
			}
			if len(during) != tc.want || (tc.want == 1 && !during[0].Equal(missed)) {
				t.Errorf("missed: %s: ticks from the downtime fired: %v, want %d (the last one, %v)", tc.missed, during, tc.want, missed)
			}
		})
	}
}

func tickTime(t *testing.T, r recorded) time.Time {
	t.Helper()
	var ev struct{ Time time.Time }
	if err := json.Unmarshal(r.Event, &ev); err != nil {
		t.Fatal(err)
	}
	return ev.Time
}

func TestPlainNATSPublishReachesQueueTrigger(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.NATSListen = "127.0.0.1:0"
	s := testserver.Start(t, cfg)
	ctx := context.Background()
	if _, err := s.Client.CreateTopic(ctx, events.TopicConfig{Name: "raw"}); err != nil {
		t.Fatal(err)
	}
	out := deployRecorder(t, s, "reader", "triggers:\n  - queue: {topic: raw}\n")
	nc, err := nats.Connect(s.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg := nats.NewMsg("tern.topic.raw")
	msg.Data = []byte("from a NATS client")
	msg.Header.Set("Kind", "raw")
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 10*time.Second, "the message is delivered", func() bool { return len(readRecords(t, out)) == 1 })
	var ev struct {
		Records []struct {
			Body              string
			MessageID         string
			MessageAttributes map[string]struct{ StringValue string }
		}
	}
	if err := json.Unmarshal(readRecords(t, out)[0].Event, &ev); err != nil || len(ev.Records) != 1 {
		t.Fatalf("event: %v", err)
	}
	if r := ev.Records[0]; r.Body != "from a NATS client" || r.MessageAttributes["Kind"].StringValue != "raw" || r.MessageID == "" {
		t.Errorf("record: %+v", r)
	}
}

func TestIdempotencyKeySurvivesRestart(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	s := testserver.Start(t, cfg)
	out := deployRecorder(t, s, "once", "")
	ctx := context.Background()
	first, err := s.Client.InvokeAsync(ctx, "once", []byte(`{}`), "payment-9")
	if err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 10*time.Second, "the event runs", func() bool { return len(readRecords(t, out)) == 1 })
	s.Stop()
	s = testserver.Start(t, cfg)
	again, err := s.Client.InvokeAsync(ctx, "once", []byte(`{}`), "payment-9")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.RequestID != first.RequestID {
		t.Errorf("after a restart: %+v, want a duplicate of %s", again, first.RequestID)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := len(readRecords(t, out)); n != 1 {
		t.Errorf("ran %d times, want once", n)
	}
}

func TestTopicReadersKeepTheirOwnDeadLettersAndTopicsTrim(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.Events.AckWait = time.Second
	cfg.Events.TrimInterval = 100 * time.Millisecond
	cfg.Events.SweepInterval = 200 * time.Millisecond
	s := testserver.Start(t, cfg)
	ctx := context.Background()
	if _, err := s.Client.CreateTopic(ctx, events.TopicConfig{Name: "shared", MaxBytes: 8 << 10}); err != nil {
		t.Fatal(err)
	}
	// The window is longer than the ack wait: messages held for a batch
	// must not be delivered again meanwhile.
	a := deployRecorder(t, s, "a", "triggers:\n  - queue: {topic: shared, maxReceives: 1, batch: 100, window: 2s}\n")
	b := deployRecorder(t, s, "b", "triggers:\n  - queue: {topic: shared, maxReceives: 1}\n")
	if _, err := s.Client.Publish(ctx, "shared", []byte("fail-once"), nil); err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"a", "b"} {
		testserver.Eventually(t, 10*time.Second, fn+" dead-letters the message", func() bool {
			l, err := s.Client.DeadLetters(ctx, fn, 10)
			return err == nil && len(l) == 1
		})
	}
	if n := len(readRecords(t, a)); n != 1 {
		t.Errorf("a got the message %d times, want once", n)
	}
	// 40 messages of 1 KiB through a topic that keeps 8 KiB: it accepts
	// them all because it drops what both readers finished.
	msg := strings.Repeat("x", 1024)
	for i := range 40 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := s.Client.Publish(ctx, "shared", []byte(msg), nil)
			if err == nil {
				break
			}
			if !isStatus(err, 429) || time.Now().After(deadline) {
				t.Fatalf("message %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	testserver.Eventually(t, 20*time.Second, "both readers get all 40", func() bool {
		count := func(out *recorder) int {
			n := 0
			for _, r := range readRecords(t, out) {
				n += strings.Count(string(r.Event), `"body":"xxx`)
			}
			return n
		}
		return count(a) == 40 && count(b) == 40
	})
}
