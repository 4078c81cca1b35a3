//! The marketplace's feature catalog: groups, features, their metadata and the
//! per-cell generation rules.
//!
//! Everything here is a pure function of the [`DatasetConfig`] and the cell's
//! coordinates; [`Dataset`](super::Dataset) only dispatches to it.

use std::borrow::Cow;
use std::time::Duration;

use super::DatasetConfig;
use super::hash::{mix, signed_f32, unit_f32};
use crate::registry::{FeatureSpec, Sensitivity};
use crate::types::{DType, TimestampMs, Value};

/// Dimension of every embedding in the data set.
pub(super) const EMBEDDING_DIM: u32 = 16;

const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);
const DAY_MS: u64 = 86_400_000;

/// Sub-slot of the hash that draws a cell's value.
const SUB_VALUE: u64 = 0;
/// Sub-slot of the hash that draws a cell's own event time.
const SUB_TIME: u64 = 1;
/// Sub-slot of the hash that picks a long-CSV row's timestamp format.
const SUB_FORMAT: u64 = 2;
/// First sub-slot of vector components (component `c` uses `SUB_VECTOR + c`).
const SUB_VECTOR: u64 = 16;
/// Slot of the per-entity (per-row) event time of a group.
const SLOT_ENTITY_TIME: u64 = 999_999;

const CATEGORIES: [&str; 12] = [
    "beverages",
    "snacks",
    "dairy",
    "produce",
    "frozen",
    "bakery",
    "household",
    "personal_care",
    "pet",
    "baby",
    "electronics",
    "stationery",
];

const REGIONS: [&str; 5] = ["north", "south", "east", "west", "central"];

/// A feature group of the marketplace; each is loaded from one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Group {
    /// `product_daily`: wide Parquet.
    Product,
    /// `user_daily`: long CSV.
    User,
    /// `retailer_daily`: wide CSV.
    Retailer,
}

impl Group {
    /// Every group, in file-writing and spec order.
    pub(super) const ALL: [Group; 3] = [Group::Product, Group::User, Group::Retailer];

    pub(super) fn name(self) -> &'static str {
        match self {
            Group::Product => "product_daily",
            Group::User => "user_daily",
            Group::Retailer => "retailer_daily",
        }
    }

    pub(super) fn entity_type(self) -> &'static str {
        match self {
            Group::Product => "product",
            Group::User => "user",
            Group::Retailer => "retailer",
        }
    }

    pub(super) fn from_entity_type(entity_type: &str) -> Option<Group> {
        Group::ALL
            .into_iter()
            .find(|g| g.entity_type() == entity_type)
    }

    /// Entity ids are this prefix followed by the index in decimal (`p0`, `u17`...).
    pub(super) fn id_prefix(self) -> &'static str {
        match self {
            Group::Product => "p",
            Group::User => "u",
            Group::Retailer => "r",
        }
    }

    pub(super) fn file_name(self) -> &'static str {
        match self {
            Group::Product => "product_daily.parquet",
            Group::User => "user_daily.csv",
            Group::Retailer => "retailer_daily.csv",
        }
    }

    fn owner(self) -> &'static str {
        match self {
            Group::Product => "search-ranking",
            Group::User => "recsys-personalization",
            Group::Retailer => "marketplace-trust",
        }
    }

    fn transform_ref(self) -> String {
        format!("jobs/daily/{}.sql", self.name())
    }

    /// Hash stream that keeps the groups' values independent.
    fn stream(self) -> u64 {
        match self {
            Group::Product => 1,
            Group::User => 2,
            Group::Retailer => 3,
        }
    }

    pub(super) fn count(self, config: &DatasetConfig) -> u64 {
        match self {
            Group::Product => config.products,
            Group::User => config.users,
            Group::Retailer => config.retailers,
        }
    }

    /// The group's features in spec (and column) order.
    pub(super) fn features(self, config: &DatasetConfig) -> Vec<Feature> {
        match self {
            Group::Product => (0..config.product_float_features)
                .map(Feature::ProductFloat)
                .chain(PRODUCT_NAMED)
                .collect(),
            Group::User => USER_FEATURES.to_vec(),
            Group::Retailer => RETAILER_FEATURES.to_vec(),
        }
    }

    /// Parses `{prefix}{index}` with a canonical decimal index below the group's count.
    pub(super) fn parse_id(self, config: &DatasetConfig, id: &str) -> Option<u64> {
        let digits = id.strip_prefix(self.id_prefix())?;
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return None;
        }
        let index: u64 = digits.parse().ok()?;
        (index < self.count(config)).then_some(index)
    }

    /// The event time of entity `index`'s row: the base time minus a per-entity offset
    /// in `[0, 24h)`.
    pub(super) fn entity_time(self, config: &DatasetConfig, index: u64) -> TimestampMs {
        let offset = mix(
            config.seed,
            &[self.stream(), index, SLOT_ENTITY_TIME, SUB_TIME],
        ) % DAY_MS;
        config.base_time_ms.saturating_sub(offset as i64)
    }
}

