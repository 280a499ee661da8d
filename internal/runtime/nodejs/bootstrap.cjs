'use strict';
// Tern Node.js bootstrap: a Lambda runtime client. With TERN_RUNTIME_FD set it
// speaks Tern's framed runtime protocol on that Unix socket
// (docs/runtime-protocol.md); otherwise the AWS Lambda Runtime API
// (2018-06-01) served by Tern on loopback. Started as `node bootstrap.cjs`,
// one process per function instance. Node.js built-ins only. See doc.go.

const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');
const { pathToFileURL } = require('node:url');

const stdout = process.stdout;
const stderr = process.stderr;
// Node writes to a pipe asynchronously, queueing in memory what the pipe
// does not take at once: a function printing faster than Tern stores its
// log would grow without bound and lose the queue when the process ends.
// Blocking writes make it wait for the log instead.
for (const s of [stdout, stderr]) {
  if (s._handle && typeof s._handle.setBlocking === 'function') s._handle.setBlocking(true);
}

function die(message) {
  stderr.write('tern bootstrap: ' + message + '\n');
  process.exit(1);
}

// ---------------------------------------------------------------------------
// The trace id. process.env._X_AMZN_TRACE_ID is the X-Ray trace id of the
// running invocation. It is never written into the real environment: each
// process.env write is a libc setenv, which never frees the value it
// replaces, so a fresh trace id per invocation leaked (1e6 writes in Node 20:
// RSS +110 MB). process.env is instead a Proxy over the real environment
// that answers this one name from the invocation: with one at a time, the
// latest invocation's (latestTrace); with several, that of the invocation
// whose code runs (the AsyncLocalStorage store's trace), or outside any the
// latest's. Reads, writes, deletes, `in`, Object.keys, spreading and
// child_process (which reads process.env) all see it; native code calling
// getenv does not.

const TRACE_ID = '_X_AMZN_TRACE_ID';
// The latest invocation's trace id, undefined for none.
let latestTrace;

function currentTrace() {
  if (als !== null) {
    const inv = als.getStore();
    if (inv !== undefined) return inv.trace;
  }
  return latestTrace;
}

function setCurrentTrace(value) {
  if (als !== null) {
    const inv = als.getStore();
    if (inv !== undefined) {
      inv.trace = value;
      return;
    }
  }
  latestTrace = value;
}

// traceEnv returns the Proxy over the real environment real, moving a
// _X_AMZN_TRACE_ID it has into latestTrace.
function traceEnv(real) {
  if (Object.prototype.hasOwnProperty.call(real, TRACE_ID)) {
    latestTrace = real[TRACE_ID];
    delete real[TRACE_ID];
  }
  return new Proxy(real, {
    get(target, key) {
      return key === TRACE_ID ? currentTrace() : target[key];
    },
    set(target, key, value) {
      // As the real environment does, a value becomes a string.
      if (key === TRACE_ID) setCurrentTrace(String(value));
      else target[key] = value;
      return true;
    },
    has(target, key) {
      return key === TRACE_ID ? currentTrace() !== undefined : key in target;
    },
    deleteProperty(target, key) {
      if (key === TRACE_ID) setCurrentTrace(undefined);
      else delete target[key];
      return true;
    },
    defineProperty(target, key, desc) {
      if (key !== TRACE_ID) return Reflect.defineProperty(target, key, desc);
      // The real environment takes only plain data properties.
      if (!('value' in desc) || desc.get !== undefined || desc.set !== undefined) return false;
      setCurrentTrace(String(desc.value));
      return true;
    },
    getOwnPropertyDescriptor(target, key) {
      if (key !== TRACE_ID) return Reflect.getOwnPropertyDescriptor(target, key);
      const value = currentTrace();
      return value === undefined ? undefined : { value, writable: true, enumerable: true, configurable: true };
    },
    ownKeys(target) {
      const keys = Reflect.ownKeys(target);
      if (currentTrace() !== undefined) keys.push(TRACE_ID);
      return keys;
    },
  });
}

const env = traceEnv(process.env);
process.env = env;

// ---------------------------------------------------------------------------
// Logging: each console call is one line on stdout:
//   <ISO time>\t<request id>\t<LEVEL>\t<message with \n replaced by \r>\n
// Writes to stdout are synchronous (blocking, above), so log lines are out
// before the answer is posted or its frame written.
//
// With one invocation at a time the request id is that of the latest
// invocation. With several (framed, concurrency > 1) it is that of the
// invocation whose code is running, as tracked by an AsyncLocalStorage.

let logRequestId = 'undefined';
// The AsyncLocalStorage whose store is the invocation record ({id, ...}) of
// the code running; null with one invocation at a time, which then pays
// nothing for it (creating one enables Node's async hooks).
let als = null;

function writeLog(tag, message) {
  writeLogAs(als === null ? logRequestId : storeRequestId(), tag, message);
}

function storeRequestId() {
  const inv = als.getStore();
  return inv === undefined ? 'undefined' : inv.id;
}

function writeLogAs(requestId, tag, message) {
  if (message.indexOf('\n') !== -1) message = message.replaceAll('\n', '\r');
  stdout.write(new Date().toISOString() + '\t' + requestId + tag + message + '\n');
}

function makeLogger(level) {
  const tag = '\t' + level + '\t';
  return function (...args) {
    writeLog(tag, util.format(...args));
  };
}

console.log = makeLogger('INFO');
console.info = console.log;
console.warn = makeLogger('WARN');
console.error = makeLogger('ERROR');
console.debug = makeLogger('DEBUG');
console.trace = makeLogger('TRACE');

function logError(label, payload) {
  writeLog('\tERROR\t', label + ' \t' + JSON.stringify(payload));
}

// ---------------------------------------------------------------------------
// Error shapes.

function isError(value) {
  return value instanceof Error || util.types.isNativeError(value);
}

function describe(value) {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object') {
    try {
      const json = JSON.stringify(value);
      if (json !== undefined) return json;
    } catch {
      // fall through
    }
  }
  try {
    return String(value);
  } catch {
    return util.inspect(value);
  }
}

function stackOf(err) {
  try {
    const stack = err.stack;
    return typeof stack === 'string' ? stack.split('\n') : [];
  } catch {
    return [];
  }
}

// errorPayload builds {"errorType","errorMessage","stackTrace"} for any value.
function errorPayload(err) {
  if (isError(err)) {
    try {
      let type = err.name;
      if (typeof type !== 'string' || type === '') {
        type = (err.constructor && err.constructor.name) || 'Error';
      }
      const message = err.message;
      return {
        errorType: type,
        errorMessage: typeof message === 'string' ? message : describe(message),
        stackTrace: stackOf(err),
      };
    } catch {
      // An exotic error whose properties throw: describe it as a value.
    }
  }
  return { errorType: 'Error', errorMessage: describe(err), stackTrace: [] };
}

// ---------------------------------------------------------------------------
// Handler loading.

class InitFailure {
  constructor(errorType, errorMessage, stackTrace) {
    this.payload = { errorType, errorMessage, stackTrace: stackTrace || [] };
  }
}

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

// isModuleScope reports whether the nearest package.json above dir (not
// looking past taskRoot) declares "type": "module".
function isModuleScope(dir, taskRoot) {
  const stop = path.dirname(taskRoot);
  for (let d = dir; d !== stop; ) {
    let text = null;
    try {
      text = fs.readFileSync(path.join(d, 'package.json'), 'utf8');
    } catch {
      // no package.json here
    }
    if (text !== null) {
      try {
        const pkg = JSON.parse(text);
        return pkg !== null && typeof pkg === 'object' && pkg.type === 'module';
      } catch {
        return false;
      }
    }
    const parent = path.dirname(d);
    if (parent === d) break;
    d = parent;
  }
  return false;
}

