//! The `GitSync` custom resource: what to sync (spec) and how it went (status).

use std::path::PathBuf;
use std::time::Duration;

use gitops_source::GitReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of [`GitSync`].
pub const GROUP: &str = "examples.gitops-rs.io";
/// The API version of [`GitSync`] within [`GROUP`].
pub const VERSION: &str = "v1alpha1";
/// The condition type that says whether the last reconciliation succeeded.
pub const READY: &str = "Ready";
/// The condition type present (True) while a reconciliation is in progress or retried.
pub const RECONCILING: &str = "Reconciling";
/// The condition type present (True) when the input is wrong and retrying cannot help until it
/// changes (a new commit or a new spec).
pub const STALLED: &str = "Stalled";

/// The spec of a [`GitSync`]: which repository (or local directory), which path in it, how
/// often, and how to render and apply it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "examples.gitops-rs.io",
    version = "v1alpha1",
    kind = "GitSync",
    doc = "Syncs a directory of a Git repository (or of a local directory) to the cluster: Flux's GitRepository and Kustomization folded into one object.",
    namespaced,
    status = "GitSyncStatus",
    shortname = "gsync",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.lastAppliedRevision"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncSpec {
    /// The Git repository (`file://`, `git://`, `http(s)://`, `ssh://`). Exactly one of `url` and
    /// `localPath` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Which revision of `url` to follow; the remote's default branch when absent.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<GitRef>,
    /// A directory on the controller's file system instead of a repository (development and
    /// tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_path: Option<String>,
    /// The directory to render, relative to the repository root (default `.`).
    #[serde(default = "default_path")]
    pub path: String,
    /// How often to fetch and to correct drift, as a Go duration (`30s`, `5m`, `1h30m`).
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,
    /// How to render `path`.
    #[serde(default)]
    pub renderer: RendererKind,
    /// Whether objects that leave the set (and all of them when this resource is deleted) are
    /// deleted. Default true.
    #[serde(default = "default_prune")]
    pub prune: bool,
    /// Sets the namespace of every namespaced object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// Wait for the applied objects to become Current (kstatus) before reporting Ready.
    #[serde(default)]
    pub wait: bool,
    /// How long to wait with `wait`, as a Go duration (default: the interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
    /// Stop reconciling (nothing is fetched, applied or pruned) until set back to false.
    #[serde(default)]
    pub suspend: bool,
}

/// The same defaults as an object that leaves the fields out: path `.`, renderer `auto`, prune
/// on; no source and no interval (both must be set).
impl Default for GitSyncSpec {
    fn default() -> Self {
        Self {
            url: None,
            reference: None,
            local_path: None,
            path: default_path(),
            interval: String::new(),
            renderer: RendererKind::default(),
            prune: default_prune(),
            target_namespace: None,
            wait: false,
            timeout: None,
            suspend: false,
        }
    }
}

fn default_path() -> String {
    ".".to_owned()
}

fn default_prune() -> bool {
    true
}

/// The revision of a repository to follow; the first set of `commit`, `semver`, `tag`, `branch`
/// wins (Flux's precedence).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct GitRef {
    /// A branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The highest tag in a semver range, such as `>=1.2.0, <2.0.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// A full 40-character hexadecimal commit SHA-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// How a [`GitSync`] renders its path.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RendererKind {
    /// Kustomize when the directory has a kustomization, plain files otherwise.
    #[default]
    Auto,
    /// YAML and JSON files.
    Plain,
    /// `kustomize build`.
    Kustomize,
    /// `helm template`, the resource's name as release name.
    Helm,
}

/// What a [`GitSync`] reports.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSyncStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The revision applied last with success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The revision tried last, applied or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The value of the requested-at annotation (`examples.gitops-rs.io/requestedAt`, or
    /// Flux's `reconcile.fluxcd.io/requestedAt`) the last reconciliation handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The objects applied last; written by the applier, with its own field manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventoryStatus>,
}

impl GitSyncStatus {
    /// The condition of this type, if present.
    #[must_use]
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// The standard `metav1.Condition` shape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Reconciling` or `Stalled`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// The generation of the resource this condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// A CamelCase reason, such as `ReconciliationSucceeded` or `BuildFailed`.
    pub reason: String,
    /// A human-readable message.
    pub message: String,
}

