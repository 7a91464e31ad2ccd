//! Parsing YAML (multi-document) and JSON into [`Manifest`]s, with errors that name file and line.

use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_saphyr::Spanned;

use crate::manifest::{InvalidManifest, Manifest, Origin};

/// The errors of this module. Each names the file and, where there is one, the line.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The text is not valid YAML (or breaks a YAML safety limit, such as an alias bomb).
    #[error("{file}:{line}:{column}: invalid YAML: {}", crate::escape::Escaped(message), file = crate::escape::EscapedPath(file))]
    Yaml {
        /// The file.
        file: PathBuf,
        /// 1-based line, 0 when the parser gave none.
        line: u64,
        /// 1-based column, 0 when the parser gave none.
        column: u64,
        /// The parser's message, without its location.
        message: String,
        /// The parser's error.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The text is not valid JSON.
    #[error("{file}:{line}:{column}: invalid JSON: {source}", file = crate::escape::EscapedPath(file))]
    Json {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A document parsed, but is not a valid Kubernetes object.
    #[error("{origin}: {source}")]
    Invalid {
        /// Where the document starts.
        origin: Origin,
        /// What is wrong with it.
        #[source]
        source: InvalidManifest,
    },
}

impl ParseError {
    /// The file the error is about.
    #[must_use]
    pub fn file(&self) -> &Path {
        match self {
            Self::Yaml { file, .. } | Self::Json { file, .. } => file,
            Self::Invalid { origin, .. } => &origin.file,
        }
    }

    /// The 1-based line the error is about, 0 when unknown.
    #[must_use]
    pub fn line(&self) -> u64 {
        match self {
            Self::Yaml { line, .. } | Self::Json { line, .. } => *line,
            Self::Invalid { origin, .. } => origin.line,
        }
    }
}

/// One parsed document before validation: JSON with where it starts. Its `Debug` form masks
/// the values of any Secret in it (see [`crate::secret`]).
#[derive(Clone, PartialEq)]
pub struct Document {
    /// The document's content. Empty documents are left out by the parsers.
    pub value: Value,
    /// Where it starts.
    pub origin: Origin,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("value", &crate::secret::MaskedDebug(&self.value))
            .field("origin", &self.origin)
            .finish()
    }
}

fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // Our errors carry the location themselves; the parser's multi-line snippet is not wanted.
    options.with_snippet = false;
    options
}

/// Parses every document of a YAML stream. Documents that are empty or hold only comments are
/// left out. Duplicate keys and excessive alias expansion are errors.
///
/// ```
/// let docs = gitops_core::parse_yaml_documents("a: 1\n---\n---\nb: 2\n", "x.yaml").unwrap();
/// assert_eq!(docs.len(), 2);
/// assert_eq!(docs[1].origin.line, 4);
/// ```
pub fn parse_yaml_documents(
    text: &str,
    file: impl Into<PathBuf>,
) -> Result<Vec<Document>, ParseError> {
    let file = file.into();
    let parsed: Vec<Spanned<Value>> =
        serde_saphyr::from_multiple_with_options(text, yaml_options()).map_err(|source| {
            let (line, column) = source.location().map_or((0, 0), |l| (l.line(), l.column()));
            let message = strip_location(&source.to_string());
            ParseError::Yaml {
                file: file.clone(),
                line,
                column,
                message,
                source: Box::new(source),
            }
        })?;
    let origin = Origin::new(file);
    Ok(parsed
        .into_iter()
        .filter(|doc| !doc.value.is_null())
        .enumerate()
        .map(|(index, doc)| Document {
            value: doc.value,
            origin: origin
                .clone()
                .with_document(index)
                .with_line(doc.referenced.line()),
        })
        .collect())
}

/// The parser's message says "line L column C: ..." itself; keep only what follows.
fn strip_location(message: &str) -> String {
    let message = message.strip_prefix("error: ").unwrap_or(message);
    let first_line = message.lines().next().unwrap_or_default();
    match first_line.split_once(": ") {
        Some((head, rest)) if head.starts_with("line ") && head.contains(" column ") => {
            rest.to_owned()
        }
        _ => first_line.to_owned(),
    }
}

/// Parses a JSON file: one object, or a `List` whose items are expanded by [`documents_to_manifests`].
///
/// ```
/// let docs = gitops_core::parse_json_documents(r#"{"a": 1}"#, "x.json").unwrap();
/// assert_eq!(docs[0].origin.line, 1);
/// ```
pub fn parse_json_documents(
    text: &str,
    file: impl Into<PathBuf>,
) -> Result<Vec<Document>, ParseError> {
    let file = file.into();
    let value: Value = serde_json::from_str(text).map_err(|source| ParseError::Json {
        line: source.line() as u64,
        column: source.column() as u64,
        file: file.clone(),
        source,
    })?;
    let line = text
        .lines()
        .position(|l| !l.trim().is_empty())
        .map_or(1, |i| i as u64 + 1);
    Ok(vec![Document {
        value,
        origin: Origin::new(file).with_line(line),
    }])
}

/// Validates documents as Kubernetes objects, expanding `kind: List` (any kind ending in `List`
/// with an `items` sequence, as kubectl does) into its items.
pub fn documents_to_manifests(documents: Vec<Document>) -> Result<Vec<Manifest>, ParseError> {
    let mut manifests = Vec::with_capacity(documents.len());
    for Document { value, origin } in documents {
        if is_list(&value) {
            let Value::Object(mut map) = value else {
                unreachable!("is_list checked for a mapping")
            };
            let Some(Value::Array(items)) = map.remove("items") else {
                unreachable!("is_list checked for items")
            };
            for item in items {
                manifests.push(Manifest::new(item, origin.clone()).map_err(|source| {
                    ParseError::Invalid {
                        origin: origin.clone(),
                        source,
                    }
                })?);
            }
        } else {
            manifests.push(
                Manifest::new(value, origin.clone())
                    .map_err(|source| ParseError::Invalid { origin, source })?,
            );
        }
    }
    Ok(manifests)
}

