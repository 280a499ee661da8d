package sandbox

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// An instance's Runtime API listens on loopback, where every process of
// the host's network namespace can connect. PeerUIDListener lets through
// only connections made by the instance's own uid: with a uid per
// function, another function cannot take this one's events or answer
// for it.

// PeerUIDListener accepts only loopback TCP connections whose client
// socket belongs to the uid Allowed returns (-1: none).
type PeerUIDListener struct {
	net.Listener
	Allowed func() int
}

// Accept returns the next connection of the allowed uid, closing others.
func (l *PeerUIDListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		want := l.Allowed()
		if uid, err := loopbackPeerUID(c); err == nil && want >= 0 && uid == want {
			return c, nil
		}
		c.Close()
	}
}

// loopbackPeerUID finds the owner of the client end of c, an accepted
// IPv4 loopback connection, in /proc/net/tcp.
func loopbackPeerUID(c net.Conn) (int, error) {
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 || remote.IP.To4() == nil {
		return 0, fmt.Errorf("sandbox: not an IPv4 TCP connection")
	}
	// The client's socket: its local address is our remote one.
	want := procAddr(remote) + " " + procAddr(local)
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0, fmt.Errorf("sandbox: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local rem st tx:rx tr:when retrnsmt uid ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[1]+" "+fields[2] != want {
			continue
		}
		return strconv.Atoi(fields[7])
	}
	return 0, fmt.Errorf("sandbox: no socket %s in /proc/net/tcp", want)
}

// procAddr is a as /proc/net/tcp writes it: the address as a host-order
// hex number, the port in hex.
func procAddr(a *net.TCPAddr) string {
	ip := a.IP.To4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}
