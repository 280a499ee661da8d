package runtime

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ternhq/tern/internal/logs"
)

// outputPipe is the read end of one of an instance's output pipes, with
// counters that let Invoke wait until everything the function printed
// before answering has been turned into log entries, so that a function's
// lines come before its END and REPORT lines.
type outputPipe struct {
	f       *os.File
	stream  string
	read    atomic.Int64 // bytes taken out of the pipe
	emitted atomic.Int64 // bytes turned into entries

	// mu is held while read bytes become entries; partial is the line
	// read so far without its "\n" (at most maxPartial bytes).
	mu      sync.Mutex
	partial []byte
}

// maxPartial bounds a line waiting for its "\n": a longer one is an entry
// of its own, as many of them as it takes.
const maxPartial = 64 << 10

func (p *outputPipe) Read(b []byte) (int, error) {
	n, err := p.f.Read(b)
	p.read.Add(int64(n))
	return n, err
}

// pending reports bytes still in the pipe or read but not yet emitted.
func (p *outputPipe) pending() bool {
	return p.read.Load() != p.emitted.Load() || p.inPipe()
}

// inPipe reports bytes written to the pipe and not read yet.
func (p *outputPipe) inPipe() bool {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ)
	})
	return n > 0 // TIOCINQ is FIONREAD: bytes waiting in the pipe
}

// flushPartial makes the unfinished line an entry of its own when nothing
// else of the output is left: an invocation that ends keeps what it
// printed without a final "\n". It reports whether it flushed; false
// while the reader is busy with the pipe.
func (i *Instance) flushPartial(p *outputPipe) bool {
	if !p.mu.TryLock() {
		return false
	}
	defer p.mu.Unlock()
	if len(p.partial) == 0 || p.read.Load()-p.emitted.Load() != int64(len(p.partial)) || p.inPipe() {
		return false
	}
	i.emitLine(p, p.partial)
	p.partial = p.partial[:0]
	return true
}

// emitLine turns one line (with or without its "\n") into an entry.
// p.mu is held.
func (i *Instance) emitLine(p *outputPipe, line []byte) {
	i.outputLine(p.stream, line)
	p.emitted.Add(int64(len(line)))
}

// DefaultMaxOutputBytes is how much of one invocation's output goes into
// the log when Config.MaxOutputBytes is 0.
const DefaultMaxOutputBytes = 64 << 20

// outputCount is what one invocation's output (or, for the instance's
// first, the output of its init) put into the log and what was dropped.
// Lines printed after an invocation ended are counted on the latest one.
type outputCount struct {
	rid string

	mu    sync.Mutex
	kept  int64 // bytes in the log, newlines included
	ended bool  // its invocation's END was written
	// Not yet reported, by reason: dropLimit, dropStopped.
	lines, bytes [2]int64
}

const (
	dropLimit = iota
	dropStopped
)

var dropReasons = [...]string{dropLimit: logs.DropLimit, dropStopped: logs.DropStopped}

func (o *outputCount) isEnded() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ended
}

// take returns and clears what was dropped and not reported yet.
func (o *outputCount) take() (lines, bytes [2]int64) {
	o.mu.Lock()
	lines, bytes = o.lines, o.bytes
	o.lines, o.bytes = [2]int64{}, [2]int64{}
	o.mu.Unlock()
	return lines, bytes
}

// reportDrops writes the entries saying what o's invocation lost.
func (i *Instance) reportDrops(o *outputCount) {
	if o == nil {
		return
	}
	lines, bytes := o.take()
	for r := range dropReasons {
		if lines[r] > 0 {
			i.l.cfg.Logs.WriteDropped(i.entry(o.rid, logs.StreamPlatform, ""), lines[r], bytes[r], dropReasons[r])
		}
	}
}

