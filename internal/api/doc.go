// Package api serves the control API under /v1/: deploy, list, get and
// delete functions, invoke them directly, and read their logs. Every route
// needs the admin token (package auth). Handlers return errors; package
// apierror maps them to a status and a stable code in one place.
//
//	POST   /v1/functions                 deploy: body is the zip package
//	GET    /v1/functions                 list functions (current versions)
//	GET    /v1/functions/{name}          one function with all its versions
//	DELETE /v1/functions/{name}          delete it and stop its instances
//	POST   /v1/functions/{name}/invoke   body is the event; answers the result
//	GET    /v1/functions/{name}/logs     NDJSON log entries (?since=&follow=&request=&grep=)
//	GET    /v1/functions/{name}/stats    invocation counts and instances
//	GET    /v1/instances                 pool statistics
package api
