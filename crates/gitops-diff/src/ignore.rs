//! Ignore rules: differences that are expected and must not count as drift.
//!
//! A rule has a [`Selector`] (group, kind, namespace, name, labels; `*` wildcards in names) and
//! what to ignore in the selected objects: JSON pointer patterns (`/spec/replicas`,
//! `/spec/template/spec/containers/*/image`, `/metadata/annotations/**`), and the fields owned by
//! named field managers (such as the HorizontalPodAutoscaler controller owning `spec.replicas`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An error in an ignore rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IgnoreError {
    /// A path pattern is not a JSON pointer.
    #[error("ignore path {pattern:?} must start with '/' (a JSON pointer)")]
    NotAPointer {
        /// The pattern as given.
        pattern: String,
    },
    /// A keyed segment is not `[key=value,...]`.
    #[error("ignore path {pattern:?} has a list item selector that is not [key=value,...]")]
    BadSelector {
        /// The pattern as given.
        pattern: String,
    },
    /// A pointer escape is invalid.
    #[error("ignore path {pattern:?} has an invalid escape (only ~0 and ~1 exist)")]
    BadEscape {
        /// The pattern as given.
        pattern: String,
    },
    /// A label or annotation selector is not in the Kubernetes selector syntax.
    #[error("selector {selector:?}: {message}")]
    BadLabelSelector {
        /// The selector as given.
        selector: String,
        /// What is wrong, and where.
        message: String,
    },
    /// A regular expression does not compile.
    #[error("regular expression {pattern:?} for the {field}")]
    BadRegex {
        /// The field it selects by.
        field: SelectorField,
        /// The expression as given.
        pattern: String,
        /// The regex error.
        #[source]
        source: regex::Error,
    },
}

/// Which objects a rule applies to; an unset part matches everything.
///
/// Group, kind, namespace and name take `*` wildcards; labels and annotations match by value or
/// by Kubernetes selector expressions ([`LabelSelector`]); [`Selector::regex`] adds anchored
/// regular expressions (the form Flux's targets use).
///
/// ```
/// use gitops_diff::{Selector, SelectorField};
///
/// let selector = Selector::default().kind("Deployment").name("web-*").label("tier", "front");
/// let object = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
///     "metadata": {"name": "web-eu", "labels": {"tier": "front"},
///                  "annotations": {"team": "shop"}}});
/// assert!(selector.matches(&object));
/// let selector = Selector::default()
///     .version("v1")
///     .annotation_selector("team in (shop, pay)")?
///     .regex(SelectorField::Name, "web-(eu|us)")?;
/// assert!(selector.matches(&object));
/// assert!(!Selector::default().version("v2").matches(&object));
/// # Ok::<(), gitops_diff::IgnoreError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// The API group (empty for core), with `*` wildcards; `None` matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The API version (`v1`, without the group); `None` matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The kind, with `*` wildcards; `None` matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The namespace, with `*` wildcards; `None` matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The name, with `*` wildcards; `None` matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels the object must carry with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Label requirements (`app in (web, api), !canary`).
    #[serde(
        default,
        rename = "labelSelector",
        skip_serializing_if = "LabelSelector::is_empty"
    )]
    pub label_selector: LabelSelector,
    /// Annotation requirements, in the label selector syntax.
    #[serde(
        default,
        rename = "annotationSelector",
        skip_serializing_if = "LabelSelector::is_empty"
    )]
    pub annotation_selector: LabelSelector,
    /// Anchored regular expressions the object's fields must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regexes: Vec<FieldRegex>,
}

/// A part of an object a [`Selector`] can match with a regular expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SelectorField {
    /// The API group (empty for core).
    Group,
    /// The API version, without the group.
    Version,
    /// The kind.
    Kind,
    /// `metadata.namespace` (empty for cluster-scoped objects).
    Namespace,
    /// `metadata.name`.
    Name,
}

impl std::fmt::Display for SelectorField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SelectorField::Group => "group",
            SelectorField::Version => "version",
            SelectorField::Kind => "kind",
            SelectorField::Namespace => "namespace",
            SelectorField::Name => "name",
        })
    }
}

