//! Composite entity types: entities keyed by a tuple of other entities' ids
//! (`user_product` = user x product), registered like features and stored like any
//! other entity type.
//!
//! A composite entity's id is its component ids, in the declared component order,
//! joined by [`COMPONENT_SEPARATOR`] (`|`), where each component has `%` written `%25`
//! and `|` written `%7C` first. Splitting on `|` and un-escaping gives the components
//! back, so the encoding is unambiguous; ids without `%` or `|` read as themselves
//! (`u1|p7`). Batch files of a composite type use these ids in `entity_id`.
//!
//! # Valid entity ids
//!
//! [`EntityIdRule::check`] is the one test of an entity id, used by every path that
//! takes one (CSV and Parquet loads, pushes, single reads, ranking contexts and
//! candidates), so the same id gets the same answer everywhere. An id is valid when it
//! is 1..=[`MAX_ENTITY_ID_LEN`] bytes of UTF-8 and, for a composite entity type, splits
//! into exactly as many components as the type declares, each non-empty and with
//! well-formed escapes. The id is never trimmed or normalised: `" p1"` is not `p1`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::definition::validate_identifier;
use crate::codec::EntityKey;
use crate::codec::key::MAX_ENTITY_ID_LEN;

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

/// Most bytes of an id quoted in an error message.
const SHOWN_ID_BYTES: usize = 80;

/// What is wrong with an entity id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntityIdProblem {
    /// No bytes.
    Empty,
    /// More than [`MAX_ENTITY_ID_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The bytes are not UTF-8.
    NotUtf8,
    /// A composite id with another number of components than its type declares.
    ComponentCount {
        /// Components found (`|`-separated parts).
        got: usize,
        /// The type's components, in order.
        components: Vec<String>,
    },
    /// A composite id with an empty component.
    EmptyComponent {
        /// 1-based position of the component.
        position: usize,
        /// The type's components, in order.
        components: Vec<String>,
    },
    /// A composite id whose component holds a `%` that is not `%25` or `%7C`.
    BadEscape {
        /// 1-based position of the component.
        position: usize,
    },
}

/// An entity id that no path accepts: the entity type, the id (quoted, shortened to
/// `SHOWN_ID_BYTES` and with invalid UTF-8 replaced) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {entity_type} id `{id}`: {problem}")]
pub struct EntityIdError {
    /// The entity type the id was given for.
    pub entity_type: String,
    /// The id as shown in the message.
    pub id: String,
    /// What is wrong.
    pub problem: EntityIdProblem,
}

impl fmt::Display for EntityIdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined = |components: &[String]| components.join("|");
        match self {
            EntityIdProblem::Empty => f.write_str("the id is empty"),
            EntityIdProblem::TooLong { len } => {
                write!(f, "{len} bytes, more than {MAX_ENTITY_ID_LEN}")
            }
            EntityIdProblem::NotUtf8 => f.write_str("the id is not valid UTF-8"),
            EntityIdProblem::ComponentCount { got, components } => write!(
                f,
                "{got} component{}, the type has {} ({}) joined by `|`",
                if *got == 1 { "" } else { "s" },
                components.len(),
                joined(components)
            ),
            EntityIdProblem::EmptyComponent {
                position,
                components,
            } => write!(
                f,
                "component {position} ({}) of {} is empty",
                components
                    .get(position.saturating_sub(1))
                    .map_or("?", String::as_str),
                joined(components)
            ),
            EntityIdProblem::BadEscape { position } => write!(
                f,
                "component {position} has a `%` that is neither `%25` (for `%`) nor `%7C` (for `|`)"
            ),
        }
    }
}

/// How the ids of one entity type are checked: plain, or composite with its
/// components. Borrowed from a registry snapshot; cheap to make per request.
#[derive(Debug, Clone, Copy)]
pub struct EntityIdRule<'r> {
    entity_type: &'r str,
    composite: Option<&'r CompositeEntitySpec>,
}

impl<'r> EntityIdRule<'r> {
    /// The rule for `entity_type`: composite when `composite` is its declaration.
    pub fn new(entity_type: &'r str, composite: Option<&'r CompositeEntitySpec>) -> Self {
        EntityIdRule {
            entity_type,
            composite,
        }
    }

