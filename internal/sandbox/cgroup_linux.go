package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The cgroup controllers an instance's cgroup uses, in the order Controls
// reports them.
var wanted = []string{"memory", "pids", "cpu"}

var controlName = map[string]string{
	"memory": "cgroup memory",
	"pids":   "cgroup pids",
	"cpu":    "cgroup cpu weight",
}

// hierarchy is one cgroup tree instance cgroups are made in: the v2 tree
// with every wanted controller it has, or one v1 tree per controller.
type hierarchy struct {
	v2    bool
	dir   string   // the parent of instance cgroups: <mount><tern's own cgroup>/tern
	ctrls []string // the wanted controllers applied through it
}

// setup is what this host allows, found once.
type setup struct {
	hs       []*hierarchy
	controls []Control
}

var (
	hostOnce  sync.Once
	hostSetup *setup
)

// host detects, once, which cgroup controls apply here, creating Tern's
// parent cgroups below its own (and, on v2, enabling the controllers for
// them).
func host() *setup {
	hostOnce.Do(func() {
		mi, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			hostSetup = off("cannot read /proc/self/mountinfo: " + err.Error())
			return
		}
		sc, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			hostSetup = off("cannot read /proc/self/cgroup: " + err.Error())
			return
		}
		hostSetup = detect(mi, sc)
		hostSetup.sweep()
	})
	return hostSetup
}

// ownerPrefix starts the names of this process's instance cgroups: its
// pid and start time, "<pid>.<start>-", which no other process has had.
var ownerPrefix = sync.OnceValue(func() string {
	return owner(os.Getpid()) + "-"
})

// owner is "<pid>.<start time>" of a live process, or "" if it is gone.
func owner(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	f := statFields(b)
	if len(f) < 20 {
		return ""
	}
	return strconv.Itoa(pid) + "." + string(f[19]) // starttime, field 22
}

// sweep kills and removes the instance cgroups of tern processes that are
// gone (SIGKILLed, crashed): their instances would run on, unowned. It
// runs before this process made any, so its own pid's are stale too. A
// cgroup whose owner still runs (another tern on this host; the same pid
// and start time) is left alone.
func (s *setup) sweep() {
	for _, h := range s.hs {
		ents, _ := os.ReadDir(h.dir)
		for _, e := range ents {
			name, _, ok := strings.Cut(e.Name(), "-")
			ps, _, _ := strings.Cut(name, ".")
			pid, err := strconv.Atoi(ps)
			if !e.IsDir() || !ok || err != nil || (pid != os.Getpid() && owner(pid) == name) {
				continue
			}
			cg := &cgroup{dirs: []string{filepath.Join(h.dir, e.Name())}, v2: []bool{h.v2}}
			cg.killAll()
			cg.remove()
		}
	}
}

// Controls reports each cgroup control and whether it applies on this host,
// with the reason. The first call detects them (see host).
func Controls() []Control {
	return append(slices.Clone(host().controls), NetworkControl(),
		Control{Name: "no core dumps", On: true, Why: "every instance's core file size limit is 0"})
}

func off(why string) *setup {
	s := &setup{}
	for _, c := range wanted {
		s.controls = append(s.controls, Control{Name: controlName[c], Why: why})
	}
	return s
}

// mount is a cgroup file system mounted at point, showing the tree from
// root.
type mount struct {
	point, root string
	v2          bool
	ctrls       []string // v1: its controllers
}

// mountEntry is one line of /proc/self/mountinfo: the tree shown (root),
// where (point), the file system type and its super-block options.
type mountEntry struct {
	root, point, fstype, opts string
}

// mountEntries parses /proc/self/mountinfo (paths unescaped).
func mountEntries(b []byte) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		out = append(out, mountEntry{root: unescape(f[3]), point: unescape(f[4]), fstype: g[0], opts: g[2]})
	}
	return out
}

// parseMountinfo finds the cgroup mounts in /proc/self/mountinfo.
func parseMountinfo(b []byte) []mount {
	var out []mount
	for _, e := range mountEntries(b) {
		m := mount{root: e.root, point: e.point}
		switch e.fstype {
		case "cgroup2":
			m.v2 = true
		case "cgroup":
			for _, o := range strings.Split(e.opts, ",") {
				if slices.Contains(wanted, o) {
					m.ctrls = append(m.ctrls, o)
				}
			}
			if len(m.ctrls) == 0 {
				continue
			}
		default:
			continue
		}
		out = append(out, m)
	}
	return out
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseSelfCgroup reads /proc/self/cgroup: the v1 path of each controller,
// and the v2 path ("" and false when there is none).
func parseSelfCgroup(b []byte) (v1 map[string]string, v2 string, hasV2 bool) {
	v1 = make(map[string]string)
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2, hasV2 = parts[2], true
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			v1[c] = parts[2]
		}
	}
	return v1, v2, hasV2
}