function lookup(root, parts) {
  let value = root;
  for (let i = 0; i < parts.length; i++) {
    if (value === null || value === undefined) return undefined;
    value = value[parts[i]];
  }
  return value;
}

function classifyLoadError(err) {
  if (err instanceof InitFailure) return err.payload;
  if (isError(err)) {
    try {
      if (err.name === 'SyntaxError') {
        return { errorType: 'Runtime.UserCodeSyntaxError', errorMessage: 'SyntaxError: ' + err.message, stackTrace: stackOf(err) };
      }
      if (err.code === 'MODULE_NOT_FOUND' || err.code === 'ERR_MODULE_NOT_FOUND') {
        return { errorType: 'Runtime.ImportModuleError', errorMessage: err.name + ': ' + err.message, stackTrace: stackOf(err) };
      }
    } catch {
      // fall through
    }
  }
  return errorPayload(err);
}

// loadHandler loads the handler name ("<module>.<export>") from taskRoot (an
// absolute path) and returns the function, or throws.
async function loadHandler(name, taskRoot) {
  if (!name) throw new InitFailure('Runtime.MalformedHandlerName', 'Bad handler: _HANDLER is not set');
  const slash = name.lastIndexOf('/');
  // An HTTP-style handler may name just the module: its default export.
  if (httpStyle && name.indexOf('.', slash + 1) === -1) name += '.default';
  const dot = name.indexOf('.', slash + 1);
  if (dot <= slash + 1 || dot === name.length - 1) {
    throw new InitFailure('Runtime.MalformedHandlerName', "Bad handler '" + name + "': expected <module>.<export>");
  }
  const moduleName = name.slice(0, dot);
  const parts = name.slice(dot + 1).split('.');
  const base = path.resolve(taskRoot, moduleName);

  let file = null;
  let ext = '';
  for (const e of ['.js', '.mjs', '.cjs']) {
    if (isFile(base + e)) {
      file = base + e;
      ext = e;
      break;
    }
  }
  if (file === null) {
    throw new InitFailure(
      'Runtime.ImportModuleError',
      "Error: Cannot find module '" + moduleName + "' for handler '" + name + "' (tried .js, .mjs and .cjs in " + taskRoot + ')',
    );
  }

  let exportsRoot;
  let esm = false;
  const importFile = () => import(pathToFileURL(file).href);
  if (ext === '.mjs') {
    esm = true;
  } else if (ext === '.js' && isModuleScope(path.dirname(file), taskRoot)) {
    esm = true;
  }
  if (esm) {
    exportsRoot = await importFile();
  } else {
    try {
      exportsRoot = require(file);
    } catch (err) {
      if (!(err && err.code === 'ERR_REQUIRE_ESM')) throw err;
      esm = true;
      exportsRoot = await importFile();
    }
  }

  let fn = lookup(exportsRoot, parts);
  // A CommonJS module's default export is module.exports, as import() has
  // it.
  if (!esm && fn === undefined && parts[0] === 'default' && exportsRoot !== null && exportsRoot !== undefined && !('default' in Object(exportsRoot))) {
    fn = lookup(exportsRoot, parts.slice(1));
  }
  // An ES module namespace of CommonJS code has module.exports as default.
  if (esm && typeof fn !== 'function') {
    const def = exportsRoot.default;
    if (def !== undefined && def !== null) {
      const alt = lookup(def, parts);
      if (alt !== undefined) fn = alt;
    }
  }
  // HTTP style: module.exports = fn (CommonJS, or the default export of an
  // ES module namespace) is the handler for "<module>.default" and, when the
  // function has no such property, "<module>.handler".
  if (httpStyle && typeof fn !== 'function' && parts.length === 1 && (parts[0] === 'default' || parts[0] === 'handler')) {
    const whole = typeof exportsRoot === 'function' ? exportsRoot : esm && exportsRoot !== null ? exportsRoot.default : undefined;
    if (typeof whole === 'function' && (fn === undefined || fn === null)) fn = whole;
  }
  if (fn === undefined || fn === null) {
    throw new InitFailure('Runtime.HandlerNotFound', name + ' is undefined or not exported' + notFoundHint(moduleName, path.basename(file), exportsRoot, esm));
  }
  if (typeof fn !== 'function') {
    throw new InitFailure('Runtime.HandlerNotFound', name + ' is not a function' + notFoundHint(moduleName, path.basename(file), exportsRoot, esm));
  }
  return fn;
}

// paramNames returns the names of fn's parameters as its source declares
// them (a default or a rest parameter by its name; a destructured one as
// written), or null when the source does not say.
function paramNames(fn) {
  let src;
  try {
    src = Function.prototype.toString.call(fn);
  } catch {
    return null;
  }
  // function f(a, b), async (a, b) =>, a method m(a, b); or a =>.
  let m = /^\s*(?:async\b\s*)?(?:function\b\s*\*?)?\s*[\w$]*\s*\(([^)]*)\)/.exec(src);
  if (m === null) m = /^\s*(?:async\b\s*)?([\w$]+)\s*=>/.exec(src);
  if (m === null) return null;
  const list = m[1].trim();
  if (list === '') return [];
  return list.split(',').map((p) => p.replace(/=[\s\S]*$/, '').replace(/^\s*\.\.\./, '').trim());
}

// expressParams returns "(req, res, ...)" when fn's parameters look like
// an Express handler's (a request, then a response), else null.
function expressParams(fn) {
  const names = paramNames(fn);
  if (names === null || names.length < 2) return null;
  if (!/^_?req(uest)?$/i.test(names[0]) || !/^_?res(ponse)?$/i.test(names[1])) return null;
  return '(' + names.join(', ') + ')';
}

// notFoundHint says, when the handler was not found in the module
// (moduleName, loaded from file), which function the module does export
// and what to write in tern.yaml to use it; "" when it exports none.
function notFoundHint(moduleName, file, exportsRoot, esm) {
  if (exportsRoot === null || exportsRoot === undefined) return '';
  let fn = null;
  let what;
  let handlerName;
  const def = esm ? exportsRoot.default : undefined;
  if (typeof exportsRoot === 'function' || typeof def === 'function') {
    fn = typeof exportsRoot === 'function' ? exportsRoot : def;
    what = typeof exportsRoot === 'function' ? 'a function as module.exports' : 'a function as its default export';
    handlerName = moduleName + '.default';
  } else {
    // Named exports, and those of CommonJS code loaded with import().
    const names = [];
    for (const obj of [exportsRoot, def !== null && typeof def === 'object' ? def : null]) {
      if (obj === null) continue;
      for (const key of Object.keys(obj)) {
        let v;
        try {
          v = obj[key];
        } catch {
          continue;
        }
        if (key !== 'default' && typeof v === 'function' && !names.includes(key)) names.push(key);
      }
    }
    if (names.length === 0) return '';
    fn = (def !== null && typeof def === 'object' && typeof def[names[0]] === 'function' && !(names[0] in exportsRoot) ? def : exportsRoot)[names[0]];
    what = names.length === 1 ? 'the function ' + names[0] : 'the functions ' + names.slice(0, 5).join(', ') + (names.length > 5 ? ', ...' : '');
    handlerName = moduleName + '.' + names[0];
  }
  const params = httpStyle ? null : expressParams(fn);
  if (params !== null) {
    return '; ' + file + ' exports ' + what + ', which takes ' + params + ' as an Express handler does: set "style: http"' +
      (handlerName.endsWith('.default') ? '' : ' and "handler: ' + handlerName + '"') + ' in tern.yaml';
  }
  return '; ' + file + ' exports ' + what + ': set "handler: ' + handlerName + '" in tern.yaml';
}

