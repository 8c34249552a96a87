//! Warden's integration tests: a real Warden on an ephemeral port in front of
//! a real (demo or purpose-built) upstream, driven over HTTP.

mod approvals;
mod approvals_page;
mod approvals_postgres;
mod audit_postgres;
mod audit_trail;
mod auth;
mod bad_inputs;
mod channels;
mod cli;
mod credentials;
mod dry_run;
mod legacy_sse;
mod lifecycle;
mod limits;
mod otlp;
mod policy;
mod reply_tap;
mod secrets;
mod stateless;
mod stdio;
mod stdio_upstream;
mod support;
mod tls;
mod transparency;
mod upstream_failures;
