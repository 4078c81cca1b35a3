//! The deterministic synthetic marketplace data set, used by the demo
//! (`featstore demo`), the integration tests and the benchmarks.
//!
//! A wholesale marketplace with three entity types — `user` (ids `u0`, `u1`...),
//! `product` (`p0`...) and `retailer` (`r0`...) — and one feature group per entity
//! type, each loaded from one file in a different input shape:
//!
//! | group            | entity     | file                    | shape         |
//! |------------------|------------|-------------------------|---------------|
//! | `product_daily`  | `product`  | `product_daily.parquet` | wide Parquet  |
//! | `user_daily`     | `user`     | `user_daily.csv`        | long CSV      |
//! | `retailer_daily` | `retailer` | `retailer_daily.csv`    | wide CSV      |
//!
//! Every value is a pure function of `(seed, group, entity index, feature)` — a
//! splitmix64 hash — so [`Dataset::expected`] answers for any cell without state or a
//! stored table, whatever the size, and the files are byte-identical across runs and
//! machines. Floats are drawn with 24 random bits (exact in `f32`), travel bit-exactly
//! through Parquet, and are written to CSV with Rust's `{}` (shortest round-trip form),
//! so `str::parse` reads back the very same value.
//!
//! # Features
//!
//! `product_daily` (TTL 3d unless noted): `product_f00`..`product_fNN` float32
//! ([`DatasetConfig::product_float_features`] of them; even-numbered ones in `[0, 1)`,
//! odd ones in `[-1, 1)`), `product_price` float64, `product_orders_30d` int64,
//! `product_category` string (no TTL), `product_in_stock` bool, `product_embedding`
//! float32_vector\[16\].
//!
//! `user_daily` (TTL 2d unless noted): `user_orders_30d` int64, `user_sessions_7d`
//! int64, `user_cart_adds_1h` int64 (**TTL 1h**), `user_conversion_rate_30d` float32,
//! `user_avg_order_value_30d` float64, `user_return_ratio_90d` float32, `user_segment`
//! string, `user_embedding` float32_vector\[16\].
//!
//! `retailer_daily` (TTL 7d unless noted): `retailer_rating` float32,
//! `retailer_active_products` int64, `retailer_gmv_30d` float64, `retailer_region`
//! string (no TTL), `retailer_verified` bool, `retailer_embedding` float32_vector\[16\].
//!
//! # Event times
//!
//! Each entity's row has the event time `base_time_ms - offset`, with a per-entity
//! offset in `[0, 24h)` (all features of a wide row share it). The one exception is
//! `user_cart_adds_1h`, whose rows carry their own time: `base_time_ms - s·1000 - 500`
//! with `s` in `[0, 7200)` seconds, so at `now = base_time_ms` about half of its values
//! are older than its 1h TTL (`expired`), and at `now >= base_time_ms + 2h` all are.
//! Every other feature has a TTL of at least 2 days or none, so it is never expired
//! for `now` in `[base_time_ms, base_time_ms + 24h]`. The extra 500 ms keeps ages off
//! whole seconds, so no value sits exactly on its TTL when `now` is the base time plus
//! whole seconds. In the long CSV about half the rows (chosen by hash) write the event
//! time as RFC 3339 text with milliseconds, the rest as epoch milliseconds.
//!
//! # Nulls and absent cells
//!
//! Explicit nulls (a null cell in Parquet, an empty cell or value in CSV):
//!
//! * `product_price`: products with index ≡ 7 (mod 50) — 2 %.
//! * `product_f02`: products with index ≡ 13 (mod 200) — 0.5 % (when the feature exists).
//! * `product_embedding`: products with index ≡ 42 (mod 100) — 1 %.
//! * `user_conversion_rate_30d`: users with index ≡ 3 (mod 50) — 2 %.
//! * `retailer_rating`: retailers with index ≡ 11 (mod 20) — 5 %.
//!
//! Absent cells (no row in the long CSV, so reads report `not_found`):
//!
//! * `user_cart_adds_1h`: users with index ≡ 1 (mod 4) — 25 %.
//! * `user_avg_order_value_30d`: users with zero orders, i.e. index ≡ 2 (mod 7) — 14 %.
//! * `user_embedding`: users with index ≡ 9 (mod 10) — 10 %.
//!
//! Ids outside `0..count`, unknown entity types and unknown features are absent too.
//!
//! # Benchmark corpus
//!
//! [`write_float_matrix`] writes `entities` × `features` float32 values
//! ([`float_matrix_value`]) as wide Parquet or CSV, streamed in row batches;
//! [`write_named_float_matrix`] the same under chosen names (the HTTP benchmark's
//! products `p0`.. with `pf00`.. and users `u0`.. with `uf00`.., which
//! `featstore gen-matrix` writes together with their features TOML).

