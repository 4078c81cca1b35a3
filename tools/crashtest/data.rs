//! What the crash test loads and pushes: the registry it applies, the batch inputs it
//! generates, and the values every reader expects.
//!
//! Every batch value is a pure function of (group, load id, entity, feature), so a
//! reader that finds a value knows which load wrote it, and any value of another load,
//! or a mix of two, is detected. A load's entities are drawn from [`POOL`] with the
//! run's seed; its cells are null now and then, and some entities carry an older
//! duplicate row of garbage values that must never be served (the newest event time
//! wins within an input).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::builder::{Float32Builder, ListBuilder};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Entities of the batch groups: `e0` .. `e{POOL-1}` (entity type [`ITEM`]).
pub const POOL: usize = 300;
/// Users that receive pushes: `u0` .. `u{USERS-1}` (entity type [`USER`]).
pub const USERS: usize = 48;
/// Entity type of the batch groups.
pub const ITEM: &str = "ct_item";
/// Entity type of the pushed features.
pub const USER: &str = "ct_user";
/// Group of the pushed latest values.
pub const LIVE_GROUP: &str = "ct_live";
/// Pushed features: the push's sequence number, its label, and a windowed count.
pub const LIVE_N: &str = "cl_n";
/// The label of push `n`: [`live_label`].
pub const LIVE_S: &str = "cl_s";
/// Count of `cl_n` events over one day.
pub const LIVE_COUNT: &str = "cl_count";
/// Event time of every row of load 0; load `L`'s rows are `L` seconds later.
pub const BATCH_T0: i64 = 1_700_000_000_000;
/// Values `n` of load `L` are `L * LOAD_STRIDE + entity`.
pub const LOAD_STRIDE: i64 = 100_000;

/// The type of one feature's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// int64 `L * LOAD_STRIDE + entity`.
    Int,
    /// string naming the load and entity.
    Str,
    /// float64 `L + entity / 1024`.
    Float,
    /// `float32_vector[2]` `[L, entity]`.
    Vec2,
}

/// A batch feature.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    /// Registered name.
    pub name: &'static str,
    /// Its values.
    pub kind: Kind,
}

/// The two batch groups (same entity type, so one read spans both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// `ct_b1`: an int and a string.
    B1,
    /// `ct_b2`: an int, a float and a vector.
    B2,
}

const B1_FEATURES: [Feature; 2] = [
    Feature {
        name: "ct1_n",
        kind: Kind::Int,
    },
    Feature {
        name: "ct1_s",
        kind: Kind::Str,
    },
];
const B2_FEATURES: [Feature; 3] = [
    Feature {
        name: "ct2_n",
        kind: Kind::Int,
    },
    Feature {
        name: "ct2_x",
        kind: Kind::Float,
    },
    Feature {
        name: "ct2_v",
        kind: Kind::Vec2,
    },
];

impl Group {
    /// Both groups.
    pub const ALL: [Group; 2] = [Group::B1, Group::B2];

    /// The registered group name.
    pub fn name(self) -> &'static str {
        match self {
            Group::B1 => "ct_b1",
            Group::B2 => "ct_b2",
        }
    }

    /// The group of `name`.
    pub fn by_name(name: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.name() == name)
    }

    /// Its features, in registration (and read) order.
    pub fn features(self) -> &'static [Feature] {
        match self {
            Group::B1 => &B1_FEATURES,
            Group::B2 => &B2_FEATURES,
        }
    }

    fn tag(self) -> u64 {
        match self {
            Group::B1 => 0x5bd1_e995,
            Group::B2 => 0x27d4_eb2f,
        }
    }
}

/// Every batch feature name, both groups, in read order.
pub fn batch_feature_names() -> Vec<&'static str> {
    Group::ALL
        .iter()
        .flat_map(|g| g.features().iter().map(|f| f.name))
        .collect()
}

