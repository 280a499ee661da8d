'use strict';
// Tern Node.js bootstrap: a Lambda runtime client for the AWS Lambda Runtime API
// (2018-06-01) served by Tern on loopback. Started as `node bootstrap.cjs`, one
// process per function instance. Node.js built-ins only. See doc.go.

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');
const { pathToFileURL } = require('node:url');

const env = process.env;
const stdout = process.stdout;
const stderr = process.stderr;

function die(message) {
  stderr.write('tern bootstrap: ' + message + '\n');
  process.exit(1);
}

// ---------------------------------------------------------------------------
// Runtime API endpoint and HTTP plumbing.

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

// Calls are strictly sequential, so one kept-alive socket is enough. The agent
// unrefs idle sockets, so it never keeps the event loop alive by itself.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

// http.request copies its options, so this object is reused for every poll.
// No timeout: /next is a long poll that returns when an event arrives.
const NEXT_OPTIONS = { agent, host: apiHost, port: apiPort, method: 'GET', path: INVOCATION_PREFIX + 'next' };

function apiFailure(err) {
  die('Runtime API request failed: ' + (err && err.code ? err.code + ' ' : '') + (err && err.message ? err.message : String(err)));
}

// send performs one Runtime API call. onDone(res, body) gets the body as a
// Buffer when collect is true (null otherwise). A connection-level failure
// is fatal (Tern is gone), except that a reset on a reused keep-alive socket
// (the server closed it while idle) is retried once on a fresh connection.
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

// ---------------------------------------------------------------------------
// Logging: each console call is one line on stdout:
//   <ISO time>\t<request id>\t<LEVEL>\t<message with \n replaced by \r>\n
// process.stdout writes to pipes and files are synchronous on Linux, so log
// lines are out before the response is posted.

let logRequestId = 'undefined';

