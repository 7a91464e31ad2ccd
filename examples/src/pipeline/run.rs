//! [`Pipeline`]: one sync cycle, source → render → diff → apply → prune → wait.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gitops_apply::{
    Applier, ApplyError, ApplyOptions, ConfigMapInventory, DesiredSet, ObjectAction,
    RequestCounter, RequestCounts, Status, WaitError, counting_client, wait_for_current,
};
use gitops_diff::Colour;
use gitops_render::tool::{Tool, ToolLocator, locate};
use gitops_render::{
    AutoRenderer, HelmRenderer, KustomizeRenderer, PlainRenderer, RenderError, RenderRequest,
    Renderer, SourceRoot, Substitution,
};
use gitops_source::{
    FetchOutcome, FetchRequest, GitSource, LocalDirectorySource, Revision, Source, SourceError,
};
use kube::api::{Api, DynamicObject};
use tokio_util::sync::CancellationToken;

use super::config::{ConfigError, RendererChoice, SourceSpec, SyncConfig};
use super::report::{ProgressSink, SyncError, SyncProgress, SyncReport, error_chain};

/// The annotation of the inventory ConfigMap naming the revision last applied to it, so that a
/// one-shot `sync` (which remembers nothing between runs) tells a new revision from drift.
pub const APPLIED_REVISION_ANNOTATION: &str = "sync.gitops.rs/applied-revision";

/// How often waiting polls the objects that are not Current yet.
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A set rendered from a revision. Only [`Pipeline::render`] makes one, from a successful
/// render.
#[derive(Clone, Debug)]
struct RenderedSet {
    revision: Revision,
    set: DesiredSet,
}

/// What an apply works from. Only a set rendered from the revision the source has now may
/// prune; the last good set after a failed fetch or render never does.
#[derive(Debug)]
enum Desired {
    /// Rendered from the current revision.
    Current(RenderedSet),
    /// The last good set, served because the current revision failed.
    LastGood(RenderedSet),
}

impl Desired {
    fn may_prune(&self) -> bool {
        matches!(self, Desired::Current(_))
    }
}

/// The working directory: artifacts and the Git cache.
#[derive(Debug)]
enum WorkDir {
    Temporary(tempfile::TempDir),
    Given(PathBuf),
}

impl WorkDir {
    fn path(&self) -> &Path {
        match self {
            WorkDir::Temporary(dir) => dir.path(),
            WorkDir::Given(path) => path,
        }
    }
}

/// What Helm is told of the cluster: `.Capabilities.KubeVersion` and `.Capabilities.APIVersions`.
#[derive(Clone, Debug, Default)]
pub(super) struct Capabilities {
    kube_version: Option<String>,
    api_versions: Vec<String>,
}

/// The last fetched artifact (good or not).
#[derive(Debug)]
struct Fetched {
    revision: Revision,
    dir: PathBuf,
    /// The entries the artifact left out (symbolic links, submodules), as shown to users.
    skipped: Vec<String>,
}