// within is path (as /proc/self/cgroup shows it) inside a mount showing
// the tree from root.
func within(m mount, path string) string {
	if m.root != "/" && strings.HasPrefix(path, m.root) {
		path = strings.TrimPrefix(path, m.root)
	}
	return filepath.Join(m.point, path)
}

// detect decides from mountinfo and /proc/self/cgroup where each wanted
// controller is applied: cgroup v2 where it has the controller (enabled
// for Tern's cgroups if it is not yet), else its v1 hierarchy.
func detect(mountinfo, selfCgroup []byte) *setup {
	s := &setup{}
	mounts := parseMountinfo(mountinfo)
	v1, v2, hasV2 := parseSelfCgroup(selfCgroup)
	by := map[string]*hierarchy{}
	why := map[string]string{}

	for _, m := range mounts {
		if !m.v2 || !hasV2 {
			continue
		}
		own := within(m, v2)
		b, err := os.ReadFile(filepath.Join(own, "cgroup.controllers"))
		if err != nil {
			for _, c := range wanted {
				why[c] = "cgroup v2: " + err.Error()
			}
			break
		}
		h := &hierarchy{v2: true, dir: filepath.Join(own, "tern")}
		for _, c := range wanted {
			if !slices.Contains(strings.Fields(string(b)), c) {
				why[c] = "cgroup v2 at " + m.point + " has no " + c + " controller"
				continue
			}
			if err := enableV2(own, h.dir, c); err != nil {
				why[c] = "cgroup v2: " + err.Error()
				continue
			}
			h.ctrls = append(h.ctrls, c)
			by[c] = h
		}
		if len(h.ctrls) > 0 {
			s.hs = append(s.hs, h)
		}
		break // one v2 tree
	}

	for _, c := range wanted {
		if by[c] != nil {
			continue
		}
		i := slices.IndexFunc(mounts, func(m mount) bool { return !m.v2 && slices.Contains(m.ctrls, c) })
		path, ok := v1[c]
		if i < 0 || !ok {
			why[c] = join(why[c], "no cgroup v1 hierarchy with the "+c+" controller")
			continue
		}
		dir := filepath.Join(within(mounts[i], path), "tern")
		var h *hierarchy
		for _, o := range s.hs {
			if o.dir == dir {
				h = o // controllers mounted together (cpu,cpuacct)
			}
		}
		if h == nil {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				why[c] = join(why[c], "cgroup v1: "+pathErr(err))
				continue
			}
			h = &hierarchy{dir: dir}
			s.hs = append(s.hs, h)
		}
		h.ctrls = append(h.ctrls, c)
		by[c] = h
	}

	// Tern's parents may exist (made by root earlier) where this user
	// cannot create cgroups: try one.
	probeErr := map[*hierarchy]error{}
	for _, h := range s.hs {
		probe := filepath.Join(h.dir, "probe-"+strconv.Itoa(os.Getpid()))
		if err := mkdirCgroup(probe); err != nil {
			probeErr[h] = err
			continue
		}
		_ = rmdirCgroup(probe)
	}

	for _, c := range wanted {
		h := by[c]
		if h == nil {
			s.controls = append(s.controls, Control{Name: controlName[c], Why: why[c]})
			continue
		}
		if err := probeErr[h]; err != nil {
			h.ctrls = slices.DeleteFunc(h.ctrls, func(x string) bool { return x == c })
			s.controls = append(s.controls, Control{Name: controlName[c], Why: "cannot create cgroups: " + pathErr(err)})
			continue
		}
		file := limitFile(c, h.v2)
		if _, err := os.Stat(filepath.Join(h.dir, file)); err != nil {
			h.ctrls = slices.DeleteFunc(h.ctrls, func(x string) bool { return x == c })
			s.controls = append(s.controls, Control{Name: controlName[c], Why: pathErr(err)})
			continue
		}
		s.controls = append(s.controls, Control{Name: controlName[c], On: true, Why: describe(c, h)})
	}
	s.hs = slices.DeleteFunc(s.hs, func(h *hierarchy) bool { return len(h.ctrls) == 0 })
	return s
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// pathErr says what failed on which file, without Go's operation names.
func pathErr(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Path + ": " + pe.Err.Error()
	}
	return err.Error()
}

