package archive

import (
	"encoding/binary"
	"io"
)

// Zip record signatures and fixed lengths (PKWARE APPNOTE).
const (
	sigCentralHeader = 0x02014b50
	sigEnd           = 0x06054b50
	sigEnd64Locator  = 0x07064b50
	sigEnd64         = 0x06064b50

	centralHeaderLen = 46
	endLen           = 22
	end64LocatorLen  = 20
	end64Len         = 56

	// The end record sits in the last endLen+65535 bytes (its comment is at
	// most 65535 bytes); search a little more than that.
	endSearchWindow = 128 << 10
)

// countCentralRecords counts central directory headers without allocating
// per record, stopping once it has seen limit+1 of them.
//
// zip.NewReader keeps one struct per record and reads records until it meets
// something that is not one, whatever count the end record announces; a
// hostile 50 MiB archive of empty records would cost hundreds of megabytes
// before the entry limit could be checked. This walk runs first. It tries
// every place the directory could start according to the (zip64) end record
// and keeps the highest count, so it never undercounts what zip.NewReader
// will read. A result of 0 means "could not tell"; zip.NewReader then
// reports the archive as malformed, or the entry count is checked after it.
func countCentralRecords(r io.ReaderAt, size int64, limit int) int {
	if size < endLen {
		return 0
	}
	window := min(size, endSearchWindow)
	buf := make([]byte, window)
	if _, err := r.ReadAt(buf, size-window); err != nil && err != io.EOF {
		return 0
	}
	i := -1
	for j := len(buf) - endLen; j >= 0; j-- {
		if binary.LittleEndian.Uint32(buf[j:]) == sigEnd {
			i = j
			break
		}
	}
	if i < 0 {
		return 0
	}
	endOff := size - window + int64(i)
	rec := buf[i:]
	dirSize := int64(binary.LittleEndian.Uint32(rec[12:]))
	dirOff := int64(binary.LittleEndian.Uint32(rec[16:]))
	// The directory starts at dirOff, or right before the end record when
	// the archive has data prepended to it.
	starts := []int64{dirOff, endOff - dirSize}

	if endOff >= end64LocatorLen {
		var loc [end64LocatorLen]byte
		if readAt(r, loc[:], endOff-end64LocatorLen) && binary.LittleEndian.Uint32(loc[:]) == sigEnd64Locator {
			off64 := binary.LittleEndian.Uint64(loc[8:])
			var rec64 [end64Len]byte
			if off64 < uint64(size) && readAt(r, rec64[:], int64(off64)) &&
				binary.LittleEndian.Uint32(rec64[:]) == sigEnd64 {
				size64 := binary.LittleEndian.Uint64(rec64[40:])
				dirOff64 := binary.LittleEndian.Uint64(rec64[48:])
				if size64 < uint64(size) && dirOff64 < uint64(size) {
					starts = append(starts, int64(dirOff64),
						int64(off64)-int64(size64), endOff-int64(size64))
				}
			}
		}
	}

	best := 0
	for _, s := range starts {
		if n := walkCentral(r, size, s, limit); n > best {
			best = n
		}
	}
	return best
}

func walkCentral(r io.ReaderAt, size, off int64, limit int) int {
	var h [centralHeaderLen]byte
	n := 0
	for n <= limit && off >= 0 && off <= size-centralHeaderLen {
		if !readAt(r, h[:], off) || binary.LittleEndian.Uint32(h[:]) != sigCentralHeader {
			break
		}
		n++
		nameLen := int64(binary.LittleEndian.Uint16(h[28:]))
		extraLen := int64(binary.LittleEndian.Uint16(h[30:]))
		commentLen := int64(binary.LittleEndian.Uint16(h[32:]))
		off += centralHeaderLen + nameLen + extraLen + commentLen
	}
	return n
}

func readAt(r io.ReaderAt, b []byte, off int64) bool {
	n, err := r.ReadAt(b, off)
	return n == len(b) && (err == nil || err == io.EOF)
}
