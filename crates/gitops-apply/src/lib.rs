//! Server-side apply of a set of Kubernetes objects, with ordering, pruning by inventory and
//! health.
//!
//! An [`Applier`] takes a [`DesiredSet`] (the objects a successful render produced) and brings
//! the cluster to it, returning a [`ChangeSet`]: per object an [`ObjectAction`] (created,
//! configured, recreated, unchanged, pruned, skipped or failed) with a typed [`Reason`], and the
//! number of API requests sent.
//!
//! Its verbs are usable alone, as Flux's `ssa.ResourceManager`'s are:
//! - [`Applier::plan`]: a reviewed [`Plan`] (per object a [`PlannedAction`], a [`Reason`] and
//!   the structured diff; the [`StaleObject`]s to prune; the hooks), nothing written. It prints
//!   like `terraform plan` and serialises to JSON.
//! - [`Applier::apply`]: executes exactly a reviewed plan, or refuses it
//!   ([`ApplyError::StalePlan`]) when the live state it was made from moved.
//! - [`Applier::apply_set`]: plan then execute, the one-call path.
//! - [`Applier::prune`] (the stale objects of a plan), [`Applier::delete_all`] (for
//!   finalizers: everything the inventory lists, then the inventory) and [`Applier::wait`].
//!
//! The differ comes from the builder ([`ApplierBuilder::differ`], [`ApplierBuilder::ignore`],
//! [`ApplierBuilder::normaliser`]): ignore rules bind apply (a covered field is left out of what
//! is sent, so it is neither drift nor written, and its owner keeps it). Discovery and the merge
//! schema (the embedded tables, the CRDs of the set, and the cluster's `/openapi/v3` documents
//! for custom resources of installed CRDs) are cached across runs
//! ([`ApplierBuilder::discovery_ttl`], [`ApplierBuilder::cluster_schema`]): a run with nothing
//! to change sends the inventory read and one list per kind and namespace (of the set's own
//! objects), nothing else.
//!
//! 1. **Plan** ([`Applier::plan`], ordering by [`order`]): every kind is resolved through discovery (kinds defined by CRDs of the
//!    same set too); namespaces are filled in or overridden by the target namespace (without one,
//!    a namespaced object without a namespace goes to `default`, as with kubectl); an unknown
//!    kind is an error before any write. Objects are
//!    ordered by wave (`apply.gitops.rs/wave`, or Argo CD's `argocd.argoproj.io/sync-wave`),
//!    then [`Stage`] (definitions: CRDs, Namespaces, cluster RBAC; then `*Class` kinds; then
//!    the rest), then a fixed kind order, namespace and name.
//! 2. **Decide locally**: the live objects are read with one list per kind and namespace,
//!    selected by the ownership labels so that what else a namespace holds is not read; an
//!    object of the set that list misses (new, or existing without our labels: to adopt, its
//!    labels removed by hand, another inventory's) is read alone while such objects are few
//!    (two per concurrent request, [`ApplierBuilder::concurrency`]), and its kind and namespace
//!    listed unfiltered when they are more (a first apply); then
//!    [`gitops_diff::Differ::needs_apply`] decides which objects need a write; unchanged objects
//!    are not written (their resourceVersion stays).
//! 3. **Validate**: every write is first sent as a server-side dry run with strict field
//!    validation; if any fails, nothing is written (unless [`ApplyOptions::best_effort`]).
//!    Conflicts with other field managers are typed ([`ObjectError::Conflict`]), as are changes
//!    of immutable fields ([`ObjectError::Immutable`]), which are recreated only on opt-in.
//! 4. **Write** group by group (one group per wave and stage), objects of a group in parallel,
//!    waiting for CRDs to be Established and Namespaces Active after their group.
//! 5. **Record**: before the first write, the inventory is saved as the previous one and the
//!    new set together, so that an interruption at any point leaves no written object
//!    untracked; a bad inventory location (a namespace that does not exist, no permission) fails
//!    here, with nothing written. When the set creates the inventory's namespace, the record
//!    follows that namespace's group. Inventories over [`PLAIN_INVENTORY_LIMIT`] are stored
//!    gzip-compressed ([`INVENTORY_GZ_KEY`], [`INVENTORY_FORMAT_KEY`] `2`): 20,000 objects take
//!    about 390 KB.
//! 6. **Prune**: after a run without failures, what the previous [`Inventory`] lists and the set
//!    lacks is deleted in reverse order, if it still carries the ownership labels and does not
//!    disable pruning; then the inventory is saved as the new set. An empty set never prunes
//!    unless allowed, and a Namespace or CRD whose deletion would delete objects of the set
//!    (those in it, those of its kind) is refused before any write
//!    ([`ApplyError::CascadingPrune`]) unless [`ApplyOptions::allow_cascading_prune`].
//!
//! Every list is paginated ([`ApplierBuilder::page_size`], default [`DEFAULT_PAGE_SIZE`]), and
//! starts again when its continue token expires.
//!
//! Per-object annotations: `apply.gitops.rs/reconcile: disabled` (or Flux's
//! `kustomize.toolkit.fluxcd.io/reconcile: disabled`) never writes the object;
//! `apply.gitops.rs/ssa: IfNotPresent` creates it only when absent; `apply.gitops.rs/prune:
//! disabled` (or Flux's `kustomize.toolkit.fluxcd.io/prune: disabled`, or Argo CD's
//! `Prune=false`) never prunes it; `apply.gitops.rs/force: enabled` forces conflicts;
//! `apply.gitops.rs/recreate: enabled` recreates on immutable changes. See [`ObjectPolicy`].
//!
//! Ownership: every applied object carries its inventory's labels ([`OWNER_NAMESPACE_LABEL`],
//! [`OWNER_NAME_LABEL`]). An object whose live labels name another inventory belongs to another
//! set: it is left alone and reported as [`ObjectAction::Skipped`] with
//! [`ObjectError::OwnedByOtherInventory`] (the rest of the set is applied, the run does not
//! fail), so that two sets never take an object from each other on every run, unless
//! [`ApplyOptions::take_ownership`]. A dry run reports what the real run would fail on as
//! [`ObjectAction::Failed`] entries with the same typed errors.
//!
//! Takeover ([`ApplyOptions::takeover`], opt-in): the fields of named field managers
//! ([`TakeoverManager`]; [`TakeoverManager::defaults`]: every `kubectl` command and
//! `before-first-apply`, as Flux does) become ours before the write, so that manual edits are
//! corrected without a conflict and fields the set no longer has are removed.
//!
//! Health ([`builtin_health`], [`wait_for_current`]) follows kstatus: Current, InProgress,
//! Failed, NotFound. With [`ApplyOptions::wait`], a run waits for its set to be Current after
//! the writes and the prune, failing fast on the first Failed object. With
//! [`ApplyOptions::wait_between_waves`] (opt-in, Argo CD's semantics), wave N+1 is written only
//! when every object of wave N is Current.
//!
//! Argo CD's `argocd.argoproj.io/compare-options: IgnoreExtraneous` ([`COMPARE_OPTIONS_ANNOTATION`])
//! on a live object that left the set: it still follows the prune rules, but does not count as
//! drift ([`Plan::is_in_sync`], [`Plan::drifted`]).

