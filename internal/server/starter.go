package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ternhq/tern/internal/dispatch"
	"github.com/ternhq/tern/internal/manifest"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/runtime"
	"github.com/ternhq/tern/internal/secrets"
	"github.com/ternhq/tern/internal/uids"
)

// Secrets gives the starter a function's decrypted secrets.
type Secrets interface {
	Env(ctx context.Context, fn string) (map[string]string, error)
}

var _ Secrets = (*secrets.Store)(nil)

// starter joins the registry's code cache, the function's secrets and the
// runtime launcher into what the dispatcher needs to start an instance.
type starter struct {
	reg      *registry.Registry
	launcher *runtime.Launcher
	secrets  Secrets // nil: functions get no secrets
	// uids gives each function its own uid; nil: instances are not jailed.
	uids UIDs
}

// UIDs gives the starter a function's own uid.
type UIDs interface {
	For(ctx context.Context, fn string) (int, error)
}

var _ UIDs = (*uids.Allocator)(nil)

var (
	_ dispatch.Starter  = (*starter)(nil)
	_ dispatch.Liveness = (*starter)(nil)
	_ dispatch.Routing  = (*starter)(nil)
)

// Error types of the init errors the starter reports itself.
const (
	errTypeEnvTooLarge    = "Tern.EnvironmentTooLarge"
	errTypeSecretsDecrypt = "Tern.SecretDecryptionFailed"
)

// Live reports whether v still exists in the registry.
func (s *starter) Live(v *registry.Version) bool { return s.reg.Live(v) }

// Routed reports whether the function's name or an alias reaches v.
func (s *starter) Routed(v *registry.Version) bool { return s.reg.Routed(v) }

func (s *starter) Start(ctx context.Context, v *registry.Version) (dispatch.Instance, error) {
	dir, err := s.reg.CodeDir(ctx, v)
	if err != nil {
		return nil, err
	}
	m := &v.Manifest
	env, err := s.environment(ctx, v)
	if err != nil {
		return nil, err
	}
	uid := 0
	if s.uids != nil {
		if uid, err = s.uids.For(ctx, v.Function); err != nil {
			return nil, err
		}
	}
	inst, err := s.launcher.Start(ctx, runtime.Spec{
		Function:    v.Function,
		Version:     v.Number,
		Runtime:     m.Runtime,
		Handler:     m.Handler,
		CodeDir:     dir,
		MemoryMB:    m.Memory,
		Concurrency: m.Concurrency,
		Style:       m.Style,
		Command:     m.Command,
		Timeout:     m.Timeout.D(),
		Env:         env,
		NoNetwork:   m.Network == manifest.NetworkNone,
		TmpMB:       m.EphemeralStorage,
		UID:         uid,
	})
	if err != nil {
		return nil, err
	}
	return inst, nil
}

// environment is the version's manifest environment with the function's
// secrets over it: a secret named like a manifest variable wins, so a
// value can be moved out of tern.yaml into a secret without a redeploy.
// Together they must fit Lambda's 4 KB budget (names plus values), else
// the start fails as an init error. The manifest's map is shared and is
// never written to.
func (s *starter) environment(ctx context.Context, v *registry.Version) (map[string]string, error) {
	base := v.Manifest.Environment
	if s.secrets == nil {
		return base, nil
	}
	sec, err := s.secrets.Env(ctx, v.Function)
	if err != nil {
		if errors.Is(err, secrets.ErrDecrypt) {
			// The message names the secret, never its value.
			return nil, initError(errTypeSecretsDecrypt, err.Error())
		}
		return nil, fmt.Errorf("secrets of %s: %w", v.Function, err)
	}
	if len(sec) == 0 {
		return base, nil
	}
	env := make(map[string]string, len(base)+len(sec))
	for k, val := range base {
		env[k] = val
	}
	for k, val := range sec {
		env[k] = val
	}
	size := 0
	for k, val := range env {
		size += len(k) + len(val)
	}
	if size > manifest.MaxEnvSize {
		return nil, initError(errTypeEnvTooLarge, fmt.Sprintf(
			"the environment of %s takes %d bytes (the manifest's variables and %d secrets, names plus values), more than the %d allowed: remove secrets (tern secret rm) or variables",
			v.Function, size, len(sec), manifest.MaxEnvSize))
	}
	return env, nil
}

// initError is an init error Tern reports for the function, shaped as
// Lambda's error JSON.
func initError(errType, msg string) *runtime.InitError {
	body, _ := json.Marshal(struct {
		ErrorType    string   `json:"errorType"`
		ErrorMessage string   `json:"errorMessage"`
		StackTrace   []string `json:"stackTrace"`
	}{errType, msg, []string{}})
	return &runtime.InitError{FunctionError: runtime.FunctionError{Type: errType, Body: body}}
}
