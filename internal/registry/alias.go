package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Errors of aliases and rollback.
var (
	// ErrBadAlias: an alias name, version or weight that cannot be.
	ErrBadAlias = errors.New("invalid alias")
	// ErrNoPrevious: rollback found no older version to go back to.
	ErrNoPrevious = errors.New("no previous version")
)

// Alias is a named pointer to one version, or a weighted split between two.
type Alias struct {
	Function string    `json:"function"`
	Name     string    `json:"name"`
	Routes   []Route   `json:"routes"` // weights sum to 100
	Updated  time.Time `json:"updated"`
}

// Route is one version of an alias with its share of invocations, in percent.
type Route struct {
	Version int `json:"version"`
	Weight  int `json:"weight"`
}

var aliasName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)

func aliasKey(fn, alias string) string { return "alias." + fn + "." + alias }

// pick chooses a version by weight.
func (a *Alias) pick() int {
	if len(a.Routes) == 1 {
		return a.Routes[0].Version
	}
	n := rand.IntN(100)
	for _, r := range a.Routes {
		if n < r.Weight {
			return r.Version
		}
		n -= r.Weight
	}
	return a.Routes[len(a.Routes)-1].Version
}

// resolveQualified resolves "name@qualifier": a version number or an alias.
// r.mu must be held (read).
func (r *Registry) resolveQualified(name, q string) (*Version, error) {
	if r.fns[name] == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	n, err := strconv.Atoi(q)
	if err != nil {
		a := r.aliases[name+"@"+q]
		if a == nil {
			return nil, fmt.Errorf("%w: %s has no alias %q", ErrNotFound, name, q)
		}
		n = a.pick()
	}
	v := r.versions[name+":"+strconv.Itoa(n)]
	if v == nil {
		return nil, fmt.Errorf("%w: %s has no version %d", ErrNotFound, name, n)
	}
	return v, nil
}

// SetAlias points alias at the given routes (one version with weight 100,
// or two versions whose weights sum to 100).
func (r *Registry) SetAlias(ctx context.Context, fn, alias string, routes []Route) (*Alias, error) {
	if !aliasName.MatchString(alias) {
		return nil, fmt.Errorf("%w: name %q: want a letter then letters, digits, - or _ (at most 64)", ErrBadAlias, alias)
	}
	routes = append([]Route(nil), routes...)
	// Serialised with Delete, so that an alias never outlives its function.
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	if err := r.checkRoutes(fn, routes); err != nil {
		return nil, err
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].Weight > routes[j].Weight })
	a := &Alias{Function: fn, Name: alias, Routes: routes, Updated: time.Now().UTC()}
	b, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("registry: encode alias: %w", err)
	}
	rev, err := r.kv.Put(ctx, aliasKey(fn, alias), b)
	if err != nil {
		return nil, fmt.Errorf("registry: write alias: %w", err)
	}
	r.mu.Lock()
	r.setAliasLocked(a, rev)
	r.mu.Unlock()
	// Told even if the watch applied it first (and tells too): the
	// listener knows before SetAlias returns.
	r.aliasChanged(fn)
	return a, nil
}

// aliasChanged tells the listener that fn's aliases changed.
func (r *Registry) aliasChanged(fn string) {
	if r.cfg.OnAliasChange != nil {
		r.cfg.OnAliasChange(fn)
	}
}

