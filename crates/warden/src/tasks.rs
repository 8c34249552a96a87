//! Warden's own tasks: task-augmented `tools/call` (MCP 2025-11-25) that
//! Warden answers itself.
//!
//! A call sent with `params.task` that Warden holds for approval, or
//! refuses, previews or otherwise answers instead of the upstream, gets a
//! task created here: the agent is answered at once with a
//! `CreateTaskResult`, and `tasks/get`, `tasks/result`, `tasks/cancel` and
//! `tasks/list` are answered by Warden for these tasks. Calls the upstream
//! runs as its own tasks pass through untouched: Warden's task ids carry
//! [`TASK_ID_PREFIX`], anything else is the upstream's.
//!
//! Tasks live in memory (a restart forgets them; a held call's approval
//! itself is durable in the approval queue) and are bound to their caller:
//! the route, the principal and, in a stateful session, the MCP session.
//! Another caller asking for a task id gets "not found", as for an id that
//! never existed. Each task is kept for its `ttl` from creation (the
//! agent's, within [`MAX_TTL`]), then forgotten by the sweeper.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use warden_identity::Principal;
use warden_pipeline::TaskCanceller;

/// What every Warden task id starts with.
pub const TASK_ID_PREFIX: &str = "warden-task-";
/// The longest a task is kept after creation, whatever the agent asks.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a task is kept when the agent asks for no `ttl`.
const DEFAULT_TTL: Duration = Duration::from_secs(60 * 60);
/// The polling interval suggested to agents.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Most tasks kept at once; past it, new task-augmented calls are refused
/// until the sweeper frees room.
const MAX_TASKS: usize = 10_000;
/// Most tasks one caller (route and principal) keeps at once: one agent
/// cannot fill the board for everyone.
const MAX_TASKS_PER_CALLER: usize = 1_000;
/// The longest a task Warden answered at once (a refusal, a preview) is
/// kept: its answer is already given.
const ENDED_TTL: Duration = Duration::from_secs(10 * 60);
/// Most tasks one `tasks/list` page shows.
const PAGE: usize = 50;
/// `_meta` key tying a message to its task.
pub const META_RELATED_TASK: &str = "io.modelcontextprotocol/related-task";
/// `_meta` key of a `CreateTaskResult`: the text a host may hand the model
/// at once while the task runs.
pub const META_IMMEDIATE_RESPONSE: &str = "io.modelcontextprotocol/model-immediate-response";

/// Where a task stands (the spec's statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Being processed (for a held call: waiting for its approval).
    Working,
    /// Done; its result is the tool result.
    Completed,
    /// Done with an error: a JSON-RPC error, or a tool result with `isError`.
    Failed,
    /// Cancelled by the agent (`tasks/cancel`).
    Cancelled,
}

/// Who may see a task.
#[derive(Debug, Clone)]
pub struct TaskOwner {
    /// The route's index.
    pub route: usize,
    /// The caller.
    pub principal: Arc<Principal>,
    /// Warden's MCP session id (`None` in the stateless revision).
    pub session: Option<Arc<str>>,
}

/// Why a task request failed (each is a JSON-RPC `-32602` for the agent,
/// but for [`TaskError::Full`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// No task of this caller has this id (or it was forgotten).
    #[error("Failed to retrieve task: no task {0} (it may have expired)")]
    NotFound(String),
    /// The task has ended; it cannot be cancelled.
    #[error("Cannot cancel task {id}: it is already {status}")]
    Terminal {
        /// The task.
        id: String,
        /// Its terminal status.
        status: &'static str,
    },
    /// The board is full.
    #[error("Warden holds too many tasks right now; retry later")]
    Full,
    /// A `tasks/list` cursor Warden did not hand out.
    #[error("Invalid cursor for tasks/list")]
    BadCursor,
}

/// The final answer of a task: what the underlying `tools/call` would have
/// returned.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskAnswer {
    /// A JSON-RPC result (a `CallToolResult`).
    Result(Value),
    /// A JSON-RPC error object.
    Error(Value),
}

