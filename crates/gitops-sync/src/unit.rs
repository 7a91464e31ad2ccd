//! [`SyncUnit`]: one sync of a unit — fetch, render, apply, prune, wait — and its
//! [`SyncReport`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitops_apply::{
    Applier, ApplyError, ApplyOptions, ApplyProgress, ChangeSet, ObjectAction, Status,
    TakeoverManager, WaitError, WaitProgress,
};
use gitops_core::escape::Escaped;
use gitops_render::{RenderError, RenderRequest, Renderer, SourceRoot, Substitution};
use gitops_source::{Artifact, FetchProgress, References, Revision, SkippedEntry, Source, Sparse};
use tokio_util::sync::CancellationToken;

use crate::error::SyncError;
use crate::rendered::RenderedSet;
use crate::store::ArtifactStore;

/// A step of a sync, reported to the callback set with [`SyncUnitBuilder::progress`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SyncProgress {
    /// A step of the fetch.
    Fetching(FetchProgress),
    /// The source's current revision, and whether it is new to the store.
    Fetched {
        /// The revision.
        revision: Revision,
        /// Whether it was fetched now (not the artifact the store already had).
        changed: bool,
    },
    /// Entries the source left out of a newly fetched artifact (symbolic links, submodules,
    /// ignored files it reports), once per fetch; names come from the repository: print
    /// them escaped ([`SkippedEntry`]'s `Display` does).
    LeftOut {
        /// The revision.
        revision: Revision,
        /// The entries left out.
        entries: Vec<SkippedEntry>,
    },
    /// Rendering a revision (not reported when its set is already rendered).
    Rendering {
        /// The revision.
        revision: Revision,
    },
    /// The revision rendered to this many objects.
    Rendered {
        /// The revision.
        revision: Revision,
        /// The number of objects.
        objects: usize,
    },
    /// Fetching or rendering failed: the last good set is applied again, without pruning.
    ServingLastGood {
        /// The last good revision.
        revision: Revision,
    },
    /// A step of the apply.
    Applying(ApplyProgress),
    /// Waiting for the applied objects to become Current.
    Waiting(WaitProgress),
}

impl SyncProgress {
    /// A short line for a progress display (`rendering main@sha1:3f9c0d1e2a4b`, `fetch: writing
    /// files`), revisions shortened and escaped; `None` for a step not worth showing (the
    /// entries left out are warnings, see [`SyncProgress::LeftOut`]).
    ///
    /// ```
    /// let step = gitops_sync::SyncProgress::Rendered {
    ///     revision: gitops_source::Revision::from_string("sha256:1"),
    ///     objects: 3,
    /// };
    /// assert_eq!(step.message().as_deref(), Some("rendered 3 objects"));
    /// ```
    #[must_use]
    pub fn message(&self) -> Option<String> {
        let short = crate::report::short_revision;
        Some(match self {
            Self::Fetching(fetch) => match fetch {
                FetchProgress::ListingRefs => "fetch: listing refs".into(),
                FetchProgress::ScanningDirectory => "fetch: scanning the directory".into(),
                FetchProgress::Downloading {
                    received_objects,
                    received_bytes,
                } => format!(
                    "fetch: downloading, {received_objects} objects, {}",
                    human_bytes(*received_bytes)
                ),
                FetchProgress::SelectingFiles => "fetch: selecting files".into(),
                FetchProgress::WritingFiles { .. } => "fetch: writing files".into(),
                FetchProgress::Unchanged { revision } | FetchProgress::Done { revision } => {
                    format!("fetched {}", short(revision))
                }
                _ => return None,
            },
            Self::Fetched { revision, changed } => format!(
                "{} {}",
                if *changed { "fetched" } else { "unchanged" },
                short(revision)
            ),
            Self::Rendering { revision } => format!("rendering {}", short(revision)),
            Self::Rendered { objects, .. } => format!("rendered {objects} objects"),
            Self::Applying(apply) => match apply {
                ApplyProgress::Planned { objects, groups } => {
                    format!("apply: planned {objects} objects in {groups} groups, validating")
                }
                ApplyProgress::Validated { to_write, failed } => {
                    format!("apply: {to_write} to write, {failed} failed validation")
                }
                ApplyProgress::GroupDone { .. } => "apply: writing groups".into(),
                ApplyProgress::Waiting { .. } => "wait: objects Current".into(),
                ApplyProgress::Hook(run) => format!("hook: {run}"),
                _ => return None,
            },
            Self::ServingLastGood { revision } => {
                format!("serving the last good {}", short(revision))
            }
            Self::Waiting(_) => "wait: objects Current".into(),
            Self::LeftOut { .. } => return None,
        })
    }

