//! The SQLite approval store, on real files: decisions, quorum, four eyes,
//! expiry, withdrawal, restart, and exactly-once execution under
//! concurrent deciders and two stores (replicas) on one file. The
//! scenarios are shared with the PostgreSQL store (`scenarios/`).

mod scenarios;

use warden_approvals::{Store, StoreLocation};

/// A new SQLite file in a folder removed with the guard.
async fn fresh() -> (StoreLocation, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    (StoreLocation::Sqlite(dir.path().join("approvals.db")), dir)
}

every_scenario!(fresh);

#[tokio::test]
async fn a_sqlite_store_has_no_cross_process_decisions_to_listen_to() {
    let (location, _dir) = fresh().await;
    let store = Store::open(&location).await.expect("opens");
    assert!(matches!(store, Store::Sqlite(_)));
    assert!(store.decisions().await.expect("decisions").is_none());
}
