package runtime

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Frame types of the framed runtime protocol (docs/runtime-protocol.md).
const (
	frameSpecialize = 1
	frameReady      = 2
	frameInitError  = 3
	frameInvoke     = 4
	frameResponse   = 5
	frameError      = 6
	frameBooted     = 7
)

// maxFrameHeader bounds a frame's JSON header.
const maxFrameHeader = 64 << 10

var errProtocol = errors.New("runtime protocol error")

// appendFrame appends a whole frame with the given header and body.
func appendFrame(dst []byte, typ byte, header, body []byte) []byte {
	n := 3 + len(header) + len(body)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(header)))
	dst = append(dst, header...)
	return append(dst, body...)
}

// frameHead returns the 7 bytes that precede a frame's header.
func frameHead(typ byte, headerLen, bodyLen int) [7]byte {
	var h [7]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(3+headerLen+bodyLen))
	h[4] = typ
	binary.BigEndian.PutUint16(h[5:7], uint16(headerLen))
	return h
}

// frame is one frame read from a runtime.
type frame struct {
	typ    byte
	header []byte
	body   []byte
	// skipped is the size of a body over the limit that was read past.
	skipped int64
}

// readFrame reads the next frame; a body longer than maxBody is read past
// and reported in skipped instead of kept.
func readFrame(r *bufio.Reader, maxBody int64) (*frame, error) {
	var head [7]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(head[0:4]))
	h := int64(binary.BigEndian.Uint16(head[5:7]))
	if n < 3 || h > n-3 || h > maxFrameHeader {
		return nil, fmt.Errorf("%w: frame length %d, header length %d", errProtocol, n, h)
	}
	f := &frame{typ: head[4], header: make([]byte, h)}
	if _, err := io.ReadFull(r, f.header); err != nil {
		return nil, err
	}
	bodyLen := n - 3 - h
	if bodyLen > maxBody {
		if _, err := io.CopyN(io.Discard, r, bodyLen); err != nil {
			return nil, err
		}
		f.skipped = bodyLen
		return f, nil
	}
	if bodyLen > 0 {
		f.body = make([]byte, bodyLen)
		if _, err := io.ReadFull(r, f.body); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// answerHeader is the header of RESPONSE, ERROR and INIT_ERROR frames.
type answerHeader struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	Fatal bool   `json:"fatal"`
}

func parseAnswerHeader(b []byte) (answerHeader, error) {
	var h answerHeader
	if len(b) == 0 {
		return h, nil
	}
	// The warm path's common case, {"id":"<plain id>"}, without reflection.
	const pre, post = `{"id":"`, `"}`
	if len(b) > len(pre)+len(post) && string(b[:len(pre)]) == pre && string(b[len(b)-len(post):]) == post {
		id := b[len(pre) : len(b)-len(post)]
		plain := true
		for _, c := range id {
			if c == '"' || c == '\\' || c < 0x20 {
				plain = false
				break
			}
		}
		if plain {
			h.ID = string(id)
			return h, nil
		}
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("%w: header: %v", errProtocol, err)
	}
	return h, nil
}
