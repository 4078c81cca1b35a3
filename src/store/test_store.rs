//! Unit-test support: feature specs of entity type `item` in group `items`, and a store
//! in a temporary directory with one registered feature (`price`, float64), for tests
//! of what consumes read answers (the serving log's encoder, the parity sampler).

use super::FeatureStore;
use crate::registry::FeatureSpec;

/// Specs of `features` (`(name, dtype)`), all of entity type `item` in group `items`.
pub(crate) fn item_specs(features: &[(&str, &str)]) -> Vec<FeatureSpec> {
    let mut toml = String::new();
    for (name, dtype) in features {
        toml.push_str(&format!(
            "[[feature]]\nname = \"{name}\"\nentity_type = \"item\"\ngroup = \"items\"\n\
             owner = \"tests\"\ndtype = \"{dtype}\"\n"
        ));
    }
    crate::registry::file::parse_features_toml(&toml, "specs").expect("specs")
}

/// A fresh store with the `price` feature; the directory lives as long as the guard.
pub(crate) fn with_price_feature() -> (tempfile::TempDir, FeatureStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        FeatureStore::open(dir.path().join("store"), crate::StoreConfig::default()).expect("open");
    store
        .apply(item_specs(&[("price", "float64")]))
        .expect("apply");
    (dir, store)
}
