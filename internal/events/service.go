package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/apierror"
	"github.com/ternhq/tern/internal/dispatch"
	"github.com/ternhq/tern/internal/manifest"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/store"
)

// Functions is what events needs of the registry.
type Functions interface {
	// Resolve returns the version "name" or "name@qualifier" runs.
	Resolve(name string) (*registry.Version, error)
	// List returns every function's current version.
	List() []*registry.Version
}

// Invoker runs an invocation (the dispatcher).
type Invoker interface {
	InvokeRequest(ctx context.Context, v *registry.Version, req *dispatch.Request) (*dispatch.Outcome, error)
}

var (
	_ Functions = (*registry.Registry)(nil)
	_ Invoker   = (*dispatch.Dispatcher)(nil)
)

// Config bounds what events accepts and how it retries.
type Config struct {
	// MaxEventBytes caps an async event, a queue message and a CloudEvent
	// (default 1 MB, as Lambda allows for async events).
	MaxEventBytes int64
	// MaxBacklogBytes refuses new async events (429) while the async
	// stream holds more than this (default 1 GiB).
	MaxBacklogBytes int64
	// AckWait is how long a taken event may go without a sign of life
	// before another worker gets it; running invocations send one every
	// third of it (default 10 s).
	AckWait time.Duration
	// ThrottleDelay is how long an event that found no free instance
	// waits before it is tried again; it costs no attempt (default 1 s).
	ThrottleDelay time.Duration
	// SweepInterval is how often the node looks for functions with
	// waiting async events and no worker here (default 1 s).
	SweepInterval time.Duration
	// IdleWorker is how long an async worker with nothing to do lives on.
	IdleWorker time.Duration
	// TrimInterval is how often topics drop what all their readers
	// finished (default 10 s).
	TrimInterval time.Duration
	// TopicMaxAge and TopicMaxBytes are a new topic's retention defaults
	// (4 days as SQS; 1 GiB).
	TopicMaxAge   time.Duration
	TopicMaxBytes int64
	// Region is the AWS region named in queue and schedule events
	// (default us-east-1).
	Region string
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

func (c *Config) applyDefaults() {
	if c.MaxEventBytes <= 0 {
		c.MaxEventBytes = 1 << 20
	}
	if c.MaxBacklogBytes <= 0 {
		c.MaxBacklogBytes = 1 << 30
	}
	if c.AckWait <= 0 {
		c.AckWait = 10 * time.Second
	}
	if c.ThrottleDelay <= 0 {
		c.ThrottleDelay = time.Second
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = time.Second
	}
	if c.IdleWorker <= 0 {
		c.IdleWorker = 30 * time.Second
	}
	if c.TrimInterval <= 0 {
		c.TrimInterval = 10 * time.Second
	}
	if c.TopicMaxAge <= 0 {
		c.TopicMaxAge = 4 * 24 * time.Hour
	}
	if c.TopicMaxBytes <= 0 {
		c.TopicMaxBytes = 1 << 30
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Service owns every event worker of this node: async workers (started
// when a function has waiting events), queue workers (one per queue
// trigger), the scheduler and the sweeper. Close stops them all.
type Service struct {
	cfg  Config
	js   jetstream.JetStream
	kv   jetstream.KeyValue // last tick per schedule
	seen jetstream.KeyValue // ids of accepted events (dedupe window)
	fns  Functions
	inv  Invoker
	log  *slog.Logger
	sch  *scheduler
	subs *subscriptions

	ctx    context.Context // cancelled by Close: stops the loops
	cancel context.CancelFunc
	wg     sync.WaitGroup // the loops: workers, scheduler, sweeper
	// runCtx is the invocations' context, cancelled only when Close
	// runs out of time; running counts the invocations.
	runCtx    context.Context
	runCancel context.CancelFunc
	running   sync.WaitGroup

	// jobs are store calls that function changes need (removing
	// consumers, purging, catching up ticks), run in order by one
	// goroutine so that the registry's watch never waits on them.
	jobsMu  sync.Mutex
	jobs    []func(context.Context)
	jobWake chan struct{}

	mu      sync.Mutex
	async   map[string]*worker  // function -> its async worker here
	queues  map[string]*worker  // function+"\x00"+topic -> queue worker
	topics  map[string][]string // function -> topics its current version reads
	backlog backlogGauge
	closed  bool

	settleFailed settleCounts
}

// worker is one running consumer loop.
type worker struct {
	cancel context.CancelFunc
	done   chan struct{}
	conc   int
}

// New returns a Service; Start runs its scheduler and sweeper.
func New(cfg Config, s *store.Store, fns Functions, inv Invoker, log *slog.Logger) *Service {
	cfg.applyDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	runCtx, runCancel := context.WithCancel(context.Background())
	svc := &Service{
		runCtx: runCtx, runCancel: runCancel,
		cfg: cfg, js: s.JS, kv: s.Schedules, seen: s.Dedupe, fns: fns, inv: inv, log: log,
		subs:    newSubscriptions(),
		jobWake: make(chan struct{}, 1),
		ctx:     ctx,
		cancel:  cancel,
		async:   make(map[string]*worker),
		queues:  make(map[string]*worker),
		topics:  make(map[string][]string),
	}
	svc.sch = newScheduler(svc)
	return svc
}

// MaxEventBytes is the largest event or message accepted.
func (s *Service) MaxEventBytes() int64 { return s.cfg.MaxEventBytes }

// Start runs the scheduler, the sweeper and the job runner until Close.
func (s *Service) Start() {
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.sch.run(s.ctx) }()
	go func() { defer s.wg.Done(); s.sweep() }()
	go func() { defer s.wg.Done(); s.runJobs() }()
}

// later queues a job for the job runner.
func (s *Service) later(job func(context.Context)) {
	s.jobsMu.Lock()
	s.jobs = append(s.jobs, job)
	s.jobsMu.Unlock()
	select {
	case s.jobWake <- struct{}{}:
	default:
	}
}

// runJobs runs queued jobs in order until Close; jobs left then are
// dropped (what they would do is done again on the next start).
func (s *Service) runJobs() {
	for {
		s.jobsMu.Lock()
		jobs := s.jobs
		s.jobs = nil
		s.jobsMu.Unlock()
		for _, job := range jobs {
			if s.ctx.Err() != nil {
				return
			}
			ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
			job(ctx)
			cancel()
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.jobWake:
		}
	}
}

// Close stops taking events, lets running invocations finish until ctx
// ends, then cancels them; an event not settled by then is run again
// later (here after a restart, or on another node).
func (s *Service) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); s.running.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("events: running invocations did not finish in time; their events will run again")
		s.runCancel()
		<-done
	}
	s.runCancel()
	return nil
}

