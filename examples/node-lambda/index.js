// A Lambda-style Node.js handler (CommonJS). Called through /fn/NAME the
// event is a function URL request (payload 2.0).
exports.handler = async (event, context) => ({
  statusCode: 200,
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ example: "node-lambda", function: context.functionName, path: event.rawPath ?? null }),
});
