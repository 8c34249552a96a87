//! The approvals page: server-rendered HTML under `/ui/` on the admin
//! listener, for approvers in a browser. No JavaScript at all; every
//! response carries a strict Content-Security-Policy (see `layers`).
//!
//! - `GET /ui/login`, `POST /ui/login` (`token`): an approver's token, a
//!   JWT or the connection's client certificate, checked exactly as the
//!   API checks them ([`Approvals::identify`]), is
//!   exchanged for a server-side session (8 h) and an `HttpOnly`,
//!   `SameSite=Strict` cookie on `/ui` (`Secure` on a TLS listener);
//! - `GET /ui/`: the pending calls, newest first;
//! - `GET /ui/approvals/{id}`: one call, whole, with approve and reject
//!   forms; `POST /ui/approvals/{id}/approve|reject` (`reason`) decides
//!   through [`super::decide()`], as the API does, then redirects (303)
//!   back to the call;
//! - `GET /ui/history`: decided, expired and withdrawn calls;
//! - `POST /ui/logout`.
//!
//! Cross-site request forgery is refused twice: the layers refuse a
//! browser's cross-origin POST (`Sec-Fetch-Site`, else `Origin` against
//! `Host`), and every form carries its session's token, compared here in
//! constant time. A request without a live session is redirected to the
//! login page.
//!
//! [`Approvals::identify`]: crate::approvals::Approvals::identify

mod html;
mod sessions;

use std::borrow::Cow;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;
use warden_approvals::{ApprovalError, Status, Verdict};

pub(super) use sessions::Sessions;

use self::html::{Notice, Viewer};
use super::decide::now_ms;
use super::{AdminBody, AdminState, BodyError, DecisionError, read_body};
use crate::approvals::{Approvals, ApproverRefusal};
use crate::proxy::relay::{Body, full};

/// The session cookie's name.
pub const COOKIE: &str = "warden_ui";

/// The page's stylesheet, built in.
const STYLE: &str = include_str!("style.css");

/// Most calls a list shows.
const LIST_LIMIT: u32 = 200;

