package sandbox

import (
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// A process started with NoNetwork gets a network namespace of its own,
// with nothing in it but a loopback device that is down: it can reach no
// address at all.

var netnsProbe = sync.OnceValue(func() Control {
	c := Control{Name: "network namespace (network: none)"}
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Run(); err != nil {
		c.Why = "cannot create network namespaces: " + err.Error() + "; functions with network: none keep the network"
		return c
	}
	c.On, c.Why = true, "functions with network: none start in a network namespace of their own"
	return c
})

// NetworkControl says whether NoNetwork can be applied on this host.
func NetworkControl() Control { return netnsProbe() }

// noCoreDumps sets a started process's core file size limit to zero (its
// children inherit it), so a crashing function leaves no memory image on
// disk. Best effort: the process runs either way.
func noCoreDumps(pid int) {
	_ = unix.Prlimit(pid, unix.RLIMIT_CORE, &unix.Rlimit{}, nil)
}
