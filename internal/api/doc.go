// Package api serves the control API under /v1/: functions (deploy, list,
// get, delete, invoke, logs, stats, aliases, rollback, secrets), events
// (async invocations, topics, CloudEvents, dead letters), usage, keys and
// the audit trail. docs/api.md lists every route. Each route needs a
// permission (keys.go's table: read, invoke, deploy or admin) that the
// caller's key must grant, for the route's function when it names one;
// every change is written to the audit stream. Handlers return errors;
// package apierror maps them to a status and a stable code in one place.
package api
