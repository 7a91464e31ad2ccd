//! The reconciler: fetch, render, apply, prune, wait, report; the finalizer; the run loop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gitops_apply::{
    Applier, ApplyError, ApplyOptions, DesiredSet, InventoryError, TakeoverManager, WaitError,
};
use gitops_render::{
    AutoRenderer, HelmRenderer, KustomizeRenderer, PlainRenderer, RenderError, RenderRequest,
    Renderer, SourceRoot,
};
use gitops_source::{
    FetchOutcome, FetchRequest, GitSource, LocalDirectorySource, Revision, Source, SourceError,
};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::inventory::StatusInventory;
use super::resource::{GitSync, GitSyncStatus, RendererKind, SourceLocation, SpecError};
use super::status::{Phase, now_rfc3339, write_status};

/// The finalizer that prunes a [`GitSync`]'s objects when it is deleted.
pub const FINALIZER: &str = "examples.gitops-rs.io/finalizer";
/// The field manager of the applied objects.
pub const APPLY_FIELD_MANAGER: &str = "gitsync-controller";
/// The field manager of the conditions and revisions in the status.
pub const STATUS_FIELD_MANAGER: &str = "gitsync-controller-status";
/// The field manager of `status.inventory`.
pub const INVENTORY_FIELD_MANAGER: &str = "gitsync-controller-inventory";
/// Changing this annotation (to a timestamp, say) asks for a reconciliation now. Flux's
/// `reconcile.fluxcd.io/requestedAt` works too.
pub const REQUESTED_AT_ANNOTATION: &str = "examples.gitops-rs.io/requestedAt";
const FLUX_REQUESTED_AT_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The object lacks a name, namespace or uid (never the case for objects from the API).
    #[error("the GitSync has no metadata.{0}")]
    MissingMetadata(&'static str),
    /// The spec cannot be used.
    #[error("invalid GitSync")]
    Spec(#[source] SpecError),
    /// The name or namespace cannot be an ownership label value.
    #[error("the GitSync's name cannot label the objects it applies")]
    InventoryName(#[source] InventoryError),
    /// The controller's work directory cannot be used.
    #[error("preparing the work directory {}", path.display())]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The source cannot be set up (a malformed URL, say).
    #[error("setting up the source")]
    SourceSetup(#[source] Box<SourceError>),
    /// Fetching failed.
    #[error("fetching {location}")]
    Fetch {
        /// Where from.
        location: String,
        /// The failure.
        #[source]
        source: Box<SourceError>,
    },
    /// The renderer needs a tool the controller was not given.
    #[error(
        "renderer {renderer} needs the {tool} binary, which the controller was not given: start it with --{tool} <path>, set GITOPS_{upper}, or put {tool} on PATH",
        upper = tool.to_uppercase()
    )]
    MissingTool {
        /// The renderer asked for.
        renderer: &'static str,
        /// The tool.
        tool: &'static str,
    },
    /// Rendering failed.
    #[error("rendering {path} at {revision}")]
    Render {
        /// The directory.
        path: String,
        /// The revision.
        revision: String,
        /// The failure, naming file and line where there is one.
        #[source]
        source: RenderError,
    },
    /// Applying or pruning failed.
    #[error("applying {revision}")]
    Apply {
        /// The revision.
        revision: String,
        /// The failure.
        #[source]
        source: Box<ApplyError>,
    },
    /// Everything was applied (and pruned), but with `wait` the objects did not become
    /// Current in time.
    #[error("applied {revision}, but it is not healthy")]
    Unhealthy {
        /// The revision.
        revision: String,
        /// The failure ([`ApplyError::Unhealthy`]).
        #[source]
        source: Box<ApplyError>,
    },
    /// Pruning everything on deletion failed.
    #[error("pruning the inventory of the deleted GitSync")]
    Prune(#[source] Box<ApplyError>),
    /// Writing the status failed.
    #[error("writing the status")]
    Status(#[source] kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("finalizer")]
    Finalizer(#[source] Box<finalizer::Error<ReconcileError>>),
    /// The controller is stopping.
    #[error("cancelled")]
    Cancelled,
}

/// What a failure means for the status and the retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Bad input: `Stalled`, tried again only at the interval (a new commit may fix it) or when
    /// the spec changes.
    Stalled,
    /// Transient: `Reconciling`, retried with backoff.
    Transient,
    /// The controller is stopping: nothing is reported.
    Cancelled,
}

impl ReconcileError {
    /// Whether retrying can help.
    #[must_use]
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Cancelled => FailureKind::Cancelled,
            Self::MissingMetadata(_)
            | Self::Spec(_)
            | Self::InventoryName(_)
            | Self::MissingTool { .. } => FailureKind::Stalled,
            Self::Render { source, .. } => match source {
                RenderError::Cancelled => FailureKind::Cancelled,
                _ => FailureKind::Stalled,
            },
            Self::SourceSetup(source) | Self::Fetch { source, .. } => match **source {
                SourceError::Cancelled { .. } => FailureKind::Cancelled,
                SourceError::InvalidConfiguration { .. } => FailureKind::Stalled,
                _ => FailureKind::Transient,
            },
            Self::Apply { source, .. } | Self::Prune(source) => match **source {
                ApplyError::Cancelled { .. } => FailureKind::Cancelled,
                ApplyError::Plan(_)
                | ApplyError::Schema { .. }
                | ApplyError::Invalid { .. }
                | ApplyError::EmptySet { .. }
                // A prune that would delete desired objects waits for a new revision (or the
                // opt-in): retrying cannot change the answer.
                | ApplyError::CascadingPrune { .. } => FailureKind::Stalled,
                _ => FailureKind::Transient,
            },
            // Health may come with time (or with the next commit): retried, not stalled.
            Self::Unhealthy { source, .. } => match **source {
                ApplyError::Unhealthy {
                    source: WaitError::Cancelled,
                    ..
                } => FailureKind::Cancelled,
                _ => FailureKind::Transient,
            },
            Self::WorkDir { .. } | Self::Status(_) | Self::Finalizer(_) => FailureKind::Transient,
        }
    }

    /// The condition reason, Flux-style.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Spec(_) | Self::InventoryName(_) | Self::MissingMetadata(_) => "InvalidSpec",
            Self::SourceSetup(_) | Self::Fetch { .. } | Self::WorkDir { .. } => "FetchFailed",
            Self::MissingTool { .. } | Self::Render { .. } => "BuildFailed",
            Self::Apply { source, .. } if matches!(**source, ApplyError::Invalid { .. }) => {
                "ValidationFailed"
            }
            Self::Apply { .. } => "ReconciliationFailed",
            Self::Unhealthy { .. } => "HealthCheckFailed",
            Self::Prune(_) => "PruneFailed",
            Self::Status(_) | Self::Finalizer(_) | Self::Cancelled => "ReconciliationFailed",
        }
    }

    /// The error and all its causes, joined with `: ` (what the status message says).
    #[must_use]
    pub fn chain(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let text = cause.to_string();
            // `#[error(transparent)]` layers repeat their source's text.
            if !message.ends_with(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        message
    }
}

