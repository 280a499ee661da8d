package server_test

import (
	"context"
	"math"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/metering"
	"github.com/ternhq/tern/internal/store"
	"github.com/ternhq/tern/internal/testserver"
)

// invokeMany runs n invocations of name from 8 clients.
func invokeMany(t *testing.T, c *client.Client, name string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	errs := make(chan error, n)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if _, err := c.Invoke(context.Background(), name, []byte(`{}`)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("invoke: %v", err)
	}
}

// usageRecords reads every usage record in the store.
func usageRecords(t *testing.T, natsURL string) []metering.Record {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, store.UsageStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []metering.Record
	for left := info.NumPending; left > 0; {
		b, err := cons.Fetch(int(min(left, 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range b.Messages() {
			got++
			var invalid int
			out, invalid = metering.ParseMessage(m.Data(), strings.TrimPrefix(m.Subject(), store.UsageSubjectPrefix), out)
			if invalid > 0 {
				t.Fatalf("%d unreadable records in %q", invalid, m.Data())
			}
		}
		if got == 0 {
			t.Fatalf("%d usage messages missing", left)
		}
		left -= uint64(got)
	}
	return out
}

// TestUsageIsExact drives a known load (1,000 invocations of a function
// that sleeps 20 ms with 256 MB, a restart half-way) and checks the
// metered usage against it.
func TestUsageIsExact(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.NATSListen = "127.0.0.1:0"
	s := testserver.Start(t, cfg)
	s.Deploy(map[string]string{
		"tern.yaml": "name: sleepy\nruntime: nodejs\nhandler: index.handler\nmemory: 256\nscale: {max: 8}\n",
		"index.js":  `exports.handler = async () => { await new Promise(r => setTimeout(r, 20)); return {ok: true}; };`,
	})
	ctx := context.Background()
	q := client.UsageQuery{Since: "2h", Function: "sleepy"}

	invokeMany(t, s.Client, "sleepy", 500)
	before, err := s.Client.Usage(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if before.Totals.Requests != 500 {
		t.Fatalf("before the restart: %d requests, want 500", before.Totals.Requests)
	}
	s.Stop()
	s = testserver.Start(t, cfg)
	after, err := s.Client.Usage(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if after.Totals.Row != before.Totals.Row {
		t.Errorf("a restart changed the totals:\nbefore %+v\nafter  %+v", before.Totals.Row, after.Totals.Row)
	}
	invokeMany(t, s.Client, "sleepy", 500)

	rep, err := s.Client.Usage(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	tot := rep.Totals
	if tot.Requests != 1000 || tot.Errors != 0 || tot.Throttles != 0 || tot.ColdStarts < 1 {
		t.Errorf("totals: %+v", tot.Row)
	}
	// Every record was billed by the rounding rule, and the totals are
	// their exact sums.
	recs := usageRecords(t, s.NATSURL())
	var billed, mbms, cpu int64
	n := 0
	for _, r := range recs {
		if r.Function != "sleepy" {
			continue
		}
		n++
		if want := (r.DurationUS + 999) / 1000; r.BilledMS != want || r.BilledMS < 20 {
			t.Errorf("record %s: %d µs billed as %d ms, want %d (and at least 20)", r.RequestID, r.DurationUS, r.BilledMS, want)
		}
		if r.MemoryMB != 256 || r.Outcome != metering.OutcomeSuccess || r.Trigger != metering.TriggerAPI || r.MaxMemoryMB <= 0 {
			t.Errorf("record: %+v", r)
		}
		billed += r.BilledMS
		mbms += r.MBms()
		cpu += r.CPUUS
	}
	if n != 1000 {
		t.Errorf("%d usage records, want 1000", n)
	}
	if tot.BilledMS != billed || tot.MBms != mbms || tot.MBms != 256*tot.BilledMS {
		t.Errorf("billed %d ms / %d MB·ms in the report, %d / %d in the records", tot.BilledMS, tot.MBms, billed, mbms)
	}
	if want := float64(billed) * 256 / 1024 / 1000; math.Abs(tot.GBSeconds-want) > 1e-9 {
		t.Errorf("GB-seconds %v, want %v", tot.GBSeconds, want)
	}
	if billed < 20_000 || billed > 1000*200 {
		t.Errorf("billed %d ms for 1,000 invocations of 20 ms", billed)
	}
	if cpu <= 0 || math.Abs(tot.CPUSeconds-float64(cpu)/1e6) > 1e-9 {
		t.Errorf("CPU %v s in the report, %d µs in the records", tot.CPUSeconds, cpu)
	}
	if p50 := tot.DurationMS.P50; p50 < 19 || p50 > 200 {
		t.Errorf("p50 %v ms", p50)
	}
	if want := 1000.0/1e6*0.20 + tot.GBSeconds*0.0000166667; math.Abs(tot.Cost-want) > 1e-9 {
		t.Errorf("cost %v, want %v", tot.Cost, want)
	}

	// The same numbers as CSV, and on /metrics since this server started.
	csv, err := s.Client.UsageCSV(ctx, q)
	if err != nil || !strings.Contains(string(csv), "sleepy,1000,") {
		t.Errorf("csv: %v\n%s", err, csv)
	}
	status, _, body := s.Do("GET", "/metrics", nil, map[string]string{"Authorization": "Bearer " + s.Token()})
	if status != 200 || !strings.Contains(string(body), `tern_invocations_total{function="sleepy",outcome="success"} 500`) {
		t.Errorf("/metrics: %d\n%s", status, body)
	}
	if status, _, _ := s.Do("GET", "/metrics", nil, nil); status != 401 {
		t.Errorf("/metrics without a token: %d", status)
	}
}

// TestUsageOfFailures checks that invocations that never ran a handler
// are metered too: init errors (billed for their init time) and
// throttles (not billed); and a timeout is billed its whole timeout.
func TestUsageOfFailures(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.Dispatch.MaxQueueWait = 200 * time.Millisecond
	s := testserver.Start(t, cfg)
	ctx := context.Background()
	s.Deploy(map[string]string{
		"tern.yaml": "name: broken\nruntime: nodejs\nhandler: index.handler\n",
		"index.js":  `throw new Error("cannot load");`,
	})
	s.Deploy(map[string]string{
		"tern.yaml": "name: slow\nruntime: nodejs\nhandler: index.handler\ntimeout: 1s\nscale: {max: 1}\n",
		"index.js":  `exports.handler = async () => { const end = Date.now() + 5000; while (Date.now() < end) {} };`,
	})
	// Three init errors; a cold start slower than the queue wait is
	// throttled instead (counted, and tried again).
	brokenThrottled := 0
	for ranBroken, deadline := 0, time.Now().Add(2*time.Minute); ranBroken < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("broken: %d init errors, %d throttled", ranBroken, brokenThrottled)
		}
		_, err := s.Client.Invoke(ctx, "broken", []byte(`{}`))
		if ce, ok := err.(*client.Error); ok && ce.Status == 429 {
			brokenThrottled++
			continue
		}
		if err == nil {
			t.Fatal("broken ran")
		}
		ranBroken++
	}
	// One slow invocation times out; one more waits behind it and is
	// throttled after the queue wait. On a busy machine the first may
	// spend the queue wait on its cold start and be throttled too, or the
	// second come late and run: try again until both were seen, counting
	// what the callers got.
	var ran, throttled int
	var mu sync.Mutex
	deadline := time.Now().Add(2 * time.Minute)
	for ran == 0 || throttled == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no timeout and throttle seen together: %d ran, %d throttled", ran, throttled)
		}
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				_, err := s.Client.Invoke(ctx, "slow", []byte(`{}`))
				mu.Lock()
				defer mu.Unlock()
				if ce, ok := err.(*client.Error); ok && ce.Status == 429 {
					throttled++
				} else {
					ran++
				}
			})
		}
		wg.Wait()
	}

	var rows map[string]metering.Row
	for deadline := time.Now().Add(time.Minute); ; {
		rep, err := s.Client.Usage(ctx, client.UsageQuery{Since: "1h"})
		if err != nil {
			t.Fatal(err)
		}
		rows = map[string]metering.Row{}
		for _, r := range rep.Rows {
			rows[r.Key] = r
		}
		if rows["broken"].Requests+rows["broken"].Throttles == int64(3+brokenThrottled) && rows["slow"].Requests+rows["slow"].Throttles == int64(ran+throttled) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage does not count every invocation: %+v; the callers saw %d run and %d throttled", rows, ran, throttled)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b := rows["broken"]; b.Requests != 3 || b.Errors != 3 || b.ColdStarts != 3 || b.BilledMS < 3 || b.Throttles != int64(brokenThrottled) {
		t.Errorf("broken: %+v", b)
	}
	sl := rows["slow"]
	if sl.Requests != int64(ran) || sl.Errors != int64(ran) || sl.Throttles != int64(throttled) {
		t.Errorf("slow: %+v; the callers saw %d run (all time out) and %d throttled", sl, ran, throttled)
	}
	// Busy, it used CPU: how much depends on what else runs on the
	// machine, but no more than all its cores for the billed time.
	if sl.BilledMS != 1000*int64(ran) || sl.CPUSeconds <= 0 ||
		sl.CPUSeconds > float64(goruntime.NumCPU())*float64(sl.BilledMS)/1000 {
		t.Errorf("%d timeouts were billed %d ms with %.3f s of CPU; want their 1 s timeout each, as Lambda bills a timeout", ran, sl.BilledMS, sl.CPUSeconds)
	}
}
