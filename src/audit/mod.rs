//! The audit log: one durable record per admin action (registry change, load,
//! activation, forced activation, rollback, drop, export, deletion, token-file reload),
//! with who, when, which request and the outcome.
//!
//! Format (`docs/audit.md`): a text file `<data dir>/audit/audit.log` of JSON lines,
//! one [`AuditRecord`] per line, in the order the actions finished. Each record is
//! written whole with one `write` on a file opened for appending, then `fsync`ed before
//! the action's answer is sent, so an acknowledged action is always on record. A crash
//! during a write can leave a torn last line; readers skip a line that does not parse
//! and count it ([`AuditPage::skipped`]), and the next append starts a fresh line.
//!
//! It is not a tamper-proof ledger: anyone who can write the data directory can edit
//! it. Ship it elsewhere (it is append-only text) where that matters.
//!
//! Thread-safety: [`AuditLog`] is `Send + Sync`; appends are serialized by a mutex
//! that holds the file and the next sequence number (a std mutex: held across the
//! write and fsync, which block).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::types::TimestampMs;

/// The file name inside the audit directory.
pub const FILE_NAME: &str = "audit.log";

/// Most records one read answers.
pub const MAX_PAGE: usize = 10_000;

/// One admin action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 1, gapless while the file is intact.
    pub seq: u64,
    /// When the action finished, ms since the epoch.
    pub time_ms: TimestampMs,
    /// Who: a principal id, `anonymous` on a server without a token file, `cli` for the
    /// command line on the data directory, `system` for the server itself.
    pub principal: String,
    /// The principal's team, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The request's `X-Request-Id`, when it came over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// What: `load`, `activate`, `rollback`, `drop_old_versions`, `apply_definitions`,
    /// `apply_registry`, `delete_definition`, `retire_service`, `serving_log_export`,
    /// `delete_entity`, `token_file_reload`, ...
    pub action: String,
    /// On what: the route's parameters (`group=items version=3`) or the file.
    pub target: String,
    /// `ok`, `refused` (4xx) or `failed` (5xx or an error).
    pub outcome: String,
    /// The HTTP status answered, when over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// More: a forced activation's `by` and reason, an error's message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// An action to record; the log assigns `seq` and `time_ms`.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// See [`AuditRecord::principal`].
    pub principal: String,
    /// See [`AuditRecord::team`].
    pub team: Option<String>,
    /// See [`AuditRecord::request_id`].
    pub request_id: Option<String>,
    /// See [`AuditRecord::action`].
    pub action: String,
    /// See [`AuditRecord::target`].
    pub target: String,
    /// See [`AuditRecord::outcome`].
    pub outcome: String,
    /// See [`AuditRecord::status`].
    pub status: Option<u16>,
    /// See [`AuditRecord::detail`].
    pub detail: String,
}

/// A failure of the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Reading or writing the file.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A record would not encode (a bug).
    #[error("audit record does not encode: {0}")]
    Encode(String),
}

struct Appender {
    file: File,
    next_seq: u64,
    /// The file may end without a newline (a torn write): the next append starts with
    /// one.
    needs_newline: bool,
}

/// The audit log of one data directory.
pub struct AuditLog {
    path: PathBuf,
    appender: Mutex<Appender>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

/// A page of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// Records after the asked `seq`, oldest first.
    pub records: Vec<AuditRecord>,
    /// Lines that did not parse (a torn write) and were skipped.
    pub skipped: u64,
    /// True when more records follow the last one given.
    pub more: bool,
}

