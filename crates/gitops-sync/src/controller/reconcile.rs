//! The reconcile function a `kube::runtime::Controller` calls, its error policy, and the
//! [`SyncContext`] they share.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gitops_apply::{Applier, ApplyError, ConfigMapInventory, InventoryError, ObjectAction};
use gitops_core::escape::Escaped;
use gitops_render::tool::{Tool, ToolLocator};
use gitops_source::{GitCredentials, Secret, SourceError};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::inventory::StatusInventory;
use super::status::{Condition, Phase, READY, REASON_SUCCEEDED, SyncStatus, now_rfc3339};
use crate::spec::{SpecError, SyncSpec};
use crate::{
    Backoff, ErrorClass, FactoryError, SpecUnit, SyncError, SyncReport, SyncUnit, UnitFactory,
};

/// Flux's annotation: a new value (a timestamp, say) asks for a sync now; the value handled
/// last is `status.lastHandledReconcileAt`.
pub const REQUESTED_AT_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";
/// The finalizer unless [`SyncContextBuilder::finalizer`] names another.
pub const DEFAULT_FINALIZER: &str = "sync.gitops-rs.io/finalizer";
/// The field manager of the applied objects unless [`SyncContextBuilder::field_manager`] names
/// another; the status is written by `<field manager>-status`, the inventory in the status by
/// `<field manager>-inventory`.
pub const DEFAULT_FIELD_MANAGER: &str = "gitops-sync-controller";

/// A custom resource of yours that embeds a [`SyncSpec`] in its spec and a [`SyncStatus`] as
/// its status: what [`reconcile`] needs to read them. It must be namespaced and have a status
/// subresource.
///
/// ```
/// use gitops_sync::controller::{SyncResource, SyncSpec, SyncStatus};
/// use kube::CustomResource;
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
/// #[kube(group = "example.com", version = "v1", kind = "AppSync", namespaced, status = "SyncStatus")]
/// pub struct AppSyncSpec {
///     #[serde(flatten)]
///     pub sync: SyncSpec,
/// }
///
/// impl SyncResource for AppSync {
///     fn sync_spec(&self) -> &SyncSpec { &self.spec.sync }
///     fn sync_status(&self) -> Option<&SyncStatus> { self.status.as_ref() }
/// }
/// ```
pub trait SyncResource:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The embedded spec.
    fn sync_spec(&self) -> &SyncSpec;
    /// The status, when there is one.
    fn sync_status(&self) -> Option<&SyncStatus>;
}

