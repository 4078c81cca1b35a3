//! Declarative feature files (`featstore apply features.toml`).
//!
//! ```toml
//! [[feature]]
//! name = "product_ctr_7d"
//! entity_type = "product"
//! group = "product_daily"
//! owner = "search-ranking"
//! dtype = "float32"
//! ttl = "3d"
//! tags = ["ctr"]
//! ```

use std::path::Path;

use serde::Deserialize;

use super::FeatureSpec;
use super::entity::CompositeEntitySpec;
use super::on_demand::OnDemandSpec;
use super::service::ServiceSpec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureFile {
    #[serde(default)]
    feature: Vec<FeatureSpec>,
}

/// A features file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum FeatureFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// File path.
        path: String,
        /// What is wrong, with line and column.
        message: String,
    },
}

/// Parses the `[[feature]]` tables of a TOML document.
pub fn parse_features_toml(text: &str, origin: &str) -> Result<Vec<FeatureSpec>, FeatureFileError> {
    let file: FeatureFile = toml::from_str(text).map_err(|e| FeatureFileError::Parse {
        path: origin.to_owned(),
        message: e.to_string(),
    })?;
    Ok(file.feature)
}

/// Every kind of registry object a file (or a `POST /v1/registry` body) may hold.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryObjects {
    /// `[[feature]]`: stored feature definitions.
    #[serde(default, alias = "features")]
    pub feature: Vec<FeatureSpec>,
    /// `[[entity_type]]`: composite entity types.
    #[serde(default, alias = "entity_types")]
    pub entity_type: Vec<CompositeEntitySpec>,
    /// `[[on_demand]]`: on-demand features.
    #[serde(default)]
    pub on_demand: Vec<OnDemandSpec>,
    /// `[[service]]`: feature services.
    #[serde(default, alias = "services")]
    pub service: Vec<ServiceSpec>,
}

impl RegistryObjects {
    /// True when the document holds no object.
    pub fn is_empty(&self) -> bool {
        self.feature.is_empty()
            && self.entity_type.is_empty()
            && self.on_demand.is_empty()
            && self.service.is_empty()
    }
}

/// Parses every registry table (`[[feature]]`, `[[entity_type]]`, `[[on_demand]]`,
/// `[[service]]`) of a TOML document.
pub fn parse_registry_toml(text: &str, origin: &str) -> Result<RegistryObjects, FeatureFileError> {
    toml::from_str(text).map_err(|e| FeatureFileError::Parse {
        path: origin.to_owned(),
        message: e.to_string(),
    })
}

/// Reads and parses a registry file (features and the other objects).
pub fn read_registry_file(path: &Path) -> Result<RegistryObjects, FeatureFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FeatureFileError::Io {
        path: shown.clone(),
        source,
    })?;
    parse_registry_toml(&text, &shown)
}

/// Reads and parses a features file.
pub fn read_features_file(path: &Path) -> Result<Vec<FeatureSpec>, FeatureFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FeatureFileError::Io {
        path: shown.clone(),
        source,
    })?;
    parse_features_toml(&text, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::DType;

    #[test]
    fn parses_features_and_rejects_typos() {
        let specs = parse_features_toml(
            r#"
            [[feature]]
            name = "user_clicks_1d"
            entity_type = "user"
            group = "user_daily"
            owner = "recsys"
            dtype = "int64"
            ttl = "2d"
            tags = ["engagement"]
            "#,
            "test.toml",
        )
        .expect("parses");
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].dtype, DType::Int64);
        assert_eq!(specs[0].version, 1);
        assert_eq!(
            specs[0].ttl,
            Some(std::time::Duration::from_secs(2 * 86_400))
        );

        let err = parse_features_toml(
            "[[feature]]\nname='a'\nentity_type='u'\ngroup='g'\nowner='o'\ndtype='int64'\nttll='1d'\n",
            "bad.toml",
        )
        .expect_err("typo refused");
        assert!(err.to_string().contains("ttll"), "{err}");
    }
}
