package metering

import (
	"encoding/json"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"
)

// testAggregator returns an Aggregator holding recs, without NATS.
func testAggregator(recs []Record) *Aggregator {
	a := NewAggregator(nil, nil, AggConfig{}, slog.New(slog.DiscardHandler))
	a.apply("", recs, 0, 1, time.Now())
	return a
}

func repeat(n int, r Record) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func TestCostAndFreeTier(t *testing.T) {
	jan := time.Date(2025, 1, 31, 23, 30, 0, 0, time.UTC)
	feb := time.Date(2025, 2, 1, 0, 30, 0, 0, time.UTC)
	var recs []Record
	// 30 GB-s in January (1 GB × 1 s each), 5 GB-s in February (2 GB ×
	// 0.5 s each), and 3 throttles that cost nothing.
	recs = append(recs, repeat(30, Record{Function: "a", Start: jan, DurationUS: 1_000_000, BilledMS: 1000, MemoryMB: 1024, Outcome: OutcomeSuccess})...)
	recs = append(recs, repeat(5, Record{Function: "b", Start: feb, DurationUS: 500_000, BilledMS: 500, MemoryMB: 2048, Outcome: OutcomeError})...)
	recs = append(recs, repeat(3, Record{Function: "b", Start: feb, Outcome: OutcomeThrottled})...)
	// 10 more requests the next day in February, by a and b.
	feb2 := feb.Add(24 * time.Hour)
	recs = append(recs, repeat(6, Record{Function: "a", Start: feb2, DurationUS: 1000, BilledMS: 1, MemoryMB: 1024, Outcome: OutcomeSuccess})...)
	recs = append(recs, repeat(4, Record{Function: "b", Start: feb2, DurationUS: 1000, BilledMS: 1, MemoryMB: 1024, Outcome: OutcomeSuccess})...)
	a := testAggregator(recs)

	const R, G = DefaultPerMillionRequests, DefaultPerGBSecond
	const day2GB = 10 * 0.001 // 10 × 1 GB × 1 ms
	tests := []struct {
		name                 string
		q                    Query
		requests             int64
		gbs                  float64
		cost, afterFree      float64
		freeReq              int64
		freeGB               float64
		rows                 []string
		firstRowCost, months int
	}{
		{
			name: "default prices, no free tier", q: Query{Until: feb2.Truncate(time.Hour)},
			requests: 35, gbs: 35, cost: 35/1e6*R + 35*G, afterFree: 35/1e6*R + 35*G,
			rows: []string{"a", "b"},
		},
		{
			name: "free tier once per month", q: Query{Until: feb2.Truncate(time.Hour), Prices: Prices{FreeRequests: 10, FreeGBSeconds: 1}},
			requests: 35, gbs: 35, cost: 35/1e6*R + 35*G, afterFree: 20/1e6*R + 33*G,
			freeReq: 15, freeGB: 2, rows: []string{"a", "b"},
		},
		{
			name: "free tier larger than use", q: Query{Until: feb2.Truncate(time.Hour), Prices: Prices{FreeRequests: 1_000_000, FreeGBSeconds: 400_000}},
			requests: 35, gbs: 35, cost: 35/1e6*R + 35*G, afterFree: 0,
			freeReq: 35, freeGB: 35, rows: []string{"a", "b"},
		},
		{
			name: "one month, custom prices", q: Query{Since: feb, Until: feb2.Truncate(time.Hour), Prices: Prices{PerMillionRequests: 1, PerGBSecond: 0.001, FreeRequests: 2}},
			requests: 5, gbs: 5, cost: 5/1e6*1 + 5*0.001, afterFree: 3/1e6*1 + 5*0.001,
			freeReq: 2, rows: []string{"b"},
		},
		{
			// February's first day used 5 of the 7 free requests: the
			// second day gets the 2 left, shared 6:4 between a and b.
			name: "free tier used up earlier in the month", q: Query{Since: feb2, Prices: Prices{FreeRequests: 7}},
			requests: 10, gbs: day2GB, cost: 10/1e6*R + day2GB*G, afterFree: 8/1e6*R + day2GB*G,
			freeReq: 2, rows: []string{"a", "b"},
		},
		{
			name: "the free tier left, one function's share", q: Query{Since: feb2, Function: "b", Prices: Prices{FreeRequests: 10}},
			requests: 4, gbs: 0.004, cost: 4/1e6*R + 0.004*G, afterFree: 2/1e6*R + 0.004*G,
			freeReq: 2, rows: []string{"b"},
		},
		{
			name: "until excludes the hour starting at it", q: Query{Until: feb.Truncate(time.Hour), Prices: Prices{FreeGBSeconds: 1}},
			requests: 30, gbs: 30, cost: 30/1e6*R + 30*G, afterFree: 30/1e6*R + 29*G,
			freeGB: 1, rows: []string{"a"},
		},
		{
			name: "by day", q: Query{By: ByDay, Until: feb2.Truncate(time.Hour)},
			requests: 35, gbs: 35, cost: 35/1e6*R + 35*G, afterFree: 35/1e6*R + 35*G,
			rows: []string{"2025-01-31", "2025-02-01"},
		},
		{
			name: "by hour, one function", q: Query{By: ByHour, Function: "b", Until: feb2.Truncate(time.Hour), Prices: Prices{FreeRequests: 10}},
			requests: 5, gbs: 5, cost: 5/1e6*R + 5*G, afterFree: 5 * G,
			freeReq: 5, rows: []string{"2025-02-01T00:00Z"},
		},
	}
	close := func(a, b float64) bool { return math.Abs(a-b) <= 1e-10 } // costs are rounded to 1e-10 USD
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := a.Query(tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, r := range rep.Rows {
				keys = append(keys, r.Key)
			}
			if strings.Join(keys, ",") != strings.Join(tt.rows, ",") {
				t.Errorf("rows %v, want %v", keys, tt.rows)
			}
			tot := rep.Totals
			if tot.Requests != tt.requests || tot.GBSeconds != tt.gbs {
				t.Errorf("requests %d, GB-s %v; want %d, %v", tot.Requests, tot.GBSeconds, tt.requests, tt.gbs)
			}
			if !close(tot.Cost, tt.cost) || !close(tot.CostAfterFree, tt.afterFree) {
				t.Errorf("cost %v after free %v; want %v, %v", tot.Cost, tot.CostAfterFree, tt.cost, tt.afterFree)
			}
			if tot.FreeRequests != tt.freeReq || !close(tot.FreeGBSeconds, tt.freeGB) {
				t.Errorf("free tier took %d requests, %v GB-s; want %d, %v", tot.FreeRequests, tot.FreeGBSeconds, tt.freeReq, tt.freeGB)
			}
			var sum float64
			for _, r := range rep.Rows {
				sum += r.Cost
			}
			if math.Abs(sum-tot.Cost) > 1e-10*float64(len(rep.Rows)+1) {
				t.Errorf("rows cost %v in all, totals %v", sum, tot.Cost)
			}
		})
	}
}

