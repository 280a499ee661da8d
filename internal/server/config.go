package server

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/adrg/xdg"

	"github.com/ternhq/tern/internal/archive"
	"github.com/ternhq/tern/internal/dispatch"
	"github.com/ternhq/tern/internal/events"
	"github.com/ternhq/tern/internal/metering"
	"github.com/ternhq/tern/internal/runtime"
	"github.com/ternhq/tern/internal/sandbox"
	"github.com/ternhq/tern/internal/store"
)

// Config is everything `tern serve` can be told.
type Config struct {
	// Listen is the HTTP address for the API, triggers and /healthz.
	Listen string
	// DataDir holds the store, the code cache and the admin token.
	DataDir string
	// NATSURL points at an external NATS server or cluster; empty runs
	// the embedded one.
	NATSURL string
	// NATSListen opens the embedded server's client port ("127.0.0.1:4222").
	NATSListen string
	// SyncAlways makes the embedded store fsync every write.
	SyncAlways bool
	// ShutdownTimeout bounds how long in-flight requests may finish on
	// shutdown before instances are stopped.
	ShutdownTimeout time.Duration
	// Limits on uploaded packages.
	Package archive.Limits
	// MaxPayloadBytes caps synchronous request bodies (Lambda: 6 MB).
	MaxPayloadBytes int64
	// MaxResponseBytes caps function responses (Lambda: 6 MB).
	MaxResponseBytes int64
	// Dispatch bounds queues and timings.
	Dispatch dispatch.Config
	// LogsMaxAge and LogsMaxBytes bound the log stream.
	LogsMaxAge   time.Duration
	LogsMaxBytes int64
	// Region is the AWS region functions are told they run in
	// (AWS_REGION, their ARNs, the region of queue and schedule events).
	Region string
	// MaxOutputBytes bounds what one invocation's output puts in the log;
	// past it lines are dropped and counted, and an entry says how many.
	MaxOutputBytes int64
	// NodePath is the node binary; empty looks it up on PATH.
	NodePath string
	// PoolSize is how many generic instances per runtime are kept started
	// to make cold starts cheap; 0 turns the pools off.
	PoolSize int
	// Sandbox jails every instance (namespaces, a uid per function,
	// read-only code, seccomp, Landlock) where tern runs as root.
	Sandbox bool
	// TmpMB is the size of a jailed instance's /tmp.
	TmpMB int
	// Events bounds async events, queue messages and CloudEvents.
	Events events.Config
	// DedupeWindow is how long idempotency keys, schedule ticks and
	// CloudEvent ids are remembered.
	DedupeWindow time.Duration
	// Metering records every invocation's usage (and feeds /metrics).
	Metering bool
	// Prices turn usage into cost (defaults: Lambda's x86 list price).
	Prices metering.Prices
	// UsageMaxAge is how long the hourly usage rollups are kept (each
	// key's TTL in the usage bucket).
	UsageMaxAge time.Duration
	// UsageRollupAfter is how long after a minute ends its raw usage
	// records are rolled up into per-function minute aggregates (records
	// that arrive later are not counted). It must exceed the longest
	// function timeout.
	UsageRollupAfter time.Duration
	// UsageRawMaxAge and UsageRawMaxBytes bound the raw usage records
	// (the stream drops the oldest). They must hold more than
	// UsageRollupAfter's worth of records for a restart to be exact.
	UsageRawMaxAge   time.Duration
	UsageRawMaxBytes int64
	// UsageClock, when set, is the clock that decides which minutes of
	// usage are rolled up, and UsageCheckpointEvery how often they are
	// (default 1 min): hooks for tests, no flags.
	UsageClock           func() time.Time
	UsageCheckpointEvery time.Duration
	// OTLPEndpoint, when set, receives every invocation's spans over
	// OTLP/HTTP ("http://127.0.0.1:4318").
	OTLPEndpoint string
	// TLSCert and TLSKey, both set, serve HTTPS instead of HTTP.
	TLSCert, TLSKey string
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration
	// KeyRateLimit and KeyRateBurst limit each API key's requests per
	// second (0: no limit; the admin token is never limited).
	KeyRateLimit, KeyRateBurst int
}

// DefaultDataDir is the user's data directory for Tern (XDG).
func DefaultDataDir() string { return filepath.Join(xdg.DataHome, "tern") }

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Listen:           "127.0.0.1:8080",
		DataDir:          DefaultDataDir(),
		ShutdownTimeout:  30 * time.Second,
		Package:          archive.DefaultLimits(),
		MaxPayloadBytes:  6 << 20,
		MaxResponseBytes: 6 << 20,
		Dispatch:         defaultDispatch(),
		LogsMaxAge:       7 * 24 * time.Hour,
		LogsMaxBytes:     1 << 30,
		Region:           "us-east-1",
		MaxOutputBytes:   runtime.DefaultMaxOutputBytes,
		PoolSize:         2,
		Sandbox:          true,
		TmpMB:            sandbox.DefaultTmpMB,
		Events:           events.Config{MaxEventBytes: 1 << 20, MaxBacklogBytes: 1 << 30},
		DedupeWindow:     time.Hour,
		Metering:         true,
		Prices:           metering.Prices{}.WithDefaults(),
		UsageMaxAge:      metering.DefaultHourTTL,
		UsageRollupAfter: metering.DefaultCloseAfter,
		UsageRawMaxAge:   store.DefaultUsageRawMaxAge,
		UsageRawMaxBytes: store.DefaultUsageRawMaxBytes,
		ReadTimeout:      5 * time.Minute,
	}
}