    /// How far a step that counts has come, `(done, total)`: files written, groups applied,
    /// objects Current; `None` for the others (show a spinner).
    ///
    /// ```
    /// use gitops_source::FetchProgress;
    /// let step = gitops_sync::SyncProgress::Fetching(FetchProgress::WritingFiles {
    ///     files_written: 3,
    ///     files_total: 8,
    /// });
    /// assert_eq!(step.counts(), Some((3, 8)));
    /// ```
    #[must_use]
    pub fn counts(&self) -> Option<(u64, u64)> {
        let pair = |done: usize, total: usize| Some((done as u64, total as u64));
        match self {
            Self::Fetching(FetchProgress::WritingFiles {
                files_written,
                files_total,
            }) => pair(*files_written, *files_total),
            Self::Applying(ApplyProgress::GroupDone { group, groups, .. }) => {
                pair(group + 1, *groups)
            }
            Self::Applying(ApplyProgress::Waiting { current, total }) => pair(*current, *total),
            Self::Waiting(wait) => pair(wait.current, wait.total),
            _ => None,
        }
    }
}

/// `512 B`, `1.50 KiB`, `3.20 MiB`.
#[allow(clippy::cast_precision_loss)] // Shown with two decimals.
fn human_bytes(bytes: u64) -> String {
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in ["KiB", "MiB", "GiB"] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    if unit == "B" {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {unit}")
    }
}

/// When a sync waits for its objects to become Current (kstatus), after the apply.
///
/// ```
/// use std::time::Duration;
/// use gitops_sync::WaitPolicy;
/// assert_eq!(WaitPolicy::default(), WaitPolicy::Never);
/// let policy = WaitPolicy::WhenChanged(Duration::from_secs(60));
/// assert_eq!(policy.timeout(), Some(Duration::from_secs(60)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WaitPolicy {
    /// Never wait.
    #[default]
    Never,
    /// Wait up to the timeout after a new revision or any write, or when the apply saw an
    /// object that is not Current; a steady cycle (nothing written, all Current) does not wait
    /// and sends no request beyond the apply's.
    WhenChanged(Duration),
    /// Wait up to the timeout after every apply.
    Always(Duration),
}

impl WaitPolicy {
    /// The timeout, unless the policy never waits.
    ///
    /// ```
    /// assert_eq!(gitops_sync::WaitPolicy::Never.timeout(), None);
    /// ```
    #[must_use]
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            Self::Never => None,
            Self::WhenChanged(timeout) | Self::Always(timeout) => Some(*timeout),
        }
    }
}

/// How long each step of a sync took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncTimings {
    /// Fetching (asking the source; downloading only when the revision changed).
    pub fetch: Duration,
    /// Rendering (zero when the revision's set was already rendered).
    pub render: Duration,
    /// Planning, writing and pruning.
    pub apply: Duration,
    /// Waiting for health, when the policy waited.
    pub wait: Option<Duration>,
    /// The whole sync.
    pub total: Duration,
}

/// What one sync did.
#[derive(Debug)]
pub struct SyncReport {
    /// The revision applied.
    pub revision: Revision,
    /// Whether the revision differs from the one this unit applied before (the first sync of a
    /// unit counts as new).
    pub new_revision: bool,
    /// Whether the set applied was the last good one, served again without pruning after the
    /// fetch or render of the current revision failed (the error then carries this report).
    pub served_last_good: bool,
    /// Per object what was done, and the requests sent.
    pub change_set: ChangeSet,
    /// How long each step took.
    pub timings: SyncTimings,
}

