// A Lambda-style handler in an ES module: index.mjs is loaded with import().
import { release } from "node:os";

export const handler = async (event) => ({
  statusCode: 200,
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ example: "node-esm", module: "esm", kernel: release(), path: event.rawPath ?? null }),
});
