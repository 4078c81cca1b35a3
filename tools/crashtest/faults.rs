//! Fault injection below the store: the `faultfs.c` shim, compiled here with the
//! machine's C compiler and preloaded into the server, fails writes, syncs and
//! preallocations of files under the data directory while the control page says so
//! (layout in `faultfs.c`). The harness writes the page with positioned writes; the
//! shim sees them through its shared mapping of the same file.
//!
//! The scenarios ([`Scenario`]) name what fails (a full disk for the WAL, the loader's
//! scratch, segment files; failed syncs of the WAL or of a load's files; a countdown
//! that fails a few random writes anywhere) and which operations the harness runs
//! while the fault is armed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The shim's source, written next to the library it is compiled into.
const SOURCE: &str = include_str!("faultfs.c");

/// Control page offsets (see `faultfs.c`).
const MAGIC: &[u8; 8] = b"FSFAULT1";
const ARMED: u64 = 8;
const OPS: u64 = 16;
const INJECTED: u64 = 48;
const FILTER: u64 = 64;
const FILTER_LEN: usize = 256;
const PAGE: usize = 4096;

/// Operations a fault fails.
pub const OP_WRITE: i64 = 1;
/// fsync, fdatasync, sync_file_range.
pub const OP_SYNC: i64 = 2;
/// fallocate, posix_fallocate.
pub const OP_ALLOCATE: i64 = 4;

/// `ENOSPC`: no space left on device.
pub const ENOSPC: i64 = 28;
/// `EIO`: input/output error.
pub const EIO: i64 = 5;

/// What strerror says for `errno`: a failed operation's message must name it.
pub fn describe(errno: i64) -> &'static str {
    match errno {
        ENOSPC => "No space left on device",
        _ => "Input/output error",
    }
}

/// One armed fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// [`OP_WRITE`] | [`OP_SYNC`] | [`OP_ALLOCATE`].
    pub ops: i64,
    /// The errno returned.
    pub errno: i64,
    /// Matching calls let through first.
    pub skip: i64,
    /// Failures before the fault stops failing (< 0: until disarmed).
    pub budget: i64,
    /// Substring of the path (below the data directory), e.g. `/db/` or `/tmp/`.
    pub filter: String,
}

/// The compiled shim and its control page.
pub struct Shim {
    library: PathBuf,
    control_path: PathBuf,
    control: File,
}

impl Shim {
    /// Writes and compiles the shim in `dir` with `cc`.
    pub fn build(dir: &Path, cc: &str) -> Result<Shim> {
        let source = dir.join("faultfs.c");
        let library = dir.join("libfaultfs.so");
        std::fs::write(&source, SOURCE)?;
        let output = Command::new(cc)
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&library)
            .arg(&source)
            .arg("-ldl")
            .output()
            .with_context(|| format!("running the C compiler `{cc}` (set --cc)"))?;
        if !output.status.success() {
            bail!(
                "compiling the fault shim failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let control_path = dir.join("faultfs.ctl");
        let mut page = vec![0u8; PAGE];
        page[..8].copy_from_slice(MAGIC);
        std::fs::write(&control_path, &page)?;
        let control = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&control_path)?;
        Ok(Shim {
            library,
            control_path,
            control,
        })
    }

    /// The environment that preloads the shim into a server of `data`.
    pub fn env(&self, data: &Path) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.library.display().to_string()),
            (
                "FEATSTORE_FAULT_CTL".into(),
                self.control_path.display().to_string(),
            ),
            ("FEATSTORE_FAULT_ROOT".into(), data.display().to_string()),
        ]
    }

    fn put(&self, offset: u64, value: i64) -> Result<()> {
        self.control.write_all_at(&value.to_le_bytes(), offset)?;
        Ok(())
    }

    fn read(&self, offset: u64) -> Result<i64> {
        let mut bytes = [0u8; 8];
        self.control.read_exact_at(&mut bytes, offset)?;
        Ok(i64::from_le_bytes(bytes))
    }

    /// Arms `fault` (every field first, `armed` last).
    pub fn arm(&self, fault: &Fault) -> Result<()> {
        self.put(ARMED, 0)?;
        self.put(OPS, fault.ops)?;
        self.put(OPS + 8, fault.errno)?;
        self.put(OPS + 16, fault.skip)?;
        self.put(OPS + 24, fault.budget)?;
        let mut filter = [0u8; FILTER_LEN];
        let bytes = fault.filter.as_bytes();
        if bytes.len() >= FILTER_LEN {
            bail!("fault filter `{}` is too long", fault.filter);
        }
        filter[..bytes.len()].copy_from_slice(bytes);
        self.control.write_all_at(&filter, FILTER)?;
        self.put(ARMED, 1)
    }

    /// Stops failing anything.
    pub fn disarm(&self) -> Result<()> {
        self.put(ARMED, 0)
    }

    /// Calls failed so far, in every server life.
    pub fn injected(&self) -> Result<i64> {
        self.read(INJECTED)
    }
}