/// An anchored regular expression over one field of an object (it must match the whole
/// value, as in Flux's and kustomize's selectors).
///
/// ```
/// use gitops_diff::{FieldRegex, SelectorField};
///
/// let regex = FieldRegex::new(SelectorField::Name, "web-.*")?;
/// assert!(regex.is_match("web-eu"));
/// assert!(!regex.is_match("my-web-eu"));
/// # Ok::<(), gitops_diff::IgnoreError>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "FieldRegexText", into = "FieldRegexText")]
pub struct FieldRegex {
    field: SelectorField,
    pattern: String,
    regex: regex::Regex,
}

#[derive(Serialize, Deserialize)]
struct FieldRegexText {
    field: SelectorField,
    pattern: String,
}

impl TryFrom<FieldRegexText> for FieldRegex {
    type Error = IgnoreError;

    fn try_from(text: FieldRegexText) -> Result<Self, IgnoreError> {
        FieldRegex::new(text.field, &text.pattern)
    }
}

impl From<FieldRegex> for FieldRegexText {
    fn from(regex: FieldRegex) -> Self {
        FieldRegexText {
            field: regex.field,
            pattern: regex.pattern,
        }
    }
}

impl PartialEq for FieldRegex {
    fn eq(&self, other: &Self) -> bool {
        self.field == other.field && self.pattern == other.pattern
    }
}

impl Eq for FieldRegex {}

impl FieldRegex {
    /// Compiles `pattern`, anchored at both ends.
    ///
    /// # Errors
    /// [`IgnoreError::BadRegex`] when it does not compile.
    pub fn new(field: SelectorField, pattern: &str) -> Result<Self, IgnoreError> {
        let regex = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|source| {
            IgnoreError::BadRegex {
                field,
                pattern: pattern.to_owned(),
                source,
            }
        })?;
        Ok(Self {
            field,
            pattern: pattern.to_owned(),
            regex,
        })
    }

    /// The field matched.
    #[must_use]
    pub fn field(&self) -> SelectorField {
        self.field
    }

    /// The expression as given (without the anchors).
    #[must_use]
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole text matches.
    #[must_use]
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// One requirement of a [`LabelSelector`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Requirement {
    /// `key`: the key is present.
    Exists(String),
    /// `!key`: the key is absent.
    DoesNotExist(String),
    /// `key=value` or `key==value`.
    Equals(String, String),
    /// `key!=value`: absent, or another value.
    NotEquals(String, String),
    /// `key in (a, b)`.
    In(String, Vec<String>),
    /// `key notin (a, b)`: absent, or none of these values.
    NotIn(String, Vec<String>),
}

impl Requirement {
    fn matches(&self, map: Option<&Map<String, Value>>) -> bool {
        let get = |key: &str| map.and_then(|m| m.get(key)).and_then(Value::as_str);
        match self {
            Requirement::Exists(key) => get(key).is_some(),
            Requirement::DoesNotExist(key) => get(key).is_none(),
            Requirement::Equals(key, value) => get(key) == Some(value.as_str()),
            Requirement::NotEquals(key, value) => get(key) != Some(value.as_str()),
            Requirement::In(key, values) => get(key).is_some_and(|v| values.iter().any(|x| x == v)),
            Requirement::NotIn(key, values) => {
                get(key).is_none_or(|v| values.iter().all(|x| x != v))
            }
        }
    }
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Requirement::Exists(key) => write!(f, "{key}"),
            Requirement::DoesNotExist(key) => write!(f, "!{key}"),
            Requirement::Equals(key, value) => write!(f, "{key}={value}"),
            Requirement::NotEquals(key, value) => write!(f, "{key}!={value}"),
            Requirement::In(key, values) => write!(f, "{key} in ({})", values.join(",")),
            Requirement::NotIn(key, values) => write!(f, "{key} notin ({})", values.join(",")),
        }
    }
}

