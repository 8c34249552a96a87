//! Per agent session call caps: how many calls of one tool (default 30),
//! and how many calls in all (default 100), one agent session may make.
//!
//! A call is counted when it is admitted; a refused call counts for
//! nothing, so the 31st call of a tool is refused and so is every one
//! after it, and nothing else changes. The counts live in memory, one
//! entry per session; a session's entry goes when the session ends
//! ([`CallCounts::forget`]) or when it has been idle past a limit
//! ([`CallCounts::sweep`]), so memory follows the live sessions only.
//! Time is passed in, never read here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde_json::{Map, Value, json};

/// How many calls a cap lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// No limit.
    Unlimited,
    /// At most this many.
    AtMost(u32),
}

/// The caps in force for one call: its tool's, and its session's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSettings {
    /// Calls of one tool in one agent session.
    pub per_tool: Cap,
    /// Calls of every tool together in one agent session.
    pub per_session: Cap,
}

impl Default for CapSettings {
    fn default() -> CapSettings {
        CapSettings {
            per_tool: Cap::AtMost(30),
            per_session: Cap::AtMost(100),
        }
    }
}

/// One agent session on one route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// The route's path.
    pub route: Arc<str>,
    /// The agent session.
    pub session: Arc<str>,
}

/// A cap a call ran into. Retrying in the same session never helps: the
/// counts only go when the session does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tripped {
    /// The tool's cap.
    ToolCap {
        /// The tool.
        tool: String,
        /// Its cap (the calls already made).
        max: u32,
    },
    /// The session's cap.
    SessionCap {
        /// Its cap (the calls already made).
        max: u32,
    },
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    per_tool: HashMap<Arc<str>, u32>,
    last: Option<Instant>,
}

/// The call counts of every live agent session.
#[derive(Debug, Default)]
pub struct CallCounts {
    sessions: DashMap<SessionKey, Counts>,
}

// === impl Cap ===

impl Cap {
    fn admits(self, count: u32) -> bool {
        match self {
            Cap::Unlimited => true,
            Cap::AtMost(max) => count < max,
        }
    }
}

// === impl Tripped ===

impl Tripped {
    /// The stable reason code (audit records, metrics, `structuredContent`).
    pub fn code(&self) -> &'static str {
        match self {
            Tripped::ToolCap { .. } => "tool-call-cap",
            Tripped::SessionCap { .. } => "session-call-cap",
        }
    }

    /// What the model reads: the limit, the count, and that retrying
    /// will not help.
    pub fn explain(&self) -> String {
        match self {
            Tripped::ToolCap { tool, max } => format!(
                "Warden refused the call to '{tool}': call cap: {max} calls of {tool} in this session, the most allowed; retrying will not help. Start a new session only if the user asks for more."
            ),
            Tripped::SessionCap { max } => format!(
                "Warden refused the call: call cap: {max} calls in this session, the most allowed for all tools together; retrying will not help. Start a new session only if the user asks for more."
            ),
        }
    }

    /// The same as fields, for `structuredContent.warden`.
    pub fn fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("limit".into(), json!(self.code()));
        let (scope, max) = match self {
            Tripped::ToolCap { tool, max } => {
                fields.insert("tool".into(), json!(tool));
                ("tool", max)
            }
            Tripped::SessionCap { max } => ("session", max),
        };
        fields.insert("scope".into(), json!(scope));
        fields.insert("count".into(), json!(max));
        fields.insert("max".into(), json!(max));
        // Never within this session.
        fields.insert("retry_after_ms".into(), Value::Null);
        fields
    }
}

// === impl CallCounts ===

impl CallCounts {
    /// Admit one call of `tool` in `key`'s session at `now` under `caps`,
    /// counting it; or say which cap it ran into (and count nothing).
    pub fn admit(
        &self,
        key: &SessionKey,
        tool: &str,
        caps: CapSettings,
        now: Instant,
    ) -> Result<(), Tripped> {
        let mut counts = self.sessions.entry(key.clone()).or_default();
        counts.last = Some(now);
        let of_tool = counts.per_tool.get(tool).copied().unwrap_or(0);
        if !caps.per_tool.admits(of_tool) {
            return Err(Tripped::ToolCap {
                tool: tool.to_owned(),
                max: of_tool,
            });
        }
        if !caps.per_session.admits(counts.total) {
            return Err(Tripped::SessionCap { max: counts.total });
        }
        counts.total += 1;
        // The tool's name is allocated once per session, not per call.
        match counts.per_tool.get_mut(tool) {
            Some(count) => *count += 1,
            None => {
                counts.per_tool.insert(tool.into(), 1);
            }
        }
        Ok(())
    }