impl SyncReport {
    /// Whether anything was written or pruned.
    ///
    /// ```
    /// use gitops_sync::{SyncReport, SyncTimings};
    /// let report = SyncReport {
    ///     revision: gitops_source::Revision::from_string("sha256:1"),
    ///     new_revision: false,
    ///     served_last_good: false,
    ///     change_set: gitops_apply::ChangeSet::default(),
    ///     timings: SyncTimings::default(),
    /// };
    /// assert!(!report.changed());
    /// ```
    #[must_use]
    pub fn changed(&self) -> bool {
        self.change_set.changes.iter().any(|change| {
            matches!(
                change.action,
                ObjectAction::Created
                    | ObjectAction::Configured
                    | ObjectAction::Recreated
                    | ObjectAction::Pruned
            )
        })
    }
}

impl fmt::Display for SyncReport {
    /// `<revision>: 1 created, 0 configured, 0 pruned, 3 unchanged (served last good)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |action| self.change_set.count(action);
        write!(
            f,
            "{}: {} created, {} configured, {} recreated, {} pruned, {} unchanged, {} failed",
            Escaped(self.revision.as_str()),
            count(ObjectAction::Created),
            count(ObjectAction::Configured),
            count(ObjectAction::Recreated),
            count(ObjectAction::Pruned),
            count(ObjectAction::Unchanged),
            count(ObjectAction::Failed),
        )?;
        if self.served_last_good {
            f.write_str(" (served last good, no prune)")?;
        }
        Ok(())
    }
}

/// What the renderers of `gitops-render` read besides the directory they render, as a
/// [`References`] finder for a sparse fetch ([`Sparse::with_references`]): the paths a
/// kustomization names (keys in any case), a chart's `file://` dependencies
/// ([`gitops_render::referenced_paths`]); plain YAML names none.
///
/// ```
/// use gitops_source::{References, Sparse};
/// use gitops_sync::RenderReferences;
/// assert!(RenderReferences.reads("apps/prod/kustomization.yaml"));
/// assert_eq!(
///     RenderReferences.references("apps/prod/kustomization.yaml", b"resources: [../../base]\n"),
///     ["../../base"]
/// );
/// let sparse = Sparse::new(["apps/prod"]).with_references(RenderReferences);
/// assert!(sparse.has_references());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderReferences;

impl References for RenderReferences {
    fn reads(&self, path: &str) -> bool {
        gitops_render::reads_references(path)
    }

    fn references(&self, path: &str, content: &[u8]) -> Vec<String> {
        gitops_render::referenced_paths(path, content)
    }
}

/// The sparse selection of a unit rendering `path`: the path (`/`-separated), the paths its
/// renderer reads `besides` it ([`Renderer::reads_besides`]) and what their files reference.
/// `None` when one of them is not UTF-8 (the whole artifact is fetched).
fn sparse_for(path: &std::path::Path, besides: &[PathBuf]) -> Option<Sparse> {
    let text = |path: &std::path::Path| -> Option<String> {
        let mut parts = Vec::new();
        for component in path.components() {
            parts.push(component.as_os_str().to_str()?);
        }
        Some(if parts.is_empty() {
            ".".to_owned()
        } else {
            parts.join("/")
        })
    };
    let mut paths = vec![text(path)?];
    for other in besides {
        paths.push(text(other)?);
    }
    Some(Sparse::new(paths).with_references(RenderReferences))
}

/// The progress callback of a unit.
type ProgressFn = Arc<dyn Fn(&SyncProgress) + Send + Sync>;

/// The apply options of a unit unless told otherwise: [`ApplyOptions::default`] (which prunes),
/// taking over the fields of `kubectl` edits ([`TakeoverManager::defaults`], as Flux does), so
/// that drift made by hand is corrected rather than a conflict.
fn default_options() -> ApplyOptions {
    ApplyOptions::default().with_takeover(TakeoverManager::defaults())
}

/// Builds a [`SyncUnit`]: the source, renderer and applier are required; the rest has defaults
/// (the whole artifact as the directory to render, no substitution, [`ApplyOptions::default`]
/// (which prunes) taking over the fields of `kubectl` edits ([`TakeoverManager::defaults`]),
/// [`WaitPolicy::Never`], a temporary [`ArtifactStore`]).
#[must_use]
pub struct SyncUnitBuilder {
    name: String,
    source: Arc<dyn Source>,
    renderer: Arc<dyn Renderer>,
    applier: Applier,
    path: PathBuf,
    substitution: Option<Substitution>,
    options: ApplyOptions,
    wait: WaitPolicy,
    store: Option<ArtifactStore>,
    progress: Option<ProgressFn>,
    applied: Option<Revision>,
    sparse: bool,
}

