#!/usr/bin/env node
// Launch @modelcontextprotocol/server-everything over HTTP, bound to loopback
// only, and print a machine-readable ready line.
//
// Usage: node start-everything.mjs [--sse] [PORT] [HOST]
//   --sse      the legacy HTTP+SSE transport (MCP 2024-11-05) instead of
//              Streamable HTTP (also: $TRANSPORT=sse)
//   PORT defaults to $PORT or 3001; 0 picks a free ephemeral port.
//   HOST defaults to $HOST or 127.0.0.1 (must be a loopback address).
// Prints to stdout, once listening (and nothing else on stdout):
//   READY http://HOST:PORT/mcp       (Streamable HTTP)
//   READY http://HOST:PORT/sse       (--sse: the event stream; the server
//                                     names its POST endpoint, /message?sessionId=...,
//                                     in the stream's first event)
//
// Why a launcher: server-everything's streamableHttp and sse modes call
// `app.listen(PORT)` with no host, i.e. they bind every interface. We patch
// net.Server.prototype.listen before importing it so the socket is bound to
// loopback only, and we learn the real port (needed for PORT=0).
import net from "node:net";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const positional = [];
let mode = process.env.TRANSPORT === "sse" ? "sse" : "streamableHttp";
for (const a of process.argv.slice(2)) {
  if (a === "--sse") mode = "sse";
  else if (a === "--streamable-http") mode = "streamableHttp";
  else if (a.startsWith("--")) {
    console.error(`start-everything: unknown option ${a}`);
    process.exit(2);
  } else positional.push(a);
}
const port = positional[0] ?? process.env.PORT ?? "3001";
const host = positional[1] ?? process.env.HOST ?? "127.0.0.1";
if (!/^\d+$/.test(String(port))) {
  console.error(`start-everything: bad port ${port}`);
  process.exit(2);
}
if (!(host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host))) {
  console.error(`start-everything: refusing non-loopback host ${host}`);
  process.exit(2);
}
// server-everything reads `process.env.PORT || 3001`; "0" is truthy, so 0 works.
process.env.PORT = String(port);
const path = mode === "sse" ? "/sse" : "/mcp";

const origListen = net.Server.prototype.listen;
let patched = false;
net.Server.prototype.listen = function (...args) {
  if (!patched && (typeof args[0] === "number" || typeof args[0] === "string") &&
      /^\d+$/.test(String(args[0]))) {
    patched = true;
    const p = Number(args[0]);
    const cb = args.find((a) => typeof a === "function");
    this.once("listening", () => {
      const a = this.address();
      const h = a.family === "IPv6" ? `[${a.address}]` : a.address;
      process.stdout.write(`READY http://${h}:${a.port}${path}\n`);
    });
    return cb ? origListen.call(this, p, host, cb) : origListen.call(this, p, host);
  }
  return origListen.apply(this, args);
};

const require = createRequire(import.meta.url);
const pkgJson = require.resolve("@modelcontextprotocol/server-everything/package.json");
const entry = new URL(`dist/transports/${mode}.js`, pathToFileURL(pkgJson));

// Keep stdout for the READY line only: the server's own console.log chatter
// ("Received MCP POST request", ...) goes to stderr.
console.log = (...a) => console.error(...a);

const stop = () => process.exit(0);
process.on("SIGTERM", stop);
await import(entry.href);
