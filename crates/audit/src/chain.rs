//! The hash chain and its signed checkpoints.
//!
//! Each Warden instance keeps one chain: every record it writes carries its
//! position (`seq`, from 1) and the SHA-256 of the previous record's line
//! (`prev`; 64 zeros for the first). The hash of a record is the hash of its
//! line exactly as written, without the line feed. Editing, deleting or
//! reordering lines therefore breaks the chain at the next record.
//!
//! A chain alone can be recomputed by whoever can write the file, so the
//! writer also seals **checkpoints** into the chain: a record of kind
//! [`Kind::Checkpoint`] whose `detail` holds the head it vouches for (the
//! `seq` and hash of the record before it) and an Ed25519 signature over
//! [`checkpoint_message`]. Only the holder of the signing key can make one;
//! `warden audit verify --public-key` checks them.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::{Kind, Record, hex};

/// `prev` of a chain's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where a chain stands: the last record sealed into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain's id (the instance id).
    pub chain: String,
    /// The last record's `seq` (0: nothing written yet).
    pub seq: u64,
    /// The last record's hash, hex ([`GENESIS`] when nothing is written).
    pub hash: String,
}

/// A record sealed into its chain: its line and where the chain now stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The record's JSON text, without a line feed.
    pub line: String,
    /// Its `seq`.
    pub seq: u64,
    /// The SHA-256 of `line`, hex.
    pub hash: String,
}

/// A chain being written.
#[derive(Debug, Clone)]
pub struct Chain {
    head: ChainHead,
    /// `head.chain` and `head.hash`, shared with the records sealed (no
    /// copy per record).
    id: Arc<str>,
    prev: Arc<str>,
    /// The longest line sealed so far, to size the next one's buffer.
    line_capacity: usize,
}

/// What a checkpoint record's `detail` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointDetail {
    /// The `seq` of the record the checkpoint vouches for.
    pub head_seq: u64,
    /// That record's hash (hex).
    pub head_hash: String,
    /// The signer's public key (base64), so a reader knows which key to
    /// expect; verification uses the key the operator supplies.
    pub key: String,
    /// Ed25519 signature of [`checkpoint_message`], base64.
    pub signature: String,
}

/// Why a signing key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("audit signing key {path}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("audit signing key {path} is not a base64 Ed25519 key (32 bytes)")]
    Malformed {
        /// The file.
        path: String,
    },
    /// No randomness to make a key from.
    #[error("no randomness to generate an audit signing key")]
    Random,
}

// === impl Chain ===

impl Chain {
    /// A new chain `id`, or one continued from `head`.
    pub fn new(head: ChainHead) -> Chain {
        Chain {
            id: Arc::from(head.chain.as_str()),
            prev: Arc::from(head.hash.as_str()),
            head,
            line_capacity: 512,
        }
    }

    /// A chain with nothing written yet.
    pub fn empty(id: &str) -> Chain {
        Chain::new(ChainHead {
            chain: id.to_owned(),
            seq: 0,
            hash: GENESIS.to_owned(),
        })
    }

    /// Where the chain stands.
    pub fn head(&self) -> &ChainHead {
        &self.head
    }

    /// Seal `record` as the chain's next record.
    pub fn seal(&mut self, mut record: Record) -> Sealed {
        self.seal_in_place(&mut record)
    }

    /// Seal `record` as the chain's next record, setting its chain fields
    /// where it lies (no copy; sealing it again later overwrites them).
    pub fn seal_in_place(&mut self, record: &mut Record) -> Sealed {
        record.chain = self.id.clone();
        record.seq = self.head.seq + 1;
        record.prev = self.prev.clone();
        let mut buffer = Vec::with_capacity(self.line_capacity);
        // A record is plain data; serializing it cannot fail, and
        // serde_json writes UTF-8 only.
        let line = match serde_json::to_writer(&mut buffer, &*record) {
            Ok(()) => String::from_utf8(buffer).unwrap_or_default(),
            Err(_) => String::new(),
        };
        self.line_capacity = self.line_capacity.max(line.len() + 64);
        let hash = line_hash(&line);
        self.head.seq = record.seq;
        self.head.hash.clone_from(&hash);
        self.prev = Arc::from(hash.as_str());
        Sealed {
            line,
            seq: record.seq,
            hash,
        }
    }

