//go:build !linux

package sandbox

// Tern runs on Linux only: it jails instances with Linux namespaces,
// cgroups, seccomp and Landlock, and has no build for another system. A
// build for one stops here, with this name as its first error (a type, as
// types are checked before the rest).
type _ tern_runs_on_linux_only