/// One sync unit: owns its source, renderer and applier, and remembers the last fetched
/// revision, the last good rendered set and the last applied revision between syncs.
///
/// ```no_run
/// use gitops_examples::pipeline::{Pipeline, ProgressSink, SourceSpec, SyncConfig};
/// use tokio_util::sync::CancellationToken;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = kube::Client::try_default().await?;
/// let config = SyncConfig::builder(SourceSpec::local("./deploy"))
///     .inventory("default/my-app".parse()?)
///     .build()?;
/// let mut pipeline = Pipeline::new(client, config)?;
/// let report = pipeline.sync_once(&CancellationToken::new(), &ProgressSink::none()).await?;
/// println!("{}", report.status_line());
/// # Ok(())
/// # }
/// ```
pub struct Pipeline {
    config: SyncConfig,
    client: kube::Client,
    counter: RequestCounter,
    source: Box<dyn Source>,
    renderer: Box<dyn Renderer>,
    applier: Applier,
    work_dir: WorkDir,
    fetch_count: u64,
    fetched: Option<Fetched>,
    last_good: Option<RenderedSet>,
    applied: Option<Revision>,
    /// The client without request counting: the revision bookkeeping on the inventory is not
    /// part of a sync's apply.
    bookkeeping_client: kube::Client,
    /// Whether the inventory's recorded revision was read (once, before the first apply).
    recorded_read: bool,
    /// The revision the inventory records, as last read or written.
    recorded: Option<Revision>,
    /// The cluster's capabilities, read by discovery before the first Helm render.
    capabilities: Option<Capabilities>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("source", &self.source.location())
            .field("config", &self.config)
            .field("fetched", &self.fetched.as_ref().map(|f| &f.revision))
            .field("last_good", &self.last_good.as_ref().map(|g| &g.revision))
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Sets up the source, renderer and applier of `config`, talking to the cluster through
    /// `client`. Nothing is fetched or applied yet. Call it within a Tokio runtime (the
    /// request-counting client it wraps around `client` spawns its buffer there).
    ///
    /// # Errors
    /// [`SyncError::Config`] when the source cannot be set up or a renderer's binary is
    /// missing; [`SyncError::WorkDir`] when the working directory cannot be prepared.
    pub fn new(client: kube::Client, config: SyncConfig) -> Result<Self, SyncError> {
        let work_dir = match &config.work_dir {
            Some(path) => WorkDir::Given(path.clone()),
            None => WorkDir::Temporary(
                tempfile::Builder::new()
                    .prefix("gitops-sync-")
                    .tempdir()
                    .map_err(|source| SyncError::WorkDir {
                        path: std::env::temp_dir(),
                        source,
                    })?,
            ),
        };
        // Artifacts of an earlier run are stale; the Git cache is kept.
        let artifacts = work_dir.path().join("artifacts");
        match std::fs::remove_dir_all(&artifacts) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SyncError::WorkDir {
                    path: artifacts,
                    source,
                });
            }
        }
        std::fs::create_dir_all(&artifacts).map_err(|source| SyncError::WorkDir {
            path: artifacts.clone(),
            source,
        })?;

        let source = build_source(&config, work_dir.path())?;
        let renderer = build_renderer(&config, None)?;
        let inventory =
            ConfigMapInventory::new(&config.inventory.namespace, &config.inventory.name).map_err(
                |source| ConfigError::InvalidInventory {
                    location: config.inventory.to_string(),
                    source: Some(source),
                },
            )?;
        let counter = RequestCounter::default();
        let raw_client = client.clone();
        let client = counting_client(&client, &counter);
        let applier = Applier::builder(client.clone(), inventory)
            .field_manager(config.field_manager.clone())
            .build();
        Ok(Self {
            config,
            bookkeeping_client: raw_client,
            recorded_read: false,
            recorded: None,
            capabilities: None,
            client,
            counter,
            source,
            renderer,
            applier,
            work_dir,
            fetch_count: 0,
            fetched: None,
            last_good: None,
            applied: None,
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// Where the configuration comes from, for logs.
    #[must_use]
    pub fn location(&self) -> String {
        self.source.location()
    }

    /// The revision of the last good render, which a failed fetch or render falls back to.
    #[must_use]
    pub fn last_good_revision(&self) -> Option<&Revision> {
        self.last_good.as_ref().map(|good| &good.revision)
    }

    /// The revision last applied (not in a dry run) without failures.
    #[must_use]
    pub fn applied_revision(&self) -> Option<&Revision> {
        self.applied.as_ref()
    }

    /// The client the pipeline uses (its requests are counted in [`SyncReport::api_requests`]).
    #[must_use]
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// One sync: fetch (nothing is downloaded when the revision is unchanged), render (skipped
    /// when the revision's set is already rendered), apply with server-side apply (only objects
    /// that differ from the live state are written, so unchanged cycles still correct drift),
    /// prune what left the set, and wait for the objects to become Current when a wait timeout
    /// is configured (after a new revision or any write, or when an unchanged object is not
    /// Current by the health the apply judged from the live objects it listed; otherwise a
    /// steady cycle does not wait, and costs no request beyond the apply's lists).
    ///
    /// When the fetch or render fails and an earlier revision rendered well, that set is applied
    /// again without pruning and the error carries its report ([`SyncError::served`]).
    ///
    /// # Errors
    /// See [`SyncError`].
    pub async fn sync_once(
        &mut self,
        cancel: &CancellationToken,
        progress: &ProgressSink,
    ) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let requests_before = self.counter.counts();
        let desired = match self.fetch_and_render(cancel, progress).await {
            Ok(desired) => desired,
            Err(failure) => {
                return Err(self
                    .serve_last_good(failure, cancel, progress, started, requests_before)
                    .await);
            }
        };
        self.apply(desired, cancel, progress, started, requests_before)
            .await
    }

    /// A human-readable plan of a dry-run report (see [`plan_text`]).
    pub async fn plan_text(&self, report: &SyncReport, colour: Colour) -> String {
        plan_text(&self.client, &report.change_set, colour).await
    }

    /// Fetches and renders the current revision; on failure, why, so that the caller serves
    /// the last good set.
    async fn fetch_and_render(
        &mut self,
        cancel: &CancellationToken,
        progress: &ProgressSink,
    ) -> Result<Desired, SyncError> {
        self.fetch_count += 1;
        let destination = self
            .work_dir
            .path()
            .join("artifacts")
            .join(self.fetch_count.to_string());
        let mut request = FetchRequest::new(&destination).with_cancellation(cancel.clone());
        if let Some(fetched) = &self.fetched {
            request = request.with_last_revision(fetched.revision.clone());
        }
        if progress.is_enabled() {
            let sink = progress.clone();
            request = request.with_progress(move |step| sink.report(&SyncProgress::Fetching(step)));
        }
        let outcome = self.source.fetch(request).await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                remove_dir_quietly(&destination);
                if matches!(error, SourceError::Cancelled { .. }) || cancel.is_cancelled() {
                    return Err(SyncError::Cancelled { step: "fetching" });
                }
                return Err(SyncError::Fetch {
                    location: self.source.location(),
                    source: Box::new(error),
                    served: None,
                });
            }
        };
        let changed = matches!(outcome, FetchOutcome::Fetched(_));
        progress.report(&SyncProgress::Fetched {
            revision: outcome.revision().clone(),
            changed,
        });
        if let FetchOutcome::Fetched(artifact) = outcome {
            tracing::info!(revision = %artifact.revision(), files = artifact.file_count(), "fetched");
            let previous = self.fetched.replace(Fetched {
                revision: artifact.revision().clone(),
                dir: artifact.root().to_owned(),
                skipped: artifact.skipped().iter().map(ToString::to_string).collect(),
            });
            if let Some(previous) = previous {
                remove_dir_quietly(&previous.dir);
            }
        }
        let fetched = self
            .fetched
            .as_ref()
            .expect("an unchanged fetch follows a fetched one");
        if let Some(good) = &self.last_good
            && good.revision == fetched.revision
        {
            return Ok(Desired::Current(good.clone()));
        }
        let revision = fetched.revision.clone();
        let dir = fetched.dir.clone();
        if self.capabilities.is_none() && self.renders_helm(&dir) {
            let capabilities = discover_capabilities(
                &self.bookkeeping_client,
                self.config.helm_kube_version.as_deref(),
            )
            .await;
            self.renderer = build_renderer(&self.config, Some(&capabilities))?;
            self.capabilities = Some(capabilities);
        }
        let rendered = self.render(&revision, &dir, cancel, progress).await?;
        self.last_good = Some(rendered.clone());
        Ok(Desired::Current(rendered))
    }

    async fn render(
        &self,
        revision: &Revision,
        dir: &Path,
        cancel: &CancellationToken,
        progress: &ProgressSink,
    ) -> Result<RenderedSet, SyncError> {
        progress.report(&SyncProgress::Rendering {
            revision: revision.clone(),
        });
        let render_error = |source: RenderError| {
            if matches!(source, RenderError::Cancelled) || cancel.is_cancelled() {
                SyncError::Cancelled { step: "rendering" }
            } else {
                SyncError::Render {
                    revision: revision.clone(),
                    source,
                    served: None,
                }
            }
        };
        let root = SourceRoot::new(dir).map_err(|e| render_error(e.into()))?;
        let request =
            RenderRequest::new(root, &self.config.subpath).with_cancellation(cancel.clone());
        // Only a successful render makes a set that may prune.
        let set =
            DesiredSet::from_render(self.renderer.render(&request).await).map_err(render_error)?;
        progress.report(&SyncProgress::Rendered {
            revision: revision.clone(),
            objects: set.manifests().len(),
        });
        tracing::info!(%revision, objects = set.manifests().len(), "rendered");
        Ok(RenderedSet {
            revision: revision.clone(),
            set,
        })
    }

    /// After a failed fetch or render: apply the last good set again, without pruning, and
    /// return the failure with its report.
    async fn serve_last_good(
        &mut self,
        mut failure: SyncError,
        cancel: &CancellationToken,
        progress: &ProgressSink,
        started: Instant,
        requests_before: RequestCounts,
    ) -> SyncError {
        let Some(good) = self.last_good.clone() else {
            return failure;
        };
        if !matches!(failure, SyncError::Fetch { .. } | SyncError::Render { .. }) {
            return failure;
        }
        tracing::debug!(error = %error_chain(&failure), last_good = %good.revision, "serving the last good revision without pruning");
        let report = match self
            .apply(
                Desired::LastGood(good),
                cancel,
                progress,
                started,
                requests_before,
            )
            .await
        {
            Ok(report) => report,
            Err(error) if error.is_cancelled() => return error,
            Err(SyncError::Wait { report, source }) => {
                tracing::warn!(error = %error_chain(&source), "the last good revision is applied but not Current");
                *report
            }
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "applying the last good revision failed too");
                return failure;
            }
        };
        match &mut failure {
            SyncError::Fetch { served, .. } | SyncError::Render { served, .. } => {
                *served = Some(Box::new(report));
            }
            _ => {}
        }
        failure
    }

    fn apply_options(&self, desired: &Desired) -> ApplyOptions {
        ApplyOptions::default()
            .with_force(self.config.force)
            .with_dry_run(self.config.dry_run)
            .with_target_namespace(self.config.target_namespace.clone())
            .with_create_target_namespace(
                self.config.target_namespace.is_some() && self.config.create_target_namespace,
            )
            .with_prune(self.config.prune && desired.may_prune())
            .with_recreate_on_immutable(self.config.recreate_on_immutable)
            .with_allow_empty_set(self.config.allow_empty_set)
            .with_allow_cascading_prune(self.config.allow_cascading_prune)
            .with_take_ownership(self.config.take_ownership)
    }

    async fn apply(
        &mut self,
        desired: Desired,
        cancel: &CancellationToken,
        progress: &ProgressSink,
        started: Instant,
        requests_before: RequestCounts,
    ) -> Result<SyncReport, SyncError> {
        let options = self.apply_options(&desired);
        let (rendered, served_last_good) = match desired {
            Desired::Current(rendered) => (rendered, false),
            Desired::LastGood(rendered) => (rendered, true),
        };
        let revision = rendered.revision;
        if !self.recorded_read {
            // A one-shot run remembers nothing: the inventory records the revision last applied.
            self.recorded_read = true;
            self.recorded = self.read_recorded_revision().await;
            if self.applied.is_none() {
                self.applied.clone_from(&self.recorded);
            }
        }
        let new_revision = self.applied.as_ref() != Some(&revision);
        let result = self
            .applier
            .apply_set_with_progress(rendered.set, &options, cancel, |step| {
                progress.report(&SyncProgress::Applying(step.clone()));
            })
            .await;
        let change_set = match result {
            Ok(change_set) => change_set,
            Err(ApplyError::Cancelled { .. }) => {
                return Err(SyncError::Cancelled { step: "applying" });
            }
            Err(source) => {
                return Err(SyncError::Apply {
                    revision,
                    dry_run: options.dry_run,
                    source: Box::new(source),
                });
            }
        };
        if !options.dry_run {
            self.applied = Some(revision.clone());
            if self.recorded.as_ref() != Some(&revision) && self.record_revision(&revision).await {
                self.recorded = Some(revision.clone());
            }
        }
        let skipped_entries = self
            .fetched
            .as_ref()
            .filter(|fetched| fetched.revision == revision)
            .map(|fetched| fetched.skipped.clone())
            .unwrap_or_default();
        let mut report = SyncReport {
            revision,
            new_revision,
            served_last_good,
            change_set,
            waited: None,
            duration: Duration::ZERO,
            api_requests: 0,
            api_writes: 0,
            skipped_entries,
        };
        // Waiting reads every object; a cycle that wrote nothing for a revision already applied
        // (the steady state) skips it unless the apply, judging health from the live objects it
        // listed anyway, saw an object that is not Current: then it waits (and reports) too.
        let unhealthy = report.change_set.changes.iter().any(|change| {
            change
                .health
                .as_ref()
                .is_some_and(|health| health.status != Status::Current)
        });
        let should_wait = !options.dry_run && (new_revision || report.changed() || unhealthy);
        let wait = match self.config.wait_timeout {
            Some(timeout) if should_wait => {
                let targets = report.change_set.wait_targets();
                let wait_started = Instant::now();
                let result = wait_for_current(
                    &self.client,
                    &targets,
                    self.applier.health_checks(),
                    timeout,
                    WAIT_POLL_INTERVAL,
                    cancel,
                    |step| {
                        progress.report(&SyncProgress::Waiting {
                            current: step.current,
                            total: step.total,
                        });
                    },
                )
                .await;
                report.waited = Some(wait_started.elapsed());
                result
            }
            _ => Ok(()),
        };
        report.duration = started.elapsed();
        let requests = self.counter.counts();
        report.api_requests = requests.total - requests_before.total;
        report.api_writes = requests.writes - requests_before.writes;
        match wait {
            Ok(()) => {
                tracing::info!("{}", report.status_line());
                Ok(report)
            }
            Err(WaitError::Cancelled) => Err(SyncError::Cancelled { step: "waiting" }),
            Err(source) => Err(SyncError::Wait {
                source: Box::new(source),
                report: Box::new(report),
            }),
        }
    }
}