    /// Seal a checkpoint of the current head, signed by `key`.
    pub fn checkpoint(&mut self, key: &SigningKey, instance: &str) -> Sealed {
        let head = self.head.clone();
        let signature = key.sign(checkpoint_message(&head.chain, head.seq, &head.hash).as_bytes());
        let mut record = Record::new(Kind::Checkpoint, instance);
        record.detail = serde_json::to_value(CheckpointDetail {
            head_seq: head.seq,
            head_hash: head.hash,
            key: BASE64.encode(key.verifying_key().as_bytes()),
            signature: BASE64.encode(signature.to_bytes()),
        })
        .ok();
        self.seal(record)
    }
}

/// The SHA-256 of a record's line, hex.
pub fn line_hash(line: &str) -> String {
    hex(&Sha256::digest(line.as_bytes()))
}

/// What a checkpoint signs: the chain, the head's seq and its hash.
pub fn checkpoint_message(chain: &str, seq: u64, hash: &str) -> String {
    format!("warden-audit-checkpoint/v1\n{chain}\n{seq}\n{hash}")
}

/// Whether `detail` is a valid signature by `key` of the head it names.
pub fn checkpoint_is_signed_by(chain: &str, detail: &CheckpointDetail, key: &VerifyingKey) -> bool {
    let Ok(bytes) = BASE64.decode(&detail.signature) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify(
        checkpoint_message(chain, detail.head_seq, &detail.head_hash).as_bytes(),
        &signature,
    )
    .is_ok()
}

/// A public key written as base64 (as Warden prints it).
pub fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = BASE64.decode(text.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// The public key of `key`, base64.
pub fn public_key_text(key: &SigningKey) -> String {
    BASE64.encode(key.verifying_key().as_bytes())
}

/// Load the signing key at `path`, or make one there (mode 0600) when the
/// file does not exist. Returns the key and whether it was made now.
pub fn load_or_create_key(path: &Path) -> Result<(SigningKey, bool), KeyError> {
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes: [u8; 32] = BASE64
                .decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| KeyError::Malformed {
                    path: path.display().to_string(),
                })?;
            Ok((SigningKey::from_bytes(&bytes), false))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|_| KeyError::Random)?;
            let key = SigningKey::from_bytes(&seed);
            write_private(path, &BASE64.encode(seed)).map_err(io)?;
            Ok((key, true))
        }
        Err(err) => Err(io(err)),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_record_names_the_hash_of_the_one_before() {
        let mut chain = Chain::empty("w1");
        let first = chain.seal(Record::new(Kind::PolicyLoaded, "w1"));
        let second = chain.seal(Record::new(Kind::SessionStarted, "w1"));
        let a: Record = serde_json::from_str(&first.line).expect("json");
        let b: Record = serde_json::from_str(&second.line).expect("json");
        assert_eq!((a.seq, &*a.prev, &*a.chain), (1, GENESIS, "w1"));
        assert_eq!((b.seq, &*b.prev), (2, first.hash.as_str()));
        assert_eq!(second.hash, line_hash(&second.line));
        assert_eq!(chain.head().seq, 2);
    }

    #[test]
    fn checkpoints_verify_with_their_key_only() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let mut chain = Chain::empty("w1");
        let head = chain.seal(Record::new(Kind::PolicyLoaded, "w1"));
        let checkpoint = chain.checkpoint(&key, "w1");
        let record: Record = serde_json::from_str(&checkpoint.line).expect("json");
        let detail: CheckpointDetail =
            serde_json::from_value(record.detail.expect("detail")).expect("detail");
        assert_eq!((detail.head_seq, &detail.head_hash), (1, &head.hash));
        assert!(checkpoint_is_signed_by("w1", &detail, &key.verifying_key()));
        assert!(!checkpoint_is_signed_by(
            "w1",
            &detail,
            &other.verifying_key()
        ));
        assert!(!checkpoint_is_signed_by(
            "w2",
            &detail,
            &key.verifying_key()
        ));
        let parsed = parse_public_key(&public_key_text(&key)).expect("key");
        assert_eq!(parsed, key.verifying_key());
    }

    #[test]
    fn a_key_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("audit.key");
        let (made, fresh) = load_or_create_key(&path).expect("made");
        assert!(fresh);
        let (read, fresh) = load_or_create_key(&path).expect("read");
        assert!(!fresh);
        assert_eq!(made.to_bytes(), read.to_bytes());
        std::fs::write(&path, "not a key").expect("write");
        assert!(matches!(
            load_or_create_key(&path),
            Err(KeyError::Malformed { .. })
        ));
    }
}