/// The registry the crash test applies (JSON body of `POST /v1/feature-definitions`).
pub fn registry_json() -> String {
    let mut features = Vec::new();
    let dtype = |k: Kind| match k {
        Kind::Int => "int64",
        Kind::Str => "string",
        Kind::Float => "float64",
        Kind::Vec2 => "float32_vector[2]",
    };
    // Each load draws a random entity set: the data-validation rules (which would hold
    // such versions back from activation) are off, this test is about crashes.
    for group in Group::ALL {
        for f in group.features() {
            features.push(serde_json::json!({"name": f.name, "entity_type": ITEM,
                "group": group.name(), "owner": "crashtest", "dtype": dtype(f.kind),
                "validation": {"enabled": false}}));
        }
    }
    features.push(serde_json::json!({"name": LIVE_N, "entity_type": USER,
        "group": LIVE_GROUP, "owner": "crashtest", "dtype": "int64"}));
    features.push(serde_json::json!({"name": LIVE_S, "entity_type": USER,
        "group": LIVE_GROUP, "owner": "crashtest", "dtype": "string"}));
    features.push(serde_json::json!({"name": LIVE_COUNT, "entity_type": USER,
        "group": "ct_live_agg", "owner": "crashtest", "dtype": "int64",
        "aggregate": {"source": LIVE_N, "function": "count", "window": "1d", "resolution": "1h"}}));
    serde_json::json!({ "features": features }).to_string()
}

/// The label pushed with event `seq` (exact strings: spaces and non-ASCII kept).
pub fn live_label(seq: u64) -> String {
    match seq % 5 {
        0 => format!(" p{seq} "),
        1 => format!("p{seq}·ü"),
        _ => format!("p{seq}"),
    }
}

/// One expected batch value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// An explicit null.
    Null,
    /// int64.
    Int(i64),
    /// string.
    Str(String),
    /// float64.
    Float(f64),
    /// `float32_vector[2]`.
    Vec2([f32; 2]),
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finalizer: a fixed, well-spread hash of the cell's coordinates.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The value load `load` of `group` holds for `entity` and feature `f` (if the entity
/// is in the load).
pub fn cell(group: Group, load: u64, entity: usize, f: usize) -> Cell {
    let h = mix(group.tag() ^ load.wrapping_mul(1_000_003) ^ ((entity as u64) << 20) ^ (f as u64));
    if h.is_multiple_of(9) {
        return Cell::Null;
    }
    let kind = group.features().get(f).map_or(Kind::Int, |x| x.kind);
    let l = i64::try_from(load).unwrap_or(i64::MAX / LOAD_STRIDE - 1);
    let e = entity as i64;
    match kind {
        Kind::Int => Cell::Int(l * LOAD_STRIDE + e),
        Kind::Str => Cell::Str(match h % 4 {
            0 => format!("  L{load}/e{entity}  "),
            1 => format!("L{load},e{entity} \"q\""),
            _ => format!("L{load}/e{entity}"),
        }),
        Kind::Float => Cell::Float(l as f64 + e as f64 / 1024.0),
        Kind::Vec2 => Cell::Vec2([load as f32, entity as f32]),
    }
}

/// The load a value came from, if the value says so (ints, floats and vectors name it;
/// strings too).
pub fn load_of(cell: &Cell) -> Option<u64> {
    match cell {
        Cell::Null => None,
        Cell::Int(n) => u64::try_from(n / LOAD_STRIDE).ok(),
        Cell::Float(x) => (*x >= 0.0).then(|| x.floor() as u64),
        Cell::Vec2(v) => (v[0] >= 0.0).then(|| v[0] as u64),
        Cell::Str(s) => {
            let digits: String = s
                .trim_start()
                .strip_prefix('L')?
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        }
    }
}

/// The event time of every row of load `load`.
pub fn load_time(load: u64) -> i64 {
    BATCH_T0 + i64::try_from(load).unwrap_or(0).saturating_mul(1000)
}

/// Input file formats of loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV, one row per entity.
    CsvWide,
    /// CSV, one row per value.
    CsvLong,
    /// Parquet, one row per entity.
    Parquet,
}

/// A set of entities of [`POOL`], as a bitset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Entities([u64; POOL.div_ceil(64)]);

impl Entities {
    /// Whether `e` is in the set.
    pub fn contains(&self, e: usize) -> bool {
        e < POOL && self.0[e / 64] & (1 << (e % 64)) != 0
    }

    fn insert(&mut self, e: usize) {
        self.0[e / 64] |= 1 << (e % 64);
    }

