// Package auth guards the control API.
//
// Who: the admin token, created on the server's first start in
// <data dir>/admin.token (mode 0600), is role admin; API keys
// (tern_k_<id>_<secret>) are made by admins with a role and, optionally, a
// list of functions they are limited to. Only a key's SHA-256 is stored
// (bucket tern_keys, one record per key id); every server keeps all
// records in memory, following the bucket with a watch (Keys), so a
// request never reads the store and a revoked key stops working
// everywhere within the watch's delay.
//
// What: Middleware authenticates a request and puts its Principal in the
// context; each route then needs one Permission (read, invoke, deploy,
// admin), and a principal limited to functions may use only routes about
// those functions (Principal.Allows). The table of routes to permissions
// lives with the routes, in package api (routePermission): when you add
// a route, add it there too. Deploy is checked twice: the route needs
// PermDeploy, and the manifest's function name is checked by CheckDeploy
// before the version is recorded.
package auth
