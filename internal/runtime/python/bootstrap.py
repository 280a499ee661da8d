# Tern Python bootstrap: runs functions written for AWS Lambda's Python
# runtimes, speaking Tern's framed runtime protocol (docs/runtime-protocol.md)
# on the Unix socket whose descriptor is TERN_RUNTIME_FD. Started as
# `python3 bootstrap.py`, one process per function instance. Python 3.9+,
# standard library only. See doc.go for the behaviour in full.

import json
import logging
import os
import select
import socket
import struct
import sys
import threading
import time
import contextvars

if os.geteuid() == 0:
    # A jailed pooled process: it will need ctypes when it becomes its
    # function's uid; load it now, off the cold start.
    import ctypes  # noqa: F401
import io

# Frame types.
_SPECIALIZE = 1
_READY = 2
_INIT_ERROR = 3
_INVOKE = 4
_RESPONSE = 5
_ERROR = 6
_BOOTED = 7

_HEAD = struct.Struct(">IBH")  # n, type, h
_U32 = struct.Struct(">I")
_MAX_HEADER = 0xFFFF
# Error types are user-controlled: cut them so that a header stays below
# _MAX_HEADER even when every character takes 6 bytes of JSON.
_MAX_TYPE_CHARS = 8192
_RECV_SIZE = 256 << 10
# An unfinished output line longer than this is written out as a line.
_MAX_PARTIAL = 64 << 10

_HERE = os.path.abspath(__file__)
# sys.path[0] is the bootstrap's directory (symbolic links resolved or not).
_HERE_DIRS = (os.path.dirname(_HERE), os.path.dirname(os.path.realpath(_HERE)))

_sock = None
_rx = bytearray()
_send_lock = threading.Lock()
# The status a process exit caused by Tern closing the socket takes: 1 once
# an INIT_ERROR is on its way.
_exit_status = 0


def _raw_write(fd, data):
    """Writes all of data to fd; output that cannot be written is dropped."""
    mv = memoryview(data)
    try:
        while mv:
            n = os.write(fd, mv)
            mv = mv[n:]
    except OSError:
        pass


def _die(message):
    _raw_write(2, ("tern bootstrap: " + message + "\n").encode("utf-8", "backslashreplace"))
    os._exit(1)


def _protocol_error(message):
    _die("runtime protocol error: " + message)


# ---------------------------------------------------------------------------
# Output. sys.stdout and sys.stderr are replaced by consoles that turn every
# line into
#     <ISO time>\t<request id>\t<line>\n
# and logging records (a handler on the root logger) into
#     <ISO time>\t<request id>\t<LEVEL>\t<message, "\n" replaced by "\r">\n
# all written synchronously to file descriptor 1, so that they are in the
# stdout pipe before the answer frame is sent.


class _Inv(object):
    """One invocation: its request id and unfinished output lines."""

    __slots__ = ("id", "id_json", "parts", "trace")

    def __init__(self, rid, id_json, trace=None):
        self.id = rid
        self.id_json = id_json  # the id as JSON bytes, for answer headers
        self.parts = ["", ""]  # unfinished stdout and stderr lines
        self.trace = trace  # _X_AMZN_TRACE_ID (str), or None


# Output outside any invocation carries "undefined", as in the Node.js
# bootstrap.
_NO_INV = _Inv("undefined", b'""')
# Concurrency 1: the invocation in progress or last run.
_cur = _NO_INV
# Concurrency above 1: _CV holds the invocation of the code running (each
# asyncio task, each worker thread's work item has its own).
_multi = False
_CV = contextvars.ContextVar("tern_invocation", default=_NO_INV)

_out_lock = threading.RLock()
_stamp_sec = -1
_stamp_text = ""


def _log_inv():
    return _CV.get() if _multi else _cur


def _stamp():
    """The time as 2006-01-02T15:04:05.000Z; called with _out_lock held."""
    global _stamp_sec, _stamp_text
    t = time.time()
    s = int(t)
    if s != _stamp_sec:
        _stamp_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
        _stamp_sec = s
    return "%s.%03dZ" % (_stamp_text, int((t - s) * 1000))