// drainOutput waits until both pipes have been read up to now, so that
// an invocation's output comes before its END line. It waits while the
// output makes progress (the log may be taking a flood the function
// printed), giving up after drainIdle without progress or drainMax in all:
// then the order is best effort.
func (i *Instance) drainOutput() {
	const (
		drainIdle = 100 * time.Millisecond
		drainMax  = 2 * time.Second
	)
	var start, idleSince time.Time
	var last int64
	for spin := 0; ; spin++ {
		out, errs := i.stdout.pending(), i.stderr.pending()
		if out && i.flushPartial(i.stdout) {
			out = i.stdout.pending()
		}
		if errs && i.flushPartial(i.stderr) {
			errs = i.stderr.pending()
		}
		if !out && !errs {
			return
		}
		if spin < 50 {
			runtime.Gosched()
			continue
		}
		now := time.Now()
		if start.IsZero() {
			start, idleSince = now, now
		}
		if e := i.stdout.emitted.Load() + i.stderr.emitted.Load(); e != last {
			last, idleSince = e, now
		}
		if now.Sub(idleSince) > drainIdle || now.Sub(start) > drainMax {
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// readOutput turns one output pipe into log entries until the process and
// all its children have closed it. It waits for room in the log, so a
// function that prints faster than the log takes its lines waits in its
// writes; once outAbort is closed it only counts what it reads.
func (i *Instance) readOutput(p *outputPipe) {
	defer i.readers.Done()
	defer p.f.Close()
	defer func() {
		if i.outputOpen.Add(-1) == 0 {
			i.reportDrops(i.lastOut.Load()) // what came after the last END
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := p.Read(buf)
		if n > 0 {
			i.consume(p, buf[:n])
		}
		if err != nil {
			p.mu.Lock()
			if len(p.partial) > 0 {
				i.emitLine(p, p.partial) // the last words, without "\n"
				p.partial = nil
			}
			p.mu.Unlock()
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				i.l.cfg.Log.Debug("runtime: reading output", "instance", i.id, "err", err)
			}
			return
		}
	}
}

// consume turns what was read from p into entries, one per line; the
// unfinished rest waits in p.partial for its "\n" (or for flushPartial).
func (i *Instance) consume(p *outputPipe, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(data) > 0 {
		j := bytes.IndexByte(data, '\n')
		if j < 0 {
			room := maxPartial - len(p.partial)
			if len(data) < room {
				p.partial = append(p.partial, data...)
				return
			}
			p.partial = append(p.partial, data[:room]...)
			data = data[room:]
			i.emitLine(p, p.partial)
			p.partial = p.partial[:0]
			continue
		}
		line := data[:j+1]
		data = data[j+1:]
		if len(p.partial) > 0 {
			if len(p.partial)+len(line) > maxPartial {
				i.emitLine(p, p.partial)
				p.partial = p.partial[:0]
			} else {
				line = append(p.partial, line...)
			}
		}
		i.emitLine(p, line)
		p.partial = p.partial[:0]
	}
}

func (i *Instance) outputLine(stream string, line []byte) {
	size := int64(len(line))
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if !i.specOK.Load() {
		// A pooled instance serves no function yet: its output is the
		// runtime's own and goes to the server's log.
		i.l.cfg.Log.Warn("runtime: output of an unspecialised instance", "instance", i.id, "stream", stream, "line", string(line))
		return
	}
	var c *call
	rid := lambdaLineRequestID(line)
	if rid != "" {
		c = i.call(rid)
	} else {
		c = i.soleCall()
	}
	o := i.lastOut.Load()
	if c != nil {
		o = c.out
	}
	// Count it: on its invocation, or on the latest one once that ended.
	o.mu.Lock()
	if o.ended && o != i.lastOut.Load() {
		o.mu.Unlock()
		o = i.lastOut.Load()
		o.mu.Lock()
	}
	if max := i.l.cfg.MaxOutputBytes; max > 0 && o.kept+size > max {
		o.lines[dropLimit]++
		o.bytes[dropLimit] += size
		o.mu.Unlock()
		return
	}
	o.kept += size
	o.mu.Unlock()
	switch {
	case rid != "":
	case c != nil:
		rid = c.inv.RequestID
	default:
		rid = o.rid
	}
	if !i.l.cfg.Logs.WriteOutput(i.entry(rid, stream, string(line)), i.outAbort) {
		o.mu.Lock()
		o.kept -= size
		o.lines[dropStopped]++
		o.bytes[dropStopped] += size
		o.mu.Unlock()
	}
}

// lambdaLineRequestID returns the request id of a line in the Lambda log
// format "<time>\t<request id>\t<LEVEL>\t<message>", or "".
func lambdaLineRequestID(s []byte) string {
	a := indexTab(s, 0)
	if a < 0 {
		return ""
	}
	b := indexTab(s, a+1)
	if b < 0 || b-a-1 != 36 {
		return ""
	}
	return string(s[a+1 : b])
}

func indexTab(s []byte, from int) int {
	for j := from; j < len(s) && j < from+64; j++ {
		if s[j] == '\t' {
			return j
		}
	}
	return -1
}
