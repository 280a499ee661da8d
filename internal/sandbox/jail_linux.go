package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultTmpMB is the size of an instance's /tmp (Lambda's default
// ephemeral storage): a disk of its own (see tmpdisk_linux.go).
const DefaultTmpMB = 512

// JailConfig says where and how instances are jailed.
type JailConfig struct {
	// Dir holds a directory per jailed instance (created, owner-only). It
	// becomes a mount point of its own: code mounted there reaches the
	// instance's namespace.
	Dir string
	// ReadOnly are host directories shown read-only at the same path in
	// every jail besides the system directories: interpreters installed
	// elsewhere. Not below /tmp, which the jail's own /tmp hides.
	ReadOnly []string
	// Runtime is a host directory shown read-only at RuntimeRoot: the
	// runtimes' bootstraps.
	Runtime string
	// TmpMB is the size of an instance's /tmp unless its Spec says
	// otherwise (and of every pooled instance's until it is given a
	// function); 0: DefaultTmpMB.
	TmpMB int
	// Off turns the jail off (instances run as tern's uid, with its view
	// of the filesystem).
	Off bool
}

// Jail starts instances each in a filesystem, PID, IPC and UTS namespace
// of its own, with the function's code read-only at /var/task, a private
// /tmp, an unprivileged uid, no capabilities, no_new_privs, a seccomp
// filter and, where the kernel has it, Landlock. It needs root; where it
// cannot be set up, instances run without it and Controls says why.
type Jail struct {
	cfg      JailConfig
	why      string // empty: on
	landlock string // what the probe reported for Landlock
	mounted  bool   // cfg.Dir was made a mount point here

	tmp    *tmpDisks // nil: /tmp is a tmpfs, and tmpWhy says why
	tmpWhy string
}