def _emit_lines(inv, lines):
    """Writes lines (without their "\\n") as console lines of inv."""
    prefix = _stamp() + "\t" + inv.id + "\t"
    text = prefix + ("\n" + prefix).join(lines) + "\n"
    _raw_write(1, text.encode("utf-8", "backslashreplace"))


def _flush_parts(inv):
    """Writes out the unfinished lines of inv."""
    parts = inv.parts
    if parts[0] or parts[1]:
        with _out_lock:
            for k in (0, 1):
                if parts[k]:
                    _emit_lines(inv, (parts[k],))
                    parts[k] = ""


def _log_line(inv, level, message):
    if "\n" in message:
        message = message.replace("\n", "\r")
    with _out_lock:
        text = _stamp() + "\t" + inv.id + "\t" + level + "\t" + message + "\n"
        _raw_write(1, text.encode("utf-8", "backslashreplace"))


class _ConsoleBuffer(object):
    """sys.stdout.buffer: bytes written are decoded as UTF-8."""

    def __init__(self, console):
        self._console = console

    def write(self, b):
        self._console.write(bytes(b).decode("utf-8", "replace"))
        return len(b)

    def flush(self):
        pass

    def writable(self):
        return True

    def isatty(self):
        return False

    def fileno(self):
        return self._console.fileno()


class _Console(io.TextIOBase):
    """A text stream whose lines become console lines of the invocation
    running (see above). A line ends at "\\n"; the unfinished rest of a write
    waits for the next one, and is written as a line of its own before the
    invocation is answered."""

    encoding = "utf-8"
    errors = "backslashreplace"
    newlines = None
    line_buffering = False

    def __init__(self, k, fd, name):
        super().__init__()
        self._k = k
        self._fd = fd
        self._name = name
        self.buffer = _ConsoleBuffer(self)

    @property
    def name(self):
        return self._name

    def writable(self):
        return True

    def readable(self):
        return False

    def seekable(self):
        return False

    def isatty(self):
        return False

    def fileno(self):
        return self._fd

    def flush(self):
        pass

    def close(self):
        pass  # the process' output stays open whatever the code does

    def write(self, s):
        if type(s) is not str:
            if not isinstance(s, str):
                raise TypeError("write() argument must be str, not " + type(s).__name__)
            s = str(s)
        n = len(s)
        if n == 0:
            return 0
        inv = _log_inv()
        k = self._k
        with _out_lock:
            if "\n" not in s:
                rest = inv.parts[k] + s
                if len(rest) > _MAX_PARTIAL:
                    _emit_lines(inv, (rest,))
                    rest = ""
                inv.parts[k] = rest
                return n
            lines = s.split("\n")
            rest = lines.pop()
            pending = inv.parts[k]
            if pending:
                lines[0] = pending + lines[0]
            inv.parts[k] = rest
            _emit_lines(inv, lines)
        return n

    def __repr__(self):
        return "<tern console %s>" % self._name


class _RequestIdFilter(logging.Filter):
    """Gives every record aws_request_id, for formatters that want it."""

    def filter(self, record):
        record.aws_request_id = _log_inv().id
        return True


_message_formatter = logging.Formatter("%(message)s")


class _LogHandler(logging.Handler):
    """The root logger's handler: one line per record. With a formatter set
    (setFormatter), the record is written as that formatter has it."""

    def emit(self, record):
        try:
            inv = _log_inv()
            if self.formatter is None:
                _log_line(inv, record.levelname, _message_formatter.format(record))
                return
            text = self.format(record)
            if "\n" in text:
                text = text.replace("\n", "\r")
            with _out_lock:
                _raw_write(1, (text + "\n").encode("utf-8", "backslashreplace"))
        except Exception:
            self.handleError(record)


