package main

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ternhq/tern/bench/internal/benchkit"
)

// The runtimes phase's functions, one per runtime Tern runs.

// rtPythonApp is the python hello handler (app.handler).
const rtPythonApp = `def handler(event, context):
    return {"statusCode": 200, "body": "hello"}
`

// rtHTTPServer is the http runtime's app: a plain node server on $PORT.
const rtHTTPServer = `require("http")
  .createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("hello");
  })
  .listen(Number(process.env.PORT), "127.0.0.1");
`

// rtGoMod is the go.mod of the temp module the Go function is built in
// (the version internal/server/testdata/lambdago/go.sum.golden pins).
const rtGoMod = "module lambdaecho\n\ngo 1.26\n\nrequire github.com/aws/aws-lambda-go v1.55.1\n"

// rtTarget is one runtime of the phase.
type rtTarget struct {
	runtime string
	label   string // the report's row name
	want    []byte // the expected body; nil: any 200
	pooled  bool   // Tern keeps pre-started generic instances of it
	pkg     func(name string) ([]byte, error)
}

// rtRow is one runtime's measurements.
type rtRow struct {
	runtime, label string
	want           []byte
	skipped        string          // why it did not run, if it did not
	cold           []time.Duration // first call after the deploy, new connection
	deploy         []time.Duration // POST /v1/functions
	poolBefore     int             // tern's child processes before the series
	poolWant       int             // what a full set of pools is
	poolReady      bool
	coldBusy       float64 // machine busy share over the series, gaps included
	coldWall       time.Duration
	warm           *benchkit.LoadResult
}

// rtResult is the runtimes phase.
type rtResult struct {
	rows     []*rtRow
	pkgBytes map[string]int // package size per runtime
	nodeE0   []time.Duration
	pyPass   []time.Duration
	pyBin    string // the interpreter behind python3; "" when there is none
	pyErr    string
}

// zipEntry is one file of a code package.
type zipEntry struct {
	name string
	body []byte
	mode os.FileMode
}