impl Pipeline {
    /// Whether rendering `dir` runs helm: the Helm renderer, or the automatic one on a chart.
    fn renders_helm(&self, dir: &Path) -> bool {
        match &self.config.renderer {
            RendererChoice::Helm(_) => true,
            RendererChoice::Auto => dir.join(&self.config.subpath).join("Chart.yaml").is_file(),
            RendererChoice::Plain | RendererChoice::Kustomize => false,
        }
    }

    fn inventory_api(&self) -> Api<k8s_openapi::api::core::v1::ConfigMap> {
        Api::namespaced(
            self.bookkeeping_client.clone(),
            &self.config.inventory.namespace,
        )
    }

    /// The revision the inventory ConfigMap records ([`APPLIED_REVISION_ANNOTATION`]); `None`
    /// when there is no inventory yet, it records none, or it cannot be read (then the
    /// revision counts as new, as on a first sync).
    async fn read_recorded_revision(&self) -> Option<Revision> {
        match self
            .inventory_api()
            .get_opt(&self.config.inventory.name)
            .await
        {
            Ok(configmap) => configmap
                .and_then(|configmap| configmap.metadata.annotations)
                .and_then(|mut annotations| annotations.remove(APPLIED_REVISION_ANNOTATION))
                .map(Revision::from_string),
            Err(error) => {
                tracing::debug!(inventory = %self.config.inventory, error = %error_chain(&error), "reading the applied revision");
                None
            }
        }
    }