// enableV2 makes controller c available to tern's instance cgroups: in
// own's subtree (refused when own is not the root and holds processes, as
// Tern's own cgroup does unless it was delegated) and in dir's.
func enableV2(own, dir, c string) error {
	sub, err := os.ReadFile(filepath.Join(own, "cgroup.subtree_control"))
	if err != nil {
		return errors.New(pathErr(err))
	}
	if !slices.Contains(strings.Fields(string(sub)), c) {
		if err := writeFile(filepath.Join(own, "cgroup.subtree_control"), "+"+c); err != nil {
			return fmt.Errorf("cannot enable the %s controller for tern's cgroups: %s", c, pathErr(err))
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return errors.New(pathErr(err))
	}
	if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+c); err != nil {
		return fmt.Errorf("cannot enable the %s controller for tern's cgroups: %s", c, pathErr(err))
	}
	return nil
}

// limitFile is the file that holds controller c's limit.
func limitFile(c string, v2 bool) string {
	switch {
	case c == "memory" && v2:
		return "memory.max"
	case c == "memory":
		return "memory.limit_in_bytes"
	case c == "pids":
		return "pids.max"
	case v2:
		return "cpu.weight"
	default:
		return "cpu.shares"
	}
}

func describe(c string, h *hierarchy) string {
	v := "cgroup v1"
	if h.v2 {
		v = "cgroup v2"
	}
	at := " (" + v + ", " + h.dir + ")"
	switch c {
	case "memory":
		return limitFile(c, h.v2) + " = the function's memory, without swap; exceeding it is Runtime.OutOfMemory" + at
	case "pids":
		return "pids.max = " + strconv.Itoa(DefaultPids) + " processes and threads per instance" + at
	}
	if h.v2 {
		return "cpu.weight in proportion to memory (100 at 1024 MB)" + at
	}
	return "cpu.shares in proportion to memory (1024 at 1024 MB)" + at
}

// writeFile writes s to an existing file (cgroup files cannot be created).
func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// mkdirCgroup creates a cgroup, which the kernel fills with its files;
// rmdirCgroup removes it, files and all. Tests replace them to do the
// kernel's part.
var (
	mkdirCgroup = func(dir string) error { return os.Mkdir(dir, 0o755) }
	rmdirCgroup = func(dir string) error { return syscall.Rmdir(dir) }
)

// cgroup is one instance's cgroup: a directory in each hierarchy.
type cgroup struct {
	dirs  []string
	v2    []bool
	mem   string // the directory with the memory controller, or ""
	memV2 bool
}

// newCgroup creates the instance cgroup name in every hierarchy of s with
// lim's limits. On error nothing is left behind.
func newCgroup(s *setup, name string, lim Limits) (_ *cgroup, err error) {
	cg := &cgroup{}
	defer func() {
		if err != nil {
			cg.remove()
		}
	}()
	pids := lim.Pids
	if pids <= 0 {
		pids = DefaultPids
	}
	// Named for this process: a later tern finds what a killed one left.
	name = ownerPrefix() + name
	for _, h := range s.hs {
		dir := filepath.Join(h.dir, name)
		if err := mkdirCgroup(dir); err != nil {
			return nil, fmt.Errorf("sandbox: cgroup: %s", pathErr(err))
		}
		cg.dirs = append(cg.dirs, dir)
		cg.v2 = append(cg.v2, h.v2)
		for _, c := range h.ctrls {
			var files [][2]string // must succeed
			var optional [][2]string
			switch {
			case c == "memory" && lim.MemoryMB > 0:
				cg.mem, cg.memV2 = dir, h.v2
				bytes := strconv.FormatInt(int64(lim.MemoryMB)<<20, 10)
				if h.v2 {
					files = [][2]string{{"memory.max", bytes}}
					optional = [][2]string{{"memory.swap.max", "0"}, {"memory.oom.group", "1"}}
				} else {
					files = [][2]string{{"memory.limit_in_bytes", bytes}}
					optional = [][2]string{{"memory.memsw.limit_in_bytes", bytes}}
				}
			case c == "pids":
				files = [][2]string{{"pids.max", strconv.Itoa(pids)}}
			case c == "cpu" && lim.MemoryMB > 0:
				if h.v2 {
					files = [][2]string{{"cpu.weight", strconv.Itoa(CPUWeight(lim.MemoryMB))}}
				} else {
					files = [][2]string{{"cpu.shares", strconv.Itoa(CPUShares(lim.MemoryMB))}}
				}
			}
			for _, f := range files {
				if err := writeFile(filepath.Join(dir, f[0]), f[1]); err != nil {
					return nil, fmt.Errorf("sandbox: cgroup: %s", pathErr(err))
				}
			}
			for _, f := range optional {
				_ = writeFile(filepath.Join(dir, f[0]), f[1]) // not every kernel has them
			}
		}
	}
	return cg, nil
}

