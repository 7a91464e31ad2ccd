//! A kube-runtime controller over [`GitSync`], a custom resource of ours that names a
//! repository (or a local directory), a path in it, an interval and a renderer: Flux's
//! `GitRepository` and `Kustomization` folded into one.
//!
//! ```yaml
//! apiVersion: examples.gitops-rs.io/v1alpha1
//! kind: GitSync
//! metadata: {name: apps, namespace: team-a}
//! spec:
//!   url: https://git.example.com/team-a/config.git
//!   ref: {branch: main}
//!   path: clusters/prod
//!   interval: 5m
//!   renderer: auto        # auto | plain | kustomize | helm
//!   prune: true           # default
//!   targetNamespace: team-a
//! ```
//!
//! Each reconciliation, at every interval (so drift is corrected even when Git did not change):
//! 1. **fetch** the revision ([`gitops_source`]; an unchanged revision downloads nothing and the
//!    last artifact is used again);
//! 2. **render** the path ([`gitops_render`]);
//! 3. **apply** with server-side apply, **prune** what left the set, keeping the inventory in
//!    `status.inventory` ([`gitops_apply`], [`StatusInventory`]); optionally **wait** for health;
//! 4. **report** in the status, with server-side apply on the status subresource under a field
//!    manager of its own: the standard conditions `Ready`, `Reconciling` and `Stalled`
//!    ([`Phase`]), `lastAppliedRevision`, `lastAttemptedRevision` and `observedGeneration`.
//!
//! Failures on bad input (an invalid spec, a manifest that does not parse, naming file and line,
//! a kind the cluster does not serve, objects the API server rejects) set `Stalled=True` and
//! `Ready=False`: nothing is applied or pruned, and the next try comes at the interval or when the
//! spec changes. Transient failures (fetching, the API) set `Ready=False` with
//! `Reconciling=True` and are retried with exponential backoff. See [`ReconcileError::kind`].
//!
//! A finalizer ([`FINALIZER`]) prunes everything the inventory lists when the GitSync is deleted,
//! unless `prune` is off or it is suspended.
//!
//! Run it with [`GitSyncController`]; install the CRD first with [`install_crd`] (or print it
//! with [`crd_yaml`]).

mod crd;
mod inventory;
mod reconcile;
mod resource;
mod status;

pub use crd::{CrdError, crd_yaml, install_crd};
pub use inventory::{StatusInventory, from_status, to_status};
pub use reconcile::{
    APPLY_FIELD_MANAGER, FINALIZER, FailureKind, GitSyncController, GitSyncControllerBuilder,
    INVENTORY_FIELD_MANAGER, REQUESTED_AT_ANNOTATION, ReconcileError, STATUS_FIELD_MANAGER,
};
pub use resource::{
    Condition, DurationError, GROUP, GitRef, GitSync, GitSyncSpec, GitSyncStatus, InventoryEntry,
    InventoryStatus, READY, RECONCILING, RendererKind, STALLED, SourceLocation, SpecError,
    SyncSettings, VERSION, parse_go_duration,
};
pub use status::{
    Phase, REASON_PROGRESSING, REASON_RETRYING, REASON_SUCCEEDED, now_rfc3339, remove_condition,
    set_condition, write_status,
};
