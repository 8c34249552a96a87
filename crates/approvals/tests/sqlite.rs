//! The SQLite approval store, on real files: decisions, quorum, four eyes,
//! expiry, withdrawal, restart, and exactly-once execution under
//! concurrent deciders and two stores (replicas) on one file.

use std::sync::Arc;

use warden_approvals::{ApprovalError, NewApproval, SqliteStore, Status, Verdict};

const NOW: i64 = 1_800_000_000_000;

fn call(required: u32) -> NewApproval {
    NewApproval {
        route: "/mcp".into(),
        upstream: "http://127.0.0.1:1/mcp".into(),
        tool: "send_invoice".into(),
        arguments: r#"{"customer_id":1,"amount_cents":500}"#.into(),
        arguments_shown: r#"{"customer_id":1,"amount_cents":500}"#.into(),
        rationale: Some("the user asked for it".into()),
        agent_session: "s-1".into(),
        principal_agent: "billing-bot".into(),
        principal_user: Some("ada".into()),
        policy_hash: "abc".into(),
        required,
        created_ms: NOW,
        expires_ms: NOW + 600_000,
    }
}

async fn store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("approvals.db"))
        .await
        .expect("opens");
    (store, dir)
}

#[tokio::test]
async fn a_rejection_ends_it_and_names_the_approver_and_reason() {
    let (store, _dir) = store().await;
    let held = store.create(call(1)).await.expect("staged");
    assert_eq!(held.status, Status::Pending);
    assert_eq!(held.arguments_digest.len(), 64);
    let decided = store
        .decide(
            &held.id,
            "grace",
            Verdict::Reject,
            Some("wrong amount"),
            false,
            NOW + 1,
        )
        .await
        .expect("decided");
    assert_eq!(decided.status, Status::Rejected);
    assert_eq!(decided.reason.as_deref(), Some("wrong amount"));
    assert_eq!(decided.votes[0].approver, "grace");
    let late = store
        .decide(&held.id, "linus", Verdict::Approve, None, false, NOW + 2)
        .await;
    assert!(matches!(
        late,
        Err(ApprovalError::NotPending {
            status: Status::Rejected,
            ..
        })
    ));
    assert!(
        !store
            .claim_execution(&held.id, NOW + 3)
            .await
            .expect("claim")
    );
}

#[tokio::test]
async fn a_quorum_counts_each_approver_once_and_the_call_runs_once() {
    let (store, _dir) = store().await;
    let held = store.create(call(2)).await.expect("staged");
    let first = store
        .decide(&held.id, "grace", Verdict::Approve, None, false, NOW + 1)
        .await
        .expect("first");
    assert_eq!(first.status, Status::Pending, "one of two approvals");
    let again = store
        .decide(&held.id, "grace", Verdict::Approve, None, false, NOW + 2)
        .await;
    assert!(matches!(again, Err(ApprovalError::AlreadyDecided { .. })));
    let second = store
        .decide(&held.id, "linus", Verdict::Approve, None, false, NOW + 3)
        .await
        .expect("second");
    assert_eq!(second.status, Status::Approved);
    assert!(
        store
            .claim_execution(&held.id, NOW + 4)
            .await
            .expect("claim")
    );
    assert!(
        !store
            .claim_execution(&held.id, NOW + 5)
            .await
            .expect("claim")
    );
    assert_eq!(
        store.get(&held.id).await.expect("get").executed_ms,
        Some(NOW + 4)
    );
}

#[tokio::test]
async fn the_user_a_call_acts_for_may_not_approve_it_unless_the_policy_allows() {
    let (store, _dir) = store().await;
    let held = store.create(call(1)).await.expect("staged");
    let own = store
        .decide(&held.id, "ada", Verdict::Approve, None, false, NOW + 1)
        .await;
    assert!(matches!(own, Err(ApprovalError::OwnCall { .. })));
    assert_eq!(
        store.get(&held.id).await.expect("get").status,
        Status::Pending
    );
    let allowed = store
        .decide(&held.id, "ada", Verdict::Approve, None, true, NOW + 2)
        .await
        .expect("allowed");
    assert_eq!(allowed.status, Status::Approved);
}

