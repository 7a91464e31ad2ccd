//! Ignore rules: differences that are expected and must not count as drift.
//!
//! A rule has a [`Selector`] (group, kind, namespace, name, labels; `*` wildcards in names) and
//! what to ignore in the selected objects: JSON pointer patterns (`/spec/replicas`,
//! `/spec/template/spec/containers/*/image`, `/metadata/annotations/**`), and the fields owned by
//! named field managers (such as the HorizontalPodAutoscaler controller owning `spec.replicas`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}

/// Which objects a rule applies to; an unset part matches everything.
///
/// ```
/// use gitops_diff::Selector;
///
/// let selector = Selector::default().kind("Deployment").name("web-*").label("tier", "front");
/// let object = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
///     "metadata": {"name": "web-eu", "labels": {"tier": "front"}}});
/// assert!(selector.matches(&object));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// The API group (empty for core); `None` matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The kind; `None` matches any.
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
}

impl Selector {
    /// Only this API group.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
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
        let (group, _) = gitops_core::split_api_version(text("/apiVersion"));
        self.group.as_deref().is_none_or(|g| g == group)
            && self.kind.as_deref().is_none_or(|k| k == text("/kind"))
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
