package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/manifest"
)

// Limits enforced by Set.
const (
	// MaxValueBytes bounds one value (Lambda's budget for a function's
	// whole environment).
	MaxValueBytes = 4096
	// MaxNameBytes bounds a secret's name.
	MaxNameBytes = 256
)

// Errors callers branch on.
var (
	// ErrNotFound: the function has no secret of that name.
	ErrNotFound = errors.New("secret not found")
	// ErrInvalid: a name or value Set refuses.
	ErrInvalid = errors.New("invalid secret")
	// ErrTooLarge: a value longer than MaxValueBytes.
	ErrTooLarge = errors.New("secret value too large")
	// ErrDecrypt: a stored value does not decrypt under this master key
	// (another key, or a damaged or moved record).
	ErrDecrypt = errors.New("secret cannot be decrypted")
)

// SecretInfo is what may be shown of a secret: never its value.
type SecretInfo struct {
	Name    string    `json:"name"`
	Updated time.Time `json:"updated"`
}

const (
	envelopeV1 = 1
	nonceSize  = 12
)

// Store seals, stores and opens functions' secrets. It is safe for
// concurrent use.
type Store struct {
	kv   jetstream.KeyValue
	aead cipher.AEAD

	mu     sync.Mutex
	cache  map[string]*cached // function → its decrypted secrets
	closed bool               // no watch: nothing is cached

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// cached is one function's decrypted secrets, or a load in progress (env
// nil). A load stores its result only if its own entry is still the map's:
// a change drops the entry, so a load that raced with it is thrown away.
type cached struct {
	env map[string]string
}

// Open returns the store of secrets kept in kv, with the master key from
// TERN_SECRET_KEY or dataDir (see the package doc), and starts watching kv
// for changes made by other nodes. Close stops the watch.
func Open(dataDir string, kv jetstream.KeyValue, log *slog.Logger) (*Store, error) {
	key, err := masterKey(dataDir, log)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	s := &Store{kv: kv, aead: aead, cache: make(map[string]*cached)}
	ctx, cancel := context.WithCancel(context.Background())
	// Only changes from now on: the cache starts empty. Keys and
	// operations are enough, values are not fetched.
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.MetaOnly())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("secrets: watch: %w", err)
	}
	s.stop, s.done = cancel, make(chan struct{})
	go s.follow(w)
	return s, nil
}

func (s *Store) follow(w jetstream.KeyWatcher) {
	defer close(s.done)
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			continue
		}
		if fn, _, ok := strings.Cut(e.Key(), "."); ok {
			s.forget(fn)
		}
	}
	// The watch ended (Close, or the connection is gone): the cache could
	// go stale without it, so nothing is cached from now on.
	s.mu.Lock()
	s.closed = true
	clear(s.cache)
	s.mu.Unlock()
}

// Close stops the watch and empties the cache; the Store still works,
// without caching. Close is idempotent.
func (s *Store) Close(context.Context) error {
	s.closeOnce.Do(func() {
		s.stop()
		<-s.done // follow stops caching as it ends
	})
	return nil
}

// forget drops fn's cached secrets.
func (s *Store) forget(fn string) {
	s.mu.Lock()
	delete(s.cache, fn)
	s.mu.Unlock()
}

func kvKey(fn, name string) string { return fn + "." + name }

// CheckName reports whether name may name a secret.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the name is empty", ErrInvalid)
	case len(name) > MaxNameBytes:
		return fmt.Errorf("%w: the name is longer than %d bytes", ErrInvalid, MaxNameBytes)
	}
	if msg := manifest.EnvNameProblem(name); msg != "" {
		return fmt.Errorf("%w: %q: %s (a secret becomes an environment variable)", ErrInvalid, name, msg)
	}
	return nil
}

func checkFunction(fn string) error {
	if !manifest.ValidName(fn) {
		return fmt.Errorf("%w: function name %q", ErrInvalid, fn)
	}
	return nil
}

// checkValue refuses what cannot be an environment variable's value. The
// value itself is never quoted.
func checkValue(name, value string) error {
	switch {
	case len(value) > MaxValueBytes:
		return fmt.Errorf("%w: %s takes %d bytes, more than the %d allowed", ErrTooLarge, name, len(value), MaxValueBytes)
	case strings.IndexByte(value, 0) >= 0:
		return fmt.Errorf("%w: the value of %s contains a NUL byte", ErrInvalid, name)
	case !utf8.ValidString(value):
		return fmt.Errorf("%w: the value of %s is not UTF-8 text (base64-encode binary values)", ErrInvalid, name)
	}
	return nil
}

// Set stores fn's secret name, replacing any value it had. Running
// instances keep the value they started with.
func (s *Store) Set(ctx context.Context, fn, name, value string) error {
	if err := checkFunction(fn); err != nil {
		return err
	}
	if err := CheckName(name); err != nil {
		return err
	}
	if err := checkValue(name, value); err != nil {
		return err
	}
	key := kvKey(fn, name)
	if _, err := s.kv.Put(ctx, key, s.seal(key, []byte(value))); err != nil {
		return fmt.Errorf("secrets: set %s of %s: %w", name, fn, err)
	}
	s.forget(fn)
	return nil
}

