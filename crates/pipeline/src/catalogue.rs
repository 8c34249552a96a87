//! The upstream's tool catalogue, and `tools/list` filtering.
//!
//! Warden decides on a tool with what the upstream itself says about it
//! (`annotations.readOnlyHint`), so it keeps, per agent session, the tools the
//! upstream listed. A `tools/list` reply that passes through Warden feeds the
//! catalogue and is filtered with the policy: a tool the caller may not call
//! is not shown. When the agent calls a tool Warden has not seen listed,
//! Warden fetches the catalogue itself before deciding.
//!
//! A mutating tool's `inputSchema` gets a boolean `dryRun` property as the
//! agent sees it (see `crate::dry_run`); each tool's own schema is kept,
//! interned (many sessions list the same schemas), to validate dry runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use serde_json::Value;
use warden_policy::{Caller, Decision, Policy, Tier, ToolFacts};

/// Why a `tools/list` reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// The reply is not JSON.
    #[error("tools/list reply is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The reply is JSON but not a tools/list result.
    #[error("tools/list reply has no result.tools array")]
    NotAToolList,
}

/// The tools an upstream listed for one session.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    tools: HashMap<String, ToolFacts>,
    schemas: HashMap<String, Arc<str>>,
    /// Tools the upstream runs as tasks itself (`execution.taskSupport`
    /// `optional` or `required`).
    task_tools: std::collections::HashSet<String>,
}

impl Catalogue {
    /// What the upstream said about `tool`, if it listed it.
    pub fn facts(&self, tool: &str) -> Option<ToolFacts> {
        self.tools.get(tool).copied()
    }

    /// The tool's `inputSchema` as the upstream listed it (JSON text).
    pub fn input_schema(&self, tool: &str) -> Option<Arc<str>> {
        self.schemas.get(tool).cloned()
    }

    /// Whether the upstream runs `tool` as a task itself when asked.
    pub fn runs_as_task(&self, tool: &str) -> bool {
        self.task_tools.contains(tool)
    }

    /// Add one listed page (pages of a paginated list accumulate).
    pub fn merge(&mut self, page: &ListedPage) {
        for (name, facts) in &page.tools {
            self.tools.insert(name.clone(), *facts);
        }
        for name in &page.task_tools {
            self.task_tools.insert(name.clone());
        }
        for (name, schema) in &page.schemas {
            self.schemas.insert(name.clone(), schema.clone());
        }
    }

    /// How many tools are known.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether no tool is known.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// One page of a `tools/list` result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListedPage {
    /// Every tool on the page with what the upstream says about it.
    pub tools: Vec<(String, ToolFacts)>,
    /// The tools' `inputSchema`s, as JSON text (interned).
    pub schemas: Vec<(String, Arc<str>)>,
    /// The tools the upstream runs as tasks itself.
    pub task_tools: Vec<String>,
    /// The cursor of the next page, if any.
    pub next_cursor: Option<String>,
}

/// What a `tools/list` reply message turned out to be.
#[derive(Debug)]
pub enum ListReply {
    /// A result page; `filtered` is the message to forward when the policy
    /// hid a tool or Warden added `dryRun` to one (`None`: forward the
    /// original bytes).
    Page {
        /// The page as the upstream listed it.
        page: ListedPage,
        /// The rewritten message, when anything was hidden.
        filtered: Option<Bytes>,
    },
    /// A JSON-RPC error: forward it unchanged.
    Error,
}

/// Read a `tools/list` response message without filtering it
/// (`None` for a JSON-RPC error).
pub fn read_page(message: &[u8]) -> Result<Option<ListedPage>, CatalogueError> {
    let mut value: Value = serde_json::from_slice(message)?;
    inspect(&mut value, |_, _| Shown::AsListed).map(|inspected| inspected.map(|(page, _)| page))
}

