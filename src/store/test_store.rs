//! Unit-test support: a store in a temporary directory with one registered feature
//! (`price`, float64, of entity type `item` in group `items`), for tests of what
//! consumes read answers (the serving log's encoder, the parity sampler).

use super::FeatureStore;

/// A fresh store with the `price` feature; the directory lives as long as the guard.
pub(crate) fn with_price_feature() -> (tempfile::TempDir, FeatureStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        FeatureStore::open(dir.path().join("store"), crate::StoreConfig::default()).expect("open");
    let specs = crate::registry::file::parse_features_toml(
        "[[feature]]\nname = \"price\"\nentity_type = \"item\"\ngroup = \"items\"\n\
         owner = \"tests\"\ndtype = \"float64\"\n",
        "specs",
    )
    .expect("specs");
    store.apply(specs).expect("apply");
    (dir, store)
}
