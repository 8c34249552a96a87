// Preloaded with `node --require ./force-loopback.cjs ...`.
// server-everything calls `app.listen(PORT)` with no host, which binds every
// interface. This patch makes any listen() call that names a TCP port but no
// host bind to 127.0.0.1 only (override with WARDEN_E2E_BIND_HOST).
"use strict";
const net = require("node:net");
const HOST = process.env.WARDEN_E2E_BIND_HOST || "127.0.0.1";
const origListen = net.Server.prototype.listen;
function isPort(v) {
  return typeof v === "number" || (typeof v === "string" && v !== "" && !Number.isNaN(Number(v)));
}
net.Server.prototype.listen = function (...args) {
  if (args.length > 0 && isPort(args[0]) && (args.length === 1 || typeof args[1] !== "string")) {
    args.splice(1, 0, HOST);
  } else if (args.length > 0 && args[0] !== null && typeof args[0] === "object" && !Array.isArray(args[0])
             && args[0].port !== undefined && args[0].host === undefined && args[0].path === undefined) {
    args[0] = { ...args[0], host: HOST };
  }
  return origListen.apply(this, args);
};