/// Whether `value` is a list of objects that [`documents_to_manifests`] expands: a kind ending in
/// `List` (such as `List` or `ConfigMapList`) with an `items` sequence and a `v1` API version, as
/// kubectl reads it.
///
/// ```
/// let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": []});
/// assert!(gitops_core::is_list(&list));
/// assert!(!gitops_core::is_list(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap"})));
/// ```
#[must_use]
pub fn is_list(value: &Value) -> bool {
    value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && value.get("items").is_some_and(Value::is_array)
        && value
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v == "v1" || v.ends_with("/v1"))
}

/// Parses a file's text into validated manifests: JSON when the file name ends in `.json`,
/// YAML otherwise.
///
/// ```
/// let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: b\n";
/// let manifests = gitops_core::parse_manifests(text, "app.yaml").unwrap();
/// assert_eq!(manifests.len(), 2);
/// assert_eq!(manifests[1].kind(), "Secret");
/// assert_eq!(manifests[1].origin().line, 6);
///
/// let err = gitops_core::parse_manifests("apiVersion: v1\nmetadata:\n  name: a\n", "bad.yaml").unwrap_err();
/// assert_eq!(err.to_string(), "bad.yaml:1: missing kind");
/// ```
pub fn parse_manifests(text: &str, file: impl Into<PathBuf>) -> Result<Vec<Manifest>, ParseError> {
    let file = file.into();
    let is_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let documents = if is_json {
        parse_json_documents(text, file)?
    } else {
        parse_yaml_documents(text, file)?
    };
    documents_to_manifests(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_yaml_syntax_errors_with_file_line_and_column() {
        let err = parse_manifests("a: 1\nb:\n  c: [\n", "dir/bad.yaml").unwrap_err();
        assert_eq!(err.file(), Path::new("dir/bad.yaml"));
        assert!(err.line() >= 3, "{err}");
        let text = err.to_string();
        assert!(text.starts_with("dir/bad.yaml:"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn refuses_duplicate_keys() {
        let err = parse_manifests(
            "apiVersion: v1\nkind: A\nmetadata:\n  name: a\n  name: b\n",
            "d.yaml",
        )
        .unwrap_err();
        assert_eq!(err.line(), 5, "{err}");
        assert!(err.to_string().contains("duplicate"), "{err}");
    }

    #[test]
    fn refuses_alias_bombs() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(matches!(
            parse_yaml_documents(&text, "bomb.yaml"),
            Err(ParseError::Yaml { .. })
        ));
    }

    #[test]
    fn names_the_document_line_for_invalid_objects() {
        let text = "apiVersion: v1\nkind: A\nmetadata:\n  name: a\n---\n# second\napiVersion: v1\nkind: B\nmetadata: {}\n";
        let err = parse_manifests(text, "two.yaml").unwrap_err();
        assert_eq!(err.line(), 7, "{err}");
        assert_eq!(
            err.to_string(),
            "two.yaml:7 (document 2): missing metadata.name"
        );
    }

    #[test]
    fn skips_empty_documents_and_reports_non_mappings() {
        let docs = parse_yaml_documents("---\n# nothing\n---\n\n", "e.yaml").unwrap();
        assert!(docs.is_empty());
        let err = parse_manifests("- a\n- b\n", "seq.yaml").unwrap_err();
        assert!(err.to_string().contains("found a sequence"), "{err}");
    }

    #[test]
    fn a_secret_type_error_names_the_key_never_the_value() {
        for (text, field) in [
            (
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: 98765432\n",
                "stringData.password",
            ),
            (
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: db\n  data:\n    password: 98765432\n",
                "data.password",
            ),
            (
                "apiVersion: v1\nkind: secret\nmetadata:\n  name: db\nstringData:\n  password: [98765432]\n",
                "stringData.password",
            ),
        ] {
            let err = parse_manifests(text, "secret.yaml").unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("98765432"), "{shown}");
            assert!(err.to_string().contains(field), "{err}");
            assert!(err.to_string().starts_with("secret.yaml:"), "{err}");
        }
        let err = parse_manifests(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData: 98765432\n",
            "secret.yaml",
        )
        .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("98765432"), "{err}");
    }

    #[test]
    fn debug_of_secret_documents_and_manifests_is_masked() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  annotations:\n    kubectl.kubernetes.io/last-applied-configuration: '{\"stringData\":{\"password\":\"hunter2\"}}'\nstringData:\n  password: hunter2\n";
        let documents = parse_yaml_documents(text, "s.yaml").unwrap();
        assert!(!format!("{documents:?}").contains("hunter2"));
        let manifests = documents_to_manifests(documents).unwrap();
        assert!(!format!("{manifests:?}").contains("hunter2"));
        assert!(format!("{manifests:?}").contains("password"));
    }

    #[test]
    fn malformed_values_are_printed_escaped() {
        let err = parse_manifests(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"a/\\nERROR forged\"\n",
            "x\ny.yaml",
        )
        .unwrap_err();
        assert!(!err.to_string().contains('\n'), "{err}");
    }

    #[test]
    fn reports_json_errors_with_line() {
        let err = parse_manifests("{\n  \"a\": 1,\n  oops\n}", "x.json").unwrap_err();
        assert_eq!(err.line(), 3, "{err}");
    }
}
