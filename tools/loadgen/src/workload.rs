//! The requests a run sends: shapes, weighted mixes, and their encodings for featstore
//! (HTTP + JSON) and Redis (RESP), built from one description of the data set so both
//! systems see identical entities and features.
//!
//! Shapes:
//!
//! * **get**: one product's features: `GET /v1/features/product/p42?names=..` or
//!   `HMGET product:p42 f..`.
//! * **rank**: one user (context) and `candidates` products, the user's and the
//!   products' features: `POST /v1/rank` or a pipeline of one `HMGET` per entity.
//!   Candidates are drawn independently, so a Zipf draw may repeat a hot product, as
//!   real candidate lists do.
//! * **push**: `events` events for users, `push_features` float features each:
//!   `POST /v1/push` or one `HSET` per event, pipelined.
//!
//! Redis holds the data in one of two layouts ([`RedisLayout`]):
//!
//! * **hash**: one hash per entity keyed `{entity_type}:{entity_id}` (`product:p42`), one
//!   field per feature, named as in featstore, valued as the data file writes it. A get is
//!   one `HMGET`, a ranking read a pipeline of one `HMGET` per entity, a push one `HSET`
//!   per event.
//! * **packed**: one string per entity keyed `packed:{entity_type}:{entity_id}`, the
//!   entity's features as little-endian float32 in file order (50 features = 200 bytes),
//!   the layout a performance-minded Redis user picks (Feast's `precompute_online` packs
//!   rows the same way). A get is one `GET`, a ranking read **one `MGET`** of the user
//!   and every candidate, a push one `SETRANGE` per event over the pushed features (the
//!   first ones of the row, so one contiguous range).
//!
//! featstore's ranking answer is JSON or, with [`Encoding::Binary`], the binary ranking
//! form (`Accept: application/x-featstore-rank`, docs/wire.md). Immutable after
//! construction; shared by every connection.

use std::fmt::Write as _;
use std::str::FromStr;

use bytes::Bytes;
use serde::Serialize;

use crate::keys::{KeyDist, Rng};
use crate::resp::encode_command;

/// One kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Single-entity read.
    Get,
    /// Ranking batch: one user + candidates.
    Rank,
    /// Push of events.
    Push,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 3] = [Shape::Get, Shape::Rank, Shape::Push];

    /// Its name in mixes, results and reports.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Get => "get",
            Shape::Rank => "rank",
            Shape::Push => "push",
        }
    }
}

impl FromStr for Shape {
    type Err = WorkloadError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Shape::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| WorkloadError::UnknownShape(text.to_owned()))
    }
}

/// A bad workload description.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkloadError {
    /// Not get, rank or push.
    #[error("unknown request shape `{0}`: use get, rank or push")]
    UnknownShape(String),
    /// A mix that does not parse or has no positive weight.
    #[error(
        "mix `{0}`: expected SHAPE or SHAPE=WEIGHT,... with positive integer weights (e.g. get=8,rank=1,push=1)"
    )]
    BadMix(String),
    /// A feature count larger than the data set has.
    #[error("{what}: asked for {asked} features, the data set has {have}")]
    TooManyFeatures {
        /// Which count.
        what: &'static str,
        /// Requested.
        asked: usize,
        /// Available.
        have: usize,
    },
    /// A zero count where at least one is needed.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// Not hash or packed.
    #[error("unknown Redis layout `{0}`: use hash or packed")]
    UnknownLayout(String),
    /// Not json or binary.
    #[error("unknown answer encoding `{0}`: use json or binary")]
    UnknownEncoding(String),
}

/// Shapes with integer weights; a request picks a shape with probability
/// `weight / total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    entries: Vec<(Shape, u32)>,
    total: u32,
}

impl Mix {
    /// A mix of one shape.
    pub fn only(shape: Shape) -> Mix {
        Mix {
            entries: vec![(shape, 1)],
            total: 1,
        }
    }

