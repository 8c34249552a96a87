//! Warden's audit trail.
//!
//! Every `tools/call` and every decision about one becomes a [`Record`]
//! (one schema, versioned, documented field by field in `docs/audit.md`).
//! The proxy reports records to an [`AuditLog`]; its writer seals them into
//! a per-instance hash [`chain`] with signed checkpoints and hands them to a
//! [`Store`]: JSON Lines files by default, PostgreSQL at scale.

pub mod chain;
pub mod log;
pub mod record;

pub use chain::{Chain, ChainHead, Sealed};
pub use log::{AuditLog, AuditStats, AuditUnavailable, Follower, Store, StoreError, WriterOptions};
pub use record::{Kind, Phase, Record, SCHEMA_VERSION};
