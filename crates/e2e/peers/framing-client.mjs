#!/usr/bin/env node
// A stdio MCP client on the official TypeScript SDK (1.32.2: Client +
// StdioClientTransport) for the framing tests (tests/framing.rs): it
// launches a server (normally `warden stdio --config F` in front of
// smuggling_upstream.py) and checks that what the SDK reads from the
// server's stdout is exactly the genuine messages, never a forged one that
// the upstream hid between raw CRs inside a genuine answer.
//
// Usage:
//   node framing-client.mjs [--timeout SECONDS] [--verbose] -- CMD ARGS...
//
// Checks (one line each, `ok <check>` or `FAIL <check>: <detail>`, then
// `N passed, M failed`; exit 0 only when M is 0, 2 for bad usage):
// - initialize: the upstream's serverInfo (`smuggling-upstream`) arrives.
// - tools-list: exactly `echo` is listed (no `forged_tool`), and its
//   description keeps its U+2028.
// - call-echo: the result is the genuine text "genuine<U+2028>result".
// - no-forged-request: the sampling handler (the client declares sampling)
//   never ran, and no sampling/createMessage arrived.
// - no-stray-lines: the SDK reported no line that failed to parse (a
//   fragment of a split message) and no response for an unknown id.
// - one-answer-each: exactly one response arrived for each request sent
//   after connect, and none for an id never sent.
//
// The SDK's ReadBuffer splits the server's stdout on LF only
// (`this._buffer.indexOf('\n')`, then `.replace(/\r$/, '')`).

import process from 'node:process';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const GENUINE_DESCRIPTION = 'genuine echo\u2028second line';
const GENUINE_TEXT = 'genuine\u2028result';

const argv = process.argv.slice(2);
let T = 20;
let verbose = false;
while (argv.length && argv[0] !== '--') {
    const flag = argv.shift();
    if (flag === '--timeout') T = Number(argv.shift());
    else if (flag === '--verbose') verbose = true;
    else {
        console.error(`unknown option ${flag}`);
        process.exit(2);
    }
}
argv.shift();
if (!argv.length || !(T > 0)) {
    console.error('usage: node framing-client.mjs [--timeout SECONDS] [--verbose] -- CMD ARGS...');
    process.exit(2);
}

let passed = 0;
let failed = 0;
const line = (text) => process.stdout.write(text + '\n');
const oneLine = (text) => String(text).split(/\s+/).join(' ').slice(0, 500);
function ensure(condition, detail) {
    if (!condition) throw new Error(detail);
}
async function check(name, body) {
    let timer;
    try {
        await Promise.race([
            body(),
            new Promise((_, reject) => {
                timer = setTimeout(() => reject(new Error(`timed out after ${T}s`)), T * 1000);
            }),
        ]);
        passed++;
        line(`ok ${name}`);
        return true;
    } catch (error) {
        failed++;
        line(`FAIL ${name}: ${oneLine(error?.message ?? error)}`);
        if (verbose) console.error(error);
        return false;
    } finally {
        clearTimeout(timer);
    }
}
function finish() {
    line(`${passed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
}
// An overall watchdog: a hang becomes a FAIL line, never an endless wait.
setTimeout(() => {
    failed++;
    line(`FAIL run: still running after ${T * 4}s`);
    finish();
}, T * 4 * 1000).unref();

const errors = [];
const incoming = [];
const outgoing = [];
let samplingCalls = 0;

const client = new Client(
    { name: 'warden-e2e-framing-ts', version: '0.1.0' },
    { capabilities: { sampling: {} } },
);
client.onerror = (error) => errors.push(oneLine(error?.message ?? error));
client.setRequestHandler(CreateMessageRequestSchema, async () => {
    samplingCalls++;
    return {
        role: 'assistant',
        content: { type: 'text', text: 'should never be asked' },
        model: 'warden-e2e-stub-model',
        stopReason: 'endTurn',
    };
});

const transport = new StdioClientTransport({ command: argv[0], args: argv.slice(1), stderr: 'inherit' });

try {
    const connected = await check('initialize', async () => {
        await client.connect(transport, { timeout: T * 1000 });
        // Record what the SDK parsed from each line, and what it sent, from here on.
        const deliver = transport.onmessage;
        transport.onmessage = (message, extra) => {
            incoming.push(message);
            deliver?.(message, extra);
        };
        const send = transport.send.bind(transport);
        transport.send = (message, options) => {
            outgoing.push(message);
            return send(message, options);
        };
        const name = client.getServerVersion()?.name;
        ensure(name === 'smuggling-upstream', `serverInfo.name is ${JSON.stringify(name)}`);
    });
    if (connected) {
        await check('tools-list', async () => {
            const { tools } = await client.listTools(undefined, { timeout: T * 1000 });
            const names = tools.map((t) => t.name);
            ensure(JSON.stringify(names) === '["echo"]', `listed ${JSON.stringify(names)}, want exactly ["echo"]`);
            ensure(
                tools[0].description === GENUINE_DESCRIPTION,
                `echo's description is ${JSON.stringify(tools[0].description)}, want ${JSON.stringify(GENUINE_DESCRIPTION)}`,
            );
        });
        await check('call-echo', async () => {
            const result = await client.callTool({ name: 'echo', arguments: { say: 'hi' } }, undefined, {
                timeout: T * 1000,
            });
            const texts = (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text);
            ensure(!result.isError, `isError result: ${JSON.stringify(texts)}`);
            ensure(
                JSON.stringify(texts) === JSON.stringify([GENUINE_TEXT]),
                `result text ${JSON.stringify(texts)}, want ${JSON.stringify([GENUINE_TEXT])}`,
            );
        });
        // Anything split off a genuine answer arrives right behind it.
        await new Promise((resolve) => setTimeout(resolve, 500));
        await check('no-forged-request', async () => {
            const forged = incoming.filter((m) => m.method === 'sampling/createMessage');
            ensure(forged.length === 0, `a forged request arrived: ${JSON.stringify(forged)}`);
            ensure(samplingCalls === 0, `the sampling handler ran ${samplingCalls} time(s)`);
        });
        await check('no-stray-lines', async () => {
            ensure(errors.length === 0, `SDK errors: ${JSON.stringify(errors)}`);
        });
        await check('one-answer-each', async () => {
            const count = (messages) => {
                const byId = {};
                for (const m of messages) byId[JSON.stringify(m.id)] = (byId[JSON.stringify(m.id)] ?? 0) + 1;
                return byId;
            };
            const asked = count(outgoing.filter((m) => m.method !== undefined && m.id !== undefined));
            const answers = count(incoming.filter((m) => m.method === undefined));
            ensure(Object.keys(asked).length > 0, 'no request was sent');
            ensure(
                JSON.stringify(Object.entries(answers).sort()) === JSON.stringify(Object.entries(asked).sort()) &&
                    Object.values(asked).every((n) => n === 1),
                `responses by id: ${JSON.stringify(answers)}, want one for each request sent: ${JSON.stringify(asked)}`,
            );
        });
    }
} catch (error) {
    failed++;
    line(`FAIL run: ${oneLine(error?.message ?? error)}`);
}
try {
    await client.close();
} catch {
    // closing is best effort
}
finish();
