// Package dispatch decides where every invocation runs. Nothing else starts,
// reuses or stops function instances.
//
// For each function version there is one pool: idle instances (reused last
// in, first out, so the warmest one serves), a count of instances started
// or starting, and a bounded FIFO of waiting invocations. An invocation
// takes an idle instance if there is one; otherwise it joins the queue and,
// while the pool is below scale.max and there are more waiters than
// instances starting, starts one more. A started or released instance goes
// to the oldest waiter first. A full queue, or a wait past the queue bound,
// is ErrThrottled. One invocation runs on an instance at a time.
//
// An instance that timed out, crashed or was stopped is discarded and never
// handed out again; a waiter that lost its instance that way gets a new one
// started for it. A failed start (an init error) is given to the oldest
// waiter, so a broken function answers at once instead of timing out.
//
// The janitor (one goroutine owned by the Dispatcher) stops instances idle
// longer than scale.idle down to scale.min, keeps scale.min instances of the
// current version started, and forgets empty pools of old versions.
//
// A version is routed while an invocation by the function's name or an
// alias can reach it: it is current, or an alias (either side of a split)
// names it (the Routing capability of the Starter; without it, the current
// version only). When a version stops being routed (FunctionChanged after
// a deploy or rollback, RoutesChanged after an alias change), its idle
// instances stop at once and its busy ones as their invocations end,
// instead of after scale.idle. It stays invocable as name@N, but its pool
// keeps no instance idle and the autoscaler wants none: such a call starts
// an instance that stops when it has nothing left to run. An alias keeps a
// version warm.
//
// Lock order: Dispatcher.mu before pool.mu. The registry's lock may be taken
// under Dispatcher.mu (the Liveness and Routing checks), never the other way
// round: the registry calls FunctionChanged and RoutesChanged with no lock
// held. No instance call (Start, Invoke, Stop) is made with any of these
// locks held.
package dispatch
