//! The `featstore serve` child process: started on 127.0.0.1 with an ephemeral port,
//! its stderr copied to a log file, and SIGKILLed (the harness kills nothing else).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How to start the server.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `featstore` binary.
    pub binary: PathBuf,
    /// Its data directory.
    pub data: PathBuf,
    /// Its `--store-config` file.
    pub config: PathBuf,
    /// Its `--import-dir`: where the inputs it loads over HTTP are written.
    pub imports: PathBuf,
    /// Where its stderr goes (appended).
    pub log: PathBuf,
    /// Extra environment (the fault shim's preload).
    pub env: Vec<(String, String)>,
}

/// A running (or killed) server.
pub struct Server {
    child: Child,
    addr: mpsc::Receiver<String>,
    base: Option<String>,
    exited: Option<String>,
}

impl Server {
    /// Starts the server; does not wait for it to listen.
    pub fn spawn(launch: &Launch, banner: &str) -> Result<Server> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .with_context(|| format!("opening {}", launch.log.display()))?;
        writeln!(log, "==== {banner}")?;
        let mut command = Command::new(&launch.binary);
        command
            .args(["serve", "--addr", "127.0.0.1:0", "--data"])
            .arg(&launch.data)
            .arg("--store-config")
            .arg(&launch.config)
            .arg("--import-dir")
            .arg(&launch.imports)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in &launch.env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", launch.binary.display()))?;
        let stderr = child.stderr.take().context("server stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if !sent && let Some(addr) = line.strip_prefix("featstore serving on ") {
                    let _ = tx.send(addr.trim().to_owned());
                    sent = true;
                }
            }
        });
        Ok(Server {
            child,
            addr: rx,
            base: None,
            exited: None,
        })
    }

    /// Waits until the server says where it listens; an error if it exits first or
    /// takes longer than `timeout`.
    pub fn wait_listening(&mut self, timeout: Duration) -> Result<String> {
        if let Some(base) = &self.base {
            return Ok(base.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.addr.recv_timeout(Duration::from_millis(20)) {
                Ok(base) => {
                    self.base = Some(base.clone());
                    return Ok(base);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stderr closed: the process is gone.
                    let status = self.child.wait()?;
                    self.exited = Some(status.to_string());
                    bail!("the server exited before listening ({status})");
                }
            }
            if let Some(status) = self.child.try_wait()? {
                self.exited = Some(status.to_string());
                bail!("the server exited before listening ({status})");
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not listen within {:.1}s",
                    timeout.as_secs_f64()
                );
            }
        }
    }

    /// Whether it printed its address (so its store was open).
    pub fn listened(&self) -> bool {
        self.base.is_some()
    }

    /// SIGKILLs the child (a no-op once it has exited) and reaps it. Returns how it
    /// had ended if it exited by itself first.
    pub fn kill(&mut self) -> Option<String> {
        if let Some(exited) = &self.exited {
            return Some(exited.clone());
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            let text = status.to_string();
            self.exited = Some(text.clone());
            return Some(text);
        }
        // std's Child::kill sends SIGKILL to this child's pid only.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.exited = Some("killed".into());
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes the server's store configuration: small budgets, so that memtables flush,
/// loads spill sorted runs and write several SST files, and only some versions get a
/// hot segment (the rest are read from RocksDB).
pub fn write_store_config(path: &Path) -> Result<()> {
    std::fs::write(
        path,
        "block_cache_bytes = 8388608\n\
         write_buffer_bytes = 2097152\n\
         keep_versions = 3\n\
         load_memory_bytes = 16384\n\
         sst_target_bytes = 16384\n\
         hot_segment_bytes = 24576\n\
         access_tracking_entities = 10000\n",
    )
    .with_context(|| format!("writing {}", path.display()))
}