struct Entry {
    owner: TaskOwner,
    status: TaskStatus,
    message: String,
    created: SystemTime,
    updated: SystemTime,
    ttl: Duration,
    answer: Option<TaskAnswer>,
    /// What `tasks/cancel` withdraws.
    held: Option<HeldCall>,
    /// The call has been sent to the upstream: a cancel can no longer
    /// stop it.
    running: bool,
    changed: tokio::sync::watch::Sender<u64>,
}

/// The held call a task runs, as `tasks/cancel` withdraws it.
#[derive(Debug)]
pub struct HeldCall {
    /// The tool called.
    pub tool: String,
    /// The call's agent session, as the approval wakeups know it.
    pub agent_session: String,
    /// The call's JSON-RPC id (JSON text).
    pub request_id: String,
    /// Tells the call's hold, whatever it is doing: a cancel that comes
    /// before the hold has staged its approval is not lost.
    pub canceller: TaskCanceller,
}

/// The tasks Warden answers for itself.
#[derive(Default)]
pub struct TaskBoard {
    tasks: Mutex<HashMap<String, Entry>>,
}

/// A task as the agent sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// The task's JSON (`taskId`, `status`, `statusMessage`, `createdAt`,
    /// `lastUpdatedAt`, `ttl`, `pollInterval`).
    pub task: Value,
    /// Where it stands.
    pub status: TaskStatus,
}

// === impl TaskStatus ===

impl TaskStatus {
    /// The status as the protocol spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Working => "working",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the task has ended.
    pub fn is_terminal(self) -> bool {
        self != TaskStatus::Working
    }
}

// === impl TaskOwner ===

impl TaskOwner {
    fn owns(&self, entry: &Entry) -> bool {
        self.route == entry.owner.route
            && self.session == entry.owner.session
            && self.principal.same_caller(&entry.owner.principal)
    }
}

// === impl TaskAnswer ===

impl TaskAnswer {
    /// The answer carried by a JSON-RPC response message (`None` if the
    /// message is neither a result nor an error).
    pub fn of_response(message: &[u8]) -> Option<TaskAnswer> {
        let mut value: Value = serde_json::from_slice(message).ok()?;
        if let Some(error) = value.get_mut("error").filter(|e| !e.is_null()) {
            return Some(TaskAnswer::Error(error.take()));
        }
        value
            .get_mut("result")
            .map(|r| TaskAnswer::Result(r.take()))
    }

    /// The status a task ends in with this answer.
    fn status(&self) -> TaskStatus {
        match self {
            TaskAnswer::Error(_) => TaskStatus::Failed,
            TaskAnswer::Result(result) => {
                if result.get("isError").and_then(Value::as_bool) == Some(true) {
                    TaskStatus::Failed
                } else {
                    TaskStatus::Completed
                }
            }
        }
    }

    /// The `tasks/result` response for task `task_id`, answering request `id_json`.
    pub fn to_response(&self, id_json: &str, task_id: &str) -> Vec<u8> {
        let id: Value = serde_json::from_str(id_json).unwrap_or(Value::Null);
        let message = match self {
            TaskAnswer::Result(result) => {
                let mut result = result.clone();
                if let Some(object) = result.as_object_mut() {
                    let meta = object
                        .entry("_meta")
                        .or_insert_with(|| Value::Object(serde_json::Map::new()));
                    if let Some(meta) = meta.as_object_mut() {
                        meta.insert(META_RELATED_TASK.into(), json!({"taskId": task_id}));
                    }
                }
                json!({"jsonrpc": "2.0", "id": id, "result": result})
            }
            TaskAnswer::Error(error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
        };
        serde_json::to_vec(&message).unwrap_or_default()
    }
}

fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn new_task_id() -> String {
    let mut bytes = [0u8; 16];
    // A task id names a caller's work: unguessable, though ownership is
    // checked anyway.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{TASK_ID_PREFIX}{hex}")
}

fn view(id: &str, entry: &Entry) -> TaskView {
    TaskView {
        task: json!({
            "taskId": id,
            "status": entry.status.as_str(),
            "statusMessage": entry.message,
            "createdAt": timestamp(entry.created),
            "lastUpdatedAt": timestamp(entry.updated),
            "ttl": millis(entry.ttl),
            "pollInterval": millis(POLL_INTERVAL),
        }),
        status: entry.status,
    }
}

// === impl TaskBoard ===

impl TaskBoard {
    /// Whether `id` names one of Warden's tasks (rather than the upstream's).
    pub fn is_wardens(id: &str) -> bool {
        id.starts_with(TASK_ID_PREFIX)
    }