    /// The session has ended: its counts go.
    pub fn forget(&self, key: &SessionKey) {
        self.sessions.remove(key);
    }

    /// Forget the sessions without a call for `idle` by `now`; how many.
    pub fn sweep(&self, idle: Duration, now: Instant) -> usize {
        let before = self.sessions.len();
        self.sessions.retain(|_, counts| {
            counts
                .last
                .is_some_and(|last| now.saturating_duration_since(last) < idle)
        });
        before - self.sessions.len()
    }

    /// How many sessions have counts.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session has counts.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(session: &str) -> SessionKey {
        SessionKey {
            route: "/mcp".into(),
            session: session.into(),
        }
    }

    #[test]
    fn the_31st_call_of_a_tool_is_refused_and_counts_for_nothing() {
        let counts = CallCounts::default();
        let now = Instant::now();
        let caps = CapSettings::default();
        for _ in 0..30 {
            counts
                .admit(&key("s1"), "search", caps, now)
                .expect("within the cap");
        }
        let tripped = counts
            .admit(&key("s1"), "search", caps, now)
            .expect_err("the 31st");
        assert_eq!(
            tripped,
            Tripped::ToolCap {
                tool: "search".into(),
                max: 30
            }
        );
        assert_eq!(tripped.code(), "tool-call-cap");
        assert_eq!(
            tripped.explain(),
            "Warden refused the call to 'search': call cap: 30 calls of search in this session, the most allowed; retrying will not help. Start a new session only if the user asks for more."
        );
        let fields = Value::Object(tripped.fields());
        assert_eq!(
            fields,
            json!({"limit": "tool-call-cap", "scope": "tool", "tool": "search",
                "count": 30, "max": 30, "retry_after_ms": null})
        );
        // Another tool, and another session, are their own counts.
        counts
            .admit(&key("s1"), "get", caps, now)
            .expect("another tool");
        counts
            .admit(&key("s2"), "search", caps, now)
            .expect("another session");
    }

    #[test]
    fn the_session_cap_covers_every_tool_together() {
        let counts = CallCounts::default();
        let now = Instant::now();
        let caps = CapSettings {
            per_tool: Cap::Unlimited,
            per_session: Cap::AtMost(3),
        };
        for tool in ["a", "b", "c"] {
            counts.admit(&key("s"), tool, caps, now).expect("within");
        }
        let tripped = counts.admit(&key("s"), "d", caps, now).expect_err("4th");
        assert_eq!(tripped, Tripped::SessionCap { max: 3 });
        assert!(tripped.explain().contains("3 calls in this session"));
        // Unlimited both ways: never refused.
        let open = CapSettings {
            per_tool: Cap::Unlimited,
            per_session: Cap::Unlimited,
        };
        for _ in 0..1000 {
            counts
                .admit(&key("open"), "a", open, now)
                .expect("unlimited");
        }
    }

    #[test]
    fn caps_changed_later_apply_to_the_counts_kept() {
        let counts = CallCounts::default();
        let now = Instant::now();
        let five = CapSettings {
            per_tool: Cap::AtMost(5),
            per_session: Cap::Unlimited,
        };
        for _ in 0..4 {
            counts.admit(&key("s"), "a", five, now).expect("within");
        }
        // A reload lowers the cap: the four already made count.
        let three = CapSettings {
            per_tool: Cap::AtMost(3),
            ..five
        };
        assert!(counts.admit(&key("s"), "a", three, now).is_err());
        counts.admit(&key("s"), "a", five, now).expect("the fifth");
        assert!(counts.admit(&key("s"), "a", five, now).is_err());
    }

    #[test]
    fn ended_and_idle_sessions_are_forgotten_and_memory_follows_live_ones() {
        let counts = CallCounts::default();
        let start = Instant::now();
        let caps = CapSettings::default();
        for n in 0..100_000 {
            counts
                .admit(&key(&format!("s{n}")), "a", caps, start)
                .expect("within");
        }
        assert_eq!(counts.len(), 100_000);
        counts.forget(&key("s0"));
        assert_eq!(counts.len(), 99_999);
        let later = start + Duration::from_secs(60);
        counts.admit(&key("s1"), "a", caps, later).expect("within");
        assert_eq!(counts.sweep(Duration::from_secs(30), later), 99_998);
        assert_eq!(counts.len(), 1, "only the session that called lately");
        assert!(!counts.is_empty());
    }
}
