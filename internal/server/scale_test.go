package server_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/ternhq/tern/internal/testserver"
)

func instances(t *testing.T, s *testserver.Server, name string) (total, idle int) {
	t.Helper()
	raw, err := s.Client.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Instances []struct{ Instances, Idle int }
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	for _, p := range got.Instances {
		total += p.Instances
		idle += p.Idle
	}
	return total, idle
}

func TestIdleInstancesStopDownToMin(t *testing.T) {
	s := testserver.Start(t, testserver.Config(t.TempDir()))
	s.Deploy(map[string]string{
		"tern.yaml": "name: idler\nruntime: nodejs\nhandler: index.handler\nscale:\n  idle: 1s\n",
		"index.js":  `exports.handler = async () => ` + selfJS + `;`,
	})
	out, err := s.Client.Invoke(context.Background(), "idler", nil)
	if err != nil {
		t.Fatal(err)
	}
	var w whoami
	if err := json.Unmarshal(out, &w); err != nil {
		t.Fatal(err)
	}
	procs := w.hostPids()
	if len(procs) == 0 {
		t.Fatalf("no host process found for the instance (%s)", out)
	}
	if n, _ := instances(t, s, "idler"); n != 1 {
		t.Fatalf("instances after one call = %d", n)
	}
	testserver.Eventually(t, 10*time.Second, "the idle instance to stop", func() bool {
		n, _ := instances(t, s, "idler")
		return n == 0 && !w.anyAlive(procs)
	})
	// Scaled to zero, the next call starts a new instance.
	if _, err := s.Client.Invoke(context.Background(), "idler", nil); err != nil {
		t.Fatal(err)
	}

	// scale.min instances start at deploy and stay past the idle window.
	s.Deploy(map[string]string{
		"tern.yaml": "name: warm\nruntime: nodejs\nhandler: index.handler\nscale:\n  min: 2\n  idle: 1s\n",
		"index.js":  `exports.handler = async () => process.pid;`,
	})
	testserver.Eventually(t, 10*time.Second, "scale.min=2 instances to be warm", func() bool {
		_, idle := instances(t, s, "warm")
		return idle == 2
	})
	time.Sleep(1500 * time.Millisecond)
	if n, idle := instances(t, s, "warm"); n != 2 || idle != 2 {
		t.Errorf("after the idle window: %d instances, %d idle; want 2 kept warm", n, idle)
	}
	// A new version takes over the warm pool; the old one drains.
	s.Deploy(map[string]string{
		"tern.yaml": "name: warm\nruntime: nodejs\nhandler: index.handler\nscale:\n  min: 1\n  idle: 1s\n",
		"index.js":  `exports.handler = async () => "v2";`,
	})
	testserver.Eventually(t, 10*time.Second, "old version drained, new one warm", func() bool {
		n, idle := instances(t, s, "warm")
		return n == 1 && idle == 1
	})
}

// TestExternalNATS runs Tern against a separate NATS server (started here
// with JetStream on a loopback port) instead of the embedded one.
func TestExternalNATS(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(t.TempDir(), "js"), NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown) // after the Tern servers stop
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	cfg := testserver.Config(t.TempDir())
	cfg.NATSURL = ns.ClientURL()
	s := testserver.Start(t, cfg)
	s.Deploy(fn("ext", "index.handler", map[string]string{"index.js": `exports.handler = async () => ({statusCode: 200, body: "via external nats"});`}))
	if status, _, body := s.Do("GET", "/fn/ext", nil, nil); status != 200 || string(body) != "via external nats" {
		t.Fatalf("%d %s", status, body)
	}
	s.Stop()
	// A second Tern on the same NATS sees the function.
	cfg2 := testserver.Config(t.TempDir())
	cfg2.NATSURL = ns.ClientURL()
	s3 := testserver.Start(t, cfg2)
	if status, _, body := s3.Do("GET", "/fn/ext", nil, nil); status != 200 || string(body) != "via external nats" {
		t.Fatalf("second node: %d %s", status, body)
	}
}
