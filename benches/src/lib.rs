//! Warden's benchmarks.
//!
//! - The `load` binary (`src/bin/load.rs`): the same MCP `tools/call` workload
//!   run directly against the demo upstream, through nginx and through Warden,
//!   interleaved, reporting calls/s, p50/p99 latency, CPU per call and peak
//!   RSS. See `benches/README.md`.
//! - `benches/hot_path.rs`: criterion micro-benchmarks of the request parse
//!   and the policy decision.
//!
//! This library holds the load benchmark's testable parts.

pub mod nginx;
pub mod procfs;
pub mod report;
pub mod workload;
