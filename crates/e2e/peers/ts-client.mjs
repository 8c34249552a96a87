#!/usr/bin/env node
// End-to-end MCP client built on the official TypeScript SDK
// (@modelcontextprotocol/sdk, StreamableHTTPClientTransport).
//
// Usage:
//   node ts-client.mjs URL [--expect-refused a,b] [--expect-listed c,d]
//                          [--timeout SECONDS] [--verbose] [--sse]
//                          [--stdio CMD ARGS...]
//
// Exercises an MCP server (server-everything, directly or behind Warden) over
// Streamable HTTP (or, with --sse, the legacy HTTP+SSE transport at URL; with
// --stdio, a server it launches). Every check prints one line, `ok <check>` or
// `FAIL <check>: <detail>` (or `skip <check>: <reason>`, not counted), and the
// run ends with `N passed, M failed`. Exit code is 0 only if nothing failed.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { randomUUID } from "node:crypto";

// ---------------------------------------------------------------- arguments
function usage(msg) {
  if (msg) console.error(`ts-client: ${msg}`);
  console.error(
    "usage: node ts-client.mjs URL [--expect-refused a,b] [--expect-listed c,d] [--timeout SECONDS] [--verbose] [--sse] [--stdio CMD ARGS...]",
  );
  process.exit(2);
}
const argv = process.argv.slice(2);
let url;
let expectRefused = [];
let expectListed = [];
let timeoutS = 20;
let verbose = false;
// `--sse`: URL is a legacy HTTP+SSE (2024-11-05) event stream, not a
// Streamable HTTP endpoint (for running the checks against server-everything
// directly in its sse mode).
let sse = false;
// `--stdio CMD ARGS...` (last): launch CMD as a stdio MCP server instead of URL.
let stdioCommand;
const splitList = (v) => (v ?? "").split(",").map((s) => s.trim()).filter(Boolean);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const eq = a.indexOf("=");
  const key = a.startsWith("--") && eq > 0 ? a.slice(0, eq) : a;
  const val = () => (a.startsWith("--") && eq > 0 ? a.slice(eq + 1) : argv[++i]);
  if (key === "--expect-refused") expectRefused.push(...splitList(val()));
  else if (key === "--expect-listed") expectListed.push(...splitList(val()));
  else if (key === "--timeout") timeoutS = Number(val());
  else if (key === "--verbose" || key === "-v") verbose = true;
  else if (key === "--sse") sse = true;
  else if (key === "--stdio") {
    stdioCommand = argv.slice(i + 1);
    url = "stdio";
    break;
  }
  else if (key === "--help" || key === "-h") usage();
  else if (a.startsWith("--")) usage(`unknown option ${a}`);
  else if (!url) url = a;
  else usage(`unexpected argument ${a}`);
}
if (!url) usage("missing URL");
if (!(timeoutS > 0)) usage("bad --timeout");
const T = Math.round(timeoutS * 1000);
const refused = new Set(expectRefused);

// ---------------------------------------------------------------- tool names
// Names as listed by @modelcontextprotocol/server-everything 2026.8.31.
const TOOL = {
  echo: "echo",
  sum: "get-sum",
  long: "trigger-long-running-operation",
  sampling: "trigger-sampling-request",
  elicitation: "trigger-elicitation-request",
  roots: "get-roots-list",
};
// Arguments to use when calling a tool that is expected to be refused, so that
// if the proxy wrongly forwards it the upstream call is at least well formed.
const DEFAULT_ARGS = {
  echo: { message: "should be refused" },
  "get-sum": { a: 1, b: 2 },
  "trigger-long-running-operation": { duration: 1, steps: 1 },
  "trigger-sampling-request": { prompt: "should be refused", maxTokens: 5 },
  "gzip-file-as-resource": { name: "refused.gz", data: "data:text/plain,refused" },
  "get-resource-reference": { resourceType: "Text", resourceId: 1 },
  "get-resource-links": { count: 1 },
  "get-annotated-message": { messageType: "success" },
  "toggle-simulated-logging": {},
};

