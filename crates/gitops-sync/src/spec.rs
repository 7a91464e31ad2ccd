//! The spec of a sync unit, [`SyncSpec`] and its parts: serde types that a CLI, a
//! configuration file or a custom resource fill in. They need no kube-runtime; with the
//! `controller` feature they also derive `schemars::JsonSchema` for a CRD, and the controller
//! kit re-exports them under `gitops_sync::controller`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gitops_source::GitReference;
use serde::{Deserialize, Serialize};

/// What to keep in sync and how: a source, a path in it, one renderer, the inventory,
/// substitution and the apply options. Embed it in the spec of a custom resource of your own
/// (with `#[serde(flatten)]`, or as a field) and give it to the reconcile function through
/// the controller kit's `SyncResource` (feature `controller`).
///
/// ```
/// use gitops_sync::spec::SyncSpec;
/// let spec: SyncSpec = serde_json::from_value(serde_json::json!({
///     "source": {"url": "https://git.example.com/team/config.git", "ref": {"branch": "main"}},
///     "path": "clusters/prod",
///     "interval": "5m",
///     "sparse": true,
/// }))?;
/// assert!(spec.prune && !spec.wait && spec.sparse);
/// assert_eq!(spec.settings()?.interval.as_secs(), 300);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(feature = "controller", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SyncSpec {
    /// Where the configuration comes from.
    pub source: SourceSpec,
    /// The directory to render, relative to the source's root (default `.`).
    #[serde(default = "default_path")]
    pub path: String,
    /// How often to fetch and to correct drift, as a Go duration (`30s`, `5m`, `1h30m`).
    #[cfg_attr(
        feature = "controller",
        schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))
    )]
    pub interval: String,
    /// How to render `path`.
    #[serde(default)]
    pub renderer: RendererSpec,
    /// Where the list of applied objects is kept (default: in the resource's status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventorySpec>,
    /// `${VAR}` substitution in the rendered objects (Flux's `postBuild.substitute`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub substitute: BTreeMap<String, String>,
    /// Whether objects that leave the set (and all of them when the resource is deleted) are
    /// deleted. Default true.
    #[serde(default = "default_true")]
    pub prune: bool,
    /// Wait for the applied objects to become Current (kstatus) before reporting Ready.
    #[serde(default)]
    pub wait: bool,
    /// How long to wait with `wait`, as a Go duration (default: the interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "controller",
        schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))
    )]
    pub timeout: Option<String>,
    /// Recreate objects whose immutable fields changed (delete, then create).
    #[serde(default)]
    pub force: bool,
    /// Sets the namespace of every namespaced object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// Stop reconciling (nothing is fetched, applied or pruned) until set back to false.
    #[serde(default)]
    pub suspend: bool,
    /// Fetch only what the render of `path` reads (default false: every file of the
    /// revision): the files below `path`, and, followed transitively, the paths its
    /// kustomizations name (resources, bases, components, patches, generator files and the
    /// rest, keys in any case), a chart's `file://` dependencies and the Helm values files.
    /// A small folder of a large repository then costs little to write; the revision is
    /// still the whole commit's. A render that reads a path outside these (a file named by
    /// something the reference finder does not read) fails with an error naming the
    /// kustomization or chart, the field and the missing path: it never renders with a file
    /// missing.
    #[serde(default)]
    pub sparse: bool,
}

/// The same defaults as a spec that leaves the fields out; no source and no interval.
impl Default for SyncSpec {
    fn default() -> Self {
        Self {
            source: SourceSpec::default(),
            path: default_path(),
            interval: String::new(),
            renderer: RendererSpec::default(),
            inventory: None,
            substitute: BTreeMap::new(),
            prune: true,
            wait: false,
            timeout: None,
            force: false,
            target_namespace: None,
            suspend: false,
            sparse: false,
        }
    }
}

fn default_path() -> String {
    ".".to_owned()
}

fn default_true() -> bool {
    true
}

