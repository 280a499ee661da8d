// Runtime http: a plain Node.js HTTP server. Tern starts it with $PORT set
// and proxies /fn/NAME/... to it with the /fn/NAME prefix removed.
const http = require("http");

http
  .createServer((req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ example: "http-node", method: req.method, url: req.url }));
  })
  .listen(Number(process.env.PORT), "127.0.0.1");
