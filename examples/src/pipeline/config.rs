//! [`SyncConfig`]: what one sync unit fetches, how it renders, and how it applies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gitops_apply::{ConfigMapInventory, DEFAULT_FIELD_MANAGER, InventoryError};
use gitops_render::HookPolicy;
use gitops_source::{GitCredentials, GitReference};
use gitops_sync::spec::{GitRef, InventorySpec, RendererKind, RendererSpec, SourceSpec};

/// Why a [`SyncConfig`] is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The Git reference text cannot be understood.
    #[error("invalid Git reference {text:?}: {reason}")]
    InvalidReference {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The inventory location is not `namespace/name`, or not valid label values.
    #[error("invalid inventory location {location:?}: expected <namespace>/<name>")]
    InvalidInventory {
        /// The location as given.
        location: String,
        /// Why the store refused it, when it did.
        #[source]
        source: Option<InventoryError>,
    },
    /// The subpath would leave the source.
    #[error("subpath {subpath:?} must be relative and stay inside the source (no `..`)")]
    InvalidSubpath {
        /// The subpath as given.
        subpath: String,
    },
    /// The field manager is empty.
    #[error("the field manager must not be empty")]
    EmptyFieldManager,
    /// The Helm release name is not a valid release name.
    #[error(
        "invalid Helm release name {release:?}: use at most 53 lower-case letters, digits and '-'"
    )]
    InvalidRelease {
        /// The name as given.
        release: String,
    },
    /// A renderer needs kustomize or helm, and it was not found: neither given
    /// ([`SyncConfigBuilder::kustomize_binary`], `--kustomize`), nor named by
    /// `GITOPS_KUSTOMIZE` / `GITOPS_HELM`, nor on `PATH`; or the path given is not an executable
    /// file.
    #[error(transparent)]
    Tool(#[from] gitops_render::tool::LocateError),
    /// The environment variable that should hold a secret is not set.
    #[error("the environment variable {variable} is not set (or not UTF-8)")]
    MissingSecret {
        /// The variable.
        variable: String,
    },
    /// A file the configuration names cannot be read.
    #[error("reading the {what} file {path}")]
    ReadFile {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The source could not be set up (invalid URL, credentials, reference).
    #[error("invalid source")]
    Source(#[source] gitops_source::SourceError),
    /// The sync unit could not be set up (its artifact store).
    #[error("setting up the sync unit")]
    Unit(#[source] Box<gitops_sync::SyncError>),
    /// The working directory could not be prepared.
    #[error("preparing the working directory {path}")]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// A source of the library's spec: the Git repository `url` followed at `reference` (its
/// credentials travel beside it, [`SyncConfigBuilder::git_credentials`]).
///
/// ```
/// use gitops_examples::pipeline::{git_source, parse_git_reference, source_location};
/// let source = git_source("https://example.com/config.git", &parse_git_reference("main")?);
/// assert_eq!(source_location(&source), "https://example.com/config.git (branch \"main\")");
/// # Ok::<(), gitops_examples::pipeline::ConfigError>(())
/// ```
#[must_use]
pub fn git_source(url: impl Into<String>, reference: &GitReference) -> SourceSpec {
    SourceSpec {
        url: Some(url.into()),
        reference: Some(GitRef::from(reference)),
        ..SourceSpec::default()
    }
}

/// A source of the library's spec: a directory on disk (its revision is the digest of its
/// content).
///
/// ```
/// let source = gitops_examples::pipeline::local_source("./deploy");
/// assert_eq!(source.local_path.as_deref(), Some("./deploy"));
/// ```
#[must_use]
pub fn local_source(path: impl AsRef<Path>) -> SourceSpec {
    SourceSpec {
        local_path: Some(path.as_ref().to_string_lossy().into_owned()),
        ..SourceSpec::default()
    }
}

/// A short description of `source` for logs, without credentials (also those written into a
/// URL, `https://user:token@host/...`). See [`git_source`] for an example.
#[must_use]
pub fn source_location(source: &SourceSpec) -> String {
    match (&source.url, &source.local_path) {
        (Some(url), _) => format!("{} ({})", strip_userinfo(url), git_reference(source)),
        (None, Some(path)) => path.clone(),
        (None, None) => String::new(),
    }
}

/// The reference a Git source follows (the default branch when it names none).
pub(crate) fn git_reference(source: &SourceSpec) -> GitReference {
    source
        .reference
        .as_ref()
        .map_or(GitReference::DefaultBranch, GitRef::to_reference)
}

/// `https://user:token@host/x` without `user:token@`.
fn strip_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{path}"),
        None => url.to_owned(),
    }
}

/// Reads a Git reference the way the command line takes it:
///
/// | text | reference |
/// |---|---|
/// | `branch:NAME`, `tag:NAME`, `semver:RANGE` | that kind, explicitly |
/// | 40 hexadecimal digits | a commit |
/// | `refs/...` | a full ref name |
/// | a version such as `v1.2.3` or `1.2.3` | a tag |
/// | a range such as `^1.2`, `>=1.0.0, <2.0.0`, `1.x`, `*` | the highest matching tag |
/// | anything else, such as `main` | a branch |
///
/// ```
/// use gitops_examples::pipeline::parse_git_reference;
/// use gitops_source::GitReference;
/// assert_eq!(parse_git_reference("main")?, GitReference::Branch("main".into()));
/// assert_eq!(parse_git_reference("v1.4.0")?, GitReference::Tag("v1.4.0".into()));
/// assert_eq!(parse_git_reference("^1.4")?, GitReference::SemverRange("^1.4".into()));
/// assert_eq!(parse_git_reference("tag:stable")?, GitReference::Tag("stable".into()));
/// # Ok::<(), gitops_examples::pipeline::ConfigError>(())
/// ```
///
/// # Errors
/// [`ConfigError::InvalidReference`] for an empty name or an invalid semver range.
pub fn parse_git_reference(text: &str) -> Result<GitReference, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidReference {
        text: text.to_owned(),
        reason: reason.to_owned(),
    };
    let text_trimmed = text.trim();
    if text_trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    let semver_range = |range: &str| {
        semver::VersionReq::parse(range)
            .map(|_| GitReference::SemverRange(range.to_owned()))
            .map_err(|error| invalid(&format!("not a semver range: {error}")))
    };
    let named = |name: &str, make: fn(String) -> GitReference| {
        if name.is_empty() {
            Err(invalid("the name after the prefix is empty"))
        } else {
            Ok(make(name.to_owned()))
        }
    };
    if let Some(name) = text_trimmed.strip_prefix("branch:") {
        return named(name, GitReference::Branch);
    }
    if let Some(name) = text_trimmed.strip_prefix("tag:") {
        return named(name, GitReference::Tag);
    }
    if let Some(range) = text_trimmed.strip_prefix("semver:") {
        return semver_range(range);
    }
    if text_trimmed.len() == 40 && text_trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(GitReference::Commit {
            sha1: text_trimmed.to_ascii_lowercase(),
            branch: None,
        });
    }
    if text_trimmed.starts_with("refs/") {
        return Ok(GitReference::RefName(text_trimmed.to_owned()));
    }
    let unprefixed = text_trimmed.strip_prefix('v').unwrap_or(text_trimmed);
    if semver::Version::parse(unprefixed).is_ok() {
        return Ok(GitReference::Tag(text_trimmed.to_owned()));
    }
    let looks_like_range = text_trimmed
        .chars()
        .any(|c| matches!(c, '^' | '~' | '>' | '<' | '=' | '*' | ','))
        || unprefixed.ends_with(".x")
        || unprefixed.contains(".x.");
    if looks_like_range {
        return semver_range(text_trimmed);
    }
    Ok(GitReference::Branch(text_trimmed.to_owned()))
}

