//! Reading the serving log back: the files of a directory in time order, their records
//! decoded, damage counted (never returned).
//!
//! A file is read whole into memory (at most `segment_bytes` plus one block), then block
//! by block; a file whose header is not a record log's is reported and skipped.
//!
//! Thread-safety: plain functions over files the writer never rewrites.

use std::path::{Path, PathBuf};

use featstore_format::reclog::LogReader;

use super::ServeLogError;
use super::record::{Decoder, Record};
use super::writer::{created_of, list_files};
use crate::types::TimestampMs;

/// Which records to read.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Oldest log time, inclusive (ms since the epoch).
    pub from_ms: Option<TimestampMs>,
    /// Newest log time, exclusive.
    pub to_ms: Option<TimestampMs>,
    /// Only records of this feature service (its name, without version).
    pub service: Option<String>,
    /// Only this request.
    pub request_id: Option<String>,
}

impl Selection {
    fn keeps(&self, r: &Record) -> bool {
        let t = r.log_ms();
        self.from_ms.is_none_or(|f| t >= f)
            && self.to_ms.is_none_or(|to| t < to)
            && self
                .service
                .as_deref()
                .is_none_or(|s| r.service_name() == Some(s))
            && self
                .request_id
                .as_deref()
                .is_none_or(|id| r.request_id == id)
    }
}

/// What reading found besides records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Files read.
    pub files: u64,
    /// Records read (before the selection).
    pub records: u64,
    /// Records selected.
    pub selected: u64,
    /// Damaged regions skipped.
    pub corruptions: u64,
    /// Records lost inside valid blocks.
    pub corrupt_records: u64,
    /// Records whose checksums held but that do not decode (a writer bug).
    pub undecodable: u64,
    /// Files that end in a torn block (a crash while writing).
    pub torn_files: u64,
    /// Files without the end marker (being written, or a crash between blocks).
    pub unclosed_files: u64,
    /// Files that are not record logs, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// The files of `dir` that may hold records of `selection`'s time range: a file's
/// records are newer than its creation and older than the next file's.
fn files_for(dir: &Path, selection: &Selection) -> Result<Vec<PathBuf>, ServeLogError> {
    let files = list_files(dir)?;
    let created: Vec<Option<i64>> = files.iter().map(|p| created_of(p)).collect();
    Ok(files
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let start = created.get(*i).copied().flatten().unwrap_or(i64::MIN);
            let next = created.get(i + 1).copied().flatten();
            // Clocks may step back, so a margin of one minute either way.
            let margin = 60_000;
            selection
                .to_ms
                .is_none_or(|to| start.saturating_sub(margin) < to)
                && selection
                    .from_ms
                    .is_none_or(|from| next.is_none_or(|n| n.saturating_add(margin) >= from))
        })
        .map(|(_, p)| p.clone())
        .collect())
}

/// Calls `f` on every selected record of `dir`, in file order.
pub fn scan(
    dir: &Path,
    selection: &Selection,
    mut f: impl FnMut(Record),
) -> Result<ScanReport, ServeLogError> {
    let mut report = ScanReport::default();
    for path in files_for(dir, selection)? {
        let bytes = std::fs::read(&path).map_err(|source| ServeLogError::Io {
            path: path.clone(),
            source,
        })?;
        let reader = match LogReader::new(&bytes) {
            Ok(r) => r,
            Err(e) => {
                report.unreadable.push((path, e.to_string()));
                continue;
            }
        };
        report.files += 1;
        let mut decoder = Decoder::new();
        let log = reader.for_each_record(|bytes| match decoder.decode(bytes) {
            Ok(None) => {}
            Ok(Some(record)) => {
                report.records += 1;
                if selection.keeps(&record) {
                    report.selected += 1;
                    f(record);
                }
            }
            Err(e) => {
                report.undecodable += 1;
                tracing::warn!(error = %e, "serving log: a checked record does not decode");
            }
        });
        report.corruptions += log.corruption_count;
        report.corrupt_records += log.corrupt_records;
        report.torn_files += u64::from(log.torn_tail_bytes > 0);
        report.unclosed_files += u64::from(!log.clean_end);
    }
    Ok(report)
}

/// The selected records of `dir`.
pub fn read_all(
    dir: &Path,
    selection: &Selection,
) -> Result<(Vec<Record>, ScanReport), ServeLogError> {
    let mut out = Vec::new();
    let report = scan(dir, selection, |r| out.push(r))?;
    Ok((out, report))
}

/// The newest `n` records of `dir` (read from the newest files back).
pub fn tail(dir: &Path, n: usize) -> Result<Vec<Record>, ServeLogError> {
    let files = list_files(dir)?;
    let mut out: Vec<Record> = Vec::new();
    for path in files.iter().rev() {
        let bytes = std::fs::read(path).map_err(|source| ServeLogError::Io {
            path: path.clone(),
            source,
        })?;
        let Ok(reader) = LogReader::new(&bytes) else {
            continue;
        };
        let mut records = Vec::new();
        let mut decoder = Decoder::new();
        reader.for_each_record(|b| {
            if let Ok(Some(r)) = decoder.decode(b) {
                records.push(r);
            }
        });
        let take = n.saturating_sub(out.len()).min(records.len());
        let mut newest: Vec<Record> = records.split_off(records.len() - take);
        newest.append(&mut out);
        out = newest;
        if out.len() >= n {
            break;
        }
    }
    Ok(out)
}
