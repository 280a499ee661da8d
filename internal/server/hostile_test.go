package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ternhq/tern/internal/client"
	"github.com/ternhq/tern/internal/testserver"
	"github.com/ternhq/tern/internal/uids"
)

// needJail skips the test unless s jails its instances; as root (CI) the
// jail must be on.
func needJail(t *testing.T, s *testserver.Server) {
	t.Helper()
	for _, c := range s.Server.Isolation() {
		if c.Name == "mount namespace (read-only code, private /tmp)" && !c.On {
			if os.Geteuid() == 0 {
				t.Fatalf("tern runs as root but does not jail instances: %s", c.Why)
			}
			t.Skipf("instances are not jailed here: %s", c.Why)
		}
	}
}

// attackerJS tries what event.what names and throws the error it met, or
// answers "LEAK: ..." if the attempt worked.
const attackerJS = `
const fs = require("fs");
const attempts = {
  readFile: (e) => fs.readFileSync(e.path, "utf8"),
  listDir: (e) => fs.readdirSync(e.path).join(","),
  signal: (e) => { process.kill(e.pid, "SIGKILL"); return "sent"; },
  writeFile: (e) => { fs.writeFileSync(e.path, "x"); return "written"; },
  fillTmp: (e) => {
    const chunk = Buffer.alloc(1 << 20, 1);
    const f = fs.openSync("/tmp/fill", "w");
    try { for (let i = 0; i < e.mb; i++) fs.writeSync(f, chunk); } finally { fs.closeSync(f); fs.rmSync("/tmp/fill"); }
    return "wrote " + e.mb + " MB";
  },
  // Talk to the store's NATS client port, unauthenticated.
  nats: (e) => new Promise((resolve, reject) => {
    const sock = require("net").connect(e.port, "127.0.0.1");
    let got = "";
    sock.setTimeout(3000, () => { sock.destroy(); reject(Object.assign(new Error("ETIMEDOUT"), {code: "ETIMEDOUT"})); });
    sock.on("data", (d) => {
      got += d;
      if (got.includes("INFO") && !got.includes("sent")) { got += "sent"; sock.write("CONNECT {\"verbose\":false}\r\nPING\r\n"); }
      if (got.includes("Authorization Violation")) { sock.destroy(); reject(Object.assign(new Error("EAUTH: " + got.slice(-60)), {code: "EAUTH"})); }
      if (got.includes("PONG")) { sock.destroy(); resolve("connected to NATS: " + got.slice(0, 80)); }
    });
    sock.on("error", (err) => reject(err));
  }),
  // Take the next event of another instance from its Runtime API.
  runtimeAPI: (e) => new Promise((resolve, reject) => {
    const req = require("http").get("http://" + e.addr + "/2018-06-01/runtime/invocation/next", (res) => {
      let body = ""; res.on("data", (d) => body += d); res.on("end", () => resolve(res.statusCode + " " + body));
    });
    req.setTimeout(3000, () => req.destroy(Object.assign(new Error("timed out"), {code: "ETIMEDOUT"})));
    req.on("error", (err) => reject(Object.assign(new Error(err.code + ": " + err.message), {code: err.code})));
  }),
};
exports.handler = async (e) => {
  if (e.what === "whoami") {
    const status = fs.readFileSync("/proc/self/status", "utf8");
    const field = (k) => (new RegExp("^" + k + ":\\s*(.*)$", "m").exec(status) || [])[1];
    return {uid: process.getuid(), gid: process.getgid(), pid: process.pid, cwd: process.cwd(),
      capEff: field("CapEff"), capPrm: field("CapPrm"), noNewPrivs: field("NoNewPrivs"), seccomp: field("Seccomp"),
      task: fs.readdirSync("/var/task").sort(), secret: process.env.VICTIM_SECRET || null};
  }
  return "LEAK: " + await attempts[e.what](e);
};
`