mod catalog;
mod hash;
mod output;
pub mod ranking;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

use catalog::{Cells, Feature, Group};
use output::{Column, LongCsvWriter, LongRow, WideTable};

use crate::registry::definition::validate_identifier;
use crate::registry::{FeatureSpec, Sensitivity};
use crate::types::{DType, FeatureStatus, TimestampMs, Value};

/// The default base time: 2026-11-21T00:00:00Z.
pub const DEFAULT_BASE_TIME_MS: TimestampMs = 1_795_219_200_000;

/// Event time of every row [`write_float_matrix`] writes (2026-11-21T00:00:00Z).
pub const FLOAT_MATRIX_EVENT_TIME_MS: TimestampMs = DEFAULT_BASE_TIME_MS;

/// Group of the product features (wide Parquet).
pub const PRODUCT_GROUP: &str = "product_daily";
/// Group of the user features (long CSV).
pub const USER_GROUP: &str = "user_daily";
/// Group of the retailer features (wide CSV).
pub const RETAILER_GROUP: &str = "retailer_daily";
/// The user feature with a 1h TTL whose values expire shortly after the base time.
pub const SHORT_TTL_FEATURE: &str = "user_cart_adds_1h";
/// Dimension of every embedding feature in the data set.
pub const EMBEDDING_DIM: u32 = catalog::EMBEDDING_DIM;
/// Name of the file [`Dataset::write`] writes the definitions to.
pub const FEATURES_FILE: &str = "features.toml";

/// Size, seed and clock of a generated data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatasetConfig {
    /// Number of users (`u0`..).
    pub users: u64,
    /// Number of products (`p0`..).
    pub products: u64,
    /// Number of retailers (`r0`..).
    pub retailers: u64,
    /// Number of `product_fNN` float32 features.
    pub product_float_features: usize,
    /// Seed of every generated value.
    pub seed: u64,
    /// The data set's "now": event times lie up to 24h before it.
    pub base_time_ms: TimestampMs,
}

impl DatasetConfig {
    /// The demo data set: 2,000 users, 20,000 products, 500 retailers, 50 product floats,
    /// seed 42, base time [`DEFAULT_BASE_TIME_MS`] (a demo serving "now" may set
    /// `base_time_ms` to the current time instead).
    pub fn demo() -> Self {
        DatasetConfig {
            users: 2_000,
            products: 20_000,
            retailers: 500,
            product_float_features: 50,
            seed: 42,
            base_time_ms: DEFAULT_BASE_TIME_MS,
        }
    }

    /// A small data set for tests: 50 users, 200 products, 20 retailers, 50 product
    /// floats; every null and absent pattern above occurs at least once.
    pub fn tiny() -> Self {
        DatasetConfig {
            users: 50,
            products: 200,
            retailers: 20,
            ..DatasetConfig::demo()
        }
    }
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig::demo()
    }
}

