//! JSON-RPC 2.0 and MCP framing for Warden.
//!
//! This crate knows how MCP messages are shaped on the wire and nothing about
//! policy. It has three jobs:
//!
//! - [`jsonrpc`]: parse a message (or a batch) *strictly*, reading only the
//!   envelope (`jsonrpc`, `id`, `method`) and, for `tools/call`, the tool name;
//!   everything else stays as the bytes the agent sent. Strict means that a
//!   message another JSON parser could read differently (duplicate keys,
//!   case-variant keys, trailing data) is rejected rather than judged.
//! - [`sse`]: an incremental Server-Sent Events parser and encoder, so replies
//!   can be relayed as they arrive and tapped without buffering.
//! - [`line`](mod@line): write a message as exactly one line on a newline-delimited
//!   link (stdio), whatever its bytes, so no line reader on the far side can
//!   read it as two messages.
//! - [`mcp`]: MCP's header names, revisions and the tool-result shape Warden
//!   uses for refusals.

pub mod jsonrpc;
pub mod line;
pub mod mcp;
pub mod sse;

pub use jsonrpc::{Envelope, Incoming, MessageKind, ParseError, ToolCallParams};