/// A Kubernetes label selector in its text form (`app=web,tier in (front,back),!canary`), also
/// used for annotations. Every requirement must hold; the empty selector matches everything.
///
/// ```
/// use gitops_diff::LabelSelector;
///
/// let selector: LabelSelector = "app=web, tier notin (db), !canary".parse()?;
/// let labels = serde_json::json!({"app": "web", "tier": "front"});
/// assert!(selector.matches(labels.as_object()));
/// assert_eq!(selector.to_string(), "app=web,tier notin (db),!canary");
/// assert!("app in web".parse::<LabelSelector>().is_err());
/// # Ok::<(), gitops_diff::IgnoreError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The requirements, in the order given.
    #[must_use]
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether there is no requirement.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every requirement holds for this map of labels or annotations (`None`: the
    /// object has none).
    #[must_use]
    pub fn matches(&self, map: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(map))
    }
}

impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl From<LabelSelector> for String {
    fn from(selector: LabelSelector) -> Self {
        selector.to_string()
    }
}

impl TryFrom<String> for LabelSelector {
    type Error = IgnoreError;

    fn try_from(text: String) -> Result<Self, IgnoreError> {
        text.parse()
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = IgnoreError;

    fn from_str(text: &str) -> Result<Self, IgnoreError> {
        let bad = |message: String| IgnoreError::BadLabelSelector {
            selector: text.to_owned(),
            message,
        };
        let mut requirements = Vec::new();
        let mut depth = 0usize;
        let mut start = 0;
        let mut parts = Vec::new();
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or_else(|| bad(format!("unbalanced ')' at byte {i}")))?;
                }
                ',' if depth == 0 => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if depth != 0 {
            return Err(bad("unbalanced '('".to_owned()));
        }
        parts.push(&text[start..]);
        if parts.len() == 1 && parts[0].trim().is_empty() {
            return Ok(Self::default());
        }
        for part in parts {
            requirements.push(parse_requirement(part.trim()).map_err(bad)?);
        }
        Ok(Self { requirements })
    }
}

/// Whether a label key or value has only the characters Kubernetes allows (checked loosely:
/// no spaces, operators or parentheses).
fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let key_of = |key: &str| {
        let key = key.trim();
        if valid_token(key) {
            Ok(key.to_owned())
        } else {
            Err(format!("{key:?} is not a valid key"))
        }
    };
    let value_of = |value: &str| {
        let value = value.trim();
        if value.is_empty() || valid_token(value) {
            Ok(value.to_owned())
        } else {
            Err(format!("{value:?} is not a valid value"))
        }
    };
    if part.is_empty() {
        return Err("an empty requirement".to_owned());
    }
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key_of(key)?));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(key_of(key)?, value_of(value)?));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(key_of(key)?, value_of(value)?));
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words.as_slice() {
        let rest = rest.trim_start();
        let (operator, values) = if let Some(values) = rest.strip_prefix("notin") {
            ("notin", values)
        } else if let Some(values) = rest.strip_prefix("in") {
            ("in", values)
        } else {
            return Err(format!("{part:?}: expected in, notin, =, == or !="));
        };
        let values = values.trim();
        let Some(inner) = values.strip_prefix('(').and_then(|v| v.strip_suffix(')')) else {
            return Err(format!(
                "{part:?}: the values of {operator} go in parentheses"
            ));
        };
        let values = inner
            .split(',')
            .map(value_of)
            .collect::<Result<Vec<_>, _>>()?;
        let key = key_of(key)?;
        return Ok(if operator == "in" {
            Requirement::In(key, values)
        } else {
            Requirement::NotIn(key, values)
        });
    }
    Ok(Requirement::Exists(key_of(part)?))
}

impl Selector {
    /// Only this API group.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Only this API version (without the group, such as `v1`).
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Only objects whose labels meet this selector (`app in (web, api),!canary`).
    ///
    /// # Errors
    /// When it is not in the Kubernetes selector syntax.
    pub fn label_selector(mut self, selector: &str) -> Result<Self, IgnoreError> {
        self.label_selector = selector.parse()?;
        Ok(self)
    }

    /// Only objects whose annotations meet this selector (in the label selector syntax).
    ///
    /// # Errors
    /// When it is not in the Kubernetes selector syntax.
    pub fn annotation_selector(mut self, selector: &str) -> Result<Self, IgnoreError> {
        self.annotation_selector = selector.parse()?;
        Ok(self)
    }

