package ratelimit

import (
	"net/http/httptest"
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	l := New()
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := l.Allow("f", 2, 3, now); !ok {
			t.Fatalf("request %d of a burst of 3 refused", i)
		}
	}
	ok, wait := l.Allow("f", 2, 3, now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("fourth: %v %v, want refused for 500ms", ok, wait)
	}
	if ok, _ := l.Allow("g", 2, 3, now); !ok {
		t.Error("another name shares the bucket")
	}
	if ok, _ := l.Allow("f", 2, 3, now.Add(500*time.Millisecond)); !ok {
		t.Error("a token did not come back after 500ms")
	}
	if ok, _ := l.Allow("f", 0, 0, now); !ok {
		t.Error("no limit refused")
	}
	// A changed limit is a new bucket.
	if ok, _ := l.Allow("f", 10, 10, now); !ok {
		t.Error("a raised limit still refused")
	}
	// Idle buckets go.
	l.Allow("h", 1, 1, now)
	l.Allow("x", 1, 1, now.Add(2*idle))
	if _, ok := l.buckets["h"]; ok {
		t.Error("an idle bucket was kept")
	}
}

func TestRefuse(t *testing.T) {
	w := httptest.NewRecorder()
	err := Refuse(w, "function f", 1200*time.Millisecond)
	if w.Header().Get("Retry-After") != "2" || err == nil {
		t.Errorf("Retry-After %q, err %v", w.Header().Get("Retry-After"), err)
	}
}