/// Where the inventory of applied objects is kept: a ConfigMap `namespace/name`, the command
/// line's form of the library's [`InventorySpec`] (which names the ConfigMap only; the
/// namespace is the resource's in the controller kit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryLocation {
    /// The ConfigMap's namespace (must exist).
    pub namespace: String,
    /// The ConfigMap's name.
    pub name: String,
}

impl InventoryLocation {
    /// The fixed location `default/gitops-rs`. No longer the default: every sync naming it
    /// shares one inventory, so syncing another source there prunes the first one's objects
    /// (see [`InventoryLocation::derived`]).
    #[must_use]
    pub fn default_location() -> Self {
        Self {
            namespace: "default".to_owned(),
            name: "gitops-rs".to_owned(),
        }
    }
}

impl InventoryLocation {
    /// The inventory a sync of `source` at `subpath` uses when none is named: ConfigMap
    /// `gitops-<hash>` in `namespace` (the target namespace) or `default`, where `<hash>` is the
    /// first 12 hex digits of the SHA-256 of the normalised source (a Git URL without a
    /// trailing `/` or `.git`, or a local directory made absolute) and the normalised subpath.
    /// Two applications synced from different repositories or folders thus never share an
    /// inventory, so neither prunes the other's objects; the same one always gets the same.
    ///
    /// ```
    /// use gitops_examples::pipeline::{InventoryLocation, git_source};
    /// use gitops_source::GitReference;
    ///
    /// let a = git_source("https://example.com/a.git", &GitReference::DefaultBranch);
    /// let a_again = git_source("https://example.com/a/", &GitReference::DefaultBranch);
    /// let b = git_source("https://example.com/b.git", &GitReference::DefaultBranch);
    /// let location = InventoryLocation::derived(&a, "./apps/", None);
    /// assert_eq!(location.namespace, "default");
    /// assert!(location.name.starts_with("gitops-"));
    /// assert_eq!(location, InventoryLocation::derived(&a_again, "apps", None));
    /// assert_ne!(location, InventoryLocation::derived(&b, "apps", None));
    /// assert_ne!(location, InventoryLocation::derived(&a, ".", None));
    /// assert_eq!(InventoryLocation::derived(&a, "apps", Some("shop")).namespace, "shop");
    /// ```
    #[must_use]
    pub fn derived(source: &SourceSpec, subpath: &str, namespace: Option<&str>) -> Self {
        use sha2::Digest as _;
        let source = match (&source.url, &source.local_path) {
            (Some(url), _) => {
                let url = url.trim().trim_end_matches('/');
                let url = url.strip_suffix(".git").unwrap_or(url);
                format!("git:{}", url.trim_end_matches('/'))
            }
            (None, path) => {
                let path = PathBuf::from(path.clone().unwrap_or_default());
                let absolute = std::fs::canonicalize(&path)
                    .or_else(|_| std::path::absolute(&path))
                    .unwrap_or_else(|_| path.clone());
                format!("dir:{}", absolute.to_string_lossy())
            }
        };
        let subpath: Vec<String> = Path::new(subpath)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let digest = sha2::Sha256::digest(format!("{source}\n{}", subpath.join("/")).as_bytes());
        let hash: String = digest
            .iter()
            .take(6)
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Self {
            namespace: namespace.unwrap_or("default").to_owned(),
            name: format!("gitops-{hash}"),
        }
    }
}

