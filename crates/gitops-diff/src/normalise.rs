//! Normalisers: rewrite the desired or live object before comparison, for what the schema alone
//! cannot express. [`SecretStringData`] is on by default; add your own with
//! [`crate::DifferBuilder::normaliser`].

use base64::Engine as _;
use gitops_core::GroupKind;
use serde_json::{Map, Value};

/// Which side of the comparison an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The desired state (rendered from Git).
    Desired,
    /// The live state (read from the cluster).
    Live,
}

/// An error from a normaliser.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NormaliseError {
    /// A field does not have the shape the normaliser expects.
    #[error("normaliser {normaliser}: {message}")]
    Shape {
        /// The normaliser's name.
        normaliser: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Rewrites an object before it is compared.
///
/// ```
/// use gitops_core::GroupKind;
/// use gitops_diff::{NormaliseError, Normaliser, Side};
/// use serde_json::Value;
///
/// /// Drops an annotation a mutating webhook adds.
/// struct DropInjectedAnnotation;
///
/// impl Normaliser for DropInjectedAnnotation {
///     fn name(&self) -> &'static str { "drop-injected-annotation" }
///     fn applies_to(&self, kind: &GroupKind) -> bool { kind.group.is_empty() && kind.kind == "Pod" }
///     fn normalise(&self, object: &mut Value, _side: Side) -> Result<(), NormaliseError> {
///         if let Some(a) = object.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
///             a.remove("sidecar.example.com/injected");
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait Normaliser: Send + Sync {
    /// A short name for errors.
    fn name(&self) -> &'static str;
    /// Whether the normaliser applies to objects of this group and kind; when it does not, the
    /// objects are not copied.
    fn applies_to(&self, kind: &GroupKind) -> bool;
    /// Rewrites the object in place.
    ///
    /// # Errors
    /// When the object does not have the expected shape.
    fn normalise(&self, object: &mut Value, side: Side) -> Result<(), NormaliseError>;
}

/// Folds a Secret's `stringData` into `data` (base64), as the apiserver does on write, so that a
/// desired `stringData` compares with the live `data`.
///
/// ```
/// use gitops_diff::{Normaliser, SecretStringData, Side};
///
/// let mut secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
///     "stringData": {"password": "hunter2"}});
/// SecretStringData.normalise(&mut secret, Side::Desired).unwrap();
/// assert_eq!(secret["data"]["password"], "aHVudGVyMg==");
/// assert!(secret.get("stringData").is_none());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SecretStringData;

impl Normaliser for SecretStringData {
    fn name(&self) -> &'static str {
        "secret-string-data"
    }

    fn applies_to(&self, kind: &GroupKind) -> bool {
        gitops_core::secret::is_secret_kind(&kind.group, &kind.kind)
    }

    fn normalise(&self, object: &mut Value, _side: Side) -> Result<(), NormaliseError> {
        let Some(map) = object.as_object_mut() else {
            return Ok(());
        };
        let Some(string_data) = map.remove("stringData") else {
            return Ok(());
        };
        let string_data = match string_data {
            Value::Object(entries) => entries,
            Value::Null => return Ok(()),
            other => {
                return Err(NormaliseError::Shape {
                    normaliser: self.name(),
                    message: format!("stringData must be a map, found {}", json_type(&other)),
                });
            }
        };
        let data = map
            .entry("data")
            .or_insert_with(|| Value::Object(Map::new()));
        if data.is_null() {
            *data = Value::Object(Map::new());
        }
        let Value::Object(data) = data else {
            return Err(NormaliseError::Shape {
                normaliser: self.name(),
                message: "data must be a map".to_owned(),
            });
        };
        for (key, value) in string_data {
            let text = match value {
                Value::String(text) => text,
                other => {
                    // Name the key and the type, never the value: this is a Secret.
                    return Err(NormaliseError::Shape {
                        normaliser: self.name(),
                        message: format!(
                            "stringData.{} must be a string, found {} (the value is not shown: this is a Secret)",
                            gitops_core::escape::Escaped(&key),
                            json_type(&other)
                        ),
                    });
                }
            };
            let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            // stringData wins over data, as on the server.
            data.insert(key, Value::String(encoded));
        }
        Ok(())
    }
}

/// The JSON type of a value, for messages that must not show the value.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_data_overrides_data_and_bad_shapes_are_errors() {
        let mut secret = json!({"kind": "Secret", "data": {"a": "eA==", "b": "eQ=="},
            "stringData": {"a": "z"}});
        SecretStringData
            .normalise(&mut secret, Side::Desired)
            .unwrap();
        assert_eq!(secret["data"], json!({"a": "eg==", "b": "eQ=="}));
        let mut bad = json!({"kind": "Secret", "stringData": {"a": 1}});
        let err = SecretStringData
            .normalise(&mut bad, Side::Desired)
            .unwrap_err();
        assert!(err.to_string().contains("stringData.a"), "{err}");
        // The value of a Secret is never in an error, whatever its type.
        for value in [
            json!(98765432),
            json!([98765432]),
            json!({"n": 98765432}),
            json!(true),
        ] {
            let mut bad = json!({"kind": "Secret", "stringData": {"a": value.clone()}});
            let err = SecretStringData
                .normalise(&mut bad, Side::Desired)
                .unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(
                !shown.contains("98765432") && !shown.contains("true"),
                "{shown}"
            );
            let mut bad = json!({"kind": "Secret", "stringData": value});
            let err = SecretStringData
                .normalise(&mut bad, Side::Desired)
                .unwrap_err();
            assert!(!format!("{err} {err:?}").contains("98765432"), "{err}");
        }
        assert!(SecretStringData.applies_to(&GroupKind::new("", "Secret")));
        assert!(!SecretStringData.applies_to(&GroupKind::new("example.com", "Secret")));
    }
}