func TestReportJSONAndCSV(t *testing.T) {
	at := time.Date(2025, 1, 10, 10, 15, 0, 0, time.UTC)
	a := testAggregator([]Record{
		{Function: "a", Start: at, DurationUS: 1000, BilledMS: 1, MemoryMB: 128, CPUUS: 500, Cold: true, Outcome: OutcomeSuccess},
		{Function: "a", Start: at.Add(time.Minute), DurationUS: 3000, BilledMS: 3, MemoryMB: 128, CPUUS: 1500, Outcome: OutcomeTimeout},
		{Function: "b", Start: at, Outcome: OutcomeThrottled},
	})
	rep, err := a.Query(Query{Since: at, Until: at.Add(time.Hour), Prices: Prices{PerMillionRequests: 1, PerGBSecond: 1, FreeRequests: 1}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	wantJSON := `{
  "by": "function",
  "since": "2025-01-10T10:00:00Z",
  "until": "2025-01-10T11:15:00Z",
  "currency": "USD",
  "prices": {
    "perMillionRequests": 1,
    "perGbSecond": 1,
    "freeRequests": 1,
    "freeGbSeconds": 0
  },
  "rows": [
    {
      "key": "a",
      "requests": 2,
      "errors": 1,
      "throttles": 0,
      "coldStarts": 1,
      "billedMs": 4,
      "mbMs": 512,
      "gbSeconds": 0.0005,
      "cpuSeconds": 0.002,
      "durationMs": {
        "avg": 2,
        "p50": 0.999,
        "p90": 2.975,
        "p99": 2.975
      },
      "cost": 0.000502
    },
    {
      "key": "b",
      "requests": 0,
      "errors": 0,
      "throttles": 1,
      "coldStarts": 0,
      "billedMs": 0,
      "mbMs": 0,
      "gbSeconds": 0,
      "cpuSeconds": 0,
      "durationMs": {
        "avg": 0,
        "p50": 0,
        "p90": 0,
        "p99": 0
      },
      "cost": 0
    }
  ],
  "totals": {
    "key": "total",
    "requests": 2,
    "errors": 1,
    "throttles": 1,
    "coldStarts": 1,
    "billedMs": 4,
    "mbMs": 512,
    "gbSeconds": 0.0005,
    "cpuSeconds": 0.002,
    "durationMs": {
      "avg": 2,
      "p50": 0.999,
      "p90": 2.975,
      "p99": 2.975
    },
    "cost": 0.000502,
    "freeRequests": 1,
    "freeGbSeconds": 0,
    "costAfterFree": 0.000501
  }
}`
	if string(b) != wantJSON {
		t.Errorf("JSON:\n%s\nwant\n%s", b, wantJSON)
	}

	var sb strings.Builder
	if err := WriteCSV(&sb, rep); err != nil {
		t.Fatal(err)
	}
	wantCSV := `function,requests,errors,throttles,cold_starts,billed_ms,mb_ms,gb_seconds,cpu_seconds,avg_ms,p50_ms,p90_ms,p99_ms,cost_usd,cost_after_free_usd
a,2,1,0,1,4,512,0.0005,0.002,2,0.999,2.975,2.975,0.000502,
b,0,0,1,0,0,0,0,0,0,0,0,0,0,
total,2,1,1,1,4,512,0.0005,0.002,2,0.999,2.975,2.975,0.000502,0.000501
`
	if sb.String() != wantCSV {
		t.Errorf("CSV:\n%s\nwant\n%s", sb.String(), wantCSV)
	}
}

func TestAggregateKeys(t *testing.T) {
	h := time.Date(2025, 3, 1, 7, 0, 0, 0, time.UTC)
	key := HourKey(h, "my-fn_2")
	if key != "h.1740812400.my-fn_2" {
		t.Fatalf("HourKey = %q", key)
	}
	k, ok := parseKey(key)
	if !ok || k.function != "my-fn_2" || k.start != h.Unix() || k.minute {
		t.Fatalf("parseKey(%q) = %+v, %v", key, k, ok)
	}
	m := h.Add(59 * time.Minute)
	key = MinuteKey(m, "fn")
	if key != "m.1740815940.fn" {
		t.Fatalf("MinuteKey = %q", key)
	}
	if k, ok := parseKey(key); !ok || k != (aggKey{"fn", m.Unix(), true}) || k.hour() != h.Unix() || k.String() != key {
		t.Fatalf("parseKey(%q) = %+v, %v", key, k, ok)
	}
	for _, bad := range []string{"closed-through", "minutes-closed-through", "h.1740812401.fn", "h.1740812460.fn", "m.1740812401.fn",
		"h.x.fn", "h.1740812400.", "h.1740812400.a.b", "m.1740812400.a.b"} {
		if _, ok := parseKey(bad); ok {
			t.Errorf("parseKey(%q) accepted", bad)
		}
	}
	// An aggregate survives the bucket unchanged.
	a := testAggregator([]Record{{Function: "fn", Start: m.Add(30 * time.Second), DurationUS: 12345, BilledMS: 13, MemoryMB: 256, CPUUS: 9, Cold: true, Outcome: OutcomeCrash}})
	for _, k := range []aggKey{{"fn", m.Unix(), true}, {"fn", h.Unix(), false}} {
		val, err := encodeAgg(k, a.minutes[aggKey{"fn", m.Unix(), true}])
		if err != nil {
			t.Fatal(err)
		}
		u, err := decodeAgg(val, k)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := encodeAgg(k, u)
		if string(again) != string(val) {
			t.Fatalf("round trip changed the aggregate:\n%s\n%s", val, again)
		}
		if _, err := decodeAgg(val, aggKey{"other", k.start, k.minute}); err == nil {
			t.Fatalf("aggregate accepted under another function's key")
		}
		if _, err := decodeAgg(val, aggKey{"fn", k.start, !k.minute}); err == nil {
			t.Fatalf("aggregate accepted under a key of the other kind")
		}
	}
}