impl InventoryLocation {
    /// The library's spec of this inventory: the ConfigMap's name.
    ///
    /// ```
    /// let location: gitops_examples::pipeline::InventoryLocation = "ops/web".parse()?;
    /// assert_eq!(location.to_spec().config_map.as_deref(), Some("web"));
    /// # Ok::<(), gitops_examples::pipeline::ConfigError>(())
    /// ```
    #[must_use]
    pub fn to_spec(&self) -> InventorySpec {
        InventorySpec {
            config_map: Some(self.name.clone()),
        }
    }
}

impl std::str::FromStr for InventoryLocation {
    type Err = ConfigError;

    /// Reads `namespace/name`.
    ///
    /// ```
    /// use gitops_examples::pipeline::InventoryLocation;
    /// let location: InventoryLocation = "flux-system/apps".parse()?;
    /// assert_eq!(location.name, "apps");
    /// assert!("apps".parse::<InventoryLocation>().is_err());
    /// # Ok::<(), gitops_examples::pipeline::ConfigError>(())
    /// ```
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |source| ConfigError::InvalidInventory {
            location: text.to_owned(),
            source,
        };
        let (namespace, name) = text.split_once('/').ok_or_else(|| invalid(None))?;
        ConfigMapInventory::new(namespace, name).map_err(|e| invalid(Some(e)))?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl std::fmt::Display for InventoryLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Everything one sync unit needs: the source, the renderer, and how to apply. Build it with
/// [`SyncConfig::builder`].
///
/// ```
/// use std::time::Duration;
/// use gitops_examples::pipeline::{SyncConfig, git_source, parse_git_reference};
///
/// let config = SyncConfig::builder(git_source(
///         "https://example.com/config.git",
///         &parse_git_reference("main")?,
///     ))
///     .subpath("clusters/dev")
///     .target_namespace("shop")
///     .variable("ENV", "dev")
///     .inventory("shop/gitops".parse()?)
///     .wait_timeout(Duration::from_secs(120))
///     .build()?;
/// assert!(config.prune());
/// # Ok::<(), gitops_examples::pipeline::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SyncConfig {
    pub(crate) source: SourceSpec,
    pub(crate) credentials: Option<GitCredentials>,
    pub(crate) known_hosts: Option<String>,
    pub(crate) subpath: String,
    pub(crate) renderer: RendererSpec,
    pub(crate) variables: BTreeMap<String, String>,
    pub(crate) target_namespace: Option<String>,
    pub(crate) create_target_namespace: bool,
    pub(crate) field_manager: String,
    pub(crate) inventory: InventoryLocation,
    pub(crate) prune: bool,
    pub(crate) force: bool,
    pub(crate) wait_timeout: Option<Duration>,
    pub(crate) dry_run: bool,
    pub(crate) fetch_timeout: Duration,
    pub(crate) work_dir: Option<PathBuf>,
    pub(crate) kustomize_binary: Option<PathBuf>,
    pub(crate) helm_binary: Option<PathBuf>,
    pub(crate) recreate_on_immutable: bool,
    pub(crate) allow_empty_set: bool,
    pub(crate) allow_cascading_prune: bool,
    pub(crate) strict_substitution: bool,
    pub(crate) take_ownership: bool,
    pub(crate) helm_hooks: HookPolicy,
    pub(crate) helm_kube_version: Option<String>,
}

