// Package framedtest is the test harness shared by the runtime bootstraps'
// tests (internal/runtime/nodejs, internal/runtime/python): it starts a
// bootstrap as Tern starts a pooled instance, one end of a socketpair as
// fd 3, and speaks the framed runtime protocol (docs/runtime-protocol.md)
// to it, checking what comes back.
//
// It is an ordinary package so that both bootstraps' tests can import it,
// but only tests use it: nothing else may. It calls t.Fatal on failures and
// deliberately does not reuse the protocol code of package runtime, so that
// the tests check the bootstraps against the protocol as documented.
package framedtest