    /// Records `revision` on the inventory ConfigMap (a merge patch of one annotation, which
    /// the applier's server-side apply of the inventory leaves alone). Whether it was written:
    /// not when there is no inventory (nothing was ever applied).
    async fn record_revision(&self, revision: &Revision) -> bool {
        let patch = serde_json::json!({
            "metadata": {"annotations": {APPLIED_REVISION_ANNOTATION: revision.as_str()}}
        });
        let params = kube::api::PatchParams {
            field_manager: Some(self.config.field_manager.clone()),
            ..kube::api::PatchParams::default()
        };
        match self
            .inventory_api()
            .patch(
                &self.config.inventory.name,
                &params,
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => true,
            Err(error) => {
                tracing::debug!(inventory = %self.config.inventory, error = %error_chain(&error), "recording the applied revision");
                false
            }
        }
    }
}

/// A human-readable plan of a dry-run change set: one unified YAML diff per object to create or
/// change (Secret values masked, coloured as `colour` says), and one line per object to
/// prune, fail, or be left alone for a reason to act on (owned by another inventory). Reads
/// each changed object from the cluster; an object that cannot be read, or
/// changed since the plan, is shown by its field changes instead.
///
/// ```no_run
/// # async fn run(client: kube::Client, change_set: gitops_apply::ChangeSet) {
/// let text = gitops_examples::pipeline::plan_text(&client, &change_set, gitops_diff::Colour::Never).await;
/// print!("{text}");
/// # }
/// ```
pub async fn plan_text(
    client: &kube::Client,
    change_set: &gitops_apply::ChangeSet,
    colour: Colour,
) -> String {
    let mut text = String::new();
    for change in &change_set.changes {
        match change.action {
            ObjectAction::Created | ObjectAction::Configured | ObjectAction::Recreated => {}
            ObjectAction::Pruned => {
                text.push_str(&format!("--- prune {}\n", change.id.display_name()));
                continue;
            }
            ObjectAction::Failed => {
                text.push_str(&format!("!!! {change}\n"));
                continue;
            }
            // Left alone for a reason to act on (owned by another inventory).
            ObjectAction::Skipped if change.error.is_some() => {
                text.push_str(&format!("=== {change}\n"));
                continue;
            }
            _ => continue,
        }
        let Some(diff) = &change.diff else {
            text.push_str(&format!("*** {change}\n"));
            continue;
        };
        let live = if change.action == ObjectAction::Created {
            None
        } else {
            let api: Api<DynamicObject> = match &change.id.namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &change.resource),
                None => Api::all_with(client.clone(), &change.resource),
            };
            match api.get_opt(&change.id.name).await {
                Ok(live) => live.and_then(|object| serde_json::to_value(object).ok()),
                Err(error) => {
                    tracing::warn!(object = %change.id.display_name(), error = %error_chain(&error), "reading the live object for the plan");
                    None
                }
            }
        };
        match diff.unified_yaml(live.as_ref(), colour) {
            Ok(unified) => text.push_str(&unified),
            Err(error) => {
                // The live object changed since the plan: list the field changes.
                tracing::debug!(error = %error_chain(&error), "falling back to field changes");
                text.push_str(&format!("*** {}\n", change.id.display_name()));
                for field in &diff.changes {
                    text.push_str(&format!("    {:?} {}\n", field.kind, field.path));
                }
            }
        }
    }
    text
}