/// What [`Dataset::write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFiles {
    /// The feature definitions (`features.toml`).
    pub features_toml: PathBuf,
    /// One data file per group, in the order product, user, retailer.
    pub loads: Vec<GroupFile>,
}

/// A data file and the feature group it loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFile {
    /// Feature group name.
    pub group: String,
    /// Data file (`.parquet` or `.csv`).
    pub path: PathBuf,
}

/// The synthetic marketplace data set of one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// Size, seed and base time.
    pub config: DatasetConfig,
}

impl Dataset {
    /// A data set with this configuration (nothing is generated until asked).
    pub fn new(config: DatasetConfig) -> Self {
        Dataset { config }
    }

    fn cells(&self) -> Cells<'_> {
        Cells {
            config: &self.config,
        }
    }

    /// The registry definitions of every feature: product, then user, then retailer
    /// features, each group in column order.
    pub fn specs(&self) -> Vec<FeatureSpec> {
        Group::ALL
            .into_iter()
            .flat_map(|g| g.features(&self.config))
            .map(Feature::spec)
            .collect()
    }

    /// [`Dataset::specs`] as a TOML document of `[[feature]]` tables, the format read by
    /// [`crate::registry::file::parse_features_toml`] (which returns exactly `specs()`).
    pub fn features_toml(&self) -> String {
        let c = &self.config;
        let header = format!(
            "Synthetic marketplace features, generated by featstore::datagen.\n\
             seed {}, {} products ({} float features), {} users, {} retailers.",
            c.seed, c.products, c.product_float_features, c.users, c.retailers
        );
        output::render_features_toml(&header, &self.specs())
    }

    /// Writes `features.toml`, `product_daily.parquet`, `user_daily.csv` and
    /// `retailer_daily.csv` into `dir` (created if missing), replacing existing files.
    pub fn write(&self, dir: &Path) -> io::Result<GeneratedFiles> {
        std::fs::create_dir_all(dir)?;
        let features_toml = dir.join(FEATURES_FILE);
        std::fs::write(&features_toml, self.features_toml())?;
        let mut loads = Vec::new();
        for group in Group::ALL {
            let path = dir.join(group.file_name());
            match group {
                Group::Product => output::write_wide_parquet(&path, &self.wide_table(group))?,
                Group::Retailer => output::write_wide_csv(&path, &self.wide_table(group))?,
                Group::User => self.write_long_csv(&path, group)?,
            }
            loads.push(GroupFile {
                group: group.name().to_owned(),
                path,
            });
        }
        Ok(GeneratedFiles {
            features_toml,
            loads,
        })
    }

    fn wide_table(&self, group: Group) -> GroupTable<'_> {
        let features = group.features(&self.config);
        let columns = features
            .iter()
            .map(|f| Column {
                name: f.name().into_owned(),
                dtype: f.dtype(),
                nullable: f.has_nulls(),
            })
            .collect();
        GroupTable {
            cells: self.cells(),
            group,
            features,
            columns,
        }
    }

    fn write_long_csv(&self, path: &Path, group: Group) -> io::Result<()> {
        let cells = self.cells();
        let features = group.features(&self.config);
        let names: Vec<String> = features.iter().map(|f| f.name().into_owned()).collect();
        let mut writer = LongCsvWriter::create(path)?;
        for index in 0..group.count(&self.config) {
            let entity_id = format!("{}{index}", group.id_prefix());
            for (feature, name) in features.iter().zip(&names) {
                if let Some((value, event_time)) = cells.cell(*feature, index) {
                    writer.write(&LongRow {
                        entity_id: &entity_id,
                        feature: name,
                        event_time,
                        rfc3339: cells.rfc3339_row(*feature, index),
                        value: &value,
                    })?;
                }
            }
        }
        writer.finish()
    }

    /// What the written files hold for one cell: `None` when there is no such row or
    /// cell (unknown entity type, id or feature, or an absent long-CSV row), `Some((
    /// Value::Null, t))` for an explicit null, else the value and its event time.
    pub fn expected(
        &self,
        entity_type: &str,
        entity_id: &str,
        feature: &str,
    ) -> Option<(Value, TimestampMs)> {
        let group = Group::from_entity_type(entity_type)?;
        let index = group.parse_id(&self.config, entity_id)?;
        let feature = Feature::lookup(group, &self.config, feature)?;
        self.cells().cell(feature, index)
    }

    /// The status a read at `now_ms` should report for a cell once the files are loaded:
    /// `not_found` when [`Dataset::expected`] is `None`, `expired` when the feature has a
    /// TTL and `now_ms - event_time > ttl` (strictly older; checked before nulls),
    /// `null` for an explicit null, else `present`.
    pub fn expected_status(
        &self,
        entity_type: &str,
        entity_id: &str,
        feature: &str,
        now_ms: TimestampMs,
    ) -> FeatureStatus {
        let Some((value, event_time)) = self.expected(entity_type, entity_id, feature) else {
            return FeatureStatus::NotFound;
        };
        let ttl = Group::from_entity_type(entity_type)
            .and_then(|g| Feature::lookup(g, &self.config, feature))
            .and_then(|f| f.spec().ttl);
        if let Some(ttl) = ttl {
            let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            if now_ms.saturating_sub(event_time) > ttl_ms {
                return FeatureStatus::Expired;
            }
        }
        if value == Value::Null {
            FeatureStatus::Null
        } else {
            FeatureStatus::Present
        }
    }

    /// Every entity id of `entity_type` (`u0`, `u1`...), in index order; empty for an
    /// unknown type.
    pub fn entity_ids(&self, entity_type: &str) -> impl Iterator<Item = String> + use<> {
        let (prefix, count) = Group::from_entity_type(entity_type)
            .map_or(("", 0), |g| (g.id_prefix(), g.count(&self.config)));
        (0..count).map(move |i| format!("{prefix}{i}"))
    }
}

