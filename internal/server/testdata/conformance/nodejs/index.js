// The conformance protocol (see ../README.md) as a Lambda-style handler.
const crypto = require("crypto");

exports.handler = async (event) => {
  switch (event.rawPath) {
    case "/echo": {
      const h = event.headers || {};
      const q = event.queryStringParameters || {};
      const body = Buffer.from(event.body || "", event.isBase64Encoded ? "base64" : "utf8");
      const desc = {
        method: event.requestContext.http.method,
        path: event.rawPath,
        rawQuery: event.rawQueryString,
        query: "a" in q ? [q.a] : [],
        multi: "x-multi" in h ? [h["x-multi"]] : [],
        single: h["x-single"] || "",
        contentType: h["content-type"] || "",
        cookies: event.cookies || [],
        bodyLen: body.length,
        sha256: crypto.createHash("sha256").update(body).digest("hex"),
        base64: event.isBase64Encoded === true,
      };
      return { statusCode: 200, headers: { "content-type": "application/json" }, body: JSON.stringify(desc) };
    }
    case "/binary": {
      const b = Buffer.alloc(256);
      for (let i = 0; i < 256; i++) b[i] = i;
      return { statusCode: 200, headers: { "content-type": "application/octet-stream" }, body: b.toString("base64"), isBase64Encoded: true };
    }
    case "/cookies":
      return { statusCode: 200, cookies: ["c1=v1; Path=/", "c2=v2; HttpOnly"], body: "{}" };
    case "/text":
      return { statusCode: 200, headers: { "content-type": "text/plain" }, body: "plain text, not JSON" };
    case "/status-only":
      return { statusCode: 204 };
    case "/plain":
      return "just a string";
  }
  return { statusCode: 404, body: "no such path" };
};
