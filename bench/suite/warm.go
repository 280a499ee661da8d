package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/ternhq/tern/bench/internal/benchkit"
)

// Warm targets, as LoadResult.Target.
const (
	targetTern  = "tern"
	targetTernC = "tern-c16" // the same handler deployed with concurrency: 16
	targetNode  = "node"
	targetGo    = "go"
)

// warmPhase deploys the hello function, starts the node and Go baselines,
// and runs the closed-loop load at every level against each target in
// turn (Tern, node, Go). It deletes the function at the end, which stops
// its instances.
func (e *env) warmPhase(ctx context.Context, t *benchkit.Tern) ([]*benchkit.LoadResult, error) {
	if err := e.deployNamed(ctx, t, "hello"); err != nil {
		return nil, err
	}
	defer func() {
		if err := e.remove(ctx, t, "hello"); err != nil && ctx.Err() == nil {
			benchkit.Logf("warm: delete hello: %v", err)
		}
	}()
	ternURL := t.URL + "/fn/hello"
	if _, err := benchkit.FirstRequest(ctx, ternURL, helloBody); err != nil {
		return nil, err
	}
	pkg, err := functionZipWith("helloc", "concurrency: 16\n", e.helloJS)
	if err != nil {
		return nil, err
	}
	if _, err := e.deploy(ctx, t, pkg); err != nil {
		return nil, err
	}
	defer func() {
		if err := e.remove(ctx, t, "helloc"); err != nil && ctx.Err() == nil {
			benchkit.Logf("warm: delete helloc: %v", err)
		}
	}()
	ternCURL := t.URL + "/fn/helloc"
	if _, err := benchkit.FirstRequest(ctx, ternCURL, helloBody); err != nil {
		return nil, err
	}

	port, err := benchkit.FreePort()
	if err != nil {
		return nil, err
	}
	node, err := benchkit.StartNode(e.cs, e.nodeBin, e.root, strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	defer node.Stop(0)
	nodeURL := "http://127.0.0.1:" + strconv.Itoa(port) + "/"

	if port, err = benchkit.FreePort(); err != nil {
		return nil, err
	}
	cmd := exec.Command(e.goechoBin, strconv.Itoa(port))
	cmd.Env = benchkit.InstanceEnv()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	goSrv, err := e.cs.Start("go baseline", cmd, false)
	if err != nil {
		return nil, err
	}
	defer goSrv.Stop(0)
	goURL := "http://127.0.0.1:" + strconv.Itoa(port) + "/"

	for _, s := range []struct {
		name string
		c    *benchkit.Child
		url  string
	}{{"node baseline", node, nodeURL}, {"go baseline", goSrv, goURL}} {
		if err := waitReady(ctx, s.c, s.url); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}

	var out []*benchkit.LoadResult
	for _, c := range e.cfg.levels {
		for _, tg := range []struct {
			name, url    string
			pid          int
			withChildren bool
		}{
			{targetTern, ternURL, t.PID(), true},
			{targetTernC, ternCURL, t.PID(), true},
			{targetNode, nodeURL, node.PID(), false},
			{targetGo, goURL, goSrv.PID(), false},
		} {
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			benchkit.Logf("warm: %s, c=%d, %s warm-up + %s measured", tg.name, c, e.cfg.warmup, e.cfg.duration)
			r := benchkit.MeasureLoad(ctx, tg.url, helloBody, c, e.cfg.warmup, e.cfg.duration, tg.pid, tg.withChildren)
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			r.Target = tg.name
			benchkit.Logf("warm: %s, c=%d: %d ok (%.0f req/s), p50 %s, p99 %s, %d failed in window, %d during warm-up",
				tg.name, c, r.OK, r.RPS(), benchkit.Us(benchkit.Percentile(r.Lat, 50)), benchkit.Us(benchkit.Percentile(r.Lat, 99)), r.Failed(), r.WarmBad)
			if r.FirstBad != "" {
				benchkit.Logf("warm: %s, c=%d: first failure: %s", tg.name, c, r.FirstBad)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// waitReady polls url until it answers 200 hello, for up to 20s.
func waitReady(ctx context.Context, c *benchkit.Child, url string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := benchkit.FirstRequest(ctx, url, helloBody)
		if err == nil {
			return nil
		}
		if c.Exited() {
			return fmt.Errorf("exited before answering: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not answering after 20s: %w", err)
		}
		if err := benchkit.Sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
}