/// One feature of the marketplace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Feature {
    /// `product_fNN`, float32; `NN` is at least two digits.
    ProductFloat(usize),
    ProductPrice,
    ProductOrders30d,
    ProductCategory,
    ProductInStock,
    ProductEmbedding,
    UserOrders30d,
    UserSessions7d,
    UserCartAdds1h,
    UserConversionRate30d,
    UserAvgOrderValue30d,
    UserReturnRatio90d,
    UserSegment,
    UserEmbedding,
    RetailerRating,
    RetailerActiveProducts,
    RetailerGmv30d,
    RetailerRegion,
    RetailerVerified,
    RetailerEmbedding,
}

const PRODUCT_NAMED: [Feature; 5] = [
    Feature::ProductPrice,
    Feature::ProductOrders30d,
    Feature::ProductCategory,
    Feature::ProductInStock,
    Feature::ProductEmbedding,
];

const USER_FEATURES: [Feature; 8] = [
    Feature::UserOrders30d,
    Feature::UserSessions7d,
    Feature::UserCartAdds1h,
    Feature::UserConversionRate30d,
    Feature::UserAvgOrderValue30d,
    Feature::UserReturnRatio90d,
    Feature::UserSegment,
    Feature::UserEmbedding,
];

const RETAILER_FEATURES: [Feature; 6] = [
    Feature::RetailerRating,
    Feature::RetailerActiveProducts,
    Feature::RetailerGmv30d,
    Feature::RetailerRegion,
    Feature::RetailerVerified,
    Feature::RetailerEmbedding,
];

/// Name of the `k`-th product float feature.
pub(super) fn product_float_name(k: usize) -> String {
    format!("product_f{k:02}")
}

