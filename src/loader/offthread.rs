//! A consumer of the sorted stream that runs on its own thread ([`OffThread`]), so that
//! costly per-record work beside the SST writer (version statistics: sketches, sums)
//! overlaps with the load instead of adding to it on a machine with a spare core.
//!
//! The calling thread copies records into chunks of about [`CHUNK_BYTES`] and hands
//! each full chunk to the worker over a channel of [`CHUNKS_IN_FLIGHT`] chunks: memory
//! stays bounded (a slow worker makes `put` wait), and the worker sees every record in
//! the order put, with restarts in their place. [`OffThread::finish`] hands over the
//! rest, joins the worker and returns the consumer. [`OffThreadFn`] is the same for a
//! consumer that must be built on the worker thread (one that is not `Send`).
//!
//! Errors: the consumer's first error stops it (later records are not given to it) and
//! is returned by the next `put` or by `finish`; a panicking worker is an error, not a
//! panic of the load.

use std::thread::JoinHandle;

use crossbeam::channel::{Receiver, Sender, bounded};

use super::LoadError;
use super::sorter::SortedSink;

/// Bytes of records per chunk handed to the worker.
pub const CHUNK_BYTES: usize = 256 << 10;
/// Chunks queued for the worker before `put` waits.
pub const CHUNKS_IN_FLIGHT: usize = 4;

enum Message {
    /// Records: `key_len:u32 value_len:u32 key value`, repeated.
    Records(Vec<u8>),
    /// Forget what was taken (the stream starts over).
    Restart,
}

/// A [`SortedSink`] whose consumer runs on its own thread (see the module doc).
pub struct OffThread<S: SortedSink + Send + 'static> {
    inner: OffThreadFn<S>,
}

impl<S: SortedSink + Send + 'static> std::fmt::Debug for OffThread<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<S: SortedSink + Send + 'static> OffThread<S> {
    /// Starts a thread named `name` that feeds `consumer`.
    pub fn start(name: &str, mut consumer: S) -> Result<Self, LoadError> {
        let inner = OffThreadFn::start(name, move |records: &mut Records| {
            records.feed(&mut consumer)?;
            Ok(consumer)
        })?;
        Ok(OffThread { inner })
    }

    /// Hands over what is buffered, waits for the worker and returns the consumer.
    pub fn finish(self) -> Result<S, LoadError> {
        self.inner.finish()
    }
}

impl<S: SortedSink + Send + 'static> SortedSink for OffThread<S> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        self.inner.put(key, value)
    }

    fn restart(&mut self) -> Result<(), LoadError> {
        self.inner.restart()
    }
}

/// The worker's side of the stream: what [`OffThreadFn`]'s body reads the records from.
pub struct Records {
    rx: Receiver<Message>,
    spent: Sender<Vec<u8>>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").finish()
    }
}

impl Records {
    /// Feeds `consumer` every record put, in order, with restarts in their place,
    /// until the stream ends ([`OffThreadFn::finish`]); the consumer's first error
    /// stops it.
    pub fn feed(&mut self, consumer: &mut dyn SortedSink) -> Result<(), LoadError> {
        for message in &self.rx {
            match message {
                Message::Records(chunk) => {
                    let mut rest = chunk.as_slice();
                    while let Some((key, value, after)) = split_record(rest) {
                        consumer.put(key, value)?;
                        rest = after;
                    }
                    let mut chunk = chunk;
                    chunk.clear();
                    let _ = self.spent.try_send(chunk);
                }
                Message::Restart => consumer.restart()?,
            }
        }
        Ok(())
    }
}

/// A [`SortedSink`] whose records go to a body running on its own thread, which
/// builds its consumer there (so the consumer need not be `Send`: one holding RocksDB
/// iterators or an SST writer), feeds it from [`Records`] and returns what `finish`
/// returns.
pub struct OffThreadFn<R: Send + 'static> {
    chunk: Vec<u8>,
    tx: Option<Sender<Message>>,
    /// Chunks the worker is done with, reused.
    spent: Receiver<Vec<u8>>,
    worker: Option<JoinHandle<Result<R, LoadError>>>,
}

impl<R: Send + 'static> std::fmt::Debug for OffThreadFn<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffThread")
            .field("buffered", &self.chunk.len())
            .finish()
    }
}

impl<R: Send + 'static> OffThreadFn<R> {
    /// Starts a thread named `name` running `body`.
    pub fn start(
        name: &str,
        body: impl FnOnce(&mut Records) -> Result<R, LoadError> + Send + 'static,
    ) -> Result<Self, LoadError> {
        let (tx, rx) = bounded::<Message>(CHUNKS_IN_FLIGHT);
        let (spent_tx, spent) = bounded::<Vec<u8>>(CHUNKS_IN_FLIGHT + 1);
        let worker = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut records = Records {
                    rx,
                    spent: spent_tx,
                };
                body(&mut records)
            })
            .map_err(|e| LoadError::io(format!("start the {name} thread"), e))?;
        Ok(OffThreadFn {
            chunk: Vec::with_capacity(CHUNK_BYTES),
            tx: Some(tx),
            spent,
            worker: Some(worker),
        })
    }

    fn send(&mut self, message: Message) -> Result<(), LoadError> {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(message).is_ok());
        if sent {
            return Ok(());
        }
        // The worker stopped early: its result says why.
        Err(match self.join() {
            Err(e) => e,
            Ok(_) => LoadError::Consumer("its thread stopped early".into()),
        })
    }

    fn hand_over(&mut self) -> Result<(), LoadError> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let next = self
            .spent
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK_BYTES));
        let full = std::mem::replace(&mut self.chunk, next);
        self.send(Message::Records(full))
    }

    fn join(&mut self) -> Result<R, LoadError> {
        self.tx = None;
        let Some(worker) = self.worker.take() else {
            return Err(LoadError::Consumer("its thread was already joined".into()));
        };
        worker
            .join()
            .map_err(|_| LoadError::Consumer("its thread panicked".into()))?
    }

    /// Hands over what is buffered, ends the stream, waits for the body and returns
    /// its result.
    pub fn finish(mut self) -> Result<R, LoadError> {
        self.hand_over()?;
        self.join()
    }
}