impl std::fmt::Debug for SyncConfig {
    /// Without credentials: the source as [`source_location`] prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncConfig")
            .field("source", &source_location(&self.source))
            .field("credentials", &self.credentials)
            .field("known_hosts", &self.known_hosts.as_ref().map(|_| "<set>"))
            .field("subpath", &self.subpath)
            .field("renderer", &self.renderer)
            .field("target_namespace", &self.target_namespace)
            .field("inventory", &self.inventory)
            .field("prune", &self.prune)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

impl SyncConfig {
    /// Starts a configuration for `source`, with the defaults: the whole source (`.`), the
    /// automatic renderer, no substitution, no target namespace, field manager
    /// [`DEFAULT_FIELD_MANAGER`], an inventory derived from the source and subpath
    /// ([`InventoryLocation::derived`]), prune on, force on (Git wins
    /// over other field managers, as with Flux), no wait,
    /// not a dry run, a 2-minute fetch timeout and a temporary working directory.
    pub fn builder(source: SourceSpec) -> SyncConfigBuilder {
        SyncConfigBuilder {
            config: Self {
                source,
                credentials: None,
                known_hosts: None,
                subpath: ".".to_owned(),
                renderer: RendererSpec::default(),
                variables: BTreeMap::new(),
                target_namespace: None,
                create_target_namespace: true,
                field_manager: DEFAULT_FIELD_MANAGER.to_owned(),
                inventory: InventoryLocation::default_location(),
                prune: true,
                force: true,
                wait_timeout: None,
                dry_run: false,
                fetch_timeout: Duration::from_secs(120),
                work_dir: None,
                kustomize_binary: None,
                helm_binary: None,
                recreate_on_immutable: false,
                allow_empty_set: false,
                allow_cascading_prune: false,
                strict_substitution: false,
                take_ownership: false,
                helm_hooks: HookPolicy::Skip,
                helm_kube_version: None,
            },
            inventory_named: false,
        }
    }

    /// Whether objects whose immutable fields change are recreated
    /// ([`SyncConfigBuilder::recreate_on_immutable`]).
    #[must_use]
    pub fn recreate_on_immutable(&self) -> bool {
        self.recreate_on_immutable
    }