/// The objects a [`GitSync`] applied last, in the inventory's stored form.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct InventoryStatus {
    /// One entry per object, sorted by id.
    #[serde(default)]
    pub entries: Vec<InventoryEntry>,
}

/// One object of the inventory.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct InventoryEntry {
    /// The object id, `namespace_name_group_kind`.
    pub id: String,
    /// The apiVersion it was applied at.
    pub v: String,
}

/// Why a [`GitSyncSpec`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Both or neither of `url` and `localPath`.
    #[error("spec: exactly one of url and localPath must be set")]
    SourceChoice,
    /// `ref` was given for a local path.
    #[error("spec.ref applies only to spec.url, not to spec.localPath")]
    RefWithoutUrl,
    /// `localPath` is not absolute.
    #[error("spec.localPath {path:?} must be an absolute path")]
    RelativeLocalPath {
        /// The path.
        path: String,
    },
    /// A duration field does not parse.
    #[error("spec.{field}: {source}")]
    Duration {
        /// `interval` or `timeout`.
        field: &'static str,
        /// Why.
        #[source]
        source: DurationError,
    },
    /// A zero interval would reconcile in a hot loop.
    #[error("spec.interval must be greater than zero")]
    ZeroInterval,
}

/// The spec, checked and converted: what a reconciliation works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    /// Where the content comes from.
    pub source: SourceLocation,
    /// The directory to render.
    pub path: String,
    /// How often to reconcile.
    pub interval: Duration,
    /// How long to wait for health.
    pub timeout: Duration,
}

/// Where a [`GitSync`]'s content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceLocation {
    /// A Git repository and the revision to follow.
    Git {
        /// The URL.
        url: String,
        /// The revision.
        reference: GitReference,
    },
    /// A local directory.
    Local(PathBuf),
}

impl GitSyncSpec {
    /// Checks the spec and converts it.
    ///
    /// ```
    /// use gitops_examples::controller::GitSyncSpec;
    /// let spec = GitSyncSpec { local_path: Some("/srv/config".into()), interval: "1h30m".into(), ..GitSyncSpec::default() };
    /// assert_eq!(spec.settings()?.interval.as_secs(), 5400);
    /// let spec = GitSyncSpec { interval: "1m".into(), ..GitSyncSpec::default() };
    /// assert_eq!(spec.settings().unwrap_err().to_string(), "spec: exactly one of url and localPath must be set");
    /// # Ok::<(), gitops_examples::controller::SpecError>(())
    /// ```
    ///
    /// # Errors
    /// [`SpecError`] naming the field.
    pub fn settings(&self) -> Result<SyncSettings, SpecError> {
        let source = match (&self.url, &self.local_path) {
            (Some(url), None) => SourceLocation::Git {
                url: url.clone(),
                reference: self
                    .reference
                    .as_ref()
                    .map_or(GitReference::DefaultBranch, GitRef::to_reference),
            },
            (None, Some(path)) => {
                if self.reference.is_some() {
                    return Err(SpecError::RefWithoutUrl);
                }
                let path = PathBuf::from(path);
                if !path.is_absolute() {
                    return Err(SpecError::RelativeLocalPath {
                        path: path.display().to_string(),
                    });
                }
                SourceLocation::Local(path)
            }
            _ => return Err(SpecError::SourceChoice),
        };
        let interval = parse_go_duration(&self.interval).map_err(|source| SpecError::Duration {
            field: "interval",
            source,
        })?;
        if interval.is_zero() {
            return Err(SpecError::ZeroInterval);
        }
        let timeout = match &self.timeout {
            Some(text) => parse_go_duration(text).map_err(|source| SpecError::Duration {
                field: "timeout",
                source,
            })?,
            None => interval,
        };
        Ok(SyncSettings {
            source,
            path: self.path.clone(),
            interval,
            timeout,
        })
    }
}

impl GitRef {
    /// The reference, with Flux's precedence: commit, semver, tag, branch.
    #[must_use]
    pub fn to_reference(&self) -> GitReference {
        if let Some(sha1) = &self.commit {
            GitReference::Commit {
                sha1: sha1.clone(),
                branch: self.branch.clone(),
            }
        } else if let Some(range) = &self.semver {
            GitReference::SemverRange(range.clone())
        } else if let Some(tag) = &self.tag {
            GitReference::Tag(tag.clone())
        } else if let Some(branch) = &self.branch {
            GitReference::Branch(branch.clone())
        } else {
            GitReference::DefaultBranch
        }
    }
}

