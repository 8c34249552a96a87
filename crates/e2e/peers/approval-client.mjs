#!/usr/bin/env node
// A held call through Warden with the official TypeScript SDK client on
// its defaults (60 s request timeout, no reset on progress): Warden answers
// "pending" within its hold budget, so no timeout error reaches the agent;
// the client calls again with the same arguments until an approver (the
// test, through Warden's admin API) approves, then gets the tool's result.
//
// With `--held` (Warden's hold budget longer than the approver takes),
// the first call itself waits for the decision and gets the result.
//
// Usage: node approval-client.mjs URL TOOL ARGS_JSON EXPECTED_TEXT [--held]
//
// Prints `ok <check>` / `FAIL <check>: <detail>` lines and `N passed, M failed`.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, tool, argsJson, expected, mode] = process.argv.slice(2);
if (!url || !tool || !argsJson || !expected || (mode !== undefined && mode !== "--held")) {
  console.error("usage: node approval-client.mjs URL TOOL ARGS_JSON EXPECTED_TEXT [--held]");
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
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  // Held mode says why, as an agent should: approvers see the rationale.
  const meta = mode === "--held" ? { "warden/rationale": "The user asked for the total of two line items." } : undefined;
  const first = await client.callTool({ name: tool, arguments: args, _meta: meta });
  if (mode === "--held") {
    // One call, held until an approver decides: its result is the tool's.
    const text = (first?.content ?? []).map((c) => c.text ?? "").join("");
    check("held-call-ran", !first.isError && text.includes(expected), JSON.stringify(first));
    await client.close();
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
  }
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
  const text = (result?.content ?? []).map((c) => c.text ?? "").join("");
  check("approved-call-ran", result && !result.isError && text.includes(expected), JSON.stringify(result));
  await client.close();
} catch (err) {
  check("flow", false, err?.stack ?? String(err));
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
