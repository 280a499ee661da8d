// Package store connects Tern to NATS with JetStream: an embedded server
// started in-process (the default), or an external server or cluster given by
// URL. Either way the rest of Tern sees the same thing: a *nats.Conn and a
// jetstream.JetStream handle, plus the buckets and streams Tern needs.
//
// Names of buckets, streams and subjects are declared here, in one place, so
// that every part agrees on them. When you add a bucket or stream, add it to
// Open's setup below and to docs/architecture.md.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names shared by every Tern node on one NATS.
const (
	// FunctionsBucket is the KV bucket holding function and version records.
	FunctionsBucket = "tern_functions"
	// CodeBucket is the Object Store holding code packages keyed by sha256.
	CodeBucket = "tern_code"
	// LogsStream holds function log lines on subjects LogsSubjectPrefix+<function>.
	LogsStream        = "TERN_LOGS"
	LogsSubjectPrefix = "tern.logs."

	// AsyncStream is a work queue of asynchronous invocations on subjects
	// AsyncSubjectPrefix+<function>, and of delayed retries waiting on
	// DelaySubjectPrefix+<function>.<request>.<attempt> until the server
	// moves them to the function's subject at their time.
	AsyncStream        = "TERN_ASYNC"
	AsyncSubjectPrefix = "tern.async."
	DelaySubjectPrefix = "tern.delay."
	// DeadLetterStream keeps events that failed for good, on subjects
	// DeadLetterSubjectPrefix+<function>.
	DeadLetterStream        = "TERN_DLQ"
	DeadLetterSubjectPrefix = "tern.dlq."
	// TopicStreamPrefix+<topic> is the stream of a queue topic; it holds
	// TopicSubjectPrefix+<topic> and <that>.redrive.<function> (dead
	// letters sent back to one function).
	TopicStreamPrefix  = "TERN_TOPIC_"
	TopicSubjectPrefix = "tern.topic."
	// SchedulesBucket remembers the last tick fired per schedule.
	SchedulesBucket = "tern_schedules"
	// DedupeBucket remembers the ids of accepted events (idempotency
	// keys, ticks, CloudEvent ids) for the dedupe window, also after the
	// work queue has dropped the events themselves.
	DedupeBucket = "tern_dedupe"
	// UsageStream holds one usage record per invocation, on subjects
	// UsageSubjectPrefix+<function> (JSON lines, several per message).
	UsageStream        = "TERN_USAGE"
	UsageSubjectPrefix = "tern.usage."
	// UsageBucket keeps usage aggregates of closed minutes and hours,
	// each key with its own TTL.
	UsageBucket = "tern_usage"
	// SecretsBucket holds functions' secrets, encrypted (package secrets).
	SecretsBucket = "tern_secrets"
	// KeysBucket holds API key records (hashes only) by key id.
	KeysBucket = "tern_keys"
	// UIDsBucket holds the uid given to each function (package uids).
	UIDsBucket = "tern_uids"
	// AuditStream records every change made through the API, on subjects
	// AuditSubjectPrefix+"fn."+<function> or +<kind>.<target>.
	AuditStream        = "TERN_AUDIT"
	AuditSubjectPrefix = "tern.audit."
)

// Config says which NATS to use and how to set up Tern's streams.
type Config struct {
	// URL of an external NATS server or cluster. Empty starts an embedded one.
	URL string
	// Dir is where the embedded server keeps JetStream data.
	Dir string
	// ClientListen, when set ("127.0.0.1:4222"), opens the embedded server's
	// client port so NATS tools and other Tern servers can connect. Empty
	// keeps it in-process only.
	ClientListen string
	// ClientToken is the token every client of the embedded server must
	// present (required with ClientListen): functions' instances share the
	// host's loopback, and the store holds every function's code and the
	// API keys.
	ClientToken string
	// SyncAlways makes the embedded server fsync every write; otherwise it
	// syncs once a second.
	SyncAlways bool
	// LogsMaxAge and LogsMaxBytes bound the log stream.
	LogsMaxAge   time.Duration
	LogsMaxBytes int64
	// Replicas for buckets and streams (1 for one node, 3 on a cluster).
	Replicas int
	// DedupeWindow is how long the async stream remembers message ids
	// (idempotency keys, schedule ticks, CloudEvent ids).
	DedupeWindow time.Duration
	// DeadLetterMaxAge bounds how long dead letters are kept.
	DeadLetterMaxAge time.Duration
	// UsageRawMaxAge and UsageRawMaxBytes bound the stream of raw usage
	// records (defaults 24 h and 1 GiB; the oldest go first). Their
	// rollups are kept apart, in the usage bucket, each key with its TTL.
	UsageRawMaxAge   time.Duration
	UsageRawMaxBytes int64
	// AuditMaxAge bounds how long audit entries are kept (default 90 days).
	AuditMaxAge time.Duration
}