    /// Only objects whose `field` matches this regular expression as a whole.
    ///
    /// # Errors
    /// When the expression does not compile.
    pub fn regex(mut self, field: SelectorField, pattern: &str) -> Result<Self, IgnoreError> {
        self.regexes.push(FieldRegex::new(field, pattern)?);
        Ok(self)
    }

    /// Only this kind.
    #[must_use]
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Only namespaces matching this pattern.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only names matching this pattern.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Only objects with this label value.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Whether the object (desired or live) is selected.
    #[must_use]
    pub fn matches(&self, object: &Value) -> bool {
        let text = |pointer: &str| {
            object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let (group, version) = gitops_core::split_api_version(text("/apiVersion"));
        let field = |field: SelectorField| match field {
            SelectorField::Group => group,
            SelectorField::Version => version,
            SelectorField::Kind => text("/kind"),
            SelectorField::Namespace => text("/metadata/namespace"),
            SelectorField::Name => text("/metadata/name"),
        };
        let map = |pointer: &str| object.pointer(pointer).and_then(Value::as_object);
        self.group
            .as_deref()
            .is_none_or(|pattern| wildcard_match(pattern, group))
            && self.version.as_deref().is_none_or(|v| v == version)
            && self
                .kind
                .as_deref()
                .is_none_or(|pattern| wildcard_match(pattern, text("/kind")))
            && self
                .regexes
                .iter()
                .all(|regex| regex.is_match(field(regex.field)))
            && self.label_selector.matches(map("/metadata/labels"))
            && self
                .annotation_selector
                .matches(map("/metadata/annotations"))
            && self
                .namespace
                .as_deref()
                .is_none_or(|pattern| wildcard_match(pattern, text("/metadata/namespace")))
            && self
                .name
                .as_deref()
                .is_none_or(|pattern| wildcard_match(pattern, text("/metadata/name")))
            && self.labels.iter().all(|(key, value)| {
                object
                    .pointer("/metadata/labels")
                    .and_then(|labels| labels.get(key))
                    .and_then(Value::as_str)
                    == Some(value.as_str())
            })
    }
}

/// Matches `*` (any run of characters) wildcards.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('*').collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return remaining.ends_with(part);
        }
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `[name=web]` or `[port=80,protocol=TCP]`: the list item with these key values.
    Keyed(Vec<(String, String)>),
    /// `*`: any one segment.
    Any,
    /// `**`: any number of segments, including none.
    AnyDepth,
}

/// A JSON pointer with wildcards: `*` matches one segment (a field name or a list index),
/// `**` any number of segments, and `[key=value,...]` the list item whose fields have these
/// values (such as `/spec/template/spec/containers/[name=web]/image`).
///
/// ```
/// use gitops_diff::PathPattern;
///
/// let pattern = PathPattern::parse("/spec/template/spec/containers/*/image")?;
/// assert!(pattern.matches(&["spec", "template", "spec", "containers", "0", "image"]));
/// assert!(!pattern.matches(&["spec", "template", "spec", "containers", "0", "name"]));
/// let annotations = PathPattern::parse("/metadata/annotations/**")?;
/// assert!(annotations.matches(&["metadata", "annotations", "a"]));
/// # Ok::<(), gitops_diff::IgnoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<Segment>,
}