/// Why a reconciliation failed. Failures of the sync itself are written to the status and
/// retried by the reconcile function; only the others reach the error policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// The object lacks a name, namespace or uid (never the case for objects from the API).
    #[error("the object has no metadata.{0}")]
    MissingMetadata(&'static str),
    /// The spec cannot be used.
    #[error("invalid spec")]
    Spec(#[source] SpecError),
    /// The name or namespace cannot be an ownership label value.
    #[error("the object's name cannot label the objects it applies")]
    InventoryName(#[source] InventoryError),
    /// The credentials Secret cannot be read.
    #[error("reading the Secret {}/{}", Escaped(.namespace), Escaped(.name))]
    Secret {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API's error.
        #[source]
        source: kube::Error,
    },
    /// The credentials Secret lacks a key or holds a value that is not UTF-8 (the value is
    /// never shown).
    #[error("the Secret {}: {problem}", Escaped(.name))]
    SecretContent {
        /// Its name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The source cannot be set up (a malformed URL, say).
    #[error("setting up the source")]
    SourceSetup(#[source] SourceError),
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
    /// The unit cannot be made from the spec (a tool path given that is wrong, a local
    /// directory that is not there).
    #[error("setting up the sync unit")]
    Unit(#[source] Box<FactoryError>),
    /// The sync failed.
    #[error(transparent)]
    Sync(SyncError),
    /// Pruning everything on deletion failed.
    #[error("pruning the inventory of the deleted object")]
    Prune(#[source] Box<ApplyError>),
    /// Writing the status failed.
    #[error("writing the status")]
    Status(#[source] kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("finalizer")]
    Finalizer(#[source] Box<finalizer::Error<ControllerError>>),
}

impl ControllerError {
    /// Whether retrying can help: [`ErrorClass::Stalled`] waits for a new revision or spec.
    ///
    /// ```
    /// use gitops_sync::ErrorClass;
    /// use gitops_sync::controller::ControllerError;
    /// assert_eq!(ControllerError::MissingTool { renderer: "helm", tool: "helm" }.class(), ErrorClass::Stalled);
    /// ```
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::MissingMetadata(_)
            | Self::Spec(_)
            | Self::InventoryName(_)
            | Self::SecretContent { .. }
            | Self::MissingTool { .. } => ErrorClass::Stalled,
            Self::SourceSetup(source) => match source {
                SourceError::Cancelled { .. } => ErrorClass::Cancelled,
                SourceError::InvalidConfiguration { .. } => ErrorClass::Stalled,
                _ => ErrorClass::Transient,
            },
            Self::Sync(error) => error.class(),
            // A directory may appear; a wrong tool path or inventory needs a new spec or a
            // restart.
            Self::Unit(error) if matches!(**error, FactoryError::NotADirectory(_)) => {
                ErrorClass::Transient
            }
            Self::Unit(_) => ErrorClass::Stalled,
            Self::Prune(source) if matches!(**source, ApplyError::Cancelled { .. }) => {
                ErrorClass::Cancelled
            }
            Self::Secret { .. } | Self::Prune(_) | Self::Status(_) | Self::Finalizer(_) => {
                ErrorClass::Transient
            }
        }
    }

    /// The condition reason, Flux-style.
    ///
    /// ```
    /// use gitops_sync::controller::{ControllerError, SpecError};
    /// assert_eq!(ControllerError::Spec(SpecError::ZeroInterval).reason(), "InvalidSpec");
    /// ```
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Spec(_) | Self::InventoryName(_) | Self::MissingMetadata(_) => "InvalidSpec",
            Self::Secret { .. } | Self::SecretContent { .. } => "AuthenticationFailed",
            Self::SourceSetup(_) | Self::Sync(SyncError::Fetch { .. }) => "FetchFailed",
            Self::MissingTool { .. } | Self::Sync(SyncError::Render { .. }) => "BuildFailed",
            Self::Unit(error) => match **error {
                FactoryError::Tool { .. } => "BuildFailed",
                FactoryError::NotADirectory(_) => "FetchFailed",
                _ => "InvalidSpec",
            },
            Self::Sync(SyncError::Apply { source, .. })
                if matches!(**source, ApplyError::Invalid { .. }) =>
            {
                "ValidationFailed"
            }
            Self::Sync(SyncError::Wait { .. }) => "HealthCheckFailed",
            Self::Prune(_) => "PruneFailed",
            _ => "ReconciliationFailed",
        }
    }

    /// The error and all its causes, joined with `: ` (what the status message says).
    ///
    /// ```
    /// use gitops_sync::controller::{ControllerError, SpecError};
    /// assert_eq!(ControllerError::Spec(SpecError::ZeroInterval).chain(), "invalid spec: spec.interval must be greater than zero");
    /// ```
    #[must_use]
    pub fn chain(&self) -> String {
        gitops_core::error_chain(self)
    }
}

/// Builds a [`SyncContext`].
#[must_use]
pub struct SyncContextBuilder {
    client: kube::Client,
    work_dir: PathBuf,
    kustomize: Option<PathBuf>,
    helm: Option<PathBuf>,
    backoff: Backoff,
    field_manager: String,
    finalizer: String,
    concurrency: u16,
}

impl fmt::Debug for SyncContextBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncContextBuilder")
            .field("work_dir", &self.work_dir)
            .field("kustomize", &self.kustomize)
            .field("helm", &self.helm)
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

impl SyncContextBuilder {
    /// The `kustomize` binary, for `kind: kustomize` and kustomizations under `auto` (find it
    /// with [`gitops_render::tool`]). Without it such specs stall, naming what is missing.
    pub fn kustomize_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.kustomize = Some(path.into());
        self
    }

    /// The `helm` binary, for `kind: helm`.
    pub fn helm_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.helm = Some(path.into());
        self
    }

    /// The retry delays after transient failures (never beyond the interval). Default 5 s,
    /// doubling up to 5 minutes.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The field manager of the applied objects (default [`DEFAULT_FIELD_MANAGER`]).
    pub fn field_manager(mut self, field_manager: impl Into<String>) -> Self {
        self.field_manager = field_manager.into();
        self
    }

    /// The finalizer that prunes on deletion (default [`DEFAULT_FINALIZER`]).
    pub fn finalizer(mut self, finalizer: impl Into<String>) -> Self {
        self.finalizer = finalizer.into();
        self
    }

    /// How many objects [`run`] reconciles at once (default 4; 0 means no limit).
    pub fn concurrency(mut self, concurrency: u16) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// The context, ready for [`reconcile`] and [`error_policy`].
    ///
    /// ```no_run
    /// # fn example(client: kube::Client) {
    /// let context = gitops_sync::controller::SyncContext::builder(client, "/var/lib/sync").build();
    /// # drop(context);
    /// # }
    /// ```
    pub fn build(self) -> Arc<SyncContext> {
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: self.field_manager.clone(),
                instance: std::env::var("HOSTNAME").ok(),
            },
        );
        // A tool not given is found nowhere: a spec that needs it stalls, naming it.
        let locator = |tool, path: Option<PathBuf>| match path {
            Some(path) => ToolLocator::new(tool).explicit(Some(path)),
            None => ToolLocator::new(tool)
                .without_variable()
                .with_search_path(""),
        };
        let factory = UnitFactory::new(self.client.clone(), self.work_dir.clone())
            .kustomize(locator(Tool::Kustomize, self.kustomize.clone()))
            .helm(locator(Tool::Helm, self.helm.clone()))
            .field_manager(self.field_manager.clone());
        Arc::new(SyncContext {
            recorder,
            client: self.client,
            factory,
            work_dir: self.work_dir,
            kustomize: self.kustomize,
            helm: self.helm,
            backoff: self.backoff,
            field_manager: self.field_manager,
            finalizer: self.finalizer,
            concurrency: self.concurrency,
            cancel: CancellationToken::new(),
            states: Mutex::default(),
        })
    }
}