// styleHint is, for a Lambda-style handler whose parameters look like an
// Express handler's, what its invocation errors add; null otherwise.
let styleHint = null;

function setStyleHint(name, fn) {
  const params = httpStyle ? null : expressParams(fn);
  if (params === null) return;
  styleHint = ' (' + name + ' takes ' + params + ' but is called as a Lambda handler, (event, context, callback): for an Express-style handler set "style: http" in tern.yaml)';
  writeLog('\tWARN\t', name + ' takes ' + params + ' as an Express handler does, but is called as a Lambda handler, (event, context, callback): for an Express-style handler set "style: http" in tern.yaml');
}

// invokeErrorPayload is errorPayload(err) for an invocation's error, with
// the style hint.
function invokeErrorPayload(err) {
  const payload = errorPayload(err);
  if (styleHint !== null) payload.errorMessage += styleHint;
  return payload;
}

// ---------------------------------------------------------------------------
// Invocation core, shared by both transports.
//
// A transport carries events in and answers out. It calls initialize() once
// it knows the handler and invoke() for each event, and implements:
//
//   ready()                    the handler is loaded: report it (framed:
//                              READY) and wait for the first event
//   next()                     the last answer is out: wait for the next event
//   respond(body)              answer the current invocation with a result
//   fail(errorType, body)      answer it with an error
//   initError(errorType, body) report an init failure and exit with status 1
//   exit(code)                 exit once what was sent is out
//
// respond and fail call answered() once the transport can take the next
// event. Bodies are JSON text.
//
// The framed transport may also set a concurrency above 1 (setConcurrency)
// and then call invokeConcurrent() for each event, possibly while others
// run; those invocations are answered through
//
//   respondTo(inv, body)                  answer invocation inv with a result
//   failTo(inv, errorType, body, fatal)   answer it with an error
//
// which take no turn: the transport keeps taking events meanwhile.

const BOOTING = 0; // framed: waiting for SPECIALIZE
const INITIALIZING = 1; // loading the handler
const SERVING = 2; // handler loaded

const IDLE = 0; // waiting for an event
const RUNNING = 1; // handler running, no completion yet
const WAITING = 2; // callback called, waiting for the event loop to drain
const POSTING = 3; // result or error being sent

let transport = null;
let phase = BOOTING;
let initErrorSent = false;
let handler = null;
let state = IDLE;
let generation = 0;
let currentId = '';
let waitingIsError = false;
let waitingValue;
let exitAfterPost = false;
// Handler style (framed SPECIALIZE "style"): false for Lambda's
// handler(event, context, callback), true for Express-style handler(req, res).
let httpStyle = false;

// Concurrent invocations (framed, concurrency > 1). Each is a record
// {id, idJSON, done}: done once answered. inflight maps the request ids of
// those not answered yet to their records, in arrival order. dying: an
// uncaught error answered them all; the process is exiting.
let concurrency = 1;
const inflight = new Map();
let dying = false;

// Context fields from the environment, read when initialization begins.
let functionName;
let functionVersion;
let memorySize;
let logGroup;
let logStream;

// initialize loads the handler and reports the outcome through the
// transport.
function initialize(name, taskRoot) {
  phase = INITIALIZING;
  // As Lambda's own Node.js runtimes name themselves (set once, at load).
  if (!env.AWS_EXECUTION_ENV) env.AWS_EXECUTION_ENV = 'AWS_Lambda_nodejs' + process.versions.node.split('.')[0] + '.x';
  functionName = env.AWS_LAMBDA_FUNCTION_NAME;
  functionVersion = env.AWS_LAMBDA_FUNCTION_VERSION || '$LATEST';
  memorySize = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE || '128';
  logGroup = env.AWS_LAMBDA_LOG_GROUP_NAME;
  logStream = env.AWS_LAMBDA_LOG_STREAM_NAME;
  loadHandler(name, taskRoot).then(
    (fn) => {
      if (initErrorSent) return;
      handler = fn;
      setStyleHint(name, fn);
      phase = SERVING;
      transport.ready();
    },
    (err) => sendInitError(classifyLoadError(err)),
  );
}

// becomeUser makes a jailed process its function's uid and gid, which
// leaves it no capability, before it loads any of the function's code;
// the process dies if any privilege is left.
function becomeUser(uid, gid) {
  if (!Number.isSafeInteger(uid) || uid <= 0 || !Number.isSafeInteger(gid) || gid <= 0) {
    protocolError('SPECIALIZE uid and gid must be positive integers');
  }
  try {
    process.setgroups([]);
    process.setgid(gid);
    process.setuid(uid);
  } catch (err) {
    die('cannot become uid ' + uid + ': ' + (err && err.message ? err.message : String(err)));
  }
  if (process.getuid() !== uid || process.geteuid() !== uid || process.getgid() !== gid || process.getegid() !== gid) {
    die('still not uid ' + uid + ' and gid ' + gid);
  }
  let status = '';
  try {
    status = fs.readFileSync('/proc/self/status', 'utf8');
  } catch (err) {
    die('cannot check capabilities: ' + err.message);
  }
  for (const set of ['CapPrm', 'CapEff']) {
    const m = new RegExp('^' + set + ':\\s*([0-9a-f]+)$', 'm').exec(status);
    if (!m || /[1-9a-f]/.test(m[1])) die('capabilities left after becoming uid ' + uid + ' (' + set + ')');
  }
}

// specialize makes a generic (framed) process one function's: env replaces
// the whole environment, taskRoot becomes the working directory, and the
// handler is loaded as the HTTP bootstrap would.
function specialize(name, taskRoot, newEnv) {
  for (const key of Object.keys(env)) delete env[key];
  for (const key of Object.keys(newEnv)) {
    const value = newEnv[key];
    env[key] = typeof value === 'string' ? value : String(value);
  }
  taskRoot = path.resolve(taskRoot);
  try {
    process.chdir(taskRoot);
  } catch (err) {
    phase = INITIALIZING;
    sendInitError(errorPayload(err));
    return;
  }
  initialize(name, taskRoot);
}

function sendInitError(payload) {
  if (initErrorSent) return;
  initErrorSent = true;
  logError('Uncaught Exception', payload);
  transport.initError(payload.errorType, JSON.stringify(payload));
}

// answered: the transport has sent the current answer.
function answered() {
  state = IDLE;
  if (exitAfterPost) transport.exit(1);
  else transport.next();
}

function postInvocationError(payload, label) {
  state = POSTING;
  waitingValue = undefined;
  logError(label, payload);
  transport.fail(payload.errorType, JSON.stringify(payload));
}

function finish(isError, value) {
  if (isError) {
    postInvocationError(invokeErrorPayload(value), 'Invoke Error');
    return;
  }
  state = POSTING;
  waitingValue = undefined;
  let body;
  try {
    body = JSON.stringify(value);
  } catch (err) {
    postInvocationError(
      { errorType: 'Runtime.SerializationError', errorMessage: errorPayload(err).errorMessage, stackTrace: stackOf(err) },
      'Invoke Error',
    );
    return;
  }
  transport.respond(body === undefined ? 'null' : body);
}

// complete is the single completion point of an invocation; the first call
// for the current generation wins, later ones are ignored.
function complete(gen, isError, value, waitForEmptyLoop) {
  if (gen !== generation || state !== RUNNING) return;
  if (waitForEmptyLoop) {
    state = WAITING;
    waitingIsError = isError;
    waitingValue = value;
    return;
  }
  finish(isError, value);
}

