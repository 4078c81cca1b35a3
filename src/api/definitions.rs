//! Feature definitions: the apply body and answer (`POST /v1/feature-definitions`) and
//! the listing (`GET /v1/feature-definitions`).

use serde::{Deserialize, Serialize};

use super::error::BadRequest;
use crate::registry::{DefinitionFilter, FeatureDefinition, FeatureSpec};
use crate::store;
use crate::types::FeatureId;

/// Parses an apply body: one spec, an array of specs, or `{"features": [..]}`.
pub fn parse_specs(body: &[u8]) -> Result<Vec<FeatureSpec>, BadRequest> {
    let bad = |e: serde_json::Error| BadRequest(format!("invalid feature definitions: {e}"));
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let specs = match first {
        None => {
            return Err(BadRequest::new("empty body: expected feature definitions"));
        }
        Some(b'[') => serde_json::from_slice::<Vec<FeatureSpec>>(body).map_err(bad)?,
        Some(b'{') => {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(body).map_err(bad)?;
            match object.get("features") {
                Some(features) if object.len() == 1 => {
                    Vec::<FeatureSpec>::deserialize(features).map_err(bad)?
                }
                _ => vec![
                    FeatureSpec::deserialize(&serde_json::Value::Object(object)).map_err(bad)?,
                ],
            }
        }
        Some(_) => {
            return Err(BadRequest::new(
                "invalid feature definitions: expected a JSON object or array",
            ));
        }
    };
    if specs.is_empty() {
        return Err(BadRequest::new("no feature definitions given"));
    }
    Ok(specs)
}

/// The keys `GET /v1/feature-definitions` takes in its query.
pub const FILTER_KEYS: [&str; 5] = ["entity_type", "owner", "tag", "name", "group"];

/// Builds a listing filter from query pairs; empty values match everything.
pub fn definition_filter(pairs: Vec<(String, String)>) -> DefinitionFilter {
    let mut filter = DefinitionFilter::default();
    for (key, value) in pairs {
        let value = (!value.is_empty()).then_some(value);
        match key.as_str() {
            "entity_type" => filter.entity_type = value,
            "owner" => filter.owner = value,
            "tag" => filter.tag = value,
            "name" => filter.name = value,
            "group" => filter.group = value,
            _ => {}
        }
    }
    filter
}

/// What an apply did with one definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyAction {
    /// A new (name, version) was registered.
    Created,
    /// A compatible change (owner, docs, SLOs, TTL, tags) was stored.
    Updated,
    /// Identical to what is registered.
    Unchanged,
}

impl From<store::ApplyAction> for ApplyAction {
    fn from(action: store::ApplyAction) -> Self {
        match action {
            store::ApplyAction::Created => ApplyAction::Created,
            store::ApplyAction::Updated => ApplyAction::Updated,
            store::ApplyAction::Unchanged => ApplyAction::Unchanged,
        }
    }
}

/// The outcome of an apply for one definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    /// `name@version`.
    pub feature: String,
    /// Assigned feature id.
    pub id: FeatureId,
    /// What happened.
    pub action: ApplyAction,
}

impl From<store::ApplyOutcome> for ApplyOutcome {
    fn from(outcome: store::ApplyOutcome) -> Self {
        let store::ApplyOutcome {
            feature,
            id,
            action,
        } = outcome;
        ApplyOutcome {
            feature,
            id,
            action: action.into(),
        }
    }
}

/// Answer of `POST /v1/feature-definitions`: `{"results": [..]}`, one per definition
/// in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResults {
    /// One outcome per definition given.
    pub results: Vec<ApplyOutcome>,
}

impl From<Vec<store::ApplyOutcome>> for ApplyResults {
    fn from(results: Vec<store::ApplyOutcome>) -> Self {
        ApplyResults {
            results: results.into_iter().map(ApplyOutcome::from).collect(),
        }
    }
}

/// Answer of `GET /v1/feature-definitions`: `{"features": [FeatureDefinition..]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefinitionList {
    /// The matching definitions, ordered by name then version.
    pub features: Vec<FeatureDefinition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"{"name":"ctr_7d","entity_type":"product","group":"product_daily","owner":"ranking","dtype":"float32"}"#;

    #[test]
    fn apply_bodies_take_three_shapes() {
        let one = parse_specs(SPEC.as_bytes()).expect("one spec");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name, "ctr_7d");
        assert_eq!(one[0].version, 1);
        let many = parse_specs(format!(" [{SPEC},{SPEC}]").as_bytes()).expect("array");
        assert_eq!(many.len(), 2);
        let wrapped =
            parse_specs(format!(r#"{{"features":[{SPEC}]}}"#).as_bytes()).expect("wrapped");
        assert_eq!(wrapped, one);
    }

    #[test]
    fn bad_apply_bodies_are_refused_with_a_reason() {
        for body in [
            "",
            "  ",
            "42",
            "{",
            "[]",
            r#"{"features":[]}"#,
            r#"{"name":"x"}"#,
            r#"{"name":"ctr","entity_type":"p","group":"g","owner":"o","dtype":"float16"}"#,
        ] {
            let err = parse_specs(body.as_bytes()).expect_err(body);
            assert!(!err.0.is_empty());
        }
        let err = parse_specs(
            r#"{"name":"ctr","entity_type":"p","group":"g","owner":"o","dtype":"float16"}"#
                .as_bytes(),
        )
        .expect_err("bad dtype");
        assert!(err.0.contains("float16"), "{}", err.0);
    }

    #[test]
    fn specs_sent_by_a_client_parse_back() {
        let specs = parse_specs(SPEC.as_bytes()).expect("one spec");
        let body = serde_json::to_vec(&specs).expect("encodes");
        assert_eq!(parse_specs(&body).expect("parses"), specs);
    }

    #[test]
    fn filters_ignore_empty_values() {
        let filter = definition_filter(vec![
            ("owner".to_owned(), "ranking".to_owned()),
            ("tag".to_owned(), String::new()),
            ("group".to_owned(), "g".to_owned()),
        ]);
        assert_eq!(
            filter,
            DefinitionFilter {
                owner: Some("ranking".into()),
                group: Some("g".into()),
                ..DefinitionFilter::default()
            }
        );
    }

    #[test]
    fn apply_answers_encode_as_the_store_outcomes_did() {
        let outcomes = vec![store::ApplyOutcome {
            feature: "ctr@1".into(),
            id: 7,
            action: store::ApplyAction::Created,
        }];
        #[derive(Serialize)]
        struct Before<'a> {
            results: &'a [store::ApplyOutcome],
        }
        let before = serde_json::to_vec(&Before { results: &outcomes }).expect("encodes");
        let after = serde_json::to_vec(&ApplyResults::from(outcomes)).expect("encodes");
        assert_eq!(after, before);
        let decoded: ApplyResults = serde_json::from_slice(&after).expect("decodes");
        assert_eq!(decoded.results[0].action, ApplyAction::Created);
    }
}
