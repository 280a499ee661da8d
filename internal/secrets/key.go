package secrets

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

const (
	// KeyFile is the master key's file name inside the data dir.
	KeyFile = "secret.key"
	// KeyEnv names the environment variable that gives the master key
	// (base64 of 32 bytes); it takes precedence over the file.
	KeyEnv = "TERN_SECRET_KEY"
	// keySize is AES-256's.
	keySize = 32
)

// KeyPath returns where the master key of dataDir lives.
func KeyPath(dataDir string) string { return filepath.Join(dataDir, KeyFile) }

// masterKey returns the key from TERN_SECRET_KEY, else from dataDir's key
// file, creating that file on first use.
func masterKey(dataDir string, log *slog.Logger) ([]byte, error) {
	if v := os.Getenv(KeyEnv); v != "" {
		key, err := decodeKey(v)
		if err != nil {
			return nil, fmt.Errorf("secrets: %s: %w", KeyEnv, err)
		}
		log.Info("secrets: master key from the environment", "var", KeyEnv)
		return key, nil
	}
	if dataDir == "" {
		return nil, fmt.Errorf("secrets: no master key: set %s or give a data dir", KeyEnv)
	}
	path := KeyPath(dataDir)
	key, err := loadKey(path, log)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key, created, err := createKey(dataDir, path, log)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("secrets: created the master key; back it up with the data dir, secrets cannot be read without it", "path", path)
	}
	return key, nil
}

// decodeKey reads the base64 (standard or URL alphabet, padded or not) of
// 32 bytes. Its errors never quote the text.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(b) != keySize {
			return nil, fmt.Errorf("want the base64 of %d random bytes (openssl rand -base64 %d), got %d bytes", keySize, keySize, len(b))
		}
		return b, nil
	}
	return nil, fmt.Errorf("want the base64 of %d random bytes (openssl rand -base64 %d): the value is not base64", keySize, keySize)
}

func loadKey(path string, log *slog.Logger) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets: read master key: %w", err)
	}
	key, err := decodeKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("secrets: master key file %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("secrets: the master key file is readable by others; chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
	}
	return key, nil
}

// createKey writes a new random key as auth does its token: whole into a
// temp file (mode 0600), then linked into place, so a racing reader never
// sees a half-written file and a racing writer's key is the one kept.
func createKey(dir, path string, log *slog.Logger) (key []byte, created bool, err error) {
	key = make([]byte, keySize)
	rand.Read(key) // never fails (crypto/rand since Go 1.24)
	f, err := os.CreateTemp(dir, "."+KeyFile+"-*")
	if err != nil {
		return nil, false, fmt.Errorf("secrets: create master key: %w", err)
	}
	defer os.Remove(f.Name())
	// CreateTemp makes the file 0600 already; say so for whoever reads this.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("secrets: create master key: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("secrets: write master key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("secrets: write master key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("secrets: write master key: %w", err)
	}
	if err := os.Link(f.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race
			key, err := loadKey(path, log)
			return key, false, err
		}
		return nil, false, fmt.Errorf("secrets: create master key: %w", err)
	}
	return key, true, nil
}