// limit sets the memory limit and CPU weight of a cgroup made without
// them (a pooled process's, when it is given its function).
func (cg *cgroup) limit(s *setup, memoryMB int) error {
	if memoryMB <= 0 {
		return nil
	}
	for i, h := range s.hs {
		if i >= len(cg.dirs) {
			break
		}
		dir := cg.dirs[i]
		for _, c := range h.ctrls {
			switch c {
			case "memory":
				cg.mem, cg.memV2 = dir, h.v2
				bytes := strconv.FormatInt(int64(memoryMB)<<20, 10)
				file, swap := "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"
				if h.v2 {
					file, swap = "memory.max", "memory.swap.max"
				}
				if err := writeFile(filepath.Join(dir, file), bytes); err != nil {
					return fmt.Errorf("sandbox: cgroup: %s", pathErr(err))
				}
				if h.v2 {
					_ = writeFile(filepath.Join(dir, swap), "0")
					_ = writeFile(filepath.Join(dir, "memory.oom.group"), "1")
				} else {
					_ = writeFile(filepath.Join(dir, swap), bytes)
				}
			case "cpu":
				file, v := "cpu.shares", strconv.Itoa(CPUShares(memoryMB))
				if h.v2 {
					file, v = "cpu.weight", strconv.Itoa(CPUWeight(memoryMB))
				}
				if err := writeFile(filepath.Join(dir, file), v); err != nil {
					return fmt.Errorf("sandbox: cgroup: %s", pathErr(err))
				}
			}
		}
	}
	return nil
}

// add moves pid (the whole process) into the cgroup.
func (cg *cgroup) add(pid int) error {
	for _, dir := range cg.dirs {
		if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("sandbox: cgroup: %s", pathErr(err))
		}
	}
	return nil
}

// procs lists the processes in the cgroup.
func (cg *cgroup) procs() []int {
	var out []int
	for _, dir := range cg.dirs {
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil && !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// killAll kills every process in the cgroup, wherever it went in the
// process tree, and waits, boundedly, until none is left.
func (cg *cgroup) killAll() {
	for n, dir := range cg.dirs {
		if cg.v2[n] {
			_ = writeFile(filepath.Join(dir, "cgroup.kill"), "1") // Linux ≥ 5.14
		}
	}
	for range 200 { // 1 s: a fork bomb is bounded by pids.max
		ps := cg.procs()
		if len(ps) == 0 {
			return
		}
		for _, p := range ps {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// remove removes the cgroup's directories; the kernel refuses while a
// process is still leaving, so it tries for a while.
func (cg *cgroup) remove() {
	for _, dir := range slices.Backward(cg.dirs) {
		for try := 0; ; try++ {
			err := rmdirCgroup(dir)
			if !errors.Is(err, syscall.EBUSY) || try >= 100 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// oomKilled reports whether the kernel's OOM killer killed a process of
// the cgroup for exceeding its memory limit. signaled: the instance's
// process was killed by SIGKILL not sent by Tern (used with v1 kernels
// that do not count OOM kills).
func (cg *cgroup) oomKilled(signaled bool) bool {
	if cg.mem == "" {
		return false
	}
	if cg.memV2 {
		n, _ := field(filepath.Join(cg.mem, "memory.events"), "oom_kill")
		return n > 0
	}
	if n, ok := field(filepath.Join(cg.mem, "memory.oom_control"), "oom_kill"); ok {
		return n > 0
	}
	b, _ := os.ReadFile(filepath.Join(cg.mem, "memory.failcnt"))
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return signaled && n > 0
}

// field reads the value of key in a flat keyed file ("key value" lines).
func field(path, key string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