    /// Create a working task for `owner`, kept for `ttl_ms` (the agent's
    /// request, capped) and saying `message`; `held` is the held call
    /// `tasks/cancel` withdraws.
    pub fn create(
        &self,
        owner: TaskOwner,
        ttl_ms: Option<u64>,
        message: String,
        held: Option<HeldCall>,
    ) -> Result<(String, TaskView), TaskError> {
        let ttl = ttl_ms
            .map_or(DEFAULT_TTL, Duration::from_millis)
            .min(MAX_TTL);
        let mut tasks = self.lock();
        if tasks.len() >= MAX_TASKS {
            return Err(TaskError::Full);
        }
        let theirs = tasks
            .values()
            .filter(|e| {
                e.owner.route == owner.route && e.owner.principal.same_caller(&owner.principal)
            })
            .count();
        if theirs >= MAX_TASKS_PER_CALLER {
            return Err(TaskError::Full);
        }
        let now = SystemTime::now();
        let id = new_task_id();
        let entry = Entry {
            owner,
            status: TaskStatus::Working,
            message,
            created: now,
            updated: now,
            ttl,
            answer: None,
            held,
            running: false,
            changed: tokio::sync::watch::channel(0).0,
        };
        let shown = view(&id, &entry);
        tasks.insert(id.clone(), entry);
        Ok((id, shown))
    }

    /// A task that has already ended with `answer` (a call Warden answered
    /// itself).
    pub fn create_ended(
        &self,
        owner: TaskOwner,
        ttl_ms: Option<u64>,
        answer: TaskAnswer,
        message: String,
    ) -> Result<(String, TaskView), TaskError> {
        let ttl = ttl_ms.map_or(millis(ENDED_TTL), |t| t.min(millis(ENDED_TTL)));
        let (id, _) = self.create(owner, Some(ttl), message.clone(), None)?;
        self.finish(&id, answer, message);
        let tasks = self.lock();
        let entry = tasks.get(&id).ok_or(TaskError::Full)?;
        Ok((id.clone(), view(&id, entry)))
    }

    /// The task ends with `answer` (a task already cancelled stays so, and
    /// keeps the answer it had).
    pub fn finish(&self, id: &str, answer: TaskAnswer, message: String) {
        let mut tasks = self.lock();
        let Some(entry) = tasks.get_mut(id) else {
            return;
        };
        if entry.status.is_terminal() {
            return;
        }
        entry.status = answer.status();
        entry.answer = Some(answer);
        entry.message = message;
        entry.updated = SystemTime::now();
        entry.changed.send_modify(|v| *v += 1);
    }

    /// The approved call has been sent to the upstream: a cancel can no
    /// longer stop it, and says so.
    pub fn mark_running(&self, id: &str, message: String) {
        let mut tasks = self.lock();
        if let Some(entry) = tasks.get_mut(id).filter(|e| !e.status.is_terminal()) {
            entry.message = message;
            entry.running = true;
            entry.updated = SystemTime::now();
            entry.changed.send_modify(|v| *v += 1);
        }
    }

    /// `tasks/get`.
    pub fn get(&self, id: &str, owner: &TaskOwner) -> Result<TaskView, TaskError> {
        let tasks = self.lock();
        match tasks.get(id) {
            Some(entry) if owner.owns(entry) => Ok(view(id, entry)),
            _ => Err(TaskError::NotFound(id.to_owned())),
        }
    }