mod apply;
mod catalog;
mod change;
mod counting;
mod error;
mod execute;
mod health;
mod hooks;
mod inventory;
mod kube_error;
mod live;
mod options;
mod paging;
mod plan;
mod planner;
mod prune;
mod set;
mod takeover;

pub use apply::{Applier, ApplierBuilder, DEFAULT_FIELD_MANAGER};
pub use catalog::{CatalogError, DEFAULT_DISCOVERY_TTL};
pub use change::{ChangeSet, ObjectAction, ObjectChange, PlannedAction, Reason};
pub use counting::{LoggedRequest, RequestCounter, RequestCounts, RequestKind, counting_client};
pub use error::{ApplyError, CascadingLoss, FieldConflict, ObjectError};
pub use health::{
    Health, HealthCheck, HealthChecks, Status, WaitError, WaitProgress, WaitTarget, builtin_health,
    wait_for_current,
};
pub use hooks::{
    ARGO_HOOK_ANNOTATION, ARGO_HOOK_DELETE_POLICY_ANNOTATION, DEFAULT_HOOK_TIMEOUT,
    HELM_HOOK_ANNOTATION, HELM_HOOK_DELETE_POLICY_ANNOTATION, HELM_HOOK_WEIGHT_ANNOTATION,
    HOOK_OF_NAME_LABEL, HOOK_OF_NAMESPACE_LABEL, HOOK_PHASE_LABEL, HookDeletePolicy, HookError,
    HookOutcome, HookRun, HookRunner, HookSource, HookSpec, PhaseFailure, PlannedHook,
    PlannedHooks, RunHooks, SyncPhase, hook_spec, plan_hooks,
};
pub use inventory::{
    ConfigMapInventory, INVENTORY_FORMAT_KEY, INVENTORY_GZ_KEY, INVENTORY_KEY, Inventory,
    InventoryError, InventoryOwner, InventoryStore, OWNER_NAME_LABEL, OWNER_NAMESPACE_LABEL,
    PLAIN_INVENTORY_LIMIT,
};
pub use kube_error::KubeError;
pub use options::{ApplyOptions, ApplyProgress};
pub use paging::DEFAULT_PAGE_SIZE;
pub use plan::{
    ARGO_SYNC_OPTIONS_ANNOTATION, ARGO_WAVE_ANNOTATION, ApplyOrder, COMPARE_OPTIONS_ANNOTATION,
    DEFAULT_NAMESPACE, DefaultStaging, FLUX_FORCE_ANNOTATION, FLUX_PRUNE_ANNOTATION,
    FLUX_RECONCILE_ANNOTATION, FLUX_SSA_ANNOTATION, FORCE_ANNOTATION, KindInfo, KindTable,
    ObjectPolicy, ObjectProblem, OrderOptions, PRUNE_ANNOTATION, PlanError, PlannedObject,
    RECONCILE_ANNOTATION, RECREATE_ANNOTATION, SSA_ANNOTATION, Stage, Staging, WAVE_ANNOTATION,
    ignores_extraneous, order,
};
pub use planner::{Plan, PlanEntry, PlanSummary, StaleObject};
pub use set::DesiredSet;
pub use takeover::{ManagedOperation, TakeoverManager};