function parseJSONHeader(value) {
  if (value === undefined || value === '') return undefined;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

// jsonField turns a client context or identity into an object: JSON text is
// parsed, an object is taken as it is.
function jsonField(value) {
  if (typeof value === 'string') return parseJSONHeader(value);
  if (value !== null && typeof value === 'object') return value;
  return undefined;
}

function traceOf(trace) {
  return typeof trace === 'string' && trace !== '' ? trace : undefined;
}

function invalidEvent(err) {
  return { errorType: 'Runtime.InvalidEvent', errorMessage: 'invalid event JSON: ' + errorPayload(err).errorMessage, stackTrace: [] };
}

// newContext builds the context object of one invocation. settle(isError,
// value) completes it at once (the legacy done/succeed/fail never wait for
// the event loop).
function newContext(id, deadline, arn, clientContext, identity, settle) {
  return {
    awsRequestId: id,
    functionName,
    functionVersion,
    memoryLimitInMB: memorySize,
    invokedFunctionArn: arn,
    logGroupName: logGroup,
    logStreamName: logStream,
    clientContext: jsonField(clientContext),
    identity: jsonField(identity),
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis() {
      const left = deadline - Date.now();
      return left > 0 ? left : 0;
    },
    done(err, result) {
      if (err !== undefined && err !== null) settle(true, err);
      else settle(false, result);
    },
    succeed(result) {
      settle(false, result);
    },
    fail(err) {
      settle(true, err);
    },
  };
}

// callHandler calls the handler; a synchronous throw, or the settling of the
// thenable it returns, completes the invocation through settle.
function callHandler(event, context, callback, settle) {
  let returned;
  try {
    returned = handler(event, context, callback);
  } catch (err) {
    settle(true, err);
    return;
  }
  if (returned !== null && (typeof returned === 'object' || typeof returned === 'function')) {
    try {
      const then = returned.then;
      if (typeof then === 'function') {
        then.call(
          returned,
          (result) => settle(false, result),
          (err) => settle(true, err),
        );
      }
    } catch (err) {
      settle(true, err);
    }
  }
}

// invoke runs one invocation: id is the request id, eventText the event's
// JSON, deadline the epoch-ms deadline, arn the invoked function ARN, trace
// the X-Ray trace id (if any), clientContext and identity JSON text or
// objects (if any).
function invoke(id, eventText, deadline, arn, trace, clientContext, identity) {
  const gen = ++generation;
  currentId = id;
  logRequestId = id;
  state = RUNNING;
  latestTrace = traceOf(trace);

  let event;
  try {
    event = JSON.parse(eventText);
  } catch (err) {
    postInvocationError(invalidEvent(err), 'Invoke Error');
    return;
  }

  const settle = (isError, value) => complete(gen, isError, value, false);
  const context = newContext(id, deadline, arn, clientContext, identity, settle);
  if (httpStyle) {
    callHttpHandler(event, context, settle);
    return;
  }
  const callback = (err, result) => {
    if (err !== undefined && err !== null) complete(gen, true, err, context.callbackWaitsForEmptyEventLoop);
    else complete(gen, false, result, context.callbackWaitsForEmptyEventLoop);
  };
  callHandler(event, context, callback, settle);
}

// ---------------------------------------------------------------------------
// Express-style handlers (SPECIALIZE "style": "http"): handler(req, res,
// next). The event is a Lambda function URL request (payload 2.0); req is
// built from it, and ending res answers the invocation with a function URL
// result {"statusCode","headers","cookies","body","isBase64Encoded"}.
// Calling next ends res as Express's final handler would: nothing else
// answers the request.

const { isUtf8 } = require('node:buffer');
const { STATUS_CODES } = require('node:http');

const JSON_TYPE = /^application\/(?:[^;\s]*\+)?json\s*(?:;|$)/i;
const TEXT_TYPE = /^(?:text\/|application\/(?:[^;\s]*\+)?(?:json|xml)\s*(?:;|$)|application\/(?:javascript|ecmascript|x-www-form-urlencoded|graphql)\s*(?:;|$))|;\s*charset=/i;

function noResponse() {
  return { errorType: 'Runtime.NoResponse', errorMessage: 'the handler returned without sending a response', stackTrace: [] };
}

function headersSentError() {
  const err = new Error('Cannot set headers after they are sent to the client');
  err.code = 'ERR_HTTP_HEADERS_SENT';
  return err;
}

// callHttpHandler calls the HTTP-style handler for event. settle(false,
// result) when res ends; settle(true, err) on a throw or a rejected promise.
// A handler that is done without ending res is left running: res may still
// end later (with concurrency 1 an empty event loop then answers
// Runtime.NoResponse, see 'beforeExit').
function callHttpHandler(event, context, settle) {
  let req;
  try {
    req = buildRequest(event, context);
  } catch (err) {
    settle(true, err);
    return;
  }
  const res = newResponse(req, (result) => settle(false, result));
  req.res = res;
  const requestId = context.awsRequestId;
  const next = (err) => finalHandler(req, res, err, requestId);
  let returned;
  try {
    returned = handler(req, res, next);
  } catch (err) {
    settle(true, err);
    return;
  }
  if (returned !== null && (typeof returned === 'object' || typeof returned === 'function')) {
    try {
      const then = returned.then;
      if (typeof then === 'function') then.call(returned, undefined, (err) => settle(true, err));
    } catch (err) {
      settle(true, err);
    }
  }
}

function escapeHTML(text) {
  return text.replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
}

function htmlPage(text) {
  return '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n</head>\n<body>\n<pre>' +
    escapeHTML(text) + '</pre>\n</body>\n</html>\n';
}

// errorStatus is the status Express's final handler gives err: its status
// or statusCode when that is 4xx or 5xx, else 500.
function errorStatus(err) {
  if (err !== null && typeof err === 'object') {
    for (const key of ['status', 'statusCode']) {
      let v;
      try {
        v = err[key];
      } catch {
        continue;
      }
      if (Number.isInteger(v) && v >= 400 && v < 600) return v;
    }
  }
  return 500;
}

// finalHandler is what next(err) does when nothing else answers, as in
// Express: next() (or next('route'), next('router'): there are no routes)
// answers 404 "Cannot <method> <path>"; next(err) logs err with the
// invocation's request id and answers its status (errorStatus) with the
// status text only, never the error. Headers the handler set are dropped.
// After res has ended an error is only logged.
function finalHandler(req, res, err, requestId) {
  let status = 404;
  let text = 'Cannot ' + req.method + ' ' + req.path;
  if (err && err !== 'route' && err !== 'router') {
    status = errorStatus(err);
    text = STATUS_CODES[status] || String(status);
    writeLogAs(requestId, '\tERROR\t', 'Error passed to next() \t' + JSON.stringify(errorPayload(err)));
  }
  if (res.finished) return;
  for (const name of Object.keys(res.getHeaders())) res.removeHeader(name);
  res.status(status).set({
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Security-Policy': "default-src 'none'",
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(req.method === 'HEAD' ? undefined : htmlPage(text));
}

// encodeLocation percent-encodes what may not stand in a URL as it is
// (controls, spaces, non-ASCII, quotes, angle brackets, braces, backquotes
// and a % that starts no escape), keeping what is encoded already.
function encodeLocation(url) {
  return url.replace(/[^\x21-\x7e]|["<>`{}]|%(?![0-9A-Fa-f]{2})/gu, (c) => {
    try {
      return encodeURIComponent(c);
    } catch {
      return '%EF%BF%BD'; // a lone surrogate
    }
  });
}

// wantsHTML: the request's Accept names text/html before text/plain.
function wantsHTML(req) {
  const accept = String(req.headers.accept || '').toLowerCase();
  const html = accept.indexOf('text/html');
  const plain = accept.indexOf('text/plain');
  return html !== -1 && (plain === -1 || html < plain);
}

function objectOr(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : null;
}

// buildRequest builds req from a function URL event.
function buildRequest(event, context) {
  const ev = objectOr(event) || {};
  const rc = objectOr(ev.requestContext) || {};
  const http = objectOr(rc.http) || {};
  const rawPath = typeof ev.rawPath === 'string' && ev.rawPath !== '' ? ev.rawPath : typeof http.path === 'string' && http.path !== '' ? http.path : '/';
  const rawQuery = typeof ev.rawQueryString === 'string' ? ev.rawQueryString : '';

  const headers = {};
  const h = objectOr(ev.headers);
  if (h !== null) {
    for (const name of Object.keys(h)) {
      const value = h[name];
      if (value !== undefined && value !== null) headers[name.toLowerCase()] = String(value);
    }
  }
  if (Array.isArray(ev.cookies) && ev.cookies.length !== 0) headers.cookie = ev.cookies.join('; ');

  let raw;
  if (typeof ev.body === 'string') raw = Buffer.from(ev.body, ev.isBase64Encoded === true ? 'base64' : 'utf8');
  else raw = Buffer.alloc(0);
  let body = raw;
  const type = headers['content-type'];
  if (type !== undefined && JSON_TYPE.test(type)) {
    // Not JSON after all: body stays the Buffer.
    if (raw.length === 0) body = {};
    else {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        body = raw;
      }
    }
  }

  const q = objectOr(ev.queryStringParameters);
  const method = typeof http.method === 'string' && http.method !== '' ? http.method.toUpperCase() : 'GET';
  const url = rawPath + (rawQuery !== '' ? '?' + rawQuery : '');
  const get = (name) => {
    const key = String(name).toLowerCase();
    if (key === 'referer' || key === 'referrer') return headers.referer !== undefined ? headers.referer : headers.referrer;
    return headers[key];
  };
  return {
    method,
    url,
    originalUrl: url,
    path: rawPath,
    query: q !== null ? Object.assign({}, q) : {},
    headers,
    body,
    rawBody: raw,
    ip: typeof http.sourceIp === 'string' ? http.sourceIp : undefined,
    params: {},
    get,
    header: get,
    event,
    context,
  };
}

function isBytes(value) {
  return value instanceof Uint8Array;
}

function toBuffer(value) {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

// newResponse returns the res of req; onEnd(result) gets the function URL
// result when it ends, once.
function newResponse(req, onEnd) {
  const fields = new Map(); // lower-case name -> {name, value}
  const cookies = [];
  let chunks = null; // written strings and Buffers
  let binary = false; // a Buffer was written

  function setField(name, value, append) {
    if (res.headersSent) throw headersSentError();
    const key = String(name).toLowerCase();
    if (key === 'set-cookie') {
      if (Array.isArray(value)) for (const v of value) cookies.push(String(v));
      else cookies.push(String(value));
      return;
    }
    const v = Array.isArray(value) ? value.map(String) : String(value);
    const old = fields.get(key);
    if (append && old !== undefined) {
      fields.set(key, { name: old.name, value: [].concat(old.value, v) });
    } else {
      fields.set(key, { name: String(name), value: v });
    }
  }

  function write(chunk, encoding) {
    if (chunk === undefined || chunk === null) return;
    let piece;
    if (typeof chunk === 'string') {
      if (typeof encoding === 'string' && encoding !== 'utf8' && encoding !== 'utf-8') {
        piece = Buffer.from(chunk, encoding);
        binary = true;
      } else {
        piece = chunk;
      }
    } else if (isBytes(chunk)) {
      piece = toBuffer(chunk);
      binary = true;
    } else {
      piece = String(chunk);
    }
    if (chunks === null) chunks = [piece];
    else chunks.push(piece);
  }

  function result() {
    const headers = {};
    for (const [key, f] of fields) headers[key] = Array.isArray(f.value) ? f.value.join(',') : f.value;
    let body = '';
    let isBase64Encoded = false;
    if (chunks !== null) {
      if (!binary) {
        body = chunks.join('');
      } else {
        const buf = Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c, 'utf8') : c)));
        const type = headers['content-type'];
        if (type !== undefined && TEXT_TYPE.test(type) && isUtf8(buf)) {
          body = buf.toString('utf8');
        } else {
          body = buf.toString('base64');
          isBase64Encoded = true;
        }
      }
    }
    return { statusCode: res.statusCode, headers, cookies: cookies.slice(), body, isBase64Encoded };
  }

  const res = {
    statusCode: 200,
    headersSent: false,
    finished: false,
    writableEnded: false,
    locals: {},
    req,
    status(code) {
      res.statusCode = Number(code);
      return res;
    },
    sendStatus(code) {
      res.statusCode = code;
      return res.send(String(code));
    },
    set(name, value) {
      if (name !== null && typeof name === 'object') {
        for (const key of Object.keys(name)) setField(key, name[key], false);
      } else {
        setField(name, value, false);
      }
      return res;
    },
    header(name, value) {
      return res.set(name, value);
    },
    setHeader(name, value) {
      setField(name, value, false);
      return res;
    },
    append(name, value) {
      setField(name, value, true);
      return res;
    },
    appendHeader(name, value) {
      setField(name, value, true);
      return res;
    },
    getHeader(name) {
      const key = String(name).toLowerCase();
      if (key === 'set-cookie') return cookies.length === 0 ? undefined : cookies.slice();
      const f = fields.get(key);
      return f === undefined ? undefined : f.value;
    },
    get(name) {
      return res.getHeader(name);
    },
    hasHeader(name) {
      return res.getHeader(name) !== undefined;
    },
    removeHeader(name) {
      if (res.headersSent) throw headersSentError();
      const key = String(name).toLowerCase();
      if (key === 'set-cookie') cookies.length = 0;
      else fields.delete(key);
    },
    getHeaders() {
      const out = {};
      for (const [key, f] of fields) out[key] = f.value;
      if (cookies.length !== 0) out['set-cookie'] = cookies.slice();
      return out;
    },
    type(value) {
      return res.set('Content-Type', String(value).indexOf('/') === -1 ? 'text/' + value : value);
    },
    // location sets Location to url, "back" meaning the Referer (or "/").
    location(url) {
      let loc = String(url);
      if (loc === 'back') loc = req.get('referer') || '/';
      return res.set('Location', encodeLocation(loc));
    },
    // redirect([status,] url) ends res with status (302 by default) and
    // Location, the body saying where to (HTML when the request accepts it,
    // else text; none for HEAD). redirect(url, status) works too.
    redirect(a, b) {
      let status = 302;
      let url = a;
      if (b !== undefined) {
        if (typeof a === 'number') {
          status = a;
          url = b;
        } else {
          status = Number(b);
        }
      }
      if (res.finished) return;
      res.location(url);
      const loc = res.getHeader('location');
      const reason = (STATUS_CODES[status] || String(status)) + '. Redirecting to ';
      let body;
      if (wantsHTML(req)) {
        res.set('Content-Type', 'text/html; charset=utf-8');
        body = '<p>' + escapeHTML(reason) + '<a href="' + escapeHTML(loc) + '">' + escapeHTML(loc) + '</a></p>';
      } else {
        res.set('Content-Type', 'text/plain; charset=utf-8');
        body = reason + loc;
      }
      res.statusCode = status;
      res.end(req.method === 'HEAD' ? undefined : body);
    },
    write(chunk, encoding) {
      if (res.finished) return false;
      write(chunk, encoding);
      return true;
    },
    json(value) {
      if (res.finished) return res;
      if (!fields.has('content-type')) setField('Content-Type', 'application/json', false);
      const text = JSON.stringify(value);
      return res.end(text === undefined ? '' : text);
    },
    send(body) {
      if (res.finished) return res;
      if (body === undefined || body === null) return res.end();
      if (typeof body === 'string') {
        if (!fields.has('content-type')) setField('Content-Type', 'text/html; charset=utf-8', false);
        return res.end(body);
      }
      if (isBytes(body)) {
        if (!fields.has('content-type')) setField('Content-Type', 'application/octet-stream', false);
        return res.end(body);
      }
      return res.json(body);
    },
    end(chunk, encoding, cb) {
      if (typeof chunk === 'function') {
        cb = chunk;
        chunk = undefined;
      } else if (typeof encoding === 'function') {
        cb = encoding;
        encoding = undefined;
      }
      if (res.finished) return res;
      write(chunk, encoding);
      const out = result();
      res.headersSent = true;
      res.finished = true;
      res.writableEnded = true;
      onEnd(out);
      if (typeof cb === 'function') process.nextTick(cb);
      return res;
    },
  };
  return res;
}