/// Read a `tools/list` response message and hide what `policy` refuses `caller`.
pub fn filter_tools_list(
    message: &[u8],
    policy: &Policy,
    caller: &Caller<'_>,
) -> Result<ListReply, CatalogueError> {
    let mut value: Value = serde_json::from_slice(message)?;
    let Some((page, hidden)) = inspect(&mut value, |name, facts| {
        match policy.decide(name, Some(facts), caller) {
            Decision::Deny { .. } => Shown::Hidden,
            Decision::Allow { tier: Tier::Read } => Shown::AsListed,
            Decision::Allow {
                tier: Tier::Approve,
            } => Shown::Held,
            Decision::Allow { .. } => Shown::WithDryRun,
        }
    })?
    else {
        return Ok(ListReply::Error);
    };
    let filtered = if hidden {
        Some(Bytes::from(serde_json::to_vec(&value)?))
    } else {
        None
    };
    Ok(ListReply::Page { page, filtered })
}

/// How a listed tool is shown to the agent.
enum Shown {
    /// Not at all: the caller may not call it.
    Hidden,
    /// As the upstream listed it.
    AsListed,
    /// With a `dryRun` property added to its `inputSchema` (a mutating tool).
    WithDryRun,
    /// With `dryRun`, and `execution.taskSupport: "optional"` unless the
    /// upstream runs it as a task itself (a held tool: Warden runs the
    /// hold as a task).
    Held,
}

/// Most distinct schemas interned before the table starts afresh (what
/// catalogues hold stays alive; only sharing is lost).
const MAX_INTERNED: usize = 4096;

/// One shared copy of each schema text.
fn intern(text: String) -> Arc<str> {
    static INTERNED: LazyLock<Mutex<HashSet<Arc<str>>>> = LazyLock::new(Mutex::default);
    let mut interned = INTERNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(found) = interned.get(text.as_str()) {
        return found.clone();
    }
    if interned.len() >= MAX_INTERNED {
        interned.clear();
    }
    let shared: Arc<str> = text.into();
    interned.insert(shared.clone());
    shared
}

/// Give a tool's `inputSchema` a boolean `dryRun` property, unless it has
/// one; whether anything changed.
fn add_dry_run(tool: &mut Value) -> bool {
    let Some(schema) = tool.get_mut("inputSchema").and_then(Value::as_object_mut) else {
        return false;
    };
    let properties = schema
        .entry("properties")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(properties) = properties.as_object_mut() else {
        return false;
    };
    if properties.contains_key(crate::dry_run::DRY_RUN_KEY) {
        return false;
    }
    properties.insert(
        crate::dry_run::DRY_RUN_KEY.into(),
        serde_json::json!({
            "type": "boolean",
            "description": "Preview the call without running it: Warden checks the arguments and shows the exact request it would send."
        }),
    );
    true
}

/// Let a held tool be called as a task: `execution.taskSupport` becomes
/// `"optional"` unless the upstream already allows tasks for it; whether
/// anything changed.
fn add_task_support(tool: &mut Value) -> bool {
    let Some(object) = tool.as_object_mut() else {
        return false;
    };
    let execution = object
        .entry("execution")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(execution) = execution.as_object_mut() else {
        return false;
    };
    match execution.get("taskSupport").and_then(Value::as_str) {
        Some("optional" | "required") => false,
        _ => {
            execution.insert("taskSupport".into(), Value::String("optional".into()));
            true
        }
    }
}