def _setup_output():
    sys.stdout = _Console(0, 1, "<stdout>")
    sys.stderr = _Console(1, 2, "<stderr>")
    handler = _LogHandler()
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


# ---------------------------------------------------------------------------
# Error shapes: {"errorType", "errorMessage", "stackTrace"}.


def _safe_str(value):
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return "<unprintable %s>" % type(value).__name__


def _stack(tb):
    """The frames of tb as traceback.format_list has them, leaving out the
    bootstrap's own and the import machinery's."""
    import traceback

    # importlib.import_module's frame heads the traceback of import errors.
    importlib_file = getattr(sys.modules.get("importlib"), "__file__", None)
    try:
        entries = [
            fs
            for fs in traceback.extract_tb(tb)
            if fs.filename != _HERE
            and fs.filename != importlib_file
            and not fs.filename.startswith("<frozen importlib")
        ]
        return traceback.format_list(entries)
    except Exception:
        return []


def _error_payload(exc):
    return {
        "errorType": type(exc).__name__,
        "errorMessage": _safe_str(exc),
        "stackTrace": _stack(exc.__traceback__),
    }


def _payload(error_type, message, stack=None):
    return {"errorType": error_type, "errorMessage": message, "stackTrace": stack or []}


def _type_json(error_type):
    if not isinstance(error_type, str):
        error_type = _safe_str(error_type)
    return json.dumps(error_type[:_MAX_TYPE_CHARS]).encode()


# ---------------------------------------------------------------------------
# Frames.


def _send(typ, header, body):
    if len(header) > _MAX_HEADER:
        _die("frame header of %d bytes is too long" % len(header))
    frame = b"".join((_HEAD.pack(3 + len(header) + len(body), typ, len(header)), header, body))
    with _send_lock:
        try:
            _sock.sendall(frame)
        except OSError as e:
            _die("runtime socket: %s" % e)


def _take_frame():
    """Returns the first complete frame received as (type, header bytes,
    body bytes), or None."""
    buf = _rx
    have = len(buf)
    if have < 4:
        return None
    n = _U32.unpack_from(buf, 0)[0]
    if n < 3:
        _protocol_error("frame length %d is below 3" % n)
    if have < 7:
        return None
    h = _HEAD.unpack_from(buf, 0)[2]
    if h > n - 3:
        _protocol_error("header length %d exceeds frame length %d - 3" % (h, n))
    size = n + 4
    if have < size:
        return None
    typ = buf[4]
    header = bytes(buf[7 : 7 + h])
    body = buf[7 + h : size]
    del buf[:size]
    return typ, header, body


def _recv_more():
    """Receives into _rx; exits when Tern has closed the socket."""
    try:
        chunk = _sock.recv(_RECV_SIZE)
    except InterruptedError:
        return
    except OSError as e:
        _die("runtime socket: %s" % e)
    if not chunk:
        os._exit(_exit_status)  # Tern went away, or stops this instance
    _rx.extend(chunk)


def _read_frame():
    while True:
        frame = _take_frame()
        if frame is not None:
            return frame
        _recv_more()


def _parse_header(raw):
    try:
        header = _decode_json(raw.decode("utf-8"))
    except ValueError as e:
        _protocol_error("frame header is not JSON: %s" % e)
    if not isinstance(header, dict):
        _protocol_error("frame header is not a JSON object")
    return header


def _watch_socket(fd):
    """Exits the process as soon as Tern closes the socket, even while the
    main thread is busy in a handler."""
    mask = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR | select.POLLNVAL
    poller = select.poll()
    poller.register(fd, mask)
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for _, ev in events:
            if ev & mask:
                os._exit(_exit_status)


# ---------------------------------------------------------------------------
# The function: handler, context, invocations.

_handler = None
_handler_async = False
_fn_name = None
_fn_version = "$LATEST"
_memory = 128
_log_group = None
_log_stream = None


class _InitFailure(Exception):
    def __init__(self, payload):
        Exception.__init__(self, payload["errorMessage"])
        self.payload = payload


