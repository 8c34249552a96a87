//! Warden's policy: what each tool may do.
//!
//! Pure and synchronous: no I/O beyond reading a file, no clock, no tokio.
//!
//! - [`model`]: tiers, the policy, and [`Policy::decide`], the one function
//!   that says whether a tool call may go through and why not.
//! - [`load`]: YAML → validated [`Policy`], reporting every problem with its
//!   line and column.
//! - [`redact`]: the optional `redact:` section, validated into plain
//!   [`RedactionRules`] the audit crate compiles.
//! - [`located`]: the located-YAML helpers the loader (and Warden's own config
//!   loader) are built on.
//!
//! ```
//! use warden_policy::{Caller, Policy, ToolFacts, Decision};
//!
//! let policy = Policy::from_yaml_str("version: 1\ntools:\n  create_note: write\n", "inline")
//!     .expect("valid policy");
//! let read_only = ToolFacts { read_only_hint: true };
//! let mutating = ToolFacts { read_only_hint: false };
//! let caller = Caller { agent: "notes-bot", groups: &[] };
//! assert!(matches!(policy.decide("search", Some(&read_only), &caller), Decision::Allow { .. }));
//! assert!(matches!(policy.decide("create_note", Some(&mutating), &caller), Decision::Allow { .. }));
//! assert!(matches!(policy.decide("send_invoice", Some(&mutating), &caller), Decision::Deny { .. }));
//! ```

pub mod load;
pub mod located;
pub mod model;
pub mod redact;

pub use load::PolicyError;
pub use located::{Diagnostic, Diagnostics};
pub use model::{
    Caller, Callers, ConfirmFallback, Decision, DefaultRule, DenyReason, DryRunMode, GROUP_PREFIX,
    Hold, Policy, Rule, Tier, ToolFacts,
};
pub use redact::{
    Detector, JsonPointer, PathRule, PointerError, RedactAction, RedactionRules, Segment, Target,
    ToolRedactionRules,
};
