#!/usr/bin/env node
// A stdio MCP server on the official TypeScript SDK (1.32.2: McpServer +
// StdioServerTransport) that records what it executes and the raw bytes it
// is sent, for the framing tests (tests/framing.rs).
//
// Usage:
//   RECORD_FILE=calls.jsonl RAW_FILE=stdin.raw node recording-server.mjs
//
// Tools:
// - `echo` (readOnlyHint: true): returns its arguments as JSON text
//   (JSON.stringify(arguments)), so the caller can compare.
// - `wipe` (readOnlyHint: false, destructiveHint: true): returns `wiped`.
// Both take any object (a loose zod object: every key is kept as sent).
//
// Every tool call the server executes is appended to RECORD_FILE as one JSON
// line, {"tool": NAME, "arguments": {...}}, before it answers.
//
// RAW_FILE receives every byte read on stdin: process.stdin is piped through
// a tee (a Transform that appends each chunk to RAW_FILE and passes it on)
// and the tee is the stream given to StdioServerTransport, so the SDK's own
// ReadBuffer still does the splitting (on LF; a CR before it is dropped).

import fs from 'node:fs';
import process from 'node:process';
import { Transform } from 'node:stream';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import * as z from 'zod';

const rawFd = process.env.RAW_FILE ? fs.openSync(process.env.RAW_FILE, 'a') : null;

function record(tool, args) {
    const path = process.env.RECORD_FILE;
    if (!path) return;
    fs.appendFileSync(path, JSON.stringify({ tool, arguments: args }) + '\n');
}

const tee = new Transform({
    transform(chunk, _encoding, done) {
        if (rawFd !== null) fs.writeSync(rawFd, chunk);
        done(null, chunk);
    },
});
process.stdin.pipe(tee);

const server = new McpServer({ name: 'warden-e2e-recording-ts', version: '1.0.0' });

server.registerTool(
    'echo',
    {
        description: 'Return the arguments as JSON text (read-only).',
        inputSchema: z.looseObject({}),
        annotations: { readOnlyHint: true },
    },
    async (args) => {
        record('echo', args);
        return { content: [{ type: 'text', text: JSON.stringify(args) }] };
    },
);

server.registerTool(
    'wipe',
    {
        description: 'Destroy everything (NOT read-only).',
        inputSchema: z.looseObject({}),
        annotations: { readOnlyHint: false, destructiveHint: true },
    },
    async (args) => {
        record('wipe', args);
        return { content: [{ type: 'text', text: 'wiped' }] };
    },
);

const transport = new StdioServerTransport(tee, process.stdout);
transport.onerror = (error) => process.stderr.write(`transport error: ${error?.message ?? error}\n`);
tee.on('end', () => {
    server.close().finally(() => process.exit(0));
});
await server.connect(transport);