def _is_async_callable(fn):
    """Whether calling fn returns a coroutine (async def), without the cost
    of importing inspect."""
    for _ in range(8):
        if hasattr(fn, "__func__"):  # bound method
            fn = fn.__func__
        elif type(fn).__name__ == "partial" and hasattr(fn, "func"):
            fn = fn.func
        else:
            break
    code = getattr(fn, "__code__", None)
    if code is not None:
        return bool(code.co_flags & 0x80)  # CO_COROUTINE
    call = getattr(type(fn), "__call__", None)
    code = getattr(call, "__code__", None)
    return code is not None and bool(code.co_flags & 0x80)


def _load_handler(name):
    """Imports the module of name ("module.function", the module possibly a
    path "src/app" or dotted "pkg.app") and returns the function."""
    if not name:
        raise _InitFailure(_payload("Runtime.MalformedHandlerName", "Bad handler: no handler given"))
    modname, dot, fname = name.rpartition(".")
    while modname.startswith("./"):
        modname = modname[2:]
    modpath = modname.replace("/", ".")
    if not dot or not modname or not fname or "" in modpath.split("."):
        raise _InitFailure(
            _payload(
                "Runtime.MalformedHandlerName",
                "Bad handler '%s': expected <module>.<function>" % name,
            )
        )
    import importlib

    try:
        module = importlib.import_module(modpath)
    except ImportError as e:
        raise _InitFailure(
            _payload(
                "Runtime.ImportModuleError",
                "Unable to import module '%s': %s" % (modname, _safe_str(e)),
                _stack(e.__traceback__),
            )
        )
    except SyntaxError as e:
        where = []
        if e.filename:
            text = (e.text or "").strip()
            where = ['  File "%s", line %s\n    %s\n' % (e.filename, e.lineno, text)]
        raise _InitFailure(
            _payload(
                "Runtime.UserCodeSyntaxError",
                "Syntax error in module '%s': %s" % (modname, _safe_str(e)),
                _stack(e.__traceback__) + where,
            )
        )
    fn = getattr(module, fname, None)
    if fn is None:
        raise _InitFailure(
            _payload("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (fname, modname))
        )
    if not callable(fn):
        raise _InitFailure(
            _payload(
                "Runtime.HandlerNotFound",
                "Handler '%s' on module '%s' is not callable (%s)" % (fname, modname, type(fn).__name__),
            )
        )
    return fn


class CognitoIdentity(object):
    def __init__(self, d):
        self.cognito_identity_id = d.get("cognitoIdentityId")
        self.cognito_identity_pool_id = d.get("cognitoIdentityPoolId")

    def __repr__(self):
        return "CognitoIdentity(%r)" % self.__dict__


class Client(object):
    def __init__(self, d):
        self.installation_id = d.get("installation_id")
        self.app_title = d.get("app_title")
        self.app_version_name = d.get("app_version_name")
        self.app_version_code = d.get("app_version_code")
        self.app_package_name = d.get("app_package_name")

    def __repr__(self):
        return "Client(%r)" % self.__dict__


class ClientContext(object):
    def __init__(self, d):
        client = d.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = d.get("custom")
        self.env = d.get("env")

    def __repr__(self):
        return "ClientContext(%r)" % self.__dict__


class LambdaContext(object):
    """The context object handlers get, as on Lambda's Python runtimes."""

    def __init__(self, request_id, deadline_ms, arn, client_context, identity):
        self.aws_request_id = request_id
        self.function_name = _fn_name
        self.function_version = _fn_version
        self.memory_limit_in_mb = _memory
        self.invoked_function_arn = arn
        self.log_group_name = _log_group
        self.log_stream_name = _log_stream
        self.client_context = client_context
        self.identity = identity
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        left = int(self._deadline_ms - time.time() * 1000)
        return left if left > 0 else 0

    def __repr__(self):
        return "LambdaContext(aws_request_id=%r, function_name=%r, function_version=%r)" % (
            self.aws_request_id,
            self.function_name,
            self.function_version,
        )


def _json_object(value):
    """A client context or identity: a JSON object, or JSON text of one."""
    if isinstance(value, str):
        if not value:
            return None
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _make_context(inv, h):
    deadline = h.get("deadline")
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        deadline = 0
    cc = h.get("clientContext")
    ident = h.get("identity")
    if cc is not None:
        cc = _json_object(cc)
        cc = ClientContext(cc) if cc is not None else None
    if ident is not None:
        ident = _json_object(ident)
        ident = CognitoIdentity(ident) if ident is not None else None
    arn = h.get("arn")
    return LambdaContext(inv.id, deadline, arn if isinstance(arn, str) else None, cc, ident)


# The trace id. os.environ["_X_AMZN_TRACE_ID"] is the X-Ray trace id of the
# running invocation. It is never written into the real environment: each
# os.environ write is a libc setenv, which never frees the value it
# replaces, so a fresh trace id per invocation leaked (1e6 writes: RSS
# +107 MB). os.environ's class is instead _TraceEnviron, which answers this
# one name from the invocation: with one at a time the latest's, with
# several that of the code running (_CV), or outside any the latest's.
# Reads, writes, deletes, `in`, iteration, os.getenv and os.environ.copy()
# see it; os.environb, C code calling getenv and subprocesses started
# without env= do not.

_TRACE_ID = "_X_AMZN_TRACE_ID"
_latest_trace = None  # the latest invocation's trace id, or None


def _trace_of(trace):
    return trace if isinstance(trace, str) and trace and "\0" not in trace else None


def _trace_holder():
    """The invocation whose trace os.environ shows, or _NO_INV for
    _latest_trace."""
    return _CV.get() if _multi else _cur


def _current_trace():
    inv = _trace_holder()
    return _latest_trace if inv is _NO_INV else inv.trace


def _set_current_trace(value):
    global _latest_trace
    inv = _trace_holder()
    if inv is _NO_INV:
        _latest_trace = value
    else:
        inv.trace = value


class _TraceEnviron(os._Environ):
    """os.environ, with _X_AMZN_TRACE_ID the running invocation's."""

    def __getitem__(self, key):
        if key == _TRACE_ID:
            value = _current_trace()
            if value is None:
                raise KeyError(key)
            return value
        return os._Environ.__getitem__(self, key)

    def __setitem__(self, key, value):
        if key != _TRACE_ID:
            os._Environ.__setitem__(self, key, value)
            return
        self.encodevalue(value)  # a TypeError for what is not a str
        if "\0" in value:
            raise ValueError("embedded null byte")
        _set_current_trace(value)

    def __delitem__(self, key):
        if key != _TRACE_ID:
            os._Environ.__delitem__(self, key)
            return
        if _current_trace() is None:
            raise KeyError(key)
        _set_current_trace(None)

    def __iter__(self):
        for key in os._Environ.__iter__(self):
            if key != _TRACE_ID:
                yield key
        if _current_trace() is not None:
            yield _TRACE_ID

    def __len__(self):
        return sum(1 for _ in self)

    def __repr__(self):
        return "environ({%s})" % ", ".join("%r: %r" % (k, self[k]) for k in self)


def _install_trace_environ():
    """Makes os.environ a _TraceEnviron, moving a _X_AMZN_TRACE_ID of the
    real environment into _latest_trace."""
    global _latest_trace
    _latest_trace = _trace_of(os.environ.get(_TRACE_ID))
    if _TRACE_ID in os.environ:
        del os.environ[_TRACE_ID]
    os.environ.__class__ = _TraceEnviron


def _json_default(o):
    cls = o.__class__
    if cls.__name__ == "Decimal" and cls.__module__ in ("decimal", "_decimal", "_pydecimal"):
        if o.is_finite() and o == o.to_integral_value():
            return int(o)
        return float(o)
    raise TypeError("Object of type %s is not JSON serializable" % cls.__name__)


_encoder = json.JSONEncoder(default=_json_default)
_decode_json = json.JSONDecoder().decode
_PLAIN = (dict, list, str, int, float, bool, type(None), tuple)

# Invocations in flight with concurrency above 1: request id -> _Inv.
_inflight = {}
_inflight_lock = threading.Lock()


def _answered(inv):
    if _multi:
        with _inflight_lock:
            _inflight.pop(inv.id, None)


def _answer_result(inv, result):
    try:
        body = _encoder.encode(result).encode("utf-8", "surrogatepass")
    except Exception as e:
        _answer_error(
            inv,
            _payload("Runtime.SerializationError", "Unable to marshal response: " + _safe_str(e)),
        )
        return
    _flush_parts(inv)
    _answered(inv)
    _send(_RESPONSE, b'{"id":' + inv.id_json + b"}", body)


def _answer_error(inv, payload):
    text = json.dumps(payload)
    _flush_parts(inv)
    _log_line(inv, "ERROR", "Invoke Error \t" + text)
    _answered(inv)
    _send(
        _ERROR,
        b'{"id":' + inv.id_json + b',"type":' + _type_json(payload["errorType"]) + b"}",
        text.encode(),
    )


def _exit_from(inv, exc):
    """SystemExit or KeyboardInterrupt in a handler ends the process, as it
    would outside Tern; Tern sees the instance crash."""
    status = 130
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            status = 0
        elif isinstance(code, int):
            status = code
        else:
            sys.stderr.write(_safe_str(code) + "\n")
            status = 1
    _flush_parts(inv)
    _flush_parts(_NO_INV)
    os._exit(status & 0xFF)


def _parse_event(inv, body):
    try:
        return True, _decode_json(body.decode("utf-8"))
    except Exception as e:
        _answer_error(inv, _payload("Runtime.InvalidEvent", "invalid event JSON: " + _safe_str(e)))
        return False, None


async def _complete_async(inv, awaitable):
    try:
        result = await awaitable
    except (SystemExit, KeyboardInterrupt) as e:
        _exit_from(inv, e)
    except BaseException as e:
        _answer_error(inv, _error_payload(e))
        return
    _answer_result(inv, result)


_thread_loops = threading.local()


def _thread_loop():
    """This thread's event loop, kept across invocations: the one the
    function's module code set or made (asyncio.get_event_loop() at import),
    else a new one."""
    loop = getattr(_thread_loops, "loop", None)
    if loop is None or loop.is_closed():
        import asyncio
        import warnings

        loop = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                loop = asyncio.get_event_loop()
            except RuntimeError:  # none in this thread
                loop = None
        if loop is None or loop.is_closed() or loop.is_running():
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        _thread_loops.loop = loop
    return loop


def _run_invocation(inv, h, body):
    """Runs one invocation on this thread and answers it."""
    ok, event = _parse_event(inv, body)
    if not ok:
        return
    ctx = _make_context(inv, h)
    try:
        result = _handler(event, ctx)
        if type(result) not in _PLAIN and hasattr(result, "__await__"):
            _thread_loop().run_until_complete(_complete_async(inv, result))
            return
    except (SystemExit, KeyboardInterrupt) as e:
        _exit_from(inv, e)
    except BaseException as e:
        _answer_error(inv, _error_payload(e))
        return
    _answer_result(inv, result)


def _new_invocation(h):
    global _latest_trace
    rid = h.get("id")
    if not isinstance(rid, str) or not rid:
        _protocol_error("INVOKE without an id")
    trace = _latest_trace = _trace_of(h.get("trace"))
    return _Inv(rid, json.dumps(rid).encode(), trace)


def _serve_sequential():
    """Concurrency 1: one invocation at a time, on the main thread."""
    global _cur
    while True:
        typ, raw, body = _read_frame()
        if typ != _INVOKE:
            _unexpected(typ)
        h = _parse_header(raw)
        inv = _new_invocation(h)
        _cur = inv
        _run_invocation(inv, h, body)


def _unexpected(typ):
    if typ == _SPECIALIZE:
        _protocol_error("second SPECIALIZE")
    _protocol_error("unexpected frame type %d" % typ)


def _admit(typ, raw, limit):
    """Checks an INVOKE with concurrency above 1 and records it in flight."""
    if typ != _INVOKE:
        _unexpected(typ)
    h = _parse_header(raw)
    inv = _new_invocation(h)
    with _inflight_lock:
        if len(_inflight) >= limit:
            _protocol_error(
                "INVOKE %s while %d invocations are in flight (concurrency %d)"
                % (inv.id_json.decode(), len(_inflight), limit)
            )
        if inv.id in _inflight:
            _protocol_error("INVOKE %s while an invocation with that id is in flight" % inv.id_json.decode())
        _inflight[inv.id] = inv
    return inv, h


def _serve_threads(limit):
    """Concurrency above 1 with a synchronous handler: a pool of limit
    threads; the main thread keeps reading frames."""
    from concurrent.futures import ThreadPoolExecutor

    global _multi
    _multi = True
    pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="tern-invoke")

    def work(inv, h, body):
        _CV.set(inv)
        _run_invocation(inv, h, body)

    while True:
        typ, raw, body = _read_frame()
        inv, h = _admit(typ, raw, limit)
        pool.submit(contextvars.copy_context().run, work, inv, h, body)