fn remove_dir_quietly(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), %error, "removing an old artifact");
    }
}

fn build_source(config: &SyncConfig, work_dir: &Path) -> Result<Box<dyn Source>, ConfigError> {
    Ok(match &config.source {
        SourceSpec::Git {
            url,
            reference,
            credentials,
            known_hosts,
        } => {
            let mut builder = GitSource::builder(url.clone(), work_dir.join("git-cache"))
                .reference(reference.clone())
                .timeout(config.fetch_timeout);
            if let Some(credentials) = credentials {
                builder = builder.credentials(credentials.clone());
            }
            if let Some(known_hosts) = known_hosts {
                builder = builder.known_hosts(known_hosts.clone());
            }
            Box::new(builder.build().map_err(ConfigError::Source)?)
        }
        SourceSpec::LocalDirectory { path } => {
            if !path.is_dir() {
                return Err(ConfigError::Source(SourceError::InvalidConfiguration {
                    message: format!("{} is not a directory", path.display()),
                    source: None,
                }));
            }
            Box::new(LocalDirectorySource::new(path.clone()))
        }
    })
}

/// The cluster's version (unless `kube_version` is given) and the API versions it serves, as
/// helm's `--kube-version` and `--api-versions` take them (`v1`, `v1/Pod`, `apps/v1`,
/// `apps/v1/Deployment`), read with aggregated discovery (two requests). What cannot be read is
/// left out with a warning: helm then uses its own defaults.
pub(super) async fn discover_capabilities(
    client: &kube::Client,
    kube_version: Option<&str>,
) -> Capabilities {
    let kube_version = match kube_version {
        Some(version) => Some(version.to_owned()),
        None => match client.apiserver_version().await {
            Ok(info) => Some(info.git_version),
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "reading the cluster's version for helm (set --helm-kube-version)");
                None
            }
        },
    };
    let mut api_versions = std::collections::BTreeSet::new();
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

