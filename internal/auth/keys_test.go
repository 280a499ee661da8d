package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ternhq/tern/internal/store"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testBucket opens an embedded store and makes a keys bucket in it.
func testBucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir()}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	kv, err := st.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "test_keys", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// startKeys starts a key store over kv and closes it when the test ends.
func startKeys(t *testing.T, kv jetstream.KeyValue) *Keys {
	t.Helper()
	k := NewKeys(kv, testLogger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := k.Close(ctx); err != nil {
			t.Error(err)
		}
		if err := k.Close(ctx); err != nil { // idempotent
			t.Error(err)
		}
	})
	return k
}

// within polls cond until it holds or d has passed.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var keyRE = regexp.MustCompile(`^tern_k_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$`)

func TestKeysStoreOnlyHashes(t *testing.T) {
	kv := testBucket(t)
	k := startKeys(t, kv)
	ctx := context.Background()
	secret, key, err := k.Create(ctx, KeySpec{Name: "ci", Role: "deployer", Functions: []string{"a", "b", "a"}}, "admin-token")
	if err != nil {
		t.Fatal(err)
	}
	m := keyRE.FindStringSubmatch(secret)
	if m == nil || m[1] != key.ID {
		t.Fatalf("key %q, id %q: want tern_k_<id>_<43 base64url characters>", secret, key.ID)
	}
	if key.Role != RoleDeployer || strings.Join(key.Functions, ",") != "a,b" || key.Name != "ci" || key.CreatedBy != "admin-token" ||
		key.Created.IsZero() || !key.Expires.IsZero() {
		t.Errorf("record = %+v", key)
	}
	e, err := kv.Get(ctx, key.ID)
	if err != nil {
		t.Fatal(err)
	}
	stored := string(e.Value())
	_, secretPart, _ := strings.Cut(strings.TrimPrefix(secret, KeyPrefix), "_")
	if strings.Contains(stored, secretPart) || strings.Contains(stored, secret) {
		t.Fatalf("the store holds the key's secret: %s", stored)
	}
	var raw map[string]any
	if err := json.Unmarshal(e.Value(), &raw); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(secret))
	if raw["hash"] != hex.EncodeToString(sum[:]) {
		t.Errorf("stored hash = %v, want the SHA-256 of the whole key", raw["hash"])
	}
	for f := range raw {
		switch f {
		case "id", "name", "role", "functions", "created", "createdBy", "hash":
		default:
			t.Errorf("stored record has field %q", f)
		}
	}

	// Listing shows records, never hashes.
	ks, err := k.List(ctx)
	if err != nil || len(ks) != 1 || ks[0].ID != key.ID {
		t.Fatalf("List = %+v, %v", ks, err)
	}
	b, _ := json.Marshal(ks)
	if strings.Contains(string(b), "hash") || strings.Contains(string(b), hex.EncodeToString(sum[:])) {
		t.Errorf("List shows the hash: %s", b)
	}

	p, err := k.Authenticate(secret)
	if err != nil || p.ID != key.ID || p.Role != RoleDeployer || strings.Join(p.Functions, ",") != "a,b" {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
}

func TestKeysRefuseWrongKeys(t *testing.T) {
	k := startKeys(t, testBucket(t))
	secret, key, err := k.Create(context.Background(), KeySpec{Role: "viewer"}, "admin-token")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := k.Create(context.Background(), KeySpec{Role: "viewer"}, "admin-token")
	if err != nil {
		t.Fatal(err)
	}
	_, otherSecret, _ := strings.Cut(strings.TrimPrefix(other, KeyPrefix), "_")
	last := secret[len(secret)-1]
	flipped := secret[:len(secret)-1] + string(map[bool]byte{true: 'B', false: 'A'}[last == 'A'])
	for _, bad := range []string{
		"",
		KeyPrefix,
		KeyPrefix + key.ID,
		KeyPrefix + key.ID + "_",
		KeyPrefix + key.ID + "_" + otherSecret, // a real secret of another key
		flipped,
		secret[:len(secret)-1],
		secret + "x",
		strings.ToUpper(secret),
		strings.TrimPrefix(secret, KeyPrefix),
		"tern_k_ffffffffffff_" + otherSecret,
		" " + secret,
	} {
		if p, err := k.Authenticate(bad); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("Authenticate(%q) = %+v, %v; want ErrUnknownKey", bad, p, err)
		}
	}
	if _, err := k.Authenticate(secret); err != nil {
		t.Errorf("the right key: %v", err)
	}
}

// TestHashMatches: the comparison is of two SHA-256 digests (32 bytes
// whatever was presented) with subtle.ConstantTimeCompare, so its time
// does not depend on how much of the key is right.
func TestHashMatches(t *testing.T) {
	want := sha256.Sum256([]byte("tern_k_0123456789ab_secret"))
	if !hashMatches("tern_k_0123456789ab_secret", &want) {
		t.Error("the right key does not match")
	}
	for _, s := range []string{"", "t", "tern_k_0123456789ab_secre", "tern_k_0123456789ab_secretX", "tern_k_0123456789ab_Secret", strings.Repeat("x", 10000)} {
		if hashMatches(s, &want) {
			t.Errorf("%q matches", s)
		}
	}
	allocs := testing.AllocsPerRun(100, func() { hashMatches("tern_k_0123456789ab_secreT", &want) })
	if allocs > 1 {
		t.Errorf("hashMatches allocates %v times", allocs)
	}
}

