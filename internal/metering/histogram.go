package metering

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// histSubBits is how many bits below the leading one a bucket keeps: each
// power of two is split into 2^histSubBits buckets of equal width.
const histSubBits = 5

// HistogramRelativeError bounds how far a value read back from a Histogram
// (a quantile) is from the true one, relative to the true value: a bucket
// [lo, lo+w) has w ≤ lo/32, and the value reported for it is its midpoint,
// so it is off by at most w/2 ≤ lo/64 ≤ x/64 for any x in the bucket.
// Values below 64 have buckets of width 1 and are exact.
const HistogramRelativeError = 1.0 / (2 << histSubBits) // 1/64 ≈ 1.56 %

// Histogram counts non-negative integer values (durations in microseconds)
// in log-spaced buckets. It is sparse (only buckets that were hit are
// kept, sorted by index), exact to merge (bucket boundaries are fixed, so
// merging histograms equals adding all their values to one), and the same
// on every platform (bucket indexes are integer arithmetic, no logarithms).
// The zero value is empty and ready to use; it is not safe for concurrent
// use.
type Histogram struct {
	bins []histBin
}

type histBin struct {
	index int32
	count int64
}

// histIndex is the bucket of v: v itself below 64, above that 32 buckets
// per power of two.
func histIndex(v int64) int32 {
	if v < 2<<histSubBits {
		if v < 0 {
			return 0
		}
		return int32(v)
	}
	shift := bits.Len64(uint64(v)) - 1 - histSubBits
	m := v >> shift // in [32, 64)
	return int32(shift<<histSubBits) + int32(m)
}

// histBounds is bucket i's lowest value and its width.
func histBounds(i int32) (lo, width int64) {
	if i < 2<<histSubBits {
		return int64(i), 1
	}
	shift := int(i>>histSubBits) - 1
	m := int64(i) - int64(shift<<histSubBits)
	return m << shift, 1 << shift
}

// histValue is the value reported for bucket i: its midpoint.
func histValue(i int32) int64 {
	lo, w := histBounds(i)
	return lo + (w-1)/2
}

// Add counts one value; negative values count as 0.
func (h *Histogram) Add(v int64) { h.AddN(v, 1) }

// AddN counts n occurrences of v.
func (h *Histogram) AddN(v, n int64) {
	if n <= 0 {
		return
	}
	h.addBin(histIndex(v), n)
}

func (h *Histogram) addBin(i int32, n int64) {
	// Most values land in an existing bucket, and new ones often at the end.
	k := len(h.bins)
	if k == 0 || h.bins[k-1].index < i {
		h.bins = append(h.bins, histBin{i, n})
		return
	}
	j, found := slices.BinarySearchFunc(h.bins, i, func(b histBin, i int32) int { return int(b.index) - int(i) })
	if found {
		h.bins[j].count += n
		return
	}
	h.bins = slices.Insert(h.bins, j, histBin{i, n})
}

// Merge adds every value counted in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || len(o.bins) == 0 {
		return
	}
	if len(h.bins) == 0 {
		h.bins = slices.Clone(o.bins)
		return
	}
	out := make([]histBin, 0, max(len(h.bins), len(o.bins)))
	a, b := h.bins, o.bins
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0].index < b[0].index:
			out, a = append(out, a[0]), a[1:]
		case a[0].index > b[0].index:
			out, b = append(out, b[0]), b[1:]
		default:
			out = append(out, histBin{a[0].index, a[0].count + b[0].count})
			a, b = a[1:], b[1:]
		}
	}
	out = append(append(out, a...), b...)
	h.bins = out
}

// Count is how many values were added.
func (h *Histogram) Count() int64 {
	var n int64
	for _, b := range h.bins {
		n += b.count
	}
	return n
}

// Quantile returns the q-quantile (0 < q ≤ 1) by the nearest-rank method:
// the value of the ⌈q·n⌉-th smallest value, within HistogramRelativeError
// of it. An empty histogram answers 0.
func (h *Histogram) Quantile(q float64) int64 {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := QuantileRank(q, n)
	var seen int64
	for _, b := range h.bins {
		seen += b.count
		if seen >= rank {
			return histValue(b.index)
		}
	}
	return histValue(h.bins[len(h.bins)-1].index)
}

// QuantileRank is the 1-based rank of the q-quantile among n values by the
// nearest-rank method, ⌈q·n⌉ clamped to [1, n]. (A tiny tolerance keeps
// 0.9×100 at 90 despite floating point.)
func QuantileRank(q float64, n int64) int64 {
	r := int64(math.Ceil(q*float64(n) - 1e-9))
	return min(max(r, 1), n)
}

// MarshalJSON writes the buckets as [[index, count], ...] in index order.
func (h Histogram) MarshalJSON() ([]byte, error) {
	pairs := make([][2]int64, len(h.bins))
	for i, b := range h.bins {
		pairs[i] = [2]int64{int64(b.index), b.count}
	}
	return json.Marshal(pairs)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (h *Histogram) UnmarshalJSON(data []byte) error {
	var pairs [][2]int64
	if err := json.Unmarshal(data, &pairs); err != nil {
		return err
	}
	h.bins = h.bins[:0]
	for _, p := range pairs {
		if p[0] < 0 || p[0] > math.MaxInt32 || p[1] < 0 {
			return fmt.Errorf("metering: histogram bucket %v out of range", p)
		}
		h.addBin(int32(p[0]), p[1])
	}
	return nil
}