// FunctionChanged brings the node's triggers in line with a function's
// current version (nil: the function was deleted). The registry calls it.
func (s *Service) FunctionChanged(name string, cur *registry.Version) {
	if cur == nil {
		s.sch.set(name, nil)
		s.subs.set(name, nil)
		s.stopWorkers(name)
		s.mu.Lock()
		topics := s.topics[name]
		delete(s.topics, name)
		s.mu.Unlock()
		s.later(func(ctx context.Context) { s.forget(ctx, name, topics) })
		return
	}
	m := &cur.Manifest
	s.sch.set(name, cur)
	s.subs.set(name, m.Triggers)
	s.syncQueues(name, m)
	s.mu.Lock()
	if w := s.async[name]; w != nil && w.conc != m.AsyncConcurrency() {
		w.cancel() // the sweeper starts it again with the new bound
	}
	s.mu.Unlock()
}

// stopWorkers stops a deleted function's workers.
func (s *Service) stopWorkers(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.async[name]; w != nil {
		w.cancel()
	}
	for _, t := range s.topics[name] {
		if w := s.queues[queueKey(name, t)]; w != nil {
			w.cancel()
		}
	}
}

// forget removes a deleted function's consumers and waiting events, as
// Lambda drops the queued events of a deleted function. Dead letters stay
// until they expire, for inspection.
func (s *Service) forget(ctx context.Context, name string, topics []string) {
	if err := s.js.DeleteConsumer(ctx, store.AsyncStream, asyncConsumer(name)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		s.log.Warn("events: deleting async consumer", "function", name, "err", err)
	}
	if st, err := s.js.Stream(ctx, store.AsyncStream); err == nil {
		for _, subj := range []string{store.AsyncSubjectPrefix + name, store.DelaySubjectPrefix + name + ".>"} {
			if err := st.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
				s.log.Warn("events: dropping events of a deleted function", "function", name, "err", err)
			}
		}
	}
	for _, t := range topics {
		s.deleteQueueConsumer(ctx, name, t)
	}
	s.sch.forget(ctx, name)
}

// CheckManifest checks what a manifest refers to outside itself: the
// topics of its queue triggers and destinations exist, and destination
// functions exist (or are the function itself). The registry calls it
// before it records a deploy.
func (s *Service) CheckManifest(ctx context.Context, m *manifest.Manifest) error {
	var errs []error
	seen := map[string]bool{}
	for i, t := range m.Triggers {
		if t.Queue == nil {
			continue
		}
		field := fmt.Sprintf("triggers[%d].queue.topic", i)
		if seen[t.Queue.Topic] {
			errs = append(errs, &manifest.FieldError{Field: field, Message: fmt.Sprintf("topic %q is read by another trigger of this function already", t.Queue.Topic)})
			continue
		}
		seen[t.Queue.Topic] = true
		if err := s.topicExists(ctx, t.Queue.Topic); err != nil {
			errs = append(errs, &manifest.FieldError{Field: field, Message: err.Error()})
		}
	}
	for field, d := range map[string]*manifest.Destination{"async.onSuccess": m.Async.OnSuccess, "async.onFailure": m.Async.OnFailure} {
		switch {
		case d == nil:
		case d.Topic != "":
			if err := s.topicExists(ctx, d.Topic); err != nil {
				errs = append(errs, &manifest.FieldError{Field: field + ".topic", Message: err.Error()})
			}
		case d.Function != "" && d.Function != m.Name:
			if _, err := s.fns.Resolve(d.Function); err != nil {
				errs = append(errs, &manifest.FieldError{Field: field + ".function", Message: fmt.Sprintf("no function named %q", d.Function)})
			}
		}
	}
	// Map order must not decide the message's.
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", manifest.ErrInvalid, errors.Join(errs...))
	}
	return nil
}

func (s *Service) topicExists(ctx context.Context, topic string) error {
	_, err := s.js.Stream(ctx, topicStream(topic))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("no topic named %q (create it with: tern topic create %s)", topic, topic)
	}
	if err != nil {
		return fmt.Errorf("looking up topic %q: %w", topic, err)
	}
	return nil
}

// errUnavailable: JetStream did not answer.
var errUnavailable = apierror.New(http.StatusServiceUnavailable, apierror.CodeUnavailable, "the event store is not reachable")
