//! Two `warden run` processes (the built binary) sharing one approval
//! queue in PostgreSQL (a schema of the test's own on the machine's
//! server), in front of one demo upstream: a call held on one replica is
//! decided through the other's admin API and completes, run once; two
//! approvers deciding at the same moment on the two replicas take one
//! decision and run the call once; a pending approval outlives the
//! replica that held it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use warden_approvals::{Status, Store, StoreLocation};
use warden_demo::Demo;

use crate::lifecycle::KillOnDrop;
use crate::support::*;

const GRACE: &str = "wdn_approver-grace-token-0123456789abcdefghijkl";
const LINUS: &str = "wdn_approver-linus-token-0123456789abcdefghijkl";

/// One `warden run` process.
struct Replica {
    child: KillOnDrop,
    mcp: String,
    admin: String,
    log: PathBuf,
}

/// Two replicas on one queue, the upstream they share, and the schema.
struct Replicas {
    a: Replica,
    b: Replica,
    demo: Arc<Demo>,
    upstream: String,
    schema: PgSchema,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Replica {
    /// `warden run` with config `name.yaml` in `dir` (the queue in
    /// `schema`); once both its listeners listen.
    async fn start(dir: &Path, name: &str, upstream: &str, schema: &str) -> Replica {
        let (port, admin) = (free_port(), free_port());
        let sha = warden_identity::api_key::digest_hex;
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "version: 1\nlisten: 127.0.0.1:{port}\nadmin: 127.0.0.1:{admin}\nworkers: 2\n\
                 approvals:\n  store: {POSTGRES}\n  schema: {schema}\n  hold_budget: 15s\n  approvers:\n\
                 \x20   - name: grace\n      sha256: {}\n    - name: linus\n      sha256: {}\n\
                 routes:\n  - path: /mcp\n    upstream:\n      url: {upstream}\n    policy: p.yaml\n",
                sha(GRACE),
                sha(LINUS),
            ),
        )
        .expect("config");
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args(["run", "--config"])
            .arg(&config)
            // The forwarding of other replicas' decisions logs at debug.
            .env("WARDEN_LOG", "info,warden::approvals=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("warden starts");
        let replica = Replica {
            child: KillOnDrop(child),
            mcp: format!("http://127.0.0.1:{port}/mcp"),
            admin: format!("http://127.0.0.1:{admin}"),
            log,
        };
        wait_listening(port).await;
        wait_listening(admin).await;
        replica
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An admin API request as `token`.
    async fn admin(
        &self,
        method: http::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.admin);
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(
                body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())),
            ))
            .expect("request");
        let reply = Agent::new(&url).send(request).await;
        (
            reply.status,
            serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
        )
    }

    /// The id of the first pending approval, as this replica lists it,
    /// once there is one (10 s at most).
    async fn staged(&self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, queue) = self
                .admin(http::Method::GET, "/approvals?status=pending", GRACE, None)
                .await;
            if let Some(id) = queue.get(0).and_then(|a| a["id"].as_str()) {
                return id.to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never staged: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Replicas {
    /// Two replicas in front of one demo upstream, `send_invoice` held
    /// for one approval.
    async fn start(tag: &str) -> Replicas {
        let schema = PgSchema::new(tag);
        let (upstream, demo) = demo_upstream().await;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("p.yaml"),
            "version: 1\ntools:\n  send_invoice:\n    tier: approve\n    timeout: 10m\n",
        )
        .expect("policy");
        // One after the other: the first creates the schema, the second
        // finds it migrated (both at once is a store test).
        let a = Replica::start(dir.path(), "a", &upstream, &schema.0).await;
        let b = Replica::start(dir.path(), "b", &upstream, &schema.0).await;
        Replicas {
            a,
            b,
            demo,
            upstream,
            schema,
            _dir: dir,
        }
    }

    async fn store(&self) -> Store {
        Store::open(&StoreLocation::postgres(POSTGRES, &self.schema.0).expect("location"))
            .await
            .expect("the queue opens")
    }
}