    /// The shapes with a positive weight.
    pub fn shapes(&self) -> impl Iterator<Item = Shape> + '_ {
        self.entries.iter().map(|(s, _)| *s)
    }

    /// `get`, or `get=8,rank=1,push=1` (shapes sorted, as given otherwise).
    pub fn label(&self) -> String {
        if let [(shape, _)] = self.entries.as_slice() {
            return shape.name().to_owned();
        }
        self.entries
            .iter()
            .map(|(s, w)| format!("{}={w}", s.name()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Picks a shape.
    pub fn pick(&self, rng: &mut Rng) -> Shape {
        let mut x = rng.below(u64::from(self.total)) as u32;
        for (shape, weight) in &self.entries {
            if x < *weight {
                return *shape;
            }
            x -= weight;
        }
        self.entries.last().map_or(Shape::Get, |(s, _)| *s)
    }
}

impl FromStr for Mix {
    type Err = WorkloadError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || WorkloadError::BadMix(text.to_owned());
        let mut entries: Vec<(Shape, u32)> = Vec::new();
        for part in text.split(',') {
            let (name, weight) = match part.split_once('=') {
                Some((name, w)) => (name.trim(), w.trim().parse::<u32>().map_err(|_| bad())?),
                None => (part.trim(), 1),
            };
            let shape: Shape = name.parse()?;
            if entries.iter().any(|(s, _)| *s == shape) {
                return Err(bad());
            }
            if weight > 0 {
                entries.push((shape, weight));
            }
        }
        let total = entries
            .iter()
            .try_fold(0u32, |acc, (_, w)| acc.checked_add(*w))
            .ok_or_else(bad)?;
        if total == 0 {
            return Err(bad());
        }
        entries.sort_by_key(|(s, _)| *s);
        Ok(Mix { entries, total })
    }
}

/// How Redis stores an entity's features (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisLayout {
    /// One hash per entity, one field per feature.
    #[default]
    Hash,
    /// One packed float32 row per entity.
    Packed,
}

impl FromStr for RedisLayout {
    type Err = WorkloadError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "hash" => Ok(RedisLayout::Hash),
            "packed" => Ok(RedisLayout::Packed),
            _ => Err(WorkloadError::UnknownLayout(text.to_owned())),
        }
    }
}

/// The encoding featstore's ranking answers are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// JSON (the default answer).
    #[default]
    Json,
    /// The binary ranking form (`Accept: application/x-featstore-rank`).
    Binary,
}

impl Encoding {
    /// The binary ranking form's media type (docs/wire.md).
    pub const BINARY_RANK: &'static str = "application/x-featstore-rank";
}

impl FromStr for Encoding {
    type Err = WorkloadError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "json" => Ok(Encoding::Json),
            "binary" => Ok(Encoding::Binary),
            _ => Err(WorkloadError::UnknownEncoding(text.to_owned())),
        }
    }
}

/// The key of entity `id` of `entity_type` in Redis's packed layout.
pub fn packed_key(entity_type: &str, id: &str) -> String {
    format!("packed:{entity_type}:{id}")
}

/// One entity type of the data set.
#[derive(Debug, Clone)]
pub struct EntitySet {
    /// Entity type (`product`).
    pub entity_type: String,
    /// Id prefix (`p`: ids `p0`, `p1`, ...).
    pub id_prefix: String,
    /// Feature names, in file order.
    pub features: Vec<String>,
    /// How ids are drawn (its length is the number of entities).
    pub keys: KeyDist,
}

impl EntitySet {
    /// The entity id of index `i`.
    pub fn id(&self, i: u64) -> String {
        format!("{}{i}", self.id_prefix)
    }

    fn redis_key(&self, i: u64) -> String {
        format!("{}:{}{i}", self.entity_type, self.id_prefix)
    }

    fn packed_key(&self, i: u64) -> String {
        packed_key(&self.entity_type, &self.id(i))
    }
}

/// Sizes of each request shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Product features per get (and per ranking candidate).
    pub get_features: usize,
    /// User features in a ranking request.
    pub user_features: usize,
    /// Candidates per ranking request.
    pub candidates: usize,
    /// Events per push.
    pub push_events: usize,
    /// Features per pushed event.
    pub push_features: usize,
}