    /// Whether an empty set may prune everything ([`SyncConfigBuilder::allow_empty_set`]).
    #[must_use]
    pub fn allow_empty_set(&self) -> bool {
        self.allow_empty_set
    }

    /// Whether a prune may delete objects of the set with a Namespace or CRD
    /// ([`SyncConfigBuilder::allow_cascading_prune`]).
    #[must_use]
    pub fn allow_cascading_prune(&self) -> bool {
        self.allow_cascading_prune
    }

    /// Whether a variable without a value is an error
    /// ([`SyncConfigBuilder::strict_substitution`]).
    #[must_use]
    pub fn strict_substitution(&self) -> bool {
        self.strict_substitution
    }

    /// Whether objects of another inventory are taken over
    /// ([`SyncConfigBuilder::take_ownership`]).
    #[must_use]
    pub fn take_ownership(&self) -> bool {
        self.take_ownership
    }

    /// What Helm does with hooks ([`SyncConfigBuilder::helm_hooks`]).
    #[must_use]
    pub fn helm_hooks(&self) -> HookPolicy {
        self.helm_hooks
    }

    /// The Kubernetes version given for Helm, if any ([`SyncConfigBuilder::helm_kube_version`]).
    #[must_use]
    pub fn helm_kube_version(&self) -> Option<&str> {
        self.helm_kube_version.as_deref()
    }

    /// The source.
    #[must_use]
    pub fn source(&self) -> &SourceSpec {
        &self.source
    }

    /// The directory rendered, relative to the source root.
    #[must_use]
    pub fn subpath(&self) -> &str {
        &self.subpath
    }

    /// The renderer.
    #[must_use]
    pub fn renderer(&self) -> &RendererSpec {
        &self.renderer
    }

    /// The substitution variables (`${NAME}`); none means no substitution step.
    #[must_use]
    pub fn variables(&self) -> &BTreeMap<String, String> {
        &self.variables
    }

    /// The namespace every namespaced object is put in, if any.
    #[must_use]
    pub fn target_namespace(&self) -> Option<&str> {
        self.target_namespace.as_deref()
    }

    /// The field manager of server-side apply.
    #[must_use]
    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    /// Where the inventory is kept.
    #[must_use]
    pub fn inventory(&self) -> &InventoryLocation {
        &self.inventory
    }

    /// Whether objects that leave the set are deleted.
    #[must_use]
    pub fn prune(&self) -> bool {
        self.prune
    }

    /// How long to wait for the applied objects to become Current; `None` does not wait.
    #[must_use]
    pub fn wait_timeout(&self) -> Option<Duration> {
        self.wait_timeout
    }

    /// Whether nothing is written (plan and diff only).
    #[must_use]
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Where artifacts and the Git cache go; a temporary directory when `None`.
    #[must_use]
    pub fn work_dir(&self) -> Option<&Path> {
        self.work_dir.as_deref()
    }
}

/// Builds a [`SyncConfig`]; [`build`](Self::build) checks it.
#[derive(Clone, Debug)]
#[must_use]
pub struct SyncConfigBuilder {
    config: SyncConfig,
    /// Whether [`SyncConfigBuilder::inventory`] named one; else it is derived when built.
    inventory_named: bool,
}

impl SyncConfigBuilder {
    /// Renders this directory of the source (relative, default `.`). The whole source is
    /// fetched, so kustomizations may refer to bases outside the subpath.
    pub fn subpath(mut self, subpath: impl Into<String>) -> Self {
        self.config.subpath = subpath.into();
        self
    }

    /// The renderer (default [`RendererKind::Auto`]). With Helm, a release without a name is
    /// named after the chart's directory (`charts/web` renders release `web`; the chart's own
    /// name when the chart is the source root), as Argo CD names it after the application.
    pub fn renderer(mut self, renderer: RendererSpec) -> Self {
        self.config.renderer = renderer;
        self
    }

