package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

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