// NewJail prepares cfg.Dir and checks, by jailing /bin/true, that this
// host can jail instances. A host that cannot is not an error: the jail
// is then off.
func NewJail(cfg JailConfig) (*Jail, error) {
	j := &Jail{cfg: cfg}
	switch {
	case cfg.Off:
		j.why = "turned off"
		return j, nil
	case os.Geteuid() != 0:
		j.why = "tern does not run as root"
		return j, nil
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	// mountinfo names mount points by their real paths.
	dir, err := filepath.EvalSymlinks(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	j.cfg.Dir = dir
	// Every jail shows these directories: the jails' mount points (and
	// the data dir around them) must not be among them.
	for _, shown := range append(append([]string{cfg.Runtime}, systemDirs...), cfg.ReadOnly...) {
		if real, err := filepath.EvalSymlinks(shown); err == nil {
			shown = real // the mount shows where a symlink leads
		}
		if shown != "" && covered(dir, []string{shown}) {
			j.why = fmt.Sprintf("%s is inside %s, which every jail shows: move the data dir", dir, shown)
			return j, nil
		}
	}
	if err := j.sweep(); err != nil {
		return nil, err
	}
	if err := makeSharedMount(dir); err != nil {
		j.why = err.Error()
		return j, nil
	}
	j.mounted = true
	if j.cfg.TmpMB <= 0 {
		j.cfg.TmpMB = DefaultTmpMB
	}
	if j.tmp, j.tmpWhy = newTmpDisks(dir); j.tmp != nil {
		// Formatted now, not on the first cold start.
		if _, err := j.tmp.template(j.cfg.TmpMB); err != nil {
			j.tmp, j.tmpWhy = nil, err.Error()
		}
	}
	if err := j.probe(); err != nil {
		j.why = err.Error()
	}
	return j, nil
}

// Close unmounts cfg.Dir, once no instance runs: what is left there of
// instances is swept at the next start.
func (j *Jail) Close() error {
	if !j.mounted {
		return nil
	}
	_ = j.sweep()
	if err := unix.Unmount(j.cfg.Dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("sandbox: unmount %s: %w", j.cfg.Dir, err)
	}
	return nil
}

// On says whether instances are jailed.
func (j *Jail) On() bool { return j != nil && j.why == "" }

// Controls lists the jail's controls and whether this host applies them.
func (j *Jail) Controls() []Control {
	tmp := j.cfg.TmpMB
	if tmp <= 0 {
		tmp = DefaultTmpMB
	}
	disk := Control{Name: "/tmp on a disk of its own", On: j.On() && j.tmp != nil,
		Why: fmt.Sprintf("each instance's /tmp is a filesystem of its function's size (default %d MB) on a loop device over a sparse file in the data dir: never counted as memory, full is ENOSPC", tmp)}
	switch {
	case !j.On():
		disk.Why = "jail off: " + j.why
	case j.tmp == nil:
		disk.Why = "/tmp is a tmpfs, whose pages count as the function's memory: " + j.tmpWhy
	}
	cs := []Control{
		{Name: "unprivileged uid per function", Why: "each function's instances run as a uid of their own, never root"},
		{Name: "mount namespace (read-only code, private /tmp)", Why: fmt.Sprintf(
			"a root of its own: the system directories and the code (at %s) read-only, a private %d MB /tmp, its own /proc; not the data dir, not other functions' code", TaskRoot, tmp)},
		{Name: "pid namespace", Why: "the runtime is pid 1 of a namespace of its own: tern and other instances are out of sight, all it started dies with it"},
		{Name: "no capabilities, no_new_privs", Why: "no capability at all; set-uid programs grant nothing"},
		{Name: "seccomp filter", Why: fmt.Sprintf("%d syscalls denied (mounts, namespaces, ptrace, bpf, kexec, modules, reboot, ...), user namespaces and other architectures' syscalls refused", len(deniedSyscalls))},
	}
	ll := Control{Name: "landlock"}
	for n := range cs {
		cs[n].On = j.On()
		if !j.On() {
			cs[n].Why = "jail off: " + j.why
		}
	}
	switch {
	case !j.On():
		ll.Why = "jail off: " + j.why
	case strings.HasPrefix(j.landlock, "abi"):
		ll.On = true
		ll.Why = j.landlock + ": reads only the system directories, the runtime and the code, writes only /tmp"
		var abi int
		if _, err := fmt.Sscanf(j.landlock, "abi %d", &abi); err == nil && abi >= 6 {
			ll.Why += "; signals and abstract sockets only within the instance"
		}
	default:
		ll.Why = j.landlock
	}
	return append(cs, ll, disk)
}

// makeSharedMount makes dir a mount point in a peer group of its own, so
// that what is mounted below it later also appears in the namespaces of
// instances started before (which are its slaves), and nowhere else.
func makeSharedMount(dir string) error {
	mounted, err := isMountPoint(dir)
	if err != nil {
		return err
	}
	if !mounted {
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("cannot mount %s: %w", dir, err)
		}
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("cannot make %s private: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("cannot make %s shared: %w", dir, err)
	}
	return nil
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	var out []string
	for _, e := range mountEntries(b) {
		if e.point == dir || strings.HasPrefix(e.point, dir+"/") {
			out = append(out, e.point)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, nil
}

func isMountPoint(dir string) (bool, error) {
	ms, err := mountsUnder(dir)
	if err != nil {
		return false, err
	}
	return slices.Contains(ms, dir), nil
}

// sweep removes what instances of an earlier run left in cfg.Dir: their
// code mounts, then their directories.
func (j *Jail) sweep() error {
	ms, err := mountsUnder(j.cfg.Dir)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m != j.cfg.Dir {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	}
	ents, err := os.ReadDir(j.cfg.Dir)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	for _, e := range ents {
		removeSlot(filepath.Join(j.cfg.Dir, e.Name()))
	}
	return nil
}

// removeSlot removes an instance's directory once nothing is mounted in
// it: never RemoveAll, which would walk into a code mount still there.
func removeSlot(dir string) {
	for _, sub := range []string{"task", "root", "tmp", "tmp.img"} {
		_ = os.Remove(filepath.Join(dir, sub))
	}
	_ = os.Remove(dir)
}

// probe runs the helper through every step short of exec: it builds a
// root, drops everything, applies the filters and exits, printing what
// Landlock did.
func (j *Jail) probe() error {
	slot, err := j.newSlot("probe")
	if err != nil {
		return err
	}
	defer j.releaseSlot(slot)
	specR, err := j.writeSpec(slot, &helperSpec{Probe: true, Pooled: true, Path: "/bin/true"})
	if err != nil {
		return err
	}
	defer specR.Close()
	cmd := j.command(3, false)
	cmd.ExtraFiles = []*os.File{specR}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot start the jail helper: %w", err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		err = errors.Join(errors.New("timed out"), <-done)
	}
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("cannot jail a process: %s", msg)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "landlock="); ok {
			j.landlock = v
		}
	}
	return nil
}

// slot is one jailed instance's directory on the host.
type slot struct {
	dir  string
	task string // where the code is mounted for a pooled instance
	root string // the helper builds the instance's root here
	tmp  string // where its /tmp disk is mounted

	mu       sync.Mutex // no code or /tmp mounted once it is released
	released bool
	tmpDisk  bool // a /tmp disk is mounted on tmp
}

func (j *Jail) newSlot(name string) (*slot, error) {
	s := &slot{dir: filepath.Join(j.cfg.Dir, name)}
	s.task, s.root, s.tmp = filepath.Join(s.dir, "task"), filepath.Join(s.dir, "root"), filepath.Join(s.dir, "tmp")
	for _, d := range []string{s.dir, s.task, s.root, s.tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			removeSlot(s.dir)
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	if err := os.Chmod(s.dir, 0o700); err != nil {
		removeSlot(s.dir)
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	return s, nil
}

// releaseSlot unmounts the code (if any) and removes the directory.
func (j *Jail) releaseSlot(s *slot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released = true
	for _, m := range []string{s.tmp, s.task} {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return // leave it: the next start sweeps it
		}
	}
	removeSlot(s.dir)
}

// mountTmp gives s a /tmp disk of sizeMB (0: the jail's default).
// Without disks (j.tmp nil) it does nothing: the helper makes a tmpfs.
func (j *Jail) mountTmp(s *slot, sizeMB int) error {
	if j.tmp == nil {
		return nil
	}
	if sizeMB <= 0 {
		sizeMB = j.cfg.TmpMB
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released || s.tmpDisk {
		return errors.New("sandbox: /tmp: the instance exited or has one")
	}
	if err := j.tmp.mount(s.tmp, s.dir+"/tmp.img", sizeMB); err != nil {
		return err
	}
	s.tmpDisk = true
	return nil
}

// PoolTmpMB is the size of a pooled instance's /tmp: a function whose
// ephemeral storage is another size needs an instance of its own (see
// tmpdisk_linux.go). 0 when /tmp is the host's (jail off) and so the
// same for every function.
func (j *Jail) PoolTmpMB() int {
	if !j.On() {
		return 0
	}
	return j.cfg.TmpMB
}

// mountCode shows dir read-only on s's task slot, and so at /var/task in
// the namespace of the instance jailed with it.
func (j *Jail) mountCode(s *slot, dir string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released {
		return errors.New("sandbox: mount code: the instance exited")
	}
	if err := bindReadOnly(dir, s.task); err != nil {
		return fmt.Errorf("sandbox: mount code: %w", err)
	}
	return nil
}

// writeSpec completes spec for slot s and returns a pipe's read end that
// holds it, written and closed.
func (j *Jail) writeSpec(s *slot, spec *helperSpec) (*os.File, error) {
	spec.Root = s.root
	if spec.Code == "" {
		spec.Slot = s.task
	}
	spec.Bind = j.cfg.ReadOnly
	spec.Runtime = j.cfg.Runtime
	spec.TmpMB = j.cfg.TmpMB
	if j.tmp != nil {
		spec.TmpSlot = s.tmp
	}
	spec.Landlock = strings.HasPrefix(j.landlock, "abi")
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	// A pipe holds 64 KiB; a bigger spec (a huge environment) is written
	// while the helper reads.
	go func() {
		_, _ = w.Write(b)
		w.Close()
	}()
	return r, nil
}

// command is the helper's command, reading its spec from file descriptor
// specFD, in new namespaces (and a network namespace of its own if
// noNetwork). Its environment is empty.
func (j *Jail) command(specFD int, noNetwork bool) *exec.Cmd {
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: []string{helperName, strconv.Itoa(specFD)}, Env: []string{}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:     true,
		Pdeathsig:  syscall.SIGKILL,
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
	}
	if noNetwork && NetworkControl().On {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET
	}
	return cmd
}