/// A Git repository, the revision to follow and the secret with its credentials; or, for
/// development and tests, a directory on the controller's file system. Exactly one of `url`
/// and `localPath` is set.
///
/// ```
/// use gitops_sync::spec::{GitRef, SourceSpec};
/// let source = SourceSpec {
///     url: Some("ssh://git@git.example.com/team/config.git".into()),
///     reference: Some(GitRef { tag: Some("v1.2.0".into()), ..GitRef::default() }),
///     ..SourceSpec::default()
/// };
/// assert!(source.local_path.is_none());
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "controller", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// The repository (`file://`, `git://`, `http(s)://`, `ssh://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Which revision of `url` to follow; the remote's default branch when absent.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<GitRef>,
    /// A Secret in the resource's namespace with the credentials, under Flux's keys:
    /// `username` and `password`, `bearerToken`, or `identity` (an SSH private key, with
    /// `password` as its passphrase) and `known_hosts`; `ca.crt` for extra certificate
    /// authorities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// An absolute directory on the controller's file system instead of a repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_path: Option<String>,
}

/// The name of a Secret in the resource's namespace.
///
/// ```
/// let secret = gitops_sync::spec::SecretRef { name: "git-credentials".into() };
/// assert_eq!(secret.name, "git-credentials");
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "controller", derive(schemars::JsonSchema))]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
}

/// The revision of a repository to follow; the first set of `commit`, `name`, `semver`, `tag`, `branch`
/// wins (Flux's precedence).
///
/// ```
/// use gitops_source::GitReference;
/// use gitops_sync::spec::GitRef;
/// let reference = GitRef { branch: Some("main".into()), tag: Some("v1".into()), ..GitRef::default() };
/// assert_eq!(reference.to_reference(), GitReference::Tag("v1".into()));
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "controller", derive(schemars::JsonSchema))]
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
    /// A full ref name such as `refs/pull/1/head` (Flux's `ref.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The spec form of a reference, which [`GitRef::to_reference`] turns back into it.
///
/// ```
/// use gitops_source::GitReference;
/// use gitops_sync::spec::GitRef;
/// let reference = GitReference::RefName("refs/pull/1/head".into());
/// assert_eq!(GitRef::from(&reference).to_reference(), reference);
/// ```
impl From<&GitReference> for GitRef {
    fn from(reference: &GitReference) -> Self {
        let mut spec = Self::default();
        match reference {
            GitReference::DefaultBranch => {}
            GitReference::Branch(name) => spec.branch = Some(name.clone()),
            GitReference::Tag(name) => spec.tag = Some(name.clone()),
            GitReference::SemverRange(range) => spec.semver = Some(range.clone()),
            GitReference::RefName(name) => spec.name = Some(name.clone()),
            GitReference::Commit { sha1, branch } => {
                spec.commit = Some(sha1.clone());
                spec.branch.clone_from(branch);
            }
        }
        spec
    }
}

