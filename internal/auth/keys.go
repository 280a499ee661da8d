package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"
)

// KeyPrefix starts every API key: tern_k_<id>_<secret>.
const KeyPrefix = "tern_k_"

// Errors of the key store.
var (
	// ErrInvalid marks a key request that is wrong (role, functions,
	// expiry, name).
	ErrInvalid = errors.New("invalid key request")
	// ErrNotFound: no key has this id.
	ErrNotFound = errors.New("no such key")
	// ErrUnknownKey: the presented key is not one of ours (or was
	// revoked).
	ErrUnknownKey = errors.New("invalid key")
	// ErrExpired: the presented key is past its expiry.
	ErrExpired = errors.New("key expired")
	// ErrUnavailable: the key cache lost its watch of the store and
	// cannot tell revoked keys from valid ones until it has it again.
	ErrUnavailable = errors.New("key store unavailable")
)

// Key is a key's record as shown: never its secret or hash.
type Key struct {
	ID        string    `json:"id"`
	Name      string    `json:"name,omitempty"`
	Role      Role      `json:"role"`
	Functions []string  `json:"functions,omitempty"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires,omitzero"` // zero: never
	CreatedBy string    `json:"createdBy"`
}

// Expired reports whether k is past its expiry at now.
func (k *Key) Expired(now time.Time) bool { return !k.Expires.IsZero() && !now.Before(k.Expires) }

// record is what the store holds under the key's id: the record and the
// hex SHA-256 of the whole key. The key itself is never stored: it has a
// 256-bit random secret, so a fast hash is as good as a slow one.
type record struct {
	Key
	Hash string `json:"hash"`
}

// KeySpec is what a new key is made of.
type KeySpec struct {
	Name      string
	Role      string
	Functions []string
	// TTL is how long the key is valid; 0: until revoked.
	TTL time.Duration
}

const (
	maxKeyName   = 64
	maxFunctions = 100
)

var (
	functionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	keyIDRE    = regexp.MustCompile(`^[0-9a-f]{12}$`)
)

// validate returns the key's role and functions (deduplicated).
func (s KeySpec) validate() (Role, []string, error) {
	role, err := ParseRole(s.Role)
	if err != nil {
		return "", nil, err
	}
	var fns []string
	for _, f := range s.Functions {
		if !functionRE.MatchString(f) {
			return "", nil, fmt.Errorf("%w: function %q: want a function name (letters, digits, '-' and '_', at most 64)", ErrInvalid, f)
		}
		if !slices.Contains(fns, f) {
			fns = append(fns, f)
		}
	}
	switch {
	case len(fns) > maxFunctions:
		return "", nil, fmt.Errorf("%w: functions: at most %d", ErrInvalid, maxFunctions)
	case len(fns) > 0 && role == RoleAdmin:
		return "", nil, fmt.Errorf("%w: an admin key cannot be limited to functions (it could make keys without the limit)", ErrInvalid)
	case s.TTL < 0:
		return "", nil, fmt.Errorf("%w: expires: must not be negative", ErrInvalid)
	case len(s.Name) > maxKeyName:
		return "", nil, fmt.Errorf("%w: name: at most %d characters", ErrInvalid, maxKeyName)
	case strings.ContainsFunc(s.Name, func(r rune) bool { return !unicode.IsPrint(r) }):
		return "", nil, fmt.Errorf("%w: name: only printable characters", ErrInvalid)
	}
	return role, fns, nil
}

// ParseDuration is time.ParseDuration that also takes a number of days
// first: "30d", "1d12h".
func ParseDuration(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok || days == "" || strings.Trim(days, "0123456789") != "" {
		return time.ParseDuration(s)
	}
	n, err := strconv.Atoi(days)
	if err != nil || n > 36500 {
		return 0, fmt.Errorf("%q: too many days", s)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 {
			return 0, fmt.Errorf("%q: want days then a duration, such as 1d12h", s)
		}
		d += r
	}
	return d, nil
}

// Keys stores API keys in a KV bucket (only hashes) and keeps them all in
// memory, following the bucket with a watch, so that authenticating a
// request never reads the store and a key revoked on any server stops
// working everywhere as soon as the watch delivers the change
// (milliseconds; on the server that revokes it, at once).
//
// If the watch ends unexpectedly, keys are refused (ErrUnavailable) until
// it is back: a stale cache could accept revoked keys.
type Keys struct {
	kv  jetstream.KeyValue
	log *slog.Logger
	now func() time.Time

	mu    sync.RWMutex
	byID  map[string]*cachedKey
	revs  map[string]uint64 // newest revision applied per id
	stale bool

	cancel context.CancelFunc
	done   chan struct{}
}

