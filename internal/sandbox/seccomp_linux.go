package sandbox

import (
	"fmt"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// deniedSyscalls fail with EPERM in every instance: what no function
// needs and what would reach past its jail (mounts, other namespaces,
// another process's memory, the kernel itself, the clock, keyrings, io_uring's second way into the kernel). Most
// already fail for an unprivileged uid; the filter closes them for the
// pooled bootstrap too, and for kernel bugs behind them. Names the
// architecture lacks are skipped.
var deniedSyscalls = []string{
	"mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
	"move_mount", "open_tree", "mount_setattr", "setns", "unshare",
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"bpf", "perf_event_open", "userfaultfd", "reboot", "swapon", "swapoff", "acct",
	"quotactl", "syslog", "iopl", "ioperm", "open_by_handle_at", "name_to_handle_at",
	"add_key", "request_key", "keyctl", "settimeofday", "clock_settime", "clock_adjtime",
	"adjtimex", "lookup_dcookie", "vhangup", "uselib", "personality",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
}

// seccompPolicy is the instance filter: the denied syscalls, clone with
// CLONE_NEWUSER (a user namespace would give the function mounts of its
// own), and clone3 answered ENOSYS (its flags cannot be inspected; libc
// then falls back to clone).
func seccompPolicy(info *arch.Info) seccomp.Policy {
	var names []string
	for _, n := range deniedSyscalls {
		if _, ok := info.SyscallNames[n]; ok {
			names = append(names, n)
		}
	}
	return seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Action: seccomp.ActionErrno, Names: names},
			{
				Action: seccomp.ActionErrno,
				NamesWithCondtions: []seccomp.NameWithConditions{{
					Name:       "clone",
					Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: unix.CLONE_NEWUSER}},
				}},
			},
			{Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS), Names: []string{"clone3"}},
		},
	}
}

// seccompProgram assembles the filter. A syscall made through another
// architecture's convention (as int 0x80 on x86-64) would be checked
// against the wrong numbers, so it kills the process instead.
func seccompProgram() ([]unix.SockFilter, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	policy := seccompPolicy(info)
	body, err := policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	prog := append([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(seccomp.ActionKillProcess)},
	}, body...)
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// loadSeccomp installs the filter on this thread (no_new_privs must be
// set); what it execs keeps it.
func loadSeccomp() error {
	filter, err := seccompProgram()
	if err != nil {
		return err
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); e != 0 {
		return fmt.Errorf("seccomp: %w", e)
	}
	return nil
}