func (r *Registry) checkRoutes(fn string, routes []Route) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.fns[fn] == nil {
		return fmt.Errorf("%w: %s", ErrNotFound, fn)
	}
	if len(routes) == 0 || len(routes) > 2 {
		return fmt.Errorf("%w: give one version, or two with weights", ErrBadAlias)
	}
	sum := 0
	for i, rt := range routes {
		if r.versions[fn+":"+strconv.Itoa(rt.Version)] == nil {
			return fmt.Errorf("%w: %s has no version %d", ErrBadAlias, fn, rt.Version)
		}
		if rt.Weight < 1 || rt.Weight > 100 {
			return fmt.Errorf("%w: weight of version %d is %d; want 1 to 100", ErrBadAlias, rt.Version, rt.Weight)
		}
		if i == 1 && routes[0].Version == rt.Version {
			return fmt.Errorf("%w: version %d given twice", ErrBadAlias, rt.Version)
		}
		sum += rt.Weight
	}
	if sum != 100 {
		return fmt.Errorf("%w: weights sum to %d; want 100", ErrBadAlias, sum)
	}
	return nil
}

// setAliasLocked stores a unless an equal or newer write was applied, and
// reports whether it did.
func (r *Registry) setAliasLocked(a *Alias, rev uint64) bool {
	if r.stale(aliasKey(a.Function, a.Name), rev) {
		return false
	}
	r.aliases[a.Function+"@"+a.Name] = a
	return true
}

// Aliases lists fn's aliases by name.
func (r *Registry) Aliases(fn string) ([]*Alias, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.fns[fn] == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, fn)
	}
	var out []*Alias
	for _, a := range r.aliases {
		if a.Function == fn {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeleteAlias removes an alias.
func (r *Registry) DeleteAlias(ctx context.Context, fn, alias string) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.RLock()
	_, ok := r.aliases[fn+"@"+alias]
	r.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%w: %s has no alias %q", ErrNotFound, fn, alias)
	}
	if err := r.kv.Purge(ctx, aliasKey(fn, alias)); err != nil {
		return fmt.Errorf("registry: delete alias: %w", err)
	}
	r.mu.Lock()
	delete(r.aliases, fn+"@"+alias)
	r.mu.Unlock()
	r.aliasChanged(fn)
	return nil
}

// applyAlias folds a watched alias entry into memory and returns the
// function whose alias changed, or "" if none did.
func (r *Registry) applyAlias(e jetstream.KeyValueEntry) string {
	key, rev := e.Key(), e.Revision()
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		if r.stale(key, rev) {
			return ""
		}
		rest := strings.TrimPrefix(key, "alias.")
		fn, alias, _ := strings.Cut(rest, ".")
		_, had := r.aliases[fn+"@"+alias]
		delete(r.aliases, fn+"@"+alias)
		delete(r.revs, key)
		if !had {
			return ""
		}
		return fn
	}
	var a Alias
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		r.log.Error("registry: bad alias record", "key", key, "err", err)
		return ""
	}
	if !r.setAliasLocked(&a, rev) {
		return ""
	}
	return a.Function
}

// Rollback makes the newest version older than the current one current, in
// one step. The version it leaves drains (see OnChange) unless an alias
// routes to it.
func (r *Registry) Rollback(ctx context.Context, fn string) (*Version, error) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	for attempt := 0; attempt < 10; attempt++ {
		cur, rev, err := r.readFunction(ctx, fn, time.Now().UTC())
		if err != nil {
			return nil, err
		}
		if rev == 0 {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, fn)
		}
		r.mu.RLock()
		prev := 0
		for _, v := range r.versions {
			if v.Function == fn && v.Number < cur.Current && v.Number > prev {
				prev = v.Number
			}
		}
		r.mu.RUnlock()
		if prev == 0 {
			return nil, fmt.Errorf("%w: %s is at version %d, the oldest it has", ErrNoPrevious, fn, cur.Current)
		}
		cur.Current, cur.Updated = prev, time.Now().UTC()
		frev, err := r.writeFunction(ctx, &cur, rev)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if c := r.setFunction(&cur, frev); c != nil && r.cfg.OnChange != nil {
			r.cfg.OnChange(*c)
		}
		r.log.Info("registry: rolled back", "function", fn, "version", prev)
		return r.Resolve(fn)
	}
	return nil, fmt.Errorf("registry: rollback %s: %w", fn, errConflict)
}
