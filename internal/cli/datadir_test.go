package cli_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/archive"
	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/dirlock"
	"github.com/ternhq/tern/internal/testserver"
)

// TestSecondServerOnOneDataDirIsRefused starts a second `tern serve` on a
// running server's data dir: it must exit non-zero at once, naming the
// data dir and the first server's pid, and leave the first one whole (its
// next cold start still finds its code, its jail slots and its store).
func TestSecondServerOnOneDataDirIsRefused(t *testing.T) {
	requireNode(t)
	bin := buildTern(t)
	data := t.TempDir()
	first := startTern(t, bin, "first", "--listen", "127.0.0.1:"+freePort(t), "--data-dir", data)
	c := client.New(first.url, first.token(t))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, name := range []string{"before", "after"} {
		dir := testserver.WriteFunction(t, map[string]string{
			"tern.yaml": "name: " + name + "\nruntime: nodejs\nhandler: index.handler\n",
			"index.js":  `exports.handler = async (e) => ({n: e.n + 1});`,
		})
		var pkg bytes.Buffer
		if _, err := archive.Build(dir, &pkg); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Deploy(ctx, &pkg); err != nil {
			t.Fatalf("deploy %s: %v", name, err)
		}
	}
	if out, err := c.Invoke(ctx, "before", []byte(`{"n":1}`)); err != nil || string(out) != `{"n":2}` {
		t.Fatalf("invoke before: %s, %v", out, err)
	}
	// The files in the data dir but the store's and the jail's: the first
	// server's pool makes and removes jail slots (and their /tmp images) by
	// itself at any time. A sweep by the second server would still show:
	// the warm instance's code mount going, which the warm call after it
	// checks.
	churns := func(p string) bool {
		rel, err := filepath.Rel(data, p)
		if err != nil {
			return false
		}
		top, _, _ := strings.Cut(rel, string(filepath.Separator))
		return top == "nats" || top == "jail" || top == "jail.disks"
	}
	entries := func() []string {
		var names []string
		filepath.WalkDir(data, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !churns(p) {
				names = append(names, p)
			}
			return nil
		})
		return names
	}
	files := entries()

	// Refused at once; without the lock it would serve until killed.
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	second := exec.CommandContext(sctx, bin, "serve", "--listen", "127.0.0.1:"+freePort(t), "--data-dir", data)
	second.Env = append(os.Environ(), "HOME="+t.TempDir(), "TERN_TOKEN=", "TERN_NATS_URL=", "TERN_DATA_DIR=")
	var stderr bytes.Buffer
	second.Stderr = &stderr
	start := time.Now()
	err := second.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("second tern serve on the same data dir: %v, want a non-zero exit\n%s", err, stderr.String())
	}
	msg := stderr.String()
	for _, want := range []string{data, "in use", "process " + strconv.Itoa(first.cmd.Process.Pid)} {
		if !strings.Contains(msg, want) {
			t.Errorf("second server's error does not say %q:\n%s", want, msg)
		}
	}
	t.Logf("refused in %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(msg))
	if got := entries(); strings.Join(got, "\n") != strings.Join(files, "\n") {
		t.Errorf("the refused server changed the data dir's files:\nbefore %v\nafter  %v", files, got)
	}
	b, _ := os.ReadFile(filepath.Join(data, dirlock.File))
	if strings.TrimSpace(string(b)) != strconv.Itoa(first.cmd.Process.Pid) {
		t.Errorf("lock file holds %q, want the first server's pid %d", b, first.cmd.Process.Pid)
	}

	// The first server is whole: a cold start of the other function, and
	// the warm one, still work.
	if out, err := c.Invoke(ctx, "after", []byte(`{"n":41}`)); err != nil || string(out) != `{"n":42}` {
		t.Errorf("cold start after the refused server: %s, %v", out, err)
	}
	if out, err := c.Invoke(ctx, "before", []byte(`{"n":2}`)); err != nil || string(out) != `{"n":3}` {
		t.Errorf("warm invoke after the refused server: %s, %v", out, err)
	}
	first.stop(t)
	// Once the first stopped, the dir is free.
	again := startTern(t, bin, "again", "--listen", "127.0.0.1:"+freePort(t), "--data-dir", data)
	ca := client.New(again.url, again.token(t))
	if out, err := ca.Invoke(ctx, "after", []byte(`{"n":0}`)); err != nil || string(out) != `{"n":1}` {
		t.Errorf("invoke on the restarted server: %s, %v", out, err)
	}
}
