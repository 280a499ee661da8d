package server_test

import (
	"bytes"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/testserver"
)

// With concurrency: 8 one node process serves 8 overlapping invocations.
func TestConcurrentInvocationsShareAnInstance(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: overlap\nruntime: nodejs\nhandler: index.handler\nconcurrency: 8\n",
		"index.js": `exports.handler = async (e, ctx) => {
			console.log("begin", ctx.awsRequestId);
			await new Promise(r => setTimeout(r, 300));
			console.log("end", ctx.awsRequestId);
			return {statusCode: 200, body: String(process.pid)};
		};`,
	})
	if status, _, _ := s.Do("GET", "/fn/overlap", nil, nil); status != 200 { // start the instance
		t.Fatalf("warm-up: %d", status)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	pids := map[string]int{}
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
			pids[b.String()]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if len(pids) != 1 {
		t.Errorf("8 overlapping invocations ran in %d processes, want 1: %v", len(pids), pids)
	}
	if took > 1200*time.Millisecond {
		t.Errorf("8 invocations of 300 ms took %s: they did not overlap", took)
	}
	st, err := s.Client.Stats(t.Context(), "overlap")
	if err != nil {
		t.Fatal(err)
	}
	if st.Counts.ColdStarts != 1 || st.Counts.Invocations != 9 || len(st.Instances) != 1 || st.Instances[0].Instances != 1 {
		t.Errorf("stats %+v", st)
	}
}
