package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/testserver"
)

// With concurrency: 8 one node process serves 8 overlapping invocations.
func TestConcurrentInvocationsShareAnInstance(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: overlap\nruntime: nodejs\nhandler: index.handler\nconcurrency: 8\ntimeout: 30s\n",
		// Each invocation waits until all 8 run: they end only if they overlap.
		"index.js": `let started = 0, release;
		const all = new Promise(r => { release = r; });
		exports.handler = async (e, ctx) => {
			if (e.rawPath === "/warm") return {statusCode: 200, body: "warm"};
			console.log("begin", ctx.awsRequestId);
			if (++started === 8) release();
			await all;
			console.log("end", ctx.awsRequestId);
			return {statusCode: 200, body: String(process.env.AWS_LAMBDA_LOG_STREAM_NAME)};
		};`,
	})
	if status, _, _ := s.Do("GET", "/fn/overlap/warm", nil, nil); status != 200 { // start the instance
		t.Fatalf("warm-up: %d", status)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]int{} // instance id: invocations it ran
	start := time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(s.URL() + "/fn/overlap")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			mu.Lock()
			ids[b.String()]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if len(ids) != 1 || ids["undefined"] != 0 {
		t.Errorf("8 overlapping invocations ran in %d instances, want 1: %v", len(ids), ids)
	}
	t.Logf("8 overlapping invocations answered in %s", took)
	st, err := s.Client.Stats(t.Context(), "overlap")
	if err != nil {
		t.Fatal(err)
	}
	if st.Counts.ColdStarts != 1 || st.Counts.Invocations != 9 || len(st.Instances) != 1 || st.Instances[0].Instances != 1 {
		t.Errorf("stats %+v", st)
	}
}

// An uncaught error in one invocation ends the instance; the others that
// were running on it get Runtime.ExitError, and events not yet run go to
// another instance instead of failing.
func TestFatalErrorWithConcurrency(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: fragile\nruntime: nodejs\nhandler: index.handler\nconcurrency: 4\n",
		"index.js": `exports.handler = async (e) => {
			if (e.rawPath === "/boom") { setTimeout(() => { throw new Error("boom"); }, 20); await new Promise(r => setTimeout(r, 200)); }
			await new Promise(r => setTimeout(r, 30));
			return {statusCode: 200, body: "ok"};
		};`,
	})
	for round := range 3 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		bad := []string{}
		for i := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				path := "/fn/fragile/"
				if i == 0 {
					path = "/fn/fragile/boom"
				}
				resp, err := http.Get(s.URL() + path)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				var b bytes.Buffer
				_, _ = b.ReadFrom(resp.Body)
				if i == 0 {
					return // the culprit: 502 with its own error
				}
				if resp.StatusCode != 200 && resp.Header.Get("X-Tern-Error-Type") != "Runtime.ExitError" {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%d %s", resp.StatusCode, b.String()))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(bad) > 0 {
			t.Errorf("round %d: %d answers neither ok nor Runtime.ExitError: %v", round, len(bad), bad)
		}
	}
}

// An Express-style handler (style: http) answers through /fn with req/res.
func TestExpressStyleHandler(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: exp\nruntime: nodejs\nhandler: index.handler\nstyle: http\n",
		"index.js": `module.exports = (req, res, next) => {
			if (req.path === "/none") return;
			if (req.path === "/next") return next();
			if (req.path === "/fail") return next(new Error("not for the caller"));
			if (req.path === "/go") return res.redirect("/fn/exp/items?x=1");
			res.status(201).set("X-Seen", req.method + " " + req.url).json({ body: req.body, q: req.query });
		};`,
	})
	status, h, body := s.Do("POST", "/fn/exp/items?x=1", strings.NewReader(`{"a":1}`), map[string]string{"Content-Type": "application/json"})
	if status != 201 || h.Get("X-Seen") != "POST /items?x=1" || string(body) != `{"body":{"a":1},"q":{"x":"1"}}` {
		t.Fatalf("%d %v %s", status, h, body)
	}
	status, h, body = s.Do("GET", "/fn/exp/none", nil, nil)
	if status != 502 || h.Get("X-Tern-Error-Type") != "Runtime.NoResponse" {
		t.Fatalf("no response: %d %v %s", status, h, body)
	}
	// next() and next(err) as Express's final handler; a redirect.
	status, _, body = s.Do("GET", "/fn/exp/next", nil, nil)
	if status != 404 || !strings.Contains(string(body), "Cannot GET /next") {
		t.Errorf("next(): %d %s", status, body)
	}
	status, _, body = s.Do("GET", "/fn/exp/fail", nil, nil)
	if status != 500 || strings.Contains(string(body), "not for the caller") {
		t.Errorf("next(err): %d %s", status, body)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(s.URL() + "/fn/exp/go")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/fn/exp/items?x=1" {
		t.Errorf("redirect: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestExitTakesConcurrentInvocationsWithIt: with concurrency above 1, an
// invocation that ends the process fails the others running beside it in
// the same shape (Runtime.ExitError, with its log line), not as if Tern
// had stopped the instance.
func TestExitTakesConcurrentInvocationsWithIt(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	col := testserver.NewCollector(t)
	s.Deploy(map[string]string{
		"tern.yaml": "name: cx\nruntime: nodejs\nhandler: index.handler\nconcurrency: 16\nscale: {max: 1}\ntimeout: 60s\nenvironment: {RECORD_URL: \"" + col.URL + "\"}\n",
		"index.js": testserver.RecordJS + `
			exports.handler = async (e) => {
				if (e.exit) { process.exit(3); }
				await record("running");
				await new Promise(r => setTimeout(r, 60000)); // until the exit takes it
			};`,
	})
	bearer := map[string]string{"Authorization": "Bearer " + s.Server.Token()}
	const n = 4
	type answer struct {
		status int
		h      http.Header
		body   []byte
	}
	answers := make(chan answer, n)
	for range n {
		go func() {
			status, h, body := s.Do("POST", "/v1/functions/cx/invoke", strings.NewReader(`{}`), bearer)
			answers <- answer{status, h, body}
		}()
	}
	testserver.Eventually(t, 30*time.Second, "the invocations to run on the one instance", func() bool { return len(col.Lines()) == n })
	if status, h, _ := s.Do("POST", "/v1/functions/cx/invoke", strings.NewReader(`{"exit":true}`), bearer); status != 502 || h.Get("X-Tern-Error-Type") != "Runtime.ExitError" {
		t.Fatalf("the exiting invocation: %d %v", status, h)
	}
	for range n {
		a := <-answers
		var e struct{ ErrorType, ErrorMessage string }
		if a.status != 502 || a.h.Get("X-Tern-Function-Error") != "Unhandled" || a.h.Get("X-Tern-Error-Type") != "Runtime.ExitError" ||
			json.Unmarshal(a.body, &e) != nil || e.ErrorMessage != "Runtime exited with error: exit status 3" {
			t.Errorf("an invocation beside the exit: %d %v %s", a.status, a.h, a.body)
		}
	}
	testserver.Eventually(t, 10*time.Second, "an error line for each of the five", func() bool {
		lines := 0
		_ = s.Client.Logs(context.Background(), "cx", client.LogQuery{}, func(en *logs.Entry) error {
			if strings.Contains(en.Message, "Runtime.ExitError: Runtime exited with error: exit status 3") {
				lines++
			}
			return nil
		})
		return lines == n+1
	})
}
