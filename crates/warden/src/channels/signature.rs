//! Signed requests between Warden and the approvers' channels.
//!
//! Two schemes, the same shape: an HMAC-SHA256 over a timestamp and the
//! body, sent with the timestamp in headers.
//!
//! - Slack's ([`Scheme::Slack`]): `X-Slack-Signature: v0=<hex>` over
//!   `v0:{timestamp}:{body}` with the app's signing secret,
//!   `X-Slack-Request-Timestamp: <unix seconds>`.
//! - Warden's own ([`Scheme::Warden`], for the generic webhook, both ways):
//!   `X-Warden-Signature: v1=<hex>` over `{timestamp}.{body}` with the
//!   webhook's secret, `X-Warden-Timestamp: <unix seconds>`.
//!
//! A request is taken only if its timestamp is within [`WINDOW_SECS`] of now
//! (the clock is the caller's: tests pass one), its signature matches
//! (compared in constant time), and it was not seen before within the
//! window ([`ReplayGuard`]). All of it is checked on the raw bytes,
//! before the body is parsed.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from now, either way (Slack's
/// documented five minutes).
pub const WINDOW_SECS: i64 = 5 * 60;

/// How many requests a [`ReplayGuard`] remembers at most. A flood past it
/// can come only from someone holding the secret; it is refused rather
/// than let a forgotten request be replayed.
const MAX_REMEMBERED: usize = 10_000;

/// Which signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Slack's request signing (`v0`).
    Slack,
    /// Warden's webhook signing (`v1`).
    Warden,
}

/// Why a signed request was refused. Never holds the secret or the
/// expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No timestamp header.
    #[error("missing {header}")]
    MissingTimestamp {
        /// The header.
        header: &'static str,
    },
    /// No signature header.
    #[error("missing {header}")]
    MissingSignature {
        /// The header.
        header: &'static str,
    },
    /// The timestamp is not a number of seconds.
    #[error("{header} must be unix seconds")]
    BadTimestamp {
        /// The header.
        header: &'static str,
    },
    /// The timestamp is too far from now.
    #[error(
        "the request's timestamp is {age_secs}s from now: more than {WINDOW_SECS}s (a stale or replayed request, or a clock off)"
    )]
    Stale {
        /// How far from now, in seconds.
        age_secs: i64,
    },
    /// The signature is not `v0=`/`v1=` and 64 hex digits.
    #[error("{header} must be {prefix} followed by 64 hex digits")]
    Malformed {
        /// The header.
        header: &'static str,
        /// The expected prefix.
        prefix: &'static str,
    },
    /// The signature does not match the body.
    #[error("the signature does not match the request")]
    Mismatch,
    /// The same signed request came before.
    #[error("this request was received before (a replay)")]
    Replayed,
    /// Too many requests within the window to remember them all.
    #[error("too many signed requests within {WINDOW_SECS}s; try again shortly")]
    Busy,
}

/// A verified request's identity: its timestamp and signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signed {
    /// The request's timestamp (unix seconds).
    pub timestamp: i64,
    /// Its signature (the MAC).
    pub mac: [u8; 32],
}

/// Remembers the requests taken within the window, so the same one is
/// taken once. Bounded: older entries are swept once it fills.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<[u8; 32], i64>>,
}

// === impl Scheme ===

impl Scheme {
    /// The timestamp header.
    pub fn timestamp_header(self) -> &'static str {
        match self {
            Scheme::Slack => "x-slack-request-timestamp",
            Scheme::Warden => "x-warden-timestamp",
        }
    }

    /// The signature header.
    pub fn signature_header(self) -> &'static str {
        match self {
            Scheme::Slack => "x-slack-signature",
            Scheme::Warden => "x-warden-signature",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Scheme::Slack => "v0=",
            Scheme::Warden => "v1=",
        }
    }

    fn mac(self, secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        match self {
            Scheme::Slack => {
                mac.update(b"v0:");
                mac.update(timestamp.as_bytes());
                mac.update(b":");
            }
            Scheme::Warden => {
                mac.update(timestamp.as_bytes());
                mac.update(b".");
            }
        }
        mac.update(body);
        mac
    }

    /// The signature header's value for `body` sent at `timestamp`.
    pub fn sign(self, secret: &[u8], timestamp: i64, body: &[u8]) -> String {
        let mac = self
            .mac(secret, &timestamp.to_string(), body)
            .finalize()
            .into_bytes();
        format!("{}{}", self.prefix(), warden_audit::record::hex(&mac))
    }

    /// Check a request's timestamp (within the window of `now_secs`) and
    /// signature (constant time), in that order, before anything reads
    /// the body.
    pub fn verify(
        self,
        secret: &[u8],
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Signed, SignatureError> {
        let timestamp = timestamp.ok_or(SignatureError::MissingTimestamp {
            header: self.timestamp_header(),
        })?;
        let signature = signature.ok_or(SignatureError::MissingSignature {
            header: self.signature_header(),
        })?;
        let seconds =
            timestamp
                .trim()
                .parse::<i64>()
                .map_err(|_| SignatureError::BadTimestamp {
                    header: self.timestamp_header(),
                })?;
        let age_secs = now_secs.saturating_sub(seconds);
        if age_secs.saturating_abs() > WINDOW_SECS {
            return Err(SignatureError::Stale { age_secs });
        }
        let presented = signature
            .trim()
            .strip_prefix(self.prefix())
            .and_then(warden_identity::api_key::parse_digest)
            .ok_or(SignatureError::Malformed {
                header: self.signature_header(),
                prefix: self.prefix(),
            })?;
        // `verify_slice` compares in constant time.
        self.mac(secret, timestamp.trim(), body)
            .verify_slice(&presented)
            .map_err(|_| SignatureError::Mismatch)?;
        Ok(Signed {
            timestamp: seconds,
            mac: presented,
        })
    }
}

