//! Composite entity types: entities keyed by a tuple of other entities' ids
//! (`user_product` = user x product), registered like features and stored like any
//! other entity type.
//!
//! A composite entity's id is its component ids, in the declared component order,
//! joined by [`COMPONENT_SEPARATOR`] (`|`), where each component has `%` written `%25`
//! and `|` written `%7C` first. Splitting on `|` and un-escaping gives the components
//! back, so the encoding is unambiguous; ids without `%` or `|` read as themselves
//! (`u1|p7`). Batch files of a composite type use these ids in `entity_id`.

use serde::{Deserialize, Serialize};

use super::definition::validate_identifier;

/// Joins the components of a composite id.
pub const COMPONENT_SEPARATOR: char = '|';

/// A composite entity type as submitted (`[[entity_type]]` in a registry file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositeEntitySpec {
    /// The entity type's name, as features name it (`user_product`).
    pub name: String,
    /// The component entity types, in id order (`["user", "product"]`); at least two,
    /// distinct.
    pub components: Vec<String>,
    /// Owning team.
    #[serde(default)]
    pub owner: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

impl CompositeEntitySpec {
    /// Checks names and components.
    pub fn validate(&self) -> Result<(), String> {
        validate_identifier("entity type", &self.name)?;
        if self.components.len() < 2 {
            return Err(format!(
                "composite entity type `{}` needs at least two components",
                self.name
            ));
        }
        for (i, c) in self.components.iter().enumerate() {
            validate_identifier("component entity type", c)?;
            if *c == self.name {
                return Err(format!("entity type `{}` cannot be its own component", c));
            }
            if self.components[..i].contains(c) {
                return Err(format!(
                    "composite entity type `{}` names component `{c}` twice",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

/// Appends one component id, escaped, to `out`.
fn push_escaped(component: &str, out: &mut String) {
    for c in component.chars() {
        match c {
            '%' => out.push_str("%25"),
            COMPONENT_SEPARATOR => out.push_str("%7C"),
            c => out.push(c),
        }
    }
}

/// The composite id of `components` (in the entity type's component order).
pub fn composite_id<S: AsRef<str>>(components: &[S]) -> String {
    let mut out = String::with_capacity(components.iter().map(|c| c.as_ref().len() + 1).sum());
    for (i, c) in components.iter().enumerate() {
        if i > 0 {
            out.push(COMPONENT_SEPARATOR);
        }
        push_escaped(c.as_ref(), &mut out);
    }
    out
}

/// Splits a composite id into its (un-escaped) components; `None` if an escape is
/// malformed.
pub fn split_composite_id(id: &str) -> Option<Vec<String>> {
    id.split(COMPONENT_SEPARATOR)
        .map(|part| {
            let mut out = String::with_capacity(part.len());
            let mut rest = part;
            while let Some(at) = rest.find('%') {
                out.push_str(&rest[..at]);
                let escape = rest.get(at..at + 3)?;
                match escape {
                    "%25" => out.push('%'),
                    "%7C" | "%7c" => out.push(COMPONENT_SEPARATOR),
                    _ => return None,
                }
                rest = &rest[at + 3..];
            }
            out.push_str(rest);
            Some(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_ids_read_as_themselves() {
        assert_eq!(composite_id(&["u1", "p7"]), "u1|p7");
        assert_eq!(composite_id(&["a|b", "100%"]), "a%7Cb|100%25");
    }

    #[test]
    fn specs_are_checked() {
        let spec = |components: &[&str]| CompositeEntitySpec {
            name: "user_product".into(),
            components: components.iter().map(|c| (*c).to_owned()).collect(),
            owner: String::new(),
            description: String::new(),
        };
        assert!(spec(&["user", "product"]).validate().is_ok());
        assert!(spec(&["user"]).validate().is_err());
        assert!(spec(&["user", "user"]).validate().is_err());
        assert!(spec(&["user", "user_product"]).validate().is_err());
        assert!(spec(&["user", "Product"]).validate().is_err());
    }

    proptest! {
        #[test]
        fn composite_ids_round_trip(parts in proptest::collection::vec(".{0,6}", 2..4)) {
            let id = composite_id(&parts);
            prop_assert_eq!(split_composite_id(&id), Some(parts.clone()));
        }

        #[test]
        fn distinct_tuples_get_distinct_ids(a in proptest::collection::vec("[a|%]{0,3}", 2), b in proptest::collection::vec("[a|%]{0,3}", 2)) {
            prop_assert_eq!(composite_id(&a) == composite_id(&b), a == b);
        }
    }
}
