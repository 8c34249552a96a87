//! The file store, verified and queried as an operator would: trails written
//! by a real `AuditLog` over a `FileStore`, then tampered with on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use warden_audit::chain::{CheckpointDetail, checkpoint_message, line_hash, public_key_text};
use warden_audit::file::parse_segment_name;
use warden_audit::query::{Filter, parse_kind};
use warden_audit::record::PrincipalField;
use warden_audit::{
    AuditLog, ChainSummary, FileOptions, FileStore, Kind, Problem, ProblemKind, Record, Signatures,
    Store, WriterOptions, query_files, verify_files,
};

const INSTANCE: &str = "warden-test";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn store(dir: &Path, max_file_size: u64) -> FileStore {
    FileStore::open(FileOptions {
        dir: dir.to_path_buf(),
        max_file_size,
        max_file_age: Duration::from_secs(3600),
    })
    .expect("open the store")
}

fn writer(checkpoint_every: u64) -> WriterOptions {
    WriterOptions {
        instance: INSTANCE.into(),
        queue: 100_000,
        max_pending: 100_000,
        sync_interval: Duration::from_millis(5),
        checkpoint_every,
        checkpoint_interval: Duration::from_secs(3600),
        signing_key: key(),
    }
}

fn call(log: &AuditLog, i: usize) -> Record {
    let mut record = log.new_record(Kind::ToolCall);
    record.route = Some("/mcp".into());
    record.tool = Some(
        if i.is_multiple_of(3) {
            "delete"
        } else {
            "search"
        }
        .into(),
    );
    record.decision = Some(if i.is_multiple_of(3) { "deny" } else { "allow" }.into());
    record.agent_session = Some(format!("session-{}", i % 4).into());
    record.principal = Some(PrincipalField {
        agent: "bot".into(),
        user: Some(format!("user-{}", i % 2)),
    });
    record.latency_us = Some(1_000 + i as u64);
    record
}

/// Write `records` tool calls through an `AuditLog` over a `FileStore` in
/// `dir` (appending to what is there), then close it. Every tenth record is
/// durable, so batches stay small and files rotate between them.
fn write_trail(dir: &Path, records: usize, max_file_size: u64, checkpoint_every: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let log = AuditLog::start(
        store(dir, max_file_size),
        Vec::new(),
        writer(checkpoint_every),
    )
    .expect("start");
    for i in 0..records {
        if i % 10 == 9 {
            runtime
                .block_on(log.record_durable(call(&log, i)))
                .expect("durable");
        } else {
            assert!(log.record(call(&log, i)), "queued");
        }
    }
    log.close();
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).expect("write");
}

fn verify(dir: &Path, key: Option<&SigningKey>) -> Result<ChainSummary, Problem> {
    let report = verify_files(&[dir.to_path_buf()], key.map(|k| k.verifying_key())).expect("read");
    assert_eq!(report.chains.len(), 1, "{report:?}");
    report.chains.into_iter().next().expect("chain").outcome
}

fn first_problem(dir: &Path) -> Problem {
    verify(dir, Some(&key())).expect_err("the trail must not verify")
}

fn at(path: &Path, line: usize) -> String {
    format!("{}:{line}", path.display())
}

/// A trail of several rotated files, checkpoints among them.
fn trail() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    write_trail(dir.path(), 200, 8 * 1024, 20);
    assert!(files(dir.path()).len() >= 3, "rotated");
    dir
}