// ---------------------------------------------------------------- reporting
let passed = 0;
let failed = 0;
const line = (s) => process.stdout.write(s + "\n");
const debug = (...a) => { if (verbose) console.error("[debug]", ...a); };
class Skip extends Error {}
class Timeout extends Error {}
const oneLine = (s) => String(s).replace(/\s+/g, " ").slice(0, 400);

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Timeout(`timed out after ${ms} ms${what ? ` (${what})` : ""}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function check(name, fn) {
  try {
    await withTimeout(Promise.resolve().then(fn), T + 5000, name);
    passed++;
    line(`ok ${name}`);
    return true;
  } catch (e) {
    if (e instanceof Skip) {
      line(`skip ${name}: ${e.message}`);
      return null;
    }
    failed++;
    line(`FAIL ${name}: ${oneLine((e?.message ?? String(e)) + (e?.cause ? ` (${e.cause.code ?? e.cause.message ?? e.cause})` : ""))}`);
    if (verbose && e?.stack) console.error(e.stack);
    return false;
  }
}
const assert = (cond, msg) => { if (!cond) throw new Error(msg); };
const needTool = (t) => { if (refused.has(t)) throw new Skip(`${t} is expected to be refused`); };
const textOf = (result) =>
  (result?.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
const errText = (e) => `${e?.constructor?.name ?? "Error"}${e?.code !== undefined ? ` ${e.code}` : ""}: ${e?.message ?? e}${e?.cause ? ` (${e.cause.code ?? e.cause.message ?? e.cause})` : ""}`;

// ---------------------------------------------------------------- client
const nonce = randomUUID().slice(0, 8);
const ROOT_URI = `file:///tmp/warden-e2e-root-${nonce}`;
const seen = { sampling: [], elicitation: [], roots: 0 };
const wire = { out: [], in: [] }; // raw JSON-RPC traffic, after connect

const client = new Client(
  { name: "warden-e2e-ts-client", version: "0.1.0" },
  {
    capabilities: {
      sampling: {},
      elicitation: { form: {} },
      roots: { listChanged: true },
    },
  },
);
const clientErrors = [];
client.onerror = (e) => { clientErrors.push(e); debug("client error:", e?.message ?? e); };

client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
  seen.sampling.push(req.params);
  debug("sampling/createMessage", JSON.stringify(req.params));
  return {
    role: "assistant",
    content: { type: "text", text: `warden-e2e sampled answer ${nonce}` },
    model: "warden-e2e-stub-model",
    stopReason: "endTurn",
  };
});
client.setRequestHandler(ElicitRequestSchema, async (req) => {
  seen.elicitation.push(req.params);
  debug("elicitation/create", req.params?.message);
  return {
    action: "accept",
    content: {
      name: `Warden E2E ${nonce}`,
      check: true,
      email: "e2e@example.com",
      integer: 7,
      number: 2.5,
      untitledSingleSelectEnum: "Joey",
    },
  };
});
client.setRequestHandler(ListRootsRequestSchema, async () => {
  seen.roots++;
  debug("roots/list");
  return { roots: [{ uri: ROOT_URI, name: "warden-e2e-root" }] };
});

const transport = stdioCommand
  ? new StdioClientTransport({ command: stdioCommand[0], args: stdioCommand.slice(1), stderr: "inherit" })
  : sse
    ? new SSEClientTransport(new URL(url))
    : new StreamableHTTPClientTransport(new URL(url));
// The HTTP session checks (Mcp-Session-Id, DELETE) apply to Streamable HTTP only.
const streamableHttp = !stdioCommand && !sse;
const reqOpts = (extra = {}) => ({ timeout: T, ...extra });

let tools = [];
let listedNames = new Set();
let connected = false;