/// A marketplace group viewed as a wide table.
struct GroupTable<'a> {
    cells: Cells<'a>,
    group: Group,
    features: Vec<Feature>,
    columns: Vec<Column>,
}

impl WideTable for GroupTable<'_> {
    fn columns(&self) -> &[Column] {
        &self.columns
    }

    fn rows(&self) -> u64 {
        self.group.count(self.cells.config)
    }

    fn entity_id(&self, row: u64) -> String {
        format!("{}{row}", self.group.id_prefix())
    }

    fn event_time(&self, row: u64) -> TimestampMs {
        self.group.entity_time(self.cells.config, row)
    }

    fn cell(&self, row: u64, column: usize) -> Value {
        // Wide groups have every cell, all at the row's event time (checked by tests).
        self.features
            .get(column)
            .and_then(|f| self.cells.cell(*f, row))
            .map_or(Value::Null, |(value, _)| value)
    }
}

/// The value [`write_float_matrix`] writes for entity `e{entity}` and feature `f{feature:02}`:
/// a float in `[-1, 1)` with 24 random bits, a pure function of its arguments.
pub fn float_matrix_value(seed: u64, entity: u64, feature: usize) -> f32 {
    const MATRIX_STREAM: u64 = 0x6d61_7472_6978; // "matrix"
    hash::signed_f32(hash::mix(seed, &[MATRIX_STREAM, entity, feature as u64]))
}

/// The benchmark corpus as a wide table.
struct MatrixTable {
    seed: u64,
    entities: u64,
    id_prefix: String,
    columns: Vec<Column>,
}

impl WideTable for MatrixTable {
    fn columns(&self) -> &[Column] {
        &self.columns
    }

    fn rows(&self) -> u64 {
        self.entities
    }

    fn entity_id(&self, row: u64) -> String {
        format!("{}{row}", self.id_prefix)
    }

    fn event_time(&self, _row: u64) -> TimestampMs {
        FLOAT_MATRIX_EVENT_TIME_MS
    }