impl fmt::Debug for SyncUnitBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncUnitBuilder")
            .field("name", &self.name)
            .field("source", &self.source.location())
            .finish_non_exhaustive()
    }
}

impl SyncUnitBuilder {
    /// A name for logs (default: the source's location).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The directory of the artifact to render (default `.`, the whole artifact).
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = path.into();
        self
    }

    /// `${VAR}` substitution, applied by the renderer to each document before validation. Other
    /// post-renderers compose with the renderer itself ([`Renderer::then`]).
    pub fn substitution(mut self, substitution: Substitution) -> Self {
        self.substitution = Some(substitution);
        self
    }

    /// The apply options (they replace the default's takeover of `kubectl` edits too). `prune`
    /// applies only to a set rendered from the current revision: the last good set served after
    /// a failure never prunes.
    pub fn apply_options(mut self, options: ApplyOptions) -> Self {
        self.options = options;
        self
    }

    /// When to wait for the applied objects to become Current.
    pub fn wait(mut self, policy: WaitPolicy) -> Self {
        self.wait = policy;
        self
    }

    /// Fetch only what the render needs (default `false`: the whole artifact): the unit's
    /// [`path`](Self::path) and, transitively, what its files reference ([`RenderReferences`]:
    /// a kustomization's resources, bases, components, patches and generator files, a chart's
    /// `file://` dependencies). A small folder of a large repository then costs little to
    /// write; the revision is still the whole commit's.
    ///
    /// What the renderer reads besides, whatever the files say
    /// ([`Renderer::reads_besides`]: a [`HelmRenderer`](gitops_render::HelmRenderer)'s values
    /// files, which may be outside the chart) is fetched too. A renderer that reads other
    /// paths fails on the missing file, naming it (`gitops-render`'s check that every path a
    /// kustomization names exists, or kustomize's and helm's own errors): it never renders
    /// with a file missing, and never reads outside the artifact. A path that leaves the
    /// artifact fails the fetch.
    ///
    /// ```no_run
    /// # fn build(applier: gitops_apply::Applier) -> Result<(), gitops_sync::SyncError> {
    /// let unit = gitops_sync::SyncUnit::builder(
    ///     gitops_source::LocalDirectorySource::new("./repo"),
    ///     gitops_render::PlainRenderer::new(),
    ///     applier,
    /// )
    /// .path("apps/prod")
    /// .sparse(true)
    /// .build()?;
    /// # drop(unit);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sparse(mut self, sparse: bool) -> Self {
        self.sparse = sparse;
        self
    }

    /// The artifact store (default: a temporary one with [`crate::StoreLimits::default`]).
    pub fn artifact_store(mut self, store: ArtifactStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Call `callback` with each step of every sync ([`SyncProgress`]). It may run on a
    /// fetching thread: return quickly.
    pub fn progress(mut self, callback: impl Fn(&SyncProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(callback));
        self
    }

    /// The revision applied before this unit existed (a one-shot program remembers nothing
    /// between runs; it may keep the revision on its inventory): a first sync of that revision
    /// is then not a new one ([`SyncReport::new_revision`]), so its writes are drift corrected.
    ///
    /// ```no_run
    /// # async fn run(applier: gitops_apply::Applier) -> Result<(), gitops_sync::SyncError> {
    /// use gitops_source::Revision;
    /// let unit = gitops_sync::SyncUnit::builder(
    ///     gitops_source::LocalDirectorySource::new("./deploy"),
    ///     gitops_render::PlainRenderer::new(),
    ///     applier,
    /// )
    /// .applied_revision(Some(Revision::from_string("sha256:1f2e")))
    /// .build()?;
    /// assert!(unit.applied_revision().is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn applied_revision(mut self, revision: Option<Revision>) -> Self {
        self.applied = revision;
        self
    }

    /// The unit.
    ///
    /// # Errors
    /// [`SyncError::Setup`] when no store was given and a temporary one cannot be made.
    pub fn build(self) -> Result<SyncUnit, SyncError> {
        let store = match self.store {
            Some(store) => store,
            None => ArtifactStore::temporary().map_err(SyncError::Setup)?,
        };
        let sparse = if self.sparse {
            let besides = self.renderer.reads_besides(&self.path);
            let sparse = sparse_for(&self.path, &besides);
            if sparse.is_none() {
                tracing::warn!(unit = %Escaped(&self.name), path = %gitops_core::escape::EscapedPath(&self.path), "the path, or a file its renderer reads, is not UTF-8: fetching the whole artifact");
            }
            sparse
        } else {
            None
        };
        Ok(SyncUnit {
            sparse,
            name: self.name,
            source: self.source,
            renderer: self.renderer,
            applier: self.applier,
            path: self.path,
            substitution: self.substitution,
            options: self.options,
            wait: self.wait,
            store,
            progress: self.progress,
            last_good: None,
            applied: self.applied,
        })
    }
}

