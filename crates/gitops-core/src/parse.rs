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
    /// An integer literal that no 64-bit integer holds, such as `replicas:
    /// 99999999999999999999999999999`. The parsers would read it as an imprecise float (and the
    /// server store another number); refused instead. The literal is not shown (it may be a
    /// Secret's); quote it to keep it as text.
    #[error("{file}:{line}:{column}: integer out of range (it does not fit in 64 bits; quote it to keep it as text)", file = crate::escape::EscapedPath(file))]
    IntegerOutOfRange {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
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
            Self::Yaml { file, .. }
            | Self::Json { file, .. }
            | Self::IntegerOutOfRange { file, .. } => file,
            Self::Invalid { origin, .. } => &origin.file,
        }
    }

    /// The 1-based line the error is about, 0 when unknown.
    #[must_use]
    pub fn line(&self) -> u64 {
        match self {
            Self::Yaml { line, .. }
            | Self::Json { line, .. }
            | Self::IntegerOutOfRange { line, .. } => *line,
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

/// How much one YAML stream may hold before the parser refuses it. The defaults admit the
/// largest real outputs (a `helm template` or `kustomize build` of tens of thousands of
/// objects) and still refuse bombs: alias expansion and nesting depth keep the parser's own
/// limits, which no real manifest comes near.
///
/// Measured (the `parses_a_stream_of_20000_objects` test, release build): a stream of 20,000
/// Deployments of 40 lines each (15 MiB) has 20,000 documents, 1.72 million nodes, 2.22
/// million parser events and 8.4 MiB of scalar text; it parses in 2.0 s, at a peak of 640 MiB
/// resident. The defaults admit about five times that (100,000 such objects), and cost a
/// file that big to reach: the bombs (alias expansion, nesting) are stopped by the parser's own
/// limits, which stay.
///
/// ```
/// use gitops_core::{ParseLimits, parse_manifests_with};
/// let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n".repeat(3);
/// let limits = ParseLimits::default().with_max_documents(2);
/// assert!(parse_manifests_with(&text, "three.yaml", &limits).is_err());
/// assert_eq!(parse_manifests_with(&text, "three.yaml", &ParseLimits::default())?.len(), 3);
/// # Ok::<(), gitops_core::ParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// The most documents in one stream (default 100,000; the parser's own default is 1,024).
    pub max_documents: usize,
    /// The most nodes (scalars, sequences and mappings) in one stream (default 10,000,000).
    pub max_nodes: usize,
    /// The most parser events in one stream (default 20,000,000).
    pub max_events: usize,
    /// The most bytes of scalar text in one stream (default 256 MiB).
    pub max_scalar_bytes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_documents: 100_000,
            max_nodes: 10_000_000,
            max_events: 20_000_000,
            max_scalar_bytes: 256 * 1024 * 1024,
        }
    }
}

impl ParseLimits {
    /// Sets [`ParseLimits::max_documents`].
    ///
    /// ```
    /// let limits = gitops_core::ParseLimits::default().with_max_documents(10);
    /// assert_eq!(limits.max_documents, 10);
    /// ```
    #[must_use]
    pub fn with_max_documents(mut self, max: usize) -> Self {
        self.max_documents = max;
        self
    }

    /// Sets [`ParseLimits::max_nodes`].
    ///
    /// ```
    /// let limits = gitops_core::ParseLimits::default().with_max_nodes(1000);
    /// assert_eq!(limits.max_nodes, 1000);
    /// ```
    #[must_use]
    pub fn with_max_nodes(mut self, max: usize) -> Self {
        self.max_nodes = max;
        self
    }

    /// Sets [`ParseLimits::max_events`].
    ///
    /// ```
    /// let limits = gitops_core::ParseLimits::default().with_max_events(1000);
    /// assert_eq!(limits.max_events, 1000);
    /// ```
    #[must_use]
    pub fn with_max_events(mut self, max: usize) -> Self {
        self.max_events = max;
        self
    }