/// What [`reconcile`] shares between objects: the client, the work directory (Git caches and
/// artifacts, one directory per object), the tools, the backoff, and per object its
/// [`SyncUnit`] (kept while the spec stays the same, so that an unchanged revision downloads
/// and renders nothing), when its next sync is due and the status written last.
pub struct SyncContext {
    client: kube::Client,
    factory: UnitFactory,
    recorder: Recorder,
    work_dir: PathBuf,
    kustomize: Option<PathBuf>,
    helm: Option<PathBuf>,
    backoff: Backoff,
    field_manager: String,
    finalizer: String,
    concurrency: u16,
    cancel: CancellationToken,
    states: Mutex<HashMap<String, ObjectState>>,
}

impl fmt::Debug for SyncContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncContext")
            .field("work_dir", &self.work_dir)
            .field("kustomize", &self.kustomize)
            .field("helm", &self.helm)
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

impl SyncContext {
    /// A builder for a context that uses `client` and keeps Git caches and artifacts under
    /// `work_dir`.
    ///
    /// ```no_run
    /// # fn example(client: kube::Client) {
    /// use gitops_sync::controller::SyncContext;
    /// let context = SyncContext::builder(client, "/var/lib/sync")
    ///     .kustomize_binary("/usr/local/bin/kustomize")
    ///     .field_manager("my-controller")
    ///     .build();
    /// # drop(context);
    /// # }
    /// ```
    pub fn builder(client: kube::Client, work_dir: impl Into<PathBuf>) -> SyncContextBuilder {
        SyncContextBuilder {
            client,
            work_dir: work_dir.into(),
            kustomize: None,
            helm: None,
            backoff: Backoff::new(Duration::from_secs(5), Duration::from_secs(300)),
            field_manager: DEFAULT_FIELD_MANAGER.to_owned(),
            finalizer: DEFAULT_FINALIZER.to_owned(),
            concurrency: 4,
        }
    }

    /// The token that stops the fetches, renders, applies and waits in flight (cancel it when
    /// the controller shuts down; [`run`] does).
    ///
    /// ```no_run
    /// # fn example(context: &gitops_sync::controller::SyncContext) {
    /// context.cancellation().cancel();
    /// # }
    /// ```
    #[must_use]
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The finalizer this context adds.
    ///
    /// ```no_run
    /// # fn example(context: &gitops_sync::controller::SyncContext) {
    /// assert_eq!(context.finalizer(), gitops_sync::controller::DEFAULT_FINALIZER);
    /// # }
    /// ```
    #[must_use]
    pub fn finalizer(&self) -> &str {
        &self.finalizer
    }

    fn status_manager(&self) -> String {
        format!("{}-status", self.field_manager)
    }

    fn inventory_manager(&self) -> String {
        format!("{}-inventory", self.field_manager)
    }

    fn state<T>(&self, uid: &str, f: impl FnOnce(&mut ObjectState) -> T) -> T {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        f(states.entry(uid.to_owned()).or_default())
    }
}

/// Where one sync left the object.
struct SyncOutcome {
    phase: Phase,
    /// When the next sync is due; `None` when only a change can help.
    next: Option<Duration>,
    /// A transient failure, counted for the backoff.
    failed: bool,
}

/// Records in the status the revision a sync applied, or attempted when it failed after the
/// fetch (a failed wait applied it; only its health is missing).
fn record_revisions(result: &Result<SyncReport, ControllerError>, status: &mut SyncStatus) {
    let applied = match result {
        Ok(report) => report,
        Err(ControllerError::Sync(SyncError::Wait { report, .. })) => &**report,
        Err(ControllerError::Sync(
            SyncError::Render { revision, .. } | SyncError::Apply { revision, .. },
        )) => {
            status.last_attempted_revision = Some(revision.to_string());
            return;
        }
        Err(_) => return,
    };
    let revision = applied.revision.to_string();
    status.last_applied_revision = Some(revision.clone());
    status.last_attempted_revision = Some(revision);
}

/// Records the end of a sync in the status: its phase, the generation it saw and the
/// requested-at value it handled.
fn settle(status: &mut SyncStatus, phase: &Phase, generation: Option<i64>, trigger: &TriggerKey) {
    phase.apply_to(status, generation, &now_rfc3339());
    status.observed_generation = generation;
    if trigger.requested_at.is_some() {
        status
            .last_handled_reconcile_at
            .clone_from(&trigger.requested_at);
    }
}