// syscallsPy makes, through ctypes, syscalls a function never needs and
// answers the errno of each (0: it worked).
const syscallsPy = `
import ctypes, os

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
SYS = {"ptrace": 101, "bpf": 321, "init_module": 175, "kexec_load": 246, "reboot": 169, "setns": 308}


def errno_of(f):
    ctypes.set_errno(0)
    r = f()
    return 0 if r >= 0 else ctypes.get_errno()


def handler(event, context):
    out = {
        "unshare_user": errno_of(lambda: libc.unshare(CLONE_NEWUSER)),
        "unshare_mount": errno_of(lambda: libc.unshare(CLONE_NEWNS)),
        "mount_tmpfs": errno_of(lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
        "chroot": errno_of(lambda: libc.chroot(b"/tmp")),
        "setuid_root": errno_of(lambda: libc.setuid(0)),
        "ptrace_traceme": errno_of(lambda: libc.syscall(SYS["ptrace"], 0, 0, 0, 0)),
        "bpf": errno_of(lambda: libc.syscall(SYS["bpf"], 0, 0, 0)),
        "init_module": errno_of(lambda: libc.syscall(SYS["init_module"], 0, 0, 0)),
        "kexec_load": errno_of(lambda: libc.syscall(SYS["kexec_load"], 0, 0, 0, 0)),
        "reboot": errno_of(lambda: libc.syscall(SYS["reboot"], 0xfee1dead, 672274793, 0x4321fedc, 0)),
        "setns": errno_of(lambda: libc.syscall(SYS["setns"], 0, 0)),
        "io_uring_setup": errno_of(lambda: libc.syscall(425, 1, ctypes.create_string_buffer(120))),
    }
    sig = ctypes.c_int(0)
    libc.prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
    out["pdeathsig"] = sig.value
    return out
`