/// Builds a [`GitSyncController`].
#[must_use]
pub struct GitSyncControllerBuilder {
    client: kube::Client,
    work_dir: PathBuf,
    namespace: Option<String>,
    kustomize: Option<PathBuf>,
    helm: Option<PathBuf>,
    concurrency: u16,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl std::fmt::Debug for GitSyncControllerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSyncControllerBuilder")
            .field("work_dir", &self.work_dir)
            .field("namespace", &self.namespace)
            .field("kustomize", &self.kustomize)
            .field("helm", &self.helm)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl GitSyncControllerBuilder {
    /// Watches only this namespace (default: all).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The `kustomize` binary, for the `kustomize` renderer and kustomizations under `auto`
    /// (the `controller` binary finds it with [`gitops_render::tool`]).
    pub fn kustomize_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.kustomize = Some(path.into());
        self
    }

    /// The `helm` binary, for the `helm` renderer (the `controller` binary finds it with
    /// [`gitops_render::tool`]).
    pub fn helm_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.helm = Some(path.into());
        self
    }

    /// How many GitSyncs are reconciled at once (default 4; 0 means no limit).
    pub fn concurrency(mut self, concurrency: u16) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// The first retry delay after a transient failure, doubled each time up to `max` (and never
    /// beyond the interval). Default 5 s to 5 min.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// The controller.
    pub fn build(self) -> GitSyncController {
        GitSyncController {
            namespace: self.namespace,
            concurrency: self.concurrency,
            context: Arc::new(Context {
                client: self.client.clone(),
                work_dir: self.work_dir,
                kustomize: self.kustomize,
                helm: self.helm,
                min_backoff: self.min_backoff,
                max_backoff: self.max_backoff,
                cancel: CancellationToken::new(),
                states: Mutex::default(),
                recorder: Recorder::new(
                    self.client.clone(),
                    Reporter {
                        controller: APPLY_FIELD_MANAGER.to_owned(),
                        instance: std::env::var("HOSTNAME").ok(),
                    },
                ),
            }),
        }
    }
}