impl Feature {
    /// Finds a feature of `group` by name.
    pub(super) fn lookup(group: Group, config: &DatasetConfig, name: &str) -> Option<Feature> {
        if group == Group::Product {
            let float_index = name
                .strip_prefix("product_f")
                .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|digits| digits.parse::<usize>().ok())
                .filter(|&k| product_float_name(k) == name);
            if let Some(k) = float_index {
                return (k < config.product_float_features).then_some(Feature::ProductFloat(k));
            }
        }
        let named: &[Feature] = match group {
            Group::Product => &PRODUCT_NAMED,
            Group::User => &USER_FEATURES,
            Group::Retailer => &RETAILER_FEATURES,
        };
        named.iter().copied().find(|f| f.name() == name)
    }

    pub(super) fn group(self) -> Group {
        use Feature::*;
        match self {
            ProductFloat(_) | ProductPrice | ProductOrders30d | ProductCategory
            | ProductInStock | ProductEmbedding => Group::Product,
            UserOrders30d
            | UserSessions7d
            | UserCartAdds1h
            | UserConversionRate30d
            | UserAvgOrderValue30d
            | UserReturnRatio90d
            | UserSegment
            | UserEmbedding => Group::User,
            RetailerRating
            | RetailerActiveProducts
            | RetailerGmv30d
            | RetailerRegion
            | RetailerVerified
            | RetailerEmbedding => Group::Retailer,
        }
    }

    pub(super) fn name(self) -> Cow<'static, str> {
        use Feature::*;
        Cow::Borrowed(match self {
            ProductFloat(k) => return Cow::Owned(product_float_name(k)),
            ProductPrice => "product_price",
            ProductOrders30d => "product_orders_30d",
            ProductCategory => "product_category",
            ProductInStock => "product_in_stock",
            ProductEmbedding => "product_embedding",
            UserOrders30d => "user_orders_30d",
            UserSessions7d => "user_sessions_7d",
            UserCartAdds1h => "user_cart_adds_1h",
            UserConversionRate30d => "user_conversion_rate_30d",
            UserAvgOrderValue30d => "user_avg_order_value_30d",
            UserReturnRatio90d => "user_return_ratio_90d",
            UserSegment => "user_segment",
            UserEmbedding => "user_embedding",
            RetailerRating => "retailer_rating",
            RetailerActiveProducts => "retailer_active_products",
            RetailerGmv30d => "retailer_gmv_30d",
            RetailerRegion => "retailer_region",
            RetailerVerified => "retailer_verified",
            RetailerEmbedding => "retailer_embedding",
        })
    }

    /// Hash slot of the feature within its group; product floats use `0..N`.
    fn slot(self) -> u64 {
        use Feature::*;
        1_000_000
            + match self {
                ProductFloat(k) => return k as u64,
                ProductPrice => 1,
                ProductOrders30d => 2,
                ProductCategory => 3,
                ProductInStock => 4,
                ProductEmbedding => 5,
                UserOrders30d => 11,
                UserSessions7d => 12,
                UserCartAdds1h => 13,
                UserConversionRate30d => 14,
                UserAvgOrderValue30d => 15,
                UserReturnRatio90d => 16,
                UserSegment => 17,
                UserEmbedding => 18,
                RetailerRating => 21,
                RetailerActiveProducts => 22,
                RetailerGmv30d => 23,
                RetailerRegion => 24,
                RetailerVerified => 25,
                RetailerEmbedding => 26,
            }
    }

    pub(super) fn dtype(self) -> DType {
        use Feature::*;
        match self {
            ProductFloat(_) | UserConversionRate30d | UserReturnRatio90d | RetailerRating => {
                DType::Float32
            }
            ProductPrice | UserAvgOrderValue30d | RetailerGmv30d => DType::Float64,
            ProductOrders30d
            | UserOrders30d
            | UserSessions7d
            | UserCartAdds1h
            | RetailerActiveProducts => DType::Int64,
            ProductCategory | UserSegment | RetailerRegion => DType::String,
            ProductInStock | RetailerVerified => DType::Bool,
            ProductEmbedding | UserEmbedding | RetailerEmbedding => {
                DType::Float32Vector { dim: EMBEDDING_DIM }
            }
        }
    }

    /// Whether some cell of the feature is an explicit null (Parquet nullability).
    pub(super) fn has_nulls(self) -> bool {
        matches!(
            self,
            Feature::ProductFloat(2)
                | Feature::ProductPrice
                | Feature::ProductEmbedding
                | Feature::UserConversionRate30d
                | Feature::RetailerRating
        )
    }

    fn ttl(self) -> Option<Duration> {
        use Feature::*;
        match self {
            ProductCategory | RetailerRegion => None,
            ProductFloat(_) | ProductPrice | ProductOrders30d | ProductInStock
            | ProductEmbedding => Some(3 * DAY),
            UserCartAdds1h => Some(HOUR),
            UserOrders30d
            | UserSessions7d
            | UserConversionRate30d
            | UserAvgOrderValue30d
            | UserReturnRatio90d
            | UserSegment
            | UserEmbedding => Some(2 * DAY),
            RetailerRating
            | RetailerActiveProducts
            | RetailerGmv30d
            | RetailerVerified
            | RetailerEmbedding => Some(7 * DAY),
        }
    }

    fn freshness_slo(self) -> Option<Duration> {
        match self {
            Feature::UserCartAdds1h => Some(Duration::from_secs(15 * 60)),
            _ => Some(DAY),
        }
    }

    fn sensitivity(self) -> Sensitivity {
        use Feature::*;
        match self {
            ProductCategory | ProductInStock | ProductPrice | RetailerRegion | RetailerVerified
            | RetailerRating => Sensitivity::Public,
            // User behaviour is confidential; nothing is `pii`, so every generated value
            // stays readable by the demo and the tests.
            UserSegment
            | UserEmbedding
            | UserAvgOrderValue30d
            | UserOrders30d
            | RetailerGmv30d
            | UserConversionRate30d
            | UserReturnRatio90d
            | UserSessions7d
            | UserCartAdds1h => Sensitivity::Confidential,
            ProductFloat(_)
            | ProductOrders30d
            | ProductEmbedding
            | RetailerActiveProducts
            | RetailerEmbedding => Sensitivity::Internal,
        }
    }

    fn description(self) -> String {
        use Feature::*;
        let text = match self {
            ProductFloat(0) => {
                "Click-through rate over the last 7 days (search impressions to product views), in [0, 1)."
            }
            ProductFloat(1) => {
                "Price z-score within the product's category, scaled to [-1, 1); negative is cheaper than usual."
            }
            ProductFloat(2) => {
                "Add-to-cart rate over the last 7 days, in [0, 1); null when the product had no views."
            }
            ProductFloat(3) => "Relative price change over the last 30 days, in [-1, 1).",
            ProductFloat(4) => "Mean review score, normalised to [0, 1).",
            ProductFloat(k) => {
                let range = if k % 2 == 0 { "[0, 1)" } else { "[-1, 1)" };
                return format!("Dense ranking feature {k} (anonymous, synthetic), in {range}.");
            }
            ProductPrice => "List price in EUR; null when the retailer has not published one.",
            ProductOrders30d => "Orders containing the product over the last 30 days.",
            ProductCategory => "Top-level catalogue category.",
            ProductInStock => "Whether at least one retailer has the product in stock.",
            ProductEmbedding => {
                "Two-tower item embedding (16 dims); null for products too new to embed."
            }
            UserOrders30d => "Orders placed by the user over the last 30 days.",
            UserSessions7d => "Sessions over the last 7 days.",
            UserCartAdds1h => {
                "Add-to-cart events in the last hour, from the hourly micro-batch; absent for users without recent activity."
            }
            UserConversionRate30d => {
                "Orders per session over the last 30 days, in [0, 0.25); null when sessions were not tracked."
            }
            UserAvgOrderValue30d => {
                "Average order value in EUR over the last 30 days; absent for users without orders."
            }
            UserReturnRatio90d => "Share of ordered items returned over the last 90 days.",
            UserSegment => "Lifecycle segment: new, dormant, occasional, regular or power.",
            UserEmbedding => {
                "Two-tower user embedding (16 dims); absent for users not yet embedded."
            }
            RetailerRating => "Mean buyer rating in [1, 5); null for retailers without reviews.",
            RetailerActiveProducts => "Products the retailer currently lists.",
            RetailerGmv30d => "Gross merchandise value in EUR over the last 30 days.",
            RetailerRegion => "Shipping region the retailer serves from.",
            RetailerVerified => "Whether the retailer passed business verification.",
            RetailerEmbedding => "Retailer embedding (16 dims) from the co-purchase graph.",
        };
        text.to_owned()
    }

    fn tags(self) -> Vec<String> {
        use Feature::*;
        let tags: &[&str] = match self {
            ProductFloat(_) => &["ranking", "dense"],
            ProductPrice => &["pricing"],
            ProductOrders30d | UserOrders30d | UserSessions7d | UserConversionRate30d => {
                &["engagement"]
            }
            ProductCategory | ProductInStock => &["catalogue"],
            ProductEmbedding | UserEmbedding | RetailerEmbedding => &["embedding"],
            UserCartAdds1h => &["engagement", "realtime"],
            UserAvgOrderValue30d | RetailerGmv30d => &["revenue"],
            UserReturnRatio90d | RetailerRating | RetailerVerified => &["trust"],
            UserSegment => &["segmentation"],
            RetailerActiveProducts | RetailerRegion => &["catalogue"],
        };
        tags.iter().map(|t| (*t).to_owned()).collect()
    }

    /// The registry definition of this feature.
    pub(super) fn spec(self) -> FeatureSpec {
        let group = self.group();
        FeatureSpec {
            name: self.name().into_owned(),
            version: 1,
            entity_type: group.entity_type().to_owned(),
            group: group.name().to_owned(),
            owner: group.owner().to_owned(),
            dtype: self.dtype(),
            transform_ref: Some(group.transform_ref()),
            freshness_slo: self.freshness_slo(),
            ttl: self.ttl(),
            retention: None,
            sensitivity: self.sensitivity(),
            description: self.description(),
            tags: self.tags(),
            reuse_teams: None,
            aggregate: None,
            default: None,
            validation: Default::default(),
        }
    }
}