// Delete removes fn's secret name (ErrNotFound if it has none).
func (s *Store) Delete(ctx context.Context, fn, name string) error {
	if err := checkFunction(fn); err != nil {
		return err
	}
	if err := CheckName(name); err != nil {
		return fmt.Errorf("%w: %s of %s", ErrNotFound, name, fn)
	}
	key := kvKey(fn, name)
	if _, err := s.kv.Get(ctx, key); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("%w: %s of %s", ErrNotFound, name, fn)
		}
		return fmt.Errorf("secrets: delete %s of %s: %w", name, fn, err)
	}
	// Purge, not Delete: no old ciphertext stays in the bucket.
	if err := s.kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("secrets: delete %s of %s: %w", name, fn, err)
	}
	s.forget(fn)
	return nil
}

// DeleteAll removes every secret of fn (a deleted function's).
func (s *Store) DeleteAll(ctx context.Context, fn string) error {
	if err := checkFunction(fn); err != nil {
		return err
	}
	es, err := s.entries(ctx, fn, true)
	if err != nil {
		return err
	}
	defer s.forget(fn)
	for _, e := range es {
		if err := s.kv.Purge(ctx, e.Key()); err != nil {
			return fmt.Errorf("secrets: delete the secrets of %s: %w", fn, err)
		}
	}
	return nil
}

// Names lists fn's secrets by name, sorted, without their values.
func (s *Store) Names(ctx context.Context, fn string) ([]SecretInfo, error) {
	if err := checkFunction(fn); err != nil {
		return nil, err
	}
	es, err := s.entries(ctx, fn, true)
	if err != nil {
		return nil, err
	}
	out := make([]SecretInfo, 0, len(es))
	for _, e := range es {
		out = append(out, SecretInfo{Name: strings.TrimPrefix(e.Key(), fn+"."), Updated: e.Created()})
	}
	slices.SortFunc(out, func(a, b SecretInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Env returns fn's secrets decrypted, name → value (empty when it has
// none). The map is the caller's. A value that does not decrypt fails the
// whole call with ErrDecrypt, naming the secret.
func (s *Store) Env(ctx context.Context, fn string) (map[string]string, error) {
	if err := checkFunction(fn); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.load(ctx, fn)
	}
	if c := s.cache[fn]; c != nil && c.env != nil {
		env := maps.Clone(c.env)
		s.mu.Unlock()
		return env, nil
	}
	mine := &cached{}
	s.cache[fn] = mine
	s.mu.Unlock()

	env, err := s.load(ctx, fn)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cache[fn] != mine {
		// A change came in while loading (or another load took over):
		// the answer still holds for this call, not for later ones.
		return env, err
	}
	if err != nil {
		delete(s.cache, fn)
		return nil, err
	}
	mine.env = env
	return maps.Clone(env), nil
}

func (s *Store) load(ctx context.Context, fn string) (map[string]string, error) {
	es, err := s.entries(ctx, fn, false)
	if err != nil {
		return nil, err
	}
	// In name order, so that an error names the same secret every time.
	slices.SortFunc(es, func(a, b jetstream.KeyValueEntry) int { return strings.Compare(a.Key(), b.Key()) })
	env := make(map[string]string, len(es))
	for _, e := range es {
		name := strings.TrimPrefix(e.Key(), fn+".")
		v, err := s.open(e.Key(), e.Value())
		if err != nil {
			return nil, fmt.Errorf("secrets: %s of function %s: %w", name, fn, err)
		}
		env[name] = string(v)
	}
	return env, nil
}

// entries returns the current entries of fn's keys (without values when
// metaOnly).
func (s *Store) entries(ctx context.Context, fn string, metaOnly bool) ([]jetstream.KeyValueEntry, error) {
	opts := []jetstream.WatchOpt{jetstream.IgnoreDeletes()}
	if metaOnly {
		opts = append(opts, jetstream.MetaOnly())
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.kv.Watch(wctx, fn+".*", opts...)
	if err != nil {
		return nil, fmt.Errorf("secrets: read the secrets of %s: %w", fn, err)
	}
	defer w.Stop()
	var out []jetstream.KeyValueEntry
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("secrets: read the secrets of %s: watch closed", fn)
			}
			if e == nil { // the current values are all in
				return out, nil
			}
			out = append(out, e)
		case <-ctx.Done():
			return nil, fmt.Errorf("secrets: read the secrets of %s: %w", fn, context.Cause(ctx))
		}
	}
}

// seal encrypts value for key: version | nonce | ciphertext and tag, with
// key as additional data.
func (s *Store) seal(key string, value []byte) []byte {
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(value)+s.aead.Overhead())
	out[0] = envelopeV1
	rand.Read(out[1:]) // never fails (crypto/rand since Go 1.24)
	return s.aead.Seal(out, out[1:1+nonceSize], value, []byte(key))
}

// open decrypts what seal made for key. Its errors never carry the value.
func (s *Store) open(key string, blob []byte) ([]byte, error) {
	if len(blob) < 1+nonceSize+s.aead.Overhead() {
		return nil, fmt.Errorf("%w: the record is truncated", ErrDecrypt)
	}
	if blob[0] != envelopeV1 {
		return nil, fmt.Errorf("%w: unknown record version %d", ErrDecrypt, blob[0])
	}
	v, err := s.aead.Open(nil, blob[1:1+nonceSize], blob[1+nonceSize:], []byte(key))
	if err != nil {
		return nil, fmt.Errorf("%w: wrong master key (%s or %s), or a damaged or moved record", ErrDecrypt, KeyEnv, KeyFile)
	}
	return v, nil
}