async function main() {
  // ------------------------------------------------------------ initialize
  await check("initialize", async () => {
    await withTimeout(client.connect(transport, { timeout: T }), T, "connect");
    connected = true;
    const sv = client.getServerVersion();
    const caps = client.getServerCapabilities();
    assert(sv?.name, "no serverInfo in initialize result");
    assert(caps?.tools, "server did not announce the tools capability");
    if (streamableHttp) assert(transport.sessionId, "no Mcp-Session-Id assigned");
    debug("server", JSON.stringify(sv), "protocol", transport.protocolVersion, "session", transport.sessionId);
  });
  if (!connected) return;

  // Tap the wire (after connect: Protocol.connect installs its own onmessage).
  const origOnMessage = transport.onmessage;
  transport.onmessage = (msg, extra) => { wire.in.push({ t: Date.now(), msg }); origOnMessage?.(msg, extra); };
  const origSend = transport.send.bind(transport);
  transport.send = (msg, opts) => { wire.out.push({ t: Date.now(), msg }); return origSend(msg, opts); };

  // ------------------------------------------------------------ tools/list
  await check("tools-list", async () => {
    tools = [];
    let cursor;
    for (let page = 0; page < 50; page++) {
      const r = await client.listTools(cursor ? { cursor } : {}, reqOpts());
      tools.push(...r.tools);
      cursor = r.nextCursor;
      if (!cursor) break;
    }
    listedNames = new Set(tools.map((t) => t.name));
    assert(tools.length > 0, "tools/list is empty");
    debug("tools:", [...listedNames].join(","));
  });

  // Tools this client relies on; sampling/elicitation/roots tools are only
  // listed by server-everything when the client declared those capabilities,
  // so their presence also proves the capabilities reached the upstream.
  await check("tools-list-baseline", async () => {
    const want = Object.values(TOOL).filter((n) => !refused.has(n));
    const missing = want.filter((n) => !listedNames.has(n));
    assert(missing.length === 0, `missing from tools/list: ${missing.join(",")}`);
  });
  for (const n of expectListed) {
    await check(`expect-listed ${n}`, async () => {
      assert(listedNames.has(n), `${n} not in tools/list`);
    });
  }
  for (const n of expectRefused) {
    await check(`refused-not-listed ${n}`, async () => {
      assert(!listedNames.has(n), `${n} is present in tools/list`);
    });
    await check(`refused-call ${n}`, async () => {
      let r;
      try {
        r = await client.callTool({ name: n, arguments: DEFAULT_ARGS[n] ?? {} }, undefined, reqOpts());
      } catch (e) {
        throw new Error(`call raised instead of returning a refusal result: ${errText(e)}`);
      }
      // Describe a non-refusal without dumping its content (a tool such as
      // get-env returns the upstream's environment).
      const shape = () => `isError=${JSON.stringify(r.isError)}, structuredContent keys=${JSON.stringify(Object.keys(r.structuredContent ?? {}))}, ${(r.content ?? []).length} content item(s)`;
      assert(r.isError === true, `not an error result (${shape()})`);
      const d = r.structuredContent?.warden?.decision;
      assert(d !== undefined && d !== null, `structuredContent.warden.decision missing (${shape()})`);
      debug(`refusal for ${n}:`, JSON.stringify(r.structuredContent));
    });
  }

  // ------------------------------------------------------------ simple calls
  await check("call-echo", async () => {
    needTool(TOOL.echo);
    const msg = `hello warden ${nonce}`;
    const r = await client.callTool({ name: TOOL.echo, arguments: { message: msg } }, undefined, reqOpts());
    assert(!r.isError, `isError: ${textOf(r)}`);
    assert(textOf(r).includes(msg), `echo text was ${JSON.stringify(textOf(r))}`);
  });
  await check("call-get-sum", async () => {
    needTool(TOOL.sum);
    const r = await client.callTool({ name: TOOL.sum, arguments: { a: 19, b: 23 } }, undefined, reqOpts());
    assert(!r.isError, `isError: ${textOf(r)}`);
    assert(/\b42\b/.test(textOf(r)), `sum text was ${JSON.stringify(textOf(r))}`);
  });

  // ------------------------------------------------------------ progress
  await check("progress", async () => {
    needTool(TOOL.long);
    const events = [];
    const r = await client.callTool(
      { name: TOOL.long, arguments: { duration: 1, steps: 3 } },
      undefined,
      reqOpts({ onprogress: (p) => events.push(p) }),
    );
    assert(!r.isError, `isError: ${textOf(r)}`);
    assert(/completed/i.test(textOf(r)), `unexpected result ${JSON.stringify(textOf(r))}`);
    assert(events.length >= 1, "no notifications/progress received");
    assert(events.every((p) => typeof p.progress === "number"), "progress without numeric progress");
    debug("progress events", JSON.stringify(events));
  });

  // ------------------------------------------------------------ cancellation
  // Start a ~3.5 s call with a progress token, abort it after the first
  // progress notification, and check: the call rejects promptly, the SDK put
  // notifications/cancelled for that request id on the wire, the session still
  // serves calls, and (later, after the operation would have finished) no
  // response for the cancelled id ever arrives (the upstream SDK drops the
  // response of a request it saw cancelled; a proxy that loses the cancel lets
  // the result through).
  const CANCEL_DURATION = 3.5;
  let cancelledId;
  let cancelStart;
  const cancelOk = await check("cancel", async () => {
    needTool(TOOL.long);
    const ac = new AbortController();
    let gotProgress;
    const firstProgress = new Promise((r) => (gotProgress = r));
    cancelStart = Date.now();
    const p = client.callTool(
      { name: TOOL.long, arguments: { duration: CANCEL_DURATION, steps: 7 } },
      undefined,
      reqOpts({ signal: ac.signal, onprogress: () => gotProgress() }),
    );
    p.catch(() => {});
    await withTimeout(Promise.race([firstProgress, p]), Math.min(T, 10000), "waiting for first progress before cancelling")
      .catch((e) => { if (!(e instanceof Timeout)) throw e; });
    const sent = wire.out.find((w) => w.msg.method === "tools/call" && w.msg.params?.arguments?.duration === CANCEL_DURATION);
    assert(sent, "could not find the outgoing tools/call on the wire");
    cancelledId = sent.msg.id;
    ac.abort("warden-e2e cancel");
    let outcome;
    try {
      const r = await withTimeout(p, 5000, "call did not settle after abort");
      outcome = `resolved: ${oneLine(JSON.stringify(r))}`;
    } catch (e) {
      if (e instanceof Timeout) throw e;
      outcome = null;
      debug("cancelled call rejected with", errText(e));
    }
    assert(outcome === null, `call was not cancelled, it ${outcome}`);
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline &&
      !wire.out.some((w) => w.msg.method === "notifications/cancelled" && w.msg.params?.requestId === cancelledId)) {
      await sleep(50);
    }
    assert(
      wire.out.some((w) => w.msg.method === "notifications/cancelled" && w.msg.params?.requestId === cancelledId),
      `no notifications/cancelled sent for request ${cancelledId}`,
    );
  });
  await check("cancel-session-usable", async () => {
    const t = !refused.has(TOOL.echo) ? TOOL.echo : !refused.has(TOOL.sum) ? TOOL.sum : null;
    if (!t) throw new Skip("echo and get-sum are both expected to be refused");
    const args = t === TOOL.echo ? { message: `after cancel ${nonce}` } : { a: 1, b: 1 };
    const r = await client.callTool({ name: t, arguments: args }, undefined, reqOpts());
    assert(!r.isError, `isError: ${textOf(r)}`);
  });

  // ------------------------------------------------------------ sampling
  await check("sampling", async () => {
    needTool(TOOL.sampling);
    const before = seen.sampling.length;
    const prompt = `warden sampling prompt ${nonce}`;
    const r = await client.callTool(
      { name: TOOL.sampling, arguments: { prompt, maxTokens: 32 } },
      undefined,
      reqOpts(),
    );
    assert(!r.isError, `isError: ${textOf(r)}`);
    assert(seen.sampling.length > before, "client never received sampling/createMessage");
    const req = seen.sampling[seen.sampling.length - 1];
    assert(JSON.stringify(req.messages ?? []).includes(prompt), "sampling request did not carry the prompt");
    assert(textOf(r).includes(`warden-e2e sampled answer ${nonce}`), `tool result does not reflect the sampled answer: ${oneLine(textOf(r))}`);
  });

  // ------------------------------------------------------------ elicitation
  await check("elicitation", async () => {
    needTool(TOOL.elicitation);
    const before = seen.elicitation.length;
    const r = await client.callTool({ name: TOOL.elicitation, arguments: {} }, undefined, reqOpts());
    assert(!r.isError, `isError: ${textOf(r)}`);
    assert(seen.elicitation.length > before, "client never received elicitation/create");
    assert(textOf(r).includes(`Warden E2E ${nonce}`), `tool result does not reflect the elicited answer: ${oneLine(textOf(r))}`);
  });

  // ------------------------------------------------------------ roots
  // server-everything asks for roots (roots/list, a server->client request on
  // the standalone GET SSE stream) shortly after initialization and caches them.
  await check("roots", async () => {
    needTool(TOOL.roots);
    const r = await client.callTool({ name: TOOL.roots, arguments: {} }, undefined, reqOpts());
    assert(!r.isError, `isError: ${textOf(r)}`);
    assert(seen.roots >= 1, "client never received roots/list");
    assert(textOf(r).includes(ROOT_URI), `tool result does not list our root: ${oneLine(textOf(r))}`);
  });

  // ------------------------------------------------------------ resources / prompts
  let resources = [];
  await check("resources-list", async () => {
    const r = await client.listResources({}, reqOpts());
    resources = r.resources;
    assert(resources.length > 0, "resources/list is empty");
  });
  await check("resources-read", async () => {
    if (!resources.length) throw new Error("no resource to read");
    const uri = resources[0].uri;
    const r = await client.readResource({ uri }, reqOpts());
    assert(r.contents?.length > 0 && r.contents[0].uri === uri, `unexpected read result for ${uri}`);
  });
  let prompts = [];
  await check("prompts-list", async () => {
    const r = await client.listPrompts({}, reqOpts());
    prompts = r.prompts;
    assert(prompts.length > 0, "prompts/list is empty");
  });
  await check("prompts-get", async () => {
    const p = prompts.find((x) => !(x.arguments ?? []).some((a) => a.required));
    if (!p) throw new Skip("no prompt without required arguments");
    const r = await client.getPrompt({ name: p.name }, reqOpts());
    assert(r.messages?.length > 0, `prompt ${p.name} returned no messages`);
  });

  // ------------------------------------------------------------ late result after cancel
  if (cancelOk && cancelledId !== undefined) {
    await check("cancel-no-late-result", async () => {
      const waitUntil = cancelStart + CANCEL_DURATION * 1000 + 1500;
      while (Date.now() < waitUntil) await sleep(100);
      const late = wire.in.find((w) => w.msg.id === cancelledId && ("result" in w.msg || "error" in w.msg));
      assert(!late, `a response for cancelled request ${cancelledId} still arrived: ${oneLine(JSON.stringify(late?.msg))}`);
    });
  }

  // ------------------------------------------------------------ terminate
  if (!streamableHttp) {
    await check("close", async () => {
      await withTimeout(client.close(), T, "close");
    });
    return;
  }
  const sid = transport.sessionId;
  await check("terminate", async () => {
    await withTimeout(transport.terminateSession(), T, "DELETE");
    assert(transport.sessionId === undefined, "transport still holds a session id after DELETE");
  });
  // A request with the terminated session id must now be refused (the spec
  // says 404; server-everything answers 400 for unknown sessions).
  await check("terminate-confirmed", async () => {
    if (!sid) throw new Error("no session id to test");
    const res = await withTimeout(fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-session-id": sid,
        "mcp-protocol-version": transport.protocolVersion ?? "2025-11-25",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 999001, method: "tools/list", params: {} }),
    }), T, "POST after DELETE");
    await res.body?.cancel();
    assert(res.status === 404 || res.status === 400, `old session id still answered HTTP ${res.status}`);
  });
}

const watchdog = setTimeout(() => {
  line("FAIL run: overall watchdog fired");
  failed++;
  line(`${passed} passed, ${failed} failed`);
  process.exit(1);
}, 10 * T + 60000);

try {
  await main();
} catch (e) {
  failed++;
  line(`FAIL run: ${oneLine(errText(e))}`);
}
try {
  await withTimeout(client.close(), 5000, "close");
} catch (e) {
  debug("close:", e?.message ?? e);
}
clearTimeout(watchdog);
line(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
