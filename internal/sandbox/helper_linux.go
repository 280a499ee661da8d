package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The jail is set up by the tern binary itself: Start runs /proc/self/exe
// under the name helperName, in new mount, PID, IPC and UTS namespaces,
// with an empty environment and, as its one argument, the file descriptor
// to read its helperSpec from. In this package's init (after the Go
// runtime's and the inits of packages before it, which see nothing of the
// function's), the helper builds the instance's filesystem, drops what the
// instance must not have and execs the runtime, which keeps the helper's
// pid: nothing of tern stays in the instance.

// helperName is argv[0] of the helper.
const helperName = "tern-sandbox"

// helperSpec is what the helper needs; it travels as JSON through a pipe.
type helperSpec struct {
	Root string   `json:"root"` // empty directory to build the root in
	Slot string   `json:"slot"` // pooled: the host directory the code is mounted on later
	Code string   `json:"code"` // the code to mount at /var/task now
	Bind []string `json:"bind"` // host paths to show read-only at the same path
	// Runtime is the host directory shown read-only at RuntimeRoot.
	Runtime string `json:"runtime"`
	// TmpMB is the size of /tmp when it is a tmpfs.
	TmpMB int `json:"tmpMB"`
	// TmpSlot, when set, is the host directory shown writable at /tmp
	// instead: the instance's /tmp disk is mounted there, now or later.
	TmpSlot string `json:"tmpSlot,omitempty"`
	// UID and GID the program runs as; with Pooled it starts as root
	// holding only CAP_SETUID and CAP_SETGID and drops to them itself.
	UID    int  `json:"uid"`
	GID    int  `json:"gid"`
	Pooled bool `json:"pooled"`
	// Gate, if not 0, is a file descriptor to read one byte (or the end)
	// from before the exec: tern writes it once the process is in its
	// cgroup, so the program never runs outside.
	Gate int `json:"gate"`
	// Probe: report what could be applied on stdout and exit.
	Probe bool     `json:"probe"`
	Path  string   `json:"path"`
	Args  []string `json:"args"`
	Dir   string   `json:"dir"`
	Env   []string `json:"env"`
	// Keep is how many file descriptors from 3 on the program gets; every
	// other one is closed (whatever tern inherited without close-on-exec).
	Keep int `json:"keep"`
	// Landlock: the probe applied it, so every instance must.
	Landlock bool `json:"landlock"`
}

// TaskRoot is where an instance in the jail sees its function's code.
const TaskRoot = "/var/task"

// RuntimeRoot is where it sees JailConfig.Runtime (the bootstraps).
const RuntimeRoot = "/var/runtime"

// systemDirs are shown read-only in every jail, where the host has them
// (a symlink, as /bin -> usr/bin, is kept a symlink).
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"}

func init() {
	if len(os.Args) != 2 || os.Args[0] != helperName {
		return
	}
	// Namespaces, capabilities, no_new_privs, Landlock and seccomp are set
	// on this thread, which then execs: other threads do not matter.
	runtime.LockOSThread()
	err := runHelper(os.Args[1])
	fmt.Fprintf(os.Stderr, "tern: sandbox: %v\n", err)
	os.Exit(126)
}

// runHelper sets the jail up and execs the program; it returns only on
// failure.
func runHelper(arg string) error {
	fd, err := strconv.Atoi(arg)
	if err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	f := os.NewFile(uintptr(fd), "spec")
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	var s helperSpec
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	if err := buildRoot(&s); err != nil {
		return err
	}
	if err := enterRoot(s.Root); err != nil {
		return err
	}
	_ = unix.Sethostname([]byte("tern"))
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	if err := dropPrivileges(&s); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	landlock := restrictPaths(s.Bind)
	if s.Landlock && !strings.HasPrefix(landlock, "abi") {
		return fmt.Errorf("landlock: %s", landlock)
	}
	if err := loadSeccomp(); err != nil {
		return err
	}
	dir := s.Dir
	if dir == "" {
		dir = "/"
	}
	if err := os.Chdir(dir); err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	if s.Probe {
		fmt.Printf("landlock=%s\n", landlock)
		os.Exit(0)
	}
	if s.Gate > 0 {
		// A byte once tern moved this process into its cgroup; the end
		// instead means tern went away: nothing runs outside.
		var b [1]byte
		n, err := unix.Read(s.Gate, b[:])
		if n != 1 {
			return fmt.Errorf("tern went away before the cgroup was ready (%v)", err)
		}
		unix.Close(s.Gate)
	}
	if err := unix.CloseRange(uint(3+s.Keep), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close inherited files: %w", err)
	}
	argv := append([]string{s.Path}, s.Args...)
	env := s.Env
	if env == nil {
		env = []string{}
	}
	return fmt.Errorf("exec %s: %w", s.Path, unix.Exec(s.Path, argv, env))
}

