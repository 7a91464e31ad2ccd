//! Ignore rules in the shapes Flux and Argo CD users already write: Flux's drift ignore rules
//! (`spec.driftDetection.ignore` of a HelmRelease) and Argo CD's `ignoreDifferences` of an
//! Application. Both read with serde (YAML through serde-saphyr, or JSON) and convert into
//! [`IgnoreRule`]s with `TryFrom`, with a clear error for what cannot be honoured.

use serde::{Deserialize, Serialize};

use crate::ignore::{IgnoreError, IgnoreRule, Selector, SelectorField};

/// Why a Flux or Argo CD rule cannot be converted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerRuleError {
    /// The rule uses a feature this crate does not implement.
    #[error("{rule}: {feature} is not supported ({hint})")]
    Unsupported {
        /// Which rule shape: `Flux drift ignore rule`, `Argo CD ignoreDifferences`.
        rule: &'static str,
        /// The feature, such as `jqPathExpressions`.
        feature: &'static str,
        /// What to use instead.
        hint: &'static str,
    },
    /// The rule ignores nothing (no paths, no managers).
    #[error("{rule}: it names no path and no field manager, so it would ignore nothing")]
    Empty {
        /// Which rule shape.
        rule: &'static str,
    },
    /// A path, selector or regular expression of the rule is invalid.
    #[error("{rule}: invalid rule")]
    Invalid {
        /// Which rule shape.
        rule: &'static str,
        /// What is invalid.
        #[source]
        source: IgnoreError,
    },
}

const FLUX: &str = "Flux drift ignore rule";
const ARGO: &str = "Argo CD ignoreDifferences";

/// A Flux drift ignore rule: JSON pointers to ignore in the objects a target selects.
///
/// The target's group, version, kind, name and namespace are anchored regular expressions, as
/// in Flux (a plain value matches exactly); its label and annotation selectors use the
/// Kubernetes selector syntax.
///
/// ```
/// use gitops_diff::{FluxDriftIgnoreRule, IgnoreRule};
///
/// let yaml = "
/// - paths: [/spec/replicas]
///   target:
///     kind: Deployment
///     name: web-.*
///     labelSelector: app.kubernetes.io/part-of=shop
/// ";
/// let rules: Vec<FluxDriftIgnoreRule> = serde_saphyr::from_str(yaml)?;
/// let rule = IgnoreRule::try_from(rules[0].clone())?;
/// let object = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
///     "metadata": {"name": "web-eu", "labels": {"app.kubernetes.io/part-of": "shop"}}});
/// assert!(rule.selector().matches(&object));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FluxDriftIgnoreRule {
    /// JSON pointers (RFC 6901) of the fields to ignore.
    #[serde(default)]
    pub paths: Vec<String>,
    /// The objects the rule applies to; every object when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<FluxTarget>,
}

/// The target of a [`FluxDriftIgnoreRule`], as Flux (and kustomize) select objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FluxTarget {
    /// The API group, an anchored regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The API version, an anchored regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The kind, an anchored regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The name, an anchored regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The namespace, an anchored regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A label selector (`app=web,tier in (front)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// An annotation selector, in the label selector syntax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<String>,
}

impl FluxDriftIgnoreRule {
    /// A rule ignoring these JSON pointers in every object.
    ///
    /// ```
    /// let rule = gitops_diff::FluxDriftIgnoreRule::new(["/spec/replicas"]);
    /// assert_eq!(rule.paths, ["/spec/replicas"]);
    /// ```
    #[must_use]
    pub fn new<S: Into<String>>(paths: impl IntoIterator<Item = S>) -> Self {
        Self {
            paths: paths.into_iter().map(Into::into).collect(),
            target: None,
        }
    }

    /// Only in the objects this target selects.
    #[must_use]
    pub fn target(mut self, target: FluxTarget) -> Self {
        self.target = Some(target);
        self
    }
}

impl FluxTarget {
    /// A target of one kind (an anchored regular expression).
    ///
    /// ```
    /// let target = gitops_diff::FluxTarget::kind("Deployment");
    /// assert_eq!(target.kind.as_deref(), Some("Deployment"));
    /// ```
    #[must_use]
    pub fn kind(kind: impl Into<String>) -> Self {
        Self {
            kind: Some(kind.into()),
            ..Self::default()
        }
    }
}

/// Whether a regular expression matches only the text itself.
fn is_literal(pattern: &str) -> bool {
    regex::escape(pattern) == pattern
}

impl TryFrom<FluxDriftIgnoreRule> for IgnoreRule {
    type Error = PeerRuleError;