/// The event of a sync when something new happened: a revision applied, or a failure other
/// than the one the Ready condition already shows.
fn new_event(
    phase: &Phase,
    result: &Result<SyncReport, ControllerError>,
    applied_changed: bool,
    ready_before: Option<&Condition>,
) -> Option<(EventType, &'static str, String)> {
    match (phase, result) {
        (Phase::Succeeded { message }, Ok(report)) if applied_changed => {
            let note = format!("{message} ({})", summary(report));
            Some((EventType::Normal, REASON_SUCCEEDED, note))
        }
        (Phase::Retrying { reason, message } | Phase::Stalled { reason, message }, _)
            if ready_before.is_none_or(|c| c.reason != *reason || c.message != *message) =>
        {
            Some((EventType::Warning, *reason, message.clone()))
        }
        _ => None,
    }
}

/// What the context remembers about one object between reconciliations.
#[derive(Default)]
struct ObjectState {
    /// The unit and the key of the spec it was built from; taken out while it syncs.
    unit: Option<(String, SyncUnit)>,
    /// The generation and requested-at annotation of the last reconciliation.
    trigger: TriggerKey,
    /// When the next sync is due; `None` when only a change can help.
    next_due: Option<Instant>,
    /// Transient failures in a row.
    failures: u32,
    /// The status written last (without the inventory): an equal one is not written again.
    written: Option<SyncStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TriggerKey {
    generation: Option<i64>,
    requested_at: Option<String>,
}

impl TriggerKey {
    fn of<K: SyncResource>(object: &K) -> Self {
        Self {
            generation: object.meta().generation,
            requested_at: object.annotations().get(REQUESTED_AT_ANNOTATION).cloned(),
        }
    }
}

/// The metadata every reconciliation needs.
struct Identity {
    name: String,
    namespace: String,
    uid: String,
}

impl Identity {
    fn of<K: SyncResource>(object: &K) -> Result<Self, ControllerError> {
        let meta = object.meta();
        Ok(Self {
            name: meta
                .name
                .clone()
                .ok_or(ControllerError::MissingMetadata("name"))?,
            namespace: meta
                .namespace
                .clone()
                .ok_or(ControllerError::MissingMetadata("namespace"))?,
            uid: meta
                .uid
                .clone()
                .ok_or(ControllerError::MissingMetadata("uid"))?,
        })
    }

    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Reconciles one object: adds the finalizer, then syncs its [`SyncSpec`] with a
/// [`SyncUnit`] (fetch, render, substitute, apply, prune, wait) and writes the outcome to its
/// status: `Ready`/`Reconciling`/`Stalled`, `lastAppliedRevision`, `lastAttemptedRevision`,
/// `observedGeneration`, `lastHandledReconcileAt`, and the inventory. Failures on bad input
/// stall until the interval (a new commit may fix them) or a new spec; transient ones are
/// retried with the context's backoff. On deletion, prunes everything the inventory lists
/// ([`Applier::delete_all`]) unless `prune` is off or the object is suspended.
///
/// An object is synced at every interval (correcting drift), when its generation changes, and
/// when its [`REQUESTED_AT_ANNOTATION`] gets a new value; the events of its own status writes
/// are skipped. A Kubernetes Event is published when a new revision is applied
/// (`ReconciliationSucceeded`) and when a new failure appears (its reason).
///
/// ```no_run
/// use futures::StreamExt;
/// use gitops_sync::controller::{SyncContext, SyncResource, error_policy, reconcile};
/// use kube::runtime::{Controller, watcher};
///
/// # async fn example<K: SyncResource>(client: kube::Client) {
/// let context = SyncContext::builder(client.clone(), "/var/lib/sync").build();
/// Controller::new(kube::Api::<K>::all(client), watcher::Config::default())
///     .run(reconcile::<K>, error_policy::<K>, context)
///     .for_each(|_| async {})
///     .await;
/// # }
/// ```
///
/// # Errors
/// [`ControllerError`] when the status or the finalizer cannot be written (failures of the
/// sync are written to the status, not returned).
pub async fn reconcile<K: SyncResource>(
    object: Arc<K>,
    context: Arc<SyncContext>,
) -> Result<Action, ControllerError> {
    let identity = Identity::of(&*object)?;
    let settled = object.meta().deletion_timestamp.is_none()
        && object.finalizers().iter().any(|f| *f == context.finalizer);
    if settled && let Some(wait) = context.not_due(&identity.uid, &TriggerKey::of(&*object)) {
        // A change of our own status, or of metadata we do not read: the next sync is planned.
        return Ok(Action::requeue(wait));
    }
    let api: Api<K> = Api::namespaced(context.client.clone(), &identity.namespace);
    finalizer::finalizer(&api, &context.finalizer, object, |event| async {
        match event {
            Event::Apply(object) => context.sync(&api, &object).await,
            Event::Cleanup(object) => context.cleanup(&*object).await,
        }
    })
    .await
    .map_err(|error| ControllerError::Finalizer(Box::new(error)))
}

/// The error policy to pair with [`reconcile`]: retry with the context's backoff, never later
/// than the interval.
///
/// ```no_run
/// # fn example<K: gitops_sync::controller::SyncResource>(object: std::sync::Arc<K>, error: &gitops_sync::controller::ControllerError, context: std::sync::Arc<gitops_sync::controller::SyncContext>) {
/// let action = gitops_sync::controller::error_policy(object, error, context);
/// # drop(action);
/// # }
/// ```
#[must_use]
pub fn error_policy<K: SyncResource>(
    object: Arc<K>,
    error: &ControllerError,
    context: Arc<SyncContext>,
) -> Action {
    let uid = object.meta().uid.clone().unwrap_or_default();
    let interval = object
        .sync_spec()
        .settings()
        .map_or(Duration::from_secs(300), |s| s.interval);
    let delay = context.record_failure(&uid, interval);
    tracing::warn!(object = %Escaped(&object.name_any()), error = %error.chain(), retry_in = ?delay, "reconciliation failed");
    Action::requeue(delay)
}

/// Runs a `kube::runtime::Controller` of `K` over `api` with [`reconcile`] and
/// [`error_policy`] until `shutdown` is cancelled; then the syncs in flight are stopped and the
/// reconciliations finish.
///
/// ```no_run
/// # async fn example<K: gitops_sync::controller::SyncResource>(client: kube::Client) {
/// use gitops_sync::controller::{SyncContext, run};
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// let context = SyncContext::builder(client.clone(), "/var/lib/sync").build();
/// run(kube::Api::<K>::all(client), context, shutdown).await;
/// # }
/// ```
pub async fn run<K: SyncResource>(
    api: Api<K>,
    context: Arc<SyncContext>,
    shutdown: CancellationToken,
) {
    let stop = context.cancel.clone();
    let shutdown = async move {
        shutdown.cancelled().await;
        stop.cancel();
    };
    Controller::new(api, watcher::Config::default())
        .with_config(controller::Config::default().concurrency(context.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<K>, error_policy::<K>, Arc::clone(&context))
        .for_each(|result| {
            match result {
                Ok((object, _)) => tracing::debug!(object = %object, "reconciled"),
                // Logged by the error policy, with the retry delay.
                Err(controller::Error::ReconcilerFailed(_, object)) => {
                    tracing::debug!(object = %object, "reconciliation failed");
                }
                Err(error) => tracing::warn!(%error, "controller"),
            }
            std::future::ready(())
        })
        .await;
}

impl SyncContext {
    /// How long until the next sync is due, when the object did not change since the last one.
    fn not_due(&self, uid: &str, trigger: &TriggerKey) -> Option<Duration> {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let state = states.get(uid)?;
        if &state.trigger != trigger {
            return None;
        }
        match state.next_due {
            None => Some(Duration::from_secs(24 * 3600)),
            Some(due) => due.checked_duration_since(Instant::now()),
        }
    }

    fn record_failure(&self, uid: &str, interval: Duration) -> Duration {
        let backoff = self.backoff;
        self.state(uid, |state| {
            state.failures = state.failures.saturating_add(1);
            let delay = backoff.delay(state.failures).min(interval);
            state.next_due = Some(Instant::now() + delay);
            delay
        })
    }

    /// Records the end of a sync and when the next is due.
    fn finish(&self, uid: &str, trigger: TriggerKey, next: Option<Duration>, failed: bool) {
        self.state(uid, |state| {
            state.trigger = trigger;
            state.next_due = next.map(|d| Instant::now() + d);
            if !failed {
                state.failures = 0;
            }
        });
    }

    /// One reconciliation of an object that carries the finalizer.
    async fn sync<K: SyncResource>(
        &self,
        api: &Api<K>,
        object: &K,
    ) -> Result<Action, ControllerError> {
        let identity = Identity::of(object)?;
        let trigger = TriggerKey::of(object);
        let spec = object.sync_spec();
        let generation = object.meta().generation;
        let mut status = object.sync_status().cloned().unwrap_or_default();
        let ready_before = status.condition(READY).cloned();
        let applied_before = status.last_applied_revision.clone();
        if spec.suspend {
            tracing::info!(object = %Escaped(&identity.key()), "suspended");
            self.finish(&identity.uid, trigger, None, false);
            return Ok(Action::await_change());
        }
        let interval = spec.settings().ok().map(|s| s.interval);
        if status.observed_generation != generation || status.condition(READY).is_none() {
            self.mark_progressing(api, &identity, &mut status, generation)
                .await?;
        }
        let result = self.sync_unit(object, &identity).await;
        record_revisions(&result, &mut status);
        let Some(outcome) = self.outcome(&result, &identity, interval) else {
            return Ok(Action::await_change());
        };
        let applied_now = status.last_applied_revision.as_ref();
        if let Some((type_, reason, note)) = new_event(
            &outcome.phase,
            &result,
            applied_before.as_ref() != applied_now,
            ready_before.as_ref(),
        ) {
            self.publish(object, type_, reason, note).await;
        }
        settle(&mut status, &outcome.phase, generation, &trigger);
        self.write_status(api, &identity, &status).await?;
        self.finish(&identity.uid, trigger, outcome.next, outcome.failed);
        Ok(outcome
            .next
            .map_or_else(Action::await_change, Action::requeue))
    }

    /// Writes that a new generation (or an object without a Ready condition) is being
    /// reconciled.
    async fn mark_progressing<K: SyncResource>(
        &self,
        api: &Api<K>,
        identity: &Identity,
        status: &mut SyncStatus,
        generation: Option<i64>,
    ) -> Result<(), ControllerError> {
        Phase::Progressing {
            message: format!("reconciling generation {}", generation.unwrap_or_default()),
        }
        .apply_to(status, generation, &now_rfc3339());
        self.write_status(api, identity, status).await
    }

    /// The phase a sync's result puts the object in and when it syncs next (a transient
    /// failure backs off, never past the interval); `None` when the sync was cancelled.
    fn outcome(
        &self,
        result: &Result<SyncReport, ControllerError>,
        identity: &Identity,
        interval: Option<Duration>,
    ) -> Option<SyncOutcome> {
        let error = match result {
            Ok(report) => {
                tracing::info!(object = %Escaped(&identity.key()), "applied {report}");
                let message = format!("Applied revision: {}", report.revision);
                return Some(SyncOutcome {
                    phase: Phase::Succeeded { message },
                    next: interval,
                    failed: false,
                });
            }
            Err(error) => error,
        };
        let message = error.chain();
        let reason = error.reason();
        match error.class() {
            ErrorClass::Cancelled => None,
            ErrorClass::Stalled => {
                tracing::warn!(object = %Escaped(&identity.key()), error = %message, "stalled");
                Some(SyncOutcome {
                    phase: Phase::Stalled { reason, message },
                    next: interval,
                    failed: false,
                })
            }
            ErrorClass::Transient => {
                let delay = self
                    .record_failure(&identity.uid, interval.unwrap_or(Duration::from_secs(300)));
                tracing::warn!(object = %Escaped(&identity.key()), error = %message, retry_in = ?delay, "will retry");
                Some(SyncOutcome {
                    phase: Phase::Retrying { reason, message },
                    next: Some(delay),
                    failed: true,
                })
            }
        }
    }

    /// Publishes a Kubernetes Event about the object; a failure is only logged.
    async fn publish<K: SyncResource>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        mut note: String,
    ) {
        // The API limits an event's note to 1 kB.
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
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(object = %Escaped(&object.name_any()), %error, "cannot publish an event");
        }
    }