    /// `tasks/cancel`: the task is cancelled now, answering `answer` (made
    /// for the held call's tool) from then on. Its held call (if any) is told, and returned as (agent
    /// session, JSON-RPC id) for a withdrawal now, if it waits already.
    pub fn cancel(
        &self,
        id: &str,
        owner: &TaskOwner,
        answer: impl FnOnce(&str) -> TaskAnswer,
    ) -> Result<(TaskView, Option<(String, String)>), TaskError> {
        let mut tasks = self.lock();
        let entry = match tasks.get_mut(id) {
            Some(entry) if owner.owns(entry) => entry,
            _ => return Err(TaskError::NotFound(id.to_owned())),
        };
        if entry.status.is_terminal() {
            return Err(TaskError::Terminal {
                id: id.to_owned(),
                status: entry.status.as_str(),
            });
        }
        entry.status = TaskStatus::Cancelled;
        if entry.running {
            // Too late to stop: say so, rather than "not run".
            entry.message = "The task was cancelled, but its call had already been sent to the upstream and may have run; Warden cannot undo it.".to_owned();
            entry.answer = Some(TaskAnswer::Error(serde_json::json!({
                "code": warden_protocol::jsonrpc::INTERNAL_ERROR,
                "message": entry.message,
            })));
        } else {
            entry.message = "The task was cancelled by request; the call was not run.".to_owned();
            entry.answer = Some(answer(entry.held.as_ref().map_or("", |h| h.tool.as_str())));
        }
        entry.updated = SystemTime::now();
        entry.changed.send_modify(|v| *v += 1);
        let held = entry.held.as_ref().map(|held| {
            held.canceller.cancel();
            (held.agent_session.clone(), held.request_id.clone())
        });
        Ok((view(id, entry), held))
    }

    /// Changes to task `id` (for a waiting `tasks/result`), if `owner` may
    /// see it.
    pub fn watch(
        &self,
        id: &str,
        owner: &TaskOwner,
    ) -> Result<tokio::sync::watch::Receiver<u64>, TaskError> {
        let tasks = self.lock();
        match tasks.get(id) {
            Some(entry) if owner.owns(entry) => Ok(entry.changed.subscribe()),
            _ => Err(TaskError::NotFound(id.to_owned())),
        }
    }

    /// The task's state and, once it has ended, its answer.
    pub fn outcome(
        &self,
        id: &str,
        owner: &TaskOwner,
    ) -> Result<(TaskView, Option<TaskAnswer>), TaskError> {
        let tasks = self.lock();
        match tasks.get(id) {
            Some(entry) if owner.owns(entry) => Ok((view(id, entry), entry.answer.clone())),
            _ => Err(TaskError::NotFound(id.to_owned())),
        }
    }

    /// `tasks/list`: `owner`'s tasks, oldest first, a page at a time; the
    /// cursor is the last id of the previous page.
    pub fn list(
        &self,
        owner: &TaskOwner,
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), TaskError> {
        let tasks = self.lock();
        let mut mine: Vec<(&String, &Entry)> =
            tasks.iter().filter(|(_, e)| owner.owns(e)).collect();
        mine.sort_by(|a, b| a.1.created.cmp(&b.1.created).then(a.0.cmp(b.0)));
        let start = match cursor {
            None => 0,
            Some(after) => {
                mine.iter()
                    .position(|(id, _)| id.as_str() == after)
                    .ok_or(TaskError::BadCursor)?
                    + 1
            }
        };
        let page: Vec<(&String, &Entry)> = mine.iter().skip(start).take(PAGE).copied().collect();
        let next = (start + page.len() < mine.len())
            .then(|| page.last().map(|(id, _)| (*id).clone()))
            .flatten();
        Ok((page.iter().map(|(id, e)| view(id, e).task).collect(), next))
    }