impl PathPattern {
    /// Parses a pattern in JSON pointer syntax (`~1` for `/`, `~0` for `~`).
    ///
    /// # Errors
    /// When the pattern does not start with `/` or has a bad escape.
    pub fn parse(pattern: &str) -> Result<Self, IgnoreError> {
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err(IgnoreError::NotAPointer {
                pattern: pattern.to_owned(),
            });
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            segments.push(match raw {
                "*" => Segment::Any,
                "**" => Segment::AnyDepth,
                keyed if keyed.starts_with('[') && keyed.ends_with(']') && keyed.contains('=') => {
                    let mut pairs = Vec::new();
                    for pair in keyed[1..keyed.len() - 1].split(',') {
                        let (key, value) =
                            pair.split_once('=')
                                .ok_or_else(|| IgnoreError::BadSelector {
                                    pattern: pattern.to_owned(),
                                })?;
                        let unescaped = |text: &str| {
                            unescape(text).ok_or_else(|| IgnoreError::BadEscape {
                                pattern: pattern.to_owned(),
                            })
                        };
                        pairs.push((unescaped(key)?, unescaped(value)?));
                    }
                    Segment::Keyed(pairs)
                }
                _ => Segment::Literal(unescape(raw).ok_or_else(|| IgnoreError::BadEscape {
                    pattern: pattern.to_owned(),
                })?),
            });
        }
        Ok(Self {
            text: pattern.to_owned(),
            segments,
        })
    }

    /// A plain JSON pointer (RFC 6901), as Flux and Argo CD rules write them: every segment is
    /// literal (`*` is a field named `*`; a number is a list index).
    ///
    /// ```
    /// use gitops_diff::PathPattern;
    ///
    /// let pointer = PathPattern::pointer("/metadata/labels/*")?;
    /// assert!(pointer.matches(&["metadata", "labels", "*"]));
    /// assert!(!pointer.matches(&["metadata", "labels", "app"]));
    /// # Ok::<(), gitops_diff::IgnoreError>(())
    /// ```
    ///
    /// # Errors
    /// When the pointer does not start with `/` or has a bad escape.
    pub fn pointer(pointer: &str) -> Result<Self, IgnoreError> {
        let Some(rest) = pointer.strip_prefix('/') else {
            return Err(IgnoreError::NotAPointer {
                pattern: pointer.to_owned(),
            });
        };
        let segments = rest
            .split('/')
            .map(|raw| {
                unescape(raw)
                    .map(Segment::Literal)
                    .ok_or_else(|| IgnoreError::BadEscape {
                        pattern: pointer.to_owned(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            text: pointer.to_owned(),
            segments,
        })
    }

    /// The pattern as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the path (unescaped segments) matches. Keyed segments (`[name=web]`) match no
    /// plain segment; see [`PathPattern::matches_items`].
    #[must_use]
    pub fn matches<S: AsRef<str>>(&self, path: &[S]) -> bool {
        let steps: Vec<PathStep<'_>> = path
            .iter()
            .map(|s| PathStep {
                text: s.as_ref(),
                item: None,
            })
            .collect();
        matches_from(&self.segments, &steps)
    }

    /// Whether the path matches, where list items also carry the item itself, so that keyed
    /// segments (`[name=web]`) can compare its fields.
    ///
    /// ```
    /// use gitops_diff::{PathPattern, PathStep};
    ///
    /// let pattern = PathPattern::parse("/spec/containers/[name=web]/image")?;
    /// let web = serde_json::json!({"name": "web", "image": "nginx"});
    /// let step = |text| PathStep { text, item: None };
    /// let path = [step("spec"), step("containers"), PathStep { text: "0", item: Some(&web) }, step("image")];
    /// assert!(pattern.matches_items(&path));
    /// # Ok::<(), gitops_diff::IgnoreError>(())
    /// ```
    #[must_use]
    pub fn matches_items(&self, path: &[PathStep<'_>]) -> bool {
        matches_from(&self.segments, path)
    }
}

/// One step of a concrete path, for [`PathPattern::matches_items`].
#[derive(Debug, Clone, Copy)]
pub struct PathStep<'a> {
    /// The field name, or the list index as text.
    pub text: &'a str,
    /// For a list item, the item.
    pub item: Option<&'a Value>,
}

fn keyed_match(pairs: &[(String, String)], item: Option<&Value>) -> bool {
    let Some(item) = item else { return false };
    pairs.iter().all(|(key, expected)| match item.get(key) {
        Some(Value::String(s)) => s == expected,
        Some(Value::Number(n)) => n.to_string() == *expected,
        Some(Value::Bool(b)) => b.to_string() == *expected,
        _ => false,
    })
}

fn matches_from(pattern: &[Segment], path: &[PathStep<'_>]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Segment::AnyDepth, rest)) => {
            (0..=path.len()).any(|skip| matches_from(rest, &path[skip..]))
        }
        Some((segment, rest)) => match path.split_first() {
            None => false,
            Some((head, tail)) => {
                let ok = match segment {
                    Segment::Any => true,
                    Segment::Literal(literal) => literal == head.text,
                    Segment::Keyed(pairs) => keyed_match(pairs, head.item),
                    Segment::AnyDepth => unreachable!("handled above"),
                };
                ok && matches_from(rest, tail)
            }
        },
    }
}

fn unescape(raw: &str) -> Option<String> {
    if !raw.contains('~') {
        return Some(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// A rule: in the selected objects, ignore these paths and the fields these managers own.
///
/// ```
/// use gitops_diff::{IgnoreRule, Selector};
///
/// // Let the HorizontalPodAutoscaler own the replicas of every Deployment.
/// let rule = IgnoreRule::new(Selector::default().group("apps").kind("Deployment"))
///     .manager("kube-controller-manager");
/// let rule = rule.path("/spec/template/metadata/annotations/**")?;
/// # Ok::<(), gitops_diff::IgnoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreRule {
    pub(crate) selector: Selector,
    pub(crate) paths: Vec<PathPattern>,
    pub(crate) managers: Vec<String>,
}

impl IgnoreRule {
    /// A rule for the selected objects that ignores nothing yet.
    #[must_use]
    pub fn new(selector: Selector) -> Self {
        Self {
            selector,
            paths: Vec::new(),
            managers: Vec::new(),
        }
    }

    /// Also ignore a path pattern.
    ///
    /// # Errors
    /// When the pattern is not a JSON pointer.
    pub fn path(mut self, pattern: &str) -> Result<Self, IgnoreError> {
        self.paths.push(PathPattern::parse(pattern)?);
        Ok(self)
    }

    /// Also ignore a plain JSON pointer (see [`PathPattern::pointer`]).
    ///
    /// # Errors
    /// When it is not a JSON pointer.
    pub fn pointer(mut self, pointer: &str) -> Result<Self, IgnoreError> {
        self.paths.push(PathPattern::pointer(pointer)?);
        Ok(self)
    }

    /// Also ignore the fields a field manager owns (per `metadata.managedFields` of the live
    /// object).
    #[must_use]
    pub fn manager(mut self, manager: impl Into<String>) -> Self {
        self.managers.push(manager.into());
        self
    }

    /// The selector.
    #[must_use]
    pub fn selector(&self) -> &Selector {
        &self.selector
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("web-*", "web-eu"));
        assert!(wildcard_match("*-eu", "web-eu"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "a-b-c"));
        assert!(!wildcard_match("a*b*c", "a-c-b"));
        assert!(!wildcard_match("web", "web-eu"));
    }

    #[test]
    fn patterns() {
        let p = PathPattern::parse("/metadata/annotations/example.com~1x").unwrap();
        assert!(p.matches(&["metadata", "annotations", "example.com/x"]));
        let p = PathPattern::parse("/**/image").unwrap();
        assert!(p.matches(&["spec", "containers", "0", "image"]));
        assert!(p.matches(&["image"]));
        assert!(!p.matches(&["spec", "image", "x"]));
        assert!(PathPattern::parse("spec").is_err());
        assert!(PathPattern::parse("/a~2").is_err());
        assert!(matches!(
            PathPattern::parse("/a/[x=1,y]"),
            Err(IgnoreError::BadSelector { .. })
        ));
        let keyed = PathPattern::parse("/ports/[port=80,protocol=TCP]").unwrap();
        let port = json!({"port": 80, "protocol": "TCP"});
        let other = json!({"port": 81, "protocol": "TCP"});
        let path = |item| {
            [
                PathStep {
                    text: "ports",
                    item: None,
                },
                PathStep {
                    text: "0",
                    item: Some(item),
                },
            ]
        };
        assert!(keyed.matches_items(&path(&port)));
        assert!(!keyed.matches_items(&path(&other)));
        assert!(!keyed.matches(&["ports", "0"]));
    }

    #[test]
    fn selector_by_group_namespace_and_labels() {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "shop", "labels": {"a": "1"}}});
        assert!(
            Selector::default()
                .group("")
                .namespace("sh*")
                .matches(&object)
        );
        assert!(!Selector::default().group("apps").matches(&object));
        assert!(!Selector::default().label("a", "2").matches(&object));
        assert!(Selector::default().label("a", "1").matches(&object));
    }
}
