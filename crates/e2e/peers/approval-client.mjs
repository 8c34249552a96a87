#!/usr/bin/env node
// A held call through Warden with the official TypeScript SDK client.
//
// On its defaults (60 s request timeout, no reset on progress): Warden
// answers "pending" within its hold budget, so no timeout error reaches the
// agent; the client calls again with the same arguments until an approver
// (the test, through Warden's admin API) approves, then gets the tool's
// result.
//
// With `--progress TIMEOUT_MS`: one call with an `onprogress` callback (so
// the SDK sends a progress token), `resetTimeoutOnProgress: true` and a
// request timeout of TIMEOUT_MS, shorter than the hold: Warden's progress
// notifications keep the request alive past its timeout, and the same
// request gets the tool's result once approved.
//
// With `--held` (Warden's hold budget longer than the approver takes),
// the first call itself waits for the decision and gets the result; it says
// why, as an agent should (approvers see the rationale).
//
// Usage: node approval-client.mjs URL TOOL ARGS_JSON EXPECTED_TEXT [--progress TIMEOUT_MS | --held]
//
// Prints `ok <check>` / `FAIL <check>: <detail>` lines, `result <JSON>` (the
// last call's result as the SDK returned it) and `N passed, M failed`.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, tool, argsJson, expected, mode, modeArg] = process.argv.slice(2);
const progressMode = mode === "--progress";
const heldMode = mode === "--held";
const timeout = Number(modeArg);
if (!url || !tool || !argsJson || !expected || (mode !== undefined && !heldMode && !(progressMode && timeout > 0))) {
  console.error("usage: node approval-client.mjs URL TOOL ARGS_JSON EXPECTED_TEXT [--progress TIMEOUT_MS | --held]");
  process.exit(2);
}
let passed = 0;
let failed = 0;
const check = (name, ok, detail = "") => {
  if (ok) {
    passed++;
    console.log(`ok ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}: ${detail}`);
  }
};
const args = JSON.parse(argsJson);
const client = new Client({ name: "warden-e2e-approvals", version: "1.0.0" });
// The agent waits out the hold by calling again (on the SDK's defaults).
async function callAgain() {
  const first = await client.callTool({ name: tool, arguments: args });
  const warden = first.structuredContent?.warden ?? {};
  check("first-call-pending", first.isError === true && warden.decision === "pending", JSON.stringify(first));
  const id = first.structuredContent?.approval?.id;
  check("approval-id", typeof id === "string" && id.length > 0, JSON.stringify(first.structuredContent));
  let result;
  let attached = true;
  for (let attempt = 0; attempt < 60; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const again = await client.callTool({ name: tool, arguments: args });
    const decision = again.structuredContent?.warden?.decision;
    if (decision === "pending") {
      attached &&= again.structuredContent?.approval?.id === id;
      continue;
    }
    result = again;
    break;
  }
  check("retries-attach-to-the-same-approval", attached);
  return result;
}

// One call, held until an approver decides: its result is the tool's.
async function heldOnce() {
  const meta = { "warden/rationale": "The user asked for the total of two line items." };
  return await client.callTool({ name: tool, arguments: args, _meta: meta });
}

// The agent's one request waits out the hold, kept alive by progress.
async function waitWithProgress() {
  const seen = [];
  const started = Date.now();
  let result;
  try {
    result = await client.callTool({ name: tool, arguments: args }, undefined, {
      onprogress: (progress) => seen.push(progress),
      resetTimeoutOnProgress: true,
      timeout,
    });
    check("no-timeout-error", true);
  } catch (err) {
    check("no-timeout-error", false, `${err?.code ?? ""} ${err?.message ?? err}`);
  }
  const waited = Date.now() - started;
  check("waited-past-the-request-timeout", waited > timeout, `answered after ${waited} ms, timeout ${timeout} ms`);
  check("progress-notifications", seen.length >= 2, JSON.stringify(seen));
  check(
    "progress-counts-up",
    seen.every((p, i) => p.progress === i + 1 && p.total === undefined && typeof p.message === "string"),
    JSON.stringify(seen),
  );
  console.log(`progress ${JSON.stringify(seen)}`);
  return result;
}

try {
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  const result = progressMode ? await waitWithProgress() : heldMode ? await heldOnce() : await callAgain();
  const text = (result?.content ?? []).map((c) => c.text ?? "").join("");
  check("approved-call-ran", result && !result.isError && text.includes(expected), JSON.stringify(result));
  console.log(`result ${JSON.stringify(result ?? null)}`);
  await client.close();
} catch (err) {
  check("flow", false, err?.stack ?? String(err));
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