// TestHostileFunctions runs functions that try to reach past their jail:
// another function's code and secrets, the data dir, the admin token,
// tern's own process, the code they run, /tmp past its size, the
// syscalls the seccomp filter denies. Each attempt fails with the error
// the jail gives, the function's error is reported as a function error,
// and tern and the other function answer throughout.
func TestHostileFunctions(t *testing.T) {
	dir := t.TempDir()
	cfg := testserver.Config(dir)
	cfg.TmpMB = 16
	cfg.NATSListen = "127.0.0.1:0" // the store's client port, on the loopback functions share
	s := testserver.Start(t, cfg)
	needJail(t, s)

	// The victim: code with a marker file, a secret.
	const marker = "victim-code-7d1f"
	s.Deploy(fn("victim", "index.handler", map[string]string{
		"index.js":   `exports.handler = async (e) => e.what === "api" ? process.env.AWS_LAMBDA_RUNTIME_API : e.what === "uid" ? process.getuid() : {statusCode: 200, body: "victim ok"};`,
		"marker.txt": marker,
	}))
	if err := s.Client.SetSecret(context.Background(), "victim", "VICTIM_SECRET", "s3cr3t-9c2e"); err != nil {
		t.Fatal(err)
	}
	s.Deploy(fn("attacker", "index.handler", map[string]string{"index.js": attackerJS}))
	s.Deploy(map[string]string{"tern.yaml": "name: sys\nruntime: python\nhandler: app.handler\n", "app.py": syscallsPy})

	victimOK := func(t *testing.T) {
		t.Helper()
		if status, _, body := s.Do("GET", "/fn/victim", nil, nil); status != 200 || string(body) != "victim ok" {
			t.Fatalf("the victim after the attempt: %d %s", status, body)
		}
		if status, _, _ := s.Do("GET", "/healthz", nil, nil); status != 200 {
			t.Fatalf("healthz after the attempt: %d", status)
		}
	}
	victimOK(t)

	// Where the victim's code is on the host.
	var victimCode string
	_ = filepath.WalkDir(filepath.Join(dir, "code"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "marker.txt" {
			victimCode = p
		}
		return nil
	})
	if victimCode == "" {
		t.Fatal("the victim's code is not in the code cache")
	}

	// Who the attacker is: its own uid (not root, not the victim's), no
	// capabilities, no_new_privs, a seccomp filter, only its own code.
	var who struct {
		UID, GID, Pid       int
		Cwd                 string
		CapEff, CapPrm      string
		NoNewPrivs, Seccomp string
		Task                []string
		Secret              *string
	}
	out, err := s.Client.Invoke(context.Background(), "attacker", []byte(`{"what":"whoami"}`))
	if err != nil || json.Unmarshal(out, &who) != nil {
		t.Fatalf("whoami: %v %s", err, out)
	}
	t.Logf("attacker: %+v", who)
	if who.UID < uids.Lowest || who.GID != who.UID || who.Pid != 1 || who.Cwd != "/var/task" {
		t.Errorf("attacker runs as uid %d gid %d pid %d in %s; want its own uid (>= %d), pid 1 in its namespace, /var/task", who.UID, who.GID, who.Pid, who.Cwd, uids.Lowest)
	}
	if strings.Trim(who.CapEff, "0") != "" || strings.Trim(who.CapPrm, "0") != "" || who.NoNewPrivs != "1" || who.Seccomp != "2" {
		t.Errorf("attacker has CapEff %s CapPrm %s NoNewPrivs %s Seccomp %s; want no capabilities, no_new_privs and a filter", who.CapEff, who.CapPrm, who.NoNewPrivs, who.Seccomp)
	}
	if strings.Join(who.Task, ",") != "index.js,tern.yaml" || who.Secret != nil {
		t.Errorf("attacker sees code %v and secret %v; want only its own code and no secret", who.Task, who.Secret)
	}
	for _, pid := range testserver.UIDProcsUnder(who.UID, os.Getpid()) {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if !strings.Contains(string(b), "NoNewPrivs:\t1") {
			t.Errorf("host process %d of the attacker's uid lacks no_new_privs", pid)
		}
	}
	out, err = s.Client.Invoke(context.Background(), "victim", []byte(`{"what":"uid"}`))
	if victimUID, _ := strconv.Atoi(string(out)); err != nil || victimUID < uids.Lowest || victimUID == who.UID {
		t.Errorf("the victim runs as uid %s (%v), the attacker as %d: want a uid of its own", out, err, who.UID)
	}

	// The victim's Runtime API address, which the attacker could find by
	// scanning loopback ports.
	out, err = s.Client.Invoke(context.Background(), "victim", []byte(`{"what":"api"}`))
	var victimAPI string
	if err != nil || json.Unmarshal(out, &victimAPI) != nil || victimAPI == "" {
		t.Fatalf("the victim's Runtime API: %v %s", err, out)
	}
	natsURL, err := url.Parse(s.NATSURL())
	if err != nil || natsURL.Port() == "" {
		t.Fatalf("NATS URL %q: %v", s.NATSURL(), err)
	}
	ternPid := os.Getpid()
	for _, c := range []struct {
		name  string
		event map[string]any
		want  string // the error code the attempt must meet
	}{
		{"read another function's code", map[string]any{"what": "readFile", "path": victimCode}, "ENOENT"},
		{"list the code cache", map[string]any{"what": "listDir", "path": filepath.Join(dir, "code")}, "ENOENT"},
		{"list the data dir", map[string]any{"what": "listDir", "path": dir}, "ENOENT"},
		{"read the admin token", map[string]any{"what": "readFile", "path": filepath.Join(dir, "admin.token")}, "ENOENT"},
		{"read the secrets key", map[string]any{"what": "readFile", "path": filepath.Join(dir, "secret.key")}, "ENOENT"},
		{"read tern's environment", map[string]any{"what": "readFile", "path": "/proc/" + strconv.Itoa(ternPid) + "/environ"}, "ENOENT"},
		{"read the host's shadow file", map[string]any{"what": "readFile", "path": "/etc/shadow"}, "EACCES"},
		{"signal tern", map[string]any{"what": "signal", "pid": ternPid}, "ESRCH"},
		{"rewrite its own code", map[string]any{"what": "writeFile", "path": "/var/task/index.js"}, "EROFS"},
		{"write outside /tmp", map[string]any{"what": "writeFile", "path": "/etc/tern-was-here"}, "EROFS"},
		{"fill /tmp past its size", map[string]any{"what": "fillTmp", "mb": 32}, "ENOSPC"},
		{"take another function's events", map[string]any{"what": "runtimeAPI", "addr": victimAPI}, "ECONNRESET"},
		{"use the store without its token", map[string]any{"what": "nats", "port": natsURL.Port()}, "EAUTH"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev, _ := json.Marshal(c.event)
			out, err := s.Client.Invoke(context.Background(), "attacker", ev)
			var fe *client.FunctionError
			if !errors.As(err, &fe) {
				t.Fatalf("the attempt worked: %v %s", err, out)
			}
			var body struct{ ErrorType, ErrorMessage string }
			if json.Unmarshal(fe.Body, &body) != nil || body.ErrorType == "" || !strings.Contains(body.ErrorMessage, c.want) {
				t.Errorf("error %s, want a function error with %s", fe.Body, c.want)
			}
			victimOK(t)
		})
	}

	// A /tmp within its size works, and is the instance's own.
	if out, err := s.Client.Invoke(context.Background(), "attacker", []byte(`{"what":"fillTmp","mb":8}`)); err != nil || string(out) != `"LEAK: wrote 8 MB"` {
		t.Errorf("8 MB in a 16 MB /tmp: %v %s", err, out)
	}

	// Denied syscalls fail with EPERM (1), also for a python function.
	out, err = s.Client.Invoke(context.Background(), "sys", nil)
	var errnos map[string]int
	if err != nil || json.Unmarshal(out, &errnos) != nil || len(errnos) == 0 {
		t.Fatalf("syscalls: %v %s", err, out)
	}
	if errnos["pdeathsig"] != 9 {
		t.Errorf("the python instance's parent-death signal is %d, want SIGKILL (9): it would outlive tern", errnos["pdeathsig"])
	}
	delete(errnos, "pdeathsig")
	for name, e := range errnos {
		if e != 1 {
			t.Errorf("%s: errno %d, want EPERM (1)", name, e)
		}
	}
	victimOK(t)
}
