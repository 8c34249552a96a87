#!/usr/bin/env node
// A confirm-tier call through Warden with the official TypeScript SDK
// client, which declares elicitation and answers Warden's
// `elicitation/create` as its user would: ticking `confirm` (accept) or
// declining (decline).
//
// Usage: node confirm-client.mjs URL TOOL ARGS_JSON accept|decline
//
// Prints `asked <JSON>` (the elicitation's params as the SDK received
// them), `result <JSON>` (the call's result) and `N passed, M failed`.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, tool, argsJson, answer] = process.argv.slice(2);
if (!url || !tool || !argsJson || !["accept", "decline"].includes(answer)) {
  console.error("usage: node confirm-client.mjs URL TOOL ARGS_JSON accept|decline");
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
const client = new Client(
  { name: "warden-e2e-confirm", version: "1.0.0" },
  { capabilities: { elicitation: { form: {} } } },
);
let asked = 0;
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  asked++;
  console.log(`asked ${JSON.stringify(request.params)}`);
  return answer === "accept" ? { action: "accept", content: { confirm: true } } : { action: "decline" };
});
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  const result = await client.callTool({ name: tool, arguments: JSON.parse(argsJson) });
  check("asked-once", asked === 1, `asked ${asked} times`);
  check("answered", result && Array.isArray(result.content), JSON.stringify(result));
  console.log(`result ${JSON.stringify(result ?? null)}`);
  await client.close();
} catch (err) {
  check("flow", false, err?.stack ?? String(err));
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