// Store is an open connection to NATS with Tern's buckets and streams set up.
type Store struct {
	NC        *nats.Conn
	JS        jetstream.JetStream
	Functions jetstream.KeyValue
	Code      jetstream.ObjectStore
	Schedules jetstream.KeyValue
	Dedupe    jetstream.KeyValue
	Usage     jetstream.KeyValue
	Secrets   jetstream.KeyValue
	Keys      jetstream.KeyValue
	UIDs      jetstream.KeyValue

	log       *slog.Logger
	ns        *server.Server // nil when external
	token     string         // the embedded server's client token
	closeOnce sync.Once
}

// Open starts (or connects to) NATS and makes sure Tern's buckets and streams
// exist. On error everything started so far is stopped again.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (_ *Store, err error) {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	s := &Store{log: log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if cfg.URL == "" {
		if err := s.startEmbedded(cfg); err != nil {
			return nil, err
		}
	} else {
		nc, err := nats.Connect(cfg.URL, nats.Name("tern"), nats.MaxReconnects(-1))
		if err != nil {
			return nil, fmt.Errorf("store: connect %s: %w", redactURLs(cfg.URL), err)
		}
		s.NC = nc
		log.Info("store: using external NATS", "url", redactURLs(cfg.URL))
	}
	js, err := jetstream.New(s.NC)
	if err != nil {
		return nil, fmt.Errorf("store: jetstream: %w", err)
	}
	s.JS = js
	if err := s.setup(ctx, cfg); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) startEmbedded(cfg Config) error {
	if cfg.Dir == "" {
		return errors.New("store: embedded server needs a data directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	opts := &server.Options{
		ServerName:   "tern",
		JetStream:    true,
		StoreDir:     filepath.Clean(cfg.Dir),
		NoSigs:       true, // else the library installs handlers that exit the process
		NoLog:        true,
		SyncInterval: time.Second, // the default would be two minutes
		SyncAlways:   cfg.SyncAlways,
		DontListen:   true,
		// Async events may be as large as 1 MB plus headers; NATS's
		// default maximum payload is exactly 1 MB.
		MaxPayload: 8 << 20,
	}
	if cfg.ClientListen != "" {
		if cfg.ClientToken == "" {
			return errors.New("store: an open client port needs a token")
		}
		host, port, err := splitHostPort(cfg.ClientListen)
		if err != nil {
			return fmt.Errorf("store: client listen address: %w", err)
		}
		opts.Authorization = cfg.ClientToken
		if port == 0 {
			// ":0" asks for any free port; to the server, 0 means 4222.
			port = server.RANDOM_PORT
		}
		opts.DontListen = false
		opts.Host, opts.Port = host, port
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("store: embedded server: %w", err)
	}
	s.ns, s.token = ns, cfg.ClientToken
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		return errors.New("store: embedded server did not become ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("tern"), nats.Token(cfg.ClientToken))
	if err != nil {
		return fmt.Errorf("store: connect in-process: %w", err)
	}
	s.NC = nc
	attrs := []any{"dir", cfg.Dir}
	if cfg.ClientListen != "" {
		attrs = append(attrs, "client_url", ns.ClientURL())
	}
	s.log.Info("store: embedded NATS with JetStream started", attrs...)
	return nil
}

func (s *Store) setup(ctx context.Context, cfg Config) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	kv, err := s.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      FunctionsBucket,
		Description: "Tern functions and versions",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: bucket %s: %w", FunctionsBucket, err)
	}
	s.Functions = kv
	obj, err := s.JS.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      CodeBucket,
		Description: "Tern code packages by sha256",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Compression: false, // packages are zips already
	})
	if err != nil {
		return fmt.Errorf("store: object store %s: %w", CodeBucket, err)
	}
	s.Code = obj
	_, err = s.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        LogsStream,
		Description: "Tern function logs",
		Subjects:    []string{LogsSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.LogsMaxAge,
		MaxBytes:    cfg.LogsMaxBytes,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", LogsStream, err)
	}
	return s.setupEvents(ctx, cfg)
}

// setupEvents creates the async work queue, the dead-letter stream and
// the schedules bucket.
func (s *Store) setupEvents(ctx context.Context, cfg Config) error {
	if cfg.DedupeWindow <= 0 {
		cfg.DedupeWindow = time.Hour
	}
	if cfg.DeadLetterMaxAge <= 0 {
		cfg.DeadLetterMaxAge = 14 * 24 * time.Hour
	}
	// Accepted events are never dropped by a limit here: the accepting
	// side refuses new ones when the backlog is too large. Delayed
	// retries are message schedules, which need roll-ups allowed and
	// cannot use DiscardNew.
	_, err := s.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              AsyncStream,
		Description:       "Tern asynchronous invocations and their delayed retries",
		Subjects:          []string{AsyncSubjectPrefix + ">", DelaySubjectPrefix + ">"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.WorkQueuePolicy,
		Discard:           jetstream.DiscardOld,
		Duplicates:        cfg.DedupeWindow,
		AllowMsgSchedules: true,
		AllowRollup:       true,
		Replicas:          cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", AsyncStream, err)
	}
	_, err = s.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "Tern events that failed for good",
		Subjects:    []string{DeadLetterSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.DeadLetterMaxAge,
		Duplicates:  10 * time.Minute,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", DeadLetterStream, err)
	}
	kv, err := s.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      SchedulesBucket,
		Description: "Tern: the last tick fired per schedule",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: bucket %s: %w", SchedulesBucket, err)
	}
	s.Schedules = kv
	kv, err = s.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      DedupeBucket,
		Description: "Tern: ids of accepted events, for the dedupe window",
		History:     1,
		TTL:         cfg.DedupeWindow,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: bucket %s: %w", DedupeBucket, err)
	}
	s.Dedupe = kv
	return s.setupUsage(ctx, cfg)
}