    fn cell(&self, row: u64, column: usize) -> Value {
        Value::Float32(float_matrix_value(self.seed, row, column))
    }
}

/// Writes the benchmark corpus: `entities` rows (`e0`..) × `features` float32 columns
/// (`f00`, `f01`...; values [`float_matrix_value`], no nulls), every row at
/// [`FLOAT_MATRIX_EVENT_TIME_MS`]. The format follows the extension: `.parquet` (or
/// `.pq`) for wide Snappy Parquet, `.csv` for wide CSV; anything else is refused.
/// Rows are streamed in batches, so memory stays bounded (1M × 50 is fine).
///
/// Returns the specs of the features: entity type `item`, group `group`, no TTL.
pub fn write_float_matrix(
    path: &Path,
    group: &str,
    entities: u64,
    features: usize,
    seed: u64,
) -> io::Result<Vec<FeatureSpec>> {
    let names = MatrixNames {
        group,
        entity_type: "item",
        id_prefix: "e",
        feature_prefix: "f",
    };
    write_named_float_matrix(path, &names, entities, features, seed)
}

/// How [`write_named_float_matrix`] names a corpus: group, entity type, ids
/// (`{id_prefix}{index}`) and features (`{feature_prefix}{k:02}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixNames<'a> {
    /// Feature group.
    pub group: &'a str,
    /// Entity type of every feature.
    pub entity_type: &'a str,
    /// Prefix of the entity ids.
    pub id_prefix: &'a str,
    /// Prefix of the feature names.
    pub feature_prefix: &'a str,
}

/// [`write_float_matrix`] with chosen names, e.g. products `p0`.. with features
/// `pf00`.. for the HTTP benchmark. Values are [`float_matrix_value`]`(seed, row, k)`
/// whatever the names. Group, entity type and feature names must be valid identifiers.
pub fn write_named_float_matrix(
    path: &Path,
    names: &MatrixNames<'_>,
    entities: u64,
    features: usize,
    seed: u64,
) -> io::Result<Vec<FeatureSpec>> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let group = names.group;
    validate_identifier("group", group).map_err(invalid)?;
    validate_identifier("entity type", names.entity_type).map_err(invalid)?;
    let specs: Vec<FeatureSpec> = (0..features)
        .map(|k| FeatureSpec {
            name: format!("{}{k:02}", names.feature_prefix),
            version: 1,
            entity_type: names.entity_type.to_owned(),
            group: group.to_owned(),
            owner: "benchmarks".to_owned(),
            dtype: DType::Float32,
            transform_ref: None,
            freshness_slo: None,
            ttl: None,
            retention: None,
            sensitivity: Sensitivity::Internal,
            description: format!("Synthetic benchmark float feature {k}, in [-1, 1)."),
            tags: vec!["benchmark".to_owned()],
            reuse_teams: None,
            aggregate: None,
            default: None,
            validation: Default::default(),
        })
        .collect();
    for spec in &specs {
        validate_identifier("feature", &spec.name).map_err(invalid)?;
    }
    let table = MatrixTable {
        seed,
        entities,
        id_prefix: names.id_prefix.to_owned(),
        columns: specs
            .iter()
            .map(|s| Column {
                name: s.name.clone(),
                dtype: s.dtype,
                nullable: false,
            })
            .collect(),
    };
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("parquet" | "pq") => output::write_wide_parquet(path, &table)?,
        Some("csv") => output::write_wide_csv(path, &table)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: expected a .parquet or .csv extension to choose the format",
                    path.display()
                ),
            ));
        }
    }
    Ok(specs)
}

/// The definitions `specs` as a features TOML document (what `featstore apply` reads),
/// under a comment naming what they describe.
pub fn features_toml_of(header: &str, specs: &[FeatureSpec]) -> String {
    output::render_features_toml(header, specs)
}