    /// Members, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..POOL).filter(|e| self.contains(*e))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// One load's input: which entities it holds, in which format, and whether it is
/// deliberately bad (the server must refuse it whole).
#[derive(Debug, Clone)]
pub struct LoadInput {
    /// The group loaded.
    pub group: Group,
    /// The load's id (unique in the run; also in its file name).
    pub load: u64,
    /// File format.
    pub format: Format,
    /// Entities in the input.
    pub entities: Entities,
    /// Entities that also have an older row of garbage values.
    pub stale: Entities,
    /// A row with an int that does not parse ends the file: the load must fail with 400.
    pub bad: bool,
}

impl LoadInput {
    /// A new input for load `load` of `group`, drawn from `rng`.
    pub fn generate(group: Group, load: u64, rng: &mut ChaCha8Rng) -> LoadInput {
        let mut own = ChaCha8Rng::seed_from_u64(rng.random());
        let wanted = own.random_range(20..=POOL);
        let mut entities = Entities::default();
        let mut stale = Entities::default();
        let mut order: Vec<usize> = (0..POOL).collect();
        for i in 0..wanted {
            let j = own.random_range(i..POOL);
            order.swap(i, j);
            entities.insert(order[i]);
            if own.random_bool(0.05) {
                stale.insert(order[i]);
            }
        }
        let format = match own.random_range(0..3) {
            0 => Format::CsvWide,
            1 => Format::CsvLong,
            _ => Format::Parquet,
        };
        // Bad inputs are CSV (a text cell is the simplest way to be wrong).
        let bad = format != Format::Parquet && own.random_bool(0.05);
        LoadInput {
            group,
            load,
            format,
            entities,
            stale,
            bad,
        }
    }

    /// The file name: `{group}-L{load}.{csv|parquet}` (the checker finds the load id in
    /// a version's recorded source this way).
    pub fn file_name(&self) -> String {
        let ext = if self.format == Format::Parquet {
            "parquet"
        } else {
            "csv"
        };
        format!("{}-L{}.{ext}", self.group.name(), self.load)
    }

    /// The expected value of `entity`'s feature `f`: `None` when the entity is not in
    /// the input.
    pub fn expected(&self, entity: usize, f: usize) -> Option<Cell> {
        self.entities
            .contains(entity)
            .then(|| cell(self.group, self.load, entity, f))
    }

    /// Values the version stores (nulls included): entities x features.
    pub fn stored_values(&self) -> u64 {
        (self.entities.len() * self.group.features().len()) as u64
    }

