package dispatch

import "sync"

// capacity is the node's budget of instances and function memory, shared by
// every pool, with per-function caps (scale.reserved). A pool that cannot
// get room waits in a FIFO of blocked pools; when room frees, the janitor
// admits blocked pools one start at a time, round robin, so one function's
// burst cannot starve another. Its lock is a leaf: nothing else is locked
// while it is held.
type capacity struct {
	mu           sync.Mutex
	maxInstances int // 0: no cap
	maxMemoryMB  int // 0: no cap

	instances int
	memoryMB  int
	perFn     map[string]*fnUse
	blocked   []*pool
}

type fnUse struct{ instances, memoryMB int }

func newCapacity(maxInstances, maxMemoryMB int) *capacity {
	return &capacity{maxInstances: maxInstances, maxMemoryMB: maxMemoryMB, perFn: make(map[string]*fnUse)}
}

// take reserves room for one instance of p. When there is none it queues p
// in the line of blocked pools and returns false; newly says p was not in
// line yet.
func (c *capacity) take(p *pool) (ok, newly bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.takeLocked(p) {
		return true, false
	}
	return false, c.blockLocked(p)
}

// takeQuiet is take without joining the line (keeping scale.min or the
// autoscaler's count is not a request waiting).
func (c *capacity) takeQuiet(p *pool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.takeLocked(p)
}

func (c *capacity) takeLocked(p *pool) bool {
	m := p.v.Manifest
	use := c.perFn[p.v.Function]
	if use == nil {
		use = &fnUse{}
		c.perFn[p.v.Function] = use
	}
	if m.Scale.Reserved > 0 && use.instances >= m.Scale.Reserved {
		return false // the function's own cap: its own instances must go
	}
	if (c.maxInstances > 0 && c.instances >= c.maxInstances) ||
		(c.maxMemoryMB > 0 && c.memoryMB+m.Memory > c.maxMemoryMB) {
		return false // the node is full
	}
	c.instances++
	c.memoryMB += m.Memory
	use.instances++
	use.memoryMB += m.Memory
	return true
}

// give returns the room of one instance of p.
func (c *capacity) give(p *pool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.instances--
	c.memoryMB -= p.v.Manifest.Memory
	if use := c.perFn[p.v.Function]; use != nil {
		use.instances--
		use.memoryMB -= p.v.Manifest.Memory
		if use.instances <= 0 {
			delete(c.perFn, p.v.Function)
		}
	}
}

func (c *capacity) blockLocked(p *pool) bool {
	for _, b := range c.blocked {
		if b == p {
			return false
		}
	}
	c.blocked = append(c.blocked, p)
	return true
}

// waiting reports whether any pool waits for room.
func (c *capacity) waiting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.blocked) > 0
}

// line returns the blocked pools, longest waiting first.
func (c *capacity) line() []*pool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*pool(nil), c.blocked...)
}

// block queues p as waiting for room (once).
func (c *capacity) block(p *pool) {
	c.mu.Lock()
	c.blockLocked(p)
	c.mu.Unlock()
}

// atReserved reports whether p's function uses all its reserved instances.
func (c *capacity) atReserved(p *pool) bool {
	r := p.v.Manifest.Scale.Reserved
	if r == 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	use := c.perFn[p.v.Function]
	return use != nil && use.instances >= r
}

// remove takes p out of the line.
func (c *capacity) remove(p *pool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, b := range c.blocked {
		if b == p {
			c.blocked = append(c.blocked[:i], c.blocked[i+1:]...)
			return
		}
	}
}

// overShare reports whether another function waits for room while p's
// function holds more than its fair share of the node: then p gives an
// instance back instead of reusing it.
func (c *capacity) overShare(p *pool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	others := false
	active := map[string]bool{}
	for fn := range c.perFn {
		active[fn] = true
	}
	for _, b := range c.blocked {
		if b.v.Function != p.v.Function {
			others = true
		}
		active[b.v.Function] = true
	}
	if !others {
		return false
	}
	use := c.perFn[p.v.Function]
	if use == nil {
		return false
	}
	n := len(active)
	return (c.maxInstances > 0 && use.instances > c.maxInstances/n) ||
		(c.maxMemoryMB > 0 && use.memoryMB > c.maxMemoryMB/n)
}

// fits reports whether one instance of p could ever fit the node.
func (c *capacity) fits(p *pool) bool {
	return c.maxMemoryMB == 0 || p.v.Manifest.Memory <= c.maxMemoryMB
}

// Usage is the node's use of its budget.
type Usage struct {
	Instances    int `json:"instances"`
	MaxInstances int `json:"maxInstances"`
	MemoryMB     int `json:"memoryMB"`
	MaxMemoryMB  int `json:"maxMemoryMB"`
	Blocked      int `json:"blocked"` // pools waiting for room
}

func (c *capacity) usage() Usage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Usage{Instances: c.instances, MaxInstances: c.maxInstances, MemoryMB: c.memoryMB, MaxMemoryMB: c.maxMemoryMB, Blocked: len(c.blocked)}
}
