//! Every environment variable Warden reads, in one place.

/// Path of the config file for `warden run` (same as `--config`).
pub const WARDEN_CONFIG: &str = "WARDEN_CONFIG";
/// Log filter, e.g. `info` or `warden=debug` (tracing-subscriber syntax).
pub const WARDEN_LOG: &str = "WARDEN_LOG";
/// Log format: `text` (default) or `json` (one object per line).
pub const WARDEN_LOG_FORMAT: &str = "WARDEN_LOG_FORMAT";
/// PostgreSQL URL of the audit table for `warden audit verify|query|migrate
/// --postgres` (same as `--postgres`; a URL holds a password, so prefer
/// this to the command line).
pub const WARDEN_AUDIT_POSTGRES_URL: &str = "WARDEN_AUDIT_POSTGRES_URL";
