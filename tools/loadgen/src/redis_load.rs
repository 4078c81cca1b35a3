//! Loads a wide CSV data file (the one featstore loads) into Redis, in either layout of
//! [`RedisLayout`]:
//!
//! * hash: one hash per row, keyed `{entity_type}:{entity_id}`, one field per feature
//!   column with the cell's text as written in the file (`HSET`);
//! * packed: one string per row, keyed [`packed_key`], the row's cells parsed as float32
//!   and written little-endian in column order (`SET`); an empty cell is NaN, a cell
//!   that is not a number stops the load.
//!
//! Both systems then hold the same values. `event_time` is not stored (Redis has no
//! per-field time; nothing reads it back). Rows are sent as pipelines of
//! [`PIPELINE_ROWS`]. The CSV is the simple form featstore's generator writes (no
//! quoting); a quoted cell, a ragged row or an empty id stops the load with the line
//! number.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;

use crate::redis::RedisConn;
use crate::resp::encode_command;
use crate::workload::{RedisLayout, packed_key};

/// Rows per pipeline.
pub const PIPELINE_ROWS: usize = 500;

/// Longest wait for the replies of one pipeline before the load gives up.
pub const PIPELINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A load that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a wide CSV this loader reads.
    #[error("{path} line {line}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Redis refused or failed.
    #[error("redis: {0}")]
    Redis(String),
}

/// Loads `csv` into Redis at `addr` under `entity_type` in `layout`; returns the rows
/// loaded.
pub async fn load_csv(
    addr: SocketAddr,
    csv: &Path,
    entity_type: &str,
    layout: RedisLayout,
) -> Result<u64, LoadError> {
    let path = csv.display().to_string();
    let io = |source| LoadError::Io {
        path: path.clone(),
        source,
    };
    let format = |line: usize, reason: String| LoadError::Format {
        path: path.clone(),
        line,
        reason,
    };
    let file = std::fs::File::open(csv).map_err(io)?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header = lines
        .next()
        .transpose()
        .map_err(io)?
        .ok_or_else(|| format(1, "empty file".into()))?;
    let columns: Vec<String> = header.split(',').map(str::to_owned).collect();
    if columns.first().map(String::as_str) != Some("entity_id") {
        return Err(format(1, "the first column must be entity_id".into()));
    }
    let skip_time = columns.get(1).map(String::as_str) == Some("event_time");
    let first_feature = if skip_time { 2 } else { 1 };
    if columns.len() <= first_feature {
        return Err(format(1, "no feature columns".into()));
    }
    let mut conn = RedisConn::connect(addr)
        .await
        .map_err(|f| LoadError::Redis(f.message))?;
    let mut pipeline = Vec::new();
    let mut pending = 0usize;
    let mut rows = 0u64;
    for (n, line) in lines.enumerate() {
        let line_no = n + 2;
        let line = line.map_err(io)?;
        if line.is_empty() {
            continue;
        }
        if line.contains('"') {
            return Err(format(line_no, "quoted cells are not supported".into()));
        }
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != columns.len() {
            return Err(format(
                line_no,
                format!("{} cells, the header has {}", cells.len(), columns.len()),
            ));
        }
        let id = cells.first().copied().unwrap_or_default();
        if id.is_empty() {
            return Err(format(line_no, "empty entity_id".into()));
        }
        match layout {
            RedisLayout::Hash => {
                let key = format!("{entity_type}:{id}");
                let mut args: Vec<&[u8]> = vec![b"HSET", key.as_bytes()];
                for (name, cell) in columns.iter().zip(&cells).skip(first_feature) {
                    args.push(name.as_bytes());
                    args.push(cell.as_bytes());
                }
                encode_command(&mut pipeline, &args);
            }
            RedisLayout::Packed => {
                let key = packed_key(entity_type, id);
                let mut row = Vec::with_capacity(4 * (cells.len() - first_feature));
                for (name, cell) in columns.iter().zip(&cells).skip(first_feature) {
                    let value = if cell.is_empty() {
                        f32::NAN
                    } else {
                        cell.parse::<f32>().map_err(|_| {
                            format(line_no, format!("column {name}: `{cell}` is not a float"))
                        })?
                    };
                    row.extend_from_slice(&value.to_le_bytes());
                }
                encode_command(&mut pipeline, &[b"SET", key.as_bytes(), &row]);
            }
        }
        pending += 1;
        rows += 1;
        if pending == PIPELINE_ROWS {
            send(&mut conn, &pipeline, pending).await?;
            pipeline.clear();
            pending = 0;
        }
    }
    if pending > 0 {
        send(&mut conn, &pipeline, pending).await?;
    }
    Ok(rows)
}

/// One pipeline, bounded by [`PIPELINE_TIMEOUT`].
async fn send(conn: &mut RedisConn, pipeline: &[u8], commands: usize) -> Result<(), LoadError> {
    match tokio::time::timeout(PIPELINE_TIMEOUT, conn.exchange(pipeline, commands)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(f)) => Err(LoadError::Redis(f.message)),
        Err(_) => Err(LoadError::Redis(format!(
            "no reply to {commands} writes within {PIPELINE_TIMEOUT:?}"
        ))),
    }
}