/// Why a Go duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a duration such as 30s, 5m or 1h30m: {problem}")]
pub struct DurationError {
    /// The text.
    pub text: String,
    /// What is wrong.
    pub problem: &'static str,
}

/// Parses a Go duration: one or more `<number><unit>` with units `ms`, `s`, `m`, `h` (and a
/// decimal fraction allowed), as Flux's `interval` fields take.
///
/// ```
/// use gitops_examples::controller::parse_go_duration;
/// assert_eq!(parse_go_duration("1h30m")?.as_secs(), 5400);
/// assert_eq!(parse_go_duration("1.5s")?.as_millis(), 1500);
/// assert!(parse_go_duration("5 minutes").is_err());
/// # Ok::<(), gitops_examples::controller::DurationError>(())
/// ```
///
/// # Errors
/// [`DurationError`] for empty text, a missing number or unit, or an unknown unit.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let error = |problem| DurationError {
        text: text.to_owned(),
        problem,
    };
    if text.is_empty() {
        return Err(error("empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| error("a number without a unit"))?;
        if number_len == 0 {
            return Err(error("a unit without a number"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| error("not a number"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(error("the unit is not one of ms, s, m, h")),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds_per_unit)
            .map_err(|_| error("out of range"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_go_duration("2h3m4s").unwrap(),
            Duration::from_secs(7384)
        );
        assert_eq!(
            parse_go_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        for bad in ["", "5", "m", "5d", "1h 2m", "-1s", "1..5s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn spec_defaults_and_checks() {
        let spec: GitSyncSpec =
            serde_json::from_value(serde_json::json!({"url": "file:///r", "interval": "1m"}))
                .unwrap();
        assert_eq!(spec.path, ".");
        assert!(spec.prune);
        assert_eq!(spec.renderer, RendererKind::Auto);
        let defaults = GitSyncSpec {
            url: Some("file:///r".into()),
            interval: "1m".into(),
            ..GitSyncSpec::default()
        };
        assert_eq!(defaults, spec, "Default agrees with the serde defaults");
        let settings = spec.settings().unwrap();
        assert_eq!(settings.timeout, Duration::from_secs(60));
        assert_eq!(
            settings.source,
            SourceLocation::Git {
                url: "file:///r".into(),
                reference: GitReference::DefaultBranch
            }
        );

        let both = GitSyncSpec {
            local_path: Some("/x".into()),
            ..spec.clone()
        };
        assert!(matches!(both.settings(), Err(SpecError::SourceChoice)));
        let relative = GitSyncSpec {
            url: None,
            local_path: Some("x".into()),
            ..spec.clone()
        };
        assert!(matches!(
            relative.settings(),
            Err(SpecError::RelativeLocalPath { .. })
        ));
        let zero = GitSyncSpec {
            interval: "0s".into(),
            ..spec.clone()
        };
        assert!(matches!(zero.settings(), Err(SpecError::ZeroInterval)));
        let bad_timeout = GitSyncSpec {
            timeout: Some("soon".into()),
            ..spec
        };
        assert_eq!(
            bad_timeout.settings().unwrap_err().to_string(),
            "spec.timeout: \"soon\" is not a duration such as 30s, 5m or 1h30m: a unit without a number"
        );
    }

    #[test]
    fn reference_precedence() {
        let all = GitRef {
            branch: Some("main".into()),
            tag: Some("v1".into()),
            semver: Some("^1".into()),
            commit: Some("a".repeat(40)),
        };
        assert!(
            matches!(all.to_reference(), GitReference::Commit { branch: Some(b), .. } if b == "main")
        );
        let tag_and_branch = GitRef {
            commit: None,
            semver: None,
            ..all
        };
        assert_eq!(
            tag_and_branch.to_reference(),
            GitReference::Tag("v1".into())
        );
    }

    #[test]
    fn crd_is_structural_with_status_subresource() {
        let crd = GitSync::crd();
        assert_eq!(crd.spec.group, GROUP);
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, VERSION);
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let schema = serde_json::to_value(&version.schema).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], serde_json::json!(["interval"]));
        assert_eq!(
            spec["properties"]["renderer"]["enum"],
            serde_json::json!(["auto", "plain", "kustomize", "helm"])
        );
    }
}
