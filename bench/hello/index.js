// The hello-world handler used by bench/coldwarm, both on Tern and behind the
// plain Node.js baseline server (bench/baseline/server.js).
exports.handler = async (event) => ({statusCode: 200, headers: {"content-type": "text/plain"}, body: "hello"})
