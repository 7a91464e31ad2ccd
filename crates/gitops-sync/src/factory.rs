//! [`UnitFactory`]: the one place where a [`SyncSpec`] becomes a [`SyncUnitBuilder`] — its
//! source, renderer (tools found by [`ToolLocator`], Helm told the cluster's capabilities),
//! applier and options — with what a spec cannot hold given beside it ([`SpecUnit`]: Git
//! credentials and known hosts, the inventory's namespace, an applier of your own).

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use gitops_apply::{Applier, ApplyOptions, ConfigMapInventory, InventoryError, TakeoverManager};
use gitops_core::error_chain;
use gitops_core::escape::EscapedPath;
use gitops_render::tool::{LocateError, Tool, ToolLocator};
use gitops_render::{
    AutoRenderer, HelmRenderer, HookPolicy, KustomizeRenderer, PlainRenderer, Renderer,
    Substitution,
};
use gitops_source::{GitCredentials, GitSource, LocalDirectorySource, SourceError};

use crate::spec::{HelmSpec, RendererKind, SourceLocation, SpecError, SyncSpec};
use crate::store::{ArtifactStore, StoreError};
use crate::unit::{SyncUnit, SyncUnitBuilder, WaitPolicy};

/// The field manager of a [`UnitFactory`] unless told otherwise.
pub const DEFAULT_FIELD_MANAGER: &str = gitops_apply::DEFAULT_FIELD_MANAGER;

