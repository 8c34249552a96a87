//! The approvals page's HTML, written by hand and escaped by hand: every
//! value shown passes through [`esc`] (tool names, arguments, rationales
//! and agent names come from agents, and are hostile until shown as text).
//! No script, no inline style: the Content-Security-Policy forbids both.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use warden_approvals::{Approval, Status, Verdict};

/// `text` safe inside an element and inside a quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Who is looking, for the header: their name and their logout form.
pub struct Viewer<'a> {
    /// The approver's name.
    pub approver: &'a str,
    /// Their session's form token.
    pub csrf: &'a str,
}

/// A whole page: `title` (text) and `main` (HTML, already escaped).
pub fn page(title: &str, viewer: Option<&Viewer<'_>>, main: &str) -> String {
    let nav = match viewer {
        Some(viewer) => format!(
            r#"<nav><a href="/ui/">Pending</a><a href="/ui/history">History</a></nav>
<form class="logout" method="post" action="/ui/logout"><input type="hidden" name="csrf" value="{csrf}"><span class="who">{who}</span><button type="submit" class="quiet">Log out</button></form>"#,
            csrf = esc(viewer.csrf),
            who = esc(viewer.approver),
        ),
        None => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Warden approvals</title>
<link rel="stylesheet" href="/ui/style.css">
</head>
<body>
<header><a class="brand" href="/ui/">Warden <span>approvals</span></a>{nav}</header>
<main>
{main}
</main>
</body>
</html>
"#,
        title = esc(title),
    )
}