/// Record every tool of a reply and show each as `shown` says; `None` for
/// an error reply, else the page and whether the message changed.
fn inspect(
    value: &mut Value,
    mut shown: impl FnMut(&str, &ToolFacts) -> Shown,
) -> Result<Option<(ListedPage, bool)>, CatalogueError> {
    // An error reply has a non-null `error` and no `result`; anything else
    // must be a well-formed list or it is not shown at all.
    if value.get("error").is_some_and(|e| !e.is_null()) && value.get("result").is_none() {
        return Ok(None);
    }
    let result = value
        .get_mut("result")
        .ok_or(CatalogueError::NotAToolList)?;
    let next_cursor = result
        .get("nextCursor")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let tools = result
        .get_mut("tools")
        .and_then(Value::as_array_mut)
        .ok_or(CatalogueError::NotAToolList)?;
    let mut page = ListedPage {
        tools: Vec::with_capacity(tools.len()),
        schemas: Vec::with_capacity(tools.len()),
        task_tools: Vec::new(),
        next_cursor,
    };
    let before = tools.len();
    let mut changed = false;
    tools.retain_mut(|tool| {
        let Some(name) = tool.get("name").and_then(Value::as_str).map(str::to_owned) else {
            // A nameless tool cannot be called or judged; the agent need not see it.
            return false;
        };
        let facts = ToolFacts {
            read_only_hint: tool
                .pointer("/annotations/readOnlyHint")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        if matches!(
            tool.pointer("/execution/taskSupport")
                .and_then(Value::as_str),
            Some("optional" | "required")
        ) {
            page.task_tools.push(name.clone());
        }
        if let Some(schema) = tool.get("inputSchema") {
            page.schemas
                .push((name.clone(), intern(schema.to_string())));
        }
        page.tools.push((name.clone(), facts));
        match shown(&name, &facts) {
            Shown::Hidden => false,
            Shown::AsListed => true,
            Shown::WithDryRun => {
                changed |= add_dry_run(tool);
                true
            }
            Shown::Held => {
                changed |= add_dry_run(tool);
                changed |= add_task_support(tool);
                true
            }
        }
    });
    let changed = changed || tools.len() != before;
    Ok(Some((page, changed)))
}

#[cfg(test)]
mod tests {
    const ANYONE: Caller<'static> = Caller {
        agent: "anonymous",
        groups: &[],
    };
    use warden_policy::Tier;

    use super::*;

    const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[
        {"name":"search","annotations":{"readOnlyHint":true},"inputSchema":{"type":"object"}},
        {"name":"create_note","annotations":{"readOnlyHint":false}},
        {"name":"send_invoice"},
        {"title":"nameless"}
    ],"nextCursor":"p2"}}"#;

    fn names(message: &[u8]) -> Vec<String> {
        let value: Value = serde_json::from_slice(message).expect("valid JSON");
        value["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn hides_what_the_policy_refuses_and_records_everything() {
        let policy = Policy::default().with_rule("create_note", Tier::Write);
        let ListReply::Page { page, filtered } =
            filter_tools_list(LIST.as_bytes(), &policy, &ANYONE).expect("parses")
        else {
            panic!("expected a page");
        };
        assert_eq!(
            names(&filtered.expect("rewritten")),
            vec!["search", "create_note"]
        );
        assert_eq!(page.tools.len(), 3);
        assert_eq!(page.next_cursor.as_deref(), Some("p2"));
        let mut catalogue = Catalogue::default();
        catalogue.merge(&page);
        assert_eq!(
            catalogue.facts("search"),
            Some(ToolFacts {
                read_only_hint: true
            })
        );
        assert_eq!(
            catalogue.facts("send_invoice"),
            Some(ToolFacts {
                read_only_hint: false
            })
        );
        assert_eq!(catalogue.facts("nameless"), None);
    }

    #[test]
    fn forwards_the_original_bytes_when_nothing_is_hidden() {
        let policy = Policy::with_default(warden_policy::DefaultRule::Allow);
        let list = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"a"}]}}"#;
        let ListReply::Page { filtered, .. } =
            filter_tools_list(list.as_bytes(), &policy, &ANYONE).expect("parses")
        else {
            panic!("expected a page");
        };
        assert!(filtered.is_none());
    }

    #[test]
    fn errors_pass_and_garbage_is_an_error() {
        let policy = Policy::default();
        assert!(matches!(
            filter_tools_list(
                br#"{"jsonrpc":"2.0","id":2,"error":{"code":-1,"message":"x"}}"#,
                &policy,
                &ANYONE
            ),
            Ok(ListReply::Error)
        ));
        assert!(matches!(
            filter_tools_list(b"<html>", &policy, &ANYONE),
            Err(CatalogueError::Json(_))
        ));
        assert!(matches!(
            filter_tools_list(br#"{"jsonrpc":"2.0","id":2,"result":{}}"#, &policy, &ANYONE),
            Err(CatalogueError::NotAToolList)
        ));
    }

    #[test]
    fn a_result_beside_a_null_error_is_still_filtered() {
        let policy = Policy::default();
        let sneaky = br#"{"jsonrpc":"2.0","id":2,"error":null,"result":{"tools":[{"name":"send_invoice"}]}}"#;
        let Ok(ListReply::Page { filtered, .. }) = filter_tools_list(sneaky, &policy, &ANYONE)
        else {
            panic!("a result with error:null must be read as a page");
        };
        assert_eq!(names(&filtered.expect("rewritten")), Vec::<String>::new());
    }
}
