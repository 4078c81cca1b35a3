//! Shared helpers: temporary stores, a small registry, CSV fixtures, a real server on an
//! ephemeral loopback port, and a blocking HTTP client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use featstore::registry::FeatureSpec;
use featstore::registry::file::parse_features_toml;
use featstore::{FeatureStore, StoreConfig};

/// A store in a fresh temporary directory (kept alive by the returned guard).
pub fn temp_store() -> (tempfile::TempDir, FeatureStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FeatureStore::open(dir.path().join("store"), small_config()).expect("open");
    (dir, store)
}

/// A configuration small enough for tests.
pub fn small_config() -> StoreConfig {
    StoreConfig {
        block_cache_bytes: 8 << 20,
        write_buffer_bytes: 8 << 20,
        keep_versions: 3,
        load_memory_bytes: 8 << 20,
        sst_target_bytes: 4 << 20,
        hot_segment_bytes: 16 << 20,
        access_tracking_entities: 10_000,
        ..StoreConfig::default()
    }
}

/// Three float features and one string feature of entity type `item`, group `items`.
pub fn item_specs() -> Vec<FeatureSpec> {
    parse_features_toml(
        r#"
        [[feature]]
        name = "item_a"
        entity_type = "item"
        group = "items"
        owner = "tests"
        dtype = "float64"

        [[feature]]
        name = "item_b"
        entity_type = "item"
        group = "items"
        owner = "tests"
        dtype = "float64"

        [[feature]]
        name = "item_c"
        entity_type = "item"
        group = "items"
        owner = "tests"
        dtype = "float64"

        [[feature]]
        name = "item_label"
        entity_type = "item"
        group = "items"
        owner = "tests"
        dtype = "string"
        "#,
        "item_specs",
    )
    .expect("valid specs")
}

/// Writes a wide CSV for group `items` where every float of entity `i{n}` is
/// `version * 1000 + n` (so a reader can tell which version answered) and the label is
/// `v{version}`.
pub fn write_items_csv(dir: &Path, version: u64, entities: u64) -> PathBuf {
    let path = dir.join(format!("items-v{version}.csv"));
    let mut text = String::from("entity_id,event_time,item_a,item_b,item_c,item_label\n");
    for n in 0..entities {
        let v = version * 1000 + n;
        text.push_str(&format!("i{n},1700000000000,{v},{v},{v},v{version}\n"));
    }
    std::fs::write(&path, text).expect("write csv");
    path
}

/// A running server; shuts down when dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its health listener listens, when it has one.
    pub health_addr: Option<SocketAddr>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Starts `featstore::server::run` for `store` on 127.0.0.1:0.
    pub fn start(store: Arc<FeatureStore>) -> Self {
        Self::start_with(store, featstore::server::ServerConfig::default())
    }

    /// [`start`](Self::start) with `dir` as the import and export directory, so that
    /// HTTP loads may read files under it and exports write there.
    pub fn start_importing(store: Arc<FeatureStore>, dir: &std::path::Path) -> Self {
        let config = featstore::server::ServerConfig {
            import_dirs: vec![dir.to_owned()],
            export_dirs: vec![dir.to_owned()],
            ..featstore::server::ServerConfig::default()
        };
        Self::start_with(store, config)
    }

    /// Starts `featstore::server::run_with` for `store` and `config` on 127.0.0.1:0.
    pub fn start_with(store: Arc<FeatureStore>, config: featstore::server::ServerConfig) -> Self {
        Self::start_on(store, config, false)
    }

    /// Starts `featstore::server::run_on` for `store` and `config` on 127.0.0.1:0, with
    /// a health listener on another ephemeral port when `health` is set.
    pub fn start_on(
        store: Arc<FeatureStore>,
        config: featstore::server::ServerConfig,
        health: bool,
    ) -> Self {
        let health = health.then(|| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"));
        let health_addr = health.as_ref().map(|l| l.local_addr().expect("addr"));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                let listeners = featstore::server::Listeners {
                    api: listener,
                    health,
                };
                featstore::server::run_on(store, listeners, config, async {
                    let _ = shutdown_rx.await;
                })
                .await
                .expect("server");
            });
        });
        let addr = addr_rx.recv().expect("server address");
        TestServer {
            addr,
            health_addr,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// GET; returns (status, body).
pub fn get(url: &str) -> (u16, String) {
    let mut response = agent().get(url).call().expect("GET");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().expect("body"))
}

/// POST a body; returns (status, body).
pub fn post(url: &str, body: &str) -> (u16, String) {
    let mut response = agent()
        .post(url)
        .header("content-type", "application/json")
        .send(body.as_bytes())
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().expect("body"))
}

/// Parses a JSON body.
pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}