// buildRoot mounts the instance's filesystem under s.Root: the system
// directories and s.Bind read-only, the code (now or later) at /var/task,
// a size-limited /tmp, a /proc of the new PID namespace and a /dev with
// only harmless devices. Nothing else of the host is there: not the data
// directory, not other functions' code.
func buildRoot(s *helperSpec) error {
	// Mounts made here stay here; the host's, as the code mounted on a
	// pooled instance's slot, still come in.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("mount propagation: %w", err)
	}
	r := s.Root
	if err := unix.Mount("tmpfs", r, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,mode=0755"); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	var shown []string
	for _, p := range append(append([]string{}, systemDirs...), s.Bind...) {
		if covered(p, shown) {
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil {
			continue // the host has no such directory
		}
		if fi.Mode()&os.ModeSymlink != 0 && filepath.Dir(p) == "/" {
			t, err := os.Readlink(p)
			if err == nil {
				err = os.Symlink(t, r+p)
			}
			if err != nil {
				return fmt.Errorf("root: %s: %w", p, err)
			}
			continue
		}
		if err := os.MkdirAll(r+p, 0o755); err != nil {
			return fmt.Errorf("root: %w", err)
		}
		if err := bindReadOnly(p, r+p); err != nil {
			return fmt.Errorf("root: %s: %w", p, err)
		}
		shown = append(shown, p)
	}
	if s.Runtime != "" {
		if err := os.MkdirAll(r+RuntimeRoot, 0o755); err != nil {
			return fmt.Errorf("root: %w", err)
		}
		if err := bindReadOnly(s.Runtime, r+RuntimeRoot); err != nil {
			return fmt.Errorf("runtime: %w", err)
		}
	}
	task := r + TaskRoot
	if err := os.MkdirAll(task, 0o755); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	switch {
	case s.Code != "":
		if err := bindReadOnly(s.Code, task); err != nil {
			return fmt.Errorf("code: %w", err)
		}
	case s.Slot != "":
		// A plain bind keeps the slot a slave of the host's: what the host
		// mounts on it later (read-only) appears here.
		if err := unix.Mount(s.Slot, task, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("code slot: %w", err)
		}
		if err := unix.Mount("", task, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			return fmt.Errorf("code slot: %w", err)
		}
	}
	tmpMB := s.TmpMB
	if tmpMB <= 0 {
		tmpMB = DefaultTmpMB
	}
	if s.TmpSlot != "" {
		// A plain bind, as the code slot: the disk the host mounts on it
		// (before or after this) is the instance's /tmp.
		if err := os.MkdirAll(r+"/tmp", 0o755); err != nil {
			return fmt.Errorf("/tmp: %w", err)
		}
		if err := unix.Mount(s.TmpSlot, r+"/tmp", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("/tmp slot: %w", err)
		}
		if err := unix.Mount("", r+"/tmp", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			return fmt.Errorf("/tmp slot: %w", err)
		}
	} else if err := mountDir(r+"/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size="+strconv.Itoa(tmpMB)+"m"); err != nil {
		return fmt.Errorf("/tmp: %w", err)
	}
	if err := mountDir(r+"/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("/proc: %w", err)
	}
	// The kernel's settings stay out of reach, also of the pooled stage
	// that still runs as root.
	if err := bindReadOnly(r+"/proc/sys", r+"/proc/sys"); err != nil {
		return fmt.Errorf("/proc/sys: %w", err)
	}
	return buildDev(r + "/dev")
}

// covered: p is under one of dirs (already shown).
func covered(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

func mountDir(dir, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return unix.Mount(fstype, dir, fstype, flags, data)
}

// bindReadOnly shows src (with the mounts below it) at dst, read-only,
// without set-uid programs or devices. The mount is made read-only before
// it is attached, so it is never writable, not even for a moment, nor in
// a copy the kernel propagates.
func bindReadOnly(src, dst string) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("mount_setattr: %w", err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// devices a function may use, as /dev/<name>: major, minor.
var devices = []struct {
	name         string
	major, minor uint32
}{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9},
}

func buildDev(dev string) error {
	if err := mountDir(dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return fmt.Errorf("/dev: %w", err)
	}
	for _, d := range devices {
		p := dev + "/" + d.name
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("/dev: %s: %w", d.name, err)
		}
		if err := unix.Chmod(p, 0o666); err != nil { // whatever the umask
			return fmt.Errorf("/dev: %s: %w", d.name, err)
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, dev+"/"+name); err != nil {
			return fmt.Errorf("/dev: %w", err)
		}
	}
	// Nothing can be created in /dev; the devices stay usable.
	if err := unix.Mount("", dev, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("/dev: %w", err)
	}
	return nil
}

// enterRoot makes root the process's / and leaves the host's behind,
// then makes / itself read-only.
func enterRoot(root string) error {
	if err := os.Chdir(root); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	// The old root is now mounted over the new one: detach it.
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("read-only root: %w", err)
	}
	return nil
}

// dropPrivileges leaves the program no capability: it runs as s.UID, or,
// pooled, as root holding only CAP_SETUID and CAP_SETGID, which it needs
// to become its function's uid and which that step takes away (a process
// whose uids all leave 0 loses its capabilities).
func dropPrivileges(s *helperSpec) error {
	keep := uint64(0)
	if s.Pooled {
		keep = 1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID
	}
	last, err := lastCap()
	if err != nil {
		return err
	}
	for c := 0; c <= last; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("capability bounding set: %w", err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("ambient capabilities: %w", err)
	}
	if s.Pooled {
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		data := [2]unix.CapUserData{{Effective: uint32(keep), Permitted: uint32(keep)}}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			return fmt.Errorf("capabilities: %w", err)
		}
		return nil
	}
	if s.UID <= 0 || s.GID <= 0 {
		return fmt.Errorf("no unprivileged uid to run as (uid %d, gid %d)", s.UID, s.GID)
	}
	if err := unix.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := unix.Setresgid(s.GID, s.GID, s.GID); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := unix.Setresuid(s.UID, s.UID, s.UID); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	// A change of uid clears the parent-death signal: set it again, so
	// the instance dies with tern.
	return unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
}

func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("capabilities: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("capabilities: %w", err)
	}
	return n, nil
}