    /// Writes the input file at `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        match self.format {
            Format::CsvWide => self.write_csv_wide(path),
            Format::CsvLong => self.write_csv_long(path),
            Format::Parquet => self.write_parquet(path),
        }
        .with_context(|| format!("writing {}", path.display()))
    }

    fn garbage(kind: Kind) -> Cell {
        match kind {
            Kind::Int => Cell::Int(-1),
            Kind::Str => Cell::Str("stale row".into()),
            Kind::Float => Cell::Float(-1.5),
            Kind::Vec2 => Cell::Vec2([-1.0, -1.0]),
        }
    }

    fn text(cell: &Cell) -> String {
        match cell {
            Cell::Null => String::new(),
            Cell::Int(n) => n.to_string(),
            Cell::Str(s) => s.clone(),
            Cell::Float(x) => format!("{x:?}"),
            Cell::Vec2(v) => format!("[{:?}, {:?}]", v[0], v[1]),
        }
    }

    /// Rows in file order: (entity, event time, cells); stale rows come before or after
    /// the real one.
    fn rows(&self) -> Vec<(usize, i64, Vec<Cell>)> {
        let features = self.group.features();
        let time = load_time(self.load);
        let mut rows = Vec::new();
        for e in self.entities.iter() {
            let real: Vec<Cell> = (0..features.len())
                .map(|f| cell(self.group, self.load, e, f))
                .collect();
            let stale: Vec<Cell> = features.iter().map(|f| Self::garbage(f.kind)).collect();
            let is_stale = self.stale.contains(e);
            if is_stale && e % 2 == 0 {
                rows.push((e, time - 1, stale.clone()));
            }
            rows.push((e, time, real));
            if is_stale && e % 2 == 1 {
                rows.push((e, time - 1, stale));
            }
        }
        rows
    }

    fn write_csv_wide(&self, path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_path(path)?;
        let mut header = vec!["entity_id".to_owned(), "event_time".to_owned()];
        header.extend(self.group.features().iter().map(|f| f.name.to_owned()));
        w.write_record(&header)?;
        for (e, time, cells) in self.rows() {
            let mut record = vec![format!("e{e}"), time.to_string()];
            record.extend(cells.iter().map(Self::text));
            w.write_record(&record)?;
        }
        if self.bad {
            let mut record = vec!["e0".to_owned(), load_time(self.load).to_string()];
            record.extend(self.group.features().iter().map(|f| match f.kind {
                Kind::Int => "not-a-number".to_owned(),
                _ => String::new(),
            }));
            w.write_record(&record)?;
        }
        w.flush()?;
        Ok(())
    }

    fn write_csv_long(&self, path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_path(path)?;
        w.write_record(["entity_id", "feature_name", "event_time", "value"])?;
        let features = self.group.features();
        for (e, time, cells) in self.rows() {
            for (f, cell) in features.iter().zip(&cells) {
                w.write_record([
                    format!("e{e}"),
                    f.name.to_owned(),
                    time.to_string(),
                    Self::text(cell),
                ])?;
            }
        }
        if self.bad {
            w.write_record([
                "e0".to_owned(),
                features[0].name.to_owned(),
                load_time(self.load).to_string(),
                "not-a-number".to_owned(),
            ])?;
        }
        w.flush()?;
        Ok(())
    }

    fn write_parquet(&self, path: &Path) -> Result<()> {
        let rows = self.rows();
        let features = self.group.features();
        let mut fields = vec![
            Field::new("entity_id", DataType::Utf8, false),
            Field::new("event_time", DataType::Int64, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(e, _, _)| format!("e{e}")),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|(_, t, _)| *t),
            )),
        ];
        for (f, feature) in features.iter().enumerate() {
            let values = rows.iter().map(|(_, _, cells)| &cells[f]);
            let column: ArrayRef = match feature.kind {
                Kind::Int => {
                    fields.push(Field::new(feature.name, DataType::Int64, true));
                    Arc::new(Int64Array::from_iter(values.map(|c| match c {
                        Cell::Int(n) => Some(*n),
                        _ => None,
                    })))
                }
                Kind::Str => {
                    fields.push(Field::new(feature.name, DataType::Utf8, true));
                    Arc::new(StringArray::from_iter(values.map(|c| match c {
                        Cell::Str(s) => Some(s.clone()),
                        _ => None,
                    })))
                }
                Kind::Float => {
                    fields.push(Field::new(feature.name, DataType::Float64, true));
                    Arc::new(Float64Array::from_iter(values.map(|c| match c {
                        Cell::Float(x) => Some(*x),
                        _ => None,
                    })))
                }
                Kind::Vec2 => {
                    let mut builder = ListBuilder::new(Float32Builder::new());
                    for c in values {
                        match c {
                            Cell::Vec2(v) => {
                                builder.values().append_slice(v);
                                builder.append(true);
                            }
                            _ => builder.append(false),
                        }
                    }
                    let array = builder.finish();
                    fields.push(Field::new(feature.name, array.data_type().clone(), true));
                    Arc::new(array)
                }
            };
            columns.push(column);
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        let file = std::fs::File::create(path)?;
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
        writer.write(&batch)?;
        writer.close()?;
        Ok(())
    }
}

/// The load id in a version's recorded source path (`.../{group}-L{load}.{ext}`).
pub fn load_from_source(source: &str) -> Option<(Group, u64)> {
    let name = Path::new(source).file_name()?.to_str()?;
    let (stem, _) = name.rsplit_once('.')?;
    let (group, load) = stem.rsplit_once("-L")?;
    Some((Group::by_name(group)?, load.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_names_its_load() {
        for group in Group::ALL {
            for load in [0, 1, 7, 12_345] {
                for e in [0, 1, 150, POOL - 1] {
                    for f in 0..group.features().len() {
                        let c = cell(group, load, e, f);
                        if c != Cell::Null {
                            assert_eq!(load_of(&c), Some(load), "{c:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sources_name_their_load() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let input = LoadInput::generate(Group::B2, 42, &mut rng);
        let path = format!("/x/y/{}", input.file_name());
        assert_eq!(load_from_source(&path), Some((Group::B2, 42)));
        assert_eq!(load_from_source("/x/other.csv"), None);
    }
}