    fn try_from(rule: FluxDriftIgnoreRule) -> Result<Self, PeerRuleError> {
        let invalid = |source| PeerRuleError::Invalid { rule: FLUX, source };
        if rule.paths.is_empty() {
            return Err(PeerRuleError::Empty { rule: FLUX });
        }
        let mut selector = Selector::default();
        if let Some(target) = rule.target {
            let fields = [
                (SelectorField::Group, target.group),
                (SelectorField::Version, target.version),
                (SelectorField::Kind, target.kind),
                (SelectorField::Name, target.name),
                (SelectorField::Namespace, target.namespace),
            ];
            for (field, pattern) in fields {
                // Flux leaves a field out by leaving it empty.
                let Some(pattern) = pattern.filter(|p| !p.is_empty()) else {
                    continue;
                };
                if !is_literal(&pattern) || pattern.contains('*') {
                    selector = selector.regex(field, &pattern).map_err(invalid)?;
                    continue;
                }
                selector = match field {
                    SelectorField::Group => selector.group(pattern),
                    SelectorField::Version => selector.version(pattern),
                    SelectorField::Kind => selector.kind(pattern),
                    SelectorField::Name => selector.name(pattern),
                    _ => selector.namespace(pattern),
                };
            }
            if let Some(labels) = target.label_selector {
                selector = selector.label_selector(&labels).map_err(invalid)?;
            }
            if let Some(annotations) = target.annotation_selector {
                selector = selector
                    .annotation_selector(&annotations)
                    .map_err(invalid)?;
            }
        }
        let mut converted = IgnoreRule::new(selector);
        for path in &rule.paths {
            converted = converted.pointer(path).map_err(invalid)?;
        }
        Ok(converted)
    }
}

/// An entry of an Argo CD Application's `ignoreDifferences`: JSON pointers and field managers
/// to ignore in the objects of a group and kind (and optionally a name and namespace).
///
/// `group` absent is the core group, as in Argo CD; group and kind take `*` wildcards.
/// `jqPathExpressions` cannot be honoured (this crate has no jq): a rule with any is refused
/// with [`PeerRuleError::Unsupported`].
///
/// ```
/// use gitops_diff::{ArgoIgnoreDifference, IgnoreRule};
///
/// let yaml = "
/// - group: apps
///   kind: Deployment
///   jsonPointers: [/spec/replicas]
///   managedFieldsManagers: [kube-controller-manager]
/// - kind: ConfigMap
///   jqPathExpressions: ['.data.generated']
/// ";
/// let entries: Vec<ArgoIgnoreDifference> = serde_saphyr::from_str(yaml)?;
/// let rule = IgnoreRule::try_from(entries[0].clone())?;
/// assert_eq!(rule.selector().kind.as_deref(), Some("Deployment"));
/// let err = IgnoreRule::try_from(entries[1].clone()).unwrap_err();
/// assert!(err.to_string().contains("jqPathExpressions is not supported"), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ArgoIgnoreDifference {
    /// The API group (absent or empty: the core group; `*`: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The kind (`*`: any).
    pub kind: String,
    /// Only the object of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only objects in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// JSON pointers (RFC 6901) of the fields to ignore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_pointers: Vec<String>,
    /// Field managers whose fields to ignore (such as `kube-controller-manager` for an HPA).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields_managers: Vec<String>,
    /// jq path expressions: not supported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jq_path_expressions: Vec<String>,
}

impl ArgoIgnoreDifference {
    /// An entry for one group and kind that ignores nothing yet.
    ///
    /// ```
    /// let entry = gitops_diff::ArgoIgnoreDifference::new("apps", "Deployment");
    /// assert_eq!(entry.group.as_deref(), Some("apps"));
    /// ```
    #[must_use]
    pub fn new(group: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            group: Some(group.into()),
            kind: kind.into(),
            ..Self::default()
        }
    }

    /// Also ignore a JSON pointer.
    #[must_use]
    pub fn json_pointer(mut self, pointer: impl Into<String>) -> Self {
        self.json_pointers.push(pointer.into());
        self
    }

    /// Also ignore the fields a field manager owns.
    #[must_use]
    pub fn manager(mut self, manager: impl Into<String>) -> Self {
        self.managed_fields_managers.push(manager.into());
        self
    }
}

impl TryFrom<ArgoIgnoreDifference> for IgnoreRule {
    type Error = PeerRuleError;