type cachedKey struct {
	key  Key
	hash [sha256.Size]byte
}

// NewKeys returns the key store over kv; Start loads it.
func NewKeys(kv jetstream.KeyValue, log *slog.Logger) *Keys {
	return &Keys{kv: kv, log: log, now: time.Now, byID: map[string]*cachedKey{}, revs: map[string]uint64{}}
}

// Start loads every key and follows changes until Close.
func (k *Keys) Start(ctx context.Context) error {
	wctx, cancel := context.WithCancel(context.Background())
	w, err := k.watch(ctx, wctx)
	if err != nil {
		cancel()
		return err
	}
	k.cancel = cancel
	k.done = make(chan struct{})
	go k.follow(wctx, w)
	k.mu.RLock()
	n := len(k.byID)
	k.mu.RUnlock()
	k.log.Info("keys: loaded", "keys", n)
	return nil
}

// Close stops following changes and waits for the watch to end. It is
// safe to call more than once.
func (k *Keys) Close(ctx context.Context) error {
	if k.cancel == nil {
		return nil
	}
	k.cancel()
	select {
	case <-k.done:
		k.cancel = nil
		return nil
	case <-ctx.Done():
		return fmt.Errorf("keys: close: %w", ctx.Err())
	}
}

// watch starts a watch living as long as wctx, loads the initial values
// (waiting at most until ctx is done) and puts them in place of the cache.
func (k *Keys) watch(ctx, wctx context.Context) (jetstream.KeyWatcher, error) {
	w, err := k.kv.WatchAll(wctx)
	if err != nil {
		return nil, fmt.Errorf("keys: watch: %w", err)
	}
	byID, revs := map[string]*cachedKey{}, map[string]uint64{}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("keys: watch closed while loading")
			}
			if e == nil {
				k.mu.Lock()
				k.byID, k.revs, k.stale = byID, revs, false
				k.mu.Unlock()
				return w, nil
			}
			k.applyTo(byID, revs, e)
		case <-ctx.Done():
			_ = w.Stop()
			return nil, fmt.Errorf("keys: loading: %w", ctx.Err())
		}
	}
}

// follow applies changes; when the watch ends before wctx, it refuses
// keys and watches again every second until it succeeds.
func (k *Keys) follow(wctx context.Context, w jetstream.KeyWatcher) {
	defer close(k.done)
	for {
		for e := range w.Updates() {
			if e != nil {
				k.mu.Lock()
				k.applyTo(k.byID, k.revs, e)
				k.mu.Unlock()
			}
		}
		_ = w.Stop()
		if wctx.Err() != nil {
			return
		}
		k.mu.Lock()
		k.stale = true
		k.mu.Unlock()
		k.log.Warn("keys: lost the watch of the key store; refusing keys until it is back")
		for w = nil; w == nil; {
			select {
			case <-wctx.Done():
				return
			case <-time.After(time.Second):
			}
			lctx, cancel := context.WithTimeout(wctx, 10*time.Second)
			nw, err := k.watch(lctx, wctx)
			cancel()
			if err != nil {
				k.log.Warn("keys: watching the key store again", "err", err)
				continue
			}
			w = nw
			k.log.Info("keys: watching the key store again")
		}
	}
}

// applyTo folds one KV entry into byID and revs (k.mu held when they are
// the cache's).
func (k *Keys) applyTo(byID map[string]*cachedKey, revs map[string]uint64, e jetstream.KeyValueEntry) {
	id, rev := e.Key(), e.Revision()
	if rev <= revs[id] {
		return // older than what this node applied already
	}
	revs[id] = rev
	if e.Operation() != jetstream.KeyValuePut {
		delete(byID, id)
		return
	}
	c, err := decodeRecord(e.Value())
	if err != nil {
		delete(byID, id)
		k.log.Error("keys: bad key record; the key is refused", "id", id, "err", err)
		return
	}
	byID[id] = c
}

func decodeRecord(b []byte) (*cachedKey, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	h, err := hex.DecodeString(r.Hash)
	if err != nil || len(h) != sha256.Size {
		return nil, errors.New("hash: want 64 hex digits")
	}
	c := &cachedKey{key: r.Key}
	copy(c.hash[:], h)
	return c, nil
}