    /// Syncs the object's unit, building it when the spec (or its Secret) changed.
    async fn sync_unit<K: SyncResource>(
        &self,
        object: &K,
        identity: &Identity,
    ) -> Result<SyncReport, ControllerError> {
        let spec = object.sync_spec();
        spec.settings().map_err(ControllerError::Spec)?;
        let credentials = match &spec.source.secret_ref {
            Some(secret) => Some(self.credentials(&identity.namespace, &secret.name).await?),
            None => None,
        };
        let key = unit_key(spec, &identity.name, credentials.as_ref());
        let kept = self.state(&identity.uid, |state| state.unit.take());
        let mut unit = match kept {
            Some((kept_key, unit)) if kept_key == key => unit,
            _ => self.build_unit::<K>(spec, identity, credentials).await?,
        };
        let result = unit.sync(&self.cancel).await;
        self.state(&identity.uid, |state| state.unit = Some((key, unit)));
        result.map_err(ControllerError::Sync)
    }

    /// Reads the credentials Secret.
    async fn credentials(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Credentials, ControllerError> {
        let secret = Api::<KubeSecret>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .map_err(|source| ControllerError::Secret {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source,
            })?;
        let mut values = std::collections::BTreeMap::new();
        for (key, value) in secret.data.unwrap_or_default() {
            let text = String::from_utf8(value.0).map_err(|_| ControllerError::SecretContent {
                name: name.to_owned(),
                problem: format!("the value of key {} is not UTF-8", Escaped(&key)),
            })?;
            values.insert(key, text);
        }
        Ok(Credentials {
            resource_version: secret.metadata.resource_version.unwrap_or_default(),
            name: name.to_owned(),
            values,
        })
    }

    /// The object's unit, made by the [`UnitFactory`] (the one spec→unit construction): its
    /// inventory in the object's status unless the spec names a ConfigMap, Helm's release
    /// named after the object in its namespace unless the spec says otherwise, the Secret's
    /// credentials, and a work directory of its own.
    async fn build_unit<K: SyncResource>(
        &self,
        spec: &SyncSpec,
        identity: &Identity,
        credentials: Option<Credentials>,
    ) -> Result<SyncUnit, ControllerError> {
        let applier =
            applier_for::<K>(spec, identity, self).map_err(ControllerError::InventoryName)?;
        remove_dir_logged(&self.work_dir.join(&identity.uid));
        let mut unit = SpecUnit::new(spec.clone(), &identity.namespace)
            .name(identity.key())
            .helm_defaults(&identity.name, &identity.namespace)
            .applier(applier)
            .work_subdir(&identity.uid);
        if let Some(credentials) = credentials {
            if let Some(ca) = credentials.values.get("ca.crt") {
                unit = unit.ca_bundle_pem(ca.as_bytes());
            }
            if let Some(hosts) = credentials.values.get("known_hosts") {
                unit = unit.known_hosts(hosts.clone());
            }
            if let Some(git_credentials) = credentials.git_credentials()? {
                unit = unit.credentials(git_credentials);
            }
        }
        let builder = self.factory.unit(unit).await.map_err(|error| match error {
            FactoryError::Spec(spec) => ControllerError::Spec(spec),
            FactoryError::Tool { renderer, tool, .. } if error.is_tool_not_found() => {
                ControllerError::MissingTool {
                    renderer: renderer.as_str(),
                    tool: tool.binary_name(),
                }
            }
            FactoryError::Source(source) => ControllerError::SourceSetup(*source),
            FactoryError::Store(store) => ControllerError::Sync(SyncError::Setup(*store)),
            other => ControllerError::Unit(Box::new(other)),
        })?;
        builder.build().map_err(ControllerError::Sync)
    }

    /// Writes the controller's part of the status (everything but the inventory) with
    /// server-side apply on the status subresource, unless it equals what was written last (a
    /// no-change reconciliation then sends no status request).
    async fn write_status<K: SyncResource>(
        &self,
        api: &Api<K>,
        identity: &Identity,
        status: &SyncStatus,
    ) -> Result<(), ControllerError> {
        let comparable = SyncStatus {
            inventory: None,
            ..status.clone()
        };
        if self.state(&identity.uid, |state| {
            state.written.as_ref() == Some(&comparable)
        }) {
            return Ok(());
        }
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"name": identity.name},
            "status": comparable,
        });
        api.patch_status(
            &identity.name,
            &PatchParams::apply(&self.status_manager()).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(ControllerError::Status)?;
        self.state(&identity.uid, |state| state.written = Some(comparable));
        Ok(())
    }