/// Draws the cells of a configured data set.
pub(super) struct Cells<'a> {
    pub(super) config: &'a DatasetConfig,
}

impl Cells<'_> {
    fn hash(&self, feature: Feature, index: u64, sub: u64) -> u64 {
        mix(
            self.config.seed,
            &[feature.group().stream(), index, feature.slot(), sub],
        )
    }

    fn embedding(&self, feature: Feature, index: u64) -> Value {
        Value::Float32Vector(
            (0..u64::from(EMBEDDING_DIM))
                .map(|c| signed_f32(self.hash(feature, index, SUB_VECTOR + c)))
                .collect(),
        )
    }

    fn cents(h: u64, min: u64, span: u64) -> f64 {
        (min + h % span) as f64 / 100.0
    }

    fn user_orders(&self, index: u64) -> u64 {
        if index % 7 == 2 {
            0
        } else {
            1 + self.hash(Feature::UserOrders30d, index, SUB_VALUE) % 40
        }
    }

    /// Whether the long-CSV row of this cell writes its event time as RFC 3339 text
    /// (otherwise as epoch milliseconds).
    pub(super) fn rfc3339_row(&self, feature: Feature, index: u64) -> bool {
        self.hash(feature, index, SUB_FORMAT) & 1 == 0
    }

    /// The cell of entity `index` (assumed below the group's count) for `feature`:
    /// `None` when the file has no row for it.
    pub(super) fn cell(&self, feature: Feature, index: u64) -> Option<(Value, TimestampMs)> {
        use Feature::*;
        let mut time = feature.group().entity_time(self.config, index);
        let h = self.hash(feature, index, SUB_VALUE);
        let value = match feature {
            ProductFloat(2) if index % 200 == 13 => Value::Null,
            ProductFloat(k) if k % 2 == 0 => Value::Float32(unit_f32(h)),
            ProductFloat(_) => Value::Float32(signed_f32(h)),
            ProductPrice if index % 50 == 7 => Value::Null,
            ProductPrice => Value::Float64(Self::cents(h, 50, 200_000)),
            ProductOrders30d => {
                let u = h % 1_000;
                Value::Int64((u * u / 1_000) as i64)
            }
            ProductCategory => Value::String(CATEGORIES[(h % 12) as usize].to_owned()),
            ProductInStock => Value::Bool(!h.is_multiple_of(10)),
            ProductEmbedding if index % 100 == 42 => Value::Null,
            UserEmbedding if index % 10 == 9 => return None,
            ProductEmbedding | UserEmbedding | RetailerEmbedding => self.embedding(feature, index),
            UserOrders30d => Value::Int64(self.user_orders(index) as i64),
            UserSessions7d => Value::Int64((1 + h % 40) as i64),
            UserCartAdds1h => {
                if index % 4 == 1 {
                    return None;
                }
                // Its own event time: base minus [0, 2h) in whole seconds, minus 500 ms,
                // so the age is never a whole number of seconds (no TTL boundary ties).
                let secs = self.hash(feature, index, SUB_TIME) % 7_200;
                time = self
                    .config
                    .base_time_ms
                    .saturating_sub(secs as i64 * 1_000 + 500);
                Value::Int64((h % 6) as i64)
            }
            UserConversionRate30d if index % 50 == 3 => Value::Null,
            UserConversionRate30d => Value::Float32(unit_f32(h) * 0.25),
            UserAvgOrderValue30d => {
                if self.user_orders(index) == 0 {
                    return None;
                }
                Value::Float64(Self::cents(h, 500, 50_000))
            }
            UserReturnRatio90d => Value::Float32(unit_f32(h) * 0.5),
            UserSegment => {
                let segment = match self.user_orders(index) {
                    0 if h.is_multiple_of(2) => "new",
                    0 => "dormant",
                    1..=4 => "occasional",
                    5..=19 => "regular",
                    _ => "power",
                };
                Value::String(segment.to_owned())
            }
            RetailerRating if index % 20 == 11 => Value::Null,
            RetailerRating => Value::Float32(1.0 + unit_f32(h) * 4.0),
            RetailerActiveProducts => Value::Int64((1 + h % 5_000) as i64),
            RetailerGmv30d => Value::Float64(Self::cents(h, 0, 1_000_000_000)),
            RetailerRegion => Value::String(REGIONS[(h % 5) as usize].to_owned()),
            RetailerVerified => Value::Bool(!h.is_multiple_of(4)),
        };
        Some((value, time))
    }
}