/// One unit of configuration kept in sync: a [`Source`], a [`Renderer`] and an [`Applier`]
/// (with its inventory), and what the unit remembers between syncs: the artifacts it fetched,
/// the last good rendered set, the revision last applied.
///
/// [`SyncUnit::sync`] runs one cycle: fetch (nothing is downloaded when the revision is
/// unchanged), render (skipped when the revision's set is already rendered), apply with server-side apply (only what differs
/// from the live state is written, so a steady cycle still corrects drift), prune what left the
/// set (only a set rendered from the current revision prunes), and wait by [`WaitPolicy`]. After
/// a failed fetch or render, the last good set is applied again without pruning.
///
/// Units share nothing: run as many as needed, each with its own inventory.
///
/// ```no_run
/// use gitops_apply::{Applier, ConfigMapInventory};
/// use gitops_render::PlainRenderer;
/// use gitops_source::LocalDirectorySource;
/// use gitops_sync::SyncUnit;
/// use tokio_util::sync::CancellationToken;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = kube::Client::try_default().await?;
/// let applier = Applier::builder(client, ConfigMapInventory::new("default", "my-app")?).build();
/// let mut unit = SyncUnit::builder(LocalDirectorySource::new("./deploy"), PlainRenderer::new(), applier)
///     .build()?;
/// let report = unit.sync(&CancellationToken::new()).await?;
/// println!("{report}");
/// # Ok(())
/// # }
/// ```
pub struct SyncUnit {
    name: String,
    source: Arc<dyn Source>,
    renderer: Arc<dyn Renderer>,
    applier: Applier,
    path: PathBuf,
    substitution: Option<Substitution>,
    options: ApplyOptions,
    wait: WaitPolicy,
    store: ArtifactStore,
    progress: Option<ProgressFn>,
    last_good: Option<RenderedSet>,
    applied: Option<Revision>,
    sparse: Option<Sparse>,
}

impl fmt::Debug for SyncUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncUnit")
            .field("name", &self.name)
            .field("source", &self.source.location())
            .field(
                "last_good",
                &self.last_good.as_ref().map(RenderedSet::revision),
            )
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

impl SyncUnit {
    /// A builder for a unit that fetches from `source`, renders with `renderer` and applies
    /// with `applier`.
    ///
    /// ```no_run
    /// # async fn run(applier: gitops_apply::Applier) -> Result<(), gitops_sync::SyncError> {
    /// use gitops_render::{PlainRenderer, Renderer, Substitution};
    /// use gitops_sync::{SyncUnit, WaitPolicy};
    /// let unit = SyncUnit::builder(
    ///     gitops_source::LocalDirectorySource::new("./deploy"),
    ///     PlainRenderer::new(),
    ///     applier,
    /// )
    /// .name("shop")
    /// .path("apps/prod")
    /// .substitution(Substitution::new().with_variable("ENV", "prod"))
    /// .wait(WaitPolicy::WhenChanged(std::time::Duration::from_secs(120)))
    /// .build()?;
    /// # drop(unit);
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(
        source: impl Source + 'static,
        renderer: impl Renderer + 'static,
        applier: Applier,
    ) -> SyncUnitBuilder {
        let source: Arc<dyn Source> = Arc::new(source);
        SyncUnitBuilder {
            name: source.location(),
            source,
            renderer: Arc::new(renderer),
            applier,
            path: PathBuf::from("."),
            substitution: None,
            options: default_options(),
            wait: WaitPolicy::Never,
            store: None,
            progress: None,
            applied: None,
            sparse: false,
        }
    }