/// A `tools/call` to `send_invoice` on a session of `replica`, sent from a
/// task of its own (it is held), returning the reply when it comes.
async fn held_call(replica: &Replica, amount: u64) -> tokio::task::JoinHandle<Reply> {
    let mut agent = Agent::new(&replica.mcp);
    agent.initialize().await;
    tokio::spawn(async move {
        agent
            .post(&json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "send_invoice", "arguments": {"customer_id": 1, "amount_cents": amount}}}))
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_one_replica_wakes_the_call_held_on_the_other_and_it_runs_once() {
    let replicas = Replicas::start("wake").await;
    let (a, b) = (&replicas.a, &replicas.b);
    let waiting = held_call(a, 500).await;
    // B lists what A holds: one queue.
    let id = b.staged().await;
    let (status, decided) = b
        .admin(
            http::Method::POST,
            &format!("/approvals/{id}/approve"),
            GRACE,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["status"], "approved");
    let reply = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the held call completes")
        .expect("task");
    let result = reply.response()["result"].clone();
    assert_eq!(result["isError"], Value::Null, "{result}");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Invoice for $5.00 sent")),
        "the upstream's own result: {result}"
    );
    assert_eq!(replicas.demo.invoices_sent(), 1, "the upstream ran it once");
    // A heard B's decision (LISTEN/NOTIFY), not only its own polling.
    let log = a.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&id) && l.contains("Decision notified")),
        "{log}"
    );
    let stored = replicas.store().await.get(&id).await.expect("stored");
    assert_eq!(stored.status, Status::Approved);
    assert!(stored.executed_ms.is_some(), "marked as run");
    assert_eq!(stored.votes.len(), 1);
    assert_eq!(stored.votes[0].approver, "grace");
    // Decided once, on either replica.
    let (status, _) = a
        .admin(
            http::Method::POST,
            &format!("/approvals/{id}/approve"),
            LINUS,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(replicas.demo.invoices_sent(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvers_at_the_same_moment_on_two_replicas_take_one_decision_and_one_run() {
    let replicas = Replicas::start("race").await;
    let (a, b) = (&replicas.a, &replicas.b);
    let waiting = held_call(a, 600).await;
    let id = a.staged().await;
    let path = format!("/approvals/{id}/approve");
    let ((first, _), (second, _)) = tokio::join!(
        a.admin(http::Method::POST, &path, GRACE, None),
        b.admin(http::Method::POST, &path, LINUS, None),
    );
    let mut statuses = [first, second];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "one decision took effect, the other found it decided"
    );
    let reply = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the held call completes")
        .expect("task");
    assert_eq!(reply.response()["result"]["isError"], Value::Null);
    assert_eq!(replicas.demo.invoices_sent(), 1, "run exactly once");
    let stored = replicas.store().await.get(&id).await.expect("stored");
    assert_eq!(stored.status, Status::Approved);
    assert!(stored.executed_ms.is_some());
    assert_eq!(stored.votes.len(), 1, "one vote counted: {stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_approval_outlives_the_replica_that_held_it() {
    let mut replicas = Replicas::start("restart").await;
    let waiting = held_call(&replicas.a, 700).await;
    let id = replicas.a.staged().await;
    // A stops (its waiting request is cut, or abandons its approval if
    // it can still write); stopped hard, it cannot.
    replicas.a.child.kill().expect("kill");
    let _ = replicas.a.child.wait();
    let cut = waiting.await;
    assert!(cut.is_err(), "the held request died with its replica");
    let (status, approval) = replicas
        .b
        .admin(http::Method::GET, &format!("/approvals/{id}"), GRACE, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(approval["status"], "pending", "{approval}");
    // Back again, the replica sees it and can decide it.
    let dir = replicas.a.log.parent().expect("dir").to_path_buf();
    replicas.a = Replica::start(&dir, "a", &replicas.upstream, &replicas.schema.0).await;
    let (status, decided) = replicas
        .a
        .admin(
            http::Method::POST,
            &format!("/approvals/{id}/reject"),
            GRACE,
            Some(json!({"reason": "not after a restart"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["status"], "rejected");
    assert_eq!(replicas.demo.invoices_sent(), 0);
}
