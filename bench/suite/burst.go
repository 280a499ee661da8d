package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/ternhq/tern/bench/internal/benchkit"
)

// burstRun is one burst of concurrent requests released together.
type burstRun struct {
	lat      []time.Duration // every answered request (any status), from the release; sorted
	all      time.Duration   // release → the last request finished (answer or error)
	ok       int             // 200 with body hello
	non200   int
	badBody  int
	errs     int // transport errors (no answer)
	firstBad string
	busy     float64 // machine busy share over all
}

// burstResult is phase 3: rounds of a Tern burst and a node burst.
type burstResult struct {
	n      int
	rounds []*burstRound
}

// burstRound is one Tern burst (a fresh function) and one node burst.
type burstRound struct {
	name          string // the function
	tern          *burstRun
	node          *burstRun
	poolBefore    int  // tern's node processes (the generic pool) before the burst
	poolReady     bool // the pool was full and booted before the burst
	stats         *stats
	instancesNow  int // the function's instances after the burst (stats API)
	startingNow   int // of which still starting (if they did not finish within 5s)
	childrenAfter int // tern's node processes right after the burst
}

// burstPhase runs cfg.burstRounds rounds. Each hits a freshly deployed
// function (no instance of its own: scale.min is 0 and nothing has called
// it) with n concurrent requests, one goroutine and one new connection
// each, all released together, and deletes it; then the same burst goes to
// the node server spawned at the moment of the release: it serves a
// listening socket the benchmark opened before (fd 3), so the connections
// wait in the kernel's accept queue until node accepts them, with no
// client-side retries.
func (e *env) burstPhase(ctx context.Context, t *benchkit.Tern) (*burstResult, error) {
	res := &burstResult{n: e.cfg.burst}
	for i := 1; i <= e.cfg.burstRounds; i++ {
		r, err := e.burstRound(ctx, t, fmt.Sprintf("burst-%d", i))
		if err != nil {
			return nil, err
		}
		res.rounds = append(res.rounds, r)
	}
	return res, nil
}

func (e *env) burstRound(ctx context.Context, t *benchkit.Tern, name string) (*burstRound, error) {
	res := &burstRound{name: name}
	n := e.cfg.burst

	// Let the instance pool refill after the previous deletes.
	res.poolBefore, res.poolReady = waitPool(ctx, t.PID(), e.cfg.poolSize*e.pooledRuntimes())
	benchkit.Logf("burst %s: tern has %d pooled node processes (pool size %d, ready: %v)", name, res.poolBefore, e.cfg.poolSize, res.poolReady)

	if err := e.deployNamed(ctx, t, name); err != nil {
		return nil, err
	}
	deleted := false
	defer func() {
		if deleted {
			return
		}
		if err := e.remove(ctx, t, name); err != nil && ctx.Err() == nil {
			benchkit.Logf("burst: delete %s: %v", name, err)
		}
	}()
	benchkit.Logf("burst %s: %d concurrent requests to a fresh Tern function", name, n)
	var err error
	if res.tern, err = fire(ctx, n, t.URL+"/fn/"+name, nil); err != nil {
		return nil, err
	}
	res.childrenAfter = len(benchkit.ChildrenOf(t.PID()))
	// Instances started for waiters that were served by others meanwhile
	// still count: wait (briefly) until none is starting, then count them.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if res.stats, err = e.stats(ctx, t, name); err != nil {
			return nil, err
		}
		res.instancesNow, res.startingNow = 0, 0
		for _, p := range res.stats.Instances {
			res.instancesNow += p.Instances
			res.startingNow += p.Starting
		}
		if res.startingNow == 0 || time.Now().After(deadline) {
			break
		}
		if err := benchkit.Sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
	benchkit.Logf("burst %s: tern: all answered after %s, %d ok; %d instances (%d still starting), %d cold starts, %d queued, %d throttled",
		name, benchkit.Ms(res.tern.all), res.tern.ok, res.instancesNow, res.startingNow, res.stats.Counts.ColdStarts, res.stats.Counts.Queued, res.stats.Counts.Throttled)
	// Delete it now: its instances stop and do not take CPU from the
	// node burst.
	if err := e.remove(ctx, t, name); err != nil {
		return nil, err
	}
	deleted = true

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	var node *benchkit.Child
	spawn := func() error {
		var err error
		node, err = benchkit.StartNode(e.cs, e.nodeBin, e.root, "fd:3", lf)
		return err
	}
	benchkit.Logf("burst %s: %d concurrent requests to node server.js spawned at the release", name, n)
	res.node, err = fire(ctx, n, fmt.Sprintf("http://%s/", ln.Addr()), spawn)
	if node != nil {
		node.Stop(0)
	}
	if err != nil {
		return nil, err
	}
	benchkit.Logf("burst %s: node: all answered after %s, %d ok", name, benchkit.Ms(res.node.all), res.node.ok)
	return res, nil
}

// fire sends n GETs to url at once, one goroutine and one new connection
// each. The goroutines are started first and released together; spawn,
// when given, runs right before the release, inside the timed span.
func fire(ctx context.Context, n int, url string, spawn func() error) (*burstRun, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}

	type answer struct {
		d      time.Duration
		status int
		body   []byte
		err    error
	}
	answers := make([]answer, n)
	gate := make(chan struct{})
	var t0 time.Time // written before close(gate), read after it
	var ready, done sync.WaitGroup
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-gate
			status, body, err := benchkit.Get(ctx, client, url, nil)
			answers[i] = answer{time.Since(t0), status, body, err}
		}()
	}
	ready.Wait()
	busy0 := benchkit.MachineBusy()
	t0 = time.Now()
	if spawn != nil {
		if err := spawn(); err != nil {
			cancel()
			close(gate)
			done.Wait()
			return nil, err
		}
	}
	close(gate)
	done.Wait()
	r := &burstRun{}
	r.all = time.Since(t0)
	r.busy = busyShare(benchkit.MachineBusy()-busy0, r.all)
	for _, a := range answers {
		bad := ""
		switch {
		case a.err != nil:
			r.errs++
			bad = a.err.Error()
		case a.status != http.StatusOK:
			r.non200++
			bad = fmt.Sprintf("HTTP %d: %.200s", a.status, a.body)
		case !bytes.Equal(a.body, helloBody):
			r.badBody++
			bad = fmt.Sprintf("unexpected body %.200q", a.body)
		default:
			r.ok++
		}
		if a.err == nil {
			r.lat = append(r.lat, a.d)
		}
		if bad != "" && r.firstBad == "" {
			r.firstBad = bad
		}
	}
	slices.Sort(r.lat)
	return r, ctx.Err()
}

// waitPool waits (up to 15s) until tern has exactly size node processes,
// all at least 500ms old (a generic instance boots in well under that), and
// returns how many it has and whether that was reached.
func waitPool(ctx context.Context, pid, size int) (int, bool) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		kids := benchkit.ChildrenOf(pid)
		ok := len(kids) == size
		for _, k := range kids {
			if age, err := benchkit.Age(k); err != nil || age < 500*time.Millisecond {
				ok = false
			}
		}
		if ok || time.Now().After(deadline) || benchkit.Sleep(ctx, 50*time.Millisecond) != nil {
			return len(kids), ok
		}
	}
}