    /// The entity type checked.
    pub fn entity_type(&self) -> &'r str {
        self.entity_type
    }

    /// Checks `id` (see the module docs) and returns it as text.
    pub fn check<'i>(&self, id: &'i [u8]) -> Result<&'i str, EntityIdError> {
        let fail = |problem| self.error(id, problem);
        if id.is_empty() {
            return Err(fail(EntityIdProblem::Empty));
        }
        if id.len() > MAX_ENTITY_ID_LEN {
            return Err(fail(EntityIdProblem::TooLong { len: id.len() }));
        }
        let text = std::str::from_utf8(id).map_err(|_| fail(EntityIdProblem::NotUtf8))?;
        let Some(spec) = self.composite else {
            return Ok(text);
        };
        let got = text.split(COMPONENT_SEPARATOR).count();
        if got != spec.components.len() {
            return Err(fail(EntityIdProblem::ComponentCount {
                got,
                components: spec.components.clone(),
            }));
        }
        for (i, part) in text.split(COMPONENT_SEPARATOR).enumerate() {
            if part.is_empty() {
                return Err(fail(EntityIdProblem::EmptyComponent {
                    position: i + 1,
                    components: spec.components.clone(),
                }));
            }
            if split_composite_id(part).is_none() {
                return Err(fail(EntityIdProblem::BadEscape { position: i + 1 }));
            }
        }
        Ok(text)
    }

    /// Checks `id` and encodes its entity key.
    pub fn key(&self, id: &str) -> Result<EntityKey, EntityIdError> {
        self.check(id.as_bytes())?;
        EntityKey::new(id.as_bytes())
            .map_err(|_| self.error(id.as_bytes(), EntityIdProblem::TooLong { len: id.len() }))
    }

    fn error(&self, id: &[u8], problem: EntityIdProblem) -> EntityIdError {
        let shown = id.get(..SHOWN_ID_BYTES).unwrap_or(id);
        let mut text = String::from_utf8_lossy(shown).into_owned();
        if shown.len() < id.len() {
            text.push_str("...");
        }
        EntityIdError {
            entity_type: self.entity_type.to_owned(),
            id: text,
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user_product() -> CompositeEntitySpec {
        CompositeEntitySpec {
            name: "user_product".into(),
            components: vec!["user".into(), "product".into()],
            owner: String::new(),
            description: String::new(),
        }
    }

    #[test]
    fn plain_ids_need_one_to_1024_bytes_of_utf8() {
        let rule = EntityIdRule::new("product", None);
        assert_eq!(rule.check(b"p1"), Ok("p1"));
        assert_eq!(
            rule.check(b"a|b"),
            Ok("a|b"),
            "`|` is plain text in a plain type"
        );
        assert_eq!(rule.check(b"  padded "), Ok("  padded "));
        assert!(rule.check(&[b'x'; MAX_ENTITY_ID_LEN]).is_ok());
        let problem = |id: &[u8]| rule.check(id).map(|_| ()).map_err(|e| e.problem);
        assert_eq!(problem(b""), Err(EntityIdProblem::Empty));
        assert_eq!(
            problem(&[b'x'; MAX_ENTITY_ID_LEN + 1]),
            Err(EntityIdProblem::TooLong {
                len: MAX_ENTITY_ID_LEN + 1
            })
        );
        assert_eq!(problem(b"p\xff1"), Err(EntityIdProblem::NotUtf8));
    }

    #[test]
    fn composite_ids_need_every_component() {
        let spec = user_product();
        let rule = EntityIdRule::new("user_product", Some(&spec));
        assert_eq!(rule.check(b"u1|p7"), Ok("u1|p7"));
        assert_eq!(rule.check(b"u%7C1|p%25"), Ok("u%7C1|p%25"));
        let problem = |id: &[u8]| rule.check(id).map(|_| ()).map_err(|e| e.problem);
        let components = spec.components.clone();
        assert_eq!(
            problem(b"|a"),
            Err(EntityIdProblem::EmptyComponent {
                position: 1,
                components: components.clone()
            })
        );
        assert_eq!(
            problem(b"u1|"),
            Err(EntityIdProblem::EmptyComponent {
                position: 2,
                components: components.clone()
            })
        );
        assert_eq!(
            problem(b"a|b|c"),
            Err(EntityIdProblem::ComponentCount {
                got: 3,
                components: components.clone()
            })
        );
        assert_eq!(
            problem(b"nopipe"),
            Err(EntityIdProblem::ComponentCount {
                got: 1,
                components: components.clone()
            })
        );
        assert_eq!(problem(b""), Err(EntityIdProblem::Empty));
        assert_eq!(
            problem(b"u1|p%zz"),
            Err(EntityIdProblem::BadEscape { position: 2 })
        );
    }

    #[test]
    fn errors_name_the_type_the_id_and_the_problem() {
        let spec = user_product();
        let rule = EntityIdRule::new("user_product", Some(&spec));
        let message = rule.check(b"|a").expect_err("empty component").to_string();
        assert_eq!(
            message,
            "invalid user_product id `|a`: component 1 (user) of user|product is empty"
        );
        let message = rule.check(b"nopipe").expect_err("one part").to_string();
        assert_eq!(
            message,
            "invalid user_product id `nopipe`: 1 component, the type has 2 (user|product) joined by `|`"
        );
        let message = EntityIdRule::new("product", None)
            .check(b"")
            .expect_err("empty")
            .to_string();
        assert_eq!(message, "invalid product id ``: the id is empty");
        let long = EntityIdRule::new("product", None)
            .check(&[b'y'; 5000])
            .expect_err("long");
        assert_eq!(long.id.len(), SHOWN_ID_BYTES + 3);
        assert!(long.to_string().contains("5000 bytes"), "{long}");
    }

    #[test]
    fn ids_of_composite_id_built_from_valid_parts_pass() {
        let spec = user_product();
        let rule = EntityIdRule::new("user_product", Some(&spec));
        for parts in [["u1", "p7"], ["a|b", "100%"], ["|", "%"]] {
            let id = composite_id(&parts);
            assert_eq!(rule.check(id.as_bytes()), Ok(id.as_str()), "{parts:?}");
        }
    }

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
