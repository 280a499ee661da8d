// Package python embeds Tern's Python bootstrap, the runtime client that runs
// functions written for AWS Lambda's Python runtimes unchanged.
//
// Tern installs the script with [Install], finds the interpreter with
// [Interpreter] and starts one process per function instance as
//
//	/real/path/to/python3 /path/to/bootstrap.py
//
// [Interpreter] asks the python3 on PATH for sys.executable once, so that
// each start skips wrappers such as pyenv's shims (tens of milliseconds
// each). The bootstrap is a single file using the standard library of
// Python 3.9 or later.
//
// # Protocol
//
// The bootstrap speaks only Tern's framed runtime protocol
// (docs/runtime-protocol.md), on the inherited Unix socket whose descriptor
// is TERN_RUNTIME_FD (always 3); without TERN_RUNTIME_FD it exits with
// status 1. Each frame, both ways, is n (4 bytes, unsigned big-endian: the
// length of what follows), a type byte, h (2 bytes, unsigned big-endian), a
// JSON object header of h bytes and a body of n - 3 - h bytes. The socket is
// made non-inheritable, so the function's subprocesses do not get it.
//
// The process starts generic, sends BOOTED (7, header {}) and waits,
// possibly for long, for SPECIALIZE (1) with header {"handler", "taskRoot",
// "env", "concurrency"?}. It then empties os.environ (TERN_RUNTIME_FD goes
// too) and fills it with env (values that are not strings are stored as
// their JSON text), applies TZ (time.tzset), changes directory to taskRoot,
// sets up sys.path (below), loads the handler and answers READY (2, header
// {}) or INIT_ERROR (3, header {"type"}, body the error JSON) and then exits
// with status 1.
//
// Each INVOKE (4) has the header {"id", "deadline" (epoch ms), "arn",
// "trace"?, "clientContext"?, "identity"?} and the event JSON as its body.
// It is answered with RESPONSE (5, header {"id"}, body the result JSON) or
// ERROR (6, header {"id", "type"}, body the error JSON), each frame written
// with one sendall. "fatal" is never sent: an exception escaping a handler
// is an ordinary ERROR, and the ways a handler can end the process (below)
// answer nothing. An error type longer than 8192 characters is cut in the
// header (not in the body).
//
// A frame shorter than its fixed fields, a header longer than its frame, a
// header that is not a JSON object, an unknown or runtime-to-Tern type,
// INVOKE before SPECIALIZE, a second SPECIALIZE, a SPECIALIZE without env
// or taskRoot or with a concurrency that is not an integer >= 1, an INVOKE
// without id and, with concurrency above 1, an INVOKE beyond the
// concurrency or with the id of an invocation in flight are protocol
// errors: the bootstrap writes a line to stderr and exits with status 1.
// When Tern closes the socket the process exits at once (status 0; 1 after
// an INIT_ERROR or a socket error), even while a handler runs: a daemon
// thread polls the socket for the hang-up.
//
// # Init
//
// sys.path becomes taskRoot, then taskRoot/python and
// taskRoot/python/lib/pythonX.Y/site-packages when they exist (where Lambda
// layers put packages), then the entries of the function's PYTHONPATH
// (relative ones against taskRoot), then the interpreter's own path; the
// bootstrap's directory is removed.
//
// The handler is "<module>.<function>": everything before the last dot is
// the module, which may be a path ("src/app.handler" imports src.app) or
// dotted ("pkg.mod.handler" imports pkg.mod), imported with
// importlib.import_module. Failures are reported with Lambda's error types:
//
//   - Runtime.MalformedHandlerName: no dot, or an empty module, function or
//     module component;
//   - Runtime.ImportModuleError: "Unable to import module '<module>': ..."
//     for any ImportError (the module or one of its imports is missing);
//   - Runtime.UserCodeSyntaxError: a SyntaxError in the module or what it
//     imports;
//   - Runtime.HandlerNotFound: the module has no such attribute, or it is
//     not callable;
//   - the exception's class name for anything else raised while importing
//     (a ZeroDivisionError in module code, a failing chdir, ...).
//
// The error JSON is {"errorType", "errorMessage", "stackTrace"}, stackTrace
// being the frames as traceback.format_list has them ("  File \"...\", line
// N, in f\n    code\n"), without the bootstrap's frames or the import
// machinery's. A SystemExit raised while importing ends the process as it
// is.
//
// # Invocations
//
// The event body is parsed with json.loads (a failure is answered
// Runtime.InvalidEvent) and the handler called as handler(event, context).
// The context is a LambdaContext with aws_request_id, function_name,
// function_version (default "$LATEST"), memory_limit_in_mb (an int, default
// 128), invoked_function_arn, log_group_name, log_stream_name (from the
// AWS_LAMBDA_* variables of env and the INVOKE header), client_context and
// identity (None unless the header has them, as objects or JSON text:
// then a ClientContext with client, custom and env, and a CognitoIdentity
// with cognito_identity_id and cognito_identity_pool_id), and
// get_remaining_time_in_millis() (an int, 0 once the deadline is past).
// os.environ["_X_AMZN_TRACE_ID"] is the header's trace, or absent when
// there is none. It is not written into the real environment: every write
// there is a libc setenv, which never frees the value it replaces (1e6
// writes: RSS +107 MB). os.environ's class is replaced by a subclass of
// os._Environ that answers this one name from the invocation (of the code
// running, with concurrency above 1; the latest outside any): reading,
// `in`, iteration, os.getenv and copy() see it, and a handler may set or
// delete it for its own invocation. os.environb, C code calling getenv(3)
// and subprocesses started without env= (pass env=os.environ) do not.
//
// The result is serialised with json.dumps' defaults (ensure_ascii, ", "
// and ": " separators, as Lambda's Python runtime does); None gives "null",
// a decimal.Decimal becomes a number, and anything else that cannot be
// serialised is answered Runtime.SerializationError ("Unable to marshal
// response: ..."). An exception escaping the handler is answered with
// errorType its class name, errorMessage str(exc) and the stack trace as
// above; the instance goes on. An async def handler (or one that returns
// an awaitable) is awaited on an event loop kept for the whole process.
// SystemExit (sys.exit) or KeyboardInterrupt in a handler, like os._exit,
// ends the process with its status (130 for KeyboardInterrupt) without an
// answer, after writing out pending output: Tern sees the instance crash.
//
// # Concurrency
//
// With concurrency 1 (the default) the main thread reads a frame, runs the
// invocation and answers it before it reads the next; INVOKEs Tern
// pipelines wait in the socket. Between invocations nothing of the
// function runs, as on Lambda (an async handler's leftover tasks resume
// during the next invocation).
//
// With concurrency N above 1, INVOKEs are started as they arrive and each
// is answered with its own id when it completes, in the order they finish:
//
//   - an async def handler: every invocation is a task on the one asyncio
//     event loop of the main thread, which also reads the socket; handlers
//     overlap at their awaits, and synchronous code blocks all of them;
//   - a plain def handler: the main thread reads the socket and hands each
//     invocation to a ThreadPoolExecutor of N threads (named tern-invoke-*),
//     so handlers overlap wherever they release the GIL (I/O, sleep, most
//     C extensions). Handlers must then be thread-safe; module state is
//     shared.
//
// Each invocation sees its own _X_AMZN_TRACE_ID in os.environ.
//
// # Output
//
// sys.stdout and sys.stderr are replaced by text streams that write to file
// descriptor 1, synchronously, so that a function's output is in the stdout
// pipe before its answer frame is sent. Each line (ended by "\n"; one write
// may hold several) becomes
//
//	<ISO-8601 time>\t<request id>\t<line>\n
//
// The unfinished end of a write waits for the rest of its line; it is
// written as a line of its own before the invocation is answered (or when
// it grows over 64 KiB). sys.stdout.buffer takes UTF-8 bytes. Output of the
// function's subprocesses, or written to descriptors 1 and 2 directly, is
// not reformatted.
//
// The root logger has a handler and level INFO (set the level with
// logging.getLogger().setLevel). Each record becomes one line
//
//	<ISO-8601 time>\t<request id>\t<LEVEL>\t<message>\n
//
// with LEVEL the record's levelname (INFO, WARNING, ERROR, ...) and the
// message as logging.Formatter("%(message)s") makes it (with the traceback
// of logger.exception), every "\n" replaced by "\r" so that a record stays
// one line. A formatter set on that handler replaces the whole line (then
// also with "\n" replaced by "\r"); records carry aws_request_id for it.
// As on Lambda, logging.basicConfig without force=True changes nothing.
// Both formats have the request id second, where Tern's log reader looks
// for it.
//
// The request id is that of the invocation whose code writes the line:
// with concurrency 1 the invocation in progress or last run; with
// concurrency above 1 a contextvars variable set for each asyncio task or
// worker-thread item (and inherited by the tasks it creates), so lines of
// overlapping invocations keep their ids; output outside any invocation
// (init, threads the function starts itself with concurrency above 1)
// carries "undefined". Every ERROR answer is also logged as an ERROR line
// "Invoke Error \t<error JSON>", an init failure as "Init Error \t<error
// JSON>".
package python