// Create makes a key and returns it (shown this once: only its hash is
// kept) with its record. by is who asks, kept in the record.
func (k *Keys) Create(ctx context.Context, spec KeySpec, by string) (string, *Key, error) {
	role, fns, err := spec.validate()
	if err != nil {
		return "", nil, err
	}
	now := k.now().UTC().Truncate(time.Second)
	rec := record{Key: Key{Name: spec.Name, Role: role, Functions: fns, Created: now, CreatedBy: by}}
	if spec.TTL > 0 {
		rec.Expires = now.Add(spec.TTL)
	}
	for attempt := 0; ; attempt++ {
		id, secret, err := newKey()
		if err != nil {
			return "", nil, err
		}
		rec.ID = id
		sum := sha256.Sum256([]byte(secret))
		rec.Hash = hex.EncodeToString(sum[:])
		b, err := json.Marshal(rec)
		if err != nil {
			return "", nil, fmt.Errorf("keys: %w", err)
		}
		rev, err := k.kv.Create(ctx, id, b)
		if errors.Is(err, jetstream.ErrKeyExists) && attempt < 3 {
			continue // ids are random: another draw will do
		}
		if err != nil {
			return "", nil, fmt.Errorf("keys: store: %w", err)
		}
		// Known here at once; other servers learn it from the watch.
		k.mu.Lock()
		if rev > k.revs[id] {
			k.revs[id] = rev
			k.byID[id] = &cachedKey{key: rec.Key, hash: sum}
		}
		k.mu.Unlock()
		out := rec.Key
		return secret, &out, nil
	}
}

func newKey() (id, key string, err error) {
	var b [6 + 32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("keys: %w", err)
	}
	id = hex.EncodeToString(b[:6])
	return id, KeyPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(b[6:]), nil
}

// List returns every key's record (expired ones too), oldest first.
func (k *Keys) List(ctx context.Context) ([]Key, error) {
	ids, err := k.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("keys: list: %w", err)
	}
	out := []Key{}
	for id := range ids.Keys() {
		e, err := k.kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // revoked meanwhile
		}
		if err != nil {
			_ = ids.Stop()
			return nil, fmt.Errorf("keys: get %s: %w", id, err)
		}
		c, err := decodeRecord(e.Value())
		if err != nil {
			k.log.Error("keys: bad key record", "id", id, "err", err)
			continue
		}
		out = append(out, c.key)
	}
	slices.SortFunc(out, func(a, b Key) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Revoke deletes the key with id. It stops working on this server at
// once, on the others when their watch delivers the deletion.
func (k *Keys) Revoke(ctx context.Context, id string) (*Key, error) {
	if !keyIDRE.MatchString(id) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	e, err := k.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: get %s: %w", id, err)
	}
	c, err := decodeRecord(e.Value())
	if err != nil {
		c = &cachedKey{key: Key{ID: id}}
	}
	if err := k.kv.Delete(ctx, id); err != nil {
		return nil, fmt.Errorf("keys: revoke %s: %w", id, err)
	}
	// Delete does not tell the deletion's revision: ignore every later
	// word of this id. Ids are random and 48 bits long; one drawn again
	// would be refused here, never wrongly accepted.
	k.mu.Lock()
	delete(k.byID, id)
	k.revs[id] = math.MaxUint64
	k.mu.Unlock()
	return &c.key, nil
}

// Authenticate returns the principal of a presented key. An unknown or
// revoked key is ErrUnknownKey, an expired one ErrExpired.
func (k *Keys) Authenticate(presented string) (Principal, error) {
	rest, ok := strings.CutPrefix(presented, KeyPrefix)
	if !ok {
		return Principal{}, ErrUnknownKey
	}
	id, _, ok := strings.Cut(rest, "_")
	if !ok {
		return Principal{}, ErrUnknownKey
	}
	k.mu.RLock()
	c, stale := k.byID[id], k.stale
	k.mu.RUnlock()
	if stale {
		return Principal{}, ErrUnavailable
	}
	if c == nil || !hashMatches(presented, &c.hash) {
		return Principal{}, ErrUnknownKey
	}
	if c.key.Expired(k.now()) {
		return Principal{}, ErrExpired
	}
	return Principal{ID: c.key.ID, Role: c.key.Role, Functions: c.key.Functions}, nil
}

// hashMatches compares presented's SHA-256 with want in constant time:
// both are 32 bytes whatever was presented.
func hashMatches(presented string, want *[sha256.Size]byte) bool {
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(sum[:], want[:]) == 1
}
