// The conformance protocol (see ../README.md) as a plain node HTTP server
// (runtime: http): it sees the request as proxied, repeated headers and
// query parameters as separate values.
const http = require("http");
const crypto = require("crypto");

http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const url = new URL(req.url, "http://localhost");
    switch (url.pathname) {
      case "/echo": {
        const body = Buffer.concat(chunks);
        const multi = [];
        for (let i = 0; i < req.rawHeaders.length; i += 2) {
          if (req.rawHeaders[i].toLowerCase() === "x-multi") multi.push(req.rawHeaders[i + 1]);
        }
        const desc = {
          method: req.method,
          path: url.pathname,
          rawQuery: url.search.replace(/^\?/, ""),
          query: url.searchParams.getAll("a"),
          multi,
          single: req.headers["x-single"] || "",
          contentType: req.headers["content-type"] || "",
          cookies: (req.headers.cookie || "").split(/;\s*/).filter((c) => c !== ""),
          bodyLen: body.length,
          sha256: crypto.createHash("sha256").update(body).digest("hex"),
          base64: false,
        };
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(desc));
        return;
      }
      case "/binary": {
        const b = Buffer.alloc(256);
        for (let i = 0; i < 256; i++) b[i] = i;
        res.writeHead(200, { "content-type": "application/octet-stream" });
        res.end(b);
        return;
      }
      case "/cookies":
        res.setHeader("Set-Cookie", ["c1=v1; Path=/", "c2=v2; HttpOnly"]);
        res.writeHead(200, { "content-type": "application/json" });
        res.end("{}");
        return;
      case "/text":
        res.writeHead(200, { "content-type": "text/plain" });
        res.end("plain text, not JSON");
        return;
      case "/status-only":
        res.writeHead(204);
        res.end();
        return;
    }
    res.writeHead(404);
    res.end("no such path");
  });
}).listen(Number(process.env.PORT), "127.0.0.1");
