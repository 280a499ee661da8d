package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/ternhq/tern/bench/internal/benchkit"
)

// memResult is phase 4.
type memResult struct {
	rss0, hwm0   int64 // KiB, no functions
	kids0        int   // tern's child processes then
	rss1, hwm1   int64 // KiB, after the deploys
	kids1        int
	n            int             // deploys attempted
	ok           int             // deploys answered 201
	firstErr     string          // the first failed deploy
	wall         time.Duration   // all deploys, first sent → last answered
	lat          []time.Duration // each deploy request, sorted
	busy         float64         // machine busy share during the deploys
	listed       int             // functions in GET /v1/functions afterwards
	listTime     time.Duration
	dataDirBytes int64 // tern's data dir on disk afterwards (allocated blocks)
}

// memPhase starts a fresh tern serve with the instance pool off, reads its
// RSS with no functions, deploys cfg.functions distinct tiny functions
// through the API (cfg.deployC uploads at a time; each package is the
// hello handler with its own name in tern.yaml, zipped in memory before the
// clock starts), and reads its RSS again. Nothing invokes them, so no
// instance runs; only the tern serve process is measured.
func (e *env) memPhase(ctx context.Context) (*memResult, error) {
	t, err := e.startTern(ctx, "tern-mem", 0)
	if err != nil {
		return nil, err
	}
	defer e.stopTern(t)
	res := &memResult{n: e.cfg.functions}

	pkgs := make([][]byte, res.n)
	for i := range pkgs {
		if pkgs[i], err = functionZip(fmt.Sprintf("mem-%05d", i), e.helloJS); err != nil {
			return nil, err
		}
	}

	if err := benchkit.Sleep(ctx, e.cfg.settle); err != nil {
		return nil, err
	}
	if res.rss0, res.hwm0, err = benchkit.RSS(t.PID()); err != nil {
		return nil, err
	}
	res.kids0 = len(benchkit.ChildrenOf(t.PID()))
	benchkit.Logf("memory: tern serve VmRSS %d KiB with no functions; deploying %d (%d at a time)", res.rss0, res.n, e.cfg.deployC)

	next := make(chan int)
	lat := make([][]time.Duration, e.cfg.deployC)
	errs := make([]error, e.cfg.deployC)
	var wg sync.WaitGroup
	busy0, t0 := benchkit.MachineBusy(), time.Now()
	for w := range e.cfg.deployC {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				d, err := e.deploy(ctx, t, pkgs[i])
				if err != nil {
					if errs[w] == nil {
						errs[w] = err
					}
					continue
				}
				lat[w] = append(lat[w], d)
			}
		}()
	}
feed:
	for i := range pkgs {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	res.wall = time.Since(t0)
	res.busy = busyShare(benchkit.MachineBusy()-busy0, res.wall)
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	for w := range lat {
		res.lat = append(res.lat, lat[w]...)
		if errs[w] != nil && res.firstErr == "" {
			res.firstErr = errs[w].Error()
		}
	}
	slices.Sort(res.lat)
	res.ok = len(res.lat)
	benchkit.Logf("memory: %d of %d deploys in %s (%.0f/s)", res.ok, res.n, res.wall.Round(time.Millisecond), float64(res.ok)/res.wall.Seconds())

	s := time.Now()
	_, b, err := t.API(ctx, e.api, http.MethodGet, "/v1/functions", nil)
	res.listTime = time.Since(s)
	if err != nil {
		return nil, err
	}
	var list struct {
		Functions []json.RawMessage `json:"functions"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, err
	}
	res.listed = len(list.Functions)

	if err := benchkit.Sleep(ctx, e.cfg.settle); err != nil {
		return nil, err
	}
	if res.rss1, res.hwm1, err = benchkit.RSS(t.PID()); err != nil {
		return nil, err
	}
	res.kids1 = len(benchkit.ChildrenOf(t.PID()))
	res.dataDirBytes = dirSize(t.DataDir)
	benchkit.Logf("memory: tern serve VmRSS %d KiB with %d functions (peak %d KiB)", res.rss1, res.listed, res.hwm1)
	return res, nil
}

// dirSize is the disk space (allocated blocks) of everything under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}