func TestKeysExpiry(t *testing.T) {
	k := startKeys(t, testBucket(t))
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	k.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	secret, key, err := k.Create(context.Background(), KeySpec{Role: "invoker", TTL: time.Hour}, "admin-token")
	if err != nil {
		t.Fatal(err)
	}
	if !key.Expires.Equal(now.Add(time.Hour)) {
		t.Errorf("expires %v, want %v", key.Expires, now.Add(time.Hour))
	}
	if _, err := k.Authenticate(secret); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	mu.Lock()
	now = now.Add(time.Hour - time.Second)
	mu.Unlock()
	if _, err := k.Authenticate(secret); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if _, err := k.Authenticate(secret); !errors.Is(err, ErrExpired) {
		t.Fatalf("at expiry: %v, want ErrExpired", err)
	}
	if !key.Expired(now) || key.Expired(now.Add(-time.Second)) {
		t.Error("Key.Expired")
	}
	// The record stays (shown as expired) until revoked.
	ks, err := k.List(context.Background())
	if err != nil || len(ks) != 1 {
		t.Fatalf("List = %v, %v", ks, err)
	}
}

// TestKeysRevocationAcrossServers: two key stores over one bucket stand
// for two servers. A key revoked on one stops working there at once and
// on the other within a second.
func TestKeysRevocationAcrossServers(t *testing.T) {
	kv := testBucket(t)
	a, b := startKeys(t, kv), startKeys(t, kv)
	ctx := context.Background()
	secret, key, err := a.Create(ctx, KeySpec{Role: "admin"}, "admin-token")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(secret); err != nil {
		t.Fatalf("on the creating server: %v", err)
	}
	within(t, time.Second, "the other server knows the new key", func() bool {
		_, err := b.Authenticate(secret)
		return err == nil
	})
	if _, err := a.Revoke(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(secret); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("revoking server, at once: %v, want ErrUnknownKey", err)
	}
	within(t, time.Second, "the other server refuses the revoked key", func() bool {
		_, err := b.Authenticate(secret)
		return errors.Is(err, ErrUnknownKey)
	})
	// The older put delivered late by the watch does not bring it back.
	time.Sleep(50 * time.Millisecond)
	if _, err := a.Authenticate(secret); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("revoking server, later: %v", err)
	}
	if _, err := a.Revoke(ctx, key.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second revoke: %v, want ErrNotFound", err)
	}
	for _, id := range []string{"nope", "", "../x", "ffffffffffff"} {
		if _, err := a.Revoke(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Revoke(%q): %v, want ErrNotFound", id, err)
		}
	}
	ks, err := b.List(ctx)
	if err != nil || len(ks) != 0 {
		t.Errorf("List after revoking = %v, %v", ks, err)
	}

	// A server started later loads what is there.
	kept, _, err := b.Create(ctx, KeySpec{Role: "viewer"}, key.ID)
	if err != nil {
		t.Fatal(err)
	}
	c := startKeys(t, kv)
	if _, err := c.Authenticate(kept); err != nil {
		t.Errorf("loaded key: %v", err)
	}
	if _, err := c.Authenticate(secret); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("loaded revoked key: %v", err)
	}
}

func TestKeysStaleCacheRefusesKeys(t *testing.T) {
	k := startKeys(t, testBucket(t))
	secret, _, err := k.Create(context.Background(), KeySpec{Role: "admin"}, "admin-token")
	if err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	k.stale = true
	k.mu.Unlock()
	if _, err := k.Authenticate(secret); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stale cache: %v, want ErrUnavailable", err)
	}
	h := Middleware("tern_admin", k, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for tok, want := range map[string]int{secret: http.StatusServiceUnavailable, "tern_admin": http.StatusOK} {
		req := httptest.NewRequest(http.MethodGet, "/v1/functions", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("%.12s…: %d, want %d", tok, rec.Code, want)
		}
	}
}

func TestKeySpecValidation(t *testing.T) {
	k := startKeys(t, testBucket(t))
	for _, spec := range []KeySpec{
		{Role: ""},
		{Role: "root"},
		{Role: "Admin"},
		{Role: "admin", Functions: []string{"a"}},
		{Role: "invoker", Functions: []string{""}},
		{Role: "invoker", Functions: []string{"a b"}},
		{Role: "invoker", Functions: []string{"a@live"}},
		{Role: "invoker", Functions: []string{"-a"}},
		{Role: "invoker", Functions: []string{strings.Repeat("f", 65)}},
		{Role: "viewer", TTL: -time.Hour},
		{Role: "viewer", Name: strings.Repeat("n", 65)},
		{Role: "viewer", Name: "tab\there"},
	} {
		if _, _, err := k.Create(context.Background(), spec, "admin-token"); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%+v) = %v, want ErrInvalid", spec, err)
		}
	}
	ks, _ := k.List(context.Background())
	if len(ks) != 0 {
		t.Errorf("invalid specs stored keys: %v", ks)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30d": 30 * 24 * time.Hour, "1d": 24 * time.Hour, "1d12h": 36 * time.Hour, "12h": 12 * time.Hour,
		"90m": 90 * time.Minute, "0d": 0,
	} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "30", "x30d", "30dd", "1d-1h", "999999d", "1.5d", "30days"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}
