//! The store scenarios every backend must pass, whatever it is: each
//! opens its stores from a fresh [`StoreLocation`] (a new SQLite file, a
//! new PostgreSQL schema) through [`Store::open`], as Warden does.
//! `every_scenario!(fresh)` makes one test per scenario, where `fresh()`
//! gives a location and a guard that removes it.

use std::sync::Arc;

use warden_approvals::{ApprovalError, NewApproval, Status, Store, StoreLocation, Verdict};

pub const NOW: i64 = 1_800_000_000_000;

/// One test per scenario below, each on a location of its own.
#[macro_export]
macro_rules! every_scenario {
    ($fresh:path) => {
        $crate::every_scenario!(@each $fresh;
            a_rejection_ends_it_and_names_the_approver_and_reason,
            a_quorum_counts_each_approver_once_and_the_call_runs_once,
            the_user_a_call_acts_for_may_not_approve_it_unless_the_policy_allows,
            late_decisions_find_it_expired_and_withdrawn_calls_never_run,
            a_repeated_call_finds_its_approval_and_pending_ones_survive_a_restart,
            a_decided_call_is_found_again_until_its_agent_is_told,
            identical_calls_at_once_attach_to_one_approval,
            two_approvers_at_once_and_two_replicas_run_the_call_exactly_once,
            a_decision_nobody_recorded_is_found_and_claimed_for_its_record_once,
            a_request_state_is_spent_once_across_replicas_and_forgotten_when_expired,
        );
    };
    (@each $fresh:path; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $scenario() {
                let (location, _guard) = $fresh().await;
                scenarios::$scenario(&location).await;
            }
        )*
    };
}