/// A Helm renderer with the configuration's namespace, hooks and `capabilities`; `release`
/// names the release and its values (else the release is named after the chart).
fn helm_renderer(
    config: &SyncConfig,
    binary: PathBuf,
    release: Option<&crate::pipeline::HelmRelease>,
    capabilities: Option<&Capabilities>,
) -> HelmRenderer {
    let mut helm = HelmRenderer::with_binary(binary).with_hooks(config.helm_hooks);
    if let Some(namespace) = release
        .and_then(|release| release.namespace.as_ref())
        .or(config.target_namespace.as_ref())
    {
        helm = helm.namespace(namespace.clone());
    }
    if let Some(release) = release {
        if !release.release.is_empty() {
            helm = helm.release(release.release.clone());
        }
        helm = helm.include_crds(release.include_crds);
        for file in &release.values_files {
            helm = helm.values_file(file.clone());
        }
        if let Some(values) = &release.values {
            helm = helm.values(values.clone());
        }
    }
    let kube_version = config
        .helm_kube_version
        .as_ref()
        .or(capabilities.and_then(|c| c.kube_version.as_ref()));
    if let Some(version) = kube_version {
        helm = helm.with_kube_version(version.clone());
    }
    if let Some(capabilities) = capabilities {
        helm = helm.with_api_versions(capabilities.api_versions.iter().cloned());
    }
    helm
}