    fn try_from(entry: ArgoIgnoreDifference) -> Result<Self, PeerRuleError> {
        let invalid = |source| PeerRuleError::Invalid { rule: ARGO, source };
        if !entry.jq_path_expressions.is_empty() {
            return Err(PeerRuleError::Unsupported {
                rule: ARGO,
                feature: "jqPathExpressions",
                hint: "write the paths as jsonPointers, or name the field manager in managedFieldsManagers",
            });
        }
        if entry.json_pointers.is_empty() && entry.managed_fields_managers.is_empty() {
            return Err(PeerRuleError::Empty { rule: ARGO });
        }
        let mut selector = Selector::default()
            .group(entry.group.unwrap_or_default())
            .kind(entry.kind);
        if let Some(name) = entry.name.filter(|n| !n.is_empty()) {
            selector = selector.name(name);
        }
        if let Some(namespace) = entry.namespace.filter(|n| !n.is_empty()) {
            selector = selector.namespace(namespace);
        }
        let mut rule = IgnoreRule::new(selector);
        for pointer in &entry.json_pointers {
            rule = rule.pointer(pointer).map_err(invalid)?;
        }
        for manager in entry.managed_fields_managers {
            rule = rule.manager(manager);
        }
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn flux_targets_select_by_regex_and_selectors() {
        let yaml = "
paths: [/spec/replicas, /metadata/annotations/a~1b]
target:
  group: apps
  version: v1
  kind: Deployment|StatefulSet
  namespace: shop-.*
  annotationSelector: team in (shop)
";
        let rule: FluxDriftIgnoreRule = serde_saphyr::from_str(yaml).unwrap();
        let rule = IgnoreRule::try_from(rule).unwrap();
        let object = |kind: &str, namespace: &str| {
            json!({"apiVersion": "apps/v1", "kind": kind,
                "metadata": {"name": "x", "namespace": namespace,
                    "annotations": {"team": "shop"}}})
        };
        assert!(rule.selector().matches(&object("StatefulSet", "shop-eu")));
        assert!(!rule.selector().matches(&object("DaemonSet", "shop-eu")));
        // Anchored: "shop-.*" does not match "myshop-eu".
        assert!(!rule.selector().matches(&object("Deployment", "myshop-eu")));
        let mut other_team = object("Deployment", "shop-eu");
        other_team["metadata"]["annotations"]["team"] = json!("pay");
        assert!(!rule.selector().matches(&other_team));
        // A literal pointer: `*` is a field name, not a wildcard.
        let star = IgnoreRule::try_from(FluxDriftIgnoreRule::new(["/metadata/labels/*"])).unwrap();
        let labelled = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"a": "1"}}});
        let differ = crate::Differ::builder("m").ignore(star).build();
        let mut desired = labelled.clone();
        desired["metadata"]["labels"]["a"] = json!("2");
        assert!(
            !differ
                .diff(Some(&desired), Some(&labelled))
                .unwrap()
                .is_in_sync()
        );
    }

    #[test]
    fn flux_errors_name_what_is_wrong() {
        let err = IgnoreRule::try_from(FluxDriftIgnoreRule::default()).unwrap_err();
        assert!(matches!(err, PeerRuleError::Empty { .. }), "{err}");
        let bad_regex = FluxDriftIgnoreRule::new(["/spec"]).target(FluxTarget {
            name: Some("web-(".to_owned()),
            ..FluxTarget::default()
        });
        let err = IgnoreRule::try_from(bad_regex).unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains("\"web-(\" for the name"), "{chain}");
        let bad_selector = FluxDriftIgnoreRule::new(["/spec"]).target(FluxTarget {
            label_selector: Some("app in web".to_owned()),
            ..FluxTarget::default()
        });
        assert!(IgnoreRule::try_from(bad_selector).is_err());
        let not_pointer = FluxDriftIgnoreRule::new(["spec/replicas"]);
        assert!(IgnoreRule::try_from(not_pointer).is_err());
    }

    #[test]
    fn argo_entries_follow_argo_matching() {
        let rule = IgnoreRule::try_from(
            ArgoIgnoreDifference {
                group: None,
                kind: "ConfigMap".to_owned(),
                ..ArgoIgnoreDifference::default()
            }
            .json_pointer("/data/x"),
        )
        .unwrap();
        // No group: the core group only.
        let core = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
        let other = json!({"apiVersion": "example.com/v1", "kind": "ConfigMap",
            "metadata": {"name": "a"}});
        assert!(rule.selector().matches(&core));
        assert!(!rule.selector().matches(&other));
        let any = IgnoreRule::try_from(ArgoIgnoreDifference::new("*", "*").manager("hpa")).unwrap();
        assert!(any.selector().matches(&other));
        let err =
            IgnoreRule::try_from(ArgoIgnoreDifference::new("apps", "Deployment")).unwrap_err();
        assert!(matches!(err, PeerRuleError::Empty { .. }), "{err}");
    }

    #[test]
    fn label_selectors_parse_and_match_like_kubernetes() {
        use crate::LabelSelector;
        let selector: LabelSelector = "a, !b, c=1, d==2, e!=3, f in (x, y), g notin (z)"
            .parse()
            .unwrap();
        let labels = json!({"a": "", "c": "1", "d": "2", "f": "y", "g": "w"});
        assert!(selector.matches(labels.as_object()));
        // != and notin also hold when the key is absent.
        let none: LabelSelector = "e!=3,g notin (z)".parse().unwrap();
        assert!(none.matches(None));
        assert!(!"a".parse::<LabelSelector>().unwrap().matches(None));
        for bad in ["a in (x", "a)", "=x", "a in x", "a b c", "a,,b"] {
            assert!(bad.parse::<LabelSelector>().is_err(), "{bad}");
        }
        assert!("".parse::<LabelSelector>().unwrap().is_empty());
    }
}