impl<R: Send + 'static> SortedSink for OffThreadFn<R> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
        let (Ok(key_len), Ok(value_len)) = (u32::try_from(key.len()), u32::try_from(value.len()))
        else {
            return Err(LoadError::TooLarge);
        };
        if self.chunk.len() + 8 + key.len() + value.len() > CHUNK_BYTES {
            self.hand_over()?;
        }
        self.chunk.extend_from_slice(&key_len.to_le_bytes());
        self.chunk.extend_from_slice(&value_len.to_le_bytes());
        self.chunk.extend_from_slice(key);
        self.chunk.extend_from_slice(value);
        Ok(())
    }

    fn restart(&mut self) -> Result<(), LoadError> {
        self.chunk.clear();
        self.send(Message::Restart)
    }
}

impl<R: Send + 'static> Drop for OffThreadFn<R> {
    fn drop(&mut self) {
        // A load that failed before `finish`: stop the worker, ignore what it says.
        if self.worker.is_some() {
            let _ = self.join();
        }
    }
}

/// The first record of `bytes` and what follows it.
fn split_record(bytes: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let len = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    let (key_len, value_len) = (len(0)?, len(4)?);
    let key = bytes.get(8..8 + key_len)?;
    let value = bytes.get(8 + key_len..8 + key_len + value_len)?;
    Some((key, value, bytes.get(8 + key_len + value_len..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        records: Vec<(Vec<u8>, Vec<u8>)>,
        restarts: usize,
        fail_at: Option<usize>,
    }

    impl SortedSink for Collect {
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), LoadError> {
            if self.fail_at == Some(self.records.len()) {
                return Err(LoadError::Sst("refused".into()));
            }
            self.records.push((key.to_vec(), value.to_vec()));
            Ok(())
        }

        fn restart(&mut self) -> Result<(), LoadError> {
            self.records.clear();
            self.restarts += 1;
            Ok(())
        }
    }

    fn record(i: u32) -> (Vec<u8>, Vec<u8>) {
        // Sizes vary, some records are empty, so chunk boundaries fall everywhere.
        let key = format!("k{i:08}").into_bytes();
        let value = vec![(i % 251) as u8; (i % 97) as usize * 37];
        (key, value)
    }

    #[test]
    fn every_record_arrives_in_order_across_chunks_and_restarts() {
        let mut sink = OffThread::start("test-consumer", Collect::default()).expect("start");
        for i in 0..5_000 {
            let (k, v) = record(i);
            sink.put(&k, &v).expect("put");
        }
        sink.restart().expect("restart");
        let expected: Vec<_> = (0..20_000).map(record).collect();
        for (k, v) in &expected {
            sink.put(k, v).expect("put");
        }
        let got = sink.finish().expect("finish");
        assert_eq!(got.restarts, 1);
        assert_eq!(got.records.len(), expected.len());
        assert!(got.records == expected);
    }

    #[test]
    fn the_consumers_error_is_returned_not_lost() {
        let consumer = Collect {
            fail_at: Some(10),
            ..Collect::default()
        };
        let mut sink = OffThread::start("test-consumer", consumer).expect("start");
        let mut failed = None;
        for i in 0..200_000 {
            let (k, v) = record(i);
            if let Err(e) = sink.put(&k, &v) {
                failed = Some(e);
                break;
            }
        }
        let err = match failed {
            Some(e) => e,
            None => sink.finish().err().expect("finish fails"),
        };
        assert!(err.to_string().contains("refused"), "{err}");
    }

    /// A consumer that is not `Send`, counting what it takes.
    struct Count(std::rc::Rc<std::cell::Cell<usize>>);

    impl SortedSink for Count {
        fn put(&mut self, _key: &[u8], _value: &[u8]) -> Result<(), LoadError> {
            self.0.set(self.0.get() + 1);
            Ok(())
        }
    }

    #[test]
    fn a_body_builds_its_consumer_on_the_worker_thread() {
        let mut sink = OffThreadFn::start("test-body", |records: &mut Records| {
            let seen = std::rc::Rc::new(std::cell::Cell::new(0));
            records.feed(&mut Count(seen.clone()))?;
            Ok(seen.get())
        })
        .expect("start");
        for i in 0..30_000 {
            let (k, v) = record(i);
            sink.put(&k, &v).expect("put");
        }
        assert_eq!(sink.finish().expect("finish"), 30_000);
    }

    #[test]
    fn dropping_before_finish_stops_the_thread() {
        let mut sink = OffThread::start("test-consumer", Collect::default()).expect("start");
        sink.put(b"k", b"v").expect("put");
        drop(sink);
    }
}
