// Package uids gives every function a uid of its own, which its jailed
// instances run as: Base, Base+1, ... in the order functions first start,
// recorded in a KV bucket so that every server of a cluster, and every
// restart, gives a function the same uid and never gives it to another.
// A uid is never reused, also not after its function is deleted (a
// function created again under the same name gets its old uid back).
package uids

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Base is the first uid given to a function: far above the users and
// groups of a host, and of the ranges container runtimes map, and below
// 2^31, since some programs take uids for signed numbers.
const Base = 2_000_000_000

// Max is how many functions can get a uid.
const Max = 100_000_000

// nextKey holds the number of uids given out so far.
const nextKey = "next"

// Allocator hands out and remembers function uids.
type Allocator struct {
	kv jetstream.KeyValue

	mu    sync.Mutex
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
	key := "fn." + fn
	for range 100 {
		if uid, err := a.get(ctx, key); err == nil {
			return uid, nil
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, err
		}
		n, err := a.take(ctx)
		if err != nil {
			return 0, err
		}
		_, err = a.kv.Create(ctx, key, []byte(strconv.Itoa(Base+n)))
		if err == nil {
			return Base + n, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, err
		}
		// Another server gave fn a uid meanwhile: n stays unused, and the
		// next round reads fn's.
	}
	return 0, errors.New("too much contention for uids")
}

func (a *Allocator) get(ctx context.Context, key string) (int, error) {
	e, err := a.kv.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	uid, err := strconv.Atoi(string(e.Value()))
	if err != nil || uid < Base || uid >= Base+Max {
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
		if n >= Max {
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