    /// Prunes the inventory of a deleted object (unless prune is off or it is suspended) and
    /// forgets it.
    async fn cleanup<K: SyncResource>(&self, object: &K) -> Result<Action, ControllerError> {
        let identity = Identity::of(object)?;
        let spec = object.sync_spec();
        if spec.prune && !spec.suspend {
            // Such a name never applied anything.
            if let Ok(applier) = applier_for::<K>(spec, &identity, self) {
                let change_set = applier
                    .delete_all(&self.cancel)
                    .await
                    .map_err(|e| ControllerError::Prune(Box::new(e)))?;
                tracing::info!(object = %Escaped(&identity.key()), pruned = change_set.count(ObjectAction::Pruned), "deleted; pruned its objects");
            }
        } else {
            tracing::info!(object = %Escaped(&identity.key()), "deleted; its objects stay (prune off or suspended)");
        }
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&identity.uid);
        remove_dir_logged(&self.work_dir.join(&identity.uid));
        Ok(Action::await_change())
    }
}

/// What a sync did, in counts: `2 created, 1 pruned`.
fn summary(report: &SyncReport) -> String {
    let counts: Vec<String> = [
        (ObjectAction::Created, "created"),
        (ObjectAction::Configured, "configured"),
        (ObjectAction::Recreated, "recreated"),
        (ObjectAction::Unchanged, "unchanged"),
        (ObjectAction::Pruned, "pruned"),
        (ObjectAction::Skipped, "skipped"),
    ]
    .into_iter()
    .map(|(action, word)| (report.change_set.count(action), word))
    .filter(|(count, _)| *count > 0)
    .map(|(count, word)| format!("{count} {word}"))
    .collect();
    counts.join(", ")
}

