package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// An instance's Runtime API listens on loopback, where every process of
// the host's network namespace can connect. PeerUIDListener lets through
// only connections made by the instance's own uid: with a uid per
// function, another function cannot take this one's events or answer
// for it.

// PeerUIDListener accepts loopback TCP connections and serves only those
// whose client socket belongs to the uid Allowed returns (-1: none). The
// check reads the kernel's socket table, so it runs on a connection's
// first read, in the goroutine serving it, not in the accept loop: a flood
// of connections holds up no one else's.
type PeerUIDListener struct {
	net.Listener
	Allowed func() int
}

// Accept returns the next connection, checked when it is first read.
func (l *PeerUIDListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &peerConn{Conn: c, allowed: l.Allowed}, nil
}

// peerConn is a connection whose peer's uid is checked before its first
// read.
type peerConn struct {
	net.Conn
	allowed func() int
	once    sync.Once
	err     error
}

var errPeer = errors.New("sandbox: connection from another uid refused")

func (c *peerConn) Read(b []byte) (int, error) {
	c.once.Do(func() {
		want := c.allowed()
		if uid, err := loopbackPeerUID(c.Conn); err != nil || want < 0 || uid != want {
			c.err = errPeer
			c.Conn.Close()
		}
	})
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(b)
}

// loopbackPeerUID finds the owner of the client end of c, an accepted
// IPv4 loopback connection, in /proc/net/tcp (an IPv4 socket) or
// /proc/net/tcp6 (an IPv6 socket connected to a v4-mapped address).
func loopbackPeerUID(c net.Conn) (int, error) {
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 || remote.IP.To4() == nil || local.IP.To4() == nil {
		return 0, errors.New("sandbox: not an IPv4 TCP connection")
	}
	// The client's socket: its local address is our remote one.
	for _, t := range []struct {
		file   string
		format func(*net.TCPAddr) string
	}{{"/proc/net/tcp", procAddr4}, {"/proc/net/tcp6", procAddr6}} {
		uid, err := findSocketUID(t.file, t.format(remote)+" "+t.format(local))
		if err == nil || !errors.Is(err, errNoSocket) {
			return uid, err
		}
	}
	return 0, errNoSocket
}

var errNoSocket = errors.New("sandbox: the client's socket is not in the table")

// findSocketUID returns the uid of the socket whose "local remote"
// addresses are want in the table file.
func findSocketUID(file, want string) (int, error) {
	f, err := os.Open(file)
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
	return 0, errNoSocket
}

// procAddr4 is a as /proc/net/tcp writes it: the address as a 32-bit
// number in host order (little-endian here), in hex; the port in hex.
func procAddr4(a *net.TCPAddr) string {
	ip := a.IP.To4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}

// procAddr6 is a, v4-mapped (::ffff:a.b.c.d), as /proc/net/tcp6 writes
// it: four 32-bit words, each in host order.
func procAddr6(a *net.TCPAddr) string {
	ip := a.IP.To16()
	var b strings.Builder
	for w := 0; w < 16; w += 4 {
		fmt.Fprintf(&b, "%02X%02X%02X%02X", ip[w+3], ip[w+2], ip[w+1], ip[w])
	}
	fmt.Fprintf(&b, ":%04X", a.Port)
	return b.String()
}
