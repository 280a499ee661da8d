// Package ratelimit keeps token buckets by name (a function, a key), for
// limits a caller answers with 429 and Retry-After.
package ratelimit

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ternhq/tern/internal/apierror"
)

// idle is how long an unused bucket is kept.
const idle = 10 * time.Minute

// Limits is a set of token buckets; safe for concurrent use.
type Limits struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim   *rate.Limiter
	rps   int
	burst int
	used  time.Time
}

// New returns an empty set.
func New() *Limits { return &Limits{buckets: make(map[string]*bucket)} }

// Allow takes a token from name's bucket (rps tokens a second, at most
// burst at once; a changed limit starts a new bucket). When there is none
// it returns false and how long until there is.
func (l *Limits) Allow(name string, rps, burst int, now time.Time) (bool, time.Duration) {
	if rps <= 0 {
		return true, 0
	}
	burst = max(burst, 1)
	l.mu.Lock()
	if now.Sub(l.swept) > idle {
		for k, b := range l.buckets {
			if now.Sub(b.used) > idle {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[name]
	if b == nil || b.rps != rps || b.burst != burst {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(rps), burst), rps: rps, burst: burst}
		l.buckets[name] = b
	}
	b.used = now
	l.mu.Unlock()
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Refuse answers a request over its limit: 429 with Retry-After (whole
// seconds, at least 1).
func Refuse(w http.ResponseWriter, what string, wait time.Duration) error {
	secs := max(int((wait+time.Second-1)/time.Second), 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return apierror.New(http.StatusTooManyRequests, apierror.CodeThrottled,
		fmt.Sprintf("%s is over its rate limit; retry after %d s", what, secs))
}