impl GitRef {
    /// The reference, with Flux's precedence: commit, name, semver, tag, branch.
    ///
    /// ```
    /// use gitops_source::GitReference;
    /// assert_eq!(gitops_sync::spec::GitRef::default().to_reference(), GitReference::DefaultBranch);
    /// ```
    #[must_use]
    pub fn to_reference(&self) -> GitReference {
        if let Some(sha1) = &self.commit {
            GitReference::Commit {
                sha1: sha1.clone(),
                branch: self.branch.clone(),
            }
        } else if let Some(name) = &self.name {
            GitReference::RefName(name.clone())
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

/// Reads a reference the way a command line takes it: `branch:NAME`, `tag:NAME`,
/// `semver:RANGE` explicitly; 40 hexadecimal digits are a commit, `refs/...` a full ref name, a
/// version such as `v1.2.3` a tag, a range such as `^1.2`, `>=1.0.0, <2.0.0`, `1.x` or `*` the
/// highest matching tag, anything else (`main`) a branch.
///
/// ```
/// use gitops_source::GitReference;
/// use gitops_sync::spec::GitRef;
/// let parse = |text: &str| text.parse::<GitRef>().map(|r| r.to_reference());
/// assert_eq!(parse("main")?, GitReference::Branch("main".into()));
/// assert_eq!(parse("v1.4.0")?, GitReference::Tag("v1.4.0".into()));
/// assert_eq!(parse("^1.4")?, GitReference::SemverRange("^1.4".into()));
/// assert_eq!(parse("tag:stable")?, GitReference::Tag("stable".into()));
/// # Ok::<(), gitops_sync::spec::SpecError>(())
/// ```
impl std::str::FromStr for GitRef {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        parse_reference(text).map(|reference| Self::from(&reference))
    }
}

fn parse_reference(text: &str) -> Result<GitReference, SpecError> {
    let invalid = |reason: &str| SpecError::Reference {
        text: text.to_owned(),
        reason: reason.to_owned(),
    };
    let text = text.trim();
    let semver_range = |range: &str| {
        semver::VersionReq::parse(range)
            .map(|_| GitReference::SemverRange(range.to_owned()))
            .map_err(|error| invalid(&format!("not a semver range: {error}")))
    };
    let named = |name: &str, make: fn(String) -> GitReference| {
        (!name.is_empty())
            .then(|| make(name.to_owned()))
            .ok_or_else(|| invalid("the name after the prefix is empty"))
    };
    if text.is_empty() {
        return Err(invalid("it is empty"));
    } else if let Some(name) = text.strip_prefix("branch:") {
        return named(name, GitReference::Branch);
    } else if let Some(name) = text.strip_prefix("tag:") {
        return named(name, GitReference::Tag);
    } else if let Some(range) = text.strip_prefix("semver:") {
        return semver_range(range);
    } else if text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let sha1 = text.to_ascii_lowercase();
        return Ok(GitReference::Commit { sha1, branch: None });
    } else if text.starts_with("refs/") {
        return Ok(GitReference::RefName(text.to_owned()));
    }
    let unprefixed = text.strip_prefix('v').unwrap_or(text);
    if semver::Version::parse(unprefixed).is_ok() {
        return Ok(GitReference::Tag(text.to_owned()));
    }
    let range_chars = text.contains(['^', '~', '>', '<', '=', '*', ',']);
    if range_chars || unprefixed.ends_with(".x") || unprefixed.contains(".x.") {
        return semver_range(text);
    }
    Ok(GitReference::Branch(text.to_owned()))
}

/// One renderer spec for plain files, Kustomize and Helm.
///
/// ```
/// use gitops_sync::spec::{RendererKind, RendererSpec};
/// let spec: RendererSpec = serde_json::from_value(serde_json::json!({
///     "kind": "helm", "helm": {"releaseName": "web", "values": {"replicas": 2}}
/// }))?;
/// assert_eq!(spec.kind, RendererKind::Helm);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "controller", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RendererSpec {
    /// Which renderer (default `auto`).
    #[serde(default)]
    pub kind: RendererKind,
    /// Helm's settings, for `kind: helm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSpec>,
}

/// Which renderer a [`RendererSpec`] names.
///
/// ```
/// assert_eq!(gitops_sync::spec::RendererKind::default(), gitops_sync::spec::RendererKind::Auto);
/// ```
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "controller", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RendererKind {
    /// Kustomize when the directory has a kustomization, plain files otherwise.
    #[default]
    Auto,
    /// YAML and JSON files.
    Plain,
    /// `kustomize build`.
    Kustomize,
    /// `helm template` of the chart in the directory.
    Helm,
}

impl RendererKind {
    /// The spec's name of the kind: `auto`, `plain`, `kustomize` or `helm`.
    ///
    /// ```
    /// assert_eq!(gitops_sync::spec::RendererKind::Kustomize.as_str(), "kustomize");
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Plain => "plain",
            Self::Kustomize => "kustomize",
            Self::Helm => "helm",
        }
    }
}

