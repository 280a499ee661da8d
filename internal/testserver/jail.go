package testserver

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Jailed instances (sandbox.Jail, on wherever tests run as root) see
// their own PID namespace, where the runtime is pid 1, and no file of the
// host's but their code, /tmp and the system directories. Tests tell
// instances apart by their instance id (AWS_LAMBDA_LOG_STREAM_NAME), find
// an instance's host processes by its function's uid (UIDProcs), and
// collect what functions record over loopback HTTP (Collector).

// UIDProcs lists the host pids of the live processes running as uid (a
// jailed function's instances: each function has a uid of its own).
func UIDProcs(uid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		var state string
		match := false
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "State:"); ok {
				state = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				f := strings.Fields(v)
				match = len(f) > 0 && f[0] == strconv.Itoa(uid)
			}
		}
		if match && !strings.HasPrefix(state, "Z") {
			out = append(out, pid)
		}
	}
	return out
}

// UIDProcsUnder lists, of UIDProcs(uid), the processes that descend from
// process ancestor: a tern's instances (its children) and what they
// started, not those of other terns whose functions got the same uid
// (every data dir numbers its functions' uids from the same base).
func UIDProcsUnder(uid, ancestor int) []int {
	var out []int
	for _, pid := range UIDProcs(uid) {
		for p, n := pid, 0; p > 1 && n < 64; p, n = parentPid(p), n+1 {
			if p == ancestor {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// parentPid is pid's parent, 0 if pid is gone.
func parentPid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command (field 2) may hold spaces and parentheses: fields are
	// counted from the last ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// Collector is a loopback HTTP server that keeps the lines POSTed to it:
// functions record what they did there (URL in their environment).
type Collector struct {
	URL string

	mu    sync.Mutex
	lines []string
}

// NewCollector starts a collector, stopped when the test ends.
func NewCollector(t testing.TB) *Collector {
	c := &Collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				c.lines = append(c.lines, l)
			}
		}
		c.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

// Lines returns a copy of the lines received so far, in order.
func (c *Collector) Lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// RecordJS is a Node.js function, record(line), that POSTs a line to the
// collector whose URL is in the RECORD_URL environment variable and
// resolves when the collector has it.
const RecordJS = `
const record = (line) => new Promise((resolve, reject) => {
  const req = require("http").request(process.env.RECORD_URL, {method: "POST"}, (res) => { res.resume(); res.on("end", resolve); });
  req.on("error", reject);
  req.end(String(line) + "\n");
});
`
