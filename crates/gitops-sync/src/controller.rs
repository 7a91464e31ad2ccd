//! The controller kit (feature `controller`): spec and status types to embed in a custom
//! resource of your own, and the reconcile function a `kube::runtime::Controller` calls,
//! built on [`SyncUnit`](crate::SyncUnit).
//!
//! - [`SyncSpec`]: a Git source with its reference (branch, tag, semver range or commit) and a
//!   Secret with its credentials (or a local directory), the path, one renderer spec for
//!   plain files, Kustomize and Helm ([`RendererSpec`]), where the inventory is kept,
//!   `${VAR}` substitution, and the prune, wait, timeout, force, interval and suspend options.
//! - [`SyncStatus`]: the `Ready`, `Reconciling` and `Stalled` conditions as Flux and kstatus
//!   write them ([`Phase`]), `lastAppliedRevision`, `lastAttemptedRevision`,
//!   `observedGeneration`, `lastHandledReconcileAt` and the inventory
//!   ([`StatusInventory`]).
//! - [`SyncResource`]: the small trait that gives [`reconcile`] the embedded spec and status.
//! - [`reconcile`] and [`error_policy`] for `Controller::run`, sharing a [`SyncContext`];
//!   [`run`] wires them into a controller. Deleting an object prunes what it applied (a
//!   finalizer and [`gitops_apply::Applier::delete_all`]); Flux's
//!   [`REQUESTED_AT_ANNOTATION`] asks for a sync now. [`install_crd`] installs your CRD.
//!
//! ```no_run
//! use gitops_sync::controller::{SyncContext, SyncResource, SyncSpec, SyncStatus, run};
//! use kube::CustomResource;
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
//! #[kube(group = "example.com", version = "v1", kind = "AppSync", namespaced, status = "SyncStatus")]
//! pub struct AppSyncSpec {
//!     #[serde(flatten)]
//!     pub sync: SyncSpec,
//! }
//!
//! impl SyncResource for AppSync {
//!     fn sync_spec(&self) -> &SyncSpec { &self.spec.sync }
//!     fn sync_status(&self) -> Option<&SyncStatus> { self.status.as_ref() }
//! }
//!
//! # async fn main_() -> Result<(), kube::Error> {
//! let client = kube::Client::try_default().await?;
//! let context = SyncContext::builder(client.clone(), "/var/lib/app-sync")
//!     .field_manager("app-sync")
//!     .build();
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! run(kube::Api::<AppSync>::all(client), context, shutdown).await;
//! # Ok(())
//! # }
//! ```

mod crd;
mod inventory;
mod reconcile;
mod status;

pub use crate::spec::{
    DurationError, GitRef, HelmSpec, InventorySpec, RendererKind, RendererSpec, SecretRef,
    SourceLocation, SourceSpec, SpecError, SyncSettings, SyncSpec, parse_go_duration,
};
pub use crd::{CrdError, install_crd};
pub use inventory::StatusInventory;
pub use reconcile::{
    ControllerError, DEFAULT_FIELD_MANAGER, DEFAULT_FINALIZER, REQUESTED_AT_ANNOTATION,
    SyncContext, SyncContextBuilder, SyncResource, error_policy, reconcile, run,
};
pub use status::{
    Condition, InventoryEntry, InventoryStatus, Phase, READY, REASON_PROGRESSING, REASON_RETRYING,
    REASON_SUCCEEDED, RECONCILING, STALLED, SyncStatus,
};