/// Helm's settings.
///
/// ```
/// let helm = gitops_sync::spec::HelmSpec { release_name: Some("web".into()), ..Default::default() };
/// assert!(helm.values_files.is_empty());
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "controller", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HelmSpec {
    /// The release name. Default: the resource's name with the controller kit; elsewhere the
    /// name of the chart's directory (the chart's own name when the chart is the source's root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// Values files, relative to the chart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<PathBuf>,
    /// Inline values (a mapping), applied after the files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "controller", schemars(extend("x-kubernetes-preserve-unknown-fields" = true)))]
    pub values: Option<serde_json::Value>,
    /// The release namespace (`.Release.Namespace`); default: the target namespace, else the
    /// resource's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Whether the chart's `crds/` directory is rendered too (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_crds: Option<bool>,
}

impl HelmSpec {
    /// Whether the chart's CRDs are rendered: `include_crds`, true when unset.
    ///
    /// ```
    /// let mut helm = gitops_sync::spec::HelmSpec::default();
    /// assert!(helm.includes_crds());
    /// helm.include_crds = Some(false);
    /// assert!(!helm.includes_crds());
    /// ```
    #[must_use]
    pub fn includes_crds(&self) -> bool {
        self.include_crds.unwrap_or(true)
    }
}

/// Where the inventory is kept.
///
/// ```
/// let inventory = gitops_sync::spec::InventorySpec { config_map: Some("apps-inventory".into()) };
/// assert!(inventory.config_map.is_some());
/// ```
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "controller", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct InventorySpec {
    /// A ConfigMap of this name in the resource's namespace instead of the resource's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
}

impl InventorySpec {
    /// An inventory ConfigMap named after `source` and `path`, for a program that names none:
    /// `gitops-<hash>`, where `<hash>` is the first 12 hex digits of the SHA-256 of the
    /// normalised source (a Git URL without a trailing `/` or `.git`, or the local path as
    /// given: make it absolute first) and the normalised path. Units of different
    /// repositories or folders thus never share an inventory (so neither prunes the other's
    /// objects), and the same one always gets the same.
    ///
    /// ```
    /// use gitops_sync::spec::{InventorySpec, SourceSpec};
    /// let git = |url: &str| SourceSpec { url: Some(url.into()), ..SourceSpec::default() };
    /// let a = InventorySpec::derived(&git("https://example.com/a.git"), "./apps/");
    /// assert!(a.config_map.as_deref().is_some_and(|name| name.starts_with("gitops-")));
    /// assert_eq!(a, InventorySpec::derived(&git("https://example.com/a/"), "apps"));
    /// assert_ne!(a, InventorySpec::derived(&git("https://example.com/b.git"), "apps"));
    /// assert_ne!(a, InventorySpec::derived(&git("https://example.com/a.git"), "."));
    /// ```
    #[must_use]
    pub fn derived(source: &SourceSpec, path: &str) -> Self {
        use sha2::Digest as _;
        let source = match (&source.url, &source.local_path) {
            (Some(url), _) => {
                let url = url.trim().trim_end_matches('/');
                let url = url.strip_suffix(".git").unwrap_or(url);
                format!("git:{}", url.trim_end_matches('/'))
            }
            (None, path) => format!("dir:{}", path.as_deref().unwrap_or_default()),
        };
        let path: Vec<String> = std::path::Path::new(path)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let digest = sha2::Sha256::digest(format!("{source}\n{}", path.join("/")).as_bytes());
        let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Self {
            config_map: Some(format!("gitops-{hash}")),
        }
    }
}

