//! The ranking benchmark corpus: `products` products x `features` float32 features
//! plus a product embedding, 100 users and 10 retailers with embeddings, two on-demand
//! similarity features (user x product cosine, retailer x product dot product) and a
//! feature service listing all of them. Values are pure functions of the seed (see
//! [`super::float_matrix_value`]), written as wide CSV.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use super::float_matrix_value;
use crate::query::rank::{FeatureSelection, RankRequest};
use crate::registry::file::{RegistryObjects, parse_registry_toml};

/// Users in the corpus (`u0`..).
pub const RANKING_USERS: u64 = 100;
/// Retailers in the corpus (`r0`..).
pub const RANKING_RETAILERS: u64 = 10;
/// Event time of every row.
pub const RANKING_EVENT_TIME_MS: i64 = 1_763_700_000_000;

/// What [`write_ranking_corpus`] wrote.
#[derive(Debug, Clone)]
pub struct RankingCorpus {
    /// Definitions, composite-free: the features, two on-demand features and the
    /// `ranker_bench` service.
    pub registry: RegistryObjects,
    /// `(group, file)` to load.
    pub loads: Vec<(String, PathBuf)>,
    /// The request's feature names: the product floats, then the two on-demand ones.
    pub feature_names: Vec<String>,
    /// Products written (`p0`..).
    pub products: u64,
}

fn vector(seed: u64, stream: u64, entity: u64, dim: u32) -> String {
    (0..dim as usize)
        .map(|k| float_matrix_value(seed ^ stream, entity, k).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes the corpus into `dir`.
pub fn write_ranking_corpus(
    dir: &Path,
    products: u64,
    features: usize,
    dim: u32,
    seed: u64,
) -> io::Result<RankingCorpus> {
    std::fs::create_dir_all(dir)?;
    let feature_names = ranking_feature_names(features);
    let names = &feature_names[..features];
    let mut toml = String::new();
    for name in names {
        let _ = writeln!(
            toml,
            "[[feature]]\nname = \"{name}\"\nentity_type = \"product\"\ngroup = \"bench_products\"\nowner = \"benchmarks\"\ndtype = \"float32\"\ndefault = 0.0\n"
        );
    }
    let _ = write!(
        toml,
        r#"
[[feature]]
name = "product_emb"
entity_type = "product"
group = "bench_products"
owner = "benchmarks"
dtype = "float32_vector[{dim}]"

[[feature]]
name = "user_emb"
entity_type = "user"
group = "bench_users"
owner = "benchmarks"
dtype = "float32_vector[{dim}]"

[[feature]]
name = "retailer_emb"
entity_type = "retailer"
group = "bench_retailers"
owner = "benchmarks"
dtype = "float32_vector[{dim}]"

[[on_demand]]
name = "user_product_sim"
owner = "benchmarks"
op = "cosine_similarity"
inputs = ["user_emb", "product_emb"]
default = 0.0

[[on_demand]]
name = "retailer_product_dot"
owner = "benchmarks"
op = "dot_product"
inputs = ["retailer_emb", "product_emb"]
default = 0.0
"#
    );
    let listed: Vec<String> = feature_names.iter().map(|n| format!("\"{n}\"")).collect();
    let _ = write!(
        toml,
        "\n[[service]]\nname = \"ranker_bench\"\nowner = \"benchmarks\"\nfeatures = [{}]\n",
        listed.join(", ")
    );
    let registry = parse_registry_toml(&toml, "ranking corpus")
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;

    let mut loads = Vec::new();
    let path = dir.join("bench_products.csv");
    let mut text = String::with_capacity(products as usize * (features * 12 + dim as usize * 12));
    text.push_str("entity_id,event_time,");
    text.push_str(&names.join(","));
    text.push_str(",product_emb\n");
    for p in 0..products {
        let _ = write!(text, "p{p},{RANKING_EVENT_TIME_MS}");
        for k in 0..features {
            let _ = write!(text, ",{}", float_matrix_value(seed, p, k));
        }
        let _ = writeln!(text, ",{}", vector(seed, 1, p, dim));
    }
    std::fs::write(&path, text)?;
    loads.push(("bench_products".to_owned(), path));
    for (group, prefix, column, count, stream) in [
        ("bench_users", "u", "user_emb", RANKING_USERS, 2),
        ("bench_retailers", "r", "retailer_emb", RANKING_RETAILERS, 3),
    ] {
        let path = dir.join(format!("{group}.csv"));
        let mut text = format!("entity_id,event_time,{column}\n");
        for e in 0..count {
            let _ = writeln!(
                text,
                "{prefix}{e},{RANKING_EVENT_TIME_MS},{}",
                vector(seed, stream, e, dim)
            );
        }
        std::fs::write(&path, text)?;
        loads.push((group.to_owned(), path));
    }
    Ok(RankingCorpus {
        registry,
        loads,
        feature_names,
        products,
    })
}

/// A ranking request body for `POST /v1/rank`: user `u{n % 100}`, retailer
/// `r{n % 10}`, `candidates` product ids drawn (deterministically from `n`) from the
/// corpus, and `features`.
pub fn ranking_request_json(n: u64, corpus: &RankingCorpus, candidates: usize) -> String {
    let ids = ranking_candidates(n, corpus.products, candidates);
    serde_json::json!({
        "context": {"user": format!("u{}", n % RANKING_USERS), "retailer": format!("r{}", n % RANKING_RETAILERS)},
        "candidates": {"entity_type": "product", "ids": ids},
        "features": corpus.feature_names,
    })
    .to_string()
}

/// The request's feature names of a corpus of `features` product floats: `pf00`.. then
/// the two on-demand features (what [`RankingCorpus::feature_names`] holds).
pub fn ranking_feature_names(features: usize) -> Vec<String> {
    let mut names: Vec<String> = (0..features).map(|k| format!("pf{k:02}")).collect();
    names.push("user_product_sim".into());
    names.push("retailer_product_dot".into());
    names
}

/// The in-process form of [`ranking_request_json`]: user `u{n % 100}`, retailer
/// `r{n % 10}`, `candidates` product ids drawn from `0..products`, and `features`.
pub fn ranking_request(
    n: u64,
    products: u64,
    features: &[String],
    candidates: usize,
) -> RankRequest {
    RankRequest {
        context: vec![
            ("user".into(), format!("u{}", n % RANKING_USERS)),
            ("retailer".into(), format!("r{}", n % RANKING_RETAILERS)),
        ],
        candidate_type: "product".into(),
        candidates: ranking_candidates(n, products, candidates),
        features: FeatureSelection::Names(features.to_vec()),
        deadline: None,
    }
}

/// `count` product ids drawn from `0..products` by an xorshift seeded with `n`.
pub fn ranking_candidates(n: u64, products: u64, count: usize) -> Vec<String> {
    let mut state = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format!("p{}", state % products.max(1))
        })
        .collect()
}
