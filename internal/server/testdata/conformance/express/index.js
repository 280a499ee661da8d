// The conformance protocol (see ../README.md) as an Express-style handler
// (runtime: nodejs, style: http).
const crypto = require("crypto");

module.exports = (req, res) => {
  switch (req.path) {
    case "/echo": {
      const body = Buffer.isBuffer(req.rawBody) ? req.rawBody : Buffer.alloc(0);
      const desc = {
        method: req.method,
        path: req.path,
        rawQuery: req.url.includes("?") ? req.url.slice(req.url.indexOf("?") + 1) : "",
        query: "a" in req.query ? [].concat(req.query.a) : [],
        multi: req.get("x-multi") !== undefined ? [].concat(req.get("x-multi")) : [],
        single: req.get("x-single") || "",
        contentType: req.get("content-type") || "",
        cookies: (req.headers.cookie || "").split(/;\s*/).filter((c) => c !== ""),
        bodyLen: body.length,
        sha256: crypto.createHash("sha256").update(body).digest("hex"),
        base64: false,
      };
      return res.json(desc);
    }
    case "/binary": {
      const b = Buffer.alloc(256);
      for (let i = 0; i < 256; i++) b[i] = i;
      return res.set("Content-Type", "application/octet-stream").send(b);
    }
    case "/cookies":
      return res.append("Set-Cookie", "c1=v1; Path=/").append("Set-Cookie", "c2=v2; HttpOnly").json({});
    case "/text":
      return res.type("text/plain").send("plain text, not JSON");
    case "/status-only":
      return res.status(204).end();
  }
  return res.status(404).send("no such path");
};
