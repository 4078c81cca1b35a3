//! Per-entity deletion in the serving log: every file holding a record that names the
//! entity (a GET of it, a ranking read with it in the context or among the candidates,
//! under its own type or a composite type containing it) is rewritten without those
//! records (storage-format.md, "Serving log files", "Deletion").
//!
//! A read's record is removed whole: the other candidates of a ranking read that named
//! the entity lose their logged row too (a record is one answer; cutting a row out of
//! it would log an answer nobody got).
//!
//! Rewrite protocol, per file: read it, keep every valid block's records but the
//! entity's (column-set records stay in their blocks, so each block still decodes
//! alone; a block left with no read is dropped), write a new file with the same
//! creation time and a fresh file id to `{name}.tmp`, fsync it, rename it over the
//! file and fsync the directory. A crash leaves the old file or the new one, never a
//! mix; a leftover `.tmp` is deleted by the next deletion and never read (its name is
//! not a log file's). Damaged regions and records that do not decode are not carried
//! over (nothing can show they do not hold the entity), and a file that was not
//! closed cleanly is rewritten with an end marker.
//!
//! Memory: one file at a time, read whole (at most `segment_bytes` plus a block) with
//! its rewritten copy.
//!
//! Thread-safety: plain functions over closed files. The running log's writer calls
//! them on its own thread after closing its open file (`super::writer`); the store
//! calls them directly when no writer runs on the directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use featstore_format::reclog::{BlockBuilder, BlockPlace, LogReader, end_marker, file_header};

use super::ServeLogError;
use super::record::{Decoder, Record};
use super::writer::list_files;
use crate::store::erase::{EntityMatch, HolderReport};

/// Suffix of a file being rewritten.
pub const TMP_SUFFIX: &str = ".tmp";

/// Whether `record` names an entity `target` covers.
pub fn record_names(record: &Record, target: &EntityMatch) -> bool {
    let answer = &record.answer;
    answer.context.iter().any(|(t, id)| target.matches(t, id))
        || (target.covers_type(&answer.candidate_type)
            && answer
                .candidates
                .iter()
                .any(|id| target.matches(&answer.candidate_type, id)))
}

/// Rewrites every log file of `dir` that holds a record `target` covers (see the
/// module docs), compressing rewritten blocks at zstd `level` (0: stored).
pub fn erase_dir(
    dir: &Path,
    target: &EntityMatch,
    level: i32,
) -> Result<HolderReport, ServeLogError> {
    let mut report = HolderReport {
        holder: "serving_log".into(),
        ..HolderReport::default()
    };
    remove_leftovers(dir)?;
    for path in list_files(dir)? {
        if let Some(removed) = erase_file(&path, target, level)? {
            report.files_rewritten += 1;
            report.records_removed += removed;
        }
    }
    if report.files_rewritten > 0 {
        sync_dir(dir)?;
    }
    Ok(report)
}

/// Deletes `*.fslog.tmp` files a crashed rewrite left.
fn remove_leftovers(dir: &Path) -> Result<(), ServeLogError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ServeLogError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let leftover = format!(".{}{TMP_SUFFIX}", super::writer::EXTENSION);
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(&leftover) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|source| ServeLogError::Io { path, source })?;
        }
    }
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServeLogError + '_ {
    move |source| ServeLogError::Io {
        path: path.to_owned(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), ServeLogError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Rewrites one file without `target`'s records. Returns the records removed, or
/// `None` when the file holds none and was clean (left as it is). A file whose header
/// is not a record log's is left alone (no reader returns anything from it).
pub fn erase_file(
    path: &Path,
    target: &EntityMatch,
    level: i32,
) -> Result<Option<u64>, ServeLogError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let Ok(mut reader) = LogReader::new(&bytes) else {
        tracing::warn!(path = %path.display(), "serving log: not a log file; left as it is");
        return Ok(None);
    };
    let created = reader.created_ms();
    let mut decoder = Decoder::new();
    let mut kept_blocks: Vec<Vec<&[u8]>> = Vec::new();
    let mut removed = 0u64;
    let blocks: Vec<_> = std::iter::from_fn(|| reader.next_block()).collect();
    let clean = reader.report().is_clean();
    for block in &blocks {
        let mut kept = Vec::new();
        let mut reads = 0usize;
        for raw in block.records() {
            match decoder.decode(raw) {
                Ok(None) => kept.push(raw),
                Ok(Some(record)) if record_names(&record, target) => removed += 1,
                Ok(Some(_)) => {
                    kept.push(raw);
                    reads += 1;
                }
                Err(_) => removed += 1,
            }
        }
        if reads > 0 {
            kept_blocks.push(kept);
        }
    }
    if removed == 0 && clean {
        return Ok(None);
    }
    let file_id = rand::random::<u64>();
    let mut out = file_header(created, file_id).to_vec();
    let mut records = 0u32;
    let level = (level != 0).then_some(level);
    let format = |source| ServeLogError::Format {
        path: path.to_owned(),
        source,
    };
    for kept in kept_blocks {
        let mut block = BlockBuilder::new();
        for raw in kept {
            block.add(raw).map_err(format)?;
        }
        records = records.saturating_add(block.records());
        let place = BlockPlace {
            file_id,
            offset: out.len() as u64,
        };
        out.extend_from_slice(block.finish(place, level).map_err(format)?);
    }
    let place = BlockPlace {
        file_id,
        offset: out.len() as u64,
    };
    out.extend(end_marker(place, records));
    let tmp = tmp_path(path);
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(&out)
        .and_then(|()| file.sync_all())
        .map_err(io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(Some(removed))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}