function writeLog(tag, message) {
  if (message.indexOf('\n') !== -1) message = message.replaceAll('\n', '\r');
  stdout.write(new Date().toISOString() + '\t' + logRequestId + tag + message + '\n');
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

async function loadHandler() {
  const name = env._HANDLER;
  const taskRoot = path.resolve(env.LAMBDA_TASK_ROOT || process.cwd());
  if (!name) throw new InitFailure('Runtime.MalformedHandlerName', 'Bad handler: _HANDLER is not set');
  const slash = name.lastIndexOf('/');
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
  // An ES module namespace of CommonJS code has module.exports as default.
  if (esm && typeof fn !== 'function') {
    const def = exportsRoot.default;
    if (def !== undefined && def !== null) {
      const alt = lookup(def, parts);
      if (alt !== undefined) fn = alt;
    }
  }
  if (fn === undefined || fn === null) {
    throw new InitFailure('Runtime.HandlerNotFound', name + ' is undefined or not exported');
  }
  if (typeof fn !== 'function') {
    throw new InitFailure('Runtime.HandlerNotFound', name + ' is not a function');
  }
  return fn;
}

// ---------------------------------------------------------------------------
// Invocation state.

const IDLE = 0; // polling /next
const RUNNING = 1; // handler running, no completion yet
const WAITING = 2; // callback called, waiting for the event loop to drain
const POSTING = 3; // result or error being posted

let initializing = true;
let initErrorSent = false;
let handler = null;
let state = IDLE;
let generation = 0;
let currentId = '';
let currentPath = '';
let waitingIsError = false;
let waitingValue;
let exitAfterPost = false;

const FUNCTION_NAME = env.AWS_LAMBDA_FUNCTION_NAME;
const FUNCTION_VERSION = env.AWS_LAMBDA_FUNCTION_VERSION || '$LATEST';
const MEMORY_SIZE = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE || '128';
const LOG_GROUP = env.AWS_LAMBDA_LOG_GROUP_NAME;
const LOG_STREAM = env.AWS_LAMBDA_LOG_STREAM_NAME;

function postInitError(payload) {
  if (initErrorSent) return;
  initErrorSent = true;
  logError('Uncaught Exception', payload);
  post(INIT_ERROR_PATH, errorHeaders(payload.errorType), JSON.stringify(payload), () => process.exit(1));
}

function next() {
  send(NEXT_OPTIONS, undefined, true, onNext, false);
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
  state = IDLE;
  if (exitAfterPost) process.exit(1);
  next();
}

function postInvocationError(payload, label) {
  state = POSTING;
  waitingValue = undefined;
  logError(label, payload);
  post(currentPath + 'error', errorHeaders(payload.errorType), JSON.stringify(payload), afterPost);
}

function finish(isError, value) {
  if (isError) {
    postInvocationError(errorPayload(value), 'Invoke Error');
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
  post(currentPath + 'response', undefined, body === undefined ? 'null' : body, afterPost);
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

function onNext(res, body) {
  if (res.statusCode !== 200) die('Runtime API answered ' + res.statusCode + ' to invocation/next; exiting');
  const h = res.headers;
  const id = h['lambda-runtime-aws-request-id'];
  if (typeof id !== 'string' || id === '') die('invocation/next response has no Lambda-Runtime-Aws-Request-Id');

  const gen = ++generation;
  currentId = id;
  currentPath = INVOCATION_PREFIX + encodeURIComponent(id) + '/';
  logRequestId = id;
  state = RUNNING;

  const traceId = h['lambda-runtime-trace-id'];
  if (traceId) env._X_AMZN_TRACE_ID = traceId;
  else delete env._X_AMZN_TRACE_ID;

  let event;
  try {
    event = JSON.parse(body.toString('utf8'));
  } catch (err) {
    postInvocationError(
      { errorType: 'Runtime.InvalidEvent', errorMessage: 'invalid event JSON: ' + errorPayload(err).errorMessage, stackTrace: [] },
      'Invoke Error',
    );
    return;
  }

  const deadline = Number(h['lambda-runtime-deadline-ms']);
  const context = {
    awsRequestId: id,
    functionName: FUNCTION_NAME,
    functionVersion: FUNCTION_VERSION,
    memoryLimitInMB: MEMORY_SIZE,
    invokedFunctionArn: h['lambda-runtime-invoked-function-arn'],
    logGroupName: LOG_GROUP,
    logStreamName: LOG_STREAM,
    clientContext: parseJSONHeader(h['lambda-runtime-client-context']),
    identity: parseJSONHeader(h['lambda-runtime-cognito-identity']),
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis() {
      const left = deadline - Date.now();
      return left > 0 ? left : 0;
    },
    done(err, result) {
      if (err !== undefined && err !== null) complete(gen, true, err, false);
      else complete(gen, false, result, false);
    },
    succeed(result) {
      complete(gen, false, result, false);
    },
    fail(err) {
      complete(gen, true, err, false);
    },
  };
  const callback = (err, result) => {
    if (err !== undefined && err !== null) complete(gen, true, err, context.callbackWaitsForEmptyEventLoop);
    else complete(gen, false, result, context.callbackWaitsForEmptyEventLoop);
  };

  let returned;
  try {
    returned = handler(event, context, callback);
  } catch (err) {
    complete(gen, true, err, false);
    return;
  }
  if (returned !== null && (typeof returned === 'object' || typeof returned === 'function')) {
    try {
      const then = returned.then;
      if (typeof then === 'function') {
        then.call(
          returned,
          (result) => complete(gen, false, result, false),
          (err) => complete(gen, true, err, false),
        );
      }
    } catch (err) {
      complete(gen, true, err, false);
    }
  }
}

// ---------------------------------------------------------------------------
// Process-level hooks.

// The event loop drained. A callback-style completion that waited for this is
// posted now; an invocation that never completed (a handler that returned
// without calling its callback) succeeds with null, as on Lambda. Posting
// makes the loop busy again, so the process keeps running.
process.on('beforeExit', () => {
  if (state === WAITING) finish(waitingIsError, waitingValue);
  else if (state === RUNNING) finish(false, undefined);
});

function onFatal(err, rejection) {
  const payload = rejection && !isError(err)
    ? { errorType: 'Runtime.UnhandledPromiseRejection', errorMessage: describe(err), stackTrace: [] }
    : errorPayload(err);
  const label = rejection ? 'Unhandled Promise Rejection' : 'Uncaught Exception';
  if (initializing) {
    postInitError(payload);
    return;
  }
  if (state === RUNNING || state === WAITING) {
    exitAfterPost = true;
    postInvocationError(payload, label);
    return;
  }
  stderr.write(label + ' \t' + JSON.stringify(payload) + '\n');
  if (state === POSTING) {
    exitAfterPost = true; // let the post in flight finish, then exit
    return;
  }
  process.exit(1);
}

process.on('uncaughtException', (err) => onFatal(err, false));
process.on('unhandledRejection', (reason) => onFatal(reason, true));

loadHandler().then(
  (fn) => {
    if (initErrorSent) return;
    handler = fn;
    initializing = false;
    next();
  },
  (err) => postInitError(classifyLoadError(err)),
);