// zipPackage builds a code package in memory from entries.
func zipPackage(entries ...zipEntry) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range entries {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: zipTime}
		h.SetMode(f.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// buildLambdaGo builds internal/server/testdata/lambdago (an aws-lambda-go
// echo function) as a static linux executable in a temp module of its own
// and returns it.
func (e *env) buildLambdaGo(ctx context.Context) ([]byte, error) {
	src := filepath.Join(e.root, "internal", "server", "testdata", "lambdago")
	dir := filepath.Join(e.tmp, "lambdaecho")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	main, err := os.ReadFile(filepath.Join(src, "main.go"))
	if err != nil {
		return nil, err
	}
	sum, err := os.ReadFile(filepath.Join(src, "go.sum.golden"))
	if err != nil {
		return nil, err
	}
	for name, b := range map[string][]byte{"main.go": main, "go.sum": sum, "go.mod": []byte(rtGoMod)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	benchkit.Logf("building the aws-lambda-go echo function: CGO_ENABLED=0 go build -mod=mod -tags lambda.norpc -o bootstrap . (in %s)", dir)
	cmd := exec.CommandContext(ctx, "go", "build", "-mod=mod", "-tags", "lambda.norpc", "-o", "bootstrap", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build (aws-lambda-go echo): %w\n%s", err, out)
	}
	return os.ReadFile(filepath.Join(dir, "bootstrap"))
}

// pythonInterpreter is the real interpreter behind python3 on PATH, as Tern
// finds it (it starts that path, not wrappers such as pyenv's shims).
func pythonInterpreter(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		return "", fmt.Errorf("python3: %w", err)
	}
	p := strings.TrimSpace(string(out))
	if p == "" {
		return "", errors.New("python3: no sys.executable")
	}
	return p, nil
}

// runtimesPhase runs, for each runtime in turn (nodejs, python, provided
// with an aws-lambda-go binary, http with a node server): rtColdN+1 fresh
// functions deployed one after another, the first call to each timed as
// the cold phase does (run 0 unmeasured, the same gap after each so the
// pools refill); then closed-loop load at c=1 against the series' last
// function, which is warm by then; then the series' functions are deleted.
// Every series starts once tern's children are the full pools again. Then
// the `node -e 0` and `python3 -c pass` references run.
func (e *env) runtimesPhase(ctx context.Context, t *benchkit.Tern) (*rtResult, error) {
	res := &rtResult{pkgBytes: map[string]int{}}
	var pyErr error
	res.pyBin, pyErr = pythonInterpreter(ctx)
	if pyErr != nil {
		res.pyErr = pyErr.Error()
		benchkit.Logf("runtimes: %v; the python runtime is skipped", pyErr)
	}
	bootstrap, err := e.buildLambdaGo(ctx)
	if err != nil {
		return nil, err
	}
	manifest := func(name, rest string) zipEntry {
		return zipEntry{"tern.yaml", []byte("name: " + name + "\n" + rest), 0o644}
	}
	targets := []rtTarget{
		{"nodejs", "nodejs (bench/hello `index.handler`)", helloBody, true, func(name string) ([]byte, error) {
			return functionZip(name, e.helloJS)
		}},
		{"python", "python (`app.handler`)", helloBody, true, func(name string) ([]byte, error) {
			return zipPackage(manifest(name, "runtime: python\nhandler: app.handler\n"),
				zipEntry{"app.py", []byte(rtPythonApp), 0o644})
		}},
		{"provided", "go (`provided`: aws-lambda-go echo `bootstrap`)", nil, false, func(name string) ([]byte, error) {
			return zipPackage(manifest(name, "runtime: provided\n"), zipEntry{"bootstrap", bootstrap, 0o755})
		}},
		{"http", "http (`command: node server.js`)", helloBody, false, func(name string) ([]byte, error) {
			return zipPackage(manifest(name, "runtime: http\ncommand: node server.js\n"),
				zipEntry{"server.js", []byte(rtHTTPServer), 0o644})
		}},
	}
	// A full set of pools: pool-size generic instances per pooled runtime
	// this host can run.
	poolWant := 0
	for _, tg := range targets {
		if tg.pooled && (tg.runtime != "python" || res.pyBin != "") {
			poolWant += e.cfg.poolSize
		}
	}
	for _, tg := range targets {
		row := &rtRow{runtime: tg.runtime, label: tg.label, want: tg.want, poolWant: poolWant}
		res.rows = append(res.rows, row)
		if tg.runtime == "python" && res.pyBin == "" {
			row.skipped = res.pyErr
			continue
		}
		if err := e.runtimeSeries(ctx, t, tg, row, res); err != nil {
			return nil, fmt.Errorf("%s: %w", tg.runtime, err)
		}
	}

	n := e.cfg.rtColdN
	for i := 0; i <= n; i++ {
		d, err := e.nodeE0(ctx)
		if err != nil {
			return nil, fmt.Errorf("node -e 0: %w", err)
		}
		if i > 0 {
			res.nodeE0 = append(res.nodeE0, d)
		}
	}
	if res.pyBin != "" {
		for i := 0; i <= n; i++ {
			d, err := e.spawnToExit(ctx, "python3 -c pass", res.pyBin, "-c", "pass")
			if err != nil {
				return nil, fmt.Errorf("python3 -c pass: %w", err)
			}
			if i > 0 {
				res.pyPass = append(res.pyPass, d)
			}
		}
	}
	benchkit.Logf("runtimes: node -e 0 p50 %s, python3 -c pass p50 %s",
		benchkit.Ms(pct(res.nodeE0, 50)), benchkit.Ms(pct(res.pyPass, 50)))
	return res, nil
}

// runtimeSeries is one runtime's cold series and warm load.
func (e *env) runtimeSeries(ctx context.Context, t *benchkit.Tern, tg rtTarget, row *rtRow, res *rtResult) error {
	n := e.cfg.rtColdN
	names := make([]string, n+1)
	pkgs := make([][]byte, n+1)
	for i := range names {
		names[i] = fmt.Sprintf("rt-%s-%03d", tg.runtime, i)
		var err error
		if pkgs[i], err = tg.pkg(names[i]); err != nil {
			return err
		}
	}
	res.pkgBytes[tg.runtime] = len(pkgs[0])
	deployed := 0
	defer func() {
		for _, name := range names[:deployed] {
			if err := e.remove(ctx, t, name); err != nil && ctx.Err() == nil {
				benchkit.Logf("runtimes: delete %s: %v", name, err)
			}
		}
	}()

	// After the previous series' deletes, tern's children are the pools.
	row.poolBefore, row.poolReady = waitPool(ctx, t.PID(), row.poolWant)
	benchkit.Logf("runtimes %s: %d fresh functions (+1 warm-up), gap %s; tern has %d child processes (full pools: %d, ready: %v)",
		tg.runtime, n, e.cfg.gap, row.poolBefore, row.poolWant, row.poolReady)
	busy0, wall0 := benchkit.MachineBusy(), time.Now()
	for i := 0; i <= n; i++ {
		dep, err := e.deploy(ctx, t, pkgs[i])
		if err != nil {
			return fmt.Errorf("deploy %s: %w", names[i], err)
		}
		deployed++
		first, err := firstCall(ctx, t.URL+"/fn/"+names[i], tg.want)
		if err != nil {
			return fmt.Errorf("first call to %s: %w", names[i], err)
		}
		tag := " (warm-up, not counted)"
		if i > 0 {
			tag = ""
			row.cold = append(row.cold, first)
			row.deploy = append(row.deploy, dep)
		}
		benchkit.Logf("runtimes %s %2d: deploy %s, first call %s%s", tg.runtime, i, benchkit.Ms(dep), benchkit.Ms(first), tag)
		if err := benchkit.Sleep(ctx, e.cfg.gap); err != nil {
			return err
		}
	}
	row.coldWall = time.Since(wall0)
	row.coldBusy = busyShare(benchkit.MachineBusy()-busy0, row.coldWall)

	url := t.URL + "/fn/" + names[n]
	benchkit.Logf("runtimes %s: warm, c=1, %s warm-up + %s measured on %s", tg.runtime, e.cfg.warmup, e.cfg.rtDuration, names[n])
	r := benchkit.MeasureLoad(ctx, url, tg.want, 1, e.cfg.warmup, e.cfg.rtDuration, t.PID(), true)
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	r.Target = tg.runtime
	row.warm = r
	benchkit.Logf("runtimes %s: warm: %d ok (%.0f req/s), p50 %s, p99 %s, %d failed in window, %d during warm-up",
		tg.runtime, r.OK, r.RPS(), benchkit.Us(benchkit.Percentile(r.Lat, 50)), benchkit.Us(benchkit.Percentile(r.Lat, 99)), r.Failed(), r.WarmBad)
	if r.FirstBad != "" {
		benchkit.Logf("runtimes %s: first failure: %s", tg.runtime, r.FirstBad)
	}
	return nil
}

// firstCall sends one GET on a new connection and checks the answer: 200
// with body want, or any 200 when want is nil.
func firstCall(ctx context.Context, url string, want []byte) (time.Duration, error) {
	if want != nil {
		return benchkit.FirstRequest(ctx, url, want)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 40 * time.Second}
	s := time.Now()
	status, body, err := benchkit.Get(ctx, client, url, nil)
	d := time.Since(s)
	if err != nil {
		return d, err
	}
	if status != http.StatusOK {
		return d, fmt.Errorf("GET %s: HTTP %d %.200q", url, status, body)
	}
	return d, nil
}

// spawnToExit times bin args... from spawn to exit, in the environment tern
// gives its instances.
func (e *env) spawnToExit(ctx context.Context, name, bin string, args ...string) (time.Duration, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = benchkit.InstanceEnv()
	s := time.Now()
	c, err := e.cs.Start(name, cmd, false)
	if err != nil {
		return 0, err
	}
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		c.Stop(0)
		return 0, errors.New("still running after 20s")
	case <-ctx.Done():
		c.Stop(0)
		return 0, context.Cause(ctx)
	}
	d := time.Since(s)
	if code := c.ExitCode(); code != 0 {
		return 0, fmt.Errorf("exit status %d", code)
	}
	return d, nil
}

// pooledRuntimes is how many runtimes tern keeps a pool for on this host:
// nodejs, and python when python3 is on PATH.
func (e *env) pooledRuntimes() int {
	if _, err := exec.LookPath("python3"); err == nil {
		return 2
	}
	return 1
}
