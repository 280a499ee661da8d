package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ternhq/tern/internal/archive"
)

// extraction is one in-flight extraction that concurrent callers share.
type extraction struct {
	done chan struct{}
	err  error
}

// CodeDir returns the folder holding v's extracted code, extracting it from
// the Object Store first if this node has not yet. Concurrent callers for the
// same code wait for one extraction.
func (r *Registry) CodeDir(ctx context.Context, v *Version) (string, error) {
	dir := filepath.Join(r.cfg.CacheDir, v.CodeSHA256)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	r.extractMu.Lock()
	x := r.extracts[v.CodeSHA256]
	if x == nil {
		x = &extraction{done: make(chan struct{})}
		r.extracts[v.CodeSHA256] = x
		go func() {
			// Not tied to one caller's context: others may be waiting too.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			x.err = r.extract(ctx, v.CodeSHA256, dir)
			r.extractMu.Lock()
			delete(r.extracts, v.CodeSHA256)
			r.extractMu.Unlock()
			close(x.done)
		}()
	}
	r.extractMu.Unlock()
	select {
	case <-x.done:
		if x.err != nil {
			return "", x.err
		}
		return dir, nil
	case <-ctx.Done():
		return "", fmt.Errorf("registry: waiting for code: %w", ctx.Err())
	}
}

func (r *Registry) extract(ctx context.Context, sha, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	obj, err := r.code.Get(ctx, sha)
	if err != nil {
		return fmt.Errorf("registry: fetch code %s: %w", sha[:12], err)
	}
	defer obj.Close()
	// Stream to a temp file: reading a large object into memory costs its
	// size several times over.
	tmp, err := os.CreateTemp(r.cfg.CacheDir, ".download-*")
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	maxBytes := r.cfg.Limits.MaxBytes
	if maxBytes <= 0 { // zero means the default, as in archive.Limits
		maxBytes = archive.DefaultLimits().MaxBytes
	}
	n, err := io.Copy(tmp, io.LimitReader(obj, maxBytes+1))
	if err != nil {
		return fmt.Errorf("registry: fetch code %s: %w", sha[:12], err)
	}
	if n > maxBytes {
		return fmt.Errorf("registry: code %s is larger than the package limit", sha[:12])
	}
	if err := archive.Extract(tmp, n, dir, r.cfg.Limits); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		return err
	}
	return nil
}