/// The login form, with `error` (text) above it when the last try failed.
pub fn login(error: Option<&str>, identity: bool) -> String {
    let error = error.map_or_else(String::new, |e| {
        format!(r#"<p class="notice error" role="alert">{}</p>"#, esc(e))
    });
    // With approvers from an identity provider, a JWT is pasted like a
    // token, and a client certificate needs nothing pasted at all.
    let (how, required) = if identity {
        (
            "Paste your approver token, or a token your identity provider issued you (a JWT). If your browser presents a client certificate Warden knows you by, leave it empty. You stay logged in for 8 hours.",
            "",
        )
    } else {
        (
            "Paste your approver token. Warden compares its SHA-256 with the configured approvers' and keeps you logged in for 8 hours.",
            " required",
        )
    };
    page(
        "Log in",
        None,
        &format!(
            r#"<section class="card narrow">
<h1>Log in</h1>
<p>{how}</p>
{error}<form method="post" action="/ui/login">
<label for="token">Approver token</label>
<input id="token" name="token" type="password" autocomplete="off"{required} autofocus>
<button type="submit">Log in</button>
</form>
</section>"#
        ),
    )
}

/// A page that only says `message` (text), under `heading`.
pub fn message(viewer: Option<&Viewer<'_>>, heading: &str, message: &str) -> String {
    page(
        heading,
        viewer,
        &format!(
            r#"<section class="card narrow"><h1>{}</h1><p>{}</p><p><a href="/ui/">Back to the pending calls</a></p></section>"#,
            esc(heading),
            esc(message)
        ),
    )
}

/// A duration for people: `42 s`, `7 min`, `3 h 05 min`, `2 d 4 h`.
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..172_800 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A moment as UTC, to the second (`2026-05-01T12:00:00Z`).
pub fn moment(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

fn given(approval: &Approval) -> usize {
    approval
        .votes
        .iter()
        .filter(|v| v.verdict == Verdict::Approve)
        .count()
}

fn status_badge(status: Status) -> String {
    format!(
        r#"<span class="status status-{s}">{s}</span>"#,
        s = status.as_str()
    )
}

fn or_dash(value: Option<&str>) -> String {
    value.map_or_else(|| r#"<span class="none">—</span>"#.to_owned(), esc)
}

/// The pending calls, newest first.
pub fn pending(viewer: &Viewer<'_>, list: &[Approval], now_ms: i64) -> String {
    let mut rows = String::new();
    for a in list {
        let _ = writeln!(
            rows,
            r#"<tr><td><a href="/ui/approvals/{id}">{tool}</a></td><td>{agent}</td><td>{user}</td><td class="when">{age}</td><td class="when">{left}</td><td>{given} of {required}</td></tr>"#,
            id = esc(&a.id),
            tool = esc(&a.call.tool),
            agent = esc(&a.call.principal_agent),
            user = or_dash(a.call.principal_user.as_deref()),
            age = span(now_ms - a.call.created_ms),
            left = span(a.call.expires_ms - now_ms),
            given = given(a),
            required = a.call.required,
        );
    }
    let body = if list.is_empty() {
        r#"<p class="empty">Nothing is waiting for a decision.</p>"#.to_owned()
    } else {
        format!(
            r#"<table class="list">
<thead><tr><th>Tool</th><th>Agent</th><th>On behalf of</th><th>Age</th><th>Expires in</th><th>Approvals</th></tr></thead>
<tbody>
{rows}</tbody>
</table>"#
        )
    };
    page(
        "Pending",
        Some(viewer),
        &format!(
            r#"<h1>Waiting for a decision <span class="count">{}</span></h1>
{body}"#,
            list.len()
        ),
    )
}

/// Decided, expired and withdrawn calls, newest first.
pub fn history(viewer: &Viewer<'_>, list: &[Approval], now_ms: i64) -> String {
    let mut rows = String::new();
    for a in list {
        let who: Vec<String> = a
            .votes
            .iter()
            .map(|v| format!("{} ({})", esc(&v.approver), v.verdict.as_str()))
            .collect();
        let ran = if a.executed_ms.is_some() {
            r#" <span class="ran">ran</span>"#
        } else {
            ""
        };
        let _ = writeln!(
            rows,
            r#"<tr><td><a href="/ui/approvals/{id}">{tool}</a></td><td>{agent}</td><td>{user}</td><td>{status}{ran}</td><td class="when">{when}</td><td>{who}</td><td>{why}</td></tr>"#,
            id = esc(&a.id),
            tool = esc(&a.call.tool),
            agent = esc(&a.call.principal_agent),
            user = or_dash(a.call.principal_user.as_deref()),
            status = status_badge(a.status),
            when = a
                .decided_ms
                .map_or_else(|| "—".to_owned(), |d| format!("{} ago", span(now_ms - d))),
            who = if who.is_empty() {
                r#"<span class="none">nobody</span>"#.to_owned()
            } else {
                who.join(", ")
            },
            why = or_dash(a.reason.as_deref()),
        );
    }
    let body = if list.is_empty() {
        r#"<p class="empty">No call has been decided yet.</p>"#.to_owned()
    } else {
        format!(
            r#"<table class="list">
<thead><tr><th>Tool</th><th>Agent</th><th>On behalf of</th><th>Outcome</th><th>When</th><th>Who decided</th><th>Why</th></tr></thead>
<tbody>
{rows}</tbody>
</table>"#
        )
    };
    page(
        "History",
        Some(viewer),
        &format!("<h1>History</h1>\n{body}"),
    )
}

/// What the details page says above the call.
pub enum Notice<'a> {
    /// Nothing to say.
    None,
    /// The viewer's decision went through.
    Decided,
    /// The viewer's decision did not (text).
    Failed(&'a str),
}

/// One approval, whole, with the forms to decide it while it is pending.
/// `approvers` are the names the tool's rule allows (empty: everyone).
pub fn details(
    viewer: &Viewer<'_>,
    a: &Approval,
    approvers: &[String],
    notice: Notice<'_>,
    now_ms: i64,
) -> String {
    let arguments = serde_json::from_str::<serde_json::Value>(&a.call.arguments_shown)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| a.call.arguments_shown.clone());
    // `?decided` is only a hint: the outcome is said to whoever voted.
    let voted = a.votes.iter().any(|v| v.approver == viewer.approver);
    let notice = match notice {
        Notice::None => String::new(),
        Notice::Decided if !voted => String::new(),
        Notice::Decided => {
            let said = match a.status {
                Status::Pending => format!(
                    "Your approval is recorded: {} of {} given, still pending.",
                    given(a),
                    a.call.required
                ),
                Status::Approved => {
                    "Approved: the call runs now (or when the agent calls again).".to_owned()
                }
                Status::Rejected => "Rejected: the agent is told who and why.".to_owned(),
                other => format!("The call is {other}."),
            };
            format!(r#"<p class="notice ok" role="status">{}</p>"#, esc(&said))
        }
        Notice::Failed(why) => format!(r#"<p class="notice error" role="alert">{}</p>"#, esc(why)),
    };
    let mut votes = String::new();
    for v in &a.votes {
        let _ = writeln!(
            votes,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&v.approver),
            v.verdict.as_str(),
            or_dash(v.reason.as_deref()),
            moment(v.at_ms),
        );
    }
    let votes = if votes.is_empty() {
        r#"<p class="empty">No votes yet.</p>"#.to_owned()
    } else {
        format!(
            "<table class=\"list\"><thead><tr><th>Approver</th><th>Verdict</th><th>Reason</th><th>At</th></tr></thead><tbody>\n{votes}</tbody></table>"
        )
    };
    let timing = match a.status {
        Status::Pending => format!(
            "{} (in {})",
            moment(a.call.expires_ms),
            span(a.call.expires_ms - now_ms)
        ),
        _ => moment(a.call.expires_ms),
    };
    let decided = a.decided_ms.map_or_else(String::new, |d| {
        format!("<dt>Decided</dt><dd>{}</dd>\n", moment(d))
    });
    let executed = a.executed_ms.map_or_else(String::new, |d| {
        format!("<dt>Ran</dt><dd>{}</dd>\n", moment(d))
    });
    let reason = a.reason.as_deref().map_or_else(String::new, |r| {
        format!("<dt>Reason</dt><dd>{}</dd>\n", esc(r))
    });
    let who_may = if approvers.is_empty() {
        "any configured approver".to_owned()
    } else {
        esc(&approvers.join(", "))
    };
    let forms = if a.status == Status::Pending {
        format!(
            r#"<section class="decide">
<form class="card approve" method="post" action="/ui/approvals/{id}/approve">
<input type="hidden" name="csrf" value="{csrf}">
<label for="approve-reason">Reason <span class="hint">(optional)</span></label>
<textarea id="approve-reason" name="reason" rows="2"></textarea>
<button type="submit" class="go">Approve</button>
</form>
<form class="card reject" method="post" action="/ui/approvals/{id}/reject">
<input type="hidden" name="csrf" value="{csrf}">
<label for="reject-reason">Reason <span class="hint">(required: the agent is told it)</span></label>
<textarea id="reject-reason" name="reason" rows="2" required></textarea>
<button type="submit" class="stop">Reject</button>
</form>
</section>"#,
            id = esc(&a.id),
            csrf = esc(viewer.csrf),
        )
    } else {
        String::new()
    };
    page(
        &format!("{} · {}", a.call.tool, a.status),
        Some(viewer),
        &format!(
            r#"<p class="crumbs"><a href="/ui/">← All pending calls</a></p>
<h1><code>{tool}</code> {status}</h1>
{notice}
<section class="card">
<dl class="facts">
<dt>Agent</dt><dd>{agent}</dd>
<dt>On behalf of</dt><dd>{user}</dd>
<dt>Rationale</dt><dd>{rationale}</dd>
<dt>Upstream</dt><dd><code>{upstream}</code></dd>
<dt>Route</dt><dd><code>{route}</code></dd>
<dt>Agent session</dt><dd><code>{session}</code></dd>
<dt>Policy</dt><dd><code>{policy}</code></dd>
<dt>Approvals</dt><dd>{given} of {required}, from {who_may}</dd>
<dt>Created</dt><dd>{created} ({age} ago)</dd>
<dt>Expires</dt><dd>{timing}</dd>
{decided}{executed}{reason}<dt>Approval</dt><dd><code>{id}</code></dd>
</dl>
</section>
<h2>Arguments <span class="hint">(redacted as the audit trail records them)</span></h2>
<pre class="arguments">{arguments}</pre>
<h2>Votes</h2>
{votes}
{forms}"#,
            tool = esc(&a.call.tool),
            status = status_badge(a.status),
            agent = esc(&a.call.principal_agent),
            user = or_dash(a.call.principal_user.as_deref()),
            rationale = or_dash(a.call.rationale.as_deref()),
            upstream = esc(&a.call.upstream),
            route = esc(&a.call.route),
            session = esc(&a.call.agent_session),
            policy = esc(&a.call.policy_hash),
            given = given(a),
            required = a.call.required,
            created = moment(a.call.created_ms),
            age = span(now_ms - a.call.created_ms),
            id = esc(&a.id),
            arguments = esc(&arguments),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(esc("plain é"), "plain é");
    }

    #[test]
    fn durations_and_moments_read_well() {
        assert_eq!(span(-5), "0 s");
        assert_eq!(span(42_000), "42 s");
        assert_eq!(span(7 * 60_000 + 5000), "7 min");
        assert_eq!(span(3 * 3_600_000 + 5 * 60_000), "3 h 05 min");
        assert_eq!(span(52 * 3_600_000), "2 d 4 h");
        assert_eq!(moment(1_764_590_400_000), "2025-12-01T12:00:00Z");
    }
}