/// Answer one request under `/ui`.
pub(super) async fn handle(state: &AdminState, request: Request<AdminBody>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if path == "/ui/style.css" && method == Method::GET {
        let mut response = Response::new(full(Bytes::from_static(STYLE.as_bytes())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        );
        return response;
    }
    let Some(approvals) = &state.warden.approvals else {
        return html_page(
            StatusCode::NOT_FOUND,
            html::message(
                None,
                "No approvals here",
                "This Warden has no approvals section in its config: no call is ever held, so there is nothing to approve.",
            ),
        );
    };
    let cookie = session_cookie(&request).map(str::to_owned);
    let session = cookie
        .as_deref()
        .and_then(|id| state.sessions.get(id, Instant::now()));
    match (&method, path.as_str()) {
        (&Method::GET, "/ui") => return redirect("/ui/"),
        (&Method::GET, "/ui/login") => {
            return match session {
                Some(_) => redirect("/ui/"),
                None => html_page(
                    StatusCode::OK,
                    html::login(None, approvals.identity.is_some()),
                ),
            };
        }
        (&Method::POST, "/ui/login") => return login(state, approvals, request).await,
        _ => {}
    }
    let Some(session) = session else {
        return redirect("/ui/login");
    };
    let viewer = Viewer {
        approver: &session.approver.name,
        csrf: &session.csrf,
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (&method, parts.as_slice()) {
        (&Method::GET, ["ui", ""]) => match approvals
            .store
            .list(Some(Status::Pending), LIST_LIMIT)
            .await
        {
            Ok(list) => html_page(StatusCode::OK, html::pending(&viewer, &list, now_ms())),
            Err(err) => store_failed(&viewer, &err),
        },
        (&Method::GET, ["ui", "history"]) => {
            // Newest first across every status but pending.
            match approvals.store.list(None, LIST_LIMIT * 2).await {
                Ok(list) => {
                    let done: Vec<_> = list
                        .into_iter()
                        .filter(|a| a.status != Status::Pending)
                        .take(LIST_LIMIT as usize)
                        .collect();
                    html_page(StatusCode::OK, html::history(&viewer, &done, now_ms()))
                }
                Err(err) => store_failed(&viewer, &err),
            }
        }
        (&Method::GET, ["ui", "approvals", id]) => {
            let notice = if request.uri().query() == Some("decided") {
                Notice::Decided
            } else {
                Notice::None
            };
            details(state, approvals, &viewer, id, StatusCode::OK, notice).await
        }
        (&Method::POST, ["ui", "approvals", id, action @ ("approve" | "reject")]) => {
            let verdict = if *action == "approve" {
                Verdict::Approve
            } else {
                Verdict::Reject
            };
            let id = (*id).to_owned();
            let form = match form_of(request).await {
                Ok(form) => form,
                Err(response) => return response,
            };
            if !csrf_matches(&form, &session.csrf) {
                return forged(&viewer);
            }
            let reason = field(&form, "reason");
            match super::decide(
                &state.warden,
                &session.approver,
                &id,
                verdict,
                reason.as_deref(),
                None,
            )
            .await
            {
                Ok(_) => redirect(&format!("/ui/approvals/{id}?decided")),
                Err(err @ DecisionError::NotFound { .. }) => not_found(&viewer, &err),
                Err(err) => {
                    let why = match &err {
                        DecisionError::ReasonRequired => {
                            "A rejection needs a reason: the agent is told it. Nothing was decided."
                                .to_owned()
                        }
                        other => format!("{other}. Nothing was decided."),
                    };
                    details(
                        state,
                        approvals,
                        &viewer,
                        &id,
                        err.status(),
                        Notice::Failed(&why),
                    )
                    .await
                }
            }
        }
        (&Method::POST, ["ui", "logout"]) => {
            let form = match form_of(request).await {
                Ok(form) => form,
                Err(response) => return response,
            };
            if !csrf_matches(&form, &session.csrf) {
                return forged(&viewer);
            }
            if let Some(id) = &cookie {
                state.sessions.close(id);
            }
            tracing::info!(approver = %session.approver.name, "Approver logged out of the approvals page.");
            let mut response = redirect("/ui/login");
            set_cookie(&mut response, "", 0, state.tls);
            response
        }
        _ => html_page(
            StatusCode::NOT_FOUND,
            html::message(
                Some(&viewer),
                "Not found",
                "There is no such page. The pending calls and the history are linked above.",
            ),
        ),
    }
}

/// `POST /ui/login`: a good credential opens a session; anything else is
/// the login page again, 401 (403 for someone known but not an approver),
/// saying why without repeating the credential.
async fn login(
    state: &AdminState,
    approvals: &Approvals,
    request: Request<AdminBody>,
) -> Response<Body> {
    let certificate = request
        .extensions()
        .get::<std::sync::Arc<warden_identity::ClientCertificate>>()
        .cloned();
    let form = match form_of(request).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let token = field(&form, "token");
    let approver = match approvals
        .identify(token.as_deref(), certificate.as_deref())
        .await
    {
        Ok(approver) => approver,
        Err(refusal) => {
            tracing::info!(why = %refusal, "A login to the approvals page was refused.");
            let (status, why) = match &refusal {
                ApproverRefusal::Missing | ApproverRefusal::Unknown => (
                    StatusCode::UNAUTHORIZED,
                    "That is not an approver's token. Check that you pasted it whole.".to_owned(),
                ),
                refused @ ApproverRefusal::Refused(_) => {
                    (StatusCode::UNAUTHORIZED, format!("{refused}."))
                }
                not_allowed @ (ApproverRefusal::NotAllowed { .. }
                | ApproverRefusal::TokenName { .. }) => {
                    (StatusCode::FORBIDDEN, format!("{not_allowed}."))
                }
            };
            return html_page(
                status,
                html::login(Some(&why), approvals.identity.is_some()),
            );
        }
    };
    match state.sessions.open(approver.clone(), Instant::now()) {
        Ok((id, _)) => {
            tracing::info!(approver = %approver.name, "Approver logged in to the approvals page.");
            let mut response = redirect("/ui/");
            set_cookie(&mut response, &id, sessions::LIFETIME.as_secs(), state.tls);
            response
        }
        Err(err) => {
            tracing::error!(error = %err, "No randomness for a session id.");
            html_page(
                StatusCode::SERVICE_UNAVAILABLE,
                html::message(
                    None,
                    "Try again",
                    "Warden could not make a session just now.",
                ),
            )
        }
    }
}

/// The details page for approval `id`, answered with `status`.
async fn details(
    state: &AdminState,
    approvals: &Approvals,
    viewer: &Viewer<'_>,
    id: &str,
    status: StatusCode,
    notice: Notice<'_>,
) -> Response<Body> {
    match approvals.store.get(id).await {
        Ok(approval) => {
            let approvers = state
                .warden
                .routes
                .iter()
                .find(|r| *r.path == approval.call.route)
                .map(|r| r.policy.load().hold_of(&approval.call.tool).approvers)
                .unwrap_or_default();
            html_page(
                status,
                html::details(viewer, &approval, &approvers, notice, now_ms()),
            )
        }
        Err(err @ ApprovalError::NotFound { .. }) => not_found(viewer, &err),
        Err(err) => store_failed(viewer, &err),
    }
}

fn not_found(viewer: &Viewer<'_>, _err: &dyn std::error::Error) -> Response<Body> {
    html_page(
        StatusCode::NOT_FOUND,
        html::message(
            Some(viewer),
            "No such approval",
            "No approval has this id. It may be in another Warden's queue.",
        ),
    )
}

fn store_failed(viewer: &Viewer<'_>, err: &ApprovalError) -> Response<Body> {
    tracing::warn!(error = %err, "The approval store failed for the approvals page.");
    html_page(
        StatusCode::SERVICE_UNAVAILABLE,
        html::message(
            Some(viewer),
            "The queue is unavailable",
            "The approval store did not answer. Try again shortly.",
        ),
    )
}

fn forged(viewer: &Viewer<'_>) -> Response<Body> {
    html_page(
        StatusCode::FORBIDDEN,
        html::message(
            Some(viewer),
            "Form refused",
            "This form did not come from your current session (it may be from before you logged in again). Nothing was decided: reload the page and try again.",
        ),
    )
}

type Form = Vec<(String, String)>;

/// A form body (`application/x-www-form-urlencoded`), or the response
/// saying why it could not be read.
async fn form_of(request: Request<AdminBody>) -> Result<Form, Response<Body>> {
    match read_body(request.into_body()).await {
        Ok(body) => Ok(form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()),
        Err(err) => {
            let status = match err {
                BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::Unreadable => StatusCode::BAD_REQUEST,
            };
            Err(html_page(
                status,
                html::message(None, "Form refused", &err.to_string()),
            ))
        }
    }
}

fn field<'a>(form: &'a Form, name: &str) -> Option<Cow<'a, str>> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| Cow::Borrowed(v.as_str()))
}

