// Package nodejs embeds Tern's Node.js bootstrap, the runtime client that runs
// functions written for AWS Lambda's Node.js runtimes unchanged.
//
// Tern installs the script with [Install] and starts one process per function
// instance as
//
//	node /path/to/bootstrap.cjs
//
// The bootstrap is a single CommonJS file using Node.js 20 built-ins only. It
// has two transports, which share the handler loading, the context and the
// completion rules described below:
//
//   - framed, when TERN_RUNTIME_FD is set: Tern's runtime protocol
//     (docs/runtime-protocol.md) on a Unix socket the process inherits;
//   - HTTP otherwise: the AWS Lambda Runtime API (version 2018-06-01) that
//     Tern serves on loopback.
//
// # Framed transport
//
// TERN_RUNTIME_FD is the number of an inherited descriptor, one end of a
// socketpair(AF_UNIX, SOCK_STREAM). Each frame, both ways, is n (4 bytes,
// unsigned big-endian: the length of what follows), a type byte, h (2 bytes,
// unsigned big-endian), a JSON object header of h bytes and a body of
// n - 3 - h bytes.
//
// The process starts generic, in whatever directory and environment Tern
// gives it, and waits, possibly for long, for SPECIALIZE (1) with header
// {"handler", "taskRoot", "env", "concurrency"?, "style"?} (concurrency: see
// Concurrency below; absent or null means 1; style: "lambda", the default,
// or "http", see Express-style handlers below). It then deletes every
// environment variable, TERN_RUNTIME_FD included, sets those of env, changes
// directory to taskRoot (a failure is an init error), loads handler from
// taskRoot as described under Init, and writes READY (2, header {}), or
// INIT_ERROR (3, header {"type"}, body the error JSON) and then exits with
// status 1.
//
// Each INVOKE (4) has the header {"id", "deadline" (epoch ms), "arn",
// "trace"?, "clientContext"?, "identity"?} and the event as its body; the
// client context and identity may be objects or JSON text. It is answered
// with RESPONSE (5, header {"id"}, body the result JSON) or ERROR (6, header
// {"id", "type"}, body the error JSON), each frame written with one write.
// An error type longer than 8192 characters is cut in the header (not in the
// body) so that the header stays within its 64 KiB.
//
// Frames are handled in order, one at a time: frames that arrive while a
// SPECIALIZE or (with concurrency 1) an INVOKE is being handled (Tern may
// pipeline them) wait until it is answered. While one is being handled the
// socket does not keep the event loop alive, so that an empty event loop
// still completes a callback invocation as below. A frame shorter than its
// fixed fields, a header longer than its frame, a header that is not a JSON
// object, an unknown or runtime-to-Tern type, INVOKE before SPECIALIZE, a
// second SPECIALIZE, a SPECIALIZE without env or taskRoot, with a
// concurrency that is not an integer >= 1 or with a style other than
// "lambda", "http" or null, an INVOKE without id, and (with
// concurrency above 1) an INVOKE beyond the concurrency or with the id of an
// invocation in flight are protocol errors: the bootstrap writes a line to
// stderr and exits with status 1.
// When Tern closes the socket the bootstrap exits, with status 0 (1 after a
// socket error).
//
// # Concurrency
//
// With concurrency N above 1 (framed only), up to N invocations are in
// flight at once: an INVOKE is started as soon as it arrives, whatever runs,
// and each is answered with its own id when it completes, in the order they
// finish. Their handlers share the one event loop, so async handlers
// overlap. Each invocation runs inside an AsyncLocalStorage (node:async_hooks)
// whose store is the invocation, which Node carries through awaits, timers
// and I/O callbacks; it is created only when N is above 1, so concurrency 1
// pays nothing for it. Then:
//
//   - each invocation has its own context object, and its own
//     process.env._X_AMZN_TRACE_ID (see Trace id);
//   - console lines carry the request id of the store: the invocation whose
//     code wrote them, even after it was answered, or "undefined" outside
//     any (callbacks of a resource shared by invocations, such as a
//     connection opened during init, run in the context that created it;
//     what an invocation awaits resumes in its own);
//   - nothing waits for an empty event loop, which other invocations keep
//     busy: callbackWaitsForEmptyEventLoop is ignored and a callback answers
//     at once; a handler that returns without completing is answered when it
//     calls its callback or context.done/succeed/fail, otherwise never
//     (Tern's deadline ends the instance);
//   - an uncaught exception or unhandled rejection answers the invocation of
//     the store with it if that one is in flight, else the oldest one in
//     flight; every other one in flight gets a Runtime.ExitError saying the
//     instance is exiting because of another invocation's uncaught error.
//     All are ERROR frames with "fatal": true, and the process exits with
//     status 1 (with none in flight, after writing the error to stderr),
//     taking no further frame.
//
// # Express-style handlers
//
// With "style": "http" (framed only) the handler is called as
// handler(req, res, next), as in Express, instead of handler(event,
// context, callback) (docs/express.md lists what req, res and next
// provide). The handler name is resolved as usual, plus: a name without an
// export ("index") means "index.default", and when "<module>.default" or
// "<module>.handler" is not found but the module itself is a function
// (module.exports = fn, or the default export of an ES module), that function
// is the handler.
//
// The event of each invocation is a Lambda function URL event (payload 2.0),
// from which req is built:
//
//   - method (requestContext.http.method, upper case), url (rawPath, plus
//     "?" and rawQueryString when not empty), originalUrl (the same), path
//     (rawPath), query (a copy of queryStringParameters, {} if none), ip
//     (requestContext.http.sourceIp), params ({}: there are no routes),
//     res;
//   - headers: the event's headers with lower-case names, and "cookie" set
//     to the cookies joined with "; " when there are any; get(name) and
//     header(name) read them case-insensitively;
//   - body: a Buffer of the raw body (base64-decoded when isBase64Encoded;
//     empty when there is none), replaced by the parsed value when the
//     content type is JSON (application/json or a +json type; {} for an
//     empty body; the Buffer when it does not parse); rawBody is always the
//     Buffer;
//   - event and context: the event and the Lambda context object.
//
// res collects the status (statusCode, 200 by default; status(code) and
// sendStatus), the headers (set(name, value) or set(object), header,
// setHeader, append, appendHeader, getHeader, get, hasHeader, removeHeader,
// getHeaders, type, location) and the body (write), and ends with
// end([body]), send(body), json(value) or redirect([status,] url) (302 by
// default; also redirect(url, status)): redirect sets Location (url
// percent-encoded where needed, "back" meaning the Referer or "/") and a
// text body "<status text>. Redirecting to <url>", HTML when the Accept
// header names text/html before text/plain, none for HEAD. send sets the content type when unset,
// "text/html; charset=utf-8" for a string and "application/octet-stream"
// for a Buffer (or any Uint8Array), and sends any other non-null value as
// json does, which sets "application/json" when unset. Set-Cookie values
// (an array or repeated calls, with any of the setters) accumulate. Setting
// a header after the end throws ERR_HTTP_HEADERS_SENT; ending again is
// ignored. headersSent, finished and writableEnded become true at the end.
//
// The end answers the invocation (RESPONSE) with a function URL result
// {"statusCode", "headers", "cookies", "body", "isBase64Encoded"}: headers
// with lower-case names, multiple values joined with ",", Set-Cookie left
// out, since its values are the cookies array; body a string, the text
// written when only strings were, else the bytes as UTF-8 text when the
// content type is textual (text/*, JSON, XML, JavaScript, form data, or any
// with a charset) and they are valid UTF-8, else base64 with
// "isBase64Encoded": true.
//
// next ends res as Express's final handler does when nothing else answers:
// every header set so far is removed, and next(), next('route') and
// next('router') answer 404 with an HTML page "Cannot <method> <path>";
// next(err) with err truthy answers err.status or err.statusCode when it
// is an integer 400-599, else 500, with the page showing the status text
// only, and logs an ERROR line "Error passed to next()" with the error JSON
// under the invocation's request id. The pages have Content-Type
// "text/html; charset=utf-8", Content-Security-Policy "default-src 'none'"
// and X-Content-Type-Options "nosniff", and no body for HEAD. After res
// has ended, next(err) only logs.
//
// A synchronous throw or a rejected promise answers an error as for Lambda
// handlers; the first of a response or an error wins. A handler that
// returns (or whose promise resolves) without ending res may end it later,
// from a timer or callback, within Tern's deadline. With concurrency 1, if
// the event loop becomes empty while res has not ended, the invocation is
// answered with an error of type Runtime.NoResponse ("the handler returned
// without sending a response"), where a Lambda handler would succeed with
// null. With concurrency above 1 there is no such check (other invocations
// keep the event loop busy): an invocation whose res never ends is never
// answered, and Tern's deadline ends the instance.
//
// # HTTP transport and environment
//
// In HTTP mode the process is started with the function's environment, in
// its code directory:
//
//   - AWS_LAMBDA_RUNTIME_API: host:port of the Runtime API (required).
//   - _HANDLER: the handler, "<module>.<export>" such as "index.handler",
//     "src/app.handler" or "index.api.handler" (a nested export). The module
//     is everything up to the first '.' after the last '/'.
//   - LAMBDA_TASK_ROOT: the function's code directory (default: the working
//     directory); the module path is resolved against it.
//   - AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_VERSION (default
//     "$LATEST"), AWS_LAMBDA_FUNCTION_MEMORY_SIZE (default "128"): copied to
//     the context object.
//   - AWS_LAMBDA_LOG_GROUP_NAME, AWS_LAMBDA_LOG_STREAM_NAME: optional, copied
//     to the context object.
//
// In framed mode the context fields come from the environment sent in
// SPECIALIZE, and the handler and task root from its header.
//
// # Trace id
//
// process.env._X_AMZN_TRACE_ID is the invocation's Lambda-Runtime-Trace-Id
// header (framed: the INVOKE header's trace), or absent when it has none.
// It is not written into the real environment: every write there is a libc
// setenv, which never frees the value it replaces, so one per invocation
// leaked about 110 bytes each (1e6 writes in Node 20: RSS +110 MB).
// process.env is a Proxy over the real environment that answers this one
// name from the invocation: the latest with concurrency 1; with concurrency
// above 1 the invocation of the AsyncLocalStorage store (the one whose code
// runs), or the latest outside any. Reading, `in`, Object.keys, spreading,
// JSON.stringify and child_process (which reads process.env) see it, and a
// handler may set or delete it for its own invocation; every other name
// goes to the real environment. Native code calling getenv(3), worker
// threads started without an env option (Node copies the real environment)
// and util.inspect(process.env) (which shows the Proxy's target) do not see
// it.
//
// # Init
//
// The module file is the first of <module>.js, .mjs and .cjs that exists.
// .mjs files are loaded with import(), .cjs files with require(), and .js
// files with import() when the nearest package.json (not looking above
// LAMBDA_TASK_ROOT) has "type": "module", with require() otherwise (falling
// back to import() on ERR_REQUIRE_ESM). On an ES module namespace the export
// is looked up directly, then on its default export. A CommonJS module's
// default export is module.exports, as import() has it, so
// "<module>.default" names module.exports = fn (unless module.exports has
// a property "default").
//
// When the export is missing or not a function, the Runtime.HandlerNotFound
// message says what the module does export and what to write in tern.yaml:
// for a function as module.exports or as the default export,
// "handler: <module>.default"; otherwise the first exported function, as
// "handler: <module>.<name>"; and when that function's parameters look like
// an Express handler's (its source names a request then a response: req,
// res, request, response), "style: http" instead (and the handler name when
// it is not the default export). A Lambda-style handler found with such
// parameters is loaded, with a WARN line saying so at init, and its
// invocation errors have the same advice appended to their errorMessage.
//
// A failure is posted to /2018-06-01/runtime/init/error as
// {"errorType","errorMessage","stackTrace"} with the header
// Lambda-Runtime-Function-Error-Type (framed: sent as INIT_ERROR), and the
// process exits with status 1.
// The error types are those of Lambda's Node.js runtime:
// Runtime.ImportModuleError (module file or a dependency not found),
// Runtime.HandlerNotFound (export missing or not a function),
// Runtime.UserCodeSyntaxError, Runtime.MalformedHandlerName, or the name of
// any other error thrown while loading.
//
// # Invocation loop
//
// The bootstrap long-polls GET /2018-06-01/runtime/invocation/next (framed:
// waits for INVOKE), calls handler(event, context, callback) and posts the
// outcome (framed: answers RESPONSE or ERROR with the same bodies):
//
//   - success: POST /2018-06-01/runtime/invocation/<id>/response with
//     JSON.stringify(result) ("null" for undefined); a result that cannot be
//     serialized becomes a Runtime.SerializationError; a 413 answer is logged
//     and the loop continues.
//   - failure: POST /2018-06-01/runtime/invocation/<id>/error with
//     {"errorType","errorMessage","stackTrace"} and the
//     Lambda-Runtime-Function-Error-Type header. errorType is the error's
//     name; thrown non-Error values are reported as "Error" with the value as
//     the message. An event body that is not JSON is a Runtime.InvalidEvent.
//
// An invocation completes with whichever comes first: the settling of the
// promise (thenable) the handler returned, the callback, the legacy
// context.done/succeed/fail, or a synchronous throw. As on Lambda, a
// callback completion is held until the event loop is empty while
// context.callbackWaitsForEmptyEventLoop is true, and a handler that returns
// without completing succeeds with null once the event loop is empty (not
// with concurrency above 1; see Concurrency).
//
// An uncaught exception or unhandled rejection during an invocation is posted
// as that invocation's error (Runtime.UnhandledPromiseRejection for a
// rejection whose reason is not an Error) and the process exits with status
// 1; outside an invocation it is written to stderr before exiting (with
// concurrency above 1, see Concurrency). A Runtime API call that fails at
// the connection level (Tern is gone) or answers 5xx makes the process exit
// with status 1. In framed mode the ERROR frame is written before the
// process exits.
//
// # Logging
//
// console.log, info, warn, error, debug and trace each write one line to
// stdout:
//
//	<ISO-8601 time>\t<request id or "undefined">\t<LEVEL>\t<message>\n
//
// where LEVEL is INFO, WARN, ERROR, DEBUG or TRACE and message is
// util.format of the arguments with every "\n" replaced by "\r". The request
// id is that of the invocation in progress or last run ("undefined" before
// the first); with concurrency above 1, that of the invocation whose code
// writes the line (see Concurrency). Writes are synchronous, so a line is
// out before the response is posted (framed: before the answer frame is
// written). Invocation errors are also logged as an ERROR line ("Invoke
// Error", "Uncaught Exception" or "Unhandled Promise Rejection" followed by a
// tab and the error JSON), with the request id of the invocation answered.
package nodejs
