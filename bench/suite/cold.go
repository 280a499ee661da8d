package main

import (
	"context"
	"fmt"
	"time"

	"github.com/ternhq/tern/bench/internal/benchkit"
)

// coldResult is phase 1.
type coldResult struct {
	first      []time.Duration // Tern: first call after the deploy, new connection
	init       []time.Duration // Tern: Init Duration of that call's REPORT line
	deploy     []time.Duration // Tern: POST /v1/functions
	between    []time.Duration // Tern: previous first call answered → this deploy sent
	noInit     int             // runs without an Init Duration in the logs
	poolBefore int             // tern's node processes before the series
	poolReady  bool            // the pool was full and booted then
	ternBusy   float64         // machine busy share during the Tern series
	ternWall   time.Duration

	nodeE0     []time.Duration // `node -e 0`, spawn → exit
	nodeServer []time.Duration // spawn server.js → first 200
	nodeBusy   float64
	nodeWall   time.Duration
}

// coldPhase deploys coldN+1 fresh functions one after another and times
// the first call to each (run 0 is an unmeasured warm-up). The next deploy
// is sent only after the previous first call was answered and the gap has
// passed, so the instance pool can refill in between. The functions are
// deleted at the end, not in between, so that nothing but the gap separates
// the runs; their idle instances sit unused meanwhile. Then the node
// baselines run, each series separately, so that they do not compete with
// the pool's refills.
func (e *env) coldPhase(ctx context.Context, t *benchkit.Tern) (*coldResult, error) {
	res := &coldResult{}
	n := e.cfg.coldN
	names := make([]string, n+1)
	pkgs := make([][]byte, n+1)
	for i := range names {
		names[i] = fmt.Sprintf("cold-%03d", i)
		var err error
		if pkgs[i], err = functionZip(names[i], e.helloJS); err != nil {
			return nil, err
		}
	}
	deployed := 0
	defer func() {
		// Delete them even when the phase fails half-way.
		for _, name := range names[:deployed] {
			if err := e.remove(ctx, t, name); err != nil && ctx.Err() == nil {
				benchkit.Logf("cold: delete %s: %v", name, err)
			}
		}
	}()

	// Start from a full pool: tern has just started and fills it now.
	res.poolBefore, res.poolReady = waitPool(ctx, t.PID(), e.cfg.poolSize*e.pooledRuntimes())
	benchkit.Logf("cold: %d fresh Tern functions (+1 warm-up), gap %s; %d pooled node processes (ready: %v)",
		n, e.cfg.gap, res.poolBefore, res.poolReady)
	busy0, wall0 := benchkit.MachineBusy(), time.Now()
	var lastEnd time.Time
	for i := 0; i <= n; i++ {
		var between time.Duration
		if !lastEnd.IsZero() {
			between = time.Since(lastEnd)
		}
		dep, err := e.deploy(ctx, t, pkgs[i])
		if err != nil {
			return nil, fmt.Errorf("deploy %s: %w", names[i], err)
		}
		deployed++
		first, err := benchkit.FirstRequest(ctx, t.URL+"/fn/"+names[i], helloBody)
		lastEnd = time.Now()
		if err != nil {
			return nil, fmt.Errorf("first call to %s: %w", names[i], err)
		}
		tag := " (warm-up, not counted)"
		if i > 0 {
			tag = ""
			res.first = append(res.first, first)
			res.deploy = append(res.deploy, dep)
			res.between = append(res.between, between)
		}
		benchkit.Logf("cold %2d: deploy %s, first call %s%s", i, benchkit.Ms(dep), benchkit.Ms(first), tag)
		if err := benchkit.Sleep(ctx, e.cfg.gap); err != nil {
			return nil, err
		}
	}
	res.ternWall = time.Since(wall0)
	res.ternBusy = busyShare(benchkit.MachineBusy()-busy0, res.ternWall)

	for i, name := range names[1:] {
		if d := e.initDuration(ctx, t, name); d > 0 {
			res.init = append(res.init, d)
		} else {
			res.noInit++
			benchkit.Logf("cold %2d: no Init Duration in the logs of %s", i+1, name)
		}
	}

	busy0, wall0 = benchkit.MachineBusy(), time.Now()
	for i := 0; i <= n; i++ {
		d, err := e.nodeE0(ctx)
		if err != nil {
			return nil, fmt.Errorf("node -e 0: %w", err)
		}
		if i > 0 {
			res.nodeE0 = append(res.nodeE0, d)
		}
	}
	for i := 0; i <= n; i++ {
		d, err := benchkit.NodeCold(ctx, e.cs, e.nodeBin, e.root, helloBody)
		if err != nil {
			return nil, fmt.Errorf("node server cold start %d: %w", i, err)
		}
		if i > 0 {
			res.nodeServer = append(res.nodeServer, d)
		}
	}
	res.nodeWall = time.Since(wall0)
	res.nodeBusy = busyShare(benchkit.MachineBusy()-busy0, res.nodeWall)
	benchkit.Logf("cold: node -e 0 p50 %s, node server spawn→first 200 p50 %s",
		benchkit.Ms(benchkit.Percentile(benchkit.Sorted(res.nodeE0), 50)),
		benchkit.Ms(benchkit.Percentile(benchkit.Sorted(res.nodeServer), 50)))
	return res, nil
}

// nodeE0 times `node -e 0` from spawn to exit, in the environment tern
// gives its instances.
func (e *env) nodeE0(ctx context.Context) (time.Duration, error) {
	return e.spawnToExit(ctx, "node -e 0", e.nodeBin, "-e", "0")
}
