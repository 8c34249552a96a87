#!/usr/bin/env node
// MCP's authorization flow through Warden, with the official TypeScript SDK
// (@modelcontextprotocol/sdk, StreamableHTTPClientTransport + an
// OAuthClientProvider) as the client and a small OAuth 2.1 authorization
// server run here: metadata (RFC 8414), dynamic client registration
// (RFC 7591), an authorization endpoint that approves at once, a token
// endpoint checking PKCE and issuing ES256 JWTs whose `aud` is the
// `resource` the client asked for (RFC 8707), and its JWKS.
//
// Usage: node oauth-flow.mjs --as-port PORT --url WARDEN_URL
//
// Every check prints `ok <check>` or `FAIL <check>: <detail>`; the run ends
// with `N passed, M failed`, and exits 0 only if nothing failed.
import { createServer } from "node:http";
import { createHash, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const argv = process.argv.slice(2);
const arg = (name) => {
  const i = argv.indexOf(name);
  if (i < 0 || i + 1 >= argv.length) {
    console.error(`usage: node oauth-flow.mjs --as-port PORT --url WARDEN_URL (missing ${name})`);
    process.exit(2);
  }
  return argv[i + 1];
};
const asPort = Number(arg("--as-port"));
const wardenUrl = arg("--url");
const issuer = `http://127.0.0.1:${asPort}`;

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

// ------------------------------------------------------------ the AS
const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
const jwk = { ...publicKey.export({ format: "jwk" }), kid: "as-key-1", use: "sig", alg: "ES256" };
const b64url = (buf) => Buffer.from(buf).toString("base64url");
const jwt = (claims) => {
  const head = b64url(JSON.stringify({ alg: "ES256", typ: "at+jwt", kid: jwk.kid }));
  const body = b64url(JSON.stringify(claims));
  const signature = sign("sha256", Buffer.from(`${head}.${body}`), {
    key: privateKey,
    dsaEncoding: "ieee-p1363",
  });
  return `${head}.${body}.${b64url(signature)}`;
};
const clients = new Map();
const codes = new Map();
const seen = { resourceAtAuthorize: [], resourceAtToken: [], tokensIssued: 0, jwksFetches: 0 };

const readBody = (req) =>
  new Promise((resolve) => {
    let data = "";
    req.on("data", (c) => (data += c));
    req.on("end", () => resolve(data));
  });
const sendJson = (res, status, value) => {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(value));
};

const server = createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  if (req.method === "GET" && url.pathname === "/.well-known/oauth-authorization-server") {
    return sendJson(res, 200, {
      issuer,
      authorization_endpoint: `${issuer}/authorize`,
      token_endpoint: `${issuer}/token`,
      registration_endpoint: `${issuer}/register`,
      jwks_uri: `${issuer}/jwks.json`,
      response_types_supported: ["code"],
      grant_types_supported: ["authorization_code", "refresh_token"],
      code_challenge_methods_supported: ["S256"],
      token_endpoint_auth_methods_supported: ["none"],
    });
  }
  if (req.method === "GET" && url.pathname === "/jwks.json") {
    seen.jwksFetches++;
    return sendJson(res, 200, { keys: [jwk] });
  }
  if (req.method === "POST" && url.pathname === "/register") {
    const metadata = JSON.parse((await readBody(req)) || "{}");
    const client_id = `client-${randomBytes(6).toString("hex")}`;
    clients.set(client_id, metadata);
    return sendJson(res, 201, { ...metadata, client_id, client_id_issued_at: Math.floor(Date.now() / 1000) });
  }
  if (req.method === "GET" && url.pathname === "/authorize") {
    const p = url.searchParams;
    seen.resourceAtAuthorize.push(p.get("resource"));
    if (!clients.has(p.get("client_id")) || p.get("code_challenge_method") !== "S256") {
      return sendJson(res, 400, { error: "invalid_request" });
    }
    const code = randomBytes(16).toString("hex");
    codes.set(code, {
      client_id: p.get("client_id"),
      challenge: p.get("code_challenge"),
      resource: p.get("resource"),
      redirect_uri: p.get("redirect_uri"),
    });
    const target = new URL(p.get("redirect_uri"));
    target.searchParams.set("code", code);
    if (p.get("state")) target.searchParams.set("state", p.get("state"));
    res.writeHead(302, { location: target.toString() });
    return res.end();
  }
  if (req.method === "POST" && url.pathname === "/token") {
    const form = new URLSearchParams(await readBody(req));
    const grant = codes.get(form.get("code"));
    codes.delete(form.get("code"));
    seen.resourceAtToken.push(form.get("resource"));
    const verifier = form.get("code_verifier") ?? "";
    const challenge = createHash("sha256").update(verifier).digest("base64url");
    if (!grant || grant.challenge !== challenge || grant.client_id !== form.get("client_id")) {
      return sendJson(res, 400, { error: "invalid_grant" });
    }
    const now = Math.floor(Date.now() / 1000);
    seen.tokensIssued++;
    return sendJson(res, 200, {
      access_token: jwt({
        iss: issuer,
        aud: form.get("resource") ?? grant.resource,
        sub: "ada@example.com",
        client_id: grant.client_id,
        scope: "mcp",
        iat: now,
        exp: now + 300,
      }),
      token_type: "Bearer",
      expires_in: 300,
      scope: "mcp",
    });
  }
  sendJson(res, 404, { error: "not_found" });
});
await new Promise((resolve) => server.listen(asPort, "127.0.0.1", resolve));