/// A drawn request, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Read product `id`.
    Get {
        /// Product index.
        product: u64,
    },
    /// Rank `products` for `user`.
    Rank {
        /// User index.
        user: u64,
        /// Candidate product indices.
        products: Vec<u64>,
    },
    /// Push events for users.
    Push {
        /// Event time, ms since the epoch.
        event_time_ms: i64,
        /// (user index, values of the first `push_features` user features).
        events: Vec<(u64, Vec<f32>)>,
    },
}

impl Op {
    /// Its shape.
    pub fn shape(&self) -> Shape {
        match self {
            Op::Get { .. } => Shape::Get,
            Op::Rank { .. } => Shape::Rank,
            Op::Push { .. } => Shape::Push,
        }
    }

    /// Entity rows it reads or writes: 1, 1 + candidates, or the events.
    pub fn rows(&self) -> u64 {
        match self {
            Op::Get { .. } => 1,
            Op::Rank { products, .. } => 1 + products.len() as u64,
            Op::Push { events, .. } => events.len() as u64,
        }
    }
}

/// An HTTP request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET` or `POST`.
    pub method: hyper::Method,
    /// Path and query.
    pub path: String,
    /// JSON body of a POST.
    pub body: Option<Bytes>,
    /// The `Accept` header, when the answer is asked for in another encoding than JSON.
    pub accept: Option<&'static str>,
}

/// The data set and the request sizes: draws [`Op`]s and encodes them.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Products (gets and ranking candidates).
    pub products: EntitySet,
    /// Users (ranking context and pushes).
    pub users: EntitySet,
    /// Request sizes.
    pub sizes: Sizes,
    names_query: String,
    rank_features_json: String,
    /// The fields of a product `HMGET`, already RESP-encoded (a command is its header,
    /// the key, then these bytes).
    product_fields: Vec<u8>,
    product_field_count: usize,
    user_fields: Vec<u8>,
    user_field_count: usize,
    encoding: Encoding,
    layout: RedisLayout,
}

impl Workload {
    /// A workload over `products` and `users` with `sizes`.
    pub fn new(
        products: EntitySet,
        users: EntitySet,
        sizes: Sizes,
    ) -> Result<Workload, WorkloadError> {
        let check = |what, asked: usize, have: usize| {
            if asked > have {
                Err(WorkloadError::TooManyFeatures { what, asked, have })
            } else {
                Ok(())
            }
        };
        check("get features", sizes.get_features, products.features.len())?;
        check("user features", sizes.user_features, users.features.len())?;
        check("push features", sizes.push_features, users.features.len())?;
        if sizes.get_features == 0 {
            return Err(WorkloadError::Zero("get features"));
        }
        if sizes.candidates == 0 {
            return Err(WorkloadError::Zero("candidates"));
        }
        if sizes.push_events == 0 {
            return Err(WorkloadError::Zero("push events"));
        }
        if sizes.push_features == 0 {
            return Err(WorkloadError::Zero("push features"));
        }
        let product_names = &products.features[..sizes.get_features];
        let user_names = &users.features[..sizes.user_features];
        let names_query = format!("names={}", product_names.join(","));
        let rank_features_json =
            serde_json::to_string(&user_names.iter().chain(product_names).collect::<Vec<_>>())
                .unwrap_or_default();
        let fields = |names: &[String]| {
            let mut out = Vec::new();
            for name in names {
                out.extend_from_slice(format!("${}\r\n{name}\r\n", name.len()).as_bytes());
            }
            out
        };
        Ok(Workload {
            product_fields: fields(product_names),
            product_field_count: product_names.len(),
            user_fields: fields(user_names),
            user_field_count: user_names.len(),
            names_query,
            rank_features_json,
            products,
            users,
            sizes,
            encoding: Encoding::Json,
            layout: RedisLayout::Hash,
        })
    }

    /// The same workload asking featstore for ranking answers in `encoding`.
    pub fn with_encoding(mut self, encoding: Encoding) -> Workload {
        self.encoding = encoding;
        self
    }

    /// The same workload addressing Redis's `layout`.
    pub fn with_redis_layout(mut self, layout: RedisLayout) -> Workload {
        self.layout = layout;
        self
    }