    /// Credentials for a Git source: read from files or the environment by the command line,
    /// they travel beside the spec, whose `secretRef` names a cluster Secret instead. Ignored
    /// for a local directory.
    ///
    /// ```
    /// use gitops_examples::pipeline::{SyncConfig, git_source};
    /// use gitops_source::{GitCredentials, GitReference, Secret};
    /// let config = SyncConfig::builder(git_source("https://example.com/c.git", &GitReference::DefaultBranch))
    ///     .git_credentials(GitCredentials::BearerToken(Secret::new("t0ken")))
    ///     .known_hosts("example.com ssh-ed25519 AAAA")
    ///     .build()?;
    /// assert!(!format!("{config:?}").contains("t0ken"));
    /// # Ok::<(), gitops_examples::pipeline::ConfigError>(())
    /// ```
    pub fn git_credentials(mut self, credentials: GitCredentials) -> Self {
        self.config.credentials = Some(credentials);
        self
    }

    /// The known_hosts lines an `ssh` server's key must match. See
    /// [`SyncConfigBuilder::git_credentials`] for an example.
    pub fn known_hosts(mut self, known_hosts: impl Into<String>) -> Self {
        self.config.known_hosts = Some(known_hosts.into());
        self
    }

    /// Adds a substitution variable: `${name}` in the rendered objects becomes `value`.
    pub fn variable(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.variables.insert(name.into(), value.into());
        self
    }

    /// Puts every namespaced object in `namespace`, created when missing.
    pub fn target_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config.target_namespace = Some(namespace.into());
        self
    }

    /// Whether the target namespace is created when missing (default true).
    pub fn create_target_namespace(mut self, create: bool) -> Self {
        self.config.create_target_namespace = create;
        self
    }

    /// The field manager of server-side apply (default [`DEFAULT_FIELD_MANAGER`]).
    pub fn field_manager(mut self, field_manager: impl Into<String>) -> Self {
        self.config.field_manager = field_manager.into();
        self
    }

    /// Where the inventory is kept (default: [`InventoryLocation::derived`] from the source,
    /// the subpath and the target namespace). Its namespace must exist or be the target
    /// namespace, which the sync creates.
    pub fn inventory(mut self, location: InventoryLocation) -> Self {
        self.config.inventory = location;
        self.inventory_named = true;
        self
    }

    /// Whether objects that leave the set are deleted (default true). Never after a failed
    /// fetch or render, whatever this says.
    pub fn prune(mut self, prune: bool) -> Self {
        self.config.prune = prune;
        self
    }

    /// Takes over fields other field managers own (default true: Git wins, so that a manual
    /// `kubectl edit` is corrected as drift, as Flux does). Turn it off to leave fields other
    /// managers took alone; their conflicts are then reported as failures.
    pub fn force(mut self, force: bool) -> Self {
        self.config.force = force;
        self
    }