#[tokio::test]
async fn late_decisions_find_it_expired_and_withdrawn_calls_never_run() {
    let (store, _dir) = store().await;
    let held = store.create(call(1)).await.expect("staged");
    let late = store
        .decide(
            &held.id,
            "grace",
            Verdict::Approve,
            None,
            false,
            NOW + 600_000,
        )
        .await;
    assert!(matches!(
        late,
        Err(ApprovalError::NotPending {
            status: Status::Expired,
            ..
        })
    ));
    let swept = store.create(call(1)).await.expect("staged");
    assert_eq!(
        store.expire_due(NOW + 600_001).await.expect("expire"),
        vec![swept.id.clone()]
    );
    for status in [Status::Cancelled, Status::Abandoned] {
        let held = store.create(call(1)).await.expect("staged");
        assert!(store.end(&held.id, status, NOW + 1).await.expect("end"));
        assert!(
            !store
                .end(&held.id, Status::Cancelled, NOW + 2)
                .await
                .expect("end")
        );
        let decided = store
            .decide(&held.id, "grace", Verdict::Approve, None, false, NOW + 3)
            .await;
        assert!(
            matches!(decided, Err(ApprovalError::NotPending { .. })),
            "{status}"
        );
        assert!(
            !store
                .claim_execution(&held.id, NOW + 4)
                .await
                .expect("claim")
        );
        assert_eq!(store.get(&held.id).await.expect("get").status, status);
    }
}

#[tokio::test]
async fn a_repeated_call_finds_its_approval_and_pending_ones_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("approvals.db");
    let held = {
        let store = SqliteStore::open(&path).await.expect("opens");
        store.create(call(1)).await.expect("staged")
    };
    let store = SqliteStore::open(&path).await.expect("reopens");
    assert_eq!(
        store.get(&held.id).await.expect("survives").status,
        Status::Pending
    );
    let same = store
        .find_same_call("s-1", "send_invoice", &held.arguments_digest)
        .await
        .expect("query")
        .expect("found");
    assert_eq!(same.id, held.id);
    assert!(
        store
            .find_same_call("s-1", "send_invoice", &"0".repeat(64))
            .await
            .expect("query")
            .is_none(),
        "other arguments are another approval"
    );
    assert!(
        store
            .find_same_call("s-2", "send_invoice", &held.arguments_digest)
            .await
            .expect("query")
            .is_none(),
        "another session's call is another approval"
    );
    assert_eq!(
        store
            .list(Some(Status::Pending), 10)
            .await
            .expect("list")
            .len(),
        1
    );
}

#[tokio::test]
async fn two_approvers_at_once_and_two_replicas_run_the_call_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("approvals.db");
    let replicas = [
        Arc::new(SqliteStore::open(&path).await.expect("a")),
        Arc::new(SqliteStore::open(&path).await.expect("b")),
    ];
    for round in 0..10 {
        let held = replicas[0].create(call(1)).await.expect("staged");
        let deciders: Vec<_> = ["grace", "linus", "ken", "barbara"]
            .into_iter()
            .enumerate()
            .map(|(n, approver)| {
                let store = replicas[n % 2].clone();
                let id = held.id.clone();
                tokio::spawn(async move {
                    store
                        .decide(&id, approver, Verdict::Approve, None, false, NOW + 1)
                        .await
                })
            })
            .collect();
        let mut approved = 0;
        for decider in deciders {
            match decider.await.expect("task") {
                Ok(approval) if approval.status == Status::Approved => approved += 1,
                Ok(other) => panic!("round {round}: {other:?}"),
                Err(ApprovalError::NotPending { .. }) => {}
                Err(err) => panic!("round {round}: {err}"),
            }
        }
        assert_eq!(approved, 1, "round {round}: one decision took effect");
        let claims: Vec<_> = (0..8)
            .map(|n| {
                let store = replicas[n % 2].clone();
                let id = held.id.clone();
                tokio::spawn(async move { store.claim_execution(&id, NOW + 2).await })
            })
            .collect();
        let mut runs = 0;
        for claim in claims {
            if claim.await.expect("task").expect("claim") {
                runs += 1;
            }
        }
        assert_eq!(runs, 1, "round {round}: the call runs exactly once");
    }
}