/// A kube-runtime controller of [`GitSync`]s.
///
/// ```no_run
/// use gitops_examples::controller::GitSyncController;
/// use tokio_util::sync::CancellationToken;
/// # async fn example(client: kube::Client) {
/// let cancel = CancellationToken::new();
/// GitSyncController::builder(client, "/var/lib/gitsync")
///     .kustomize_binary("/usr/local/bin/kustomize")
///     .build()
///     .run(cancel)
///     .await;
/// # }
/// ```
#[derive(Debug)]
pub struct GitSyncController {
    namespace: Option<String>,
    concurrency: u16,
    context: Arc<Context>,
}

impl GitSyncController {
    /// A builder for a controller that uses `client` and keeps Git caches and artifacts under
    /// `work_dir`.
    pub fn builder(client: kube::Client, work_dir: impl Into<PathBuf>) -> GitSyncControllerBuilder {
        GitSyncControllerBuilder {
            client,
            work_dir: work_dir.into(),
            namespace: None,
            kustomize: None,
            helm: None,
            concurrency: 4,
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
        }
    }

    /// Runs until `cancel` is cancelled: then running fetches, renders and applies are stopped
    /// and the reconciliations in flight finish.
    pub async fn run(self, cancel: CancellationToken) {
        let api: Api<GitSync> = match &self.namespace {
            Some(namespace) => Api::namespaced(self.context.client.clone(), namespace),
            None => Api::all(self.context.client.clone()),
        };
        let stop = self.context.cancel.clone();
        let shutdown = {
            let cancel = cancel.clone();
            async move {
                cancel.cancelled().await;
                stop.cancel();
            }
        };
        tracing::info!(namespace = ?self.namespace, "GitSync controller starting");
        Controller::new(api, watcher::Config::default())
            .with_config(controller::Config::default().concurrency(self.concurrency))
            .graceful_shutdown_on(shutdown)
            .run(reconcile, error_policy, Arc::clone(&self.context))
            .for_each(|result| {
                match result {
                    Ok((object, _)) => tracing::debug!(gitsync = %object, "reconciled"),
                    // Logged by the error policy, with the retry delay.
                    Err(controller::Error::ReconcilerFailed(_, object)) => {
                        tracing::debug!(gitsync = %object, "reconciliation failed");
                    }
                    Err(error) => tracing::warn!(%error, "controller"),
                }
                std::future::ready(())
            })
            .await;
        tracing::info!("GitSync controller stopped");
    }
}

/// What the controller remembers about one GitSync between reconciliations.
#[derive(Default)]
struct SyncState {
    /// The source, once a valid spec named one.
    source: Option<SourceState>,
    /// The generation and requested-at annotation of the last reconciliation.
    trigger: Trigger,
    /// When the next reconciliation is due; `None` when only a change can help.
    next_due: Option<Instant>,
    /// Transient failures in a row.
    failures: u32,
    /// The status written last (without the inventory): an equal one is not written again.
    written: Option<GitSyncStatus>,
}

/// A GitSync's source and what it fetched last.
struct SourceState {
    location: SourceLocation,
    source: Arc<dyn Source>,
    /// The last artifact fetched, kept to correct drift when the revision is unchanged.
    artifact: Option<(Revision, PathBuf)>,
    /// Artifacts written so far (names the next one's directory).
    artifacts_made: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Trigger {
    generation: Option<i64>,
    requested_at: Option<String>,
}

impl Trigger {
    fn of(sync: &GitSync) -> Self {
        let annotations = sync.annotations();
        Self {
            generation: sync.meta().generation,
            requested_at: annotations
                .get(REQUESTED_AT_ANNOTATION)
                .or_else(|| annotations.get(FLUX_REQUESTED_AT_ANNOTATION))
                .cloned(),
        }
    }
}

struct Context {
    client: kube::Client,
    work_dir: PathBuf,
    kustomize: Option<PathBuf>,
    helm: Option<PathBuf>,
    min_backoff: Duration,
    max_backoff: Duration,
    cancel: CancellationToken,
    states: Mutex<HashMap<String, SyncState>>,
    recorder: Recorder,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("work_dir", &self.work_dir)
            .field("kustomize", &self.kustomize)
            .field("helm", &self.helm)
            .finish_non_exhaustive()
    }
}