    /// Forget tasks whose `ttl` has passed; how many were forgotten. A
    /// task forgotten while its call is still held withdraws the call
    /// first: nobody could read its result any more, so it must not run.
    pub fn sweep(&self, now: SystemTime) -> usize {
        let mut tasks = self.lock();
        let before = tasks.len();
        tasks.retain(|id, e| {
            let keep = now
                .duration_since(e.created)
                .map_or(true, |age| age < e.ttl);
            if !keep
                && !e.status.is_terminal()
                && let Some(held) = &e.held
            {
                tracing::info!(task = %id, tool = %held.tool, "A task's ttl passed while its call was held; the call is withdrawn.");
                held.canceller.cancel();
            }
            keep
        });
        before - tasks.len()
    }

    /// Forget every task of MCP session `session` on route `route`, which
    /// has ended: nobody can ask for them any more. A call still held for
    /// one is withdrawn first, so it never runs unread. How many went.
    pub fn end_session(&self, route: usize, session: &str) -> usize {
        let mut tasks = self.lock();
        let before = tasks.len();
        tasks.retain(|id, e| {
            let of_session =
                e.owner.route == route && e.owner.session.as_deref() == Some(session);
            if of_session
                && !e.status.is_terminal()
                && let Some(held) = &e.held
            {
                tracing::info!(task = %id, tool = %held.tool, session, "The MCP session of a task ended while its call was held; the call is withdrawn.");
                held.canceller.cancel();
            }
            !of_session
        });
        before - tasks.len()
    }

    /// How many tasks are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no task is kept.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(agent: &str, session: &str) -> TaskOwner {
        TaskOwner {
            route: 0,
            principal: Arc::new(Principal {
                agent: agent.into(),
                on_behalf_of: None,
                groups: Vec::new(),
                method: warden_identity::AuthMethod::ApiKey,
            }),
            session: Some(session.into()),
        }
    }

    #[test]
    fn a_task_is_seen_only_by_its_caller_and_ends_once() {
        let board = TaskBoard::default();
        let me = owner("agent-a", "s1");
        let (id, created) = board
            .create(me.clone(), Some(1000), "waiting".into(), None)
            .expect("created");
        assert!(TaskBoard::is_wardens(&id));
        assert_eq!(created.task["status"], "working");
        assert_eq!(created.task["ttl"], 1000);
        assert!(created.task["createdAt"].as_str().is_some());
        for other in [owner("agent-b", "s1"), owner("agent-a", "s2")] {
            assert_eq!(board.get(&id, &other), Err(TaskError::NotFound(id.clone())));
        }
        board.finish(
            &id,
            TaskAnswer::Result(json!({"content": [], "isError": true})),
            "rejected".into(),
        );
        assert_eq!(
            board.get(&id, &me).expect("mine").status,
            TaskStatus::Failed
        );
        // Terminal: cancel is refused, finish changes nothing.
        assert!(matches!(
            board.cancel(&id, &me, |_| TaskAnswer::Error(json!({}))),
            Err(TaskError::Terminal { .. })
        ));
        board.finish(&id, TaskAnswer::Result(json!({})), "again".into());
        let (shown, answer) = board.outcome(&id, &me).expect("mine");
        assert_eq!(shown.task["statusMessage"], "rejected");
        assert_eq!(
            answer,
            Some(TaskAnswer::Result(json!({"content": [], "isError": true})))
        );
        let response: Value =
            serde_json::from_slice(&answer.expect("answer").to_response("7", &id)).expect("json");
        assert_eq!(response["id"], 7);
        assert_eq!(response["result"]["_meta"][META_RELATED_TASK]["taskId"], id);
    }