// === impl ReplayGuard ===

impl ReplayGuard {
    /// Take `signed` once: a second time within the window is a replay.
    /// Only verified requests are remembered, so only a holder of the
    /// secret can fill it.
    pub fn first_time(&self, signed: &Signed, now_secs: i64) -> Result<(), SignatureError> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains_key(&signed.mac) {
            return Err(SignatureError::Replayed);
        }
        if seen.len() >= MAX_REMEMBERED {
            // Past the window a request is refused as stale anyway.
            seen.retain(|_, at| now_secs.saturating_sub(*at).saturating_abs() <= WINDOW_SECS);
            if seen.len() >= MAX_REMEMBERED {
                return Err(SignatureError::Busy);
            }
        }
        seen.insert(signed.mac, signed.timestamp);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's documented example ("Verifying requests from Slack").
    const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TIMESTAMP: &str = "1531420618";
    const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    /// The example's timestamp is "now" (the clock is injected).
    const NOW: i64 = 1_531_420_618;

    fn slack(
        secret: &str,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &str,
        now: i64,
    ) -> Result<Signed, SignatureError> {
        Scheme::Slack.verify(
            secret.as_bytes(),
            timestamp,
            signature,
            body.as_bytes(),
            now,
        )
    }

    #[test]
    fn slacks_documented_example_verifies_and_signs_the_same() {
        let signed = slack(
            SLACK_SECRET,
            Some(SLACK_TIMESTAMP),
            Some(SLACK_SIGNATURE),
            SLACK_BODY,
            NOW,
        )
        .expect("Slack's example is valid");
        assert_eq!(signed.timestamp, NOW);
        assert_eq!(
            Scheme::Slack.sign(SLACK_SECRET.as_bytes(), NOW, SLACK_BODY.as_bytes()),
            SLACK_SIGNATURE
        );
        // Within the window either way (clocks drift both ways).
        for now in [NOW + WINDOW_SECS, NOW - WINDOW_SECS] {
            assert!(
                slack(
                    SLACK_SECRET,
                    Some(SLACK_TIMESTAMP),
                    Some(SLACK_SIGNATURE),
                    SLACK_BODY,
                    now
                )
                .is_ok()
            );
        }
        // Upper-case hex is the same signature.
        let upper = format!("v0={}", SLACK_SIGNATURE[3..].to_uppercase());
        assert!(
            slack(
                SLACK_SECRET,
                Some(SLACK_TIMESTAMP),
                Some(&upper),
                SLACK_BODY,
                NOW
            )
            .is_ok()
        );
    }

