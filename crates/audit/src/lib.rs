//! Warden's audit trail.
//!
//! Every `tools/call` and every decision about one becomes a [`Record`]
//! (one schema, versioned, documented field by field in `docs/audit.md`).
//! The proxy reports records to an [`AuditLog`]; its writer seals them into
//! a per-instance hash [`chain`] with signed checkpoints and hands them to a
//! [`Store`]: JSON Lines files by default, PostgreSQL at scale.

pub mod chain;
pub mod file;
pub mod lock;
pub mod log;
pub mod otlp;
pub mod postgres;
pub mod query;
pub mod record;
pub mod redact;
pub mod spool;
pub mod verify;

pub use chain::{Chain, ChainHead, Sealed};
pub use file::{FileOptions, FileStore};
pub use log::{AuditLog, AuditStats, AuditUnavailable, Follower, Store, StoreError, WriterOptions};
pub use postgres::{
    PostgresOptions, PostgresStats, PostgresStore, query_postgres, verify_postgres,
};
pub use query::{Filter, QueryError, query_files};
pub use record::{Kind, Phase, Record, SCHEMA_VERSION};
pub use redact::{RedactError, Redacted, Redactor};
pub use spool::Spool;
pub use verify::{
    ChainReport, ChainSummary, ChainVerifier, Location, Problem, ProblemKind, Report, Signatures,
    VerifyError, verify_files,
};