/// Why a [`SyncSpec`] cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// Both or neither of `source.url` and `source.localPath`.
    #[error("spec.source: exactly one of url and localPath must be set")]
    SourceChoice,
    /// `ref` or `secretRef` was given for a local path.
    #[error("spec.source.ref and spec.source.secretRef apply only to spec.source.url")]
    RefWithoutUrl,
    /// `localPath` is not absolute.
    #[error("spec.source.localPath {} must be an absolute path", gitops_core::escape::Escaped(.path))]
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
    /// A Git reference's text cannot be understood.
    #[error("invalid Git reference {}: {reason}", gitops_core::escape::Escaped(.text))]
    Reference {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A zero interval would reconcile in a hot loop.
    #[error("spec.interval must be greater than zero")]
    ZeroInterval,
}

/// The spec's durations and source, checked.
///
/// ```
/// use gitops_sync::spec::{SourceSpec, SyncSpec};
/// let spec = SyncSpec {
///     source: SourceSpec { local_path: Some("/srv/config".into()), ..SourceSpec::default() },
///     interval: "1h30m".into(),
///     ..SyncSpec::default()
/// };
/// let settings = spec.settings()?;
/// assert_eq!((settings.interval.as_secs(), settings.timeout.as_secs()), (5400, 5400));
/// # Ok::<(), gitops_sync::spec::SpecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncSettings {
    /// Where the content comes from.
    pub source: SourceLocation,
    /// How often to reconcile.
    pub interval: Duration,
    /// How long to wait for health.
    pub timeout: Duration,
}

/// Where a [`SyncSpec`]'s content comes from.
///
/// ```
/// let local = gitops_sync::spec::SourceLocation::Local("/srv/config".into());
/// assert!(matches!(local, gitops_sync::spec::SourceLocation::Local(_)));
/// ```
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