pub(super) fn build_renderer(
    config: &SyncConfig,
    capabilities: Option<&Capabilities>,
) -> Result<Box<dyn Renderer>, ConfigError> {
    // Each tool: the configured path, else GITOPS_KUSTOMIZE / GITOPS_HELM, else PATH. A path
    // configured that is wrong is an error; a tool found nowhere is one only when a directory
    // needs it, and the error then says how to give it.
    let renderer: Box<dyn Renderer> = match &config.renderer {
        RendererChoice::Plain => Box::new(PlainRenderer::new()),
        RendererChoice::Auto => {
            let mut auto = AutoRenderer::new(PlainRenderer::new());
            let helm = ToolLocator::new(Tool::Helm)
                .explicit(config.helm_binary.as_deref())
                .locate_optional()?;
            if let Some(helm) = helm {
                auto = auto.with_helm(helm_renderer(config, helm.into_path(), None, capabilities));
            }
            Box::new(auto.with_located_tools(
                config.kustomize_binary.as_deref(),
                config.helm_binary.as_deref(),
            )?)
        }
        RendererChoice::Kustomize => Box::new(KustomizeRenderer::locate(
            config.kustomize_binary.as_deref(),
        )?),
        RendererChoice::Helm(release) => {
            let binary = locate(Tool::Helm, config.helm_binary.as_deref())?;
            Box::new(helm_renderer(config, binary, Some(release), capabilities))
        }
    };
    if config.variables.is_empty() && !config.strict_substitution {
        return Ok(renderer);
    }
    let substitution = Substitution::new()
        .with_variables(config.variables.clone())
        .strict(config.strict_substitution);
    Ok(Box::new(renderer.then(substitution)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> RenderedSet {
        RenderedSet {
            revision: Revision::from_string("sha256:1"),
            set: DesiredSet::from_render(Ok::<_, std::convert::Infallible>(Vec::new())).unwrap(),
        }
    }

    #[tokio::test]
    async fn only_the_current_revision_may_prune() {
        // A client that is never used: the options are computed locally.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pipeline = Pipeline::new(
            client,
            SyncConfig::builder(SourceSpec::local(dir.path()))
                .renderer(RendererChoice::Plain)
                .build()
                .unwrap(),
        )
        .unwrap();
        assert!(pipeline.apply_options(&Desired::Current(rendered())).prune);
        assert!(!pipeline.apply_options(&Desired::LastGood(rendered())).prune);
    }

    /// Marks the child process of `missing_tools_are_named`.
    const MISSING_TOOLS_CHILD: &str = "GITOPS_EXAMPLES_MISSING_TOOLS_CHILD";

    #[test]
    fn missing_tools_are_named() {
        // A configured path must be an executable file: it is refused when the renderer is
        // made, naming it (it was taken as given, and failed only when a kustomization came).
        for choice in [RendererChoice::Kustomize, RendererChoice::Auto] {
            let config = SyncConfig::builder(SourceSpec::local("/"))
                .renderer(choice)
                .kustomize_binary("/nonexistent/kustomize")
                .build()
                .unwrap();
            let Err(error) = build_renderer(&config, None) else {
                panic!("a kustomize binary that does not exist must be refused");
            };
            assert!(
                matches!(error, ConfigError::Tool(ref e) if !e.is_not_found()),
                "{error:?}"
            );
            assert!(
                error_chain(&error).contains("/nonexistent/kustomize (given explicitly)"),
                "{error}"
            );
        }

        // Found nowhere (an empty PATH, GITOPS_KUSTOMIZE and GITOPS_HELM unset): the error names
        // the tool and how to give it. The environment is the process's, so a child process
        // checks it.
        let empty = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pipeline::run::tests::missing_tools_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(MISSING_TOOLS_CHILD, "1")
            .env("PATH", empty.path())
            .env_remove("GITOPS_KUSTOMIZE")
            .env_remove("GITOPS_HELM")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("test result: ok. 1 passed"),
            "the child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );

        let source = SourceSpec::local("/nonexistent/dir");
        let config = SyncConfig::builder(source).build().unwrap();
        let Err(error) = build_source(&config, Path::new("/tmp")) else {
            panic!("a missing directory must be refused");
        };
        assert!(error_chain(&error).contains("/nonexistent/dir"), "{error}");
    }

    /// Not a test of its own: `missing_tools_are_named` runs it in a child process whose PATH
    /// is empty, without `GITOPS_KUSTOMIZE` and `GITOPS_HELM`. Run any other way, it fails.
    #[test]
    #[ignore = "a helper, run only by missing_tools_are_named"]
    fn missing_tools_child() {
        assert!(
            std::env::var_os(MISSING_TOOLS_CHILD).is_some(),
            "missing_tools_child is a helper: run missing_tools_are_named instead"
        );
        for (choice, tool) in [
            (RendererChoice::Kustomize, "kustomize"),
            (
                RendererChoice::Helm(crate::pipeline::HelmRelease::new("release")),
                "helm",
            ),
        ] {
            let config = SyncConfig::builder(SourceSpec::local("/"))
                .renderer(choice)
                .build()
                .unwrap();
            let Err(error) = build_renderer(&config, None) else {
                panic!("{tool} is nowhere, yet a renderer was built");
            };
            assert!(
                matches!(error, ConfigError::Tool(ref e) if e.is_not_found()),
                "{error:?}"
            );
            assert_eq!(
                error.to_string(),
                format!(
                    "{tool} not found: set GITOPS_{}, pass its path (such as --{tool}) or put it on PATH",
                    tool.to_uppercase()
                )
            );
        }
        // The automatic renderer does without them, until a directory needs one.
        let config = SyncConfig::builder(SourceSpec::local("/")).build().unwrap();
        assert!(build_renderer(&config, None).is_ok());
    }
}