/// Why a [`SpecUnit`] cannot become a unit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FactoryError {
    /// The spec cannot be used.
    #[error("invalid spec")]
    Spec(#[source] SpecError),
    /// The renderer needs a tool that was not found, or the path given for it is not an
    /// executable file.
    #[error("renderer {} needs {tool}", .renderer.as_str())]
    Tool {
        /// The renderer the spec names.
        renderer: RendererKind,
        /// The tool.
        tool: Tool,
        /// Why it cannot be used.
        #[source]
        source: Box<LocateError>,
    },
    /// The spec names no inventory ConfigMap and no applier was given
    /// ([`SpecUnit::applier`]).
    #[error("spec.inventory.configMap is not set and no applier was given")]
    NoInventory,
    /// The inventory's namespace or name cannot be used.
    #[error("invalid inventory {namespace}/{name}", namespace = gitops_core::escape::Escaped(.namespace), name = gitops_core::escape::Escaped(.name))]
    Inventory {
        /// The namespace.
        namespace: String,
        /// The ConfigMap's name.
        name: String,
        /// Why.
        #[source]
        source: InventoryError,
    },
    /// The local directory of the spec is not a directory.
    #[error("{} is not a directory", EscapedPath(.0))]
    NotADirectory(PathBuf),
    /// The Git source cannot be set up (a malformed URL, say).
    #[error("setting up the source")]
    Source(#[source] Box<SourceError>),
    /// The artifact store cannot be made in the work directory.
    #[error("setting up the artifact store")]
    Store(#[source] Box<StoreError>),
}

impl FactoryError {
    /// Whether the error is a tool found nowhere (as opposed to a path given that is wrong).
    ///
    /// ```
    /// assert!(!gitops_sync::FactoryError::NoInventory.is_tool_not_found());
    /// ```
    #[must_use]
    pub fn is_tool_not_found(&self) -> bool {
        matches!(self, Self::Tool { source, .. } if source.is_not_found())
    }
}

/// A spec and what it cannot hold, for [`UnitFactory::unit`]: Git credentials and known hosts
/// (read from files, the environment or a Secret by the caller), the namespace of the
/// inventory ConfigMap, Helm's default release name and namespace, the base apply options, an
/// applier of your own.
///
/// ```
/// use gitops_source::{GitCredentials, Secret};
/// use gitops_sync::SpecUnit;
/// use gitops_sync::spec::SyncSpec;
/// let unit = SpecUnit::new(SyncSpec::default(), "shop")
///     .name("shop/web")
///     .credentials(GitCredentials::BearerToken(Secret::new("t0ken")))
///     .known_hosts("git.example.com ssh-ed25519 AAAA")
///     .strict_substitution(true);
/// assert!(!format!("{unit:?}").contains("t0ken"));
/// ```
#[must_use]
pub struct SpecUnit {
    spec: SyncSpec,
    namespace: String,
    name: Option<String>,
    release: Option<(String, String)>,
    credentials: Option<GitCredentials>,
    known_hosts: Option<String>,
    ca_bundle: Option<Vec<u8>>,
    applier: Option<Applier>,
    options: ApplyOptions,
    strict_substitution: bool,
    work_subdir: Option<PathBuf>,
}

impl fmt::Debug for SpecUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpecUnit")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("credentials", &self.credentials)
            .field("known_hosts", &self.known_hosts.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl SpecUnit {
    /// `spec`, with its inventory ConfigMap (`spec.inventory.configMap`) in `namespace`. The
    /// base apply options take back fields changed by hand (forced field ownership, and the
    /// fields of `kubectl` edits taken over, as Flux does).
    pub fn new(spec: SyncSpec, namespace: impl Into<String>) -> Self {
        Self {
            spec,
            namespace: namespace.into(),
            name: None,
            release: None,
            credentials: None,
            known_hosts: None,
            ca_bundle: None,
            applier: None,
            options: ApplyOptions::default()
                .with_force(true)
                .with_takeover(TakeoverManager::defaults()),
            strict_substitution: false,
            work_subdir: None,
        }
    }

    /// A name for logs (default: the source's location).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Helm's release name and namespace when the spec names none (the controller kit gives
    /// the resource's name and namespace). Without it a release is named after its chart's
    /// directory and its namespace is the spec's target namespace, else Helm's default.
    pub fn helm_defaults(
        mut self,
        release: impl Into<String>,
        namespace: impl Into<String>,
    ) -> Self {
        self.release = Some((release.into(), namespace.into()));
        self
    }

    /// Credentials for a Git source (ignored for a local directory).
    pub fn credentials(mut self, credentials: GitCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The known_hosts lines an SSH server's key must match.
    pub fn known_hosts(mut self, known_hosts: impl Into<String>) -> Self {
        self.known_hosts = Some(known_hosts.into());
        self
    }

    /// Extra certificate authorities (PEM) for an HTTPS Git source.
    pub fn ca_bundle_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_bundle = Some(pem.into());
        self
    }

    /// The applier, with an inventory of your own (default: a ConfigMap inventory of
    /// `spec.inventory.configMap` in the namespace, with the factory's field manager).
    pub fn applier(mut self, applier: Applier) -> Self {
        self.applier = Some(applier);
        self
    }

    /// The base apply options; the spec's `prune`, `force` (recreate on immutable changes)
    /// and `targetNamespace` and the factory's dry run are set on them.
    pub fn apply_options(mut self, options: ApplyOptions) -> Self {
        self.options = options;
        self
    }

    /// Makes a `${NAME}` without a value or a default an error (substitution then runs even
    /// without variables).
    pub fn strict_substitution(mut self, strict: bool) -> Self {
        self.strict_substitution = strict;
        self
    }

    /// Keeps this unit's Git cache and artifacts in this directory under the factory's work
    /// directory (default: the work directory itself).
    pub fn work_subdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_subdir = Some(dir.into());
        self
    }
}

/// What Helm is told of the cluster: `.Capabilities.KubeVersion` and `.Capabilities.APIVersions`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The cluster's version, such as `v1.35.0`.
    pub kube_version: Option<String>,
    /// The API versions it serves, as helm's `--api-versions` takes them (`v1`, `v1/Pod`,
    /// `apps/v1`, `apps/v1/Deployment`).
    pub api_versions: Vec<String>,
}

/// Makes sync units from specs: the one spec→unit construction that the controller kit and
/// the command-line examples share. It holds what every unit of a program shares: the client,
/// the work directory (Git caches and artifacts), where kustomize and helm are
/// ([`ToolLocator`]: given, else `GITOPS_KUSTOMIZE` / `GITOPS_HELM`, else `PATH`), the field
/// manager, Helm's hook policy and Kubernetes version, the fetch timeout and dry run.
///
/// ```no_run
/// use gitops_sync::{SpecUnit, UnitFactory};
/// use gitops_sync::spec::{InventorySpec, SourceSpec, SyncSpec};
/// # async fn run(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let spec = SyncSpec {
///     source: SourceSpec { local_path: Some("/srv/deploy".into()), ..SourceSpec::default() },
///     interval: "1m".into(),
///     inventory: Some(InventorySpec { config_map: Some("deploy".into()) }),
///     ..SyncSpec::default()
/// };
/// let factory = UnitFactory::new(client, "/var/lib/sync").field_manager("my-agent");
/// let mut unit = factory.unit(SpecUnit::new(spec, "default")).await?.build()?;
/// let report = unit.sync(&tokio_util::sync::CancellationToken::new()).await?;
/// println!("{}", report.status_line());
/// # Ok(())
/// # }
/// ```
#[must_use]
#[derive(Clone)]
pub struct UnitFactory {
    client: kube::Client,
    work_dir: PathBuf,
    kustomize: ToolLocator,
    helm: ToolLocator,
    field_manager: String,
    helm_hooks: HookPolicy,
    helm_kube_version: Option<String>,
    discover: bool,
    dry_run: bool,
    fetch_timeout: Option<Duration>,
}

impl fmt::Debug for UnitFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnitFactory")
            .field("work_dir", &self.work_dir)
            .field("kustomize", &self.kustomize)
            .field("helm", &self.helm)
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

impl UnitFactory {
    /// A factory of units applying with `client` and keeping Git caches and artifacts under
    /// `work_dir`; tools found by their default locators, field manager
    /// [`DEFAULT_FIELD_MANAGER`], Helm hooks skipped, the cluster's capabilities discovered for
    /// Helm.
    pub fn new(client: kube::Client, work_dir: impl Into<PathBuf>) -> Self {
        Self {
            client,
            work_dir: work_dir.into(),
            kustomize: ToolLocator::new(Tool::Kustomize),
            helm: ToolLocator::new(Tool::Helm),
            field_manager: DEFAULT_FIELD_MANAGER.to_owned(),
            helm_hooks: HookPolicy::Skip,
            helm_kube_version: None,
            discover: true,
            dry_run: false,
            fetch_timeout: None,
        }
    }

    /// How kustomize is found (default [`ToolLocator::new`]: `GITOPS_KUSTOMIZE`, else `PATH`).
    pub fn kustomize(mut self, locator: ToolLocator) -> Self {
        self.kustomize = locator;
        self
    }

    /// How helm is found (default [`ToolLocator::new`]: `GITOPS_HELM`, else `PATH`).
    pub fn helm(mut self, locator: ToolLocator) -> Self {
        self.helm = locator;
        self
    }

    /// The field manager of the applied objects.
    pub fn field_manager(mut self, field_manager: impl Into<String>) -> Self {
        self.field_manager = field_manager.into();
        self
    }

    /// What Helm does with a chart's hooks (default [`HookPolicy::Skip`]).
    pub fn helm_hooks(mut self, hooks: HookPolicy) -> Self {
        self.helm_hooks = hooks;
        self
    }

    /// The Kubernetes version Helm renders for, instead of the cluster's.
    pub fn helm_kube_version(mut self, version: impl Into<String>) -> Self {
        self.helm_kube_version = Some(version.into());
        self
    }

    /// Whether the cluster's version and API versions are read for Helm when a unit with a
    /// Helm renderer is made (default true; two or three requests per unit).
    pub fn discover_capabilities(mut self, discover: bool) -> Self {
        self.discover = discover;
        self
    }

    /// Plan only: the units write nothing (default false).
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The longest one Git fetch may take (default: the source's).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = Some(timeout);
        self
    }

    /// The client.
    ///
    /// ```no_run
    /// # fn f(factory: &gitops_sync::UnitFactory) { let _client = factory.client().clone(); }
    /// ```
    #[must_use]
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The field manager.
    ///
    /// ```no_run
    /// # fn f(factory: &gitops_sync::UnitFactory) { assert!(!factory.field_manager_name().is_empty()); }
    /// ```
    #[must_use]
    pub fn field_manager_name(&self) -> &str {
        &self.field_manager
    }

    /// A builder of the unit `unit` describes (add a progress callback, an applied revision,
    /// then build): its source (Git with its cache in the work directory, or a local
    /// directory), its renderer, its applier, the apply options of its spec, substitution, a
    /// wait after changes when `spec.wait` is set, a sparse fetch when `spec.sparse` is set
    /// ([`SyncUnitBuilder::sparse`]), and an artifact store in the work directory.
    ///
    /// # Errors
    /// [`FactoryError`]: the spec is invalid, a tool it needs is not found, the inventory or
    /// the source cannot be used, or the artifact store cannot be made.
    pub async fn unit(&self, unit: SpecUnit) -> Result<SyncUnitBuilder, FactoryError> {
        let spec = &unit.spec;
        let settings = spec.settings().map_err(FactoryError::Spec)?;
        let renderer = self.renderer(spec, unit.release.as_ref()).await?;
        let applier = match unit.applier {
            Some(applier) => applier,
            None => {
                let name = spec
                    .inventory
                    .as_ref()
                    .and_then(|i| i.config_map.clone())
                    .ok_or(FactoryError::NoInventory)?;
                let inventory =
                    ConfigMapInventory::new(&unit.namespace, &name).map_err(|source| {
                        FactoryError::Inventory {
                            namespace: unit.namespace.clone(),
                            name,
                            source,
                        }
                    })?;
                Applier::builder(self.client.clone(), inventory)
                    .field_manager(self.field_manager.clone())
                    .build()
            }
        };
        let dir = match &unit.work_subdir {
            Some(sub) => self.work_dir.join(sub),
            None => self.work_dir.clone(),
        };
        let builder = match settings.source {
            SourceLocation::Git { url, reference } => {
                let mut git = GitSource::builder(url, dir.join("git-cache")).reference(reference);
                if let Some(timeout) = self.fetch_timeout {
                    git = git.timeout(timeout);
                }
                if let Some(credentials) = unit.credentials {
                    git = git.credentials(credentials);
                }
                if let Some(known_hosts) = unit.known_hosts {
                    git = git.known_hosts(known_hosts);
                }
                if let Some(ca) = unit.ca_bundle {
                    git = git.ca_bundle_pem(ca);
                }
                let source = git.build().map_err(|e| FactoryError::Source(Box::new(e)))?;
                SyncUnit::builder(source, renderer, applier)
            }
            SourceLocation::Local(path) => {
                if !path.is_dir() {
                    return Err(FactoryError::NotADirectory(path));
                }
                SyncUnit::builder(LocalDirectorySource::new(path), renderer, applier)
            }
        };
        let store = ArtifactStore::new(dir.join("artifacts"))
            .map_err(|e| FactoryError::Store(Box::new(e)))?;
        let options = unit
            .options
            .with_dry_run(self.dry_run)
            .with_prune(spec.prune)
            .with_recreate_on_immutable(spec.force)
            .with_target_namespace(spec.target_namespace.clone());
        let mut builder = builder
            .path(&spec.path)
            .sparse(spec.sparse)
            .apply_options(options)
            .artifact_store(store)
            .wait(if spec.wait {
                WaitPolicy::WhenChanged(settings.timeout)
            } else {
                WaitPolicy::Never
            });
        if let Some(name) = unit.name {
            builder = builder.name(name);
        }
        if !spec.substitute.is_empty() || unit.strict_substitution {
            builder = builder.substitution(
                Substitution::new()
                    .with_variables(spec.substitute.clone())
                    .strict(unit.strict_substitution),
            );
        }
        Ok(builder)
    }

    /// The renderer `spec` names, with the tools found by the factory's locators. A path given
    /// that is wrong is an error; a tool found nowhere is one only when the renderer needs it
    /// (`auto` does without, until a directory needs one).
    async fn renderer(
        &self,
        spec: &SyncSpec,
        release: Option<&(String, String)>,
    ) -> Result<Box<dyn Renderer>, FactoryError> {
        let kind = spec.renderer.kind;
        let tool_error = |tool| {
            move |source| FactoryError::Tool {
                renderer: kind,
                tool,
                source: Box::new(source),
            }
        };
        let helm_spec = spec.renderer.helm.clone().unwrap_or_default();
        Ok(match kind {
            RendererKind::Plain => Box::new(PlainRenderer::new()),
            RendererKind::Kustomize => {
                let found = self
                    .kustomize
                    .locate()
                    .map_err(tool_error(Tool::Kustomize))?;
                Box::new(KustomizeRenderer::new(found.into_path()))
            }
            RendererKind::Helm => {
                let found = self.helm.locate().map_err(tool_error(Tool::Helm))?;
                Box::new(
                    self.helm_renderer(found.into_path(), spec, &helm_spec, release)
                        .await,
                )
            }
            RendererKind::Auto => {
                let mut auto = AutoRenderer::new(PlainRenderer::new());
                if let Some(found) = self
                    .helm
                    .locate_optional()
                    .map_err(tool_error(Tool::Helm))?
                {
                    auto = auto.with_helm(
                        self.helm_renderer(found.into_path(), spec, &helm_spec, release)
                            .await,
                    );
                }
                Box::new(
                    auto.with_tools_located_by(&self.kustomize, &self.helm)
                        .map_err(tool_error(Tool::Kustomize))?,
                )
            }
        })
    }

    /// A Helm renderer: the spec's release, namespace, values and CRDs, the factory's hooks,
    /// and the cluster's capabilities.
    async fn helm_renderer(
        &self,
        binary: PathBuf,
        spec: &SyncSpec,
        helm_spec: &HelmSpec,
        release: Option<&(String, String)>,
    ) -> HelmRenderer {
        let mut helm = HelmRenderer::with_binary(binary)
            .with_hooks(self.helm_hooks)
            .include_crds(helm_spec.includes_crds());
        if let Some(name) = helm_spec
            .release_name
            .as_ref()
            .or(release.map(|(name, _)| name))
        {
            helm = helm.release(name.clone());
        }
        if let Some(namespace) = helm_spec
            .namespace
            .as_ref()
            .or(spec.target_namespace.as_ref())
            .or(release.map(|(_, namespace)| namespace))
        {
            helm = helm.namespace(namespace.clone());
        }
        for file in &helm_spec.values_files {
            helm = helm.values_file(file.clone());
        }
        if let Some(values) = &helm_spec.values {
            helm = helm.values(values.clone());
        }
        let capabilities = if self.discover {
            discover_capabilities(&self.client, self.helm_kube_version.as_deref()).await
        } else {
            Capabilities {
                kube_version: self.helm_kube_version.clone(),
                api_versions: Vec::new(),
            }
        };
        if let Some(version) = capabilities.kube_version {
            helm = helm.with_kube_version(version);
        }
        helm.with_api_versions(capabilities.api_versions)
    }
}

/// The cluster's version (unless `kube_version` is given) and the API versions it serves, as
/// helm's `--kube-version` and `--api-versions` take them, read with aggregated discovery. What
/// cannot be read is left out with a warning: helm then uses its own defaults.
///
/// ```no_run
/// # async fn run(client: kube::Client) {
/// let capabilities = gitops_sync::discover_capabilities(&client, None).await;
/// println!("{:?} serves {} API versions", capabilities.kube_version, capabilities.api_versions.len());
/// # }
/// ```
pub async fn discover_capabilities(
    client: &kube::Client,
    kube_version: Option<&str>,
) -> Capabilities {
    let kube_version = match kube_version {
        Some(version) => Some(version.to_owned()),
        None => match client.apiserver_version().await {
            Ok(info) => Some(info.git_version),
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "reading the cluster's version for helm (give it with UnitFactory::helm_kube_version)");
                None
            }
        },
    };
    let mut api_versions = BTreeSet::new();
    for (what, result) in [
        ("/api", client.list_core_api_versions_aggregated().await),
        ("/apis", client.list_api_groups_aggregated().await),
    ] {
        let list = match result {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "reading the API versions the cluster serves ({what}) for helm");
                continue;
            }
        };
        for group in list.items {
            let name = group
                .metadata
                .and_then(|metadata| metadata.name)
                .unwrap_or_default();
            for version in group.versions {
                let Some(version_name) = version.version else {
                    continue;
                };
                let group_version = if name.is_empty() {
                    version_name
                } else {
                    format!("{name}/{version_name}")
                };
                for resource in &version.resources {
                    if let Some(kind) = resource
                        .response_kind
                        .as_ref()
                        .and_then(|kind| kind.kind.as_deref())
                        .filter(|kind| !kind.is_empty())
                    {
                        api_versions.insert(format!("{group_version}/{kind}"));
                    }
                }
                api_versions.insert(group_version);
            }
        }
    }
    tracing::debug!(
        ?kube_version,
        api_versions = api_versions.len(),
        "cluster capabilities for helm"
    );
    Capabilities {
        kube_version,
        api_versions: api_versions.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{InventorySpec, RendererSpec, SourceSpec};

    /// A factory whose client is never used (no Helm is found, so nothing is discovered) and
    /// whose tools are found nowhere unless `explicit`.
    fn factory(nowhere: &std::path::Path, explicit: Option<&str>) -> UnitFactory {
        let client = kube::Client::try_from(kube::Config::new(
            "http://127.0.0.1:9".parse().expect("a URL"),
        ))
        .expect("a client");
        let locator = |tool| {
            ToolLocator::new(tool)
                .without_variable()
                .with_search_path(nowhere)
                .explicit(explicit)
        };
        UnitFactory::new(client, nowhere)
            .kustomize(locator(Tool::Kustomize))
            .helm(locator(Tool::Helm))
    }

    fn spec(dir: &std::path::Path, kind: RendererKind) -> SyncSpec {
        SyncSpec {
            source: SourceSpec {
                local_path: Some(dir.to_str().expect("a UTF-8 temp dir").to_owned()),
                ..SourceSpec::default()
            },
            interval: "1m".into(),
            renderer: RendererSpec { kind, helm: None },
            inventory: Some(InventorySpec {
                config_map: Some("apps".into()),
            }),
            ..SyncSpec::default()
        }
    }

    #[tokio::test]
    async fn tools_are_named_when_missing_or_wrong() {
        let dir = tempfile::tempdir().expect("a temp dir");
        for (kind, tool) in [
            (RendererKind::Kustomize, "kustomize"),
            (RendererKind::Helm, "helm"),
        ] {
            let unit = SpecUnit::new(spec(dir.path(), kind), "default");
            let error = factory(dir.path(), None).unit(unit).await.unwrap_err();
            assert!(error.is_tool_not_found(), "{error:?}");
            assert_eq!(
                error_chain(&error),
                format!(
                    "renderer {tool} needs {tool}: {tool} not found: set GITOPS_{}, pass its path (such as --{tool}) or put it on PATH",
                    tool.to_uppercase()
                )
            );
        }
        // A path given must be an executable file: refused when the unit is made, naming it.
        for kind in [RendererKind::Kustomize, RendererKind::Auto] {
            let unit = SpecUnit::new(spec(dir.path(), kind), "default");
            let factory = factory(dir.path(), Some("/nonexistent/tool"));
            let error = factory.unit(unit).await.unwrap_err();
            assert!(!error.is_tool_not_found(), "{error:?}");
            assert!(
                error_chain(&error).contains("/nonexistent/tool (given explicitly)"),
                "{error}"
            );
        }
        // The automatic renderer does without them, until a directory needs one.
        let unit = SpecUnit::new(spec(dir.path(), RendererKind::Auto), "default");
        assert!(factory(dir.path(), None).unit(unit).await.is_ok());
    }

    #[tokio::test]
    async fn a_missing_directory_or_inventory_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let missing = dir.path().join("gone\nERROR forged");
        let unit = SpecUnit::new(spec(&missing, RendererKind::Plain), "default");
        let error = factory(dir.path(), None).unit(unit).await.unwrap_err();
        assert!(matches!(error, FactoryError::NotADirectory(_)), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("gone") && !text.contains('\n'), "{text}");

        let mut without = spec(dir.path(), RendererKind::Plain);
        without.inventory = None;
        let error = factory(dir.path(), None)
            .unit(SpecUnit::new(without, "default"))
            .await
            .unwrap_err();
        assert!(matches!(error, FactoryError::NoInventory), "{error:?}");

        let unit = SpecUnit::new(spec(dir.path(), RendererKind::Plain), "-bad-");
        let error = factory(dir.path(), None).unit(unit).await.unwrap_err();
        assert!(matches!(error, FactoryError::Inventory { .. }), "{error:?}");
    }
}
