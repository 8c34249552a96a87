//! End-to-end tests live in `tests/`; the peers they drive live in `peers/`
//! (official SDK clients, server-everything) and `conformance/` (the official
//! conformance suite). `cargo xtask deps` installs both, pinned.
