package server_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/testserver"
)

// A function that exits after reporting an uncaught error leaves an idle
// instance that is dead by the next request; that request must go to a
// fresh instance, not fail.
func TestNextRequestAfterUncaughtErrorSucceeds(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(fn("uncaught", "index.handler", map[string]string{"index.js": `
		exports.handler = async (e) => {
			if (e.rawPath === "/boom") { setImmediate(() => { throw new Error("async boom"); }); await new Promise(r => setTimeout(r, 50)); }
			return {statusCode: 200, body: "fine"};
		};`}))
	for i := range 10 {
		status, _, body := s.Do("GET", "/fn/uncaught/boom", nil, nil)
		if status != 502 {
			t.Fatalf("round %d: boom: %d %s", i, status, body)
		}
		status, _, body = s.Do("GET", "/fn/uncaught/", nil, nil)
		if status != 200 || string(body) != "fine" {
			t.Fatalf("round %d: the request after the uncaught error: %d %s", i, status, body)
		}
	}
}

// A child that leaves the instance's process group (setsid) and keeps its
// output open must neither survive the instance nor hang a timeout.
func TestDetachedGrandchildIsKilled(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: escaper\nruntime: nodejs\nhandler: index.handler\ntimeout: 2s\n",
		"index.js": `
		const { spawn } = require("child_process");
		exports.handler = async (e) => {
			const c = spawn("sleep", ["300"], { detached: true, stdio: "inherit" });
			if (e.rawPath === "/hang") await new Promise(() => setTimeout(() => {}, 1e9));
			return c.pid;
		};`,
	})
	out, err := s.Client.Invoke(context.Background(), "escaper", []byte(`{"rawPath":"/"}`))
	if err != nil {
		t.Fatal(err)
	}
	var child int
	if err := json.Unmarshal(out, &child); err != nil {
		t.Fatalf("pid %s", out)
	}
	start := time.Now()
	status, _, body := s.Do("GET", "/fn/escaper/hang", nil, nil)
	if status != 504 {
		t.Fatalf("hang: %d %s", status, body)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("the timeout took %s", d)
	}
	if err := s.Client.Delete(context.Background(), "escaper"); err != nil {
		t.Fatal(err)
	}
	testserver.Eventually(t, 10*time.Second, "the detached child "+strconv.Itoa(child)+" to be killed", func() bool {
		return !processAlive(child)
	})
}