pub fn call(required: u32) -> NewApproval {
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

pub async fn open(location: &StoreLocation) -> Store {
    Store::open(location).await.expect("the store opens")
}

pub async fn a_rejection_ends_it_and_names_the_approver_and_reason(location: &StoreLocation) {
    let store = open(location).await;
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
    assert_eq!(decided.decided_ms, Some(NOW + 1));
    assert_eq!(decided.votes[0].approver, "grace");
    assert_eq!(decided.votes[0].verdict, Verdict::Reject);
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
    assert!(matches!(
        store.get("no-such-id").await,
        Err(ApprovalError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .decide("no-such-id", "grace", Verdict::Approve, None, false, NOW)
            .await,
        Err(ApprovalError::NotFound { .. })
    ));
}

pub async fn a_quorum_counts_each_approver_once_and_the_call_runs_once(location: &StoreLocation) {
    let store = open(location).await;
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
    let voters: Vec<&str> = second.votes.iter().map(|v| v.approver.as_str()).collect();
    assert_eq!(voters, ["grace", "linus"], "in the order they voted");
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

pub async fn the_user_a_call_acts_for_may_not_approve_it_unless_the_policy_allows(
    location: &StoreLocation,
) {
    let store = open(location).await;
    let held = store.create(call(1)).await.expect("staged");
    let own = store
        .decide(&held.id, "ada", Verdict::Approve, None, false, NOW + 1)
        .await;
    assert!(matches!(own, Err(ApprovalError::OwnCall { .. })));
    // The same user written otherwise is the same user.
    let shouted = store
        .decide(&held.id, "ADA", Verdict::Approve, None, false, NOW + 1)
        .await;
    assert!(
        matches!(shouted, Err(ApprovalError::OwnCall { .. })),
        "{shouted:?}"
    );
    // The agent that made the call never approves it, even where the
    // user may.
    for own_allowed in [false, true] {
        let agent = store
            .decide(
                &held.id,
                "Billing-Bot",
                Verdict::Approve,
                None,
                own_allowed,
                NOW + 1,
            )
            .await;
        assert!(
            matches!(agent, Err(ApprovalError::AgentsOwnCall { .. })),
            "{agent:?}"
        );
    }
    let after = store.get(&held.id).await.expect("get");
    assert_eq!(after.status, Status::Pending);
    assert!(after.votes.is_empty(), "a refused vote is not counted");
    let allowed = store
        .decide(&held.id, "ada", Verdict::Approve, None, true, NOW + 2)
        .await
        .expect("allowed");
    assert_eq!(allowed.status, Status::Approved);
}

pub async fn late_decisions_find_it_expired_and_withdrawn_calls_never_run(
    location: &StoreLocation,
) {
    let store = open(location).await;
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
    let expired = store.get(&held.id).await.expect("get");
    assert_eq!(expired.status, Status::Expired, "marked by the late vote");
    assert!(expired.votes.is_empty(), "the late vote is not counted");
    let swept = store.create(call(1)).await.expect("staged");
    assert_eq!(
        store.expire_due(NOW + 600_001).await.expect("expire"),
        vec![swept.id.clone()]
    );
    assert!(
        store
            .expire_due(NOW + 600_002)
            .await
            .expect("expire")
            .is_empty()
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

pub async fn a_repeated_call_finds_its_approval_and_pending_ones_survive_a_restart(
    location: &StoreLocation,
) {
    let held = {
        let store = open(location).await;
        store.create(call(1)).await.expect("staged")
    };
    let store = open(location).await;
    assert_eq!(
        store.get(&held.id).await.expect("survives").status,
        Status::Pending
    );
    let same = store
        .find_same_call(&call(1), &held.arguments_digest)
        .await
        .expect("query")
        .expect("found");
    assert_eq!(same.id, held.id);
    assert_eq!(same, held, "stored whole");
    assert!(
        store
            .find_same_call(&call(1), &"0".repeat(64))
            .await
            .expect("query")
            .is_none(),
        "other arguments are another approval"
    );
    let elsewhere = |edit: fn(&mut NewApproval)| {
        let mut other = call(1);
        edit(&mut other);
        other
    };
    for (other, what) in [
        (
            elsewhere(|c| c.agent_session = "s-2".into()),
            "another session's",
        ),
        (elsewhere(|c| c.route = "/prod".into()), "another route's"),
        (
            elsewhere(|c| c.principal_agent = "other-bot".into()),
            "another agent's",
        ),
        (
            elsewhere(|c| c.principal_user = Some("eve".into())),
            "another user's",
        ),
        (
            elsewhere(|c| c.principal_user = None),
            "a call for nobody's",
        ),
    ] {
        assert!(
            store
                .find_same_call(&other, &held.arguments_digest)
                .await
                .expect("query")
                .is_none(),
            "{what} call is another approval"
        );
    }

    assert_eq!(
        store
            .list(Some(Status::Pending), 10)
            .await
            .expect("list")
            .len(),
        1
    );
    let mut other = call(1);
    other.agent_session = "s-2".into();
    let newer = store.create(other).await.expect("staged");
    let all = store.list(None, 10).await.expect("list");
    let ids: Vec<&str> = all.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, [newer.id.as_str(), held.id.as_str()], "newest first");
    assert_eq!(store.list(None, 1).await.expect("list").len(), 1);
    assert!(
        store
            .list(Some(Status::Approved), 10)
            .await
            .expect("list")
            .is_empty()
    );
}

pub async fn a_decided_call_is_found_again_until_its_agent_is_told(location: &StoreLocation) {
    let store = open(location).await;
    let digest = |a: &warden_approvals::Approval| a.arguments_digest.clone();
    let found = |digest: String| {
        let store = store.clone();
        async move {
            store
                .find_same_call(&call(1), &digest)
                .await
                .expect("query")
                .map(|a| a.id)
        }
    };
    // Rejected: found (to tell the agent) until reported.
    let rejected = store.create(call(1)).await.expect("staged");
    store
        .decide(
            &rejected.id,
            "grace",
            Verdict::Reject,
            Some("no"),
            false,
            NOW + 1,
        )
        .await
        .expect("rejected");
    assert_eq!(found(digest(&rejected)).await, Some(rejected.id.clone()));
    store
        .mark_reported(&rejected.id, NOW + 2)
        .await
        .expect("reported");
    assert_eq!(found(digest(&rejected)).await, None);
    // Approved: found until it runs, then spent.
    let approved = store.create(call(1)).await.expect("staged anew");
    assert_ne!(approved.id, rejected.id);
    store
        .decide(
            &approved.id,
            "grace",
            Verdict::Approve,
            None,
            false,
            NOW + 3,
        )
        .await
        .expect("approved");
    assert_eq!(found(digest(&approved)).await, Some(approved.id.clone()));
    assert!(
        store
            .claim_execution(&approved.id, NOW + 4)
            .await
            .expect("claim")
    );
    assert_eq!(found(digest(&approved)).await, None);
    // Abandoned: never found (the agent hung up; its next call asks anew).
    let abandoned = store.create(call(1)).await.expect("staged anew");
    store
        .end(&abandoned.id, Status::Abandoned, NOW + 5)
        .await
        .expect("end");
    assert_eq!(found(digest(&abandoned)).await, None);
}

pub async fn identical_calls_at_once_attach_to_one_approval(location: &StoreLocation) {
    let replicas = [
        Arc::new(open(location).await),
        Arc::new(open(location).await),
    ];
    let creators: Vec<_> = (0..8)
        .map(|n| {
            let store = replicas[n % 2].clone();
            tokio::spawn(async move { store.create(call(1)).await })
        })
        .collect();
    let mut ids = Vec::new();
    for creator in creators {
        ids.push(creator.await.expect("task").expect("staged").id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one approval: {ids:?}");
    assert_eq!(
        replicas[0]
            .list(Some(Status::Pending), 10)
            .await
            .expect("list")
            .len(),
        1
    );
}

pub async fn two_approvers_at_once_and_two_replicas_run_the_call_exactly_once(
    location: &StoreLocation,
) {
    let replicas = [
        Arc::new(open(location).await),
        Arc::new(open(location).await),
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
        let decided = replicas[1].get(&held.id).await.expect("get");
        assert_eq!(decided.votes.len(), 1, "round {round}: one vote counted");
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

pub async fn a_decision_nobody_recorded_is_found_and_claimed_for_its_record_once(
    location: &StoreLocation,
) {
    let store = open(location).await;
    let replica = open(location).await;
    let by_cli = store.create(call(1)).await.expect("staged");
    let mut other = call(1);
    other.agent_session = "s-2".into();
    let by_api = store.create(other.clone()).await.expect("staged");
    other.agent_session = "s-3".into();
    let still_pending = store.create(other).await.expect("staged");
    store
        .decide(&by_cli.id, "grace", Verdict::Approve, None, false, NOW + 10)
        .await
        .expect("decided");
    store
        .note_decided_via(&by_cli.id, "cli")
        .await
        .expect("noted");
    store
        .decide(
            &by_api.id,
            "linus",
            Verdict::Reject,
            Some("no"),
            false,
            NOW + 20,
        )
        .await
        .expect("decided");
    // The API's decision is recorded at once, by the Warden that took it.
    assert!(
        store
            .mark_decision_recorded(&by_api.id, NOW + 21)
            .await
            .expect("marked")
    );

    // Decided too recently: not yet taken for unrecorded.
    assert!(
        store
            .unrecorded_decisions(NOW + 5, 10)
            .await
            .expect("found")
            .is_empty()
    );
    let found = store
        .unrecorded_decisions(NOW + 1000, 10)
        .await
        .expect("found");
    let ids: Vec<(&str, Option<&str>)> = found
        .iter()
        .map(|(a, via)| (a.id.as_str(), via.as_deref()))
        .collect();
    assert_eq!(
        ids,
        vec![(by_cli.id.as_str(), Some("cli"))],
        "pending and recorded ones are not listed"
    );
    assert_eq!(found[0].0.votes[0].approver, "grace");
    assert_eq!(found[0].0.status, Status::Approved);
    let _ = still_pending;

    // Two replicas' sweeps at once: one claims it.
    let (a, b) = tokio::join!(
        store.mark_decision_recorded(&by_cli.id, NOW + 1001),
        replica.mark_decision_recorded(&by_cli.id, NOW + 1001),
    );
    assert_eq!(
        [a.expect("claim"), b.expect("claim")]
            .iter()
            .filter(|w| **w)
            .count(),
        1,
        "exactly one sweep records it"
    );
    assert!(
        store
            .unrecorded_decisions(NOW + 2000, 10)
            .await
            .expect("found")
            .is_empty()
    );
}

pub async fn a_request_state_is_spent_once_across_replicas_and_forgotten_when_expired(
    location: &StoreLocation,
) {
    let store = open(location).await;
    let replica = open(location).await;
    let (a, b) = tokio::join!(
        store.spend_request_state("n-1", NOW + 100),
        replica.spend_request_state("n-1", NOW + 100),
    );
    assert_eq!(
        [a.expect("spend"), b.expect("spend")]
            .iter()
            .filter(|w| **w)
            .count(),
        1,
        "one of two replicas at once"
    );
    assert!(
        !store
            .spend_request_state("n-1", NOW + 100)
            .await
            .expect("spend")
    );
    assert!(
        store
            .spend_request_state("n-2", NOW + 500)
            .await
            .expect("spend")
    );
    assert_eq!(
        store
            .forget_spent_request_states(NOW + 100)
            .await
            .expect("forget"),
        1
    );
    // n-2 is still remembered; n-1 could not be presented any more.
    assert!(
        !replica
            .spend_request_state("n-2", NOW + 500)
            .await
            .expect("spend")
    );
}
