//! `featstore`: the command line. Parses arguments and calls the library; every command
//! that changes state works either on a data directory (`--data`) or, with `--server`,
//! through a running server's HTTP API (RocksDB allows one process per directory).

/// mimalloc, as in production: per-request answer buffers are many small, short-lived
/// allocations.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use featstore::api::groups::{EventTime, LoadBody};
use featstore::api::rank::RankBody;
use featstore::client::{Client, ClientError};
use featstore::datagen::{Dataset, DatasetConfig};
use featstore::loader::LoadRequest;
use featstore::loader::input::{InputFormat, Layout};
use featstore::query::rank::{FeatureSelection, RankRequest};
use featstore::registry::DefinitionFilter;
use featstore::registry::file::read_registry_file;
use featstore::server::ServerConfig;
use featstore::types::parse_timestamp_ms;
use featstore::{FeatureStore, StoreConfig};

#[derive(Parser)]
#[command(
    name = "featstore",
    version,
    about = "Online feature store: versioned batch features on RocksDB, served over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// Data directory of the store (opened directly; no server may be running on it).
    #[arg(long, default_value = "featstore-data", global = true)]
    data: PathBuf,
    /// Base URL of a running server (e.g. http://127.0.0.1:7070); overrides --data.
    #[arg(long, global = true)]
    server: Option<String>,
    /// Engine settings for a store opened directly: a TOML file of memory budgets and
    /// tunables (`block_cache_bytes`, `write_buffer_bytes`, `hot_segment_bytes`, ...;
    /// README, "Memory"). Absent: the defaults.
    #[arg(long, global = true)]
    store_config: Option<PathBuf>,
}

/// The data directory `serve` opens (a server has no `--server` to talk to).
#[derive(clap::Args, Clone)]
struct ServeData {
    /// Data directory of the store (no other process may have it open).
    #[arg(long, default_value = "featstore-data")]
    data: PathBuf,
    /// Engine settings: a TOML file of memory budgets and tunables
    /// (`block_cache_bytes`, `write_buffer_bytes`, `hot_segment_bytes`, ...; README,
    /// "Memory"). Absent: the defaults.
    #[arg(long)]
    store_config: Option<PathBuf>,
}

/// `featstore training-set`: the point-in-time form's options beside the serving log's.
#[derive(clap::Args)]
struct TrainingSetCli {
    #[command(flatten)]
    log: featstore::servelog::cli::TrainingSetArgs,
    /// The spine of a point-in-time set: entity key columns (`{type}_id` or `{type}`;
    /// one per component of a composite type), a timestamp column and label columns
    /// (passed through). Parquet (`.parquet`) or CSV. Per row and feature: the value
    /// with the newest event time at or before the row's timestamp, within its TTL
    /// (else null, with a status column).
    #[arg(long, conflicts_with = "from_log")]
    spine: Option<PathBuf>,
    /// A feature service (`name` or `name@version`).
    #[arg(long, requires = "spine", conflicts_with = "features")]
    service: Option<String>,
    /// Comma-separated feature names.
    #[arg(long, requires = "spine")]
    features: Option<String>,
    /// The spine's timestamp column.
    #[arg(long, default_value = featstore::training::DEFAULT_TIMESTAMP_COLUMN)]
    timestamp_column: String,
    /// Only values featstore knew at each row's timestamp (no late backfills).
    #[arg(long, requires = "spine")]
    as_known_at: bool,
    /// Threads answering the spine (0: one per core).
    #[arg(long, default_value_t = 0, requires = "spine")]
    threads: usize,
    #[command(flatten)]
    target: Target,
}