    /// Sets [`ParseLimits::max_scalar_bytes`].
    ///
    /// ```
    /// let limits = gitops_core::ParseLimits::default().with_max_scalar_bytes(1 << 20);
    /// assert_eq!(limits.max_scalar_bytes, 1 << 20);
    /// ```
    #[must_use]
    pub fn with_max_scalar_bytes(mut self, max: usize) -> Self {
        self.max_scalar_bytes = max;
        self
    }
}

fn yaml_options(limits: &ParseLimits) -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // Our errors carry the location themselves; the parser's multi-line snippet is not wanted.
    options.with_snippet = false;
    // The parser's other limits (aliases, anchors, depth) stay: they stop bombs.
    let mut budget = options.budget.clone().unwrap_or_default();
    budget.max_documents = limits.max_documents;
    budget.max_nodes = limits.max_nodes;
    budget.max_events = limits.max_events;
    budget.max_total_scalar_bytes = limits.max_scalar_bytes;
    options.budget = Some(budget);
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
    parse_yaml_documents_with(text, file, &ParseLimits::default())
}

/// [`parse_yaml_documents`] with other [`ParseLimits`].
///
/// ```
/// use gitops_core::{ParseLimits, parse_yaml_documents_with};
/// let text = "a: 1\n---\nb: 2\n";
/// assert!(parse_yaml_documents_with(text, "x.yaml", &ParseLimits::default().with_max_documents(1)).is_err());
/// ```
pub fn parse_yaml_documents_with(
    text: &str,
    file: impl Into<PathBuf>,
    limits: &ParseLimits,
) -> Result<Vec<Document>, ParseError> {
    let file = file.into();
    let parsed: Vec<Spanned<Value>> =
        serde_saphyr::from_multiple_with_options(text, yaml_options(limits)).map_err(|source| {
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
    if parsed.iter().any(|doc| holds_float(&doc.value))
        && let Some((line, column)) = yaml_integer_out_of_range(text)
    {
        return Err(ParseError::IntegerOutOfRange { file, line, column });
    }
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
    if holds_float(&value)
        && let Some((line, column)) = json_integer_out_of_range(text)
    {
        return Err(ParseError::IntegerOutOfRange { file, line, column });
    }
    let line = text
        .lines()
        .position(|l| !l.trim().is_empty())
        .map_or(1, |i| i as u64 + 1);
    Ok(vec![Document {
        value,
        origin: Origin::new(file).with_line(line),
    }])
}

/// Whether `value` holds a number that is not an integer: only then can an integer literal
/// beyond 64 bits be in its text (both parsers read those as floats), so the text is scanned
/// only then.
fn holds_float(value: &Value) -> bool {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Number(n) if n.is_f64() => return true,
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    false
}

/// Whether `literal` is a decimal integer (digits with an optional sign) that neither `i64`
/// nor `u64` holds: both parsers read such a literal as an imprecise float. (Hexadecimal,
/// octal and `_`-separated literals beyond 64 bits are read as text, exactly as written.)
///
/// ```
/// use gitops_core::is_integer_out_of_range;
/// assert!(is_integer_out_of_range("99999999999999999999999999999"));
/// assert!(is_integer_out_of_range("-9223372036854775809"));
/// assert!(!is_integer_out_of_range("18446744073709551615"));
/// assert!(!is_integer_out_of_range("1e30"));
/// assert!(!is_integer_out_of_range("web"));
/// ```
#[must_use]
pub fn is_integer_out_of_range(literal: &str) -> bool {
    let (negative, digits) = match literal.as_bytes().first() {
        Some(b'-') => (true, &literal[1..]),
        Some(b'+') => (false, &literal[1..]),
        _ => (false, literal),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    match digits.parse::<u64>() {
        Ok(magnitude) => negative && magnitude > i64::MIN.unsigned_abs(),
        Err(_) => true,
    }
}

/// The line and column (1-based) of the first plain, untagged YAML scalar that is an integer
/// beyond 64 bits. Quoted scalars are text and stay so.
fn yaml_integer_out_of_range(text: &str) -> Option<(u64, u64)> {
    use granit_parser::{Event, Parser, ScalarStyle};
    Parser::new_from_str(text)
        .map_while(Result::ok)
        .find_map(|(event, span)| match event {
            Event::Scalar(value, ScalarStyle::Plain, _, None)
                if is_integer_out_of_range(&value) =>
            {
                Some((span.start.line() as u64, span.start.col() as u64 + 1))
            }
            _ => None,
        })
}

/// The line and column (1-based) of the first JSON number written as an integer (no fraction,
/// no exponent) that is beyond 64 bits. `text` is valid JSON (it parsed).
fn json_integer_out_of_range(text: &str) -> Option<(u64, u64)> {
    let (mut line, mut line_start) = (1u64, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '\n' => {
                line += 1;
                line_start = at + 1;
            }
            '-' | '0'..='9' => {
                let mut end = at + c.len_utf8();
                while let Some(&(next_at, next)) = chars.peek() {
                    if !(next.is_ascii_digit() || matches!(next, '.' | 'e' | 'E' | '+' | '-')) {
                        break;
                    }
                    end = next_at + next.len_utf8();
                    chars.next();
                }
                let token = &text[at..end];
                if token.bytes().all(|b| b.is_ascii_digit() || b == b'-')
                    && is_integer_out_of_range(token)
                {
                    let column = text[line_start..at].chars().count() as u64 + 1;
                    return Some((line, column));
                }
            }
            _ => {}
        }
    }
    None
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
    parse_manifests_with(text, file, &ParseLimits::default())
}

/// [`parse_manifests`] with other [`ParseLimits`] (they apply to YAML; JSON files are one
/// document).
///
/// ```
/// use gitops_core::{ParseLimits, parse_manifests_with};
/// let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n";
/// assert_eq!(parse_manifests_with(text, "a.yaml", &ParseLimits::default())?.len(), 1);
/// # Ok::<(), gitops_core::ParseError>(())
/// ```
pub fn parse_manifests_with(
    text: &str,
    file: impl Into<PathBuf>,
    limits: &ParseLimits,
) -> Result<Vec<Manifest>, ParseError> {
    let file = file.into();
    let is_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let documents = if is_json {
        parse_json_documents(text, file)?
    } else {
        parse_yaml_documents_with(text, file, limits)?
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

    /// Issue #12 item 7: an integer beyond 64 bits was read as a float (`1.0e+29`) and stored
    /// by the server as another number.
    #[test]
    fn refuses_integers_beyond_64_bits_with_file_line_and_column() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 99999999999999999999999999999\n";
        let err = parse_manifests(text, "apps/web.yaml").unwrap_err();
        assert!(
            matches!(
                err,
                ParseError::IntegerOutOfRange {
                    line: 6,
                    column: 13,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "apps/web.yaml:6:13: integer out of range (it does not fit in 64 bits; quote it to keep it as text)"
        );
        for too_big in [
            "-9223372036854775809",
            "18446744073709551616",
            "+99999999999999999999",
        ] {
            let err =
                parse_yaml_documents(&format!("a: 1.5\nb: {too_big}\n"), "x.yaml").unwrap_err();
            assert!(
                matches!(
                    err,
                    ParseError::IntegerOutOfRange {
                        line: 2,
                        column: 4,
                        ..
                    }
                ),
                "{too_big}: {err:?}"
            );
        }
        // What fits, floats and quoted text stay as they were.
        let docs = parse_yaml_documents(
            "a: 18446744073709551615\nb: -9223372036854775808\nc: 1.5\nd: 1e3\ne: \"99999999999999999999999999999\"\nf: '99999999999999999999999999999'\ng: 0x1ffffffffffffffff\n",
            "ok.yaml",
        )
        .unwrap();
        let value = &docs[0].value;
        // The parser reads a hexadecimal literal beyond 64 bits as text, as written.
        assert_eq!(value["g"], "0x1ffffffffffffffff");
        assert_eq!(value["a"], u64::MAX);
        assert_eq!(value["b"], i64::MIN);
        assert_eq!(value["c"], 1.5);
        assert_eq!(value["d"], 1000.0);
        assert_eq!(value["e"], "99999999999999999999999999999");
        assert_eq!(value["f"], "99999999999999999999999999999");
    }

    #[test]
    fn refuses_json_integers_beyond_64_bits() {
        let text = "{\n  \"apiVersion\": \"apps/v1\", \"kind\": \"Deployment\",\n  \"metadata\": {\"name\": \"web\", \"annotations\": {\"n\": \"-1e5 \\\" 99999999999999999999999\"}},\n  \"spec\": {\"replicas\": 99999999999999999999999999999}\n}\n";
        let err = parse_manifests(text, "web.json").unwrap_err();
        assert!(
            matches!(
                err,
                ParseError::IntegerOutOfRange {
                    line: 4,
                    column: 24,
                    ..
                }
            ),
            "{err:?}"
        );
        let fine =
            "{\"a\": 1.5e300, \"b\": 18446744073709551615, \"c\": \"99999999999999999999999\"}";
        let docs = parse_json_documents(fine, "fine.json").unwrap();
        assert_eq!(docs[0].value["b"], u64::MAX);
    }

    /// Issue #12 item 4: the parser's default budget of 1,024 documents refused real streams.
    /// Also measures what a stream of 20,000 objects takes (printed with `--nocapture`).
    #[test]
    fn parses_a_stream_of_20000_objects() {
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!(
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\n  namespace: shop\n  labels:\n    app: web-{i}\n    tier: frontend\n  annotations:\n    example.com/owner: team-{i}\nspec:\n  replicas: 3\n  selector:\n    matchLabels:\n      app: web-{i}\n  template:\n    metadata:\n      labels:\n        app: web-{i}\n    spec:\n      containers:\n      - name: web\n        image: registry.example.com/web:1.{i}\n        args: [--port=8080, --verbose]\n        ports:\n        - containerPort: 8080\n          name: http\n        env:\n        - name: MODE\n          value: production\n        resources:\n          requests:\n            cpu: 100m\n            memory: 128Mi\n          limits:\n            memory: 256Mi\n        readinessProbe:\n          httpGet:\n            path: /healthz\n            port: http\n"
            ));
        }
        let report = std::rc::Rc::new(std::cell::RefCell::new(None));
        let seen = report.clone();
        let mut options = yaml_options(&ParseLimits::default());
        options = options.with_budget_report(move |r| *seen.borrow_mut() = Some(r));
        let started = std::time::Instant::now();
        let _: Vec<Value> = serde_saphyr::from_multiple_with_options(&text, options).unwrap();
        let parse_time = started.elapsed();
        if let Some(r) = report.borrow().as_ref() {
            println!(
                "20,000 objects, {} bytes: {} documents, {} nodes, {} events, {} scalar bytes, depth {}, parsed in {parse_time:?}",
                text.len(),
                r.documents,
                r.nodes,
                r.events,
                r.total_scalar_bytes,
                r.max_depth
            );
        }
        let manifests = parse_manifests(&text, "big.yaml").unwrap();
        assert_eq!(manifests.len(), 20_000);
        assert_eq!(manifests[19_999].name(), "web-19999");
        // The limits stay configurable, and still apply.
        let err = parse_manifests_with(
            &text,
            "big.yaml",
            &ParseLimits::default().with_max_documents(19_999),
        )
        .unwrap_err();
        assert!(matches!(err, ParseError::Yaml { .. }), "{err}");
    }

    #[test]
    fn reports_json_errors_with_line() {
        let err = parse_manifests("{\n  \"a\": 1,\n  oops\n}", "x.json").unwrap_err();
        assert_eq!(err.line(), 3, "{err}");
    }
}