    /// Waits up to `timeout` for the applied objects to become Current (kstatus).
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.config.wait_timeout = Some(timeout);
        self
    }

    /// Plans and diffs only; writes nothing (default false).
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.config.dry_run = dry_run;
        self
    }

    /// The longest one fetch may take (default 2 minutes).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.config.fetch_timeout = timeout;
        self
    }

    /// Keeps artifacts and the Git cache in `dir` (reused across runs: later fetches of a Git
    /// source download only what is new) instead of a temporary directory.
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.work_dir = Some(dir.into());
        self
    }

    /// The kustomize binary (default: the one `GITOPS_KUSTOMIZE` names, else `kustomize` on
    /// `PATH`; see [`gitops_render::tool`]). It must exist and be executable.
    pub fn kustomize_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.kustomize_binary = Some(path.into());
        self
    }

    /// The helm binary (default: the one `GITOPS_HELM` names, else `helm` on `PATH`; see
    /// [`gitops_render::tool`]). It must exist and be executable.
    pub fn helm_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.helm_binary = Some(path.into());
        self
    }

    /// Deletes and creates again an object whose immutable fields change (default false: such
    /// an object fails, naming the fields).
    ///
    /// ```
    /// use gitops_examples::pipeline::{SyncConfig, local_source};
    /// let config = SyncConfig::builder(local_source("."))
    ///     .recreate_on_immutable(true)
    ///     .allow_empty_set(true)
    ///     .allow_cascading_prune(true)
    ///     .strict_substitution(true)
    ///     .build()?;
    /// assert!(config.recreate_on_immutable() && config.allow_empty_set());
    /// assert!(config.allow_cascading_prune() && config.strict_substitution());
    /// # Ok::<(), gitops_examples::pipeline::ConfigError>(())
    /// ```
    pub fn recreate_on_immutable(mut self, recreate: bool) -> Self {
        self.config.recreate_on_immutable = recreate;
        self
    }

    /// Accepts a set that renders empty even when that prunes everything the inventory lists
    /// (default false: such a sync fails before writing). See
    /// [`SyncConfigBuilder::recreate_on_immutable`] for an example.
    pub fn allow_empty_set(mut self, allow: bool) -> Self {
        self.config.allow_empty_set = allow;
        self
    }

    /// Prunes a Namespace or CRD even when objects of the set live in it or are of its kind
    /// (default false: such a sync fails before writing). See
    /// [`SyncConfigBuilder::recreate_on_immutable`] for an example.
    pub fn allow_cascading_prune(mut self, allow: bool) -> Self {
        self.config.allow_cascading_prune = allow;
        self
    }

    /// Takes over objects another inventory owns (their ownership labels name it): they are
    /// applied and labelled as ours. Default false: such an object is left alone and reported
    /// as skipped, so that two sets never take an object from each other on every run.
    ///
    /// ```
    /// use gitops_examples::pipeline::{SyncConfig, local_source};
    /// let config = SyncConfig::builder(local_source(".")).take_ownership(true).build()?;
    /// assert!(config.take_ownership());
    /// # Ok::<(), gitops_examples::pipeline::ConfigError>(())
    /// ```
    pub fn take_ownership(mut self, take: bool) -> Self {
        self.config.take_ownership = take;
        self
    }

    /// Makes a `${NAME}` without a value or a default an error (default false: it becomes
    /// empty). Substitution then runs even without variables. See
    /// [`SyncConfigBuilder::recreate_on_immutable`] for an example.
    pub fn strict_substitution(mut self, strict: bool) -> Self {
        self.config.strict_substitution = strict;
        self
    }

    /// What Helm does with a chart's hooks (`helm.sh/hook`): [`HookPolicy::Skip`] (the
    /// default) leaves them out with a warning, [`HookPolicy::Include`] keeps those other than
    /// tests. Test hooks are never applied.
    ///
    /// ```
    /// use gitops_examples::pipeline::{SyncConfig, local_source};
    /// use gitops_render::HookPolicy;
    /// let config = SyncConfig::builder(local_source("."))
    ///     .helm_hooks(HookPolicy::Include)
    ///     .helm_kube_version("v1.35.0")
    ///     .build()?;
    /// assert_eq!(config.helm_hooks(), HookPolicy::Include);
    /// assert_eq!(config.helm_kube_version(), Some("v1.35.0"));
    /// # Ok::<(), gitops_examples::pipeline::ConfigError>(())
    /// ```
    pub fn helm_hooks(mut self, hooks: HookPolicy) -> Self {
        self.config.helm_hooks = hooks;
        self
    }

    /// The Kubernetes version Helm renders for (`.Capabilities.KubeVersion`, a chart's
    /// `kubeVersion` constraint). Default: the cluster's, read by discovery before the first
    /// Helm render, with the API versions it serves. See [`SyncConfigBuilder::helm_hooks`]
    /// for an example.
    pub fn helm_kube_version(mut self, version: impl Into<String>) -> Self {
        self.config.helm_kube_version = Some(version.into());
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`ConfigError`] naming the bad field.
    pub fn build(self) -> Result<SyncConfig, ConfigError> {
        let mut config = self.config;
        check_subpath(&config.subpath)?;
        if !self.inventory_named {
            config.inventory = InventoryLocation::derived(
                &config.source,
                &config.subpath,
                config.target_namespace.as_deref(),
            );
        }
        if config.field_manager.trim().is_empty() {
            return Err(ConfigError::EmptyFieldManager);
        }
        ConfigMapInventory::new(&config.inventory.namespace, &config.inventory.name).map_err(
            |source| ConfigError::InvalidInventory {
                location: config.inventory.to_string(),
                source: Some(source),
            },
        )?;
        if config.renderer.kind == RendererKind::Helm
            && let Some(release) = config
                .renderer
                .helm
                .as_ref()
                .and_then(|helm| helm.release_name.as_ref())
        {
            let valid = !release.is_empty()
                && release.len() <= 53
                && release
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !release.starts_with('-')
                && !release.ends_with('-');
            if !valid {
                return Err(ConfigError::InvalidRelease {
                    release: release.clone(),
                });
            }
        }
        Ok(config)
    }
}

