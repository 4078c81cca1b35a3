//! The demo: generate the synthetic marketplace, register it, load every group as a
//! batch version, and describe what to ask the server. Used by `featstore demo`.

use std::path::Path;

use crate::datagen::{Dataset, DatasetConfig};
use crate::loader::LoadRequest;
use crate::store::{FeatureStore, StoreError};

/// What the demo loaded.
#[derive(Debug)]
pub struct DemoSummary {
    /// One line per loaded group.
    pub loads: Vec<String>,
    /// Example requests against `addr`.
    pub examples: Vec<String>,
}

/// Generates the data set into `dir/data`, registers and loads it into `store`.
pub fn prepare(
    store: &FeatureStore,
    dir: &Path,
    config: DatasetConfig,
    addr: &str,
) -> Result<DemoSummary, StoreError> {
    let data_dir = dir.join("data");
    let dataset = Dataset::new(config);
    let files = dataset.write(&data_dir).map_err(|source| StoreError::Io {
        context: format!("write demo data into {}", data_dir.display()),
        source,
    })?;
    store.apply(dataset.specs())?;
    let mut loads = Vec::new();
    for group_file in &files.loads {
        let request = LoadRequest::new(group_file.group.clone(), group_file.path.clone());
        let record = store.load(&request, &|_| {})?;
        let secs = (record.build_ms + record.ingest_ms) as f64 / 1000.0;
        loads.push(format!(
            "{:<16} v{}  {:>9} values  {:>7} entities  {:>8} KiB on disk  {:.2}s  ({} {:?})",
            record.group,
            record.version,
            record.values_stored,
            record.entities,
            record.sst_bytes / 1024,
            secs,
            Path::new(&record.source)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            record.layout,
        ));
    }
    let examples = vec![
        format!(
            "curl -s 'http://{addr}/v1/features/product/p42?names=product_f00,product_price,product_category,product_embedding'"
        ),
        format!(
            "curl -s 'http://{addr}/v1/features/user/u7?names=user_orders_30d,user_segment,user_cart_adds_1h,user_embedding'"
        ),
        format!("curl -s 'http://{addr}/v1/feature-definitions?entity_type=retailer'"),
        format!("curl -s 'http://{addr}/v1/groups/product_daily/versions'"),
        format!(
            "curl -s -XPOST 'http://{addr}/v1/rank' -d '{{\"context\":{{\"user\":\"u7\"}},\"candidates\":{{\"entity_type\":\"product\",\"ids\":[\"p1\",\"p42\",\"p7\"]}},\"features\":[\"user_segment\",\"product_price\",\"product_f00\"]}}'"
        ),
        format!(
            "curl -s -XPOST 'http://{addr}/v1/push' -d '{{\"events\":[{{\"entity_type\":\"product\",\"entity_id\":\"p42\",\"event_time\":'$(date +%s000)',\"features\":{{\"product_price\":11.9}}}}]}}'"
        ),
        format!(
            "curl -s -XPOST 'http://{addr}/v1/groups/product_daily/loads' -d '{}'",
            load_body(
                files
                    .loads
                    .iter()
                    .find(|g| g.group == "product_daily")
                    .map(|g| g.path.as_path())
                    .unwrap_or(Path::new("product_daily.parquet"))
            )
        ),
        format!("curl -s -XPOST 'http://{addr}/v1/groups/product_daily/rollback'"),
        format!("curl -s 'http://{addr}/metrics'"),
    ];
    Ok(DemoSummary { loads, examples })
}

/// The body of a load request for `path`, made absolute (the server refuses relative
/// paths: they would name a file relative to its own working directory), JSON-escaped
/// and quoted for a shell's single quotes.
pub fn load_body(path: &Path) -> String {
    let absolute = std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf());
    let body = serde_json::json!({ "input": absolute.display().to_string() }).to_string();
    body.replace('\'', "'\\''")
}
