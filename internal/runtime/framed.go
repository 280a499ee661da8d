package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/ternhq/tern/internal/jsonstr"
)

// socketPair returns a connected pair of Unix stream sockets: ours as a
// pollable net.Conn, theirs as a file for the child.
func socketPair() (net.Conn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("runtime: socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "tern-runtime")
	theirs := os.NewFile(uintptr(fds[1]), "runtime-tern")
	conn, err := net.FileConn(ours)
	ours.Close() // FileConn made its own copy
	if err != nil {
		theirs.Close()
		return nil, nil, fmt.Errorf("runtime: socketpair: %w", err)
	}
	return conn, theirs, nil
}

// writeFrame writes one frame with a single writev, giving up at deadline
// (zero: none) if the runtime does not read.
func (i *Instance) writeFrame(typ byte, header, body []byte, deadline time.Time) error {
	head := frameHead(typ, len(header), len(body))
	bufs := net.Buffers{head[:], header, body}
	i.wmu.Lock()
	defer i.wmu.Unlock()
	if err := i.conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := bufs.WriteTo(i.conn)
	return err
}

// sendInvoke hands an invocation to a framed runtime.
func (i *Instance) sendInvoke(inv *Invocation) error {
	var b [256]byte
	h := append(b[:0], `{"id":`...)
	h = jsonstr.Append(h, inv.RequestID)
	h = append(h, `,"deadline":`...)
	h = strconv.AppendInt(h, inv.Deadline.UnixMilli(), 10)
	h = append(h, `,"arn":`...)
	h = jsonstr.Append(h, i.arn)
	if inv.TraceID != "" {
		h = append(h, `,"trace":`...)
		h = jsonstr.Append(h, inv.TraceID)
	}
	if inv.ClientContext != "" {
		h = append(h, `,"clientContext":`...)
		h = jsonstr.Append(h, inv.ClientContext)
	}
	if inv.CognitoIdentity != "" {
		h = append(h, `,"identity":`...)
		h = jsonstr.Append(h, inv.CognitoIdentity)
	}
	h = append(h, '}')
	return i.writeFrame(frameInvoke, h, inv.Payload, inv.Deadline)
}

// readFrames reads a framed runtime's frames until its socket closes. A
// protocol error closes the socket, which ends the runtime.
func (i *Instance) readFrames() {
	defer i.readers.Done()
	defer close(i.framesDone)
	defer i.conn.Close()
	r := bufio.NewReaderSize(i.conn, 64<<10)
	for {
		f, err := readFrame(r, i.l.cfg.MaxResponseBytes)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				i.l.cfg.Log.Warn("runtime: reading frames", "instance", i.id, "err", err)
			}
			return
		}
		if err := i.handleFrame(f); err != nil {
			i.l.cfg.Log.Warn("runtime: bad frame; stopping the instance", "instance", i.id, "err", err)
			return
		}
	}
}

func (i *Instance) handleFrame(f *frame) error {
	switch f.typ {
	case frameBooted:
		i.bootOK.Do(func() { close(i.booted) })
	case frameReady:
		i.readyOne.Do(func() { close(i.ready) })
	case frameInitError:
		h, err := parseAnswerHeader(f.header)
		if err != nil {
			return err
		}
		select {
		case i.initErr <- normalizeError(f.body, h.Type):
		default:
		}
	case frameResponse, frameError:
		h, err := parseAnswerHeader(f.header)
		if err != nil {
			return err
		}
		c := i.call(h.ID)
		if c == nil {
			return nil // late or foreign: the invocation is answered already
		}
		var res *Result
		switch {
		case f.skipped > 0:
			msg := "response payload exceeds the maximum of " + strconv.FormatInt(i.l.cfg.MaxResponseBytes, 10) + " bytes"
			res = &Result{Error: &FunctionError{Type: "Function.ResponseSizeTooLarge", Body: errorBody("Function.ResponseSizeTooLarge", msg)}}
		case f.typ == frameResponse:
			res = &Result{Payload: f.body}
		default:
			res = &Result{Error: normalizeError(f.body, h.Type), Fatal: h.Fatal}
			if h.Fatal {
				// The runtime exits after this: events sent to it from now
				// on are never run.
				i.fatal.Store(true)
			}
		}
		i.answer(c, res)
	default:
		return fmt.Errorf("%w: unexpected frame type %d", errProtocol, f.typ)
	}
	return nil
}