    /// The unit's name, for logs.
    ///
    /// ```no_run
    /// # fn show(unit: &gitops_sync::SyncUnit) {
    /// println!("{}", unit.name());
    /// # }
    /// ```
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The applier (its client, inventory and health checks).
    ///
    /// ```no_run
    /// # fn show(unit: &gitops_sync::SyncUnit) {
    /// println!("{}", unit.applier().field_manager());
    /// # }
    /// ```
    #[must_use]
    pub fn applier(&self) -> &Applier {
        &self.applier
    }

    /// The revision of the last good render, which a failed fetch or render falls back to.
    ///
    /// ```no_run
    /// # fn show(unit: &gitops_sync::SyncUnit) {
    /// if let Some(revision) = unit.last_good_revision() { println!("{revision}"); }
    /// # }
    /// ```
    #[must_use]
    pub fn last_good_revision(&self) -> Option<&Revision> {
        self.last_good.as_ref().map(RenderedSet::revision)
    }

    /// The revision last applied (not in a dry run).
    ///
    /// ```no_run
    /// # fn show(unit: &gitops_sync::SyncUnit) {
    /// if let Some(revision) = unit.applied_revision() { println!("{revision}"); }
    /// # }
    /// ```
    #[must_use]
    pub fn applied_revision(&self) -> Option<&Revision> {
        self.applied.as_ref()
    }

    /// The artifact store.
    ///
    /// ```no_run
    /// # fn show(unit: &gitops_sync::SyncUnit) {
    /// println!("{} artifacts kept", unit.artifact_store().artifacts().count());
    /// # }
    /// ```
    #[must_use]
    pub fn artifact_store(&self) -> &ArtifactStore {
        &self.store
    }

    /// Reports the entries a new fetch left out ([`SyncProgress::LeftOut`]).
    fn report_left_out(&self, fetched: &crate::store::Fetched) {
        let entries = fetched.artifact.skipped();
        if fetched.changed && !entries.is_empty() {
            self.report(SyncProgress::LeftOut {
                revision: fetched.artifact.revision().clone(),
                entries: entries.to_vec(),
            });
        }
    }

    fn report(&self, step: SyncProgress) {
        if let Some(progress) = &self.progress {
            progress(&step);
        }
    }