/// Whether the form carries this session's token (constant time).
fn csrf_matches(form: &Form, expected: &str) -> bool {
    field(form, "csrf").is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
}

/// The session id in the request's cookies, if any.
fn session_cookie<B>(request: &Request<B>) -> Option<&str> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(name, value)| (name == COOKIE).then_some(value))
}

fn set_cookie(response: &mut Response<Body>, id: &str, max_age: u64, tls: bool) {
    let secure = if tls { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={max_age}{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn html_page(status: StatusCode, html: String) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(html)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn redirect(to: &str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_http_only_strict_on_ui_and_secure_over_tls() {
        let mut plain = redirect("/ui/");
        set_cookie(&mut plain, "abc", 60, false);
        assert_eq!(
            plain.headers()[header::SET_COOKIE],
            "warden_ui=abc; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=60"
        );
        let mut tls = redirect("/ui/");
        set_cookie(&mut tls, "abc", 60, true);
        assert!(
            tls.headers()[header::SET_COOKIE]
                .to_str()
                .is_ok_and(|c| c.ends_with("; Secure"))
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let request = Request::builder()
            .header(header::COOKIE, "theme=dark; warden_ui=s3ss10n")
            .header(header::COOKIE, "other=1")
            .body(())
            .expect("request");
        assert_eq!(session_cookie(&request), Some("s3ss10n"));
        let request = Request::builder()
            .header(header::COOKIE, "warden_uix=no")
            .body(())
            .expect("request");
        assert_eq!(session_cookie(&request), None);
    }

    #[test]
    fn a_form_token_must_match_exactly() {
        let form: Form = vec![("csrf".into(), "tok".into())];
        assert!(csrf_matches(&form, "tok"));
        assert!(!csrf_matches(&form, "tok2"));
        assert!(!csrf_matches(&Vec::new(), "tok"));
        let empty: Form = vec![("csrf".into(), String::new())];
        assert!(!csrf_matches(&empty, "tok"));
    }
}
