// Package registry owns functions, their immutable versions and the local
// cache of extracted code.
//
// Records live in the store's KV bucket:
//
//	fn.<name>        Function: current and latest version numbers
//	ver.<name>.<n>   Version: manifest, code sha256 and sizes (never changed)
//
// Code packages live in the store's Object Store under their sha256, so the
// same code is stored once however many versions use it.
//
// Every node keeps the whole registry in memory, fed by a watch on the
// bucket, so resolving a function on the invocation path costs a map lookup
// and never a store round trip. Writes go to the store first (optimistic
// concurrency on the fn.<name> revision) and are applied to memory at once, so
// the node that deployed sees its own write before the watch echoes it.
//
// Code is extracted once per sha256 into <cache>/<sha256>, read-only, from a
// temp file streamed out of the Object Store (never held in memory).
package registry