/// The metadata every reconciliation needs.
struct Identity {
    name: String,
    namespace: String,
    uid: String,
}

impl Identity {
    fn of(sync: &GitSync) -> Result<Self, ReconcileError> {
        Ok(Self {
            name: sync
                .meta()
                .name
                .clone()
                .ok_or(ReconcileError::MissingMetadata("name"))?,
            namespace: sync
                .meta()
                .namespace
                .clone()
                .ok_or(ReconcileError::MissingMetadata("namespace"))?,
            uid: sync
                .meta()
                .uid
                .clone()
                .ok_or(ReconcileError::MissingMetadata("uid"))?,
        })
    }
}

/// What one successful sync did.
struct Synced {
    revision: String,
    summary: String,
    /// API requests the apply sent.
    requests: u64,
}

async fn reconcile(sync: Arc<GitSync>, context: Arc<Context>) -> Result<Action, ReconcileError> {
    let identity = Identity::of(&sync)?;
    let settled = sync.meta().deletion_timestamp.is_none()
        && sync.finalizers().iter().any(|f| f == FINALIZER);
    if settled && let Some(wait) = context.not_due(&identity.uid, &Trigger::of(&sync)) {
        // A change of our own status, or of metadata we do not read: the next run is scheduled.
        return Ok(Action::requeue(wait));
    }
    let api: Api<GitSync> = Api::namespaced(context.client.clone(), &identity.namespace);
    finalizer::finalizer(&api, FINALIZER, sync, |event| async {
        match event {
            Event::Apply(sync) => context.sync(&api, &sync).await,
            Event::Cleanup(sync) => context.cleanup(&sync).await,
        }
    })
    .await
    .map_err(|error| ReconcileError::Finalizer(Box::new(error)))
}

fn error_policy(sync: Arc<GitSync>, error: &ReconcileError, context: Arc<Context>) -> Action {
    let uid = sync.meta().uid.clone().unwrap_or_default();
    let interval = sync
        .spec
        .settings()
        .map_or(context.max_backoff, |s| s.interval);
    let delay = context.record_failure(&uid, interval);
    tracing::warn!(gitsync = %sync.name_any(), error = %error.chain(), retry_in = ?delay, "reconciliation failed");
    Action::requeue(delay)
}

impl Context {
    /// How long until the next run is due, when the object did not change since the last one.
    fn not_due(&self, uid: &str, trigger: &Trigger) -> Option<Duration> {
        let states = self.states.lock().expect("state lock");
        let state = states.get(uid)?;
        if &state.trigger != trigger {
            return None;
        }
        match state.next_due {
            None => Some(Duration::from_secs(24 * 3600)),
            Some(due) => {
                let now = Instant::now();
                (due > now).then(|| due - now)
            }
        }
    }

