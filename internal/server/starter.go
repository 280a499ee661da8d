package server

import (
	"context"

	"github.com/ternhq/tern/internal/dispatch"
	"github.com/ternhq/tern/internal/registry"
	"github.com/ternhq/tern/internal/runtime"
)

// starter joins the registry's code cache and the runtime launcher into
// what the dispatcher needs to start an instance.
type starter struct {
	reg      *registry.Registry
	launcher *runtime.Launcher
}

var (
	_ dispatch.Starter  = (*starter)(nil)
	_ dispatch.Liveness = (*starter)(nil)
)

// Live reports whether v still exists in the registry.
func (s *starter) Live(v *registry.Version) bool { return s.reg.Live(v) }

func (s *starter) Start(ctx context.Context, v *registry.Version) (dispatch.Instance, error) {
	dir, err := s.reg.CodeDir(ctx, v)
	if err != nil {
		return nil, err
	}
	m := &v.Manifest
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
		Env:         m.Environment,
	})
	if err != nil {
		return nil, err
	}
	return inst, nil
}
