//! What the bridge reads and rewrites of JSON-RPC messages.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use warden_protocol::jsonrpc::MessageKind;
use warden_protocol::mcp;

/// The envelope fields the bridge needs from an agent's message.
pub(super) struct Envelope {
    pub kind: MessageKind,
    /// The id, as JSON text.
    pub id: Option<String>,
    pub method: Option<String>,
    /// `params._meta.progressToken`, as JSON text.
    pub progress_token: Option<String>,
    /// `params.requestId` of a `notifications/cancelled`, as JSON text.
    pub cancels: Option<String>,
}

// === impl Envelope ===

impl Envelope {
    pub fn read(message: &[u8]) -> Option<Envelope> {
        #[derive(Deserialize)]
        struct Message<'a> {
            #[serde(borrow)]
            id: Option<&'a RawValue>,
            method: Option<String>,
            #[serde(borrow)]
            params: Option<Params<'a>>,
        }
        #[derive(Deserialize)]
        struct Params<'a> {
            #[serde(borrow, rename = "_meta")]
            meta: Option<Meta<'a>>,
            #[serde(borrow, rename = "requestId")]
            request_id: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Meta<'a> {
            #[serde(borrow, rename = "progressToken")]
            progress_token: Option<&'a RawValue>,
        }
        let message: Message<'_> = serde_json::from_slice(message).ok()?;
        let kind = match (&message.method, &message.id) {
            (Some(_), Some(_)) => MessageKind::Request,
            (Some(_), None) => MessageKind::Notification,
            (None, _) => MessageKind::Response,
        };
        let cancels = (message.method.as_deref() == Some("notifications/cancelled"))
            .then(|| message.params.as_ref().and_then(|p| p.request_id))
            .flatten()
            .map(|id| id.get().to_owned());
        Some(Envelope {
            kind,
            id: message.id.map(|id| id.get().to_owned()),
            method: message.method,
            progress_token: message
                .params
                .and_then(|p| p.meta)
                .and_then(|m| m.progress_token)
                .map(|t| t.get().to_owned()),
            cancels,
        })
    }
}

/// What the bridge reads of a server's message.
#[derive(Deserialize)]
pub(super) struct Head<'a> {
    #[serde(borrow)]
    pub id: Option<&'a RawValue>,
    pub method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    pub params: Option<HeadParams<'a>>,
}

/// What the bridge reads of a server message's params.
#[derive(Deserialize)]
pub(super) struct HeadParams<'a> {
    #[serde(borrow, rename = "progressToken")]
    pub progress_token: Option<&'a RawValue>,
    #[serde(borrow, rename = "_meta")]
    pub meta: Option<HeadMeta<'a>>,
}

/// A server notification's `_meta`: the listen stream it belongs to.
#[derive(Deserialize)]
pub(super) struct HeadMeta<'a> {
    #[serde(borrow, rename = "io.modelcontextprotocol/subscriptionId")]
    pub subscription_id: Option<&'a RawValue>,
}

// === impl Head ===

impl<'a> Head<'a> {
    /// The message's head; `None` if it is not a JSON object.
    pub fn read(message: &'a [u8]) -> Option<Head<'a>> {
        serde_json::from_slice(message).ok()
    }

    /// A response (neither request nor notification): its id.
    pub fn response_id(&self) -> Option<&'a str> {
        self.method.is_none().then_some(self.id?.get())
    }

    /// `params.progressToken`, as JSON text.
    pub fn progress_token(&self) -> Option<&'a str> {
        Some(self.params.as_ref()?.progress_token?.get())
    }

    /// `params._meta["io.modelcontextprotocol/subscriptionId"]`, as JSON text.
    pub fn subscription_id(&self) -> Option<&'a str> {
        Some(self.params.as_ref()?.meta.as_ref()?.subscription_id?.get())
    }
}

/// Whether a message is an `initialize` request.
pub(super) fn is_initialize(message: &[u8]) -> bool {
    Envelope::read(message).is_some_and(|e| {
        e.kind == MessageKind::Request && e.method.as_deref() == Some(mcp::METHOD_INITIALIZE)
    })
}

/// The id of a message, as JSON text.
pub(super) fn message_id(message: &[u8]) -> Option<String> {
    Envelope::read(message).and_then(|e| e.id)
}

/// The `result` member of a response, as JSON text.
pub(super) fn result_member(message: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Reply<'a> {
        #[serde(borrow)]
        result: Option<&'a RawValue>,
    }
    serde_json::from_slice::<Reply<'_>>(message)
        .ok()?
        .result
        .map(|r| r.get().to_owned())
}

/// `message` with the member at `path` set to `value` (JSON text). Values
/// elsewhere keep their bytes; members are written in sorted order.
pub(super) fn set_member(message: &[u8], path: &[&str], value: &str) -> Option<String> {
    let mut object: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(message).ok()?;
    let (first, rest) = path.split_first()?;
    let new = if rest.is_empty() {
        value.to_owned()
    } else {
        let inner = object.get(*first)?.get().as_bytes();
        set_member(inner, rest, value)?
    };
    object.insert((*first).to_owned(), RawValue::from_string(new).ok()?);
    serde_json::to_string(&object).ok()
}

/// `message` with the member at `path` put back as the agent wrote it.
pub(super) fn restore(message: &Bytes, path: &[&str], agent_value: &str) -> Bytes {
    set_member(message, path, agent_value).map_or_else(|| message.clone(), Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_replaced_and_other_values_keep_their_bytes() {
        let message = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{"n":1.50},"_meta":{"progressToken":"p"}}}"#;
        let out = set_member(message, &["params", "_meta", "progressToken"], "\"w1\"")
            .expect("rewritten");
        assert!(out.contains(r#""progressToken":"w1""#), "{out}");
        assert!(out.contains(r#""arguments":{"n":1.50}"#), "{out}");
        assert!(out.contains(r#""id":7"#), "{out}");
        assert_eq!(set_member(b"[1]", &["id"], "1"), None);
        assert_eq!(
            set_member(br#"{"id":1}"#, &["params", "x"], "1"),
            None,
            "a missing parent is not invented"
        );
    }

    #[test]
    fn envelopes_name_kind_id_and_progress_token() {
        let request = Envelope::read(
            br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"_meta":{"progressToken":5}}}"#,
        )
        .expect("read");
        assert_eq!(request.kind, MessageKind::Request);
        assert_eq!(request.id.as_deref(), Some("\"a\""));
        assert_eq!(request.progress_token.as_deref(), Some("5"));
        let reply = Envelope::read(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).expect("read");
        assert_eq!(reply.kind, MessageKind::Response);
    }
}