// ---------------------------------------------------------------------------
// Concurrent invocations (framed transport, concurrency > 1).
//
// Every invocation runs inside als.run(inv, ...), so code it starts (promise
// continuations, timers, I/O callbacks) sees inv as the store: console lines
// carry its id and an uncaught error can be traced back to it. There is no
// waiting for an empty event loop, which other invocations keep busy: a
// callback answers at once whatever callbackWaitsForEmptyEventLoop says, and
// a handler that returns without completing is answered when it calls its
// callback (or context.done/succeed/fail), or never (Tern's deadline).

// setConcurrency sets how many invocations may be in flight at once (n, an
// integer >= 1), before the handler is loaded.
function setConcurrency(n) {
  concurrency = n;
  if (n > 1 && als === null) {
    const { AsyncLocalStorage } = require('node:async_hooks');
    als = new AsyncLocalStorage();
  }
}

// invokeConcurrent starts invocation inv (a record {id, done: false, ...}
// the transport made); the arguments after it are those of invoke. The
// transport has checked that inv.id is not in flight and that fewer than
// concurrency are.
function invokeConcurrent(inv, eventText, deadline, arn, trace, clientContext, identity) {
  inflight.set(inv.id, inv);
  inv.trace = latestTrace = traceOf(trace);
  als.run(inv, runConcurrent, inv, eventText, deadline, arn, clientContext, identity);
}