    #[test]
    fn a_wrong_secret_a_tampered_body_or_timestamp_do_not_verify() {
        assert_eq!(
            slack(
                "8f742231b10e8888abcd99yyyzzz85a6",
                Some(SLACK_TIMESTAMP),
                Some(SLACK_SIGNATURE),
                SLACK_BODY,
                NOW
            ),
            Err(SignatureError::Mismatch)
        );
        let tampered = SLACK_BODY.replace("user_id=U2CERLKJA", "user_id=U2CERLKJB");
        assert_eq!(
            slack(
                SLACK_SECRET,
                Some(SLACK_TIMESTAMP),
                Some(SLACK_SIGNATURE),
                &tampered,
                NOW
            ),
            Err(SignatureError::Mismatch)
        );
        // One more byte at the end is another body.
        assert_eq!(
            slack(
                SLACK_SECRET,
                Some(SLACK_TIMESTAMP),
                Some(SLACK_SIGNATURE),
                &format!("{SLACK_BODY}&"),
                NOW
            ),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(
            slack(
                SLACK_SECRET,
                Some("1531420619"),
                Some(SLACK_SIGNATURE),
                SLACK_BODY,
                NOW
            ),
            Err(SignatureError::Mismatch)
        );
        // Warden's scheme over the same bytes is another signature.
        assert_eq!(
            Scheme::Warden.verify(
                SLACK_SECRET.as_bytes(),
                Some(SLACK_TIMESTAMP),
                Some(&SLACK_SIGNATURE.replace("v0=", "v1=")),
                SLACK_BODY.as_bytes(),
                NOW
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_stale_timestamp_is_refused_before_the_signature_is_looked_at() {
        for now in [NOW + WINDOW_SECS + 1, NOW - WINDOW_SECS - 1, NOW + 86_400] {
            assert!(matches!(
                slack(
                    SLACK_SECRET,
                    Some(SLACK_TIMESTAMP),
                    Some(SLACK_SIGNATURE),
                    SLACK_BODY,
                    now
                ),
                Err(SignatureError::Stale { .. })
            ));
        }
        // Even with a signature that would not match.
        assert!(matches!(
            slack(
                SLACK_SECRET,
                Some(SLACK_TIMESTAMP),
                Some("v0=zz"),
                SLACK_BODY,
                NOW + 3600
            ),
            Err(SignatureError::Stale { age_secs: 3600 })
        ));
    }

    #[test]
    fn missing_headers_and_malformed_values_are_refused_with_what_is_wrong() {
        assert_eq!(
            slack(SLACK_SECRET, None, Some(SLACK_SIGNATURE), SLACK_BODY, NOW),
            Err(SignatureError::MissingTimestamp {
                header: "x-slack-request-timestamp"
            })
        );
        assert_eq!(
            slack(SLACK_SECRET, Some(SLACK_TIMESTAMP), None, SLACK_BODY, NOW),
            Err(SignatureError::MissingSignature {
                header: "x-slack-signature"
            })
        );
        for timestamp in ["", "soon", "1531420618.5", "99999999999999999999"] {
            assert_eq!(
                slack(
                    SLACK_SECRET,
                    Some(timestamp),
                    Some(SLACK_SIGNATURE),
                    SLACK_BODY,
                    NOW
                ),
                Err(SignatureError::BadTimestamp {
                    header: "x-slack-request-timestamp"
                }),
                "{timestamp:?}"
            );
        }
        let malformed = SignatureError::Malformed {
            header: "x-slack-signature",
            prefix: "v0=",
        };
        for signature in [
            "",
            "v0=",
            "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b5",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b50300",
            "v0=g2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ] {
            assert_eq!(
                slack(
                    SLACK_SECRET,
                    Some(SLACK_TIMESTAMP),
                    Some(signature),
                    SLACK_BODY,
                    NOW
                ),
                Err(malformed.clone()),
                "{signature:?}"
            );
        }
        // What is said names headers, never the expected signature.
        let said = SignatureError::Mismatch.to_string();
        assert!(!said.contains("a2114d57"), "{said}");
    }

    #[test]
    fn a_replayed_request_is_refused_and_the_guard_stays_bounded() {
        let guard = ReplayGuard::default();
        let signed = slack(
            SLACK_SECRET,
            Some(SLACK_TIMESTAMP),
            Some(SLACK_SIGNATURE),
            SLACK_BODY,
            NOW,
        )
        .expect("valid");
        assert_eq!(guard.first_time(&signed, NOW), Ok(()));
        assert_eq!(
            guard.first_time(&signed, NOW + 10),
            Err(SignatureError::Replayed)
        );
        // Another body signed at the same second is another request.
        let other = Scheme::Slack.sign(SLACK_SECRET.as_bytes(), NOW, b"other");
        let other = slack(
            SLACK_SECRET,
            Some(SLACK_TIMESTAMP),
            Some(&other),
            "other",
            NOW,
        )
        .expect("valid");
        assert_eq!(guard.first_time(&other, NOW), Ok(()));

        // Full: entries past the window are swept, then new ones fit.
        let full = ReplayGuard::default();
        let entry = |i: usize, at: i64| Signed {
            timestamp: at,
            mac: {
                let mut mac = [0u8; 32];
                mac[..8].copy_from_slice(&(i as u64).to_be_bytes());
                mac
            },
        };
        for i in 0..MAX_REMEMBERED {
            full.first_time(&entry(i, NOW), NOW).expect("room");
        }
        assert_eq!(
            full.first_time(&entry(MAX_REMEMBERED, NOW), NOW),
            Err(SignatureError::Busy)
        );
        let later = NOW + WINDOW_SECS + 1;
        assert_eq!(
            full.first_time(&entry(MAX_REMEMBERED, later), later),
            Ok(())
        );
        assert_eq!(
            full.seen.lock().expect("lock").len(),
            1,
            "the old entries were swept"
        );
    }

    #[test]
    fn warden_signatures_round_trip() {
        let body = br#"{"approval_id":"x","verdict":"approve","approver":"grace"}"#;
        let header = Scheme::Warden.sign(b"webhook-secret", NOW, body);
        assert!(header.starts_with("v1=") && header.len() == 67, "{header}");
        let signed = Scheme::Warden
            .verify(
                b"webhook-secret",
                Some(&NOW.to_string()),
                Some(&header),
                body,
                NOW + 1,
            )
            .expect("valid");
        assert_eq!(signed.timestamp, NOW);
        assert_eq!(
            Scheme::Warden.verify(
                b"another-secret",
                Some(&NOW.to_string()),
                Some(&header),
                body,
                NOW
            ),
            Err(SignatureError::Mismatch)
        );
    }
}