    fn backoff(&self, failures: u32, interval: Duration) -> Duration {
        let doubled = self
            .min_backoff
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)));
        doubled
            .min(self.max_backoff)
            .min(interval)
            .max(self.min_backoff.min(interval))
    }

    fn record_failure(&self, uid: &str, interval: Duration) -> Duration {
        let mut states = self.states.lock().expect("state lock");
        match states.get_mut(uid) {
            Some(state) => {
                state.failures += 1;
                let delay = self.backoff(state.failures, interval);
                state.next_due = Some(Instant::now() + delay);
                delay
            }
            None => self.backoff(1, interval),
        }
    }

    fn work_dir_of(&self, uid: &str) -> PathBuf {
        self.work_dir.join(uid)
    }

    /// One reconciliation of a GitSync that carries the finalizer.
    async fn sync(&self, api: &Api<GitSync>, sync: &GitSync) -> Result<Action, ReconcileError> {
        let identity = Identity::of(sync)?;
        let trigger = Trigger::of(sync);
        let mut status = sync.status.clone().unwrap_or_default();
        let ready_before = status.condition(super::READY).cloned();
        let applied_before = status.last_applied_revision.clone();
        let generation = sync.meta().generation;
        let key = format!("{}/{}", identity.namespace, identity.name);
        if sync.spec.suspend {
            tracing::info!(gitsync = %key, "suspended");
            self.finish(&identity.uid, trigger, None, false);
            return Ok(Action::await_change());
        }
        let interval = sync.spec.settings().ok().map(|s| s.interval);
        if status.observed_generation != generation || status.condition(super::READY).is_none() {
            Phase::Progressing {
                message: format!("reconciling generation {}", generation.unwrap_or_default()),
            }
            .apply_to(&mut status, generation, &now_rfc3339());
            self.write_status(api, &identity, &status).await?;
        }
        let result = self.sync_once(api, sync, &identity, &mut status).await;
        let now = now_rfc3339();
        let (phase, next) = match &result {
            Ok(synced) => {
                tracing::info!(gitsync = %key, revision = %synced.revision, summary = %synced.summary, requests = synced.requests, "applied");
                status.last_applied_revision = Some(synced.revision.clone());
                (
                    Phase::Succeeded {
                        message: format!("Applied revision: {}", synced.revision),
                    },
                    interval,
                )
            }
            Err(error) => {
                if let ReconcileError::Unhealthy { revision, .. } = error {
                    // It was applied; only its health is missing.
                    status.last_applied_revision = Some(revision.clone());
                }
                let message = error.chain();
                match error.kind() {
                    FailureKind::Cancelled => return Ok(Action::await_change()),
                    FailureKind::Stalled => {
                        tracing::warn!(gitsync = %key, error = %message, "stalled");
                        (
                            Phase::Stalled {
                                reason: error.reason(),
                                message,
                            },
                            interval,
                        )
                    }
                    FailureKind::Transient => {
                        let delay = self
                            .record_failure(&identity.uid, interval.unwrap_or(self.max_backoff));
                        tracing::warn!(gitsync = %key, error = %message, retry_in = ?delay, "will retry");
                        (
                            Phase::Retrying {
                                reason: error.reason(),
                                message,
                            },
                            Some(delay),
                        )
                    }
                }
            }
        };
        // An event when something new happens: a revision applied, or a new failure.
        let event = match &phase {
            Phase::Succeeded { message } if applied_before != status.last_applied_revision => {
                let summary = result
                    .as_ref()
                    .map(|s| s.summary.as_str())
                    .unwrap_or_default();
                Some((
                    EventType::Normal,
                    super::status::REASON_SUCCEEDED,
                    format!("{message} ({summary})"),
                ))
            }
            Phase::Retrying { reason, message } | Phase::Stalled { reason, message }
                if ready_before
                    .as_ref()
                    .is_none_or(|c| c.reason != *reason || c.message != *message) =>
            {
                Some((EventType::Warning, *reason, message.clone()))
            }
            _ => None,
        };
        if let Some((type_, reason, note)) = event {
            self.publish(sync, type_, reason, note).await;
        }
        phase.apply_to(&mut status, generation, &now);
        status.observed_generation = generation;
        if trigger.requested_at.is_some() {
            status.last_handled_reconcile_at = trigger.requested_at.clone();
        }
        self.write_status(api, &identity, &status).await?;
        let transient = matches!(&result, Err(e) if e.kind() == FailureKind::Transient);
        self.finish(&identity.uid, trigger, next, transient);
        Ok(next.map_or_else(Action::await_change, Action::requeue))
    }

    /// Writes the controller's part of the status, unless it equals what was written last (a
    /// no-change reconciliation then sends no status request).
    async fn write_status(
        &self,
        api: &Api<GitSync>,
        identity: &Identity,
        status: &GitSyncStatus,
    ) -> Result<(), ReconcileError> {
        let comparable = GitSyncStatus {
            inventory: None,
            ..status.clone()
        };
        let unchanged = self
            .states
            .lock()
            .expect("state lock")
            .get(&identity.uid)
            .is_some_and(|state| state.written.as_ref() == Some(&comparable));
        if unchanged {
            return Ok(());
        }
        write_status(api, &identity.name, status, STATUS_FIELD_MANAGER)
            .await
            .map_err(ReconcileError::Status)?;
        self.states
            .lock()
            .expect("state lock")
            .entry(identity.uid.clone())
            .or_default()
            .written = Some(comparable);
        Ok(())
    }

    /// Publishes a Kubernetes event about the GitSync; a failure is only logged.
    async fn publish(&self, sync: &GitSync, type_: EventType, reason: &str, note: String) {
        // The API limits an event's note to 1 kB.
        let mut note = note;
        if note.len() > 1000 {
            let mut end = 1000;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
        }
        let event = KubeEvent {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &sync.object_ref(&())).await {
            tracing::warn!(gitsync = %sync.name_any(), %error, "cannot publish an event");
        }
    }

    /// Records the end of a reconciliation and when the next is due.
    fn finish(&self, uid: &str, trigger: Trigger, next: Option<Duration>, failed: bool) {
        let mut states = self.states.lock().expect("state lock");
        if let Some(state) = states.get_mut(uid) {
            state.trigger = trigger;
            state.next_due = next.map(|d| Instant::now() + d);
            if !failed {
                state.failures = 0;
            }
        } else {
            // The spec was never valid: remember only the trigger, so that a status write of
            // ours does not start another run.
            states.insert(
                uid.to_owned(),
                SyncState {
                    trigger,
                    next_due: next.map(|d| Instant::now() + d),
                    ..SyncState::default()
                },
            );
        }
    }

    async fn sync_once(
        &self,
        api: &Api<GitSync>,
        sync: &GitSync,
        identity: &Identity,
        status: &mut GitSyncStatus,
    ) -> Result<Synced, ReconcileError> {
        let settings = sync.spec.settings().map_err(ReconcileError::Spec)?;
        let inventory =
            StatusInventory::new(&identity.namespace, &identity.name, INVENTORY_FIELD_MANAGER)
                .map_err(ReconcileError::InventoryName)?;
        let renderer = self.renderer(sync, identity)?;
        let (revision, artifact_dir) = self.fetch(identity, &settings.source).await?;
        let revision = revision.to_string();
        if status.last_attempted_revision.as_deref() != Some(revision.as_str()) {
            status.last_attempted_revision = Some(revision.clone());
            Phase::Progressing {
                message: format!("applying revision {revision}"),
            }
            .apply_to(status, sync.meta().generation, &now_rfc3339());
            self.write_status(api, identity, status).await?;
        }

        let render_error = |source| ReconcileError::Render {
            path: settings.path.clone(),
            revision: revision.clone(),
            source,
        };
        let root = SourceRoot::new(&artifact_dir).map_err(|e| render_error(e.into()))?;
        let request =
            RenderRequest::new(root, &settings.path).with_cancellation(self.cancel.child_token());
        let set = DesiredSet::from_render(renderer.render(&request).await).map_err(render_error)?;

        let applier = Applier::builder(self.client.clone(), inventory)
            .field_manager(APPLY_FIELD_MANAGER)
            .build();
        let options = ApplyOptions::default()
            // Git is the source of truth: fields changed by hand (drift) are taken back, as
            // Flux does with forced field ownership.
            .with_force(true)
            .with_prune(sync.spec.prune)
            .with_target_namespace(sync.spec.target_namespace.clone())
            .with_wait(sync.spec.wait.then_some(settings.timeout))
            // Objects first applied or edited with kubectl become fully ours, as with Flux.
            .with_takeover(TakeoverManager::defaults());
        let key = format!("{}/{}", identity.namespace, identity.name);
        let change_set = applier
            .apply_set_with_progress(set, &options, &self.cancel, |progress| {
                tracing::debug!(gitsync = %key, ?progress, "apply");
            })
            .await
            .map_err(|source| match source {
                ApplyError::Unhealthy { .. } => ReconcileError::Unhealthy {
                    revision: revision.clone(),
                    source: Box::new(source),
                },
                source => ReconcileError::Apply {
                    revision: revision.clone(),
                    source: Box::new(source),
                },
            })?;
        let summary = [
            gitops_apply::ObjectAction::Created,
            gitops_apply::ObjectAction::Configured,
            gitops_apply::ObjectAction::Recreated,
            gitops_apply::ObjectAction::Unchanged,
            gitops_apply::ObjectAction::Pruned,
            gitops_apply::ObjectAction::Skipped,
        ]
        .iter()
        .map(|action| (action, change_set.count(*action)))
        .filter(|(_, count)| *count > 0)
        .map(|(action, count)| format!("{count} {action:?}").to_lowercase())
        .collect::<Vec<_>>()
        .join(", ");
        Ok(Synced {
            revision,
            summary,
            requests: change_set.requests,
        })
    }

    fn renderer(
        &self,
        sync: &GitSync,
        identity: &Identity,
    ) -> Result<Box<dyn Renderer>, ReconcileError> {
        let missing = |renderer, tool| ReconcileError::MissingTool { renderer, tool };
        Ok(match sync.spec.renderer {
            RendererKind::Plain => Box::new(PlainRenderer::new()),
            RendererKind::Kustomize => Box::new(KustomizeRenderer::new(
                self.kustomize
                    .clone()
                    .ok_or_else(|| missing("kustomize", "kustomize"))?,
            )),
            RendererKind::Helm => {
                let helm = self.helm.clone().ok_or_else(|| missing("helm", "helm"))?;
                let namespace = sync
                    .spec
                    .target_namespace
                    .clone()
                    .unwrap_or_else(|| identity.namespace.clone());
                Box::new(HelmRenderer::new(helm, identity.name.clone()).namespace(namespace))
            }
            RendererKind::Auto => {
                let mut auto = AutoRenderer::new(PlainRenderer::new());
                if let Some(kustomize) = &self.kustomize {
                    auto = auto.with_kustomize(KustomizeRenderer::new(kustomize.clone()));
                }
                Box::new(auto)
            }
        })
    }

    /// Fetches the source, or reuses the last artifact when the revision is unchanged.
    async fn fetch(
        &self,
        identity: &Identity,
        location: &SourceLocation,
    ) -> Result<(Revision, PathBuf), ReconcileError> {
        let base = self.work_dir_of(&identity.uid);
        let (source, last, destination) = {
            let mut states = self.states.lock().expect("state lock");
            let state = states.entry(identity.uid.clone()).or_default();
            let current = state
                .source
                .as_ref()
                .is_some_and(|source| &source.location == location);
            if !current {
                if let Some(previous) = state.source.take() {
                    // The repository changed: the cache and the artifact belong to the old one.
                    remove_dir_logged(&base.join("git"));
                    if let Some((_, dir)) = previous.artifact {
                        remove_dir_logged(&dir);
                    }
                }
                let source: Arc<dyn Source> = match location {
                    SourceLocation::Git { url, reference } => Arc::new(
                        GitSource::builder(url.clone(), base.join("git"))
                            .reference(reference.clone())
                            .build()
                            .map_err(|e| ReconcileError::SourceSetup(Box::new(e)))?,
                    ),
                    SourceLocation::Local(path) => Arc::new(LocalDirectorySource::new(path)),
                };
                state.source = Some(SourceState {
                    location: location.clone(),
                    source,
                    artifact: None,
                    artifacts_made: 0,
                });
            }
            let source = state.source.as_mut().expect("set above");
            source.artifacts_made += 1;
            let destination = base
                .join("artifacts")
                .join(source.artifacts_made.to_string());
            (
                Arc::clone(&source.source),
                source
                    .artifact
                    .as_ref()
                    .map(|(revision, _)| revision.clone()),
                destination,
            )
        };
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ReconcileError::WorkDir {
                path: parent.to_owned(),
                source,
            })?;
        }
        let key = format!("{}/{}", identity.namespace, identity.name);
        let mut request = FetchRequest::new(&destination)
            .with_cancellation(self.cancel.child_token())
            .with_progress(move |progress| tracing::debug!(gitsync = %key, ?progress, "fetch"));
        if let Some(last) = last {
            request = request.with_last_revision(last);
        }
        let outcome = source.fetch(request).await.map_err(|source_error| {
            remove_dir_logged(&destination);
            ReconcileError::Fetch {
                location: source.location(),
                source: Box::new(source_error),
            }
        })?;
        let mut states = self.states.lock().expect("state lock");
        // Gone only when the GitSync was cleaned up meanwhile.
        let state = states
            .get_mut(&identity.uid)
            .and_then(|state| state.source.as_mut())
            .ok_or(ReconcileError::Cancelled)?;
        match outcome {
            FetchOutcome::Unchanged(revision) => {
                let (_, dir) = state
                    .artifact
                    .clone()
                    .expect("a last revision is sent only with an artifact");
                Ok((revision, dir))
            }
            FetchOutcome::Fetched(artifact) => {
                let revision = artifact.revision().clone();
                if let Some((_, old)) = state
                    .artifact
                    .replace((revision.clone(), destination.clone()))
                {
                    remove_dir_logged(&old);
                }
                Ok((revision, destination))
            }
        }
    }

    /// Prunes the inventory of a deleted GitSync (unless prune is off or it is suspended) and
    /// forgets it.
    async fn cleanup(&self, sync: &GitSync) -> Result<Action, ReconcileError> {
        let identity = Identity::of(sync)?;
        let key = format!("{}/{}", identity.namespace, identity.name);
        if sync.spec.prune && !sync.spec.suspend {
            match StatusInventory::new(&identity.namespace, &identity.name, INVENTORY_FIELD_MANAGER)
            {
                // Such a name never applied anything.
                Err(_) => {}
                Ok(inventory) => {
                    let applier = Applier::builder(self.client.clone(), inventory)
                        .field_manager(APPLY_FIELD_MANAGER)
                        .build();
                    // A finalizer deletes everything its inventory lists.
                    let change_set = applier
                        .delete_all(&self.cancel)
                        .await
                        .map_err(|e| ReconcileError::Prune(Box::new(e)))?;
                    tracing::info!(gitsync = %key, pruned = change_set.count(gitops_apply::ObjectAction::Pruned), "deleted; pruned its objects");
                }
            }
        } else {
            tracing::info!(gitsync = %key, "deleted; its objects stay (prune off or suspended)");
        }
        self.states
            .lock()
            .expect("state lock")
            .remove(&identity.uid);
        let dir = self.work_dir_of(&identity.uid);
        if dir.exists() {
            remove_dir_logged(&dir);
        }
        Ok(Action::await_change())
    }
}

