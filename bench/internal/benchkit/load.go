package benchkit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

// LoadResult is one closed-loop load phase against one URL.
type LoadResult struct {
	Target string
	C      int
	Window time.Duration // the measured window (after warm-up)

	OK       int             // 200 with the expected body, inside the window
	Non200   int             // other statuses inside the window
	BadBody  int             // 200 with another body
	Errors   int             // transport errors inside the window
	FirstBad string          // the first failure seen, for the report
	WarmBad  int             // failures of any kind during the warm-up
	Lat      []time.Duration // latencies of OK requests, sorted
	// Sent counts every request sent, warm-up and the window's edges
	// included, that ended with an answer or a transport error (not those
	// cut short by ctx).
	Sent int

	// CPU used during the measured window, when measured.
	ServerCPU  time.Duration // tern (Go process) or the baseline node server
	FuncCPU    time.Duration // tern's node instances; 0 for the baseline
	LoadgenCPU time.Duration // this process
	Instances  int           // tern's node instances at the end of the window
	Busy       time.Duration // all CPUs of the machine, busy time
	HaveCPU    bool
}

func (r *LoadResult) RPS() float64 { return float64(r.OK) / r.Window.Seconds() }

// Failed counts every non-OK outcome inside the window.
func (r *LoadResult) Failed() int { return r.Non200 + r.BadBody + r.Errors }

// PerReq is CPU time per OK request.
func (r *LoadResult) PerReq(d time.Duration) time.Duration {
	if r.OK == 0 {
		return 0
	}
	return d / time.Duration(r.OK)
}

// workerStats is one load goroutine's tally.
type workerStats struct {
	lat                            []time.Duration
	non200, badBody, errs, warmBad int
	sent                           int
	firstBad                       string
}

// RunLoad drives url with c goroutines, each sending its next request as
// soon as the previous one is answered, over keep-alive connections. The
// first warmup is not measured; then every request that starts and ends
// inside the next dur counts: a 200 whose body is want, or any 200 when want
// is nil. onStart and onEnd run at the window's edges (to read CPU counters).
func RunLoad(ctx context.Context, url string, want []byte, c int, warmup, dur time.Duration, onStart, onEnd func()) *LoadResult {
	tr := &http.Transport{
		MaxIdleConns:        2 * c,
		MaxIdleConnsPerHost: 2 * c,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	begin := time.Now()
	mStart := begin.Add(warmup)
	mEnd := mStart.Add(dur)

	ctl := make(chan struct{})
	go func() {
		defer close(ctl)
		t := time.NewTimer(time.Until(mStart))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if onStart != nil {
			onStart()
		}
		t.Reset(time.Until(mEnd))
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if onEnd != nil {
			onEnd()
		}
	}()

	stats := make([]workerStats, c)
	var wg sync.WaitGroup
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats[w]
			// Room for the expected rate at a few thousand req/s per worker.
			st.lat = make([]time.Duration, 0, 1<<14)
			buf := make([]byte, 0, 512)
			for ctx.Err() == nil {
				s := time.Now()
				if s.After(mEnd) {
					return
				}
				status, body, err := Get(ctx, client, url, buf[:0])
				e := time.Now()
				buf = body
				if err != nil && ctx.Err() != nil {
					return
				}
				st.sent++
				inWindow := !s.Before(mStart) && !e.After(mEnd)
				bad := ""
				switch {
				case err != nil:
					bad = err.Error()
					if inWindow {
						st.errs++
					}
				case status != http.StatusOK:
					bad = fmt.Sprintf("HTTP %d: %.200s", status, body)
					if inWindow {
						st.non200++
					}
				case want != nil && !bytes.Equal(body, want):
					bad = fmt.Sprintf("unexpected body %.200q", body)
					if inWindow {
						st.badBody++
					}
				default:
					if inWindow {
						st.lat = append(st.lat, e.Sub(s))
					}
				}
				if bad != "" {
					if !s.After(mStart) {
						st.warmBad++
					}
					if st.firstBad == "" {
						st.firstBad = bad
					}
					if err != nil {
						time.Sleep(time.Millisecond) // don't spin on a dead server
					}
				}
			}
		}()
	}
	wg.Wait()
	<-ctl

	r := &LoadResult{Target: url, C: c, Window: dur}
	for i := range stats {
		st := &stats[i]
		r.Lat = append(r.Lat, st.lat...)
		r.Non200 += st.non200
		r.BadBody += st.badBody
		r.Errors += st.errs
		r.WarmBad += st.warmBad
		r.Sent += st.sent
		if r.FirstBad == "" {
			r.FirstBad = st.firstBad
		}
	}
	r.OK = len(r.Lat)
	slices.Sort(r.Lat)
	return r
}

// Get sends one GET and reads the whole body into buf.
func Get(ctx context.Context, client *http.Client, url string, buf []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, buf, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, buf, err
	}
	defer resp.Body.Close()
	b := bytes.NewBuffer(buf)
	_, err = b.ReadFrom(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, b.Bytes(), err
}

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(float64(len(sorted))*p/100)) - 1
	k = max(0, min(k, len(sorted)-1))
	return sorted[k]
}

// MeasureLoad is RunLoad with CPU readings at the window's edges: the
// server process pid and, when withChildren, its child processes (tern's
// node instances, as FuncCPU), this process, and the whole machine.
func MeasureLoad(ctx context.Context, url string, want []byte, c int, warmup, dur time.Duration, pid int, withChildren bool) *LoadResult {
	var srv0, srv1, fn0, fn1 CPUSnapshot
	var self0, self1, busy0, busy1 time.Duration
	var instances int
	pids := func() ([]int, []int) {
		if withChildren {
			return []int{pid}, ChildrenOf(pid)
		}
		return []int{pid}, nil
	}
	onStart := func() {
		s, f := pids()
		srv0, fn0, self0, busy0 = Snapshot(s), Snapshot(f), SelfCPU(), MachineBusy()
	}
	onEnd := func() {
		s, f := pids()
		srv1, fn1, self1, busy1 = Snapshot(s), Snapshot(f), SelfCPU(), MachineBusy()
		instances = len(f)
	}
	r := RunLoad(ctx, url, want, c, warmup, dur, onStart, onEnd)
	if srv1 != nil {
		r.HaveCPU = true
		r.ServerCPU = CPUSince(srv0, srv1)
		r.FuncCPU = CPUSince(fn0, fn1)
		r.LoadgenCPU = self1 - self0
		r.Instances = instances
		r.Busy = busy1 - busy0
	}
	return r
}