    /// One sync: fetch, render, apply, prune, wait (see [`SyncUnit`]).
    ///
    /// ```no_run
    /// # async fn run(unit: &mut gitops_sync::SyncUnit) {
    /// match unit.sync(&tokio_util::sync::CancellationToken::new()).await {
    ///     Ok(report) => println!("{report}"),
    ///     Err(error) => eprintln!("{} ({:?})", error.chain(), error.class()),
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`SyncError`]; [`SyncError::class`] says whether to retry soon or wait for a new
    /// revision. After a failed fetch or render, [`SyncError::served`] has the report of the
    /// last good set applied again without pruning.
    pub async fn sync(&mut self, cancel: &CancellationToken) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let mut timings = SyncTimings::default();
        let progress = self.progress.clone().map(|progress| {
            Arc::new(move |step: FetchProgress| progress(&SyncProgress::Fetching(step)))
                as gitops_source::ProgressCallback
        });
        let fetched = self
            .store
            .fetch_sparse(&*self.source, self.sparse.as_ref(), cancel, progress)
            .await;
        timings.fetch = started.elapsed();
        let fetched = match fetched {
            Ok(fetched) => fetched,
            Err(source) => {
                let failure = SyncError::Fetch {
                    source,
                    served: None,
                };
                if failure.is_cancelled() || cancel.is_cancelled() {
                    return Err(SyncError::Cancelled { step: "fetching" });
                }
                return Err(self.serve_last_good(failure, cancel, started).await);
            }
        };
        let revision = fetched.artifact.revision().clone();
        self.report(SyncProgress::Fetched {
            revision: revision.clone(),
            changed: fetched.changed,
        });
        self.report_left_out(&fetched);
        let render_started = Instant::now();
        let set = match self.render(&fetched.artifact, cancel).await {
            Ok(set) => set,
            Err(failure) => {
                if failure.is_cancelled() || cancel.is_cancelled() {
                    return Err(SyncError::Cancelled { step: "rendering" });
                }
                return Err(self.serve_last_good(failure, cancel, started).await);
            }
        };
        timings.render = render_started.elapsed();
        self.apply(set, cancel, started, timings).await
    }

    /// The set of `artifact`'s revision: the one already rendered, or a new render.
    async fn render(
        &mut self,
        artifact: &Artifact,
        cancel: &CancellationToken,
    ) -> Result<RenderedSet, SyncError> {
        let revision = artifact.revision();
        if let Some(good) = &self.last_good
            && good.revision() == revision
        {
            return Ok(good.clone());
        }
        self.report(SyncProgress::Rendering {
            revision: revision.clone(),
        });
        let render_error = |source: RenderError| SyncError::Render {
            revision: revision.clone(),
            source: Box::new(source),
            served: None,
        };
        let root = SourceRoot::new(artifact.root()).map_err(|e| render_error(e.into()))?;
        let mut request = RenderRequest::new(root, &self.path).with_cancellation(cancel.clone());
        if let Some(substitution) = &self.substitution {
            request = request.with_substitution(substitution.clone());
        }
        let rendered = self.renderer.render(&request).await;
        match RenderedSet::from_render(revision.clone(), rendered) {
            Ok(set) => {
                tracing::info!(unit = %Escaped(&self.name), revision = %Escaped(revision.as_str()), objects = set.manifests().len(), "rendered");
                self.report(SyncProgress::Rendered {
                    revision: revision.clone(),
                    objects: set.manifests().len(),
                });
                self.last_good = Some(set.clone());
                Ok(set)
            }
            Err(RenderError::Cancelled) => Err(SyncError::Cancelled { step: "rendering" }),
            Err(error) => Err(render_error(error)),
        }
    }

    /// After a failed fetch or render: apply the last good set again, without pruning, and
    /// return the failure with that report.
    async fn serve_last_good(
        &mut self,
        mut failure: SyncError,
        cancel: &CancellationToken,
        started: Instant,
    ) -> SyncError {
        let Some(good) = self.last_good.clone() else {
            return failure;
        };
        tracing::warn!(unit = %Escaped(&self.name), error = %failure.chain(), last_good = %Escaped(good.revision().as_str()), "serving the last good revision again, without pruning");
        self.report(SyncProgress::ServingLastGood {
            revision: good.revision().clone(),
        });
        let timings = SyncTimings {
            fetch: started.elapsed(),
            ..SyncTimings::default()
        };
        let report = match self
            .apply(good.serve_again(), cancel, started, timings)
            .await
        {
            Ok(report) => report,
            Err(SyncError::Wait { report, source }) if !matches!(*source, WaitError::Cancelled) => {
                tracing::warn!(unit = %Escaped(&self.name), error = %source, "the last good revision is applied but not Current");
                *report
            }
            Err(error) if error.is_cancelled() => return error,
            Err(error) => {
                tracing::warn!(unit = %Escaped(&self.name), error = %error.chain(), "applying the last good revision failed too");
                return failure;
            }
        };
        if let SyncError::Fetch { served, .. } | SyncError::Render { served, .. } = &mut failure {
            *served = Some(Box::new(report));
        }
        failure
    }

    async fn apply(
        &mut self,
        set: RenderedSet,
        cancel: &CancellationToken,
        started: Instant,
        mut timings: SyncTimings,
    ) -> Result<SyncReport, SyncError> {
        let mut options = self.options.clone();
        options.prune = options.prune && set.may_prune();
        let revision = set.revision().clone();
        let served_last_good = set.is_last_good();
        let apply_started = Instant::now();
        let progress = self.progress.clone();
        let result = self
            .applier
            .apply_set_with_progress(set.to_desired(), &options, cancel, |step| {
                if let Some(progress) = &progress {
                    progress(&SyncProgress::Applying(step.clone()));
                }
            })
            .await;
        timings.apply = apply_started.elapsed();
        let change_set = match result {
            Ok(change_set) => change_set,
            Err(ApplyError::Cancelled { .. }) => {
                return Err(SyncError::Cancelled { step: "applying" });
            }
            Err(source) => {
                let error = SyncError::Apply {
                    revision,
                    dry_run: self.options.dry_run,
                    served_last_good,
                    source: Box::new(source),
                };
                if error.is_cancelled() {
                    return Err(SyncError::Cancelled { step: "applying" });
                }
                return Err(error);
            }
        };
        let new_revision = self.applied.as_ref() != Some(&revision);
        if !options.dry_run {
            self.applied = Some(revision.clone());
        }
        let mut report = SyncReport {
            revision,
            new_revision,
            served_last_good,
            change_set,
            timings,
        };
        let unhealthy = report.change_set.changes.iter().any(|change| {
            change
                .health
                .as_ref()
                .is_some_and(|health| health.status != Status::Current)
        });
        let timeout = match self.wait {
            WaitPolicy::Never => None,
            WaitPolicy::WhenChanged(timeout) => {
                (new_revision || report.changed() || unhealthy).then_some(timeout)
            }
            WaitPolicy::Always(timeout) => Some(timeout),
        };
        let mut wait = Ok(());
        if let Some(timeout) = timeout.filter(|_| !options.dry_run) {
            let wait_started = Instant::now();
            let targets = report.change_set.wait_targets();
            wait = self
                .applier
                .wait(&targets, timeout, cancel, |step| {
                    self.report(SyncProgress::Waiting(step.clone()));
                })
                .await;
            report.timings.wait = Some(wait_started.elapsed());
        }
        report.timings.total = started.elapsed();
        match wait {
            Ok(()) => {
                tracing::info!(unit = %Escaped(&self.name), "{report}");
                Ok(report)
            }
            Err(WaitError::Cancelled) => Err(SyncError::Cancelled { step: "waiting" }),
            Err(source) => Err(SyncError::Wait {
                report: Box::new(report),
                source: Box::new(source),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_path_becomes_its_sparse_selection() {
        let paths = |path: &str| {
            sparse_for(std::path::Path::new(path), &[])
                .unwrap()
                .paths()
                .to_vec()
        };
        assert_eq!(paths("apps/prod"), ["apps/prod"]);
        assert_eq!(paths("./apps//prod/"), ["./apps/prod"]);
        assert_eq!(paths("."), ["."]);
        assert_eq!(paths(""), ["."]);
        assert!(
            sparse_for(std::path::Path::new("apps"), &[])
                .unwrap()
                .has_references()
        );
        // What the renderer reads besides the path (a Helm values file) is asked for too.
        let besides = [PathBuf::from("env/prod.yaml")];
        assert_eq!(
            sparse_for(std::path::Path::new("charts/web"), &besides)
                .unwrap()
                .paths(),
            ["charts/web", "env/prod.yaml"]
        );
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let not_utf8 = std::ffi::OsStr::from_bytes(b"apps/\xff");
            assert!(sparse_for(std::path::Path::new(not_utf8), &[]).is_none());
            let besides = [PathBuf::from(not_utf8)];
            assert!(sparse_for(std::path::Path::new("apps"), &besides).is_none());
        }
    }

    #[test]
    fn progress_steps_become_messages_and_counts() {
        let revision = Revision::git("main", &"ab".repeat(20));
        let writing = SyncProgress::Fetching(FetchProgress::WritingFiles {
            files_written: 3,
            files_total: 8,
        });
        assert_eq!(writing.message().as_deref(), Some("fetch: writing files"));
        assert_eq!(writing.counts(), Some((3, 8)));
        let fetched = SyncProgress::Fetched {
            revision: revision.clone(),
            changed: false,
        };
        assert_eq!(
            fetched.message().as_deref(),
            Some("unchanged main@sha1:abababababab")
        );
        assert_eq!(fetched.counts(), None);
        let group = SyncProgress::Applying(ApplyProgress::GroupDone {
            group: 1,
            groups: 3,
            written: 4,
            failed: 0,
        });
        assert_eq!(group.counts(), Some((2, 3)));
        let waiting = SyncProgress::Waiting(WaitProgress {
            current: 5,
            total: 6,
            pending: Vec::new(),
        });
        assert_eq!(waiting.message().as_deref(), Some("wait: objects Current"));
        assert_eq!(waiting.counts(), Some((5, 6)));
        let serving = SyncProgress::ServingLastGood { revision };
        assert_eq!(
            serving.message().as_deref(),
            Some("serving the last good main@sha1:abababababab")
        );
        let downloading = SyncProgress::Fetching(FetchProgress::Downloading {
            received_objects: 7,
            received_bytes: 1536,
        });
        assert_eq!(
            downloading.message().as_deref(),
            Some("fetch: downloading, 7 objects, 1.50 KiB")
        );
        assert_eq!(human_bytes(512), "512 B");
    }
}