/// The index of a line holding a record (not a checkpoint) in `lines`,
/// from `from`.
fn record_line(lines: &[String], from: usize) -> usize {
    (from..lines.len())
        .find(|&i| !lines[i].contains(r#""kind":"checkpoint""#))
        .expect("a record")
}

// === the store ===

#[test]
fn files_are_named_by_their_first_seq_and_the_chain_runs_across_them() {
    let dir = trail();
    let mut expected_seq = 1;
    for path in files(dir.path()) {
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let (prefix, first) = parse_segment_name(name).expect("a trail file name");
        assert_eq!((prefix, first), (INSTANCE, expected_seq), "{name}");
        let lines = lines(&path);
        let records: Vec<Record> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        for record in &records {
            assert_eq!(record.seq, expected_seq);
            expected_seq += 1;
        }
    }
}

#[test]
fn a_torn_tail_is_cut_at_open_and_the_chain_goes_on() {
    let dir = tempfile::tempdir().expect("dir");
    write_trail(dir.path(), 30, 1 << 20, 10);
    let newest = files(dir.path()).pop().expect("a file");
    let last = lines(&newest).pop().expect("a line");
    let whole = std::fs::read(&newest).expect("read");
    let mut torn = whole.clone();
    torn.extend_from_slice(br#"{"v":1,"id":"0190"#);
    std::fs::write(&newest, &torn).expect("tear");
    assert!(matches!(
        first_problem(dir.path()).kind,
        ProblemKind::TornLine
    ));

    let mut store = store(dir.path(), 1 << 20);
    assert_eq!(std::fs::read(&newest).expect("read"), whole, "cut at open");
    let head = store.head(INSTANCE).expect("head").expect("a head");
    assert_eq!(head.hash, line_hash(&last));
    drop(store);
    write_trail(dir.path(), 5, 1 << 20, 10);
    let summary = verify(dir.path(), Some(&key())).expect("verifies");
    assert_eq!(summary.records, 35);
}

#[test]
fn open_fails_clearly_where_it_cannot_write() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").expect("write");
    let err = FileStore::open(FileOptions::new(file.join("audit"))).expect_err("must fail");
    let text = warden_audit::log::error_chain(&err);
    assert!(text.contains("not-a-dir"), "{text}");
}

#[test]
fn a_second_writer_on_the_same_folder_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("dir");
    let first = FileStore::open(FileOptions::new(dir.path())).expect("open");
    let err = FileStore::open(FileOptions::new(dir.path())).expect_err("second writer");
    let text = warden_audit::log::error_chain(&err);
    assert!(
        text.contains(&dir.path().display().to_string())
            && text.contains("in use by another Warden audit writer")
            && text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    // Another process sees the lock too (util-linux `flock`, which fails
    // at once with -n while the folder is held).
    let lock = dir.path().join(warden_audit::lock::LOCK_FILE);
    let held = std::process::Command::new("flock")
        .args(["-n", "-E", "9"])
        .arg(&lock)
        .arg("true")
        .status()
        .expect("run flock");
    assert_eq!(held.code(), Some(9), "another process took the lock");
    drop(first);
    let free = std::process::Command::new("flock")
        .args(["-n", "-E", "9"])
        .arg(&lock)
        .arg("true")
        .status()
        .expect("run flock");
    assert!(free.success(), "the lock went with the store");
    FileStore::open(FileOptions::new(dir.path())).expect("open again");
}

#[test]
fn an_old_file_is_left_behind_before_the_next_batch() {
    let dir = tempfile::tempdir().expect("dir");
    let options = || FileOptions {
        dir: dir.path().to_path_buf(),
        max_file_size: 1 << 30,
        max_file_age: Duration::ZERO,
    };
    for _ in 0..3 {
        let log = AuditLog::start(
            FileStore::open(options()).expect("open"),
            Vec::new(),
            writer(100),
        )
        .expect("start");
        assert!(log.record(call(&log, 1)));
        log.close();
    }
    // Every batch went to a new file, the last one having aged past zero:
    // at least one per run (a record and its checkpoint may be two).
    let files = files(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    for path in &files {
        let first: Record = serde_json::from_str(&lines(path)[0]).expect("json");
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(
            parse_segment_name(name).map(|(_, seq)| seq),
            Some(first.seq)
        );
    }
    assert_eq!(verify(dir.path(), Some(&key())).expect("ok").records, 3);
}

// === verify ===

#[test]
fn an_untouched_trail_verifies() {
    let dir = trail();
    let summary = verify(dir.path(), Some(&key())).expect("verifies");
    assert_eq!(summary.chain, INSTANCE);
    assert_eq!(summary.records, 200);
    // Checkpoints fall at batch ends, so their number depends on batching.
    assert!(summary.checkpoints >= 2, "{summary}");
    assert_eq!(summary.first_seq, 1);
    assert_eq!(summary.last_seq, 200 + summary.checkpoints);
    assert!(summary.first_time <= summary.last_time);
    assert_eq!(
        summary.signatures,
        Signatures::Checked {
            key: public_key_text(&key())
        }
    );
    let unchecked = verify(dir.path(), None).expect("verifies");
    assert_eq!(
        unchecked.signatures,
        Signatures::NotChecked {
            keys: vec![public_key_text(&key())]
        }
    );
    assert!(unchecked.to_string().contains("signatures NOT checked"));
}

#[test]
fn a_trail_continued_after_a_restart_verifies() {
    let dir = tempfile::tempdir().expect("dir");
    write_trail(dir.path(), 50, 4 * 1024, 20);
    let before = files(dir.path()).len();
    let head = store(dir.path(), 4 * 1024)
        .head(INSTANCE)
        .expect("head")
        .expect("a head");
    let last = lines(files(dir.path()).last().expect("file"))
        .pop()
        .expect("line");
    assert!(
        last.contains(r#""kind":"checkpoint""#),
        "closed with a checkpoint"
    );
    assert_eq!(head.hash, line_hash(&last));
    write_trail(dir.path(), 50, 4 * 1024, 20);
    assert!(files(dir.path()).len() > before);
    let summary = verify(dir.path(), Some(&key())).expect("verifies");
    assert_eq!(summary.records, 100);
    assert!(summary.checkpoints >= 2, "at least a closing one per run");
}

#[test]
fn an_edited_line_is_named_by_the_record_after_it() {
    let dir = trail();
    let path = files(dir.path())[1].clone();
    let mut content = lines(&path);
    let i = record_line(&content, 2);
    content[i] = content[i].replace(r#""decision":"deny""#, r#""decision":"allow""#);
    content[i] = content[i].replace(r#""latency_us":"#, r#""latency_us":1"#);
    write_lines(&path, &content);
    let problem = first_problem(dir.path());
    assert!(
        matches!(problem.kind, ProblemKind::Edited { .. }),
        "{problem}"
    );
    assert_eq!(problem.location.to_string(), at(&path, i + 1));
    assert!(problem.to_string().contains("changed after it was written"));
}

#[test]
fn an_edited_last_record_is_caught_by_the_closing_checkpoint() {
    let dir = trail();
    let path = files(dir.path()).pop().expect("file");
    let mut content = lines(&path);
    let i = content.len() - 2;
    content[i] = content[i].replace(r#""tool":""#, r#""tool":"x"#);
    write_lines(&path, &content);
    let problem = first_problem(dir.path());
    assert!(
        matches!(problem.kind, ProblemKind::Edited { .. }),
        "{problem}"
    );
    assert_eq!(problem.location.to_string(), at(&path, i + 1));
}

#[test]
fn a_deleted_line_is_a_gap_inside_its_file() {
    let dir = trail();
    let path = files(dir.path())[1].clone();
    let mut content = lines(&path);
    let first: Record = serde_json::from_str(&content[0]).expect("json");
    content.remove(3);
    write_lines(&path, &content);
    let problem = first_problem(dir.path());
    let missing = first.seq + 3;
    assert_eq!(
        problem.kind,
        ProblemKind::Missing {
            from: missing,
            to: missing,
            before: warden_audit::Location::line(path.display().to_string().into(), 3),
            across_files: false,
        },
        "{problem}"
    );
    assert!(
        problem.to_string().contains("lines were deleted"),
        "{problem}"
    );
}

#[test]
fn swapped_lines_are_out_of_order() {
    let dir = trail();
    let path = files(dir.path())[1].clone();
    let mut content = lines(&path);
    content.swap(4, 5);
    write_lines(&path, &content);
    let problem = first_problem(dir.path());
    assert!(
        matches!(problem.kind, ProblemKind::OutOfOrder { .. }),
        "{problem}"
    );
    assert_eq!(problem.location.to_string(), at(&path, 5));
    assert!(problem.to_string().contains("swapped"), "{problem}");
}

#[test]
fn a_torn_last_line_is_a_truncated_tail() {
    let dir = trail();
    let path = files(dir.path()).pop().expect("file");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() - 40]).expect("cut");
    let problem = first_problem(dir.path());
    assert_eq!(problem.kind, ProblemKind::TornLine, "{problem}");
    assert_eq!(
        problem.location.to_string(),
        at(&path, lines(&path).len()),
        "names the torn line"
    );
}

#[test]
fn a_trail_cut_after_records_no_checkpoint_vouches_for_is_a_truncated_tail() {
    let dir = trail();
    let path = files(dir.path()).pop().expect("file");
    let mut content = lines(&path);
    // Drop the closing checkpoint: the records before it stand unvouched.
    content.pop();
    write_lines(&path, &content);
    let problem = first_problem(dir.path());
    assert!(
        matches!(problem.kind, ProblemKind::Unvouched { count, .. } if count > 0),
        "{problem}"
    );
    let text = problem.to_string();
    assert!(text.contains("cut") && text.contains("crashed"), "{text}");
    assert_eq!(problem.location.to_string(), at(&path, content.len()));
}

/// Rewrite every line from `from` (across files) as an attacker who can
/// write the files but does not hold the key would: chain recomputed,
/// checkpoints signed by `forger`.
fn rechain(dir: &Path, from: (usize, usize), forger: &SigningKey) {
    let mut prev: Option<String> = None;
    for (f, path) in files(dir).iter().enumerate() {
        let mut content = lines(path);
        for (l, line) in content.iter_mut().enumerate() {
            if (f, l) >= from {
                let mut record: Record = serde_json::from_str(line).expect("json");
                if let Some(prev) = &prev {
                    record.prev = prev.as_str().into();
                }
                if record.kind == Kind::Checkpoint {
                    let message = checkpoint_message(&record.chain, record.seq - 1, &record.prev);
                    let detail = CheckpointDetail {
                        head_seq: record.seq - 1,
                        head_hash: record.prev.to_string(),
                        key: public_key_text(forger),
                        signature: base64_signature(forger, &message),
                    };
                    record.detail = Some(serde_json::to_value(detail).expect("detail"));
                }
                *line = serde_json::to_string(&record).expect("line");
            }
            prev = Some(line_hash(line));
        }
        write_lines(path, &content);
    }
}

fn base64_signature(key: &SigningKey, message: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key.sign(message.as_bytes()).to_bytes())
}

#[test]
fn a_forged_checkpoint_is_caught_by_the_public_key() {
    let dir = trail();
    let forger = SigningKey::from_bytes(&[9; 32]);
    let path = files(dir.path())[1].clone();
    let mut content = lines(&path);
    let i = record_line(&content, 1);
    content[i] = content[i].replace(r#""decision":""#, r#""decision":"x"#);
    write_lines(&path, &content);
    rechain(dir.path(), (1, i), &forger);

    let problem = first_problem(dir.path());
    assert_eq!(
        problem.kind,
        ProblemKind::OtherKey {
            key: public_key_text(&forger)
        },
        "{problem}"
    );
    assert!(problem.to_string().contains("signed by another key"));
    // Without a key the chain is consistent, and the summary says that the
    // signatures were not checked (and which keys the checkpoints name).
    let unchecked = verify(dir.path(), None).expect("consistent");
    let Signatures::NotChecked { keys } = &unchecked.signatures else {
        panic!("{unchecked}");
    };
    assert!(keys.contains(&public_key_text(&forger)), "{keys:?}");
    assert!(unchecked.to_string().contains("NOT checked"), "{unchecked}");
}

#[test]
fn a_checkpoint_with_a_bad_signature_under_the_right_key_name_is_forged() {
    let dir = trail();
    let path = files(dir.path()).pop().expect("file");
    let mut content = lines(&path);
    let last = content.len() - 1;
    let mut record: Record = serde_json::from_str(&content[last]).expect("json");
    let mut detail: CheckpointDetail =
        serde_json::from_value(record.detail.take().expect("detail")).expect("detail");
    detail.signature = base64_signature(&SigningKey::from_bytes(&[3; 32]), "something else");
    record.detail = Some(serde_json::to_value(&detail).expect("detail"));
    content[last] = serde_json::to_string(&record).expect("line");
    write_lines(&path, &content);
    let problem = first_problem(dir.path());
    assert_eq!(problem.kind, ProblemKind::BadSignature, "{problem}");
    assert_eq!(problem.location.to_string(), at(&path, last + 1));
}

#[test]
fn a_rotated_file_missing_from_the_middle_names_both_files() {
    let dir = trail();
    let all = files(dir.path());
    let gone = &all[1];
    let first_missing: Record = serde_json::from_str(&lines(gone)[0]).expect("json");
    let last_missing: Record =
        serde_json::from_str(lines(gone).last().expect("line")).expect("json");
    std::fs::remove_file(gone).expect("remove");
    let problem = first_problem(dir.path());
    assert!(
        matches!(problem.kind, ProblemKind::Missing { from, to, across_files: true, .. }
            if from == first_missing.seq && to == last_missing.seq),
        "{problem}"
    );
    let text = problem.to_string();
    assert!(
        text.contains(&all[0].display().to_string()),
        "names the file before: {text}"
    );
    assert!(
        text.contains(&all[2].display().to_string()),
        "names the file after: {text}"
    );
    assert!(
        text.contains(&format!(
            "records {} to {}",
            first_missing.seq, last_missing.seq
        )),
        "{text}"
    );
    assert!(text.contains("rotated file is missing"), "{text}");
}

#[test]
fn malformed_lines_unknown_versions_and_wrong_checkpoint_heads_are_named() {
    let dir = trail();
    let path = files(dir.path())[1].clone();
    let original = lines(&path);

    let mut content = original.clone();
    content[2] = "{\"v\":1,\"id\":".into();
    write_lines(&path, &content);
    let problem = first_problem(dir.path());
    assert!(
        matches!(problem.kind, ProblemKind::Malformed { .. }),
        "{problem}"
    );
    assert_eq!(problem.location.to_string(), at(&path, 3));

    let mut content = original.clone();
    content[2] = content[2].replacen(r#"{"v":1,"#, r#"{"v":7,"#, 1);
    write_lines(&path, &content);
    let problem = first_problem(dir.path());
    assert_eq!(
        problem.kind,
        ProblemKind::UnknownVersion { v: 7 },
        "{problem}"
    );
    assert_eq!(problem.location.to_string(), at(&path, 3));
    write_lines(&path, &original);

    // The closing checkpoint names a head other than the record before it.
    let newest = files(dir.path()).pop().expect("file");
    let mut content = lines(&newest);
    let last = content.len() - 1;
    let mut record: Record = serde_json::from_str(&content[last]).expect("json");
    let mut detail: CheckpointDetail =
        serde_json::from_value(record.detail.take().expect("detail")).expect("detail");
    detail.head_seq -= 1;
    record.detail = Some(serde_json::to_value(&detail).expect("detail"));
    content[last] = serde_json::to_string(&record).expect("line");
    write_lines(&newest, &content);
    let problem = verify(dir.path(), None).expect_err("wrong head");
    assert!(
        matches!(problem.kind, ProblemKind::CheckpointHead { .. }),
        "{problem}"
    );
    assert_eq!(problem.location.to_string(), at(&newest, last + 1));
}

// === query ===

#[test]
fn query_reads_every_file_and_applies_the_filter() {
    let dir = trail();
    let all: Vec<Record> = query_files(&[dir.path().to_path_buf()], &Filter::default())
        .collect::<Result<_, _>>()
        .expect("records");
    let checkpoints_written = verify(dir.path(), None).expect("ok").checkpoints as usize;
    assert_eq!(all.len(), 200 + checkpoints_written);
    let filter = Filter {
        tool: Some("delete".into()),
        decision: Some("deny".into()),
        session: Some("session-0".into()),
        principal: Some("user-0".into()),
        kind: Some(parse_kind("tool_call").expect("kind")),
        ..Filter::default()
    };
    let denied: Vec<Record> = query_files(&[dir.path().to_path_buf()], &filter)
        .collect::<Result<_, _>>()
        .expect("records");
    // i % 3 == 0, i % 4 == 0 and i % 2 == 0: i % 12 == 0.
    assert_eq!(denied.len(), 200 / 12 + 1);
    let checkpoints = query_files(
        &[dir.path().to_path_buf()],
        &Filter {
            kind: Some(Kind::Checkpoint),
            since: Some(all[0].time.clone()),
            ..Filter::default()
        },
    )
    .count();
    assert_eq!(checkpoints, checkpoints_written);
}

// === disk full ===

/// A tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("dir");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs root (it mounts a {size} tmpfs at {} to fill it): mount failed: {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_refuses_durable_records_and_loses_nothing_acknowledged() {
    let disk = Tmpfs::mount("256k");
    let audit = disk.path().join("audit");
    // Room to free later, so the store can recover.
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 64 * 1024]).expect("ballast");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let log = AuditLog::start(store(&audit, 16 * 1024), Vec::new(), writer(10)).expect("start");

    let mut acknowledged = Vec::new();
    let mut refusals = Vec::new();
    for i in 0..10_000 {
        let mut record = call(&log, i);
        record.rationale = Some("x".repeat(1000));
        let id = record.id;
        match runtime.block_on(log.record_durable(record)) {
            Ok(()) => acknowledged.push(id),
            // A rollback frees what the failed batch took, so a record may
            // fit again now and then: go on until refusals repeat.
            Err(err) if refusals.len() < 3 => refusals.push(err),
            Err(_) => break,
        }
    }
    assert_eq!(refusals.len(), 3, "the disk filled up");
    assert!(refusals[0].reason.contains("file"), "{}", refusals[0]);
    assert!(acknowledged.len() > 20, "{}", acknowledged.len());
    assert!(
        log.stats()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );

    // What is on disk now is a whole chain (rolled back, no torn batch),
    // holding everything acknowledged; only its tail is not vouched for yet.
    let on_disk = |ids: &[uuid::Uuid]| {
        let held: std::collections::HashSet<uuid::Uuid> =
            query_files(std::slice::from_ref(&audit), &Filter::default())
                .map(|r| r.expect("record").id)
                .collect();
        ids.iter().all(|id| held.contains(id))
    };
    assert!(
        on_disk(&acknowledged),
        "every acknowledged record is on disk"
    );
    match verify(&audit, Some(&key())) {
        Ok(_) => {}
        Err(problem) => assert!(
            matches!(problem.kind, ProblemKind::Unvouched { .. }),
            "{problem}"
        ),
    }

    // Space comes back: durable records are taken again, the outage is on
    // the record, and the closed trail verifies.
    std::fs::remove_file(&ballast).expect("free space");
    let record = call(&log, 1);
    let id = record.id;
    runtime
        .block_on(log.record_durable(record))
        .expect("recovered");
    acknowledged.push(id);
    log.close();
    assert!(on_disk(&acknowledged));
    let summary = verify(&audit, Some(&key())).expect("the trail verifies");
    assert!(summary.records as usize >= acknowledged.len() + 2);
    let outage: Vec<Record> = query_files(std::slice::from_ref(&audit), &Filter::default())
        .map(|r| r.expect("record"))
        .filter(|r| matches!(r.kind, Kind::SinkFailed | Kind::SinkRecovered))
        .collect();
    assert_eq!(outage.len(), 2, "{outage:?}");
}
