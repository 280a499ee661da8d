package uids

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/store"
)

func testStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Dir: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Two allocators (two servers of one cluster) give out uids for the same
// functions at once: every function gets one uid, the same from both,
// none shared, all in the store's block; after a restart, the same again.
func TestAllocatorAgreesAndNeverShares(t *testing.T) {
	dir := t.TempDir()
	st := testStore(t, dir)
	ctx := context.Background()
	a, b := New(st.UIDs), New(st.UIDs)

	const n = 40
	got := [2]map[string]int{{}, {}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for k, alloc := range []*Allocator{a, b} {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fn := fmt.Sprintf("fn-%d", (i*7+k*3)%n) // both ask for every function, in other orders
				uid, err := alloc.For(ctx, fn)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got[k][fn] = uid
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	seen := map[int]string{}
	for fn, uid := range got[0] {
		if got[1][fn] != uid {
			t.Errorf("%s: %d and %d", fn, uid, got[1][fn])
		}
		if other, ok := seen[uid]; ok {
			t.Errorf("uid %d given to %s and %s", uid, fn, other)
		}
		seen[uid] = fn
		if uid < Lowest || uid >= 1<<31 || (uid-Lowest)/BlockSize != (a.base-Lowest)/BlockSize {
			t.Errorf("%s: uid %d outside the store's block at %d", fn, uid, a.base)
		}
	}
	if len(seen) != n || a.base != b.base {
		t.Fatalf("%d functions with uids, bases %d and %d", len(seen), a.base, b.base)
	}

	// A restart reads the same uids; a new function gets a new one.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = testStore(t, dir)
	defer st.Close()
	c := New(st.UIDs)
	for fn, uid := range got[0] {
		if again, err := c.For(ctx, fn); err != nil || again != uid {
			t.Errorf("%s after a restart: %d %v, want %d", fn, again, err, uid)
		}
	}
	if uid, err := c.For(ctx, "new"); err != nil || seen[uid] != "" {
		t.Errorf("a new function got %d (%v), already %q's", uid, err, seen[uid])
	}
}

// Stores of their own draw their bases apart (almost always).
func TestStoresDrawTheirOwnBase(t *testing.T) {
	bases := map[int]bool{}
	for range 3 {
		st := testStore(t, t.TempDir())
		a := New(st.UIDs)
		if _, err := a.For(context.Background(), "f"); err != nil {
			t.Fatal(err)
		}
		bases[a.base] = true
		_ = st.Close()
	}
	if len(bases) < 2 {
		t.Errorf("three stores drew %v", bases)
	}
}