// Defaults of Config.UsageRawMaxAge and Config.UsageRawMaxBytes.
const (
	DefaultUsageRawMaxAge   = 24 * time.Hour
	DefaultUsageRawMaxBytes = 1 << 30
)

// setupUsage creates the usage stream and the bucket of rollups.
func (s *Store) setupUsage(ctx context.Context, cfg Config) error {
	if cfg.UsageRawMaxAge <= 0 {
		cfg.UsageRawMaxAge = DefaultUsageRawMaxAge
	}
	if cfg.UsageRawMaxBytes <= 0 {
		cfg.UsageRawMaxBytes = DefaultUsageRawMaxBytes
	}
	_, err := s.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        UsageStream,
		Description: "Tern usage records, one per invocation",
		Subjects:    []string{UsageSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.UsageRawMaxAge,
		MaxBytes:    cfg.UsageRawMaxBytes,
		// A batch the sink sends again after a lost ack is stored once,
		// for as long as a minute may stay open.
		Duplicates: min(30*time.Minute, cfg.UsageRawMaxAge),
		Replicas:   cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", UsageStream, err)
	}
	kv, err := s.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      UsageBucket,
		Description: "Tern usage aggregates of closed minutes and hours",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		// Aggregates are written with a TTL each (minutes: days, hours:
		// --usage-max-age); the marker of an expired one goes after this.
		LimitMarkerTTL: time.Hour,
	})
	if err != nil {
		return fmt.Errorf("store: bucket %s: %w", UsageBucket, err)
	}
	s.Usage = kv
	kv, err = s.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      SecretsBucket,
		Description: "Tern function secrets, encrypted",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: bucket %s: %w", SecretsBucket, err)
	}
	s.Secrets = kv
	return s.setupAccess(ctx, cfg)
}

// setupAccess creates the keys and uids buckets and the audit stream.
func (s *Store) setupAccess(ctx context.Context, cfg Config) error {
	if cfg.AuditMaxAge <= 0 {
		cfg.AuditMaxAge = 90 * 24 * time.Hour
	}
	kv, err := s.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      KeysBucket,
		Description: "Tern API keys (SHA-256 hashes, never the keys)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: bucket %s: %w", KeysBucket, err)
	}
	s.Keys = kv
	kv, err = s.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      UIDsBucket,
		Description: "Tern: the uid each function's instances run as",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: bucket %s: %w", UIDsBucket, err)
	}
	s.UIDs = kv
	_, err = s.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        AuditStream,
		Description: "Tern audit: who changed what and when",
		Subjects:    []string{AuditSubjectPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.AuditMaxAge,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", AuditStream, err)
	}
	return nil
}

// ClientURL is the embedded server's client URL when its port is open
// (--nats-listen), else "". It holds no token.
func (s *Store) ClientURL() string {
	if s.ns == nil || s.ns.Addr() == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// ClientURLWithToken is ClientURL with the client token in it
// (nats://<token>@host:port), as NATS clients take it. Never log it.
func (s *Store) ClientURLWithToken() string {
	u := s.ClientURL()
	if u == "" || s.token == "" {
		return u
	}
	return strings.Replace(u, "nats://", "nats://"+s.token+"@", 1)
}

// Close drains the connection and shuts the embedded server down. It is safe
// to call more than once.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.NC != nil {
			if derr := s.NC.Drain(); derr != nil && !errors.Is(derr, nats.ErrConnectionClosed) {
				err = fmt.Errorf("store: drain: %w", derr)
			}
			// Drain is asynchronous; wait for it a bounded time.
			deadline := time.Now().Add(5 * time.Second)
			for !s.NC.IsClosed() && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			s.NC.Close()
		}
		if s.ns != nil {
			s.ns.Shutdown()
			s.ns.WaitForShutdown()
		}
	})
	return err
}

// redactURLs is a NATS URL list (comma-separated) without the user
// information of each URL: a token (nats://<token>@host) or a user and
// password never reach a log or an error.
func redactURLs(list string) string {
	parts := strings.Split(list, ",")
	for n, p := range parts {
		scheme, rest, ok := strings.Cut(strings.TrimSpace(p), "://")
		if !ok {
			continue
		}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			parts[n] = scheme + "://***@" + rest[at+1:]
		}
	}
	return strings.Join(parts, ",")
}