/// A fault scenario of one server life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// The disk is full for the WAL while producers push.
    PushWalFull,
    /// WAL syncs fail (EIO) while producers push.
    PushWalSyncFails,
    /// The disk is full while an activation, rollback or drop writes the manifest.
    MetaFull,
    /// Syncs fail while an activation, rollback or drop writes the manifest.
    MetaSyncFails,
    /// The loader's scratch (sort runs, SST files) cannot be written: disk full.
    LoadScratchFull,
    /// The new version's hot segment cannot be written: disk full.
    LoadSegmentFull,
    /// Syncs under the database fail while a load ingests and commits.
    LoadDbSyncFails,
    /// A few writes or syncs anywhere in the data directory fail after a random count,
    /// under the whole mixed workload.
    Countdown,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 8] = [
        Scenario::PushWalFull,
        Scenario::PushWalSyncFails,
        Scenario::MetaFull,
        Scenario::MetaSyncFails,
        Scenario::LoadScratchFull,
        Scenario::LoadSegmentFull,
        Scenario::LoadDbSyncFails,
        Scenario::Countdown,
    ];

    /// The scenario of a command-line name (see `--scenarios`).
    pub fn parse(name: &str) -> Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .find(|s| s.flag() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.flag()).collect();
                format!(
                    "unknown scenario `{name}`; expected one of {}",
                    names.join(", ")
                )
            })
    }

    /// Its command-line name.
    pub fn flag(self) -> &'static str {
        match self {
            Scenario::PushWalFull => "push-wal-full",
            Scenario::PushWalSyncFails => "push-wal-sync",
            Scenario::MetaFull => "meta-full",
            Scenario::MetaSyncFails => "meta-sync",
            Scenario::LoadScratchFull => "load-scratch-full",
            Scenario::LoadSegmentFull => "load-segment-full",
            Scenario::LoadDbSyncFails => "load-db-sync",
            Scenario::Countdown => "countdown",
        }
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::PushWalFull => "push: WAL disk full",
            Scenario::PushWalSyncFails => "push: WAL fsync EIO",
            Scenario::MetaFull => "meta: disk full",
            Scenario::MetaSyncFails => "meta: fsync EIO",
            Scenario::LoadScratchFull => "load: scratch disk full",
            Scenario::LoadSegmentFull => "load: segment disk full",
            Scenario::LoadDbSyncFails => "load: ingest/commit fsync EIO",
            Scenario::Countdown => "countdown: random write/sync fails",
        }
    }

    /// The fault it arms (`skip` and `budget` of the countdown drawn by the caller).
    pub fn fault(self, skip: i64, budget: i64) -> Fault {
        let (ops, errno, filter) = match self {
            Scenario::PushWalFull | Scenario::MetaFull => (OP_WRITE | OP_ALLOCATE, ENOSPC, "/db/"),
            Scenario::PushWalSyncFails | Scenario::MetaSyncFails | Scenario::LoadDbSyncFails => {
                (OP_SYNC, EIO, "/db/")
            }
            Scenario::LoadScratchFull => (OP_WRITE | OP_ALLOCATE, ENOSPC, "/tmp/"),
            Scenario::LoadSegmentFull => (OP_WRITE | OP_ALLOCATE, ENOSPC, "/segments"),
            Scenario::Countdown => (OP_WRITE | OP_SYNC, ENOSPC, ""),
        };
        let (skip, budget) = if self == Scenario::Countdown {
            (skip, budget)
        } else {
            (0, -1)
        };
        Fault {
            ops,
            errno,
            skip,
            budget,
            filter: filter.to_owned(),
        }
    }

    /// Whether the fault fails RocksDB's own writes (its WAL or files), so that a
    /// failed operation leaves the database unable to write: `/readyz` must then say
    /// so even if no push has failed yet.
    pub fn fails_the_database(self) -> bool {
        matches!(
            self,
            Scenario::MetaFull | Scenario::MetaSyncFails | Scenario::LoadDbSyncFails
        )
    }

    /// What the failing operations are: pushes, a manifest-writing admin operation, or
    /// a load.
    pub fn target(self) -> Target {
        match self {
            Scenario::PushWalFull | Scenario::PushWalSyncFails => Target::Push,
            Scenario::MetaFull | Scenario::MetaSyncFails => Target::Admin,
            Scenario::LoadScratchFull | Scenario::LoadSegmentFull | Scenario::LoadDbSyncFails => {
                Target::Load
            }
            Scenario::Countdown => Target::Mixed,
        }
    }
}

/// The operations a scenario runs while armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Pushes only.
    Push,
    /// One activation, rollback or drop.
    Admin,
    /// One load.
    Load,
    /// Everything, as in a normal life.
    Mixed,
}
