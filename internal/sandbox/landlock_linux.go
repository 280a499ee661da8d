package sandbox

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock, where the kernel has it, limits the instance's filesystem
// access to what its jail shows anyway (reading the system directories,
// the runtime and the code; writing /tmp): a second wall should a mount
// be got wrong. From ABI 6 on it also keeps the instance from signalling
// processes outside it and from reaching abstract Unix sockets outside it.
//
// The ruleset is applied to the helper's thread, which then execs: go-
// landlock's all-threads enforcement (psx, cgo) is not needed, so only
// its constants' kernel names are used here, through x/sys/unix.

const (
	llRead = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	llExec = llRead | unix.LANDLOCK_ACCESS_FS_EXECUTE
	// llFile is what a rule on a file (not a directory) may allow.
	llFile = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE |
		unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
)

// landlockFS is the filesystem access Landlock ABI abi can handle.
func landlockFS(abi int) uint64 {
	fs := uint64(unix.LANDLOCK_ACCESS_FS_MAKE_SYM<<1 - 1) // ABI 1
	if abi >= 2 {
		fs |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		fs |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		fs |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	return fs
}

// landlockABI is the kernel's Landlock ABI version, or an error saying why
// there is none.
func landlockABI() (int, error) {
	v, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		switch e {
		case unix.ENOSYS:
			return 0, errors.New("the kernel has no Landlock")
		case unix.EOPNOTSUPP:
			return 0, errors.New("Landlock is not enabled at boot (lsm=)")
		}
		return 0, fmt.Errorf("landlock: %w", e)
	}
	return int(v), nil
}

// restrictPaths applies the jail's Landlock ruleset to this thread (and
// what it execs). It says what it did: "abi N", or why it did nothing.
// Not having Landlock is not an error: the jail's mounts still hold.
func restrictPaths(binds []string) string {
	abi, err := landlockABI()
	if err != nil {
		return "off: " + err.Error()
	}
	handled := landlockFS(abi)
	attr := unix.LandlockRulesetAttr{Handled_access_fs: handled}
	if abi >= 6 {
		attr.Scoped = unix.LANDLOCK_SCOPE_SIGNAL | unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
	}
	size := unsafe.Sizeof(attr.Handled_access_fs)
	switch {
	case abi >= 6:
		size = unsafe.Offsetof(attr.Scoped) + unsafe.Sizeof(attr.Scoped)
	case abi >= 4:
		size = unsafe.Offsetof(attr.Handled_access_net) + unsafe.Sizeof(attr.Handled_access_net)
	}
	fd, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), size, 0)
	if e != 0 {
		return "off: create ruleset: " + e.Error()
	}
	ruleset := int(fd)
	defer unix.Close(ruleset)
	rules := map[string]uint64{
		"/":     unix.LANDLOCK_ACCESS_FS_READ_DIR, // the jail holds nothing secret
		"/var":  llExec,                           // the code and the bootstraps
		"/proc": llRead,
		"/dev": llRead | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
			unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV,
		"/tmp": handled, // everything
	}
	for _, p := range append(append([]string{}, systemDirs...), binds...) {
		rules[p] = llExec
	}
	for p, access := range rules {
		if err := addPathRule(ruleset, p, access&handled); err != nil {
			return "off: " + err.Error()
		}
	}
	if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(ruleset), 0, 0); e != 0 {
		return "off: restrict_self: " + e.Error()
	}
	return fmt.Sprintf("abi %d", abi)
}

// addPathRule allows access beneath path; a path this root lacks is
// skipped.
func addPathRule(ruleset int, path string, access uint64) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("landlock: %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("landlock: %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		// A rule on a file may only grant what applies to files.
		access &= llFile
	}
	rule := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(fd)}
	if _, _, e := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&rule)), 0, 0, 0); e != 0 {
		return fmt.Errorf("landlock: rule for %s: %w", path, e)
	}
	return nil
}