// ------------------------------------------------------------ the client
class Provider {
  constructor() {
    this.client = undefined;
    this.savedTokens = undefined;
    this.verifier = undefined;
    this.code = undefined;
    this.redirects = 0;
  }
  get redirectUrl() {
    return "http://127.0.0.1:1/callback";
  }
  get clientMetadata() {
    return {
      client_name: "warden-e2e-oauth",
      redirect_uris: [this.redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(info) {
    this.client = info;
  }
  tokens() {
    return this.savedTokens;
  }
  saveTokens(tokens) {
    this.savedTokens = tokens;
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }
  // A browser would show the authorization page; this AS approves at once,
  // so following its redirect by hand yields the code.
  async redirectToAuthorization(url) {
    this.redirects++;
    const response = await fetch(url, { redirect: "manual" });
    const location = response.headers.get("location");
    this.code = location ? new URL(location).searchParams.get("code") : undefined;
  }
}

const timeout = setTimeout(() => {
  console.log("FAIL timeout: the flow did not finish within 60s");
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, 60_000);

const provider = new Provider();
try {
  // 1. Without a token: Warden answers 401, the SDK discovers Warden's
  //    metadata and the AS, registers, and is sent to authorize.
  const first = new Client({ name: "warden-e2e-oauth", version: "1.0.0" });
  let unauthorized = false;
  try {
    await first.connect(new StreamableHTTPClientTransport(new URL(wardenUrl), { authProvider: provider }));
  } catch (err) {
    unauthorized = err instanceof UnauthorizedError;
    if (!unauthorized) throw err;
  }
  check("first-connect-unauthorized", unauthorized, "connect succeeded without a token");
  check("client-registered", provider.client?.client_id?.startsWith("client-"), JSON.stringify(provider.client));
  check("resource-indicator-at-authorize", seen.resourceAtAuthorize[0] === wardenUrl, JSON.stringify(seen.resourceAtAuthorize));

  // 2. The code for a token (audience: Warden's resource), then connect again.
  const transport = new StreamableHTTPClientTransport(new URL(wardenUrl), { authProvider: provider });
  await transport.finishAuth(provider.code);
  check("token-issued", seen.tokensIssued === 1 && provider.savedTokens?.access_token, JSON.stringify(seen));
  check("resource-indicator-at-token", seen.resourceAtToken[0] === wardenUrl, JSON.stringify(seen.resourceAtToken));
  const client = new Client({ name: "warden-e2e-oauth", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(wardenUrl), { authProvider: provider }));
  check("connected-with-token", true);
  const tools = await client.listTools();
  const names = tools.tools.map((t) => t.name);
  check("tools-listed", names.includes("echo"), names.join(","));
  const echoed = await client.callTool({ name: "echo", arguments: { message: "through warden" } });
  const text = (echoed.content ?? []).map((c) => c.text ?? "").join("");
  check("tool-called", !echoed.isError && text.includes("through warden"), JSON.stringify(echoed));
  check("jwks-fetched-by-warden", seen.jwksFetches >= 1, `fetches: ${seen.jwksFetches}`);
  check("one-authorization", provider.redirects === 1, `redirects: ${provider.redirects}`);
  await client.close();
} catch (err) {
  check("flow", false, err?.stack ?? String(err));
}
clearTimeout(timeout);
server.close();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