function runConcurrent(inv, eventText, deadline, arn, clientContext, identity) {
  let event;
  try {
    event = JSON.parse(eventText);
  } catch (err) {
    answerError(inv, invalidEvent(err), 'Invoke Error', false);
    return;
  }
  const settle = (isError, value) => settleConcurrent(inv, isError, value);
  const context = newContext(inv.id, deadline, arn, clientContext, identity, settle);
  if (httpStyle) {
    callHttpHandler(event, context, settle);
    return;
  }
  const callback = (err, result) => {
    if (err !== undefined && err !== null) settleConcurrent(inv, true, err);
    else settleConcurrent(inv, false, result);
  };
  callHandler(event, context, callback, settle);
}

// settleConcurrent answers inv; the first completion wins (also over one
// made while the result is serialized, by a toJSON say).
function settleConcurrent(inv, isError, value) {
  if (inv.done) return;
  inv.done = true;
  inflight.delete(inv.id);
  if (isError) {
    answerError(inv, invokeErrorPayload(value), 'Invoke Error', false);
    return;
  }
  let body;
  try {
    body = JSON.stringify(value);
  } catch (err) {
    answerError(
      inv,
      { errorType: 'Runtime.SerializationError', errorMessage: errorPayload(err).errorMessage, stackTrace: stackOf(err) },
      'Invoke Error',
      false,
    );
    return;
  }
  transport.respondTo(inv, body === undefined ? 'null' : body);
}

// answerError answers inv with the error payload, logging it under inv's
// request id as label.
function answerError(inv, payload, label, fatal) {
  inv.done = true;
  inflight.delete(inv.id);
  const json = JSON.stringify(payload);
  writeLogAs(inv.id, '\tERROR\t', label + ' \t' + json);
  transport.failTo(inv, payload.errorType, json, fatal);
}

// fatalConcurrent handles an uncaught error while serving concurrently: the
// invocation it came from (the store, if still in flight; otherwise the
// oldest in flight) is answered with it, every other one in flight with a
// Runtime.ExitError, all fatal, and the process exits with status 1.
function fatalConcurrent(payload, label) {
  if (dying) {
    stderr.write(label + ' \t' + JSON.stringify(payload) + '\n');
    return;
  }
  dying = true;
  const store = als.getStore();
  const known = store !== undefined && !store.done;
  let first = known ? store : null;
  if (first === null) {
    for (const inv of inflight.values()) {
      first = inv;
      break;
    }
  }
  if (first === null) {
    stderr.write(label + ' \t' + JSON.stringify(payload) + '\n');
  } else {
    answerError(first, payload, label, true);
    const message = known
      ? 'The instance is exiting because another invocation (' + first.id + ') raised an uncaught error (' + payload.errorType + ')'
      : 'The instance is exiting because of an uncaught error (' + payload.errorType + ') raised by another invocation or outside any invocation';
    for (const inv of Array.from(inflight.values())) {
      answerError(inv, { errorType: 'Runtime.ExitError', errorMessage: message, stackTrace: [] }, 'Invoke Error', true);
    }
  }
  transport.exit(1);
}

// ---------------------------------------------------------------------------
// HTTP transport: the Lambda Runtime API.