    /// Draws a request of `shape`; `now_ms` stamps pushed events.
    pub fn draw(&self, shape: Shape, rng: &mut Rng, now_ms: i64) -> Op {
        match shape {
            Shape::Get => Op::Get {
                product: self.products.keys.sample(rng),
            },
            Shape::Rank => Op::Rank {
                user: self.users.keys.sample(rng),
                products: (0..self.sizes.candidates)
                    .map(|_| self.products.keys.sample(rng))
                    .collect(),
            },
            Shape::Push => Op::Push {
                event_time_ms: now_ms,
                events: (0..self.sizes.push_events)
                    .map(|_| {
                        let user = self.users.keys.sample(rng);
                        let values = (0..self.sizes.push_features)
                            .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32)
                            .collect();
                        (user, values)
                    })
                    .collect(),
            },
        }
    }

    /// The featstore request for `op`.
    pub fn http(&self, op: &Op) -> HttpRequest {
        match op {
            Op::Get { product } => HttpRequest {
                method: hyper::Method::GET,
                path: format!(
                    "/v1/features/{}/{}?{}",
                    self.products.entity_type,
                    self.products.id(*product),
                    self.names_query
                ),
                body: None,
                accept: None,
            },
            Op::Rank { user, products } => {
                let mut body = String::with_capacity(64 + products.len() * 10);
                let _ = write!(
                    body,
                    r#"{{"context":{{"{}":"{}"}},"candidates":{{"entity_type":"{}","ids":["#,
                    self.users.entity_type,
                    self.users.id(*user),
                    self.products.entity_type
                );
                for (n, p) in products.iter().enumerate() {
                    if n > 0 {
                        body.push(',');
                    }
                    let _ = write!(body, r#""{}""#, self.products.id(*p));
                }
                let _ = write!(body, r#"]}},"features":{}}}"#, self.rank_features_json);
                let mut req = post("/v1/rank", body);
                if self.encoding == Encoding::Binary {
                    req.accept = Some(Encoding::BINARY_RANK);
                }
                req
            }
            Op::Push {
                event_time_ms,
                events,
            } => {
                let mut body = String::from(r#"{"events":["#);
                for (n, (user, values)) in events.iter().enumerate() {
                    if n > 0 {
                        body.push(',');
                    }
                    let _ = write!(
                        body,
                        r#"{{"entity_type":"{}","entity_id":"{}","event_time":{event_time_ms},"features":{{"#,
                        self.users.entity_type,
                        self.users.id(*user)
                    );
                    for (k, v) in values.iter().enumerate() {
                        if k > 0 {
                            body.push(',');
                        }
                        // `{:?}` keeps a decimal point (`2.0`), so every value reads as a float.
                        let _ = write!(body, r#""{}":{v:?}"#, self.users.features[k]);
                    }
                    body.push_str("}}");
                }
                body.push_str("]}");
                post("/v1/push", body)
            }
        }
    }

    /// Appends the Redis commands for `op` to `out` (one pipeline); returns how many.
    pub fn redis(&self, op: &Op, out: &mut Vec<u8>) -> usize {
        match self.layout {
            RedisLayout::Hash => self.redis_hash(op, out),
            RedisLayout::Packed => self.redis_packed(op, out),
        }
    }

    /// The packed layout: `GET`, one `MGET`, or a `SETRANGE` per event.
    fn redis_packed(&self, op: &Op, out: &mut Vec<u8>) -> usize {
        match op {
            Op::Get { product } => {
                let key = self.products.packed_key(*product);
                encode_command(out, &[b"GET", key.as_bytes()]);
                1
            }
            Op::Rank { user, products } => {
                let mut keys = Vec::with_capacity(1 + products.len());
                keys.push(self.users.packed_key(*user));
                keys.extend(products.iter().map(|p| self.products.packed_key(*p)));
                let mut args: Vec<&[u8]> = Vec::with_capacity(1 + keys.len());
                args.push(b"MGET");
                args.extend(keys.iter().map(String::as_bytes));
                encode_command(out, &args);
                1
            }
            Op::Push { events, .. } => {
                for (user, values) in events {
                    let key = self.users.packed_key(*user);
                    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    encode_command(out, &[b"SETRANGE", key.as_bytes(), b"0", &bytes]);
                }
                events.len()
            }
        }
    }

    /// The hash layout: `HMGET`s and `HSET`s.
    fn redis_hash(&self, op: &Op, out: &mut Vec<u8>) -> usize {
        // `HMGET key f..`: the header and key, then the pre-encoded fields; the same
        // bytes `encode_command` writes (a test checks).
        let hmget = |out: &mut Vec<u8>, set: &EntitySet, index: u64, fields: &[u8], n: usize| {
            let key = set.redis_key(index);
            out.extend_from_slice(
                format!("*{}\r\n$5\r\nHMGET\r\n${}\r\n{key}\r\n", n + 2, key.len()).as_bytes(),
            );
            out.extend_from_slice(fields);
        };
        match op {
            Op::Get { product } => {
                let (f, n) = (&self.product_fields, self.product_field_count);
                hmget(out, &self.products, *product, f, n);
                1
            }
            Op::Rank { user, products } => {
                hmget(
                    out,
                    &self.users,
                    *user,
                    &self.user_fields,
                    self.user_field_count,
                );
                let (f, n) = (&self.product_fields, self.product_field_count);
                for p in products {
                    hmget(out, &self.products, *p, f, n);
                }
                1 + products.len()
            }
            Op::Push { events, .. } => {
                for (user, values) in events {
                    let key = self.users.redis_key(*user);
                    let texts: Vec<String> = values.iter().map(f32::to_string).collect();
                    let mut args: Vec<&[u8]> = vec![b"HSET", key.as_bytes()];
                    for (k, text) in texts.iter().enumerate() {
                        args.push(self.users.features[k].as_bytes());
                        args.push(text.as_bytes());
                    }
                    encode_command(out, &args);
                }
                events.len()
            }
        }
    }
}

fn post(path: &str, body: String) -> HttpRequest {
    HttpRequest {
        method: hyper::Method::POST,
        path: path.to_owned(),
        body: Some(Bytes::from(body)),
        accept: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DistKind;
    use crate::resp::{Reply, decode};

    fn set(entity_type: &str, prefix: &str, features: usize, n: u64) -> EntitySet {
        EntitySet {
            entity_type: entity_type.to_owned(),
            id_prefix: prefix.to_owned(),
            features: (0..features).map(|k| format!("{prefix}f{k:02}")).collect(),
            keys: KeyDist::new(DistKind::Uniform, n).expect("dist"),
        }
    }

    fn workload() -> Workload {
        Workload::new(
            set("product", "p", 4, 100),
            set("user", "u", 3, 10),
            Sizes {
                get_features: 4,
                user_features: 2,
                candidates: 3,
                push_events: 2,
                push_features: 2,
            },
        )
        .expect("workload")
    }

    #[test]
    fn mixes_parse_and_pick_by_weight() {
        let mix: Mix = "rank=1,get=8,push=1".parse().expect("mix");
        assert_eq!(mix.label(), "get=8,rank=1,push=1");
        let mut rng = Rng::new(9);
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            counts[mix.pick(&mut rng) as usize] += 1;
        }
        assert!((79_000..81_000).contains(&counts[0]), "{counts:?}");
        assert!((9_500..10_500).contains(&counts[1]), "{counts:?}");
        assert!((9_500..10_500).contains(&counts[2]), "{counts:?}");
        assert_eq!("get".parse::<Mix>().expect("mix").label(), "get");
        assert_eq!("get=0,push=2".parse::<Mix>().expect("mix").label(), "push");
        for bad in ["", "get=0", "get=x", "get,get", "scan=1", "get=-1"] {
            assert!(bad.parse::<Mix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn get_encodes_the_same_entity_and_features_for_both_systems() {
        let w = workload();
        let op = Op::Get { product: 42 };
        let req = w.http(&op);
        assert_eq!(req.method, hyper::Method::GET);
        assert_eq!(
            req.path,
            "/v1/features/product/p42?names=pf00,pf01,pf02,pf03"
        );
        let mut out = Vec::new();
        assert_eq!(w.redis(&op, &mut out), 1);
        let (reply, _) = decode(&out).expect("valid").expect("complete");
        let args: Vec<Reply> = ["HMGET", "product:p42", "pf00", "pf01", "pf02", "pf03"]
            .iter()
            .map(|a| Reply::Bulk(Some(a.as_bytes().to_vec())))
            .collect();
        assert_eq!(reply, Reply::Array(Some(args)));
        assert_eq!(op.rows(), 1);
    }

    fn command_args(out: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut at = 0;
        let mut commands = Vec::new();
        while at < out.len() {
            let (reply, used) = decode(&out[at..]).expect("valid").expect("complete");
            at += used;
            let Reply::Array(Some(args)) = reply else {
                panic!("not a command")
            };
            commands.push(
                args.into_iter()
                    .map(|a| match a {
                        Reply::Bulk(Some(b)) => b,
                        other => panic!("not a bulk argument: {other:?}"),
                    })
                    .collect(),
            );
        }
        commands
    }

    #[test]
    fn packed_layout_reads_a_rank_with_one_mget_and_pushes_with_setrange() {
        let w = workload().with_redis_layout(RedisLayout::Packed);
        let op = Op::Rank {
            user: 7,
            products: vec![1, 2, 1],
        };
        let mut out = Vec::new();
        assert_eq!(w.redis(&op, &mut out), 1);
        let b = |s: &str| s.as_bytes().to_vec();
        assert_eq!(
            command_args(&out),
            vec![vec![
                b("MGET"),
                b("packed:user:u7"),
                b("packed:product:p1"),
                b("packed:product:p2"),
                b("packed:product:p1"),
            ]]
        );
        out.clear();
        assert_eq!(w.redis(&Op::Get { product: 42 }, &mut out), 1);
        assert_eq!(
            command_args(&out),
            vec![vec![b("GET"), b("packed:product:p42")]]
        );
        out.clear();
        let push = Op::Push {
            event_time_ms: 1,
            events: vec![(3, vec![1.5, -2.0]), (4, vec![0.0, 8.25])],
        };
        assert_eq!(w.redis(&push, &mut out), 2);
        let mut row = 1.5f32.to_le_bytes().to_vec();
        row.extend_from_slice(&(-2.0f32).to_le_bytes());
        let commands = command_args(&out);
        assert_eq!(
            commands[0],
            vec![b("SETRANGE"), b("packed:user:u3"), b("0"), row]
        );
        assert_eq!(commands[1][1], b("packed:user:u4"));
        assert_eq!(commands[1][3].len(), 8);
    }

    #[test]
    fn binary_encoding_asks_for_the_binary_ranking_form_only_for_ranks() {
        let w = workload().with_encoding(Encoding::Binary);
        let rank = w.http(&Op::Rank {
            user: 1,
            products: vec![2],
        });
        assert_eq!(rank.accept, Some("application/x-featstore-rank"));
        assert_eq!(w.http(&Op::Get { product: 1 }).accept, None);
        assert_eq!(
            workload()
                .http(&Op::Rank {
                    user: 1,
                    products: vec![2]
                })
                .accept,
            None
        );
        assert_eq!("binary".parse::<Encoding>(), Ok(Encoding::Binary));
        assert_eq!("packed".parse::<RedisLayout>(), Ok(RedisLayout::Packed));
        assert!("xml".parse::<Encoding>().is_err());
        assert!("list".parse::<RedisLayout>().is_err());
    }

    #[test]
    fn rank_is_one_json_request_or_a_pipeline_of_hmgets() {
        let w = workload();
        let op = Op::Rank {
            user: 7,
            products: vec![1, 2, 1],
        };
        let req = w.http(&op);
        assert_eq!(req.path, "/v1/rank");
        let body: serde_json::Value =
            serde_json::from_slice(req.body.as_deref().expect("body")).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "context": {"user": "u7"},
                "candidates": {"entity_type": "product", "ids": ["p1", "p2", "p1"]},
                "features": ["uf00", "uf01", "pf00", "pf01", "pf02", "pf03"],
            })
        );
        let mut out = Vec::new();
        assert_eq!(w.redis(&op, &mut out), 4);
        let mut at = 0;
        let mut keys = Vec::new();
        while at < out.len() {
            let (reply, used) = decode(&out[at..]).expect("valid").expect("complete");
            at += used;
            let Reply::Array(Some(args)) = reply else {
                panic!("not a command")
            };
            keys.push((args[1].clone(), args.len() - 2));
        }
        let key = |k: &str| Reply::Bulk(Some(k.as_bytes().to_vec()));
        assert_eq!(
            keys,
            vec![
                (key("user:u7"), 2),
                (key("product:p1"), 4),
                (key("product:p2"), 4),
                (key("product:p1"), 4),
            ]
        );
        assert_eq!(op.rows(), 4);
    }

    #[test]
    fn pre_encoded_hmgets_match_the_generic_encoder() {
        let w = workload();
        let mut fast = Vec::new();
        w.redis(
            &Op::Rank {
                user: 3,
                products: vec![17],
            },
            &mut fast,
        );
        let mut generic = Vec::new();
        encode_command(&mut generic, &["HMGET", "user:u3", "uf00", "uf01"]);
        encode_command(
            &mut generic,
            &["HMGET", "product:p17", "pf00", "pf01", "pf02", "pf03"],
        );
        assert_eq!(fast, generic);
    }

    #[test]
    fn push_is_events_json_or_hsets() {
        let w = workload();
        let op = Op::Push {
            event_time_ms: 1_700_000_000_000,
            events: vec![(3, vec![0.5, -1.25]), (4, vec![0.0, 2.0])],
        };
        let req = w.http(&op);
        assert_eq!(req.path, "/v1/push");
        let body: serde_json::Value =
            serde_json::from_slice(req.body.as_deref().expect("body")).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"events": [
                {"entity_type": "user", "entity_id": "u3", "event_time": 1_700_000_000_000i64,
                 "features": {"uf00": 0.5, "uf01": -1.25}},
                {"entity_type": "user", "entity_id": "u4", "event_time": 1_700_000_000_000i64,
                 "features": {"uf00": 0.0, "uf01": 2.0}},
            ]})
        );
        let mut out = Vec::new();
        assert_eq!(w.redis(&op, &mut out), 2);
        let (reply, _) = decode(&out).expect("valid").expect("complete");
        let args: Vec<Reply> = ["HSET", "user:u3", "uf00", "0.5", "uf01", "-1.25"]
            .iter()
            .map(|a| Reply::Bulk(Some(a.as_bytes().to_vec())))
            .collect();
        assert_eq!(reply, Reply::Array(Some(args)));
    }

    #[test]
    fn draws_stay_in_the_key_space_and_sizes() {
        let w = workload();
        let mut rng = Rng::new(5);
        for _ in 0..1000 {
            match w.draw(Shape::Rank, &mut rng, 0) {
                Op::Rank { user, products } => {
                    assert!(user < 10);
                    assert_eq!(products.len(), 3);
                    assert!(products.iter().all(|p| *p < 100));
                }
                other => panic!("{other:?}"),
            }
            match w.draw(Shape::Push, &mut rng, 1) {
                Op::Push { events, .. } => {
                    assert_eq!(events.len(), 2);
                    assert!(events.iter().all(|(u, v)| *u < 10 && v.len() == 2));
                    assert!(
                        events
                            .iter()
                            .flat_map(|(_, v)| v)
                            .all(|x| (-1.0..1.0).contains(x))
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn sizes_beyond_the_data_set_are_refused() {
        let sizes = Sizes {
            get_features: 5,
            user_features: 1,
            candidates: 1,
            push_events: 1,
            push_features: 1,
        };
        assert!(matches!(
            Workload::new(set("product", "p", 4, 10), set("user", "u", 3, 10), sizes),
            Err(WorkloadError::TooManyFeatures {
                asked: 5,
                have: 4,
                ..
            })
        ));
        let sizes = Sizes {
            get_features: 1,
            candidates: 0,
            ..sizes
        };
        assert!(matches!(
            Workload::new(set("product", "p", 4, 10), set("user", "u", 3, 10), sizes),
            Err(WorkloadError::Zero("candidates"))
        ));
    }
}