/// Runs `featstore training-set`.
fn training_set(args: TrainingSetCli) -> Result<()> {
    let Some(spine) = args.spine else {
        return featstore::servelog::cli::run_training_set(args.log);
    };
    if args.target.server.is_some() {
        bail!(
            "training-set --spine reads the store directly (--data); on a server, use POST /v1/training-sets"
        );
    }
    let features = match (args.service, args.features) {
        (Some(service), None) => FeatureSelection::Service(service),
        (None, Some(names)) => FeatureSelection::Names(
            names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        _ => bail!("give --service or --features"),
    };
    let store = open(&args.target)?;
    let job = featstore::training::TrainingJob {
        spine,
        features,
        timestamp_column: args.timestamp_column,
        as_known_at: args.as_known_at,
        out: args.log.out,
        guard: None,
        threads: args.threads,
    };
    let summary = featstore::training::build(&store, &job)?;
    print_json(&summary)
}

#[derive(Subcommand)]
enum Command {
    /// Serve the store over HTTP.
    Serve {
        #[command(flatten)]
        target: ServeData,
        /// Address to bind (loopback by default: featstore runs as a sidecar).
        #[arg(long, default_value = "127.0.0.1:7070")]
        addr: SocketAddr,
        #[command(flatten)]
        limits: ServeLimits,
    },
    /// Register registry objects from a TOML file.
    Apply {
        /// The registry file: `[[feature]]`, `[[entity_type]]`, `[[on_demand]]` and
        /// `[[service]]` tables.
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Load a Parquet or CSV file as a new version of a feature group.
    Load {
        /// Feature group.
        #[arg(long)]
        group: String,
        /// Input file.
        #[arg(long)]
        input: PathBuf,
        /// csv or parquet (default: from the extension).
        #[arg(long)]
        format: Option<InputFormat>,
        /// long or wide (default: from the columns).
        #[arg(long)]
        layout: Option<Layout>,
        /// Event time for wide files without an event_time column (ms or RFC 3339).
        #[arg(long)]
        default_event_time: Option<String>,
        /// Ingest but do not activate the new version.
        #[arg(long)]
        no_activate: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List, activate, roll back or drop versions of a group.
    Versions {
        #[command(subcommand)]
        action: VersionsAction,
    },
    /// Read one entity's features.
    Get {
        /// Entity type.
        entity_type: String,
        /// Entity id.
        entity_id: String,
        /// Comma-separated feature names.
        #[arg(long)]
        names: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete every value of one entity (a privacy request), and of the composite
    /// entities containing it, from every batch version, streamed values, aggregates,
    /// the history, hot segments and the serving log; recorded in the audit log.
    DeleteEntity {
        /// Entity type (`user`).
        #[arg(long)]
        entity_type: String,
        /// Entity id (`u42`).
        #[arg(long)]
        id: String,
        /// Leave the deleted key ranges to RocksDB's own compactions instead of
        /// compacting them before answering (values are unreadable at once either way).
        #[arg(long)]
        no_compact: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Compact every column family of a data directory now (no server may run on
    /// it), so that the retention filters delete every value past its retention.
    Compact {
        #[command(flatten)]
        target: Target,
    },
    /// Push streamed events: a JSON body `{"events": [..]}` from a file or stdin.
    Push {
        /// The events file (`-` or absent: stdin).
        file: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Rank candidates: one context, many candidate entities, in one request.
    Rank {
        /// Entity type of the candidates.
        #[arg(long)]
        entity_type: String,
        /// Comma-separated candidate ids.
        #[arg(long)]
        ids: String,
        /// A context entity, `TYPE=ID` (repeat for several).
        #[arg(long = "context")]
        context: Vec<String>,
        /// Comma-separated feature names.
        #[arg(long, conflicts_with = "service")]
        features: Option<String>,
        /// A feature service (`name` or `name@version`).
        #[arg(long)]
        service: Option<String>,
        /// Answer with what was fetched after this many milliseconds.
        #[arg(long)]
        deadline_ms: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Show which services and on-demand features use which features.
    Lineage {
        #[command(flatten)]
        target: Target,
    },
    /// List registered feature definitions.
    Definitions {
        /// Only this entity type.
        #[arg(long)]
        entity_type: Option<String>,
        /// Only this owner.
        #[arg(long)]
        owner: Option<String>,
        /// Only features with this tag.
        #[arg(long)]
        tag: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Read the serving log: export Parquet, tail, show a request's answer.
    #[command(subcommand)]
    Log(featstore::servelog::cli::LogCommand),
    /// Recompute every logged read from the history as known at its log time and
    /// compare with what was served (per feature: mismatches, rate, largest
    /// difference, examples). Exits 1 when any value differs.
    Parity {
        /// Oldest log time, inclusive (epoch ms or RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Newest log time, exclusive (epoch ms or RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// Only reads of this feature service.
        #[arg(long)]
        service: Option<String>,
        /// The serving log's directory (default: the store config's, else
        /// `<data>/serving-log`).
        #[arg(long)]
        log: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Build a training set (Parquet): point in time from the history (`--spine`), or
    /// the serving log joined with labels (`--from-log`).
    TrainingSet(TrainingSetCli),
    /// Write the history as partitioned Parquet (docs/history-export.md): per group
    /// and feature version, every value a point-in-time question can return, with
    /// its event time and when featstore knew it, plus `_manifest.json`. For Spark
    /// (`tools/spark/training_set.py`), DuckDB and other engines.
    ExportHistory {
        /// The directory to create (absent or empty).
        #[arg(long)]
        out: PathBuf,
        /// Only this group (repeatable; default: every group).
        #[arg(long)]
        group: Vec<String>,
        /// Only these features (comma-separated `name` or `name@version`).
        #[arg(long)]
        features: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Write the synthetic marketplace data set (features.toml and data files).
    GenData {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Size: tiny or demo.
        #[arg(long, default_value = "demo")]
        preset: String,
    },
    /// Write a benchmark corpus: ENTITIES x FEATURES float32 values (deterministic) as
    /// OUT/GROUP.csv (or .parquet) plus OUT/GROUP.features.toml for `apply`.
    GenMatrix {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Feature group.
        #[arg(long)]
        group: String,
        /// Entity type.
        #[arg(long)]
        entity_type: String,
        /// Entity ids are ID_PREFIX0, ID_PREFIX1, ...
        #[arg(long)]
        id_prefix: String,
        /// Feature names are FEATURE_PREFIX00, FEATURE_PREFIX01, ...
        #[arg(long)]
        feature_prefix: String,
        /// Number of entities.
        #[arg(long)]
        entities: u64,
        /// Number of float32 features.
        #[arg(long, default_value_t = 50)]
        features: usize,
        /// Seed of the values.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// csv or parquet.
        #[arg(long, default_value = "csv")]
        format: String,
    },
    /// Make a token for the server's token file (README, "Security model").
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check a hot segment file offline: every checksum, bound and row.
    Verify {
        /// The segment file.
        file: PathBuf,
    },
    /// Generate the demo data set, load it, and serve it.
    Demo {
        /// Directory for the demo's store and data (wiped first).
        #[arg(long, default_value = "featstore-demo")]
        dir: PathBuf,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1:7070")]
        addr: SocketAddr,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        exit_after: Option<u64>,
    },
}

#[derive(Subcommand)]
enum VersionsAction {
    /// List a group's versions and load records.
    List {
        /// Group.
        group: String,
        #[command(flatten)]
        target: Target,
    },
    /// Activate a version.
    Activate {
        /// Group.
        group: String,
        /// Version.
        version: u64,
        /// Activate even though the version failed its validation (needs --by and
        /// --reason, which its report records).
        #[arg(long, requires_all = ["by", "reason"])]
        force: bool,
        /// Who forces the activation.
        #[arg(long)]
        by: Option<String>,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Print a version's statistics (counts, null rate, min/max, mean, std, distinct
    /// count, quantiles per feature).
    Stats {
        /// Group.
        group: String,
        /// Version.
        version: u64,
        #[command(flatten)]
        target: Target,
    },
    /// Re-activate the previously active version.
    Rollback {
        /// Group.
        group: String,
        #[command(flatten)]
        target: Target,
    },
    /// Drop all but the newest K versions (never the active one).
    Drop {
        /// Group.
        group: String,
        /// Versions to keep.
        #[arg(long, default_value_t = 2)]
        keep: usize,
        #[command(flatten)]
        target: Target,
    },
}

fn open(target: &Target) -> Result<FeatureStore> {
    open_dir(&target.data, target.store_config.as_deref(), true)
}

/// The engine settings in `path` (TOML of `StoreConfig`), or the defaults.
fn store_config(path: Option<&Path>) -> Result<StoreConfig> {
    let Some(path) = path else {
        return Ok(StoreConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading store config {}", path.display()))?;
    toml::from_str::<StoreConfig>(&text).with_context(|| format!("store config {}", path.display()))
}

/// Opens the store in `dir`; a directory held by another process (a running server)
/// is explained once, with what to do instead (`--server`, when the command has it).
fn open_dir(dir: &Path, config: Option<&Path>, has_server_flag: bool) -> Result<FeatureStore> {
    match FeatureStore::open(dir, store_config(config)?) {
        Ok(store) => Ok(store),
        Err(e @ featstore::store::StoreError::DirectoryInUse { .. }) if has_server_flag => bail!(
            "{e}: if a featstore server is running on it, send the command to the server with \
             --server http://ADDR (e.g. --server http://127.0.0.1:7070) instead of --data"
        ),
        Err(e @ featstore::store::StoreError::DirectoryInUse { .. }) => {
            bail!("{e}: is a featstore server already running on it?")
        }
        Err(e) => Err(e).with_context(|| format!("opening store in {}", dir.display())),
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints the answer of a request to a running server as pretty JSON (object keys
/// sorted). An error answer's body is printed the same way before the error.
fn remote<T: serde::Serialize>(answer: Result<T, ClientError>) -> Result<()> {
    match answer {
        Ok(value) => print_json(&serde_json::to_value(&value)?),
        Err(ClientError::Server(e)) => {
            match serde_json::from_slice::<serde_json::Value>(&e.body) {
                Ok(json) => print_json(&json)?,
                Err(_) => println!("{}", String::from_utf8_lossy(&e.body)),
            }
            match ureq::http::StatusCode::from_u16(e.status) {
                Ok(status) => bail!("server answered {status}"),
                Err(_) => bail!("server answered {}", e.status),
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut body).context("reading stdin")?;
    Ok(body)
}

async fn serve(
    store: Arc<FeatureStore>,
    addr: SocketAddr,
    health_addr: Option<SocketAddr>,
    config: ServerConfig,
    exit_after: Option<u64>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    eprintln!("featstore serving on http://{}", listener.local_addr()?);
    let health = match health_addr {
        Some(addr) => {
            let health = std::net::TcpListener::bind(addr)
                .with_context(|| format!("binding the health address {addr}"))?;
            eprintln!("featstore health checks on http://{}", health.local_addr()?);
            Some(health)
        }
        None => None,
    };
    let shutdown = async move {
        match exit_after {
            Some(secs) => tokio::time::sleep(std::time::Duration::from_secs(secs)).await,
            None => featstore::server::shutdown_signal().await,
        }
    };
    let listeners = featstore::server::Listeners {
        api: listener,
        health,
    };
    featstore::server::run_on(store, listeners, config, shutdown).await?;
    Ok(())
}

/// `featstore token ...`.
#[derive(Subcommand)]
enum TokenCommand {
    /// Generate a new token and print its `[[principal]]` table for the token file
    /// (the token itself goes to stderr, once: it is stored nowhere).
    New {
        /// Principal id ([a-z0-9_-]).
        #[arg(long)]
        id: String,
        /// Its team.
        #[arg(long)]
        team: String,
        /// Scopes: read, push, admin (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        scope: Vec<String>,
        /// Read patterns (`product_*`, `group:user_daily`; repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        read: Vec<String>,
        /// Push patterns.
        #[arg(long, value_delimiter = ',')]
        push: Vec<String>,
        /// Highest sensitivity class it may read: public, internal, confidential, pii.
        #[arg(long, default_value = "internal")]
        max_sensitivity: String,
        /// Expiry (RFC 3339 or epoch ms); absent: never.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Print the `token_sha256` of a token read from stdin (to re-enter an existing
    /// token in a new file).
    Hash,
}

fn token_command(command: TokenCommand) -> Result<()> {
    use featstore::auth::{PrincipalEntry, TokenSet, file, token};
    match command {
        TokenCommand::New {
            id,
            team,
            scope,
            read,
            push,
            max_sensitivity,
            expires,
        } => {
            let word = |text: &str| serde_json::Value::String(text.trim().to_owned());
            let scopes = scope
                .iter()
                .map(|s| {
                    serde_json::from_value(word(s))
                        .with_context(|| format!("scope `{s}`: use read, push or admin"))
                })
                .collect::<Result<Vec<_>>>()?;
            let max_sensitivity =
                serde_json::from_value(word(&max_sensitivity)).with_context(|| {
                    format!(
                        "sensitivity `{max_sensitivity}`: use public, internal, confidential or pii"
                    )
                })?;
            let new_token = token::generate(&id);
            let entry = PrincipalEntry {
                id,
                team,
                token_sha256: token::to_hex(&token::digest(&new_token)),
                scopes,
                read,
                push,
                max_sensitivity,
                expires,
            };
            let text = file::entry_toml(&entry).map_err(anyhow::Error::msg)?;
            // The table must read back as a valid token file.
            TokenSet::parse(&text).map_err(anyhow::Error::msg)?;
            eprintln!("token (shown once; give it to the principal, store it as a secret):");
            eprintln!("{new_token}");
            print!("{text}");
            Ok(())
        }
        TokenCommand::Hash => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading the token from stdin")?;
            let text = text.trim();
            if token::principal_of(text).is_none() {
                anyhow::bail!("not a token: expected fst.<id>.<secret>");
            }
            println!("{}", token::to_hex(&token::digest(text)));
            Ok(())
        }
    }
}

/// A client of `base`, sending the token of `FEATSTORE_TOKEN` when set.
fn client(base: impl Into<String>) -> Client {
    let client = Client::new(base);
    match std::env::var("FEATSTORE_TOKEN") {
        Ok(token) if !token.trim().is_empty() => client.with_token(&token),
        _ => client,
    }
}

/// The server's resource bounds and health listener (README, "Limits and load
/// shedding").
#[derive(clap::Args)]
struct ServeLimits {
    /// Also answer /healthz, /readyz and /metrics (only) on this address, from a
    /// thread of their own, so probes stay fast when the API is overloaded.
    #[arg(long)]
    health_addr: Option<SocketAddr>,
    /// Largest request body, bytes (413 beyond).
    #[arg(long, default_value_t = ServerConfig::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Memory all in-flight request bodies may take together, bytes (their size plus
    /// an estimate of their decoded size).
    #[arg(long, default_value_t = ServerConfig::default().request_memory_bytes)]
    request_memory_bytes: usize,
    /// How long a request waits for request memory before a 503.
    #[arg(long, default_value_t = ServerConfig::default().memory_wait.into())]
    memory_wait: humantime::Duration,
    /// A body must arrive whole within this time (408 beyond).
    #[arg(long, default_value_t = ServerConfig::default().body_timeout.into())]
    body_timeout: humantime::Duration,
    /// A request head must arrive within this time; also the idle keep-alive time.
    #[arg(long, default_value_t = ServerConfig::default().header_timeout.into())]
    header_timeout: humantime::Duration,
    /// Refuse (503) a request that waited longer than this to start while the server
    /// was backlogged, or `off`.
    #[arg(long, default_value_t = QueueTime(ServerConfig::default().max_queue_time))]
    max_queue_time: QueueTime,
    /// Requests in their work phase at once.
    #[arg(long, default_value_t = ServerConfig::default().max_concurrent_requests)]
    max_concurrent_requests: usize,
    /// Connections served at once, or `auto` (from the descriptor limit).
    #[arg(long, default_value = "auto")]
    max_connections: MaxConnections,
    /// Extra connections, beyond --max-connections, that may only ask health checks.
    #[arg(long, default_value_t = ServerConfig::default().health_connections)]
    health_connections: usize,
    /// On SIGTERM or SIGINT, how long in-flight requests may finish before exit.
    #[arg(long, default_value_t = ServerConfig::default().shutdown_grace.into())]
    shutdown_grace: humantime::Duration,
    /// The token file: every request needs a token it lists, and only what its rules
    /// allow (README, "Security model"). Reloaded when it changes.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Without --token-file, serve a non-loopback address anyway: anyone who can reach
    /// it may read, push and change everything.
    #[arg(long)]
    insecure_open: bool,
    /// A directory HTTP loads may read input files from (repeatable). None: HTTP
    /// loads take uploaded bodies only.
    #[arg(long)]
    import_dir: Vec<PathBuf>,
    /// A directory serving-log exports over HTTP may write to (repeatable).
    #[arg(long)]
    export_dir: Vec<PathBuf>,
}

impl ServeLimits {
    fn config(&self) -> Result<ServerConfig> {
        let config = ServerConfig {
            max_body_bytes: self.max_body_bytes,
            request_memory_bytes: self.request_memory_bytes,
            memory_wait: self.memory_wait.into(),
            body_timeout: self.body_timeout.into(),
            header_timeout: self.header_timeout.into(),
            max_queue_time: self.max_queue_time.0,
            max_concurrent_requests: self.max_concurrent_requests,
            max_connections: self.max_connections.0,
            health_connections: self.health_connections,
            shutdown_grace: self.shutdown_grace.into(),
            token_file: self.token_file.clone(),
            insecure_open: self.insecure_open,
            import_dirs: self.import_dir.clone(),
            export_dirs: self.export_dir.clone(),
        };
        config.validate()?;
        Ok(config)
    }
}

/// `--max-queue-time`: a duration or `off`.
#[derive(Clone, Copy)]
struct QueueTime(Option<std::time::Duration>);

impl std::str::FromStr for QueueTime {
    type Err = humantime::DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(QueueTime(None)),
            _ => s
                .parse::<humantime::Duration>()
                .map(|d| QueueTime(Some(d.into()))),
        }
    }
}

impl std::fmt::Display for QueueTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(d) => humantime::Duration::from(d).fmt(f),
        }
    }
}

/// `--max-connections`: a count or `auto`.
#[derive(Clone, Copy)]
struct MaxConnections(Option<usize>);

impl std::str::FromStr for MaxConnections {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(MaxConnections(None)),
            _ => s.parse().map(|n| MaxConnections(Some(n))),
        }
    }
}

/// Raises the descriptor limit toward the hard limit before the store opens its files.
fn raise_fd_limit() {
    match featstore::server::raise_fd_limit() {
        Ok(limit) => tracing::debug!(soft = limit.soft, hard = limit.hard, "descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the descriptor limit"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        // Readable sockets noticed within a few tasks: the server's load shedding
        // measures how long requests wait from there.
        .event_interval(featstore::server::EVENT_INTERVAL)
        .enable_all()
        .build()?)
}

fn progress_printer(started: std::time::Instant) -> impl Fn(featstore::loader::LoadProgress) {
    move |p| {
        let rate = p.values as f64 / p.elapsed_secs.max(1e-9);
        eprintln!(
            "  {:>5}: {:>12} values  {:>7.1}s  ({:.0} values/s overall, {:.1}s wall)",
            p.phase,
            p.values,
            p.elapsed_secs,
            rate,
            started.elapsed().as_secs_f64()
        );
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve {
            target,
            addr,
            limits,
        } => {
            let config = limits.config()?;
            raise_fd_limit();
            let store = Arc::new(open_dir(
                &target.data,
                target.store_config.as_deref(),
                false,
            )?);
            runtime()?.block_on(serve(store, addr, limits.health_addr, config, None))
        }
        Command::Apply { file, target } => {
            let objects = read_registry_file(&file)?;
            let only_features = objects.entity_type.is_empty()
                && objects.on_demand.is_empty()
                && objects.service.is_empty();
            match &target.server {
                Some(base) if only_features => {
                    remote(client(base).apply_definitions(&objects.feature))
                }
                Some(base) => remote(client(base).apply_registry(&objects)),
                None if only_features => print_json(&open(&target)?.apply(objects.feature)?),
                None => print_json(&open(&target)?.apply_objects(objects)?),
            }
        }
        Command::Rank {
            entity_type,
            ids,
            context,
            features,
            service,
            deadline_ms,
            target,
        } => {
            let split = |text: &str| -> Vec<String> {
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            };
            let context = context
                .iter()
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(t, id)| (t.to_owned(), id.to_owned()))
                        .with_context(|| format!("--context `{pair}`: expected TYPE=ID"))
                })
                .collect::<Result<Vec<_>>>()?;
            let selection = match (features, service) {
                (Some(f), None) => FeatureSelection::Names(split(&f)),
                (None, Some(s)) => FeatureSelection::Service(s),
                _ => bail!("give --features or --service"),
            };
            let request = RankRequest {
                context,
                candidate_type: entity_type,
                candidates: split(&ids),
                features: selection,
                deadline: deadline_ms.map(std::time::Duration::from_millis),
            };
            match &target.server {
                Some(base) => remote(client(base).rank(&RankBody::of(&request))),
                None => {
                    let answer = open(&target)?.rank(request)?;
                    let encoded = featstore::api::rank_json::encode_json(&answer);
                    print_json(&serde_json::from_slice::<serde_json::Value>(&encoded)?)
                }
            }
        }
        Command::Lineage { target } => match &target.server {
            Some(base) => remote(client(base).lineage()),
            None => print_json(&open(&target)?.lineage()),
        },
        Command::Load {
            group,
            input,
            format,
            layout,
            default_event_time,
            no_activate,
            target,
        } => {
            let default_event_time = default_event_time
                .as_deref()
                .map(parse_timestamp_ms)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let input = std::fs::canonicalize(&input)
                .with_context(|| format!("input {}", input.display()))?;
            match &target.server {
                Some(base) => {
                    let mut body = LoadBody::new(input);
                    body.format = format;
                    body.layout = layout;
                    body.activate = !no_activate;
                    body.default_event_time = default_event_time.map(EventTime::Millis);
                    remote(client(base).load(&group, &body))
                }
                None => {
                    let store = open(&target)?;
                    let mut request = LoadRequest::new(group, input);
                    request.options.format = format;
                    request.options.layout = layout;
                    request.options.default_event_time = default_event_time;
                    request.activate = !no_activate;
                    let started = std::time::Instant::now();
                    match store.load(&request, &progress_printer(started)) {
                        Ok(record) => print_json(&record),
                        Err(featstore::StoreError::Load(featstore::LoadError::Held {
                            record,
                            ..
                        })) => {
                            print_json(&record)?;
                            bail!(
                                "{} v{} loaded but not activated: it failed its validation (see `validation` above)",
                                record.group,
                                record.version
                            )
                        }
                        Err(e) => Err(e.into()),
                    }
                }
            }
        }
        Command::Versions { action } => match action {
            VersionsAction::List { group, target } => match &target.server {
                Some(base) => remote(client(base).versions(&group)),
                None => print_json(&open(&target)?.versions(&group)?),
            },
            VersionsAction::Activate {
                group,
                version,
                force,
                by,
                reason,
                target,
            } => {
                let forced = force
                    .then(|| by.as_deref().zip(reason.as_deref()))
                    .flatten();
                match (&target.server, forced) {
                    (Some(base), Some((by, reason))) => {
                        remote(client(base).activate_forced(&group, version, by, reason))
                    }
                    (Some(base), None) => remote(client(base).activate(&group, version)),
                    (None, forced) => {
                        let store = open(&target)?;
                        match forced {
                            Some((by, reason)) => {
                                store.activate_forced(&group, version, by, reason)?
                            }
                            None => store.activate(&group, version)?,
                        }
                        println!("{group}: version {version} active");
                        Ok(())
                    }
                }
            }
            VersionsAction::Stats {
                group,
                version,
                target,
            } => match &target.server {
                Some(base) => remote(client(base).version_stats(&group, version)),
                None => print_json(&open(&target)?.version_stats(&group, version)?),
            },
            VersionsAction::Rollback { group, target } => match &target.server {
                Some(base) => remote(client(base).rollback(&group)),
                None => {
                    let version = open(&target)?.rollback(&group)?;
                    println!("{group}: rolled back to version {version}");
                    Ok(())
                }
            },
            VersionsAction::Drop {
                group,
                keep,
                target,
            } => match &target.server {
                Some(base) => remote(client(base).drop_old_versions(&group, Some(keep))),
                None => {
                    let dropped = open(&target)?.drop_old_versions(&group, keep)?;
                    println!("{group}: dropped versions {dropped:?}");
                    Ok(())
                }
            },
        },
        Command::Compact { target } => {
            if target.server.is_some() {
                bail!("compact runs on a data directory (--data), with no server on it");
            }
            open(&target)?.compact_all()?;
            println!("compacted {}", target.data.display());
            Ok(())
        }
        Command::DeleteEntity {
            entity_type,
            id,
            no_compact,
            target,
        } => match &target.server {
            Some(base) => remote(client(base).delete_entity(&entity_type, &id, !no_compact)),
            None => {
                let store = open(&target)?;
                let request = featstore::store::erase::EntityErasure {
                    entity_type: entity_type.clone(),
                    entity_id: id.clone(),
                    compact: !no_compact,
                };
                let result = store.delete_entity(&request);
                let audit = featstore::audit::AuditLog::open(
                    &target.data.join(featstore::store::keyspace::AUDIT_DIR),
                )?;
                audit.append(featstore::audit::AuditEntry {
                    principal: "cli".into(),
                    action: "delete_entity".into(),
                    target: format!("entity_type={entity_type} entity_id={id}"),
                    outcome: if result.is_ok() { "ok" } else { "failed" }.into(),
                    detail: result
                        .as_ref()
                        .err()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    ..featstore::audit::AuditEntry::default()
                })?;
                print_json(&result?)
            }
        },
        Command::Get {
            entity_type,
            entity_id,
            names,
            target,
        } => {
            let names: Vec<&str> = names
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect();
            match &target.server {
                Some(base) => remote(client(base).get_features(&entity_type, &entity_id, &names)),
                None => {
                    print_json(&open(&target)?.get_features(&entity_type, &entity_id, &names)?)
                }
            }
        }
        Command::Push { file, target } => {
            let body = match file.as_deref() {
                None => read_stdin()?,
                Some(path) if path == Path::new("-") => read_stdin()?,
                Some(path) => {
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
                }
            };
            match &target.server {
                Some(base) => {
                    serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                        .context("the events are not JSON")?;
                    remote(client(base).push_json(&body))
                }
                None => match open(&target)?.push_json(&body) {
                    Ok(outcome) => print_json(&outcome),
                    Err(featstore::store::PushError::Rejected { rejections, events }) => {
                        for r in &rejections {
                            eprintln!("event {}: {}", r.index, r.reason);
                        }
                        bail!(
                            "{} of {events} events rejected; nothing was applied",
                            rejections.len()
                        )
                    }
                    Err(e) => Err(e.into()),
                },
            }
        }
        Command::Definitions {
            entity_type,
            owner,
            tag,
            target,
        } => {
            let filter = DefinitionFilter {
                entity_type,
                owner,
                tag,
                ..Default::default()
            };
            match &target.server {
                Some(base) => remote(client(base).definitions(&filter)),
                None => print_json(&open(&target)?.list_definitions(&filter)),
            }
        }
        Command::GenData { out, preset } => {
            let config = match preset.as_str() {
                "tiny" => DatasetConfig::tiny(),
                "demo" => DatasetConfig::demo(),
                other => bail!("unknown preset `{other}`: use tiny or demo"),
            };
            let files = Dataset::new(config).write(&out)?;
            println!("wrote {}", files.features_toml.display());
            for load in files.loads {
                println!("wrote {} (group {})", load.path.display(), load.group);
            }
            Ok(())
        }
        Command::Demo {
            dir,
            addr,
            exit_after,
        } => demo(&dir, addr, exit_after),
        Command::Log(command) => featstore::servelog::cli::run_log(command),
        Command::TrainingSet(args) => training_set(args),
        Command::ExportHistory {
            out,
            group,
            features,
            target,
        } => {
            if target.server.is_some() {
                bail!(
                    "export-history reads the store directly (--data); on a server, use POST /v1/history-exports"
                );
            }
            let store = open(&target)?;
            let job = featstore::training::history_export::HistoryExportJob {
                out,
                groups: group,
                features: features
                    .map(|f| {
                        f.split(',')
                            .map(str::trim)
                            .filter(|n| !n.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let summary = featstore::training::history_export::export(&store, &job, None)?;
            print_json(&summary)
        }
        Command::Parity {
            from,
            to,
            service,
            log,
            target,
        } => {
            if target.server.is_some() {
                bail!("parity reads the store directly (--data), not a server");
            }
            let time = |t: &Option<String>| {
                t.as_deref()
                    .map(parse_timestamp_ms)
                    .transpose()
                    .map_err(anyhow::Error::msg)
            };
            let selection = featstore::servelog::reader::Selection {
                from_ms: time(&from)?,
                to_ms: time(&to)?,
                service,
                request_id: None,
            };
            let store = open(&target)?;
            let log = log.unwrap_or_else(|| store.config().serving_log.dir_for(&target.data));
            let report = featstore::parity::check(&store, &log, &selection)?;
            print_json(&report)?;
            if report.mismatches > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::GenMatrix {
            out,
            group,
            entity_type,
            id_prefix,
            feature_prefix,
            entities,
            features,
            seed,
            format,
        } => {
            if format != "csv" && format != "parquet" {
                bail!("unknown format `{format}`: use csv or parquet");
            }
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let data = out.join(format!("{group}.{format}"));
            let names = featstore::datagen::MatrixNames {
                group: &group,
                entity_type: &entity_type,
                id_prefix: &id_prefix,
                feature_prefix: &feature_prefix,
            };
            let specs = featstore::datagen::write_named_float_matrix(
                &data, &names, entities, features, seed,
            )
            .with_context(|| format!("writing {}", data.display()))?;
            let toml = out.join(format!("{group}.features.toml"));
            let header = format!(
                "Benchmark corpus {group}: {entities} {entity_type} entities x {features} float32 features, seed {seed}."
            );
            std::fs::write(&toml, featstore::datagen::features_toml_of(&header, &specs))
                .with_context(|| format!("writing {}", toml.display()))?;
            println!("wrote {}", data.display());
            println!("wrote {}", toml.display());
            Ok(())
        }
        Command::Token(command) => token_command(command),
        Command::Verify { file } => {
            let segment = featstore_format::segment::MappedSegment::open(&file)
                .with_context(|| format!("{} is not a valid segment", file.display()))?;
            let bytes = segment.as_bytes().len();
            let entities = segment.entity_count();
            println!("{}: ok", file.display());
            println!(
                "  group          {} (version {})",
                segment.group(),
                segment.group_version()
            );
            println!("  entities       {entities}");
            println!("  fields         {}", segment.fields().len());
            println!(
                "  bytes          {bytes} ({:.1} per entity)",
                bytes as f64 / entities.max(1) as f64
            );
            println!("  fingerprint    {:016x}", segment.schema_fingerprint());
            println!("  values zstd    {}", segment.values_compressed());
            Ok(())
        }
    }
}

fn demo(dir: &Path, addr: SocketAddr, exit_after: Option<u64>) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cleaning {}", dir.display()))?;
    }
    let store = FeatureStore::open(dir.join("store"), StoreConfig::default())?;
    eprintln!(
        "generating and loading the synthetic marketplace into {} ...",
        dir.display()
    );
    // Event times relative to now, so TTLs and ages look as they would in production.
    let config = DatasetConfig {
        base_time_ms: featstore::types::now_ms(),
        ..DatasetConfig::demo()
    };
    let summary = featstore::demo::prepare(&store, dir, config, &addr.to_string())?;
    for line in &summary.loads {
        eprintln!("  loaded {line}");
    }
    eprintln!("\nTry:");
    for example in &summary.examples {
        eprintln!("  {example}");
    }
    eprintln!();
    // The demo's own data may be loaded again over HTTP (the page's walkthrough).
    let config = ServerConfig {
        import_dirs: vec![dir.to_path_buf()],
        ..ServerConfig::default()
    };
    runtime()?.block_on(serve(Arc::new(store), addr, None, config, exit_after))
}

/// `error: ` and the error's chain, each cause once: a cause whose text the message
/// already holds (a wrapper that prints its source) is not repeated.
fn error_message(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

fn main() {
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: log files and collectors get text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(e) = run(Cli::parse()) {
        // A closed stdout (`featstore ... | head`) is not a failure.
        if e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        }) {
            std::process::exit(0);
        }
        eprintln!("error: {}", error_message(&e));
        std::process::exit(1);
    }
}
