package server_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/logs"
	"github.com/ternhq/tern/internal/testserver"
)

// tmpJS writes e.mb MB to /tmp in 1 MB chunks (stopping at the first
// error) and says how much it wrote, the error, and the size of /tmp.
const tmpJS = `const fs = require("fs");
exports.handler = async (e) => {
  const st = fs.statfsSync("/tmp");
  const chunk = Buffer.alloc(1 << 20, 7);
  let written = 0, error = "";
  const f = fs.openSync("/tmp/fill", "w");
  try { for (; written < e.mb; written++) fs.writeSync(f, chunk); } catch (err) { error = err.code; }
  finally { fs.closeSync(f); fs.rmSync("/tmp/fill"); }
  return {written, error, sizeMB: Math.round(st.blocks * st.bsize / 1048576)};
};`

// TestTmpIsStorageNotMemory: /tmp is ephemeral storage of its own, sized
// by ephemeralStorage (the server's --tmp-size without it), never counted
// as the function's memory; full, it is ENOSPC.
func TestTmpIsStorageNotMemory(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.TmpMB = 64
	s := testserver.Start(t, cfg)
	if !s.Server.Jailed() {
		t.Skip("instances are not jailed here: /tmp is the host's")
	}
	for _, c := range s.Server.Isolation() {
		if c.Name == "/tmp on a disk of its own" && !c.On {
			t.Fatalf("/tmp is not on a disk here: %s", c.Why)
		}
	}
	for name, extra := range map[string]string{
		"tmpbig":   "memory: 128\nephemeralStorage: 512\n",
		"tmphuge":  "ephemeralStorage: 1024\n",
		"tmpsmall": "",
	} {
		s.Deploy(map[string]string{"tern.yaml": "name: " + name + "\nruntime: nodejs\nhandler: index.handler\ntimeout: 60s\n" + extra, "index.js": tmpJS})
	}
	type answer struct {
		Written, SizeMB int
		Error           string
	}
	call := func(name string, mb int) answer {
		t.Helper()
		status, _, out := s.Do("POST", "/v1/functions/"+name+"/invoke", strings.NewReader(`{"mb":`+strconv.Itoa(mb)+`}`), map[string]string{"Authorization": "Bearer " + s.Server.Token()})
		if status != 200 {
			t.Fatalf("%s: %d %s", name, status, out)
		}
		var a answer
		if err := json.Unmarshal(out, &a); err != nil {
			t.Fatalf("%s: %s", name, out)
		}
		return a
	}
	// 300 MB in /tmp of a 128 MB function: storage, not memory.
	if a := call("tmpbig", 300); a.Written != 300 || a.Error != "" || a.SizeMB < 480 || a.SizeMB > 512 {
		t.Errorf("128 MB function writing 300 MB to a 512 MB /tmp: %+v", a)
	}
	if a := call("tmphuge", 0); a.SizeMB < 990 || a.SizeMB > 1024 {
		t.Errorf("ephemeralStorage 1024: /tmp is %d MB", a.SizeMB)
	}
	if a := call("tmpsmall", 100); a.Error != "ENOSPC" || a.Written < 50 || a.Written >= 64 || a.SizeMB > 64 {
		t.Errorf("100 MB into the server's 64 MB /tmp: %+v, want ENOSPC after about 60 MB", a)
	}
	// Its REPORT counts the process's memory, not what it put in /tmp.
	re := regexp.MustCompile(`Max Memory Used: (\d+) MB`)
	used := -1
	testserver.Eventually(t, 10*time.Second, "tmpbig's REPORT line", func() bool {
		_ = s.Client.Logs(context.Background(), "tmpbig", client.LogQuery{}, func(e *logs.Entry) error {
			if m := re.FindStringSubmatch(e.Message); m != nil {
				used, _ = strconv.Atoi(m[1])
			}
			return nil
		})
		return used >= 0
	})
	if used > 128 || used == 0 {
		t.Errorf("Max Memory Used: %d MB for a 128 MB function that wrote 300 MB to /tmp", used)
	}
	t.Logf("Max Memory Used: %d MB", used)
}