/// The credentials Secret's values (never printed).
struct Credentials {
    name: String,
    resource_version: String,
    values: std::collections::BTreeMap<String, String>,
}

impl Credentials {
    fn git_credentials(&self) -> Result<Option<GitCredentials>, ControllerError> {
        let get = |key: &str| self.values.get(key).cloned();
        if let Some(key) = get("identity") {
            return Ok(Some(GitCredentials::SshKey {
                private_key: Secret::new(key),
                passphrase: get("password").map(Secret::new),
            }));
        }
        if let Some(token) = get("bearerToken") {
            return Ok(Some(GitCredentials::BearerToken(Secret::new(token))));
        }
        match (get("username"), get("password")) {
            (Some(username), Some(password)) => Ok(Some(GitCredentials::Basic {
                username,
                password: Secret::new(password),
            })),
            (None, None) => Ok(None),
            _ => Err(ControllerError::SecretContent {
                name: self.name.clone(),
                problem: "username and password come together".to_owned(),
            }),
        }
    }
}

/// What decides whether a kept unit still fits: the spec without the interval and suspend,
/// the object's name (Helm's release) and the Secret's version.
fn unit_key(spec: &SyncSpec, name: &str, credentials: Option<&Credentials>) -> String {
    let mut spec = spec.clone();
    spec.interval.clear();
    spec.suspend = false;
    let spec = serde_json::to_string(&spec).unwrap_or_default();
    let secret = credentials.map_or("", |c| c.resource_version.as_str());
    format!("{name}\n{secret}\n{spec}")
}

