package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/testserver"
)

func deployVersions(t *testing.T, s *testserver.Server, name string, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		s.Deploy(fn(name, "index.handler", map[string]string{"index.js": fmt.Sprintf(`exports.handler = async () => ({statusCode: 200, body: "v%d"});`, i)}))
	}
}

func body(t *testing.T, s *testserver.Server, path string) string {
	t.Helper()
	status, _, b := s.Do("GET", path, nil, nil)
	if status != 200 {
		t.Fatalf("GET %s: %d %s", path, status, b)
	}
	return string(b)
}

func TestAliasesWeightsAndRollback(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	s := testserver.Start(t, cfg)
	deployVersions(t, s, "multi", 3)
	ctx := context.Background()

	if got := body(t, s, "/fn/multi"); got != "v3" {
		t.Fatalf("current: %s", got)
	}
	if got := body(t, s, "/fn/multi@1/x"); got != "v1" {
		t.Fatalf("by version: %s", got)
	}
	if _, err := s.Client.SetAlias(ctx, "multi", "prod", []registry.Route{{Version: 2, Weight: 100}}); err != nil {
		t.Fatal(err)
	}
	if got := body(t, s, "/fn/multi@prod"); got != "v2" {
		t.Fatalf("alias: %s", got)
	}
	if out, err := s.Client.Invoke(ctx, "multi@prod", nil); err != nil || string(out) != `{"statusCode":200,"body":"v2"}` {
		t.Fatalf("API invoke of an alias: %s %v", out, err)
	}

	// A 90/10 split over 1,000 calls.
	if _, err := s.Client.SetAlias(ctx, "multi", "canary", []registry.Route{{Version: 3, Weight: 90}, {Version: 2, Weight: 10}}); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	hc := &http.Client{}
	for range 1000 {
		resp, err := hc.Get(s.URL() + "/fn/multi@canary")
		if err != nil {
			t.Fatal(err)
		}
		var b [8]byte
		n, _ := resp.Body.Read(b[:])
		resp.Body.Close()
		counts[string(b[:n])]++
	}
	// Binomial(1000, 0.1): mean 100, sd 9.5; 60..140 is over 4 sd.
	if counts["v2"] < 60 || counts["v2"] > 140 || counts["v2"]+counts["v3"] != 1000 {
		t.Errorf("90/10 split gave %v", counts)
	}

	for _, c := range []struct {
		name, alias string
		routes      []registry.Route
	}{
		{"unknown version", "x", []registry.Route{{Version: 9, Weight: 100}}},
		{"weights not 100", "x", []registry.Route{{Version: 1, Weight: 50}, {Version: 2, Weight: 49}}},
		{"same version twice", "x", []registry.Route{{Version: 1, Weight: 50}, {Version: 1, Weight: 50}}},
		{"three versions", "x", []registry.Route{{Version: 1, Weight: 40}, {Version: 2, Weight: 30}, {Version: 3, Weight: 30}}},
		{"numeric name", "7", []registry.Route{{Version: 1, Weight: 100}}},
	} {
		_, err := s.Client.SetAlias(ctx, "multi", c.alias, c.routes)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != 400 || ce.Code != "invalid_alias" {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if status, _, b := s.Do("GET", "/fn/multi@nope", nil, nil); status != 404 {
		t.Errorf("unknown alias: %d %s", status, b)
	}

	// Rollback: 3 → 2 → 1, then nothing older.
	for _, want := range []string{"v2", "v1"} {
		if _, err := s.Client.Rollback(ctx, "multi"); err != nil {
			t.Fatal(err)
		}
		if got := body(t, s, "/fn/multi"); got != want {
			t.Fatalf("after rollback: %s, want %s", got, want)
		}
	}
	_, err := s.Client.Rollback(ctx, "multi")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 409 {
		t.Errorf("rollback past the oldest: %v", err)
	}

	// Aliases survive a restart; deleting the function removes them.
	s.Stop()
	s2 := testserver.Start(t, cfg)
	if got := body(t, s2, "/fn/multi@prod"); got != "v2" {
		t.Fatalf("alias after restart: %s", got)
	}
	if got := body(t, s2, "/fn/multi"); got != "v1" {
		t.Fatalf("rolled-back current after restart: %s", got)
	}
	if err := s2.Client.Delete(ctx, "multi"); err != nil {
		t.Fatal(err)
	}
	deployVersions(t, s2, "multi", 1)
	if status, _, _ := s2.Do("GET", "/fn/multi@prod", nil, nil); status != 404 {
		t.Errorf("an alias outlived its function: %d", status)
	}
}

// versionInstances returns the instances of each of a function's versions
// on the server.
func versionInstances(t *testing.T, s *testserver.Server, name string) map[int]int {
	t.Helper()
	st, err := s.Client.Stats(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, p := range st.Instances {
		out[p.Version] += p.Instances
	}
	return out
}

// deploySlow deploys a version of name whose calls take 200 ms and answer
// body, kept idle for an hour.
func deploySlow(s *testserver.Server, name, body string) {
	s.Deploy(map[string]string{
		"tern.yaml": "name: " + name + "\nruntime: nodejs\nhandler: index.handler\nscale:\n  idle: 1h\n",
		"index.js":  `exports.handler = async () => { await new Promise(r => setTimeout(r, 200)); return {statusCode: 200, body: "` + body + `"}; };`,
	})
}

// warm runs n calls at once so that the current version has several
// instances, and returns how many it has.
func warm(t *testing.T, s *testserver.Server, name string, n int) int {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, _, b := s.Do("GET", "/fn/"+name, nil, nil); status != 200 {
				t.Errorf("warming %s: %d %s", name, status, b)
			}
		}()
	}
	wg.Wait()
	return versionInstances(t, s, name)[1]
}

// TestDeployDrainsUnroutedVersionsAliasKeepsThem: after a deploy under
// load, the old version's instances stop at once rather than after the
// idle timeout (an hour here), while the new one serves; an alias on the
// old version keeps them until it goes.
func TestDeployDrainsUnroutedVersionsAliasKeepsThem(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	ctx := context.Background()

	deploySlow(s, "drain", "v1")
	if n := warm(t, s, "drain", 4); n < 2 {
		t.Fatalf("v1 has %d instances after 4 calls at once, want several", n)
	}
	// Calls keep coming while v2 is deployed.
	lctx, stop := context.WithCancel(ctx)
	var load sync.WaitGroup
	for range 3 {
		load.Add(1)
		go func() {
			defer load.Done()
			for lctx.Err() == nil {
				if status, _, b := s.Do("GET", "/fn/drain", nil, nil); status != 200 {
					t.Errorf("under load: %d %s", status, b)
					return
				}
			}
		}()
	}
	deploySlow(s, "drain", "v2")
	testserver.Eventually(t, 10*time.Second, "v2 serving", func() bool {
		status, _, b := s.Do("GET", "/fn/drain", nil, nil)
		return status == 200 && string(b) == "v2"
	})
	stop()
	load.Wait()
	testserver.Eventually(t, 20*time.Second, "v1's instances gone", func() bool { return versionInstances(t, s, "drain")[1] == 0 })
	if n := versionInstances(t, s, "drain")[2]; n == 0 {
		t.Errorf("v2 has no instances left")
	}
	// name@1 still answers, on a new instance that is not kept.
	if got := body(t, s, "/fn/drain@1"); got != "v1" {
		t.Fatalf("drain@1: %s", got)
	}
	testserver.Eventually(t, 10*time.Second, "v1's explicit instance gone", func() bool { return versionInstances(t, s, "drain")[1] == 0 })

	// An alias on v1 keeps its instances across the deploy (which drains
	// before it returns, so looking right after is enough).
	deploySlow(s, "kept", "v1")
	n := warm(t, s, "kept", 4)
	if _, err := s.Client.SetAlias(ctx, "kept", "stable", []registry.Route{{Version: 1, Weight: 100}}); err != nil {
		t.Fatal(err)
	}
	deploySlow(s, "kept", "v2")
	if got := versionInstances(t, s, "kept")[1]; got != n {
		t.Fatalf("aliased v1 has %d instances after the deploy, want its %d", got, n)
	}
	if got := body(t, s, "/fn/kept@stable"); got != "v1" {
		t.Fatalf("kept@stable: %s", got)
	}
	// A split keeps it too; without the alias it drains.
	if _, err := s.Client.SetAlias(ctx, "kept", "stable", []registry.Route{{Version: 2, Weight: 90}, {Version: 1, Weight: 10}}); err != nil {
		t.Fatal(err)
	}
	if got := versionInstances(t, s, "kept")[1]; got == 0 {
		t.Fatal("v1 drained while a split routes to it")
	}
	if err := s.Client.DeleteAlias(ctx, "kept", "stable"); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 10*time.Second, "v1 drained once no alias routes to it", func() bool { return versionInstances(t, s, "kept")[1] == 0 })
}
