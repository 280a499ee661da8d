// Package manifest parses and validates tern.yaml, the function manifest.
//
// Every Tern function is a folder whose root holds a tern.yaml file. The
// manifest names the function, picks the runtime that executes it, points at
// the handler inside the folder and sets the resources and scaling the
// platform gives it:
//
//	name: thumbnails
//	runtime: nodejs
//	handler: src/index.handler
//	memory: 512        # MB
//	timeout: 1m        # or a number of seconds: 60
//	environment:
//	  BUCKET: images
//	scale:
//	  min: 0
//	  max: 20
//	  idle: 10m
//
// Only name, runtime and handler are required. A field that is missing or
// null takes its default: memory 256 MB, timeout 30s, scale.min 0,
// scale.max 10, scale.idle 5m. An explicit 0 is refused where 0 would only
// mean the default (memory, concurrency, timeout, scale.max, scale.idle,
// async.maxAge, async.backoff, a queue's batch, maxReceives and
// concurrency): the parser sees the YAML node, so it tells a 0 written out
// from a field left out, while the struct and its JSON form (stored
// versions) keep 0 as "unset". Where 0 means something (scale.min,
// scale.reserved, rateLimit, async.retries, async.concurrency, a queue's
// window) it is kept.
//
// Parse decodes strictly (unknown fields and wrongly typed values are
// errors), applies the defaults and validates the result. Validation problems
// are reported as *FieldError values joined with errors.Join, each naming
// the offending field, such as "scale.max" or "environment.PATH".
//
// Runtimes lists the runtimes this build can run. When you add a runtime,
// add it to Runtimes, and teach checkHandler its handler form if it differs
// from the Node.js "path/to/file.export" form.
package manifest