function httpTransport() {
  const http = require('node:http');

  const RUNTIME_API = env.AWS_LAMBDA_RUNTIME_API;
  if (!RUNTIME_API) die('AWS_LAMBDA_RUNTIME_API is not set');
  const apiColon = RUNTIME_API.lastIndexOf(':');
  let apiHost = apiColon > 0 ? RUNTIME_API.slice(0, apiColon) : '';
  const apiPort = apiColon > 0 ? Number(RUNTIME_API.slice(apiColon + 1)) : NaN;
  if (apiHost.length > 1 && apiHost[0] === '[' && apiHost[apiHost.length - 1] === ']') {
    apiHost = apiHost.slice(1, -1);
  }
  if (apiHost === '' || !Number.isInteger(apiPort) || apiPort < 1 || apiPort > 65535) {
    die('AWS_LAMBDA_RUNTIME_API must be host:port, got ' + JSON.stringify(RUNTIME_API));
  }

  const PREFIX = '/2018-06-01/runtime';
  const INVOCATION_PREFIX = PREFIX + '/invocation/';
  const INIT_ERROR_PATH = PREFIX + '/init/error';
  const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';

  // Calls are strictly sequential, so one kept-alive socket is enough. The
  // agent unrefs idle sockets, so it never keeps the event loop alive by
  // itself.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

  // http.request copies its options, so this object is reused for every
  // poll. No timeout: /next is a long poll that returns when an event
  // arrives.
  const NEXT_OPTIONS = { agent, host: apiHost, port: apiPort, method: 'GET', path: INVOCATION_PREFIX + 'next' };

  let currentPath = '';

  function apiFailure(err) {
    die('Runtime API request failed: ' + (err && err.code ? err.code + ' ' : '') + (err && err.message ? err.message : String(err)));
  }

  // send performs one Runtime API call. onDone(res, body) gets the body as a
  // Buffer when collect is true (null otherwise). A connection-level failure
  // is fatal (Tern is gone), except that a reset on a reused keep-alive
  // socket (the server closed it while idle) is retried once on a fresh
  // connection.
  function send(options, body, collect, onDone, retried) {
    const req = http.request(options, (res) => {
      res.on('error', apiFailure);
      if (!collect) {
        res.on('end', () => onDone(res, null));
        res.resume();
        return;
      }
      let first = null;
      let chunks = null;
      res.on('data', (chunk) => {
        if (first === null) first = chunk;
        else if (chunks === null) chunks = [first, chunk];
        else chunks.push(chunk);
      });
      res.on('end', () => {
        onDone(res, chunks !== null ? Buffer.concat(chunks) : first !== null ? first : Buffer.alloc(0));
      });
    });
    req.on('error', (err) => {
      if (!retried && req.reusedSocket && err && err.code === 'ECONNRESET') {
        send(options, body, collect, onDone, true);
        return;
      }
      apiFailure(err);
    });
    req.end(body);
  }

  function post(reqPath, headers, body, onDone) {
    send({ agent, host: apiHost, port: apiPort, method: 'POST', path: reqPath, headers }, body, false, onDone, false);
  }

  // Header values must be visible ASCII; keep the JSON errorType as-is.
  function headerSafe(value) {
    const s = String(value);
    return /^[\x20-\x7e]*$/.test(s) ? s : s.replace(/[^\x20-\x7e]/g, '');
  }

  function errorHeaders(errorType) {
    return { 'Content-Type': 'application/json', [ERROR_TYPE_HEADER]: headerSafe(errorType) };
  }

  function next() {
    send(NEXT_OPTIONS, undefined, true, onNext, false);
  }

  function onNext(res, body) {
    if (res.statusCode !== 200) die('Runtime API answered ' + res.statusCode + ' to invocation/next; exiting');
    const h = res.headers;
    const id = h['lambda-runtime-aws-request-id'];
    if (typeof id !== 'string' || id === '') die('invocation/next response has no Lambda-Runtime-Aws-Request-Id');
    currentPath = INVOCATION_PREFIX + encodeURIComponent(id) + '/';
    invoke(
      id,
      body.toString('utf8'),
      Number(h['lambda-runtime-deadline-ms']),
      h['lambda-runtime-invoked-function-arn'],
      h['lambda-runtime-trace-id'],
      h['lambda-runtime-client-context'],
      h['lambda-runtime-cognito-identity'],
    );
  }

  function afterPost(res) {
    const status = res.statusCode;
    if (status !== 202) {
      if (status === 413) {
        writeLog('\tERROR\t', 'Response for request ' + currentId + ' rejected by the Runtime API: payload too large (413)');
      } else if (status >= 500) {
        die('Runtime API answered ' + status + ' to ' + res.req.path + '; exiting');
      } else {
        stderr.write('tern bootstrap: Runtime API answered ' + status + ' to ' + res.req.path + '\n');
      }
    }
    answered();
  }

  return {
    ready: next,
    next,
    respond(body) {
      post(currentPath + 'response', undefined, body, afterPost);
    },
    fail(errorType, body) {
      post(currentPath + 'error', errorHeaders(errorType), body, afterPost);
    },
    initError(errorType, body) {
      post(INIT_ERROR_PATH, errorHeaders(errorType), body, () => process.exit(1));
    },
    exit(code) {
      process.exit(code);
    },
  };
}

// ---------------------------------------------------------------------------
// Framed transport: docs/runtime-protocol.md on the Unix socket
// TERN_RUNTIME_FD. A frame is n (uint32 BE: the length of the rest), type
// (1 byte), h (uint16 BE: the header's length), a JSON header of h bytes and
// a body of n - 3 - h bytes.

const SPECIALIZE = 1;
const READY = 2;
const INIT_ERROR = 3;
const INVOKE = 4;
const RESPONSE = 5;
const ERROR = 6;
const BOOTED = 7;

const MAX_HEADER = 0xffff;
// Error types are user-controlled: cut them so that a header stays below
// MAX_HEADER even when every character takes 6 bytes of JSON.
const MAX_TYPE_CHARS = 8192;
// A request id that can go between quotes as it is.
const PLAIN_ID = /^[0-9A-Za-z._:-]+$/;

// encodeFrame returns a whole frame in one Buffer.
function encodeFrame(type, header, body) {
  const hlen = Buffer.byteLength(header);
  if (hlen > MAX_HEADER) die('frame header of ' + hlen + ' bytes is too long');
  const blen = body === '' ? 0 : Buffer.byteLength(body);
  const buf = Buffer.allocUnsafe(7 + hlen + blen);
  buf.writeUInt32BE(3 + hlen + blen, 0);
  buf[4] = type;
  buf.writeUInt16BE(hlen, 5);
  buf.write(header, 7);
  if (blen !== 0) buf.write(body, 7 + hlen);
  return buf;
}

function typeJSON(errorType) {
  let s = typeof errorType === 'string' ? errorType : String(errorType);
  if (s.length > MAX_TYPE_CHARS) s = s.slice(0, MAX_TYPE_CHARS);
  return JSON.stringify(s);
}

