// Package uids gives every function a uid of its own, which its jailed
// instances run as: base, base+1, ... in the order functions first start,
// recorded in a KV bucket so that every server of a cluster, and every
// restart, gives a function the same uid and never gives it to another.
// A uid is never reused, also not after its function is deleted (a
// function created again under the same name gets its old uid back).
//
// The base is drawn once per store, at random among Blocks blocks of
// BlockSize uids from Lowest: two Tern stores on one host (two servers
// with data dirs of their own) then almost never hand out the same uids.
package uids

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

const (
	// Lowest is the lowest uid given to a function: far above the users
	// and groups of a host, and of the ranges container runtimes map.
	Lowest = 2_000_000_000
	// BlockSize is how many functions one store can give uids to.
	BlockSize = 1 << 16
	// Blocks is how many blocks there are to draw from, all below 2^31
	// (some programs take uids for signed numbers).
	Blocks = (1<<31 - Lowest) / BlockSize
)

// Keys of the bucket besides fn.<name>: the store's base, and how many
// uids were given out.
const (
	baseKey = "base"
	nextKey = "next"
)

// Allocator hands out and remembers function uids.
type Allocator struct {
	kv jetstream.KeyValue

	mu    sync.Mutex
	base  int // 0 until read or drawn
	cache map[string]int
}

// New returns an allocator over kv (store.UIDsBucket).
func New(kv jetstream.KeyValue) *Allocator {
	return &Allocator{kv: kv, cache: make(map[string]int)}
}

// For returns fn's uid, giving it the next one if it has none yet.
func (a *Allocator) For(ctx context.Context, fn string) (int, error) {
	a.mu.Lock()
	uid, ok := a.cache[fn]
	a.mu.Unlock()
	if ok {
		return uid, nil
	}
	uid, err := a.lookupOrTake(ctx, fn)
	if err != nil {
		return 0, fmt.Errorf("uids: %s: %w", fn, err)
	}
	a.mu.Lock()
	a.cache[fn] = uid
	a.mu.Unlock()
	return uid, nil
}

func (a *Allocator) lookupOrTake(ctx context.Context, fn string) (int, error) {
	base, err := a.storeBase(ctx)
	if err != nil {
		return 0, err
	}
	key := "fn." + fn
	for range 100 {
		if uid, err := a.get(ctx, key, base); err == nil {
			return uid, nil
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, err
		}
		n, err := a.take(ctx)
		if err != nil {
			return 0, err
		}
		_, err = a.kv.Create(ctx, key, []byte(strconv.Itoa(base+n)))
		if err == nil {
			return base + n, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, err
		}
		// Another server gave fn a uid meanwhile: n stays unused, and the
		// next round reads fn's.
	}
	return 0, errors.New("too much contention for uids")
}

// storeBase reads the store's base, drawing it if the store has none.
func (a *Allocator) storeBase(ctx context.Context) (int, error) {
	a.mu.Lock()
	base := a.base
	a.mu.Unlock()
	if base != 0 {
		return base, nil
	}
	drawn := Lowest + rand.IntN(Blocks)*BlockSize
	if _, err := a.kv.Create(ctx, baseKey, []byte(strconv.Itoa(drawn))); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return 0, err
	}
	// Ours, or the one another server drew first.
	e, err := a.kv.Get(ctx, baseKey)
	if err != nil {
		return 0, err
	}
	base, err = strconv.Atoi(string(e.Value()))
	if err != nil || base < Lowest || base+BlockSize > 1<<31 {
		return 0, fmt.Errorf("corrupt uid base %q", e.Value())
	}
	a.mu.Lock()
	a.base = base
	a.mu.Unlock()
	return base, nil
}

func (a *Allocator) get(ctx context.Context, key string, base int) (int, error) {
	e, err := a.kv.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	uid, err := strconv.Atoi(string(e.Value()))
	if err != nil || uid < base || uid >= base+BlockSize {
		return 0, fmt.Errorf("corrupt uid record %q", e.Value())
	}
	return uid, nil
}

// take reserves the next number: the counter moves on by compare and swap.
func (a *Allocator) take(ctx context.Context) (int, error) {
	for range 100 {
		n, rev := 0, uint64(0)
		e, err := a.kv.Get(ctx, nextKey)
		switch {
		case err == nil:
			if n, err = strconv.Atoi(string(e.Value())); err != nil || n < 0 {
				return 0, fmt.Errorf("corrupt uid counter %q", e.Value())
			}
			rev = e.Revision()
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return 0, err
		}
		if n >= BlockSize {
			return 0, errors.New("every uid is taken")
		}
		next := []byte(strconv.Itoa(n + 1))
		if rev == 0 {
			_, err = a.kv.Create(ctx, nextKey, next)
		} else {
			_, err = a.kv.Update(ctx, nextKey, next, rev)
		}
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return 0, err
		}
	}
	return 0, errors.New("too much contention for uids")
}

// isWrongSequence: an Update lost a race (the revision moved on).
func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