async def _async_invocation(inv, h, body):
    _CV.set(inv)  # this task's own context
    ok, event = _parse_event(inv, body)
    if not ok:
        return
    ctx = _make_context(inv, h)
    try:
        result = _handler(event, ctx)
    except (SystemExit, KeyboardInterrupt) as e:
        _exit_from(inv, e)
    except BaseException as e:
        _answer_error(inv, _error_payload(e))
        return
    if type(result) not in _PLAIN and hasattr(result, "__await__"):
        await _complete_async(inv, result)
    else:
        _answer_result(inv, result)


def _serve_async(limit):
    """Concurrency above 1 with an async handler: every invocation is a task
    on the one event loop, started as its INVOKE arrives."""
    global _multi
    _multi = True
    loop = _thread_loop()
    tasks = set()  # the loop keeps only weak references to tasks

    def drain():
        while True:
            frame = _take_frame()
            if frame is None:
                return
            typ, raw, body = frame
            inv, h = _admit(typ, raw, limit)
            task = loop.create_task(_async_invocation(inv, h, body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def readable():
        _recv_more()
        drain()

    loop.add_reader(_sock.fileno(), readable)
    loop.call_soon(drain)  # frames that came with SPECIALIZE
    loop.run_forever()


# ---------------------------------------------------------------------------
# Specialisation.


def _init_error(payload):
    global _exit_status
    _exit_status = 1
    text = json.dumps(payload)
    _flush_parts(_NO_INV)
    _log_line(_NO_INV, "ERROR", "Init Error \t" + text)
    _send(_INIT_ERROR, b'{"type":' + _type_json(payload["errorType"]) + b"}", text.encode())
    os._exit(1)


def _become_user(uid, gid):
    # A jailed process becomes its function's uid and gid, which leaves it
    # no capability, before it loads any of the function's code; it dies
    # if any privilege is left.
    for v in (uid, gid):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            _protocol_error("SPECIALIZE uid and gid must be positive integers")
    try:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    except OSError as e:
        _die("cannot become uid %d: %s" % (uid, e))
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        _die("still not uid %d and gid %d" % (uid, gid))
    try:
        with open("/proc/self/status") as f:
            status = f.read()
    except OSError as e:
        _die("cannot check capabilities: %s" % e)
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("CapPrm", "CapEff") and value.strip().strip("0"):
            _die("capabilities left after becoming uid %d (%s)" % (uid, key))
    # The change of uid cleared the parent-death signal (so the instance
    # would outlive a killed tern) and made /proc/self root's: set both
    # back.
    try:
        import ctypes  # loaded at boot already when this process started as root

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, 9, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG, SIGKILL
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if libc.prctl(4, 1, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")
    except Exception as e:
        _die("cannot set the parent-death signal: %s" % e)


def _specialize(h):
    global _handler, _handler_async, _fn_name, _fn_version, _memory, _log_group, _log_stream
    env = h.get("env")
    if not isinstance(env, dict):
        _protocol_error("SPECIALIZE without an env object")
    task_root = h.get("taskRoot")
    if not isinstance(task_root, str) or not task_root:
        _protocol_error("SPECIALIZE without a taskRoot")
    n = h.get("concurrency")
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        _protocol_error("SPECIALIZE concurrency must be an integer >= 1, got %s" % json.dumps(n))
    name = h.get("handler")
    if not isinstance(name, str):
        name = ""
    if h.get("uid") is not None:
        _become_user(h.get("uid"), h.get("gid"))

    try:
        os.environ.clear()
        for key, value in env.items():
            os.environ[key] = value if isinstance(value, str) else json.dumps(value)
        if hasattr(time, "tzset"):
            time.tzset()
        task_root = os.path.abspath(task_root)
        os.chdir(task_root)
    except Exception as e:
        _init_error(_error_payload(e))

    # As Lambda's own Python runtimes name themselves (set once, at load).
    os.environ.setdefault("AWS_EXECUTION_ENV", "AWS_Lambda_python%d.%d" % sys.version_info[:2])
    _fn_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    _fn_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION") or "$LATEST"
    try:
        _memory = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 128)
    except ValueError:
        _memory = 128
    _log_group = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
    _log_stream = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")

    # The task root first, then what Lambda layers put on the path, then
    # the function's PYTHONPATH; the bootstrap's own directory goes.
    paths = [task_root]
    for p in (
        os.path.join(task_root, "python"),
        os.path.join(task_root, "python", "lib", "python%d.%d" % sys.version_info[:2], "site-packages"),
    ):
        if os.path.isdir(p):
            paths.append(p)
    for p in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if p:
            paths.append(os.path.join(task_root, p))
    rest = [p for p in sys.path if p not in paths and p not in _HERE_DIRS and p != ""]
    sys.path[:] = paths + rest

    try:
        _handler = _load_handler(name)
    except _InitFailure as e:
        _init_error(e.payload)
    except (SystemExit, KeyboardInterrupt):
        _flush_parts(_NO_INV)
        raise
    except BaseException as e:
        _init_error(_error_payload(e))
    _handler_async = _is_async_callable(_handler)
    return n


def main():
    global _sock
    fd_text = os.environ.get("TERN_RUNTIME_FD")
    if fd_text is None:
        _die("TERN_RUNTIME_FD is not set: this bootstrap speaks only Tern's framed runtime protocol")
    if not fd_text.isdigit():
        _die("TERN_RUNTIME_FD must be a file descriptor number, got %s" % json.dumps(fd_text))
    fd = int(fd_text)
    try:
        _sock = socket.socket(fileno=fd)
        os.set_inheritable(fd, False)  # not for the function's subprocesses
    except OSError as e:
        _die("cannot use TERN_RUNTIME_FD=%s: %s" % (fd_text, e))
    _setup_output()
    _install_trace_environ()

    _send(_BOOTED, b"{}", b"")
    threading.Thread(target=_watch_socket, args=(fd,), name="tern-socket-watch", daemon=True).start()

    typ, raw, _ = _read_frame()
    if typ == _INVOKE:
        _protocol_error("INVOKE before SPECIALIZE")
    if typ != _SPECIALIZE:
        _protocol_error("unexpected frame type %d" % typ)
    limit = _specialize(_parse_header(raw))
    _flush_parts(_NO_INV)
    _send(_READY, b"{}", b"")

    if limit == 1:
        _serve_sequential()
    elif _handler_async:
        _serve_async(limit)
    else:
        _serve_threads(limit)


if __name__ == "__main__":
    main()
