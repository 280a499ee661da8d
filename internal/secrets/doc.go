// Package secrets keeps functions' secrets: values encrypted at rest that
// reach a function as environment variables when one of its instances
// starts, and that nothing else ever shows.
//
// # Master key
//
// Every value is sealed with AES-256-GCM under one master key of 32 bytes:
// the base64 in the environment variable TERN_SECRET_KEY when it is set,
// else the one in <data dir>/secret.key, created (mode 0600) on the first
// start. Nodes sharing one NATS must share the key: give them all the same
// TERN_SECRET_KEY (the file holds the same base64 text). Losing the key
// loses the secrets; whoever has the key and the store has them.
//
// # Records
//
// Secrets live in the KV bucket tern_secrets, one key per secret:
//
//	<function>.<NAME>   envelope: version byte (1) | 12-byte random nonce | ciphertext and GCM tag
//
// The ciphertext's additional data is the KV key, so a value copied to
// another key or another function does not decrypt. Removing a secret
// purges its key (no old ciphertext is kept in the bucket's history).
//
// # Invariants
//
//   - A value never appears in an error, a log line or an API answer;
//     errors name the function and the secret only.
//   - Decrypted values are cached per function in memory. Every change the
//     bucket's watch reports, and every change made through this Store,
//     drops the function's entry; a load that raced with a change is not
//     kept (see Store.Env). So a new instance sees every change that was
//     stored before it started, on this node at once, on others once their
//     watch has seen it.
//   - Names follow the manifest's rule for environment variables
//     (manifest.EnvNameProblem: the platform's reserved names are
//     refused too). The 4 KB budget of a function's whole
//     environment (manifest variables plus secrets) is checked when an
//     instance starts, not here: the manifest may change with any deploy.
package secrets
