'use strict';
// Baseline for bench/coldwarm: the same handler module as bench/hello, served
// by a plain node:http server in one process, with no platform in between.
// Usage: node server.js PORT   (listens on 127.0.0.1:PORT)
//        node server.js fd:N   (serves an inherited listening socket, fd N;
//                               bench/suite's burst baseline uses fd:3)
//
// Per request it builds a minimal function-URL-shaped event, awaits the
// handler and writes its statusCode, headers and body.

const http = require('node:http');
const path = require('node:path');

const { handler } = require(path.join(__dirname, '..', 'hello', 'index.js'));
const arg = process.argv[2] || process.env.PORT || '8081';

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    const q = req.url.indexOf('?');
    const rawPath = q < 0 ? req.url : req.url.slice(0, q);
    const event = {
      version: '2.0',
      rawPath,
      rawQueryString: q < 0 ? '' : req.url.slice(q + 1),
      headers: req.headers,
      requestContext: { http: { method: req.method, path: rawPath } },
      body: chunks.length ? Buffer.concat(chunks).toString() : undefined,
      isBase64Encoded: false,
    };
    try {
      const r = await handler(event, {});
      res.writeHead(r.statusCode || 200, r.headers || {});
      res.end(r.body === undefined ? '' : String(r.body));
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err && err.stack ? err.stack : err));
    }
  });
});

if (arg.startsWith('fd:')) {
  server.listen({ fd: Number(arg.slice(3)) });
} else {
  server.listen(Number(arg), '127.0.0.1');
}