fn remove_dir_logged(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), %error, "cannot remove a directory of the controller");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        // Never used by these tests: a client needs a runtime, not a server.
        let client = kube::Client::try_from(kube::Config::new(
            "http://127.0.0.1:9".parse().expect("a URL"),
        ))
        .expect("a client");
        Context {
            client: client.clone(),
            work_dir: PathBuf::from("/nonexistent"),
            kustomize: None,
            helm: None,
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
            cancel: CancellationToken::new(),
            states: Mutex::default(),
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "test".into(),
                    instance: None,
                },
            ),
        }
    }

    #[tokio::test]
    async fn backoff_doubles_up_to_the_interval_and_the_maximum() {
        let context = context();
        let hour = Duration::from_secs(3600);
        let delays: Vec<u64> = (1..=8)
            .map(|n| context.backoff(n, hour).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(context.backoff(6, Duration::from_secs(60)).as_secs(), 60);
        assert_eq!(context.backoff(1, Duration::from_secs(2)).as_secs(), 2);
        assert_eq!(context.backoff(100, hour).as_secs(), 300);
    }

    #[tokio::test]
    async fn a_run_is_due_when_the_trigger_changes_or_the_time_comes() {
        let context = context();
        let trigger = Trigger {
            generation: Some(1),
            requested_at: None,
        };
        assert_eq!(context.not_due("u", &trigger), None, "unknown objects run");
        context.finish("u", trigger.clone(), Some(Duration::from_secs(60)), false);
        let wait = context.not_due("u", &trigger).expect("not due yet");
        assert!(wait > Duration::from_secs(55) && wait <= Duration::from_secs(60));
        let newer = Trigger {
            generation: Some(2),
            ..trigger.clone()
        };
        assert_eq!(context.not_due("u", &newer), None, "a new generation runs");
        let requested = Trigger {
            requested_at: Some("now".into()),
            ..trigger.clone()
        };
        assert_eq!(context.not_due("u", &requested), None, "a request runs");
        context.finish("u", trigger.clone(), Some(Duration::ZERO), false);
        assert_eq!(context.not_due("u", &trigger), None, "due now");
    }

    #[test]
    fn failures_are_classified() {
        let render = ReconcileError::Render {
            path: ".".into(),
            revision: "r".into(),
            source: RenderError::Plain(Box::new(gitops_render::PlainError::Parse(
                gitops_core::parse_manifests("kind: [", "bad.yaml").unwrap_err(),
            ))),
        };
        assert_eq!(render.kind(), FailureKind::Stalled);
        assert_eq!(render.reason(), "BuildFailed");
        assert!(render.chain().contains("bad.yaml:1"), "{}", render.chain());
        let fetch = ReconcileError::Fetch {
            location: "file:///r".into(),
            source: Box::new(SourceError::UnknownReference {
                reference: "branch \"x\"".into(),
                location: "file:///r".into(),
            }),
        };
        assert_eq!(fetch.kind(), FailureKind::Transient);
        assert_eq!(fetch.reason(), "FetchFailed");
        assert_eq!(
            fetch.chain(),
            "fetching file:///r: branch \"x\" does not exist in file:///r"
        );
        assert_eq!(ReconcileError::Cancelled.kind(), FailureKind::Cancelled);
        assert_eq!(
            ReconcileError::Spec(SpecError::SourceChoice).kind(),
            FailureKind::Stalled
        );
    }
}