/// The applier of an object: its inventory in a ConfigMap when the spec names one, else in the
/// object's status.
fn applier_for<K: SyncResource>(
    spec: &SyncSpec,
    identity: &Identity,
    context: &SyncContext,
) -> Result<Applier, InventoryError> {
    let builder = match spec.inventory.as_ref().and_then(|i| i.config_map.as_ref()) {
        Some(name) => Applier::builder(
            context.client.clone(),
            ConfigMapInventory::new(&identity.namespace, name)?,
        ),
        None => Applier::builder(
            context.client.clone(),
            StatusInventory::<K>::new(
                &identity.namespace,
                &identity.name,
                context.inventory_manager(),
            )?,
        ),
    };
    Ok(builder.field_manager(&context.field_manager).build())
}

fn remove_dir_logged(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %gitops_core::escape::EscapedPath(dir), %error, "cannot remove a directory of the controller");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SourceSpec;

    fn context() -> Arc<SyncContext> {
        // Never used by these tests: a client needs a runtime, not a server.
        let client = kube::Client::try_from(kube::Config::new(
            "http://127.0.0.1:9".parse().expect("a URL"),
        ))
        .expect("a client");
        SyncContext::builder(client, "/nonexistent").build()
    }

    #[tokio::test]
    async fn a_sync_is_due_when_the_trigger_changes_or_the_time_comes() {
        let context = context();
        let trigger = TriggerKey {
            generation: Some(1),
            requested_at: None,
        };
        assert_eq!(context.not_due("u", &trigger), None, "unknown objects run");
        context.finish("u", trigger.clone(), Some(Duration::from_secs(60)), false);
        let wait = context.not_due("u", &trigger).expect("not due yet");
        assert!(wait > Duration::from_secs(55) && wait <= Duration::from_secs(60));
        let newer = TriggerKey {
            generation: Some(2),
            ..trigger.clone()
        };
        assert_eq!(context.not_due("u", &newer), None, "a new generation runs");
        let requested = TriggerKey {
            requested_at: Some("now".into()),
            ..trigger.clone()
        };
        assert_eq!(context.not_due("u", &requested), None, "a request runs");
        context.finish("u", trigger.clone(), Some(Duration::ZERO), false);
        assert_eq!(context.not_due("u", &trigger), None, "due now");
    }

    #[tokio::test]
    async fn backoff_doubles_up_to_the_interval() {
        let context = context();
        let hour = Duration::from_secs(3600);
        let delays: Vec<u64> = (0..8)
            .map(|_| context.record_failure("u", hour).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(
            context
                .record_failure("u", Duration::from_secs(60))
                .as_secs(),
            60
        );
        context.finish("u", TriggerKey::default(), None, false);
        assert_eq!(
            context.record_failure("u", hour).as_secs(),
            5,
            "reset after a success"
        );
    }

    #[test]
    fn the_unit_is_kept_until_the_spec_or_secret_changes() {
        let spec = SyncSpec {
            source: SourceSpec {
                url: Some("file:///r".into()),
                ..SourceSpec::default()
            },
            interval: "1m".into(),
            ..SyncSpec::default()
        };
        let key = unit_key(&spec, "app", None);
        let slower = SyncSpec {
            interval: "1h".into(),
            suspend: true,
            ..spec.clone()
        };
        assert_eq!(unit_key(&slower, "app", None), key);
        let other_path = SyncSpec {
            path: "x".into(),
            ..spec.clone()
        };
        assert_ne!(unit_key(&other_path, "app", None), key);
        let secret = Credentials {
            name: "s".into(),
            resource_version: "7".into(),
            values: std::collections::BTreeMap::new(),
        };
        assert_ne!(unit_key(&spec, "app", Some(&secret)), key);
    }

    #[test]
    fn secret_keys_become_credentials_and_never_show_their_values() {
        let secret = |pairs: &[(&str, &str)]| Credentials {
            name: "git".into(),
            resource_version: "1".into(),
            values: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        assert!(matches!(
            secret(&[("username", "u"), ("password", "hunter22")]).git_credentials(),
            Ok(Some(GitCredentials::Basic { .. }))
        ));
        assert!(matches!(
            secret(&[("bearerToken", "t0ken")]).git_credentials(),
            Ok(Some(GitCredentials::BearerToken(_)))
        ));
        assert!(matches!(secret(&[]).git_credentials(), Ok(None)));
        let error = secret(&[("password", "hunter22")])
            .git_credentials()
            .unwrap_err();
        assert_eq!(error.class(), ErrorClass::Stalled);
        assert!(!error.chain().contains("hunter22"), "{}", error.chain());
        let debug = format!(
            "{:?}",
            secret(&[("username", "u"), ("password", "hunter22")]).git_credentials()
        );
        assert!(!debug.contains("hunter22"), "{debug}");
    }
}
