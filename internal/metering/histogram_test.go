package metering_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ternhq/tern/internal/metering"
)

// exactQuantile is the nearest-rank q-quantile of sorted values.
func exactQuantile(sorted []int64, q float64) int64 {
	return sorted[metering.QuantileRank(q, int64(len(sorted)))-1]
}

func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		gen  func(i int) int64
		n    int
	}{
		{"constant", func(int) int64 { return 12345 }, 1000},
		{"small exact values", func(i int) int64 { return int64(i % 64) }, 640},
		{"uniform 1ms-1s", func(int) int64 { return 1000 + rng.Int64N(999_000) }, 20000},
		{"log-uniform 10µs-15min", func(int) int64 { return int64(math.Exp(math.Log(10) + rng.Float64()*(math.Log(9e8)-math.Log(10)))) }, 20000},
		{"exponential mean 50ms", func(int) int64 { return int64(rng.ExpFloat64() * 50_000) }, 20000},
		{"bimodal warm and cold", func(i int) int64 {
			if i%20 == 0 {
				return 300_000 + rng.Int64N(50_000)
			}
			return 2_000 + rng.Int64N(500)
		}, 20000},
		{"powers of two", func(i int) int64 { return int64(1) << (i % 40) }, 400},
		{"one value", func(int) int64 { return 7 }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h metering.Histogram
			vals := make([]int64, tt.n)
			for i := range vals {
				vals[i] = tt.gen(i)
				h.Add(vals[i])
			}
			slices.Sort(vals)
			if got := h.Count(); got != int64(tt.n) {
				t.Fatalf("Count = %d, want %d", got, tt.n)
			}
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
				want := exactQuantile(vals, q)
				got := h.Quantile(q)
				if err := math.Abs(float64(got - want)); err > float64(want)*metering.HistogramRelativeError {
					t.Errorf("Quantile(%v) = %d, exact %d: off by %.3f%% > %.3f%%", q, got, want,
						100*err/float64(want), 100*metering.HistogramRelativeError)
				}
				if want < 64 && got != want {
					t.Errorf("Quantile(%v) = %d, want exactly %d below 64", q, got, want)
				}
			}
		})
	}
}

func TestHistogramMergeAndJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var all, a, b metering.Histogram
	for i := range 5000 {
		v := int64(rng.ExpFloat64() * 20_000)
		all.Add(v)
		if i%3 == 0 {
			a.Add(v)
		} else {
			b.Add(v)
		}
	}
	var merged metering.Histogram
	merged.Merge(&a)
	merged.Merge(&b)
	wantJSON, _ := json.Marshal(all)
	gotJSON, _ := json.Marshal(merged)
	if string(gotJSON) != string(wantJSON) {
		t.Fatalf("merged histogram differs from one built from all values:\n%s\n%s", gotJSON, wantJSON)
	}
	var back metering.Histogram
	if err := json.Unmarshal(gotJSON, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(back)
	if string(again) != string(gotJSON) {
		t.Fatalf("JSON round trip changed the histogram")
	}
	var empty metering.Histogram
	if empty.Quantile(0.5) != 0 || empty.Count() != 0 {
		t.Fatalf("empty histogram: quantile %d count %d", empty.Quantile(0.5), empty.Count())
	}
	if err := json.Unmarshal([]byte(`[[-1,2]]`), &back); err == nil {
		t.Fatalf("negative bucket index accepted")
	}
}
