package server_test

import (
	"context"
	"testing"

	"github.com/ternhq/tern/internal/testserver"
)

func TestStatsCounts(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(fn("counted", "index.handler", map[string]string{"index.js": `
		exports.handler = async (e) => { if (e.rawPath === "/fail") throw new Error("no"); return {statusCode: 200, body: "ok"}; };`}))
	for range 3 {
		if status, _, body := s.Do("GET", "/fn/counted", nil, nil); status != 200 {
			t.Fatalf("%d %s", status, body)
		}
	}
	if status, _, _ := s.Do("GET", "/fn/counted/fail", nil, nil); status != 502 {
		t.Fatalf("fail: %d", status)
	}
	st, err := s.Client.Stats(context.Background(), "counted")
	if err != nil {
		t.Fatal(err)
	}
	c := st.Counts
	if c.Invocations != 4 || c.ColdStarts != 1 || c.WarmStarts != 3 || c.FunctionErrors != 1 || c.Throttled != 0 || c.Queued != 1 {
		t.Errorf("counts %+v: want 4 invocations, 1 cold (queued while it started), 3 warm, 1 function error", c)
	}
	if len(st.Instances) != 1 || st.Instances[0].Instances != 1 {
		t.Errorf("instances %+v", st.Instances)
	}
	if _, err := s.Client.Stats(context.Background(), "nope"); err == nil {
		t.Error("stats of an unknown function answered")
	}
}