fn check_subpath(subpath: &str) -> Result<(), ConfigError> {
    let path = Path::new(subpath);
    let escapes = path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
    if subpath.is_empty() || escapes {
        return Err(ConfigError::InvalidSubpath {
            subpath: subpath.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitops_sync::spec::HelmSpec;

    #[test]
    fn references_are_classified() {
        let hash = "0123456789abcdef0123456789ABCDEF01234567";
        assert_eq!(
            parse_git_reference(hash).unwrap(),
            GitReference::Commit {
                sha1: hash.to_ascii_lowercase(),
                branch: None
            }
        );
        assert_eq!(
            parse_git_reference("refs/pull/1/head").unwrap(),
            GitReference::RefName("refs/pull/1/head".into())
        );
        assert_eq!(
            parse_git_reference("1.2.3").unwrap(),
            GitReference::Tag("1.2.3".into())
        );
        assert_eq!(
            parse_git_reference(">=1.0.0, <2.0.0").unwrap(),
            GitReference::SemverRange(">=1.0.0, <2.0.0".into())
        );
        assert_eq!(
            parse_git_reference("1.x").unwrap(),
            GitReference::SemverRange("1.x".into())
        );
        assert_eq!(
            parse_git_reference("feature/x").unwrap(),
            GitReference::Branch("feature/x".into())
        );
        assert_eq!(
            parse_git_reference("branch:v1.0.0").unwrap(),
            GitReference::Branch("v1.0.0".into())
        );
        for bad in ["", "  ", "tag:", "semver:>>1", ">=x"] {
            assert!(
                matches!(
                    parse_git_reference(bad),
                    Err(ConfigError::InvalidReference { .. })
                ),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn locations_hide_credentials() {
        assert_eq!(
            source_location(&git_source(
                "https://user:token@example.com/a.git",
                &GitReference::DefaultBranch
            )),
            "https://example.com/a.git (the default branch)"
        );
        assert_eq!(
            strip_userinfo("git@example.com:a.git"),
            "git@example.com:a.git"
        );
        let debug = format!(
            "{:?}",
            SyncConfig::builder(git_source(
                "https://bot:t0ken@example.com/a.git",
                &GitReference::DefaultBranch
            ))
            .build()
            .unwrap()
        );
        assert!(!debug.contains("t0ken"), "{debug}");
        assert!(debug.contains("https://example.com/a.git"), "{debug}");
    }

    #[test]
    fn build_checks_every_field() {
        let source = || local_source("/tmp");
        assert!(SyncConfig::builder(source()).build().is_ok());
        for bad in ["../x", "/abs", "", "a/../../b"] {
            assert!(
                matches!(
                    SyncConfig::builder(source()).subpath(bad).build(),
                    Err(ConfigError::InvalidSubpath { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            SyncConfig::builder(source()).field_manager(" ").build(),
            Err(ConfigError::EmptyFieldManager)
        ));
        assert!(matches!(
            SyncConfig::builder(source())
                .inventory(InventoryLocation {
                    namespace: "ns".into(),
                    name: "-bad".into()
                })
                .build(),
            Err(ConfigError::InvalidInventory { .. })
        ));
        assert!(matches!(
            SyncConfig::builder(source())
                .renderer(RendererSpec {
                    kind: RendererKind::Helm,
                    helm: Some(HelmSpec {
                        release_name: Some("Web_App".into()),
                        ..HelmSpec::default()
                    }),
                })
                .build(),
            Err(ConfigError::InvalidRelease { .. })
        ));
        let error = "ns/".parse::<InventoryLocation>().unwrap_err();
        assert!(error.to_string().contains("ns/"), "{error}");
    }
}
