package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// touch creates the files (relative to dir) with content.
func touch(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeKernel makes mkdirCgroup create each new cgroup with files, as the
// kernel would, until the test ends.
func fakeKernel(t *testing.T, files ...string) {
	oldMk, oldRm := mkdirCgroup, rmdirCgroup
	t.Cleanup(func() { mkdirCgroup, rmdirCgroup = oldMk, oldRm })
	rmdirCgroup = os.RemoveAll
	mkdirCgroup = func(dir string) error {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

func controlsByName(s *setup) map[string]Control {
	out := map[string]Control{}
	for _, c := range s.controls {
		out[c.Name] = c
	}
	return out
}

func TestDetectV1Hybrid(t *testing.T) {
	// This host's shape: v1 hierarchies, an empty v2 tree, tern's memory
	// cgroup below the root.
	root := t.TempDir()
	mi := fmt.Sprintf(`31 23 0:28 / %[1]s rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / %[1]s/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / %[1]s/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / %[1]s/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / %[1]s/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / %[1]s/unified rw,relatime - cgroup2 cgroup2 rw
`, root)
	sc := "9:name=systemd:/\n8:pids:/\n4:memory:/jail/abc\n2:cpu,cpuacct:/\n0::/\n"
	touch(t, root, map[string]string{
		"unified/cgroup.controllers":                 "hugetlb\n",
		"memory/jail/abc/tern/memory.limit_in_bytes": "9223372036854771712\n",
		"pids/tern/pids.max":                         "max\n",
		"cpu,cpuacct/tern/cpu.shares":                "1024\n",
	})
	s := detect([]byte(mi), []byte(sc))
	cs := controlsByName(s)
	for _, n := range []string{"cgroup memory", "cgroup pids", "cgroup cpu weight"} {
		if !cs[n].On || !strings.Contains(cs[n].Why, "cgroup v1") {
			t.Errorf("%s: %+v", n, cs[n])
		}
	}
	if !strings.Contains(cs["cgroup memory"].Why, filepath.Join(root, "memory/jail/abc/tern")) {
		t.Errorf("memory cgroups not below tern's own: %s", cs["cgroup memory"].Why)
	}
	if len(s.hs) != 3 {
		t.Errorf("%d hierarchies, want 3", len(s.hs))
	}

	// An instance cgroup gets the limits; a failed one leaves nothing.
	fakeKernel(t, "memory.limit_in_bytes", "pids.max", "cpu.shares")
	cg, err := newCgroup(s, "i1", Limits{MemoryMB: 256})
	if err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{
		"memory/jail/abc/tern/" + ownerPrefix() + "i1/memory.limit_in_bytes": strconv.Itoa(256 << 20),
		"pids/tern/" + ownerPrefix() + "i1/pids.max":                         strconv.Itoa(DefaultPids),
		"cpu,cpuacct/tern/" + ownerPrefix() + "i1/cpu.shares":                "256",
	} {
		if b, _ := os.ReadFile(filepath.Join(root, f)); string(b) != want {
			t.Errorf("%s = %q, want %q", f, b, want)
		}
	}
	if cg.mem != filepath.Join(root, "memory/jail/abc/tern/"+ownerPrefix()+"i1") || cg.memV2 {
		t.Errorf("memory dir %q", cg.mem)
	}
	fakeKernel(t, "memory.limit_in_bytes", "cpu.shares") // no pids.max
	if _, err := newCgroup(s, "i2", Limits{MemoryMB: 256}); err == nil {
		t.Error("an instance cgroup without its limit files was made")
	}
	for _, d := range []string{"memory/jail/abc/tern/i2", "pids/tern/i2", "cpu,cpuacct/tern/i2"} {
		if _, err := os.Stat(filepath.Join(root, d)); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", d, err)
		}
	}
}

func TestDetectV2(t *testing.T) {
	root := t.TempDir()
	mi := fmt.Sprintf("30 23 0:26 / %s rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", root)
	touch(t, root, map[string]string{
		"svc/cgroup.controllers":          "cpuset cpu io memory pids\n",
		"svc/cgroup.subtree_control":      "",
		"svc/tern/cgroup.subtree_control": "",
		"svc/tern/memory.max":             "max\n",
		"svc/tern/pids.max":               "max\n",
		"svc/tern/cpu.weight":             "100\n",
	})
	s := detect([]byte(mi), []byte("0::/svc\n"))
	for _, c := range s.controls {
		if !c.On || !strings.Contains(c.Why, "cgroup v2") {
			t.Errorf("%+v", c)
		}
	}
	if len(s.hs) != 1 || !s.hs[0].v2 || len(s.hs[0].ctrls) != 3 {
		t.Fatalf("hierarchies %+v", s.hs)
	}
	fakeKernel(t, "memory.max", "pids.max", "cpu.weight", "memory.events")
	cg, err := newCgroup(s, "i1", Limits{MemoryMB: 128, Pids: 64})
	if err != nil {
		t.Fatal(err)
	}
	if cg.oomKilled(false) {
		t.Error("out of memory before any oom_kill")
	}
	touch(t, root, map[string]string{"svc/tern/" + ownerPrefix() + "i1/memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"})
	for f, want := range map[string]string{"memory.max": strconv.Itoa(128 << 20), "pids.max": "64", "cpu.weight": "12"} {
		if b, _ := os.ReadFile(filepath.Join(root, "svc/tern/"+ownerPrefix()+"i1", f)); string(b) != want {
			t.Errorf("%s = %q, want %q", f, b, want)
		}
	}
	if !cg.oomKilled(false) {
		t.Error("oom_kill 1 in memory.events not seen")
	}
}

func TestDetectOff(t *testing.T) {
	root := t.TempDir()
	// A v2 tree without the controllers, and a v1 memory mount point tern
	// cannot create cgroups in (a file stands where the directory would be).
	mi := fmt.Sprintf("41 31 0:38 / %[1]s/unified rw - cgroup2 cgroup2 rw\n35 31 0:32 / %[1]s/memory rw - cgroup cgroup rw,memory\n", root)
	touch(t, root, map[string]string{"unified/cgroup.controllers": "", "memory/x": ""})
	s := detect([]byte(mi), []byte("4:memory:/x\n0::/\n"))
	cs := controlsByName(s)
	if len(s.hs) != 0 {
		t.Errorf("hierarchies %+v", s.hs)
	}
	for n, want := range map[string]string{
		"cgroup memory":     "not a directory",
		"cgroup pids":       "no cgroup v1 hierarchy with the pids controller",
		"cgroup cpu weight": "has no cpu controller",
	} {
		if cs[n].On || !strings.Contains(cs[n].Why, want) {
			t.Errorf("%s: %+v, want off with %q", n, cs[n], want)
		}
	}
	// No cgroups at all: Confine does nothing.
	if s := detect(nil, nil); len(s.hs) != 0 || len(s.controls) != 3 || s.controls[0].On {
		t.Errorf("no cgroups: %+v", s)
	}
}

func TestParseMountinfoUnescapes(t *testing.T) {
	ms := parseMountinfo([]byte(`35 31 0:32 / /sys/fs/cgroup/my\040memory rw - cgroup cgroup rw,memory` + "\n"))
	if len(ms) != 1 || ms[0].point != "/sys/fs/cgroup/my memory" {
		t.Errorf("%+v", ms)
	}
}

// The real thing, where this host allows it.

func needCgroups(t *testing.T) {
	t.Helper()
	for _, c := range Controls() {
		if !c.On {
			t.Skipf("%s is off here: %s", c.Name, c.Why)
		}
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func TestConfineKillsTheWholeCgroup(t *testing.T) {
	needCgroups(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	// The grandchild leaves the process group, and its parent exits:
	// only the cgroup still finds it.
	p, err := Start(Spec{Path: sh, Args: []string{"-c", "sleep 0.3; sh -c 'setsid sleep 301 & echo $! > " + t.TempDir() + "/pid' ; sleep 300"}})
	if err != nil {
		t.Fatal(err)
	}
	name := "test-" + strconv.Itoa(os.Getpid())
	if err := p.Confine(name, Limits{MemoryMB: 64}); err != nil {
		t.Fatal(err)
	}
	cg := p.cg
	deadline := time.Now().Add(5 * time.Second)
	for len(cg.procs()) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	procs := cg.procs()
	if len(procs) < 2 {
		t.Fatalf("cgroup holds %v", procs)
	}
	p.Kill()
	<-p.Done()
	for time.Now().Before(deadline) {
		left := 0
		for _, pid := range procs {
			if alive(pid) {
				left++
			}
		}
		_, err := os.Stat(cg.dirs[0])
		if left == 0 && os.IsNotExist(err) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("processes of %v or the cgroup %s left", procs, cg.dirs[0])
}

func TestOOMKilled(t *testing.T) {
	needCgroups(t)
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	// It waits to be confined, then fills 200 MB.
	p, err := Start(Spec{Path: py, Args: []string{"-c", "import time; time.sleep(0.3); a = b'x' * (200 << 20); time.sleep(5)"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Confine("oom-"+strconv.Itoa(os.Getpid()), Limits{MemoryMB: 64}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		p.Kill()
		t.Fatal("not killed")
	}
	if !p.OOMKilled() {
		t.Errorf("OOMKilled false; exit %v", p.ExitError())
	}

	// A process that exits normally, or is killed by Tern, is not.
	q, err := Start(Spec{Path: py, Args: []string{"-c", "import time; time.sleep(30)"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Confine("ok-"+strconv.Itoa(os.Getpid()), Limits{MemoryMB: 64}); err != nil {
		t.Fatal(err)
	}
	q.Kill()
	<-q.Done()
	if q.OOMKilled() {
		t.Error("a killed process reported out of memory")
	}
}

func TestDetectOffWhenCgroupsCannotBeCreated(t *testing.T) {
	// Tern's parent exists (made by root), but this user may not create
	// cgroups in it.
	root := t.TempDir()
	mi := fmt.Sprintf("39 31 0:36 / %s/pids rw - cgroup cgroup rw,pids\n", root)
	touch(t, root, map[string]string{"pids/tern/pids.max": "max\n"})
	oldMk := mkdirCgroup
	t.Cleanup(func() { mkdirCgroup = oldMk })
	mkdirCgroup = func(dir string) error { return &os.PathError{Op: "mkdir", Path: dir, Err: os.ErrPermission} }
	s := detect([]byte(mi), []byte("8:pids:/\n"))
	cs := controlsByName(s)
	if len(s.hs) != 0 || cs["cgroup pids"].On || !strings.Contains(cs["cgroup pids"].Why, "cannot create cgroups") {
		t.Errorf("%+v %+v", s.hs, cs["cgroup pids"])
	}
}

// sweep removes the instance cgroups of tern processes that are gone
// (also when their pid was reused) and leaves those of live ones (and
// what is not an instance cgroup).
func TestSweepRemovesDeadOwners(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	parent := owner(os.Getppid())
	ppid := strconv.Itoa(os.Getppid())
	names := map[string]bool{ // name: kept
		strconv.Itoa(dead.Process.Pid) + ".1-a1": false, // gone
		parent + "-b2":                           true,  // alive
		ppid + ".1-b3":                           false, // the pid, since reused
		ownerPrefix() + "c4":                     false, // this process's, before it made any
		"probe":                                  true,
	}
	for n := range names {
		if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := &setup{hs: []*hierarchy{{dir: dir}}}
	s.sweep()
	for n, kept := range names {
		_, err := os.Stat(filepath.Join(dir, n))
		if (err == nil) != kept {
			t.Errorf("%s: kept %v, want %v", n, err == nil, kept)
		}
	}
}