    #[test]
    fn a_task_forgotten_while_its_call_is_held_withdraws_the_call() {
        let board = TaskBoard::default();
        let me = owner("agent-a", "s1");
        let (canceller, cancel) = warden_pipeline::task_cancel();
        let held = HeldCall {
            tool: "pay".into(),
            agent_session: "s1".into(),
            request_id: "7".into(),
            canceller,
        };
        board
            .create(me.clone(), Some(1_000), "waiting".into(), Some(held))
            .expect("created");
        assert_eq!(board.sweep(SystemTime::now()), 0, "not yet");
        assert!(!cancel.is_cancelled());
        assert_eq!(board.sweep(SystemTime::now() + Duration::from_secs(2)), 1);
        assert!(cancel.is_cancelled(), "the held call is told to withdraw");
    }

    #[test]
    fn an_ended_session_takes_its_tasks_and_withdraws_their_held_calls_only() {
        let board = TaskBoard::default();
        let me = owner("agent-a", "s1");
        let (canceller, cancel) = warden_pipeline::task_cancel();
        let held = HeldCall {
            tool: "pay".into(),
            agent_session: "s1".into(),
            request_id: "7".into(),
            canceller,
        };
        board
            .create(me.clone(), None, "waiting".into(), Some(held))
            .expect("created");
        board
            .create_ended(me, None, TaskAnswer::Result(json!({})), "done".into())
            .expect("created");
        let (other_canceller, other_cancel) = warden_pipeline::task_cancel();
        let other = HeldCall {
            tool: "pay".into(),
            agent_session: "s2".into(),
            request_id: "7".into(),
            canceller: other_canceller,
        };
        let (kept, _) = board
            .create(owner("agent-a", "s2"), None, "waiting".into(), Some(other))
            .expect("created");
        assert_eq!(board.end_session(1, "s1"), 0, "another route's session");
        assert_eq!(board.end_session(0, "s1"), 2);
        assert!(cancel.is_cancelled(), "the held call is told to withdraw");
        assert!(!other_cancel.is_cancelled(), "another session's is not");
        assert_eq!(board.len(), 1);
        assert!(board.get(&kept, &owner("agent-a", "s2")).is_ok());
    }

    #[test]
    fn a_cancelled_task_stays_cancelled_and_the_list_pages() {
        let board = TaskBoard::default();
        let me = owner("agent-a", "s1");
        let (canceller, cancel) = warden_pipeline::task_cancel();
        let (id, _) = board
            .create(
                me.clone(),
                None,
                "waiting".into(),
                Some(HeldCall {
                    tool: "send_invoice".into(),
                    agent_session: "s1".into(),
                    request_id: "3".into(),
                    canceller,
                }),
            )
            .expect("created");
        let (shown, held) = board
            .cancel(&id, &me, |tool| {
                TaskAnswer::Result(json!({"isError": true, "tool": tool}))
            })
            .expect("cancelled");
        assert_eq!(shown.task["status"], "cancelled");
        assert_eq!(held, Some(("s1".into(), "3".into())));
        assert!(cancel.is_cancelled(), "the held call is told");
        let (_, answer) = board.outcome(&id, &me).expect("mine");
        assert_eq!(
            answer,
            Some(TaskAnswer::Result(
                json!({"isError": true, "tool": "send_invoice"})
            )),
            "the answer names the tool"
        );
        board.finish(
            &id,
            TaskAnswer::Result(json!({"isError": false})),
            "ran".into(),
        );
        assert_eq!(
            board.get(&id, &me).expect("mine").status,
            TaskStatus::Cancelled
        );
        for _ in 0..(PAGE + 3) {
            board
                .create(me.clone(), None, "w".into(), None)
                .expect("created");
        }
        let (first, next) = board.list(&me, None).expect("page");
        assert_eq!(first.len(), PAGE);
        let (second, last) = board.list(&me, next.as_deref()).expect("page");
        assert_eq!(second.len(), 4);
        assert_eq!(last, None);
        assert_eq!(board.list(&me, Some("nope")), Err(TaskError::BadCursor));
        assert_eq!(
            board.list(&owner("x", "s1"), None).expect("none").0.len(),
            0
        );
        // Swept once their ttl has passed.
        assert_eq!(board.sweep(SystemTime::now() + MAX_TTL), PAGE + 4);
        assert!(board.is_empty());
    }
}