function framedTransport(fdText) {
  const net = require('node:net');

  if (!/^[0-9]+$/.test(fdText)) die('TERN_RUNTIME_FD must be a file descriptor number, got ' + JSON.stringify(fdText));
  const fd = Number(fdText);
  let socket;
  try {
    socket = new net.Socket({ fd, readable: true, writable: true });
  } catch (err) {
    die('cannot use TERN_RUNTIME_FD=' + fdText + ': ' + (err && err.message ? err.message : String(err)));
  }

  let specialized = false;
  // busy: a SPECIALIZE or (with concurrency 1) an INVOKE is being handled.
  // Frames that arrive meanwhile stay buffered until next(). While busy, the
  // socket does not keep the event loop alive, so that 'beforeExit' still
  // tells when the handler's work is done. With concurrency > 1 an INVOKE
  // does not make the transport busy: frames keep being handled as they
  // come, and the socket keeps the process alive.
  let busy = false;
  let exiting = false;
  let exitStatus = 0;
  let idJSON = '""'; // the current request id as a JSON string

  // Received bytes not consumed yet: rxBuf, then the chunks in rxRest (null
  // when none), rxLen bytes in all. They are merged only once rxNeed bytes
  // are there, so a large frame is copied once.
  let rxBuf = null;
  let rxRest = null;
  let rxLen = 0;
  let rxNeed = 4;

  function protocolError(message) {
    die('runtime protocol error: ' + message);
  }

  function onData(chunk) {
    if (rxBuf === null) rxBuf = chunk;
    else if (rxRest === null) rxRest = [chunk];
    else rxRest.push(chunk);
    rxLen += chunk.length;
    if (!busy && rxLen >= rxNeed) drain();
  }

  // drain handles the complete frames received, in order, until one makes
  // the transport busy.
  function drain() {
    while (!busy && rxLen >= 4) {
      if (rxRest !== null) {
        rxRest.unshift(rxBuf);
        rxBuf = Buffer.concat(rxRest, rxLen);
        rxRest = null;
      }
      const buf = rxBuf;
      const n = buf.readUInt32BE(0);
      if (n < 3) protocolError('frame length ' + n + ' is below 3');
      if (rxLen < 7) {
        rxNeed = 7;
        return;
      }
      const h = buf.readUInt16BE(5);
      if (h > n - 3) protocolError('header length ' + h + ' exceeds frame length ' + n + ' - 3');
      const size = n + 4;
      if (rxLen < size) {
        rxNeed = size;
        return;
      }
      if (rxLen === size) {
        rxBuf = null;
        rxLen = 0;
      } else {
        rxBuf = buf.subarray(size);
        rxLen -= size;
      }
      rxNeed = 4;
      dispatch(buf[4], buf, 7 + h, size);
    }
    rxNeed = 4;
  }

  function parseHeader(buf, end) {
    let header;
    try {
      header = JSON.parse(buf.toString('utf8', 7, end));
    } catch (err) {
      protocolError('frame header is not JSON: ' + errorPayload(err).errorMessage);
    }
    if (header === null || typeof header !== 'object' || Array.isArray(header)) {
      protocolError('frame header is not a JSON object');
    }
    return header;
  }

  // dispatch handles one frame: buf[7, bodyStart) is its header,
  // buf[bodyStart, end) its body.
  function dispatch(type, buf, bodyStart, end) {
    if (type === INVOKE) {
      if (!specialized) protocolError('INVOKE before SPECIALIZE');
      const h = parseHeader(buf, bodyStart);
      const id = h.id;
      if (typeof id !== 'string' || id === '') protocolError('INVOKE without an id');
      const json = PLAIN_ID.test(id) ? '"' + id + '"' : JSON.stringify(id);
      if (concurrency === 1) {
        idJSON = json;
        busy = true;
        socket.unref();
        invoke(id, buf.toString('utf8', bodyStart, end), Number(h.deadline), h.arn, h.trace, h.clientContext, h.identity);
        return;
      }
      if (inflight.size >= concurrency) {
        protocolError('INVOKE ' + json + ' while ' + inflight.size + ' invocations are in flight (concurrency ' + concurrency + ')');
      }
      if (inflight.has(id)) protocolError('INVOKE ' + json + ' while an invocation with that id is in flight');
      const inv = { id, idJSON: json, done: false };
      invokeConcurrent(inv, buf.toString('utf8', bodyStart, end), Number(h.deadline), h.arn, h.trace, h.clientContext, h.identity);
      return;
    }
    if (type === SPECIALIZE) {
      if (specialized) protocolError('second SPECIALIZE');
      const h = parseHeader(buf, bodyStart);
      const newEnv = h.env;
      if (newEnv === null || typeof newEnv !== 'object' || Array.isArray(newEnv)) {
        protocolError('SPECIALIZE without an env object');
      }
      if (typeof h.taskRoot !== 'string' || h.taskRoot === '') protocolError('SPECIALIZE without a taskRoot');
      const n = h.concurrency;
      if (n !== undefined && n !== null && !(Number.isSafeInteger(n) && n >= 1)) {
        protocolError('SPECIALIZE concurrency must be an integer >= 1, got ' + JSON.stringify(n));
      }
      if (typeof n === 'number') setConcurrency(n);
      const style = h.style;
      if (style !== undefined && style !== null && style !== 'lambda' && style !== 'http') {
        protocolError('SPECIALIZE style must be "lambda" or "http", got ' + JSON.stringify(style));
      }
      httpStyle = style === 'http';
      if (h.uid !== undefined) becomeUser(h.uid, h.gid);
      specialized = true;
      busy = true;
      socket.unref();
      specialize(typeof h.handler === 'string' ? h.handler : '', h.taskRoot, newEnv);
      return;
    }
    protocolError('unexpected frame type ' + type);
  }

  function next() {
    busy = false;
    socket.ref();
    // Frames that came while busy; not from here, which may be deep inside
    // the handler's completion.
    if (rxLen !== 0) process.nextTick(drain);
  }

  function exit(code) {
    exiting = true;
    busy = true; // take no further frame
    exitStatus = code;
    process.exitCode = code;
    socket.ref();
    socket.end(() => process.exit(code));
  }

  // Tell Tern this process is loaded and can be given a function.
  socket.write(encodeFrame(BOOTED, '{}', ''));
  socket.on('data', onData);
  // Tern closed the socket (it went away or is stopping this instance).
  socket.on('end', () => process.exit(exiting ? exitStatus : 0));
  socket.on('error', (err) => {
    if (exiting) process.exit(exitStatus);
    die('runtime socket: ' + (err && err.code ? err.code + ' ' : '') + (err && err.message ? err.message : String(err)));
  });

  return {
    ready() {
      socket.write(encodeFrame(READY, '{}', ''));
      next();
    },
    next,
    respond(body) {
      socket.write(encodeFrame(RESPONSE, '{"id":' + idJSON + '}', body));
      answered();
    },
    fail(errorType, body) {
      // fatal: this process exits after the answer (an uncaught error), so
      // Tern must not hand it another event.
      const fatal = exitAfterPost ? ',"fatal":true' : '';
      socket.write(encodeFrame(ERROR, '{"id":' + idJSON + ',"type":' + typeJSON(errorType) + fatal + '}', body));
      answered();
    },
    respondTo(inv, body) {
      socket.write(encodeFrame(RESPONSE, '{"id":' + inv.idJSON + '}', body));
    },
    failTo(inv, errorType, body, fatal) {
      const extra = fatal ? ',"fatal":true}' : '}';
      socket.write(encodeFrame(ERROR, '{"id":' + inv.idJSON + ',"type":' + typeJSON(errorType) + extra, body));
    },
    initError(errorType, body) {
      socket.write(encodeFrame(INIT_ERROR, '{"type":' + typeJSON(errorType) + '}', body));
      exit(1);
    },
    exit,
  };
}

// ---------------------------------------------------------------------------
// Process-level hooks.

// The event loop drained. A callback-style completion that waited for this is
// sent now; an invocation that never completed (a handler that returned
// without calling its callback) succeeds with null, as on Lambda. Sending
// makes the loop busy again, so the process keeps running.
process.on('beforeExit', () => {
  if (state === WAITING) finish(waitingIsError, waitingValue);
  else if (state === RUNNING) {
    // An HTTP-style handler that is done without sending a response failed.
    if (httpStyle) postInvocationError(noResponse(), 'Invoke Error');
    else finish(false, undefined);
  }
});

function onFatal(err, rejection) {
  const payload = rejection && !isError(err)
    ? { errorType: 'Runtime.UnhandledPromiseRejection', errorMessage: describe(err), stackTrace: [] }
    : errorPayload(err);
  const label = rejection ? 'Unhandled Promise Rejection' : 'Uncaught Exception';
  if (phase === INITIALIZING) {
    sendInitError(payload);
    return;
  }
  if (concurrency > 1) {
    fatalConcurrent(payload, label);
    return;
  }
  if (state === RUNNING || state === WAITING) {
    exitAfterPost = true;
    postInvocationError(payload, label);
    return;
  }
  stderr.write(label + ' \t' + JSON.stringify(payload) + '\n');
  if (state === POSTING) {
    exitAfterPost = true; // let the answer in flight go out, then exit
    return;
  }
  process.exit(1);
}

process.on('uncaughtException', (err) => onFatal(err, false));
process.on('unhandledRejection', (reason) => onFatal(reason, true));

if (env.TERN_RUNTIME_FD !== undefined) {
  transport = framedTransport(env.TERN_RUNTIME_FD);
} else {
  transport = httpTransport();
  initialize(env._HANDLER, path.resolve(env.LAMBDA_TASK_ROOT || process.cwd()));
}