impl AuditLog {
    /// Opens (creating) the log in `dir`.
    pub fn open(dir: &Path) -> Result<AuditLog, AuditError> {
        let path = dir.join(FILE_NAME);
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io)?;
        let (last, needs_newline) = scan_tail(&path).map_err(io)?;
        // A new file's directory entry must be durable too.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(AuditLog {
            path: path.clone(),
            appender: Mutex::new(Appender {
                file,
                next_seq: last + 1,
                needs_newline,
            }),
        })
    }

    /// The log's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` durably (written and fsynced before returning) and returns its
    /// record.
    pub fn append(&self, entry: AuditEntry) -> Result<AuditRecord, AuditError> {
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        let mut appender = self
            .appender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let record = AuditRecord {
            seq: appender.next_seq,
            time_ms: crate::types::now_ms(),
            principal: entry.principal,
            team: entry.team,
            request_id: entry.request_id,
            action: entry.action,
            target: entry.target,
            outcome: entry.outcome,
            status: entry.status,
            detail: entry.detail,
        };
        let mut line = Vec::with_capacity(256);
        if appender.needs_newline {
            line.push(b'\n');
        }
        serde_json::to_writer(&mut line, &record).map_err(|e| AuditError::Encode(e.to_string()))?;
        line.push(b'\n');
        appender.file.write_all(&line).map_err(io)?;
        appender.file.sync_data().map_err(io)?;
        appender.needs_newline = false;
        appender.next_seq += 1;
        Ok(record)
    }

    /// Up to `limit` records with `seq > after`, oldest first.
    pub fn read(&self, after: u64, limit: usize) -> Result<AuditPage, AuditError> {
        read_page(&self.path, after, limit.min(MAX_PAGE)).map_err(|source| AuditError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// The last sequence number of the file and whether it ends mid-line.
fn scan_tail(path: &Path) -> std::io::Result<(u64, bool)> {
    let reader = BufReader::new(File::open(path)?);
    let mut last = 0;
    let mut ends_clean = true;
    for line in reader.split(b'\n') {
        let line = line?;
        if let Ok(record) = serde_json::from_slice::<AuditRecord>(&line) {
            last = last.max(record.seq);
        }
    }
    let bytes = std::fs::metadata(path)?.len();
    if bytes > 0 {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = File::open(path)?;
        file.seek(SeekFrom::End(-1))?;
        let mut byte = [0u8; 1];
        file.read_exact(&mut byte)?;
        ends_clean = byte[0] == b'\n';
    }
    Ok((last, !ends_clean))
}

fn read_page(path: &Path, after: u64, limit: usize) -> std::io::Result<AuditPage> {
    let reader = BufReader::new(File::open(path)?);
    let mut page = AuditPage::default();
    for line in reader.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<AuditRecord>(&line) {
            Ok(record) if record.seq > after => {
                if page.records.len() == limit {
                    page.more = true;
                    break;
                }
                page.records.push(record);
            }
            Ok(_) => {}
            Err(_) => page.skipped += 1,
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            principal: "ops".into(),
            action: action.into(),
            target: "group=items".into(),
            outcome: "ok".into(),
            ..AuditEntry::default()
        }
    }

    #[test]
    fn records_append_in_order_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        let log = AuditLog::open(dir.path()).expect("open");
        assert_eq!(log.append(entry("load")).expect("append").seq, 1);
        assert_eq!(log.append(entry("activate")).expect("append").seq, 2);
        drop(log);
        let log = AuditLog::open(dir.path()).expect("reopen");
        assert_eq!(log.append(entry("rollback")).expect("append").seq, 3);
        let page = log.read(0, 10).expect("read");
        let actions: Vec<&str> = page.records.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["load", "activate", "rollback"]);
        let page = log.read(1, 1).expect("read");
        assert_eq!(page.records[0].seq, 2);
        assert!(page.more);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_next_record_starts_fresh() {
        let dir = tempfile::tempdir().expect("dir");
        let log = AuditLog::open(dir.path()).expect("open");
        log.append(entry("load")).expect("append");
        drop(log);
        let path = dir.path().join(FILE_NAME);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(br#"{"seq":2,"time_ms":1,"princ"#)
            .expect("torn");
        drop(file);
        let log = AuditLog::open(dir.path()).expect("reopen");
        assert_eq!(log.append(entry("drop")).expect("append").seq, 2);
        let page = log.read(0, 10).expect("read");
        assert_eq!(page.skipped, 1);
        let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2]);
    }
}
