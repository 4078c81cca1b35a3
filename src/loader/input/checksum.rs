//! The input file's size and CRC-32, computed from the bytes the reader reads anyway,
//! so a load reads its input once.
//!
//! [`FileChecksum`] hashes the file in order as reads reach it: bytes a reader reads
//! at the hashed position extend the hash; a read ahead of it first hashes the gap
//! (bytes the reader skips, such as unused Parquet columns) from the checksum's own
//! handle; a read behind it (Parquet's footer, read first and hashed last) adds
//! nothing. At the end the rest of the file is hashed. Every byte is hashed once, in
//! file order, so the result equals a CRC-32 of the whole file.
//!
//! Readers handed out ([`ChecksummedRead`], [`ChecksummedFile`]) share one
//! [`FileChecksum`]; its state is behind a mutex (Parquet's `ChunkReader` is `Sync`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

/// The running checksum of one input file.
#[derive(Debug)]
pub struct FileChecksum {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The checksum's own handle, for gaps and the tail (its offset is its own).
    file: File,
    hasher: crc32fast::Hasher,
    /// Bytes hashed so far: the file's first `pos` bytes.
    pos: u64,
}

impl State {
    /// Hashes the file from `pos` up to `end`, from the checksum's handle.
    fn fill_to(&mut self, end: u64) -> io::Result<()> {
        if end <= self.pos {
            return Ok(());
        }
        self.file.seek(SeekFrom::Start(self.pos))?;
        let mut buf = vec![0u8; 1 << 16];
        while self.pos < end {
            let want = usize::try_from(end - self.pos)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let slice = buf.get_mut(..want).unwrap_or_default();
            let n = self.file.read(slice)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "input file shrank while it was read",
                ));
            }
            self.hasher.update(slice.get(..n).unwrap_or_default());
            self.pos += n as u64;
        }
        Ok(())
    }
}

impl FileChecksum {
    /// A checksum of the file at `path` (opened again, for its own reads).
    pub fn open(path: &Path) -> io::Result<Arc<FileChecksum>> {
        Ok(Arc::new(FileChecksum {
            state: Mutex::new(State {
                file: File::open(path)?,
                hasher: crc32fast::Hasher::new(),
                pos: 0,
            }),
        }))
    }

    /// Takes `bytes`, read from the file at offset `start`.
    pub fn observe(&self, start: u64, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        let end = start + bytes.len() as u64;
        if end <= state.pos {
            return Ok(());
        }
        state.fill_to(start)?;
        let skip = usize::try_from(state.pos - start).unwrap_or(usize::MAX);
        state.hasher.update(bytes.get(skip..).unwrap_or_default());
        state.pos = end;
        Ok(())
    }

    /// Hashes what no reader read and returns the file's size and CRC-32.
    pub fn finish(&self) -> io::Result<(u64, u32)> {
        let mut state = self.state.lock();
        let len = state.file.metadata()?.len();
        state.fill_to(len)?;
        Ok((state.pos, state.hasher.clone().finalize()))
    }
}

/// A sequential reader that feeds what it reads to a [`FileChecksum`].
#[derive(Debug)]
pub struct ChecksummedRead<R> {
    inner: R,
    pos: u64,
    checksum: Arc<FileChecksum>,
}

impl<R: Read> ChecksummedRead<R> {
    /// `inner` reads the file from offset `pos`.
    pub fn new(inner: R, pos: u64, checksum: Arc<FileChecksum>) -> Self {
        ChecksummedRead {
            inner,
            pos,
            checksum,
        }
    }
}

impl<R: Read> Read for ChecksummedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.checksum
            .observe(self.pos, buf.get(..n).unwrap_or_default())?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A Parquet [`parquet::file::reader::ChunkReader`] over a file that feeds what the
/// Parquet reader reads to a [`FileChecksum`].
#[derive(Debug)]
pub struct ChecksummedFile {
    file: File,
    checksum: Arc<FileChecksum>,
}

impl ChecksummedFile {
    /// Wraps `file`.
    pub fn new(file: File, checksum: Arc<FileChecksum>) -> Self {
        ChecksummedFile { file, checksum }
    }
}

impl parquet::file::reader::Length for ChecksummedFile {
    fn len(&self) -> u64 {
        self.file.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

impl parquet::file::reader::ChunkReader for ChecksummedFile {
    type T = ChecksummedRead<io::BufReader<File>>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(start))?;
        Ok(ChecksummedRead::new(
            io::BufReader::new(file),
            start,
            self.checksum.clone(),
        ))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let mut buffer = Vec::with_capacity(length);
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(start))?;
        let read = file.take(length as u64).read_to_end(&mut buffer)?;
        if read != length {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "expected to read {length} bytes at {start}, read only {read}"
            )));
        }
        self.checksum.observe(start, &buffer)?;
        Ok(buffer.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_any_order_hash_like_the_whole_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let whole = crc32fast::hash(&data);
        // Footer first, then overlapping and skipping reads, nothing of the tail.
        let checksum = FileChecksum::open(&path).expect("open");
        for (start, len) in [
            (99_000, 1_000),
            (0, 10),
            (5, 100),
            (2_000, 30_000),
            (40_000, 5),
        ] {
            checksum
                .observe(start as u64, &data[start..start + len])
                .expect("observe");
        }
        assert_eq!(checksum.finish().expect("finish"), (100_000, whole));
        // A sequential reader.
        let checksum = FileChecksum::open(&path).expect("open");
        let mut read = ChecksummedRead::new(File::open(&path).expect("open"), 0, checksum.clone());
        let mut sink = Vec::new();
        read.read_to_end(&mut sink).expect("read");
        assert_eq!(checksum.finish().expect("finish"), (100_000, whole));
    }

    #[test]
    fn a_parquet_read_hashes_the_whole_file_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.parquet");
        let specs = crate::datagen::write_float_matrix(&path, "m", 20_000, 3, 7).expect("generate");
        let mut registry = crate::registry::Registry::default();
        for (id, spec) in specs.into_iter().enumerate() {
            registry.insert(crate::registry::FeatureDefinition {
                id: u32::try_from(id).expect("id") + 1,
                registered_at_ms: 0,
                updated_at_ms: 0,
                spec,
            });
        }
        let columns = crate::loader::group_columns(&registry, "m");
        let mut records = 0u64;
        let (summary, bytes, crc) = super::super::read_input_checksummed(
            &path,
            None,
            &super::super::InputOptions::default(),
            &columns,
            &mut |_| {
                records += 1;
                Ok(())
            },
        )
        .expect("read");
        let data = std::fs::read(&path).expect("read file");
        assert_eq!((bytes, crc), (data.len() as u64, crc32fast::hash(&data)));
        assert_eq!(summary.records, 60_000);
        assert_eq!(records, 60_000);
    }
}
