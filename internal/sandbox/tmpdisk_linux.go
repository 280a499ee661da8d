package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// An instance's /tmp is ephemeral storage of its own, as on Lambda: an
// ext4 filesystem of the function's size on a loop device over a sparse
// file in the jail directory (on the data dir's disk). Its pages are page
// cache, which the kernel writes back and reclaims under the instance's
// memory limit, so what a function keeps in /tmp never counts as its
// memory, and a full /tmp is ENOSPC.
//
// The filesystem is mounted on the slot's tmp directory on the host before
// the instance starts, and its /tmp is a bind of it. Its size is fixed
// then: a filesystem mounted over it later would escape the instance's
// Landlock rule for /tmp (tied to the filesystem it saw), and growing ext4
// online needs CAP_SYS_RESOURCE, which a host may not give. So a pooled
// instance has the jail's default size, and the runtime starts a function
// that asks for another size outside the pool. The file is unlinked
// once mounted and the loop device clears itself when the last mount goes,
// so nothing of it outlives the instance, also when tern is killed.
//
// Where the host has no loop devices or no mkfs.ext4, /tmp is a tmpfs of
// the same size instead, whose pages do count as memory (Controls says so).

// tmpDisks makes the filesystems: a template image per size, formatted
// once and copied (sparsely) for each instance.
type tmpDisks struct {
	dir  string // templates, beside the jail directory
	mkfs string // mkfs.ext4's path

	mu        sync.Mutex
	templates map[int]string // size in MB -> template image
}

// newTmpDisks finds what disk-backed /tmp needs on this host, or says why
// it cannot have it.
func newTmpDisks(jailDir string) (*tmpDisks, string) {
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return nil, "no loop devices (/dev/loop-control)"
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"} {
			if _, serr := os.Stat(p); serr == nil {
				mkfs, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return nil, "mkfs.ext4 is not installed (Debian: e2fsprogs)"
	}
	// Beside the jail directory, whose entries are slots.
	dir := jailDir + ".disks"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err.Error()
	}
	return &tmpDisks{dir: dir, mkfs: mkfs, templates: map[int]string{}}, ""
}

// template returns the path of a formatted, empty image of sizeMB.
func (d *tmpDisks) template(sizeMB int) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.templates[sizeMB]; ok {
		return p, nil
	}
	p := filepath.Join(d.dir, "ext4-"+strconv.Itoa(sizeMB)+"m.img")
	if _, err := os.Stat(p); err == nil {
		d.templates[sizeMB] = p // made by an earlier run (renamed into place whole)
		return p, nil
	}
	tmp := p + ".new"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("sandbox: /tmp image: %w", err)
	}
	err = f.Truncate(int64(sizeMB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("sandbox: /tmp image: %w", err)
	}
	// No journal (nothing in it survives the instance), no reserved
	// blocks, inode tables initialised lazily: the image stays sparse.
	out, err := exec.Command(d.mkfs, "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner=0:0", tmp).CombinedOutput()
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("sandbox: mkfs.ext4 for /tmp: %w: %s", err, out)
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("sandbox: /tmp image: %w", err)
	}
	d.templates[sizeMB] = p
	return p, nil
}

// mount makes a fresh filesystem of sizeMB and mounts it on dir, with
// image as its backing file. Once mounted, the mount holds the loop device
// and the device the file: the file is unlinked and nothing is kept open
// here, so the device clears itself and the blocks are freed when the last
// mount of it goes (the slot's, and the instance's in its namespace).
func (d *tmpDisks) mount(dir, image string, sizeMB int) error {
	tpl, err := d.template(sizeMB)
	if err != nil {
		return err
	}
	if err := copySparse(tpl, image); err != nil {
		return fmt.Errorf("sandbox: /tmp image: %w", err)
	}
	defer os.Remove(image)
	back, err := os.OpenFile(image, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sandbox: /tmp image: %w", err)
	}
	defer back.Close()
	dev, err := attachLoop(back)
	if err != nil {
		return fmt.Errorf("sandbox: /tmp loop device: %w", err)
	}
	defer dev.Close()
	if err := unix.Mount(dev.Name(), dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOATIME, ""); err != nil {
		return fmt.Errorf("sandbox: mount /tmp: %w", err)
	}
	// Sticky and writable by all, as a /tmp is; nothing in it.
	_ = os.Remove(filepath.Join(dir, "lost+found"))
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		return fmt.Errorf("sandbox: /tmp: %w", err)
	}
	return nil
}

// attachLoop binds a free loop device to file and returns the device,
// open. The device clears itself once its filesystem is unmounted
// (LO_FLAGS_AUTOCLEAR).
func attachLoop(back *os.File) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	var last error
	// Another process may take the free device between the two calls.
	for try := 0; try < 16; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		path := "/dev/loop" + strconv.Itoa(n)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			// A /dev without devtmpfs does not grow the node by itself.
			_ = unix.Mknod(path, unix.S_IFBLK|0o660, int(unix.Mkdev(7, uint32(n))))
		}
		dev, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(back.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		last = err
		if !errors.Is(err, unix.EBUSY) {
			break
		}
	}
	return nil, fmt.Errorf("LOOP_CONFIGURE: %w", last)
}

// copySparse copies src to a new file dst, writing only src's data
// extents: the holes stay holes.
func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = copyExtents(in, out, fi.Size())
	if err == nil {
		err = out.Truncate(fi.Size())
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(dst)
	}
	return err
}

func copyExtents(in, out *os.File, size int64) error {
	fd := int(in.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.Copy(out, io.NewSectionReader(in, data, hole-data)); err != nil {
			return err
		}
		off = hole
	}
	return nil
}