impl SyncSpec {
    /// Checks the spec and converts its durations and source.
    ///
    /// ```
    /// use gitops_sync::spec::SyncSpec;
    /// let spec = SyncSpec { interval: "1m".into(), ..SyncSpec::default() };
    /// assert_eq!(spec.settings().unwrap_err().to_string(), "spec.source: exactly one of url and localPath must be set");
    /// ```
    ///
    /// # Errors
    /// [`SpecError`] naming the field.
    pub fn settings(&self) -> Result<SyncSettings, SpecError> {
        let source = match (&self.source.url, &self.source.local_path) {
            (Some(url), None) => SourceLocation::Git {
                url: url.clone(),
                reference: self
                    .source
                    .reference
                    .as_ref()
                    .map_or(GitReference::DefaultBranch, GitRef::to_reference),
            },
            (None, Some(path)) => {
                if self.source.reference.is_some() || self.source.secret_ref.is_some() {
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
            interval,
            timeout,
        })
    }
}

/// Why a Go duration does not parse.
///
/// ```
/// let error = gitops_sync::spec::parse_go_duration("soon").unwrap_err();
/// assert_eq!(error.problem, "a unit without a number");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a duration such as 30s, 5m or 1h30m: {problem}", gitops_core::escape::Escaped(.text))]
pub struct DurationError {
    /// The text.
    pub text: String,
    /// What is wrong.
    pub problem: &'static str,
}

/// Parses a Go duration: one or more `<number><unit>` with units `ms`, `s`, `m`, `h` (a
/// decimal fraction allowed), as Flux's `interval` fields take.
///
/// ```
/// use gitops_sync::spec::parse_go_duration;
/// assert_eq!(parse_go_duration("1h30m")?.as_secs(), 5400);
/// assert_eq!(parse_go_duration("1.5s")?.as_millis(), 1500);
/// assert!(parse_go_duration("5 minutes").is_err());
/// # Ok::<(), gitops_sync::spec::DurationError>(())
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
        total = total
            .checked_add(
                Duration::try_from_secs_f64(number * seconds_per_unit)
                    .map_err(|_| error("out of range"))?,
            )
            .ok_or_else(|| error("out of range"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_classified() {
        let hash = "0123456789abcdef0123456789ABCDEF01234567";
        let commit = GitReference::Commit {
            sha1: hash.to_ascii_lowercase(),
            branch: None,
        };
        for (text, expected) in [
            (hash, commit),
            (
                "refs/pull/1/head",
                GitReference::RefName("refs/pull/1/head".into()),
            ),
            ("1.2.3", GitReference::Tag("1.2.3".into())),
            (
                ">=1.0.0, <2.0.0",
                GitReference::SemverRange(">=1.0.0, <2.0.0".into()),
            ),
            ("1.x", GitReference::SemverRange("1.x".into())),
            ("feature/x", GitReference::Branch("feature/x".into())),
            ("branch:v1.0.0", GitReference::Branch("v1.0.0".into())),
        ] {
            assert_eq!(parse_reference(text).unwrap(), expected, "{text}");
        }
        for bad in ["", "  ", "tag:", "semver:>>1", ">=x"] {
            assert!(parse_reference(bad).is_err(), "{bad:?} must be refused");
        }
    }

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
        for bad in [
            "",
            "5",
            "m",
            "5d",
            "1h 2m",
            "-1s",
            "1..5s",
            "99999999999999999999h",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn every_reference_round_trips_and_helm_takes_the_cli_fields() {
        for reference in [
            GitReference::DefaultBranch,
            GitReference::Branch("main".into()),
            GitReference::Tag("v1".into()),
            GitReference::SemverRange("^1".into()),
            GitReference::RefName("refs/pull/1/head".into()),
            GitReference::Commit {
                sha1: "ab".repeat(20),
                branch: Some("main".into()),
            },
        ] {
            assert_eq!(GitRef::from(&reference).to_reference(), reference);
        }
        let helm: HelmSpec = serde_json::from_value(serde_json::json!({
            "namespace": "web", "includeCrds": false
        }))
        .unwrap();
        assert_eq!(helm.namespace.as_deref(), Some("web"));
        assert!(!helm.includes_crds());
        assert!(HelmSpec::default().includes_crds());
    }

    #[test]
    fn spec_defaults_and_checks() {
        let spec: SyncSpec = serde_json::from_value(serde_json::json!({
            "source": {"url": "file:///r"}, "interval": "1m"
        }))
        .unwrap();
        assert_eq!(spec.path, ".");
        assert!(spec.prune && !spec.force && !spec.wait);
        assert_eq!(spec.renderer.kind, RendererKind::Auto);
        assert!(!spec.sparse, "sparse is off unless asked for");
        let sparse: SyncSpec = serde_json::from_value(serde_json::json!({
            "source": {"url": "file:///r"}, "interval": "1m", "sparse": true
        }))
        .unwrap();
        assert!(sparse.sparse);
        assert_eq!(serde_json::to_value(&sparse).unwrap()["sparse"], true);
        let defaults = SyncSpec {
            source: SourceSpec {
                url: Some("file:///r".into()),
                ..SourceSpec::default()
            },
            interval: "1m".into(),
            ..SyncSpec::default()
        };
        assert_eq!(defaults, spec, "Default agrees with the serde defaults");
        let settings = spec.settings().unwrap();
        assert_eq!(settings.timeout, Duration::from_secs(60));
        let mut both = spec.clone();
        both.source.local_path = Some("/x".into());
        assert!(matches!(both.settings(), Err(SpecError::SourceChoice)));
        let mut relative = spec.clone();
        relative.source = SourceSpec {
            local_path: Some("x\n".into()),
            ..SourceSpec::default()
        };
        let error = relative.settings().unwrap_err().to_string();
        assert!(!error.contains('\n'), "{error}");
        let zero = SyncSpec {
            interval: "0s".into(),
            ..spec.clone()
        };
        assert!(matches!(zero.settings(), Err(SpecError::ZeroInterval)));
        let bad_timeout = SyncSpec {
            timeout: Some("soon".into()),
            ..spec
        };
        assert_eq!(
            bad_timeout.settings().unwrap_err().to_string(),
            "spec.timeout: soon is not a duration such as 30s, 5m or 1h30m: a unit without a number"
        );
    }
}