// defaultDispatch caps the node at what the host has, minus a reserve
// for Tern and the system: max(1 GiB, 10 %) of memory; 256 instances.
func defaultDispatch() dispatch.Config {
	c := dispatch.DefaultConfig()
	c.MaxInstances = 256
	if total := hostMemoryMB(); total > 0 {
		c.MaxMemoryMB = max(total-max(1024, total/10), 128)
	}
	return c
}

// hostMemoryMB reads MemTotal from /proc/meminfo; 0 if unknown.
func hostMemoryMB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.Atoi(f[0])
				return kb / 1024
			}
		}
	}
	return 0
}

// Validate checks every field, naming the ones that are wrong.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %w", err))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data-dir: must be set"))
	}
	if c.NATSListen != "" {
		if c.NATSURL != "" {
			errs = append(errs, errors.New("nats-listen: only for the embedded server, not with nats-url"))
		} else if _, _, err := net.SplitHostPort(c.NATSListen); err != nil {
			errs = append(errs, fmt.Errorf("nats-listen: %w", err))
		}
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("shutdown-timeout: must not be negative"))
	}
	if c.Package.MaxBytes <= 0 || c.Package.MaxExpandedBytes <= 0 || c.Package.MaxEntries <= 0 {
		errs = append(errs, errors.New("package limits: must be positive"))
	}
	if c.MaxPayloadBytes <= 0 {
		errs = append(errs, errors.New("max-payload: must be positive"))
	}
	if c.MaxResponseBytes <= 0 {
		errs = append(errs, errors.New("max-response: must be positive"))
	}
	if c.Dispatch.MaxInstances < 0 || c.Dispatch.MaxMemoryMB < 0 {
		errs = append(errs, errors.New("max-instances, max-memory: must not be negative (0: no cap)"))
	}
	if !validRegion(c.Region) {
		errs = append(errs, fmt.Errorf("region: %q is not a region name such as us-east-1 (lowercase letters, digits and dashes)", c.Region))
	}
	if c.PoolSize < 0 || c.PoolSize > 64 {
		errs = append(errs, errors.New("pool-size: must be between 0 and 64"))
	}
	if c.TmpMB < 1 || c.TmpMB > 10240 {
		errs = append(errs, errors.New("tmp-size: must be between 1 and 10240 MB"))
	}
	if c.LogsMaxAge <= 0 || c.LogsMaxBytes <= 0 {
		errs = append(errs, errors.New("logs retention: age and size must be positive"))
	}
	if c.MaxOutputBytes < 64<<10 {
		errs = append(errs, errors.New("logs-max-invocation-bytes: must be at least 64 KiB"))
	}
	// The embedded NATS carries up to 8 MB per message, headers included.
	if c.Events.MaxEventBytes < 0 || c.Events.MaxEventBytes > 7<<20 {
		errs = append(errs, errors.New("max-event-size: must be between 1 byte and 7 MiB"))
	}
	if c.Events.MaxBacklogBytes < 0 {
		errs = append(errs, errors.New("max-async-backlog: must not be negative"))
	}
	if p := c.Prices; p.PerMillionRequests < 0 || p.PerGBSecond < 0 || p.FreeRequests < 0 || p.FreeGBSeconds < 0 {
		errs = append(errs, errors.New("prices: must not be negative"))
	}
	if c.UsageMaxAge != 0 && c.UsageMaxAge < 2*time.Hour {
		errs = append(errs, errors.New("usage-max-age: must be at least 2h"))
	}
	if c.UsageRollupAfter != 0 && c.UsageRollupAfter < 16*time.Minute {
		// A record is published when its invocation ends: up to the
		// longest timeout (15 min) after its minute.
		errs = append(errs, errors.New("usage-rollup-after: must be at least 16m (the longest timeout, 15m, and a minute)"))
	}
	if c.UsageRawMaxAge != 0 && c.UsageRawMaxAge < cmp.Or(c.UsageRollupAfter, metering.DefaultCloseAfter)+10*time.Minute {
		// A restart replays the records of the minutes not rolled up.
		errs = append(errs, errors.New("usage-raw-max-age: must be at least usage-rollup-after + 10m"))
	}
	if c.UsageRawMaxBytes != 0 && c.UsageRawMaxBytes < 1<<20 {
		errs = append(errs, errors.New("usage-raw-max-bytes: must be at least 1 MiB"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls-cert, tls-key: give both, or neither"))
	}
	if c.KeyRateLimit < 0 || c.KeyRateBurst < 0 {
		errs = append(errs, errors.New("key-rate-limit, key-rate-burst: must not be negative (0: no limit)"))
	}
	if c.ReadTimeout < 0 {
		errs = append(errs, errors.New("read-timeout: must not be negative (0: none)"))
	}
	if c.DedupeWindow < 0 || c.DedupeWindow > 24*time.Hour {
		errs = append(errs, errors.New("dedupe-window: must be between 0 (default 1h) and 24h"))
	}
	return errors.Join(errs...)
}

// jailDir is where the jails' mount points live, beside (never inside)
// the runtime directory every jail shows; empty when the sandbox is off.
func jailDir(cfg Config) string {
	if !cfg.Sandbox {
		return ""
	}
	return filepath.Join(cfg.DataDir, "jail")
}

// validRegion: r looks like an AWS region name (us-east-1, eu-central-2,
// or a name of one's own such as local): it ends up in ARNs and URLs.
func validRegion(r string) bool {
	if r == "" || len(r) > 32 || r[0] == '-' || r[len(r)-1] == '-' {
		return false
	}
	for _, c := range r {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
