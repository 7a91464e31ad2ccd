//! Sync phases and hooks, as Argo CD runs them: which objects of a set are hooks
//! ([`hook_spec`]), in which phases they run ([`SyncPhase`]), when they are deleted
//! ([`HookDeletePolicy`]), and the record of each hook run ([`HookRun`]).
//!
//! A hook is an object annotated [`ARGO_HOOK_ANNOTATION`] (`PreSync`, `Sync`, `PostSync`,
//! `SyncFail`, `Skip`, comma-separated) or [`HELM_HOOK_ANNOTATION`], whose Helm events are
//! mapped as Argo CD maps them: `pre-install` and `pre-upgrade` run in
//! [`SyncPhase::PreSync`], `post-install` and `post-upgrade` in [`SyncPhase::PostSync`];
//! `pre-delete`, `post-delete`, `pre-rollback`, `post-rollback` and the test hooks (`test`,
//! `test-success`, `test-failure`) are never applied by a sync. When an object carries both
//! annotations, Argo CD's wins, for the phases, the delete policies and the weight alike.
//!
//! A hook is not a resource of the set: it is not recorded in the inventory, never carries the
//! inventory's ownership labels and is never pruned. It is created in its phase, waited for
//! (a Job until it completes), and deleted as its delete policies say. Only a hook may have
//! `metadata.generateName` instead of `metadata.name` ([`Manifest::generate_name`]): it is then
//! created anew, under a name the server generates, on every sync.
//!
//! The phases of a sync: the `PreSync` hooks run and must all succeed; then the `Sync` phase
//! writes the resources, and the `Sync` hooks after them; once the resources are healthy the
//! `PostSync` hooks run. When any step fails, the `SyncFail` hooks run and the sync fails
//! ([`crate::ApplyError::Hook`] names the hook object). Within a phase, hooks run by weight
//! (wave annotations, else `helm.sh/hook-weight`), those of one weight together, then by kind
//! order and name.
//!
//! How [`crate::Applier`] runs them: [`crate::Applier::plan`] takes the hooks out of the set
//! ([`plan_hooks`]: [`crate::Plan::hooks`], listed by phase); [`crate::Applier::apply_set`]
//! and [`crate::Applier::apply`], when the plan is not in sync ([`RunHooks`]), validate every
//! hook with a server-side dry run, then run the phases around the writes
//! ([`HookRunner::run_sync`]), recording every hook object in [`crate::ChangeSet::hooks`]
//! ([`HookOutcome::Planned`] in a dry run) and reporting each as
//! [`crate::ApplyProgress::Hook`]. A plan without hooks, or in sync, runs exactly as before,
//! with no request more. Each hook
//! object carries [`HOOK_PHASE_LABEL`] and the inventory's name in [`HOOK_OF_NAMESPACE_LABEL`]
//! and [`HOOK_OF_NAME_LABEL`], by which the objects of an earlier sync are found and deleted
//! ([`HookDeletePolicy::BeforeHookCreation`]); a named hook's object that lacks them is left
//! alone ([`HookError::NotOurs`]). Hooks wait up to the run's [`crate::ApplyOptions::wait`],
//! else [`DEFAULT_HOOK_TIMEOUT`].
//!
//! Hook objects are not the inventory's: [`crate::Applier::delete_all`] does not delete those
//! left by earlier syncs (as `helm uninstall` leaves a release's hook resources); give hooks
//! the [`HookDeletePolicy::HookSucceeded`] (and [`HookDeletePolicy::HookFailed`]) policy to
//! have them deleted once they ran, or find them by [`HOOK_OF_NAMESPACE_LABEL`] and
//! [`HOOK_OF_NAME_LABEL`].
//!
//! What Argo CD does that this does not: the Sync hooks run after the resources of the Sync
//! phase are written rather than alongside them, and a hook's generated name comes from the
//! server rather than from the sync's id.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use gitops_core::escape::Escaped;
use gitops_core::{Manifest, ObjectId, Origin};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{Health, HealthChecks, KindInfo, KindTable, KubeError, Staging, Status};

pub use gitops_core::{ARGO_HOOK_ANNOTATION, HELM_HOOK_ANNOTATION};

/// Argo CD's hook delete policy annotation (`HookSucceeded`, `HookFailed`,
/// `BeforeHookCreation`, comma-separated).
///
/// ```
/// assert_eq!(gitops_apply::ARGO_HOOK_DELETE_POLICY_ANNOTATION, "argocd.argoproj.io/hook-delete-policy");
/// ```
pub const ARGO_HOOK_DELETE_POLICY_ANNOTATION: &str = "argocd.argoproj.io/hook-delete-policy";
/// Helm's hook delete policy annotation (`hook-succeeded`, `hook-failed`,
/// `before-hook-creation`, comma-separated).
///
/// ```
/// assert_eq!(gitops_apply::HELM_HOOK_DELETE_POLICY_ANNOTATION, "helm.sh/hook-delete-policy");
/// ```
pub const HELM_HOOK_DELETE_POLICY_ANNOTATION: &str = "helm.sh/hook-delete-policy";
/// Helm's hook weight annotation: an integer, lower first, used when no wave annotation
/// ([`crate::WAVE_ANNOTATION`], [`crate::ARGO_WAVE_ANNOTATION`]) is present.
///
/// ```
/// assert_eq!(gitops_apply::HELM_HOOK_WEIGHT_ANNOTATION, "helm.sh/hook-weight");
/// ```
pub const HELM_HOOK_WEIGHT_ANNOTATION: &str = "helm.sh/hook-weight";

/// The label every hook object we create carries: the phase it was created for
/// ([`SyncPhase`]'s name, such as `PreSync`).
///
/// ```
/// assert_eq!(gitops_apply::HOOK_PHASE_LABEL, "apply.gitops.rs/hook");
/// ```
pub const HOOK_PHASE_LABEL: &str = "apply.gitops.rs/hook";
/// The label naming the namespace of the inventory whose sync created a hook object (the value
/// of its [`crate::OWNER_NAMESPACE_LABEL`]). Hooks carry these instead of the ownership labels,
/// so that they are found again (to delete the previous ones) but never pruned.
///
/// ```
/// assert_eq!(gitops_apply::HOOK_OF_NAMESPACE_LABEL, "apply.gitops.rs/hook-of-namespace");
/// ```
pub const HOOK_OF_NAMESPACE_LABEL: &str = "apply.gitops.rs/hook-of-namespace";
/// The label naming the inventory whose sync created a hook object (the value of its
/// [`crate::OWNER_NAME_LABEL`]).
///
/// ```
/// assert_eq!(gitops_apply::HOOK_OF_NAME_LABEL, "apply.gitops.rs/hook-of-name");
/// ```
pub const HOOK_OF_NAME_LABEL: &str = "apply.gitops.rs/hook-of-name";

/// A phase of a sync, in the order they run.
///
/// ```
/// use gitops_apply::SyncPhase;
/// assert!(SyncPhase::PreSync < SyncPhase::Sync);
/// assert_eq!(SyncPhase::PostSync.to_string(), "PostSync");
/// assert_eq!("SyncFail".parse::<SyncPhase>(), Ok(SyncPhase::SyncFail));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum SyncPhase {
    /// Before the resources are written; every hook must succeed for the sync to go on.
    PreSync,
    /// With the resources.
    Sync,
    /// After the resources are written and healthy.
    PostSync,
    /// When the sync failed.
    SyncFail,
}

impl SyncPhase {
    /// Every phase, in the order they run.
    pub const ALL: [SyncPhase; 4] = [Self::PreSync, Self::Sync, Self::PostSync, Self::SyncFail];

    /// The name, as Argo CD writes it (`PreSync`, ...).
    ///
    /// ```
    /// assert_eq!(gitops_apply::SyncPhase::Sync.as_str(), "Sync");
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreSync => "PreSync",
            Self::Sync => "Sync",
            Self::PostSync => "PostSync",
            Self::SyncFail => "SyncFail",
        }
    }
}

impl fmt::Display for SyncPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SyncPhase {
    type Err = ();

    /// The phase of an Argo CD name (exact case, as Argo CD reads it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or(())
    }
}

/// When a hook object is deleted.
///
/// ```
/// use gitops_apply::HookDeletePolicy;
/// assert_eq!(HookDeletePolicy::default(), HookDeletePolicy::BeforeHookCreation);
/// assert_eq!(HookDeletePolicy::HookSucceeded.to_string(), "HookSucceeded");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum HookDeletePolicy {
    /// After it succeeded.
    HookSucceeded,
    /// After it failed.
    HookFailed,
    /// Before it is created again: the object of the previous sync is deleted first. The
    /// default when a hook names no policy, as in Argo CD and Helm.
    #[default]
    BeforeHookCreation,
}

impl HookDeletePolicy {
    /// The name, as Argo CD writes it.
    ///
    /// ```
    /// assert_eq!(gitops_apply::HookDeletePolicy::HookFailed.as_str(), "HookFailed");
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HookSucceeded => "HookSucceeded",
            Self::HookFailed => "HookFailed",
            Self::BeforeHookCreation => "BeforeHookCreation",
        }
    }
}

impl fmt::Display for HookDeletePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which annotations made an object a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum HookSource {
    /// [`ARGO_HOOK_ANNOTATION`].
    Argo,
    /// [`HELM_HOOK_ANNOTATION`] (and no Argo CD annotation).
    Helm,
}

/// What makes an object a hook: its phases, delete policies and weight ([`hook_spec`]).
///
/// ```
/// use gitops_apply::{HookDeletePolicy, HookSpec, SyncPhase};
/// let spec = HookSpec::new([SyncPhase::PreSync]);
/// assert_eq!(spec.delete_policies, [HookDeletePolicy::BeforeHookCreation]);
/// assert!(spec.runs_in(SyncPhase::PreSync) && !spec.is_never_applied());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HookSpec {
    /// The phases it runs in, in order and without repeats; empty when it is never applied by a
    /// sync (Argo CD's `Skip`, Helm's test, delete and rollback hooks).
    pub phases: Vec<SyncPhase>,
    /// When it is deleted; never empty ([`HookDeletePolicy::BeforeHookCreation`] by default).
    pub delete_policies: Vec<HookDeletePolicy>,
    /// Its order within a phase, lower first (wave annotations, else `helm.sh/hook-weight`;
    /// default 0); ties are broken by kind order, then name.
    pub weight: i64,
    /// Which annotation made it a hook.
    pub source: HookSource,
}

impl HookSpec {
    /// An Argo CD hook of these phases with the default delete policy and weight 0.
    #[must_use]
    pub fn new(phases: impl IntoIterator<Item = SyncPhase>) -> Self {
        let mut phases: Vec<SyncPhase> = phases.into_iter().collect();
        phases.sort();
        phases.dedup();
        Self {
            phases,
            delete_policies: vec![HookDeletePolicy::default()],
            weight: 0,
            source: HookSource::Argo,
        }
    }

    /// The same spec with these delete policies (the default when empty).
    ///
    /// ```
    /// use gitops_apply::{HookDeletePolicy, HookSpec, SyncPhase};
    /// let spec = HookSpec::new([SyncPhase::PostSync])
    ///     .with_delete_policies([HookDeletePolicy::HookSucceeded, HookDeletePolicy::HookFailed])
    ///     .with_weight(-2);
    /// assert!(spec.deletes_on(HookDeletePolicy::HookFailed));
    /// assert!(!spec.deletes_on(HookDeletePolicy::BeforeHookCreation));
    /// assert_eq!(spec.weight, -2);
    /// assert!(HookSpec::new([]).is_never_applied());
    /// ```
    #[must_use]
    pub fn with_delete_policies(
        mut self,
        policies: impl IntoIterator<Item = HookDeletePolicy>,
    ) -> Self {
        let mut policies: Vec<HookDeletePolicy> = policies.into_iter().collect();
        policies.sort();
        policies.dedup();
        if policies.is_empty() {
            policies.push(HookDeletePolicy::default());
        }
        self.delete_policies = policies;
        self
    }

    /// The same spec with this weight.
    #[must_use]
    pub fn with_weight(mut self, weight: i64) -> Self {
        self.weight = weight;
        self
    }

    /// Whether it runs in `phase`.
    #[must_use]
    pub fn runs_in(&self, phase: SyncPhase) -> bool {
        self.phases.contains(&phase)
    }

    /// Whether a sync never applies it (no phase): it is left out of the set altogether.
    #[must_use]
    pub fn is_never_applied(&self) -> bool {
        self.phases.is_empty()
    }

    /// Whether it has this delete policy.
    #[must_use]
    pub fn deletes_on(&self, policy: HookDeletePolicy) -> bool {
        self.delete_policies.contains(&policy)
    }
}

/// Why an object's hook annotations cannot be read. Each names the object, where it comes from
/// and the annotation.
///
/// ```
/// let job = serde_json::json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {
///     "name": "migrate", "annotations": {"argocd.argoproj.io/hook": "BeforeSync"}}});
/// let manifest = gitops_core::Manifest::new(job, gitops_core::Origin::new("job.yaml").with_line(3))?;
/// let err = gitops_apply::hook_spec(&manifest).unwrap_err();
/// assert!(err.to_string().starts_with("job.yaml:3: Job.batch migrate: annotation argocd.argoproj.io/hook"), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// An annotation holds a value that is not one of those allowed.
    #[error(
        "{origin}: {}: annotation {annotation} has \"{}\", which is not {expected}",
        .id.display_name(),
        Escaped(value)
    )]
    UnknownValue {
        /// The object, as written (a `generateName` hook by its prefix).
        id: ObjectId,
        /// Where it comes from.
        origin: Origin,
        /// The annotation.
        annotation: &'static str,
        /// The value that is not allowed (one item of a comma-separated list).
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// A hook annotation names nothing.
    #[error("{origin}: {}: annotation {annotation} is empty", .id.display_name())]
    Empty {
        /// The object.
        id: ObjectId,
        /// Where it comes from.
        origin: Origin,
        /// The annotation.
        annotation: &'static str,
    },
    /// A weight or wave annotation that is not an integer.
    #[error(
        "{origin}: {}: annotation {annotation} is \"{}\", not an integer",
        .id.display_name(),
        Escaped(value)
    )]
    InvalidWeight {
        /// The object.
        id: ObjectId,
        /// Where it comes from.
        origin: Origin,
        /// The annotation.
        annotation: &'static str,
        /// Its value.
        value: String,
    },
    /// A hook of a kind the cluster does not serve.
    #[error(
        "{origin}: {}: the cluster serves no kind {} in {}",
        .id.display_name(),
        Escaped(&.id.kind),
        Escaped(api_version)
    )]
    UnknownKind {
        /// The hook.
        id: ObjectId,
        /// Where it comes from.
        origin: Origin,
        /// Its apiVersion.
        api_version: String,
    },
    /// The same hook twice in a set.
    #[error("{origin}: hook {} is also defined at {first}", .id.display_name())]
    Duplicate {
        /// The hook.
        id: ObjectId,
        /// The second definition.
        origin: Origin,
        /// The first definition.
        first: Origin,
    },
    /// A named hook is the same object as a resource of the set.
    #[error(
        "{origin}: hook {} is the same object as the resource defined at {resource}: rename one of them",
        .id.display_name()
    )]
    AlsoAResource {
        /// The hook.
        id: ObjectId,
        /// Where the hook comes from.
        origin: Origin,
        /// Where the resource comes from.
        resource: Origin,
    },
    /// A hook failed: its object failed, or was not done in time. The sync fails with it.
    #[error("{origin}: {run}", origin = .run.origin)]
    Failed {
        /// The record of the hook object that failed (its id has the generated name).
        run: Box<HookRun>,
    },
    /// A named hook's previous object is to be deleted before it is created again, but the
    /// object of that name is not a hook of this inventory: it is left alone.
    #[error(
        "{origin}: hook {}: an object of that name exists that is not a hook of this inventory; it is left alone (rename the hook or delete the object)",
        .id.display_name()
    )]
    NotOurs {
        /// The hook.
        id: ObjectId,
        /// Where it comes from.
        origin: Origin,
    },
    /// An API call about a hook failed.
    #[error("{origin}: {phase} hook {}: {doing} it", .id.display_name())]
    Api {
        /// The hook (by its prefix for a `generateName` hook not created yet).
        id: ObjectId,
        /// Where it comes from.
        origin: Origin,
        /// The phase.
        phase: SyncPhase,
        /// What failed: `creating`, `applying`, `reading`, `deleting the previous object of`.
        doing: &'static str,
        /// The failure.
        #[source]
        source: KubeError,
    },
    /// Creating the run's target namespace before the PreSync hooks failed.
    #[error(
        "creating the target namespace {} before the PreSync hooks",
        Escaped(name)
    )]
    TargetNamespace {
        /// The namespace.
        name: String,
        /// The failure.
        #[source]
        source: KubeError,
    },
    /// The run was cancelled while hooks ran.
    #[error("cancelled while running hooks")]
    Cancelled,
    /// An object with `metadata.generateName` whose hook annotation does not make it a hook
    /// (Helm's `crd-install`, which Argo CD applies as an ordinary object): it could be neither
    /// run as a hook nor applied by name.
    #[error(
        "{origin}: {}: metadata.generateName is only allowed for hooks, and annotation {annotation} \"{}\" does not make this object one: set metadata.name",
        .id.display_name(),
        Escaped(value)
    )]
    GenerateNameNotAHook {
        /// The object, by its `generateName` prefix.
        id: ObjectId,
        /// Where it comes from.
        origin: Origin,
        /// The annotation.
        annotation: &'static str,
        /// Its value.
        value: String,
    },
}

/// What became of one hook object in a sync.
///
/// ```
/// assert_eq!(gitops_apply::HookOutcome::Succeeded.to_string(), "succeeded");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HookOutcome {
    /// Listed by a plan or a dry run; not run.
    Planned,
    /// Created (or applied) and healthy: a Job completed, a Pod succeeded, another kind
    /// Current.
    Succeeded,
    /// Created but failed (a Job failed, a Pod failed, another kind Failed), or did not finish
    /// in time.
    Failed,
    /// Not run because the sync was cancelled or an earlier step failed.
    NotRun,
    /// Created and not done yet (reported as progress), or left running when another hook
    /// of its phase failed or the run was cancelled.
    Running,
}

impl fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Planned => "planned",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::NotRun => "not run",
            Self::Running => "running",
        })
    }
}

/// The record of one hook object in one phase of a sync: [`crate::ChangeSet`]'s `hooks`.
///
/// ```
/// use gitops_apply::{HookOutcome, HookRun, SyncPhase};
/// use gitops_core::{ObjectId, Origin};
/// let run = HookRun::new(
///     ObjectId::new("batch", "Job", Some("shop"), "migrate-x7k2p"),
///     Origin::new("job.yaml"),
///     SyncPhase::PreSync,
///     HookOutcome::Succeeded,
/// );
/// assert_eq!(run.to_string(), "PreSync hook Job.batch shop/migrate-x7k2p succeeded");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HookRun {
    /// The object: for a `generateName` hook, with the name the server generated (the prefix
    /// when it was not created, as in a plan).
    pub id: ObjectId,
    /// Where it comes from.
    pub origin: Origin,
    /// The phase it ran in.
    pub phase: SyncPhase,
    /// What became of it.
    pub outcome: HookOutcome,
    /// Why, for a failure (the health message or the API error); empty otherwise.
    pub message: String,
    /// Whether it was deleted after the run by its delete policy.
    pub deleted: bool,
}

impl HookRun {
    /// A record without a message, not deleted.
    #[must_use]
    pub fn new(id: ObjectId, origin: Origin, phase: SyncPhase, outcome: HookOutcome) -> Self {
        Self {
            id,
            origin,
            phase,
            outcome,
            message: String::new(),
            deleted: false,
        }
    }

    /// The same record with a message.
    ///
    /// ```
    /// use gitops_apply::{HookOutcome, HookRun, SyncPhase};
    /// let run = HookRun::new("shop_m-x_batch_Job".parse().unwrap(), gitops_core::Origin::new("m.yaml"),
    ///     SyncPhase::PreSync, HookOutcome::Failed).with_message("BackoffLimitExceeded");
    /// assert!(run.to_string().ends_with("failed: BackoffLimitExceeded"));
    /// ```
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

impl fmt::Display for HookRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} hook {} {}",
            self.phase,
            self.id.display_name(),
            self.outcome
        )?;
        if !self.message.is_empty() {
            write!(f, ": {}", Escaped(&self.message))?;
        }
        if self.deleted {
            f.write_str(" (deleted)")?;
        }
        Ok(())
    }
}

/// The Helm events a sync maps onto its phases (`None`: known, never applied by a sync).
fn helm_event(event: &str) -> Option<Option<SyncPhase>> {
    Some(match event {
        "pre-install" | "pre-upgrade" => Some(SyncPhase::PreSync),
        "post-install" | "post-upgrade" => Some(SyncPhase::PostSync),
        "pre-delete" | "post-delete" | "pre-rollback" | "post-rollback" | "test"
        | "test-success" | "test-failure" => None,
        _ => return None,
    })
}

const ARGO_HOOKS: &str =
    "one of PreSync, Sync, PostSync, SyncFail, Skip, PreDelete, PostDelete (exact case)";
const HELM_HOOKS: &str = "one of pre-install, pre-upgrade, post-install, post-upgrade, pre-delete, post-delete, pre-rollback, post-rollback, test, test-success, test-failure";
const ARGO_POLICIES: &str = "one of HookSucceeded, HookFailed, BeforeHookCreation (exact case)";
const HELM_POLICIES: &str = "one of hook-succeeded, hook-failed, before-hook-creation";

/// The items of a comma-separated annotation, trimmed, empty ones left out.
fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|i| !i.is_empty())
}

/// Whether `manifest` is a hook and how it runs: `None` for an ordinary object, `Some` for a
/// hook. A hook is an object annotated [`ARGO_HOOK_ANNOTATION`] (`PreSync`, `Sync`,
/// `PostSync`, `SyncFail`, `Skip`, comma-separated) or [`HELM_HOOK_ANNOTATION`], whose events
/// are mapped as Argo CD maps them: `pre-install` and `pre-upgrade` run in
/// [`SyncPhase::PreSync`], `post-install` and `post-upgrade` in [`SyncPhase::PostSync`];
/// `pre-delete`, `post-delete`, `pre-rollback`, `post-rollback` and the test hooks are never
/// applied by a sync (nor is anything Argo CD's `Skip`, `PreDelete` or `PostDelete` alone
/// names). When both annotations are there, Argo CD's wins, for the phases, the delete
/// policies ([`ARGO_HOOK_DELETE_POLICY_ANNOTATION`], else
/// [`HELM_HOOK_DELETE_POLICY_ANNOTATION`]; [`HookDeletePolicy::BeforeHookCreation`] when none)
/// and the weight ([`crate::WAVE_ANNOTATION`], [`crate::ARGO_WAVE_ANNOTATION`], else
/// [`HELM_HOOK_WEIGHT_ANNOTATION`]). Helm 2's `crd-install` alone is not a hook (Argo CD
/// applies such an object as a resource). A hook whose [`HookSpec::is_never_applied`] is true
/// must be left out of the set: neither applied nor run.
///
/// ```
/// use gitops_apply::{HookDeletePolicy, SyncPhase, hook_spec};
/// let set = gitops_core::parse_manifests(r#"
/// apiVersion: batch/v1
/// kind: Job
/// metadata:
///   generateName: migrate-
///   annotations:
///     helm.sh/hook: pre-install,pre-upgrade
///     helm.sh/hook-delete-policy: hook-succeeded
///     helm.sh/hook-weight: "-5"
/// ---
/// apiVersion: v1
/// kind: ConfigMap
/// metadata: {name: plain}
/// "#, "chart.yaml")?;
/// let spec = hook_spec(&set[0])?.expect("a hook");
/// assert_eq!(spec.phases, [SyncPhase::PreSync]);
/// assert_eq!(spec.delete_policies, [HookDeletePolicy::HookSucceeded]);
/// assert_eq!(spec.weight, -5);
/// assert_eq!(hook_spec(&set[1])?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`HookError`] for a value that is not a known hook, delete policy or integer weight, an
/// empty hook annotation, or a `generateName` object that is not a hook.
// The error names the object and where it comes from; it is made once per bad object, never on
// a hot path.
#[allow(clippy::result_large_err)]
pub fn hook_spec(manifest: &Manifest) -> Result<Option<HookSpec>, HookError> {
    let hook = HookAnnotations { manifest };
    let Some((source, phases)) = hook.phases()? else {
        return Ok(None);
    };
    let mut spec = HookSpec::new(phases)
        .with_delete_policies(hook.delete_policies()?)
        .with_weight(hook.weight()?);
    spec.source = source;
    Ok(Some(spec))
}

/// Reads the hook annotations of one manifest; each error names the manifest and its origin.
struct HookAnnotations<'a> {
    manifest: &'a Manifest,
}

#[allow(clippy::result_large_err)]
impl HookAnnotations<'_> {
    /// Who made the object a hook and its phases: Argo CD's annotation, else Helm's; `None`
    /// for an ordinary object.
    fn phases(&self) -> Result<Option<(HookSource, Vec<SyncPhase>)>, HookError> {
        if let Some(value) = self.manifest.annotation(ARGO_HOOK_ANNOTATION) {
            Ok(Some((HookSource::Argo, self.argo_phases(value)?)))
        } else if let Some(value) = self.manifest.annotation(HELM_HOOK_ANNOTATION) {
            Ok(self
                .helm_phases(value)?
                .map(|phases| (HookSource::Helm, phases)))
        } else {
            Ok(None)
        }
    }

    /// The phases Argo CD's hook annotation names (`Skip`, `PreDelete` and `PostDelete` run in
    /// none).
    fn argo_phases(&self, value: &str) -> Result<Vec<SyncPhase>, HookError> {
        let mut phases = Vec::new();
        let mut any = false;
        for item in items(value) {
            any = true;
            match item {
                "Skip" | "PreDelete" | "PostDelete" => {}
                other => phases.push(
                    other
                        .parse::<SyncPhase>()
                        .map_err(|()| self.unknown(ARGO_HOOK_ANNOTATION, other, ARGO_HOOKS))?,
                ),
            }
        }
        if !any {
            return Err(self.empty(ARGO_HOOK_ANNOTATION));
        }
        Ok(phases)
    }

    /// The phases Helm's hook events map onto; `None` when the events are Helm 2's
    /// `crd-install` alone (not a hook: Argo CD applies such an object as a resource).
    fn helm_phases(&self, value: &str) -> Result<Option<Vec<SyncPhase>>, HookError> {
        let events: Vec<String> = items(value).map(str::to_ascii_lowercase).collect();
        if events.is_empty() {
            return Err(self.empty(HELM_HOOK_ANNOTATION));
        }
        if events.iter().all(|e| e == "crd-install") {
            return match self.manifest.generate_name() {
                Some(_) => Err(HookError::GenerateNameNotAHook {
                    id: self.manifest.id(),
                    origin: self.manifest.origin().clone(),
                    annotation: HELM_HOOK_ANNOTATION,
                    value: value.to_owned(),
                }),
                None => Ok(None),
            };
        }
        let mut phases = Vec::new();
        let mut test = false;
        for event in &events {
            match helm_event(event) {
                Some(Some(phase)) => phases.push(phase),
                Some(None) => test |= event.starts_with("test"),
                None => return Err(self.unknown(HELM_HOOK_ANNOTATION, event, HELM_HOOKS)),
            }
        }
        // A test hook is run by `helm test` only, whatever else it names.
        if test {
            phases.clear();
        }
        Ok(Some(phases))
    }

    /// The delete policies: Argo CD's annotation, else Helm's, else none.
    fn delete_policies(&self) -> Result<Vec<HookDeletePolicy>, HookError> {
        if let Some(value) = self.manifest.annotation(ARGO_HOOK_DELETE_POLICY_ANNOTATION) {
            items(value)
                .map(|item| match item {
                    "HookSucceeded" => Ok(HookDeletePolicy::HookSucceeded),
                    "HookFailed" => Ok(HookDeletePolicy::HookFailed),
                    "BeforeHookCreation" => Ok(HookDeletePolicy::BeforeHookCreation),
                    other => {
                        Err(self.unknown(ARGO_HOOK_DELETE_POLICY_ANNOTATION, other, ARGO_POLICIES))
                    }
                })
                .collect()
        } else if let Some(value) = self.manifest.annotation(HELM_HOOK_DELETE_POLICY_ANNOTATION) {
            items(value)
                .map(|item| match item.to_ascii_lowercase().as_str() {
                    "hook-succeeded" => Ok(HookDeletePolicy::HookSucceeded),
                    "hook-failed" => Ok(HookDeletePolicy::HookFailed),
                    "before-hook-creation" => Ok(HookDeletePolicy::BeforeHookCreation),
                    _ => Err(self.unknown(HELM_HOOK_DELETE_POLICY_ANNOTATION, item, HELM_POLICIES)),
                })
                .collect()
        } else {
            Ok(Vec::new())
        }
    }

    /// The weight: the sync wave annotations, else Helm's hook weight, else 0.
    fn weight(&self) -> Result<i64, HookError> {
        crate::plan::integer_annotation(
            self.manifest,
            &[
                crate::WAVE_ANNOTATION,
                crate::ARGO_WAVE_ANNOTATION,
                HELM_HOOK_WEIGHT_ANNOTATION,
            ],
        )
        .map_err(|(annotation, value)| HookError::InvalidWeight {
            id: self.manifest.id(),
            origin: self.manifest.origin().clone(),
            annotation,
            value,
        })
    }

    fn unknown(&self, annotation: &'static str, value: &str, expected: &'static str) -> HookError {
        HookError::UnknownValue {
            id: self.manifest.id(),
            origin: self.manifest.origin().clone(),
            annotation,
            value: value.to_owned(),
            expected,
        }
    }

    fn empty(&self, annotation: &'static str) -> HookError {
        HookError::Empty {
            id: self.manifest.id(),
            origin: self.manifest.origin().clone(),
            annotation,
        }
    }
}

/// When a run's sync hooks run ([`crate::ApplyOptions::run_hooks`]).
///
/// ```
/// assert_eq!(gitops_apply::RunHooks::default(), gitops_apply::RunHooks::WhenOutOfSync);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunHooks {
    /// Only when the plan is not in sync (something to create, update, recreate or prune, or
    /// an invalid object), as Argo CD's automated sync: a run with nothing to do runs no hook
    /// and sends no request for them. The default.
    #[default]
    WhenOutOfSync,
    /// On every run, as a manual sync in Argo CD.
    Always,
    /// Never: the hooks are listed (not run) and left out.
    Never,
}

/// One hook of a set, ready to run: its object with the namespace resolved as for the
/// resources, its [`HookSpec`] and how the cluster serves its kind ([`plan_hooks`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PlannedHook {
    /// The object as it will be created (namespace filled in).
    pub manifest: Manifest,
    /// Its id: for a `generateName` hook, with the prefix as the name.
    pub id: ObjectId,
    /// Its phases, delete policies and weight.
    pub spec: HookSpec,
    /// How the cluster serves its kind.
    pub kind: KindInfo,
    /// The rank of its kind ([`Staging::kind_rank`]): hooks of one weight run in kind order.
    pub kind_rank: usize,
}

impl PlannedHook {
    fn order_key(&self) -> (i64, usize, &str, Option<&str>, &str) {
        (
            self.spec.weight,
            self.kind_rank,
            self.id.kind.as_str(),
            self.id.namespace.as_deref(),
            self.id.name.as_str(),
        )
    }

    /// The id shown for it: a `generateName` hook by its prefix and `*`.
    fn shown(&self) -> String {
        if self.manifest.generate_name().is_some() {
            format!("{}*", self.id.display_name())
        } else {
            self.id.display_name()
        }
    }
}

/// The hooks of a set, in run order: by weight, then kind order, kind, namespace and name
/// ([`plan_hooks`]). Its `Display` lists them by phase; it serialises (for a plan's JSON) as a
/// list of `{"id", "origin", "phases", "delete_policies", "weight", "generate_name"}`, objects
/// never included.
///
/// ```
/// let hooks = gitops_apply::PlannedHooks::default();
/// assert!(hooks.is_empty());
/// assert_eq!(hooks.to_string(), "");
/// ```
#[derive(Debug, Clone, Default)]
pub struct PlannedHooks {
    hooks: Vec<PlannedHook>,
}

impl PlannedHooks {
    /// Every hook, in run order.
    #[must_use]
    pub fn all(&self) -> &[PlannedHook] {
        &self.hooks
    }

    /// Whether the set has no hook to run.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// How many hooks there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.hooks.len()
    }

    /// The hooks of one phase, in run order.
    pub fn in_phase(&self, phase: SyncPhase) -> impl Iterator<Item = &PlannedHook> {
        self.hooks.iter().filter(move |h| h.spec.runs_in(phase))
    }

    /// Whether any hook runs in `phase`.
    #[must_use]
    pub fn has_phase(&self, phase: SyncPhase) -> bool {
        self.in_phase(phase).next().is_some()
    }

    /// One [`HookOutcome::Planned`] record per hook and phase, in run order: what a dry run
    /// reports.
    ///
    /// ```
    /// let hooks = gitops_apply::PlannedHooks::default();
    /// assert!(hooks.planned_runs().is_empty());
    /// assert!(!hooks.has_phase(gitops_apply::SyncPhase::PreSync));
    /// assert_eq!((hooks.len(), hooks.all().len()), (0, 0));
    /// ```
    #[must_use]
    pub fn planned_runs(&self) -> Vec<HookRun> {
        SyncPhase::ALL
            .into_iter()
            .flat_map(|phase| {
                self.in_phase(phase).map(move |hook| {
                    HookRun::new(
                        hook.id.clone(),
                        hook.manifest.origin().clone(),
                        phase,
                        HookOutcome::Planned,
                    )
                })
            })
            .collect()
    }
}

impl fmt::Display for PlannedHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for phase in SyncPhase::ALL {
            if !self.has_phase(phase) {
                continue;
            }
            writeln!(f, "{phase} hooks:")?;
            for hook in self.in_phase(phase) {
                write!(f, "  {}", hook.shown())?;
                if hook.spec.weight != 0 {
                    write!(f, " (weight {})", hook.spec.weight)?;
                }
                let policies: Vec<&str> = hook
                    .spec
                    .delete_policies
                    .iter()
                    .map(|p| p.as_str())
                    .collect();
                writeln!(f, ", deleted {}", policies.join(", "))?;
            }
        }
        Ok(())
    }
}

impl Serialize for PlannedHooks {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'h> {
            id: String,
            origin: String,
            phases: &'h [SyncPhase],
            delete_policies: &'h [HookDeletePolicy],
            weight: i64,
            generate_name: bool,
        }
        serializer.collect_seq(self.hooks.iter().map(|h| Shown {
            id: h.id.to_string(),
            origin: h.manifest.origin().to_string(),
            phases: &h.spec.phases,
            delete_policies: &h.spec.delete_policies,
            weight: h.spec.weight,
            generate_name: h.manifest.generate_name().is_some(),
        }))
    }
}

/// Takes the hooks out of a set: returns the resources (every object that is not a hook, in
/// their order) and the hooks to run, resolved and ordered. Hooks never applied by a sync
/// (Argo CD's `Skip`, Helm's test, delete and rollback hooks) are left out of both. A hook's
/// namespace is set as a resource's would be: `target_namespace` when given, else its own,
/// else [`crate::DEFAULT_NAMESPACE`]; cluster-scoped kinds lose theirs.
///
/// ```
/// use gitops_apply::{DefaultStaging, KindInfo, KindTable, SyncPhase, plan_hooks};
/// use kube::discovery::ApiResource;
///
/// let mut kinds = KindTable::default();
/// for (group, version, kind, plural) in [("", "v1", "ConfigMap", "configmaps"), ("batch", "v1", "Job", "jobs")] {
///     kinds.insert(KindInfo {
///         resource: ApiResource { group: group.into(), version: version.into(),
///             api_version: if group.is_empty() { version.into() } else { format!("{group}/{version}") },
///             kind: kind.into(), plural: plural.into() },
///         namespaced: true, served: true,
///     });
/// }
/// let set = gitops_core::parse_manifests(
///     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\
///      apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: migrate-\n  \
///      annotations: {argocd.argoproj.io/hook: PreSync}\n",
///     "set.yaml",
/// )?;
/// let (resources, hooks) = plan_hooks(set, &kinds, &DefaultStaging, Some("shop")).unwrap();
/// assert_eq!(resources.len(), 1);
/// let presync: Vec<String> = hooks.in_phase(SyncPhase::PreSync).map(|h| h.id.to_string()).collect();
/// assert_eq!(presync, ["shop_migrate-_batch_Job"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// Every [`HookError`] of the set at once: bad hook annotations, a hook of a kind the cluster
/// does not serve, the same hook twice.
pub fn plan_hooks(
    manifests: Vec<Manifest>,
    kinds: &KindTable,
    staging: &dyn Staging,
    target_namespace: Option<&str>,
) -> Result<(Vec<Manifest>, PlannedHooks), Vec<HookError>> {
    let mut resources = Vec::with_capacity(manifests.len());
    let mut hooks: Vec<PlannedHook> = Vec::new();
    let mut errors = Vec::new();
    for mut manifest in manifests {
        let spec = match hook_spec(&manifest) {
            Ok(None) => {
                resources.push(manifest);
                continue;
            }
            Ok(Some(spec)) if spec.is_never_applied() => continue,
            Ok(Some(spec)) => spec,
            Err(error) => {
                errors.push(error);
                continue;
            }
        };
        let Some(info) = kinds.resolve(manifest.group(), manifest.version(), manifest.kind())
        else {
            errors.push(HookError::UnknownKind {
                id: manifest.id(),
                origin: manifest.origin().clone(),
                api_version: manifest.api_version().to_owned(),
            });
            continue;
        };
        if info.namespaced {
            if let Some(target) = target_namespace {
                manifest.set_namespace(Some(target));
            } else if manifest.namespace().is_none() {
                manifest.set_namespace(Some(crate::DEFAULT_NAMESPACE));
            }
        } else {
            manifest.set_namespace(None);
        }
        let id = manifest.id();
        if let Some(first) = hooks.iter().find(|h| h.id == id) {
            errors.push(HookError::Duplicate {
                id,
                origin: manifest.origin().clone(),
                first: first.manifest.origin().clone(),
            });
            continue;
        }
        let kind_rank = staging.kind_rank(&gitops_core::GroupKind::new(
            manifest.group(),
            manifest.kind(),
        ));
        hooks.push(PlannedHook {
            manifest,
            id,
            spec,
            kind: info.clone(),
            kind_rank,
        });
    }
    // A named hook that is also a resource of the set would delete it (BeforeHookCreation)
    // or fight it on every sync.
    let resource_ids: std::collections::HashMap<ObjectId, &Origin> = resources
        .iter()
        .filter_map(|m| Some((resolved_id(m, kinds, target_namespace)?, m.origin())))
        .collect();
    for hook in &hooks {
        if let Some(resource) = resource_ids.get(&hook.id) {
            errors.push(HookError::AlsoAResource {
                id: hook.id.clone(),
                origin: hook.manifest.origin().clone(),
                resource: (*resource).clone(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    hooks.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    Ok((resources, PlannedHooks { hooks }))
}

/// The id of an object once its namespace is set as the planner sets it (`None` for a kind
/// the cluster does not serve: the planner reports it).
fn resolved_id(
    manifest: &Manifest,
    kinds: &KindTable,
    target_namespace: Option<&str>,
) -> Option<ObjectId> {
    let info = kinds.resolve(manifest.group(), manifest.version(), manifest.kind())?;
    let namespace = if info.namespaced {
        target_namespace
            .or(manifest.namespace())
            .or(Some(crate::DEFAULT_NAMESPACE))
    } else {
        None
    };
    Some(ObjectId::new(
        manifest.group(),
        manifest.kind(),
        namespace,
        manifest.name(),
    ))
}

/// How long a hook may take when the run gives no wait timeout: Argo CD waits for hooks
/// without a limit; a limit keeps a hook whose Job never starts from holding a sync forever.
///
/// ```
/// assert_eq!(gitops_apply::DEFAULT_HOOK_TIMEOUT, std::time::Duration::from_secs(600));
/// ```
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);

/// The labels a hook object carries: the phase it runs in, and the inventory it belongs to
/// (the values of the inventory's ownership labels under [`HOOK_OF_NAMESPACE_LABEL`] and
/// [`HOOK_OF_NAME_LABEL`]), never the ownership labels themselves.
pub(crate) fn hook_labels(
    owner_labels: &BTreeMap<String, String>,
    phase: SyncPhase,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(HOOK_PHASE_LABEL.to_owned(), phase.as_str().to_owned())]);
    for (owner, hook) in [
        (crate::OWNER_NAMESPACE_LABEL, HOOK_OF_NAMESPACE_LABEL),
        (crate::OWNER_NAME_LABEL, HOOK_OF_NAME_LABEL),
    ] {
        if let Some(value) = owner_labels.get(owner) {
            labels.insert(hook.to_owned(), value.clone());
        }
    }
    labels
}

/// The health of a hook object: a Pod is done when it Succeeded (not when Ready, as a
/// resource would be); other kinds by the applier's checks (a Job Complete is Current).
fn hook_health(checks: &HealthChecks, live: &Value) -> Health {
    let core_pod = live["kind"] == "Pod" && live["apiVersion"] == "v1";
    if core_pod {
        return match live.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => Health {
                status: Status::Current,
                message: "pod succeeded".into(),
            },
            Some("Failed") => Health {
                status: Status::Failed,
                message: live
                    .pointer("/status/message")
                    .and_then(Value::as_str)
                    .unwrap_or("pod failed")
                    .to_owned(),
            },
            phase => Health {
                status: Status::InProgress,
                message: format!("pod {}", phase.unwrap_or("pending").to_lowercase()),
            },
        };
    }
    checks.check(live)
}

/// Runs the hooks of a phase against a cluster, as a sync does ([`HookRunner::run_phase`]);
/// [`crate::Applier`] uses one for the phases of `apply_set`.
///
/// ```no_run
/// # async fn example(client: kube::Client, hooks: gitops_apply::PlannedHooks) -> Result<(), gitops_apply::HookError> {
/// use gitops_apply::{HookRunner, InventoryOwner, SyncPhase};
/// let owner = InventoryOwner::new("shop", "inventory").expect("valid names");
/// let runner = HookRunner::new(client, owner.labels());
/// let mut runs = Vec::new();
/// let cancel = tokio_util::sync::CancellationToken::new();
/// runner.run_phase(&hooks, SyncPhase::PreSync, &mut runs, &cancel).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HookRunner {
    client: kube::Client,
    field_manager: String,
    owner_labels: BTreeMap<String, String>,
    checks: HealthChecks,
    timeout: Duration,
    interval: Duration,
}

impl fmt::Debug for HookRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookRunner")
            .field("field_manager", &self.field_manager)
            .field("owner_labels", &self.owner_labels)
            .field("timeout", &self.timeout)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl HookRunner {
    /// A runner for the hooks of the inventory whose ownership labels are `owner_labels`
    /// ([`crate::InventoryStore::owner_labels`]): field manager
    /// [`crate::DEFAULT_FIELD_MANAGER`], the built-in health checks, [`DEFAULT_HOOK_TIMEOUT`]
    /// per phase wave, polled every 2 s.
    ///
    /// ```no_run
    /// # fn example(client: kube::Client) -> Result<(), gitops_apply::InventoryError> {
    /// use std::time::Duration;
    /// use gitops_apply::{HealthChecks, HookRunner, InventoryOwner};
    /// let runner = HookRunner::new(client, InventoryOwner::new("shop", "apps")?.labels())
    ///     .with_field_manager("my-controller")
    ///     .with_health_checks(HealthChecks::default())
    ///     .with_timeout(Duration::from_secs(300))
    ///     .with_interval(Duration::from_secs(1));
    /// # Ok(()) }
    /// ```
    ///
    /// Hook objects are found again (to delete those of an earlier sync) by the values of
    /// [`crate::OWNER_NAMESPACE_LABEL`] and [`crate::OWNER_NAME_LABEL`] in `owner_labels`, copied
    /// to [`HOOK_OF_NAMESPACE_LABEL`] and [`HOOK_OF_NAME_LABEL`]: an inventory store whose
    /// owner labels lack them would share its hooks' objects with other such stores.
    #[must_use]
    pub fn new(client: kube::Client, owner_labels: BTreeMap<String, String>) -> Self {
        Self {
            client,
            field_manager: crate::DEFAULT_FIELD_MANAGER.to_owned(),
            owner_labels,
            checks: HealthChecks::default(),
            timeout: DEFAULT_HOOK_TIMEOUT,
            interval: Duration::from_secs(2),
        }
    }

    /// Writes as this field manager.
    #[must_use]
    pub fn with_field_manager(mut self, field_manager: impl Into<String>) -> Self {
        self.field_manager = field_manager.into();
        self
    }

    /// Judges hook objects with these checks (a Pod hook is done when it Succeeded, whatever
    /// they say).
    #[must_use]
    pub fn with_health_checks(mut self, checks: HealthChecks) -> Self {
        self.checks = checks;
        self
    }

    /// How long the hooks of one weight may take.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often hook objects are read while they run.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

/// Why a sync run in phases ([`HookRunner::run_sync`]) failed: a hook, or the sync phase's own
/// work. The SyncFail hooks ran either way (unless the run was cancelled). `done` is what the
/// sync phase returned when it got that far.
///
/// ```
/// use gitops_apply::{HookError, PhaseFailure};
/// let failure: PhaseFailure<(), std::io::Error> =
///     PhaseFailure::Hook { error: Box::new(HookError::Cancelled), done: None };
/// assert!(matches!(failure, PhaseFailure::Hook { done: None, .. }));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum PhaseFailure<T, E> {
    /// A hook failed (or its API calls did).
    Hook {
        /// The failure, naming the hook.
        error: Box<HookError>,
        /// What the sync phase returned, when the failure came after it.
        done: Option<T>,
    },
    /// Writing the resources, or waiting for them before the PostSync hooks, failed.
    Sync {
        /// The failure of the sync phase or of the wait.
        error: E,
        /// What the sync phase returned, when the wait failed.
        done: Option<T>,
    },
}

impl HookRunner {
    /// Runs a sync in its phases, as Argo CD does: the PreSync hooks; then `sync` (which writes
    /// the resources) and the Sync hooks; then, when there are PostSync hooks, `settle` (which
    /// waits for the resources to be healthy) and the PostSync hooks. The first failure stops
    /// the run and the SyncFail hooks run (unless the run was cancelled); their own failure is
    /// only recorded in `runs` (and logged). Without hooks this is `sync` alone. The Sync hooks
    /// run after all of `sync` here; the applier's own runs interleave them with the waves.
    ///
    /// ```no_run
    /// # async fn example(runner: gitops_apply::HookRunner, hooks: gitops_apply::PlannedHooks) {
    /// let cancel = tokio_util::sync::CancellationToken::new();
    /// let mut runs = Vec::new();
    /// let written = runner
    ///     .run_sync(
    ///         &hooks,
    ///         &mut runs,
    ///         &cancel,
    ///         async { Ok::<_, std::io::Error>("the resources are written") },
    ///         async |_written: &&str| Ok(()),
    ///     )
    ///     .await;
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`PhaseFailure::Hook`] naming the hook that failed, or [`PhaseFailure::Sync`] with the
    /// error of `sync` or `settle`.
    pub async fn run_sync<T, E>(
        &self,
        hooks: &PlannedHooks,
        runs: &mut Vec<HookRun>,
        cancel: &CancellationToken,
        sync: impl Future<Output = Result<T, E>>,
        settle: impl AsyncFnOnce(&T) -> Result<(), E>,
    ) -> Result<T, PhaseFailure<T, E>> {
        let observe = &mut |_: &HookRun| {};
        let result = async {
            let hook = |error, done| PhaseFailure::Hook {
                error: Box::new(error),
                done,
            };
            if let Err(error) = self
                .run_phase_observed(hooks, SyncPhase::PreSync, runs, cancel, observe)
                .await
            {
                return Err(hook(error, None));
            }
            let done = sync
                .await
                .map_err(|error| PhaseFailure::Sync { error, done: None })?;
            if let Err(error) = self
                .run_phase_observed(hooks, SyncPhase::Sync, runs, cancel, observe)
                .await
            {
                return Err(hook(error, Some(done)));
            }
            if hooks.has_phase(SyncPhase::PostSync) {
                if let Err(error) = settle(&done).await {
                    return Err(PhaseFailure::Sync {
                        error,
                        done: Some(done),
                    });
                }
                if let Err(error) = self
                    .run_phase_observed(hooks, SyncPhase::PostSync, runs, cancel, observe)
                    .await
                {
                    return Err(hook(error, Some(done)));
                }
            }
            Ok(done)
        }
        .await;
        if result.is_err()
            && hooks.has_phase(SyncPhase::SyncFail)
            && !cancel.is_cancelled()
            && let Err(error) = self
                .run_phase_observed(hooks, SyncPhase::SyncFail, runs, cancel, observe)
                .await
        {
            tracing::warn!("SyncFail hooks: {error}");
        }
        result
    }
}

impl crate::Applier {
    /// A runner for this applier's hooks: its field manager, health checks, poll interval and
    /// inventory, requests counted on `client`.
    pub(crate) fn hook_runner(&self, client: kube::Client, timeout: Duration) -> HookRunner {
        HookRunner::new(client, self.inventory.owner_labels())
            .with_field_manager(self.field_manager.clone())
            .with_health_checks(self.health.clone())
            .with_timeout(timeout)
            .with_interval(self.wait_interval)
    }

    /// Executes a plan in its sync phases, as [`HookRunner::run_sync`] does but with the Sync
    /// hooks in the waves: the PreSync hooks; the plan's writes, each Sync hook after the
    /// objects of its wave (its weight) are written and before the next wave, the prune; the
    /// wait for the set's health (unless the run already waited, [`crate::ApplyOptions::wait`])
    /// and the PostSync hooks; the SyncFail hooks on a failure. A plan without hooks is
    /// executed as it is, with no request more; a dry run lists the hooks it would run. Hooks
    /// run with the run's wait timeout, else [`DEFAULT_HOOK_TIMEOUT`].
    pub(crate) async fn execute_in_phases(
        &self,
        mut plan: crate::Plan,
        cancel: &CancellationToken,
        progress: &mut (dyn FnMut(&crate::ApplyProgress) + Send),
    ) -> Result<crate::ChangeSet, crate::ApplyError> {
        let hooks = std::mem::take(&mut plan.hooks);
        if hooks.is_empty() {
            return self.execute(plan, cancel, progress).await;
        }
        if plan.options.dry_run {
            let mut change_set = self.execute(plan, cancel, progress).await?;
            change_set.hooks = hooks.planned_runs();
            return Ok(change_set);
        }
        let not_run = |message: &str| -> Vec<HookRun> {
            hooks
                .planned_runs()
                .into_iter()
                .map(|mut run| {
                    run.outcome = HookOutcome::NotRun;
                    run.message = message.to_owned();
                    run
                })
                .collect()
        };
        // Objects the server refused in the plan's dry run: nothing is written and no hook
        // runs (as Argo CD's dry run fails a sync before its phases), not even SyncFail.
        if plan.is_invalid() && !plan.options.best_effort {
            let result = self.execute(plan, cancel, progress).await;
            let Err(mut error) = result else {
                return result;
            };
            if let Some(change_set) = error.change_set_mut() {
                change_set.hooks = not_run("objects of the set failed validation");
            }
            return Err(error);
        }
        let skip = match plan.options.run_hooks {
            RunHooks::Always => None,
            RunHooks::Never => Some("hooks are not run (RunHooks::Never)"),
            _ if plan.is_in_sync() => Some("in sync: hooks run when there is something to sync"),
            _ => None,
        };
        if let Some(why) = skip {
            let mut change_set = self.execute(plan, cancel, progress).await?;
            change_set.hooks = not_run(why);
            return Ok(change_set);
        }
        self.run_phases(plan, &hooks, cancel, progress).await
    }

    /// Runs the phases of a plan with hooks to run ([`crate::Applier::execute_in_phases`]); the
    /// change set (or the error's) records every hook object.
    async fn run_phases(
        &self,
        plan: crate::Plan,
        hooks: &PlannedHooks,
        cancel: &CancellationToken,
        progress: &mut (dyn FnMut(&crate::ApplyProgress) + Send),
    ) -> Result<crate::ChangeSet, crate::ApplyError> {
        use crate::ApplyError;
        let waited = plan.options.wait.is_some();
        let timeout = plan.options.wait.unwrap_or(DEFAULT_HOOK_TIMEOUT);
        let counter = plan.counter.clone();
        let client = crate::counting_client(&self.client, &counter);
        let runner = self.hook_runner(client.clone(), timeout);
        // The target namespace the run creates (ApplyOptions::create_target_namespace) is
        // created before the PreSync hooks, which may run in it, as Argo CD's CreateNamespace
        // does; the Sync phase applies it again, unchanged.
        if hooks.has_phase(SyncPhase::PreSync) {
            self.create_target_namespaces(&plan, &client).await?;
        }
        // Every hook validated (a server-side dry run) before the first one runs.
        runner
            .validate(hooks, cancel)
            .await
            .map_err(|errors| ApplyError::Hooks { errors })?;
        let mut runs = Vec::new();
        let result = async {
            let observe = &mut |run: &HookRun| progress(&crate::ApplyProgress::Hook(run.clone()));
            let phase =
                runner.run_phase_observed(hooks, SyncPhase::PreSync, &mut runs, cancel, observe);
            if let Err(error) = phase.await {
                return Err(hook_failure(error, crate::ChangeSet::default()));
            }
            let sync_hooks = crate::execute::SyncHooks {
                runner: &runner,
                pending: hooks.in_phase(SyncPhase::Sync).collect(),
                runs: &mut runs,
            };
            let done = self
                .execute_with_hooks(plan, cancel, progress, Some(sync_hooks))
                .await?;
            if !hooks.has_phase(SyncPhase::PostSync) {
                return Ok(done);
            }
            if !waited
                && let Err(source) = self
                    .wait_on(&client, &done.wait_targets(), timeout, cancel, |_| {})
                    .await
            {
                return Err(ApplyError::Unhealthy {
                    change_set: Box::new(done),
                    source,
                });
            }
            let observe = &mut |run: &HookRun| progress(&crate::ApplyProgress::Hook(run.clone()));
            let phase =
                runner.run_phase_observed(hooks, SyncPhase::PostSync, &mut runs, cancel, observe);
            match phase.await {
                Ok(()) => Ok(done),
                Err(error) => Err(hook_failure(error, done)),
            }
        }
        .await;
        if result.is_err() && hooks.has_phase(SyncPhase::SyncFail) && !cancel.is_cancelled() {
            let observe = &mut |run: &HookRun| progress(&crate::ApplyProgress::Hook(run.clone()));
            let phase =
                runner.run_phase_observed(hooks, SyncPhase::SyncFail, &mut runs, cancel, observe);
            if let Err(error) = phase.await {
                tracing::warn!("SyncFail hooks: {error}");
            }
        }
        with_runs(result, runs, &counter)
    }

    /// Creates (server-side apply) the target namespaces the plan creates, before its PreSync
    /// hooks.
    async fn create_target_namespaces(
        &self,
        plan: &crate::Plan,
        client: &kube::Client,
    ) -> Result<(), crate::ApplyError> {
        for namespace in plan.ordered.objects().iter().filter(|o| o.synthesized) {
            let api = crate::apply::object_api(client, &namespace.kind, None);
            let params = PatchParams::apply(&self.field_manager);
            if let Err(source) = api
                .patch(
                    &namespace.id.name,
                    &params,
                    &Patch::Apply(namespace.manifest.object()),
                )
                .await
            {
                return Err(crate::ApplyError::Hook {
                    source: Box::new(HookError::TargetNamespace {
                        name: namespace.id.name.clone(),
                        source: source.into(),
                    }),
                    change_set: Box::default(),
                });
            }
        }
        Ok(())
    }
}

/// A run's result with its hook objects recorded, and every request it sent counted, in its
/// change set (or its error's).
// Once per run, never on a hot path; the error is what the run returns.
#[allow(clippy::result_large_err)]
fn with_runs(
    result: Result<crate::ChangeSet, crate::ApplyError>,
    runs: Vec<HookRun>,
    counter: &crate::RequestCounter,
) -> Result<crate::ChangeSet, crate::ApplyError> {
    let record = |change_set: &mut crate::ChangeSet| {
        change_set.hooks = runs;
        change_set.requests = counter.get();
        change_set.request_counts = counter.counts();
    };
    match result {
        Ok(mut change_set) => {
            record(&mut change_set);
            Ok(change_set)
        }
        Err(mut error) => {
            if let Some(change_set) = error.change_set_mut() {
                record(change_set);
            }
            Err(error)
        }
    }
}

/// The error of a run a hook failed, with what was done: cancelled while a hook ran (what was
/// written stays written, as for the writes), or the hook's failure.
pub(crate) fn hook_failure(error: HookError, done: crate::ChangeSet) -> crate::ApplyError {
    if matches!(error, HookError::Cancelled) {
        crate::ApplyError::Cancelled {
            change_set: Box::new(done),
        }
    } else {
        crate::ApplyError::Hook {
            source: Box::new(error),
            change_set: Box::new(done),
        }
    }
}

/// One hook object created in a phase and not finished yet.
struct Running<'h> {
    hook: &'h PlannedHook,
    api: Api<DynamicObject>,
    name: String,
    run: HookRun,
}

impl HookRunner {
    fn api(&self, hook: &PlannedHook) -> Api<DynamicObject> {
        match &hook.id.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &hook.kind.resource),
            None => Api::all_with(self.client.clone(), &hook.kind.resource),
        }
    }

    fn api_error<'h>(
        hook: &'h PlannedHook,
        phase: SyncPhase,
        doing: &'static str,
    ) -> impl FnOnce(kube::Error) -> HookError + 'h {
        move |source| HookError::Api {
            id: hook.id.clone(),
            origin: hook.manifest.origin().clone(),
            phase,
            doing,
            source: masked(hook, source).into(),
        }
    }

    /// Whether a live object is a hook of ours: it carries our hook labels, or our ownership
    /// labels (a hook an earlier version applied as a resource).
    fn is_ours(&self, live: &DynamicObject) -> bool {
        let labels = live.metadata.labels.clone().unwrap_or_default();
        let carries = |pairs: &BTreeMap<String, String>| {
            !pairs.is_empty() && pairs.iter().all(|(k, v)| labels.get(k) == Some(v))
        };
        let mut hook_of = hook_labels(&self.owner_labels, SyncPhase::Sync);
        hook_of.remove(HOOK_PHASE_LABEL);
        carries(&hook_of) || carries(&self.owner_labels)
    }

    /// Runs the hooks of `phase`, weight by weight: the hooks of one weight are created (the
    /// previous objects of those with [`HookDeletePolicy::BeforeHookCreation`] deleted first),
    /// then waited for together; those done are deleted as their policies say. The first
    /// failure stops the phase. Every hook object touched is recorded in `runs`.
    ///
    /// # Errors
    /// [`HookError::Failed`] naming the hook that failed, [`HookError::Api`],
    /// [`HookError::NotOurs`] or [`HookError::Cancelled`].
    pub async fn run_phase(
        &self,
        hooks: &PlannedHooks,
        phase: SyncPhase,
        runs: &mut Vec<HookRun>,
        cancel: &CancellationToken,
    ) -> Result<(), HookError> {
        self.run_phase_observed(hooks, phase, runs, cancel, &mut |_| {})
            .await
    }

    /// [`HookRunner::run_phase`], telling `observe` of each hook object when it is created
    /// ([`HookOutcome::Running`]) and when it is done.
    pub(crate) async fn run_phase_observed(
        &self,
        hooks: &PlannedHooks,
        phase: SyncPhase,
        runs: &mut Vec<HookRun>,
        cancel: &CancellationToken,
        observe: &mut (dyn FnMut(&HookRun) + Send),
    ) -> Result<(), HookError> {
        let in_phase: Vec<&PlannedHook> = hooks.in_phase(phase).collect();
        self.run_hooks_observed(&in_phase, phase, runs, cancel, observe)
            .await
    }

    /// Runs `in_phase` (hooks of `phase`, in run order) as [`HookRunner::run_phase`] runs a
    /// phase's hooks: weight by weight.
    pub(crate) async fn run_hooks_observed(
        &self,
        in_phase: &[&PlannedHook],
        phase: SyncPhase,
        runs: &mut Vec<HookRun>,
        cancel: &CancellationToken,
        observe: &mut (dyn FnMut(&HookRun) + Send),
    ) -> Result<(), HookError> {
        let mut start = 0;
        while start < in_phase.len() {
            let weight = in_phase[start].spec.weight;
            let end = in_phase[start..]
                .iter()
                .position(|h| h.spec.weight != weight)
                .map_or(in_phase.len(), |n| start + n);
            let wave = &in_phase[start..end];
            start = end;
            let mut running = Vec::with_capacity(wave.len());
            let mut created = Ok(());
            for hook in wave {
                match self.start(hook, phase, cancel).await {
                    Ok(started) => {
                        observe(&started.run);
                        running.push(started);
                    }
                    Err(error) => {
                        // The hook that could not be created is recorded too, with why.
                        if !matches!(error, HookError::Cancelled) {
                            let mut message = String::new();
                            let mut cause: Option<&dyn std::error::Error> = Some(&error);
                            while let Some(current) = cause {
                                if !message.is_empty() {
                                    message.push_str(": ");
                                }
                                message.push_str(&current.to_string());
                                cause = current.source();
                            }
                            let run = HookRun::new(
                                hook.id.clone(),
                                hook.manifest.origin().clone(),
                                phase,
                                HookOutcome::Failed,
                            )
                            .with_message(message);
                            observe(&run);
                            runs.push(run);
                        }
                        created = Err(error);
                        break;
                    }
                }
            }
            let waited = match created {
                Ok(()) => self.wait(&mut running, phase, cancel).await,
                Err(error) => Err(error),
            };
            let failed = running
                .iter()
                .find(|r| r.run.outcome == HookOutcome::Failed)
                .map(|r| r.run.clone());
            for done in running {
                let run = self.finish(done, cancel, observe).await;
                runs.push(run);
            }
            waited?;
            if let Some(run) = failed {
                return Err(HookError::Failed { run: Box::new(run) });
            }
        }
        Ok(())
    }

    /// Ends the run of a hook object: deleted when its outcome and delete policies say so
    /// (a failure to delete is logged), then told to `observe` (not when cancelled).
    async fn finish(
        &self,
        mut done: Running<'_>,
        cancel: &CancellationToken,
        observe: &mut (dyn FnMut(&HookRun) + Send),
    ) -> HookRun {
        if cancel.is_cancelled() {
            return done.run;
        }
        let delete = match done.run.outcome {
            HookOutcome::Succeeded => done.hook.spec.deletes_on(HookDeletePolicy::HookSucceeded),
            HookOutcome::Failed => done.hook.spec.deletes_on(HookDeletePolicy::HookFailed),
            _ => false,
        };
        if delete {
            match self.delete(&done.api, &done.name).await {
                Ok(()) => done.run.deleted = true,
                Err(error) => tracing::warn!(
                    "deleting {} after it ran: {}",
                    done.run.id.display_name(),
                    KubeError::from(masked(done.hook, error))
                ),
            }
        }
        observe(&done.run);
        done.run
    }

    /// Validates every hook with a server-side dry run of its creation (strict field
    /// validation), as the resources are validated before any write: a hook the server would
    /// refuse fails the run before its first phase, not halfway. A named hook is sent under a generated name,
    /// so that its previous object (deleted before it is created again) is no conflict. Hooks
    /// the server cannot validate yet are left to their run: a kind a CRD of the set defines, a
    /// namespace the set creates.
    ///
    /// # Errors
    /// Every hook the server refused, each a [`HookError::Api`] (`validating`).
    pub async fn validate(
        &self,
        hooks: &PlannedHooks,
        cancel: &CancellationToken,
    ) -> Result<(), Vec<HookError>> {
        let mut errors = Vec::new();
        for hook in hooks.all() {
            if cancel.is_cancelled() {
                return Err(vec![HookError::Cancelled]);
            }
            if !hook.kind.served {
                continue;
            }
            let mut object = hook.manifest.object().clone();
            let metadata = object["metadata"]
                .as_object_mut()
                .expect("a valid manifest has a metadata mapping");
            if let Some(name) = metadata
                .remove("name")
                .and_then(|n| n.as_str().map(str::to_owned))
            {
                metadata.insert("generateName".into(), Value::String(format!("{name}-")));
            }
            let phase = hook.spec.phases.first().copied().unwrap_or(SyncPhase::Sync);
            match self.create_strict(hook, &object, true).await {
                Ok(_) => {}
                Err(kube::Error::Api(status))
                    if status.code == 404
                        && status
                            .details
                            .as_ref()
                            .is_some_and(|d| d.kind == "namespaces") => {}
                Err(error) => errors.push(Self::api_error(hook, phase, "validating")(error)),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Deletes the previous objects of `hook` when its policies say so, then creates it.
    async fn start<'h>(
        &self,
        hook: &'h PlannedHook,
        phase: SyncPhase,
        cancel: &CancellationToken,
    ) -> Result<Running<'h>, HookError> {
        if cancel.is_cancelled() {
            return Err(HookError::Cancelled);
        }
        let api = self.api(hook);
        if hook.spec.deletes_on(HookDeletePolicy::BeforeHookCreation) {
            self.delete_previous(hook, phase, &api, cancel).await?;
        }
        let mut object = hook.manifest.object().clone();
        let labels = object["metadata"]
            .as_object_mut()
            .expect("a valid manifest has a metadata mapping")
            .entry("labels")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if !labels.is_object() {
            *labels = Value::Object(serde_json::Map::new());
        }
        for (key, value) in hook_labels(&self.owner_labels, phase) {
            labels[key] = Value::String(value);
        }
        let created = match hook.manifest.generate_name() {
            Some(_) => self
                .create_strict(hook, &object, false)
                .await
                .map_err(Self::api_error(hook, phase, "creating"))?,
            None => {
                let params = PatchParams::apply(&self.field_manager).validation_strict();
                api.patch(&hook.id.name, &params, &Patch::Apply(&object))
                    .await
                    .map_err(Self::api_error(hook, phase, "applying"))?
            }
        };
        let name = created.metadata.name.unwrap_or_default();
        let id = ObjectId::new(
            hook.id.group.as_str(),
            hook.id.kind.as_str(),
            hook.id.namespace.as_deref(),
            name.as_str(),
        );
        tracing::info!("{phase} hook {} created", id.display_name());
        Ok(Running {
            hook,
            api,
            name,
            run: HookRun::new(
                id,
                hook.manifest.origin().clone(),
                phase,
                HookOutcome::Running,
            ),
        })
    }

    /// Deletes the objects an earlier sync created for `hook` in `phase`, and waits until a
    /// named one is gone (its name is taken until then).
    async fn delete_previous(
        &self,
        hook: &PlannedHook,
        phase: SyncPhase,
        api: &Api<DynamicObject>,
        cancel: &CancellationToken,
    ) -> Result<(), HookError> {
        if let Some(prefix) = hook.manifest.generate_name() {
            let selector = hook_labels(&self.owner_labels, phase)
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let previous = crate::paging::list_all(
                api,
                &ListParams::default().labels(&selector),
                crate::DEFAULT_PAGE_SIZE,
            )
            .await
            .map_err(Self::api_error(
                hook,
                phase,
                "listing the previous objects of",
            ))?;
            for object in previous {
                if object.metadata.generate_name.as_deref() != Some(prefix) {
                    continue;
                }
                let Some(name) = object.metadata.name.as_deref() else {
                    continue;
                };
                self.delete(api, name).await.map_err(Self::api_error(
                    hook,
                    phase,
                    "deleting the previous object of",
                ))?;
            }
            return Ok(());
        }
        let name = hook.id.name.as_str();
        let Some(live) = api
            .get_opt(name)
            .await
            .map_err(Self::api_error(hook, phase, "reading"))?
        else {
            return Ok(());
        };
        if !self.is_ours(&live) {
            return Err(HookError::NotOurs {
                id: hook.id.clone(),
                origin: hook.manifest.origin().clone(),
            });
        }
        let uid = live.metadata.uid.clone();
        self.delete(api, name).await.map_err(Self::api_error(
            hook,
            phase,
            "deleting the previous object of",
        ))?;
        let start = Instant::now();
        loop {
            let gone = api
                .get_opt(name)
                .await
                .map_err(Self::api_error(hook, phase, "reading"))?
                .is_none_or(|live| live.metadata.uid != uid);
            if gone {
                return Ok(());
            }
            if start.elapsed() >= self.timeout {
                return Err(HookError::Failed {
                    run: Box::new(
                        HookRun::new(
                            hook.id.clone(),
                            hook.manifest.origin().clone(),
                            phase,
                            HookOutcome::Failed,
                        )
                        .with_message(format!(
                            "the previous object was not gone after {:?}",
                            self.timeout
                        )),
                    ),
                });
            }
            self.pause(cancel).await?;
        }
    }

    /// Creates `object` with a `POST` (its name generated by the server) and strict field
    /// validation, as the resources' server-side applies are: an unknown or duplicated field
    /// is an error, not a warning.
    async fn create_strict(
        &self,
        hook: &PlannedHook,
        object: &Value,
        dry_run: bool,
    ) -> Result<DynamicObject, kube::Error> {
        use kube::Resource as _;
        let url = DynamicObject::url_path(&hook.kind.resource, hook.id.namespace.as_deref());
        let params = PostParams {
            field_manager: Some(self.field_manager.clone()),
            dry_run,
        };
        let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
        let mut request = kube::core::Request::new(url)
            .create(&params, body)
            .map_err(kube::Error::BuildRequest)?;
        let uri = request.uri().to_string();
        let separator = if uri.ends_with('?') { "" } else { "&" };
        *request.uri_mut() = format!("{uri}{separator}fieldValidation=Strict")
            .parse()
            .map_err(|e: http::uri::InvalidUri| kube::Error::HttpError(e.into()))?;
        self.client.request::<DynamicObject>(request).await
    }

    /// Deletes the hook objects of this runner's inventory left in the cluster (their delete
    /// policies kept them), as Argo CD's cascading deletion of an application deletes every
    /// object it tracks, hooks included: each kind of `kinds` is listed in every namespace by
    /// the hook labels of the inventory. Kinds that cannot be listed (reviews, or not by us)
    /// are passed over. Nothing is deleted when the owner labels cannot tell a hook ours.
    /// Returns a change per object found: pruned, or failed with why.
    pub(crate) async fn delete_left_over(
        &self,
        kinds: &KindTable,
        cancel: &CancellationToken,
    ) -> Vec<crate::ObjectChange> {
        let mut hook_of = hook_labels(&self.owner_labels, SyncPhase::Sync);
        hook_of.remove(HOOK_PHASE_LABEL);
        if hook_of.len() < 2 {
            return Vec::new();
        }
        let selector: Vec<String> = hook_of.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let params = ListParams::default().labels(&selector.join(","));
        let mut changes = Vec::new();
        for kind in kinds.served_kinds() {
            if cancel.is_cancelled() {
                break;
            }
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &kind.resource);
            let found = match api.list(&params).await {
                Ok(list) => list.items,
                Err(kube::Error::Api(status)) if (403..=405).contains(&status.code) => continue,
                Err(error) => {
                    tracing::warn!(
                        "listing the hook objects of kind {}: {}",
                        Escaped(&kind.resource.kind),
                        KubeError::from(error)
                    );
                    continue;
                }
            };
            for object in found {
                let Some(name) = object.metadata.name.clone() else {
                    continue;
                };
                let namespace = object
                    .metadata
                    .namespace
                    .clone()
                    .filter(|_| kind.namespaced);
                let id = ObjectId::new(
                    kind.resource.group.clone(),
                    kind.resource.kind.clone(),
                    namespace.as_deref(),
                    name.clone(),
                );
                let api = crate::apply::object_api(&self.client, kind, namespace.as_deref());
                let (action, reason, error) = match self.delete(&api, &name).await {
                    Ok(()) => (crate::ObjectAction::Pruned, crate::Reason::LeftTheSet, None),
                    Err(error) => (
                        crate::ObjectAction::Failed,
                        crate::Reason::DeleteFailed,
                        Some(crate::ObjectError::from_kube_about(&id, None, error)),
                    ),
                };
                changes.push(crate::ObjectChange {
                    id,
                    origin: None,
                    resource: kind.resource.clone(),
                    action,
                    reason,
                    error,
                    diff: None,
                    health: None,
                });
            }
        }
        changes
    }

    async fn delete(&self, api: &Api<DynamicObject>, name: &str) -> Result<(), kube::Error> {
        let params = DeleteParams::background();
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn pause(&self, cancel: &CancellationToken) -> Result<(), HookError> {
        tokio::select! {
            () = cancel.cancelled() => Err(HookError::Cancelled),
            () = tokio::time::sleep(self.interval) => Ok(()),
        }
    }

    /// Waits until every hook of `running` succeeded or one failed (or the timeout passed),
    /// recording each outcome.
    async fn wait(
        &self,
        running: &mut [Running<'_>],
        phase: SyncPhase,
        cancel: &CancellationToken,
    ) -> Result<(), HookError> {
        let start = Instant::now();
        loop {
            let mut pending = false;
            for hook in running.iter_mut() {
                if hook.run.outcome != HookOutcome::Running {
                    continue;
                }
                let live = tokio::select! {
                    () = cancel.cancelled() => return Err(HookError::Cancelled),
                    live = hook.api.get_opt(&hook.name) => live.map_err(Self::api_error(hook.hook, phase, "reading"))?,
                };
                let health = match live {
                    None => Health {
                        status: Status::Failed,
                        message: "deleted while it ran".into(),
                    },
                    Some(live) => {
                        let mut value = serde_json::to_value(&live).expect("objects serialise");
                        value["apiVersion"] =
                            Value::String(hook.hook.kind.resource.api_version.clone());
                        value["kind"] = Value::String(hook.hook.kind.resource.kind.clone());
                        hook_health(&self.checks, &value)
                    }
                };
                match health.status {
                    Status::Current => hook.run.outcome = HookOutcome::Succeeded,
                    Status::Failed => {
                        hook.run.outcome = HookOutcome::Failed;
                        hook.run.message = health.message;
                        // The first failure ends the wave: the others are left as they are.
                        left_running(running);
                        return Ok(());
                    }
                    Status::InProgress | Status::NotFound => {
                        pending = true;
                        hook.run.message = health.message;
                    }
                }
            }
            if !pending {
                for hook in running.iter_mut() {
                    hook.run.message.clear();
                }
                return Ok(());
            }
            if start.elapsed() >= self.timeout {
                for hook in running.iter_mut() {
                    if hook.run.outcome == HookOutcome::Running {
                        hook.run.outcome = HookOutcome::Failed;
                        hook.run.message =
                            format!("not done after {:?} ({})", self.timeout, hook.run.message);
                        break;
                    }
                }
                left_running(running);
                return Ok(());
            }
            self.pause(cancel).await?;
        }
    }
}

/// Marks the hooks of a wave still running when another failed: they are left as they are.
fn left_running(running: &mut [Running<'_>]) {
    for other in running {
        if other.run.outcome == HookOutcome::Running {
            other.run.message = "left running: another hook of its phase failed".into();
        }
    }
}

/// For a Secret hook, the API error with the values it may quote masked.
fn masked(hook: &PlannedHook, error: kube::Error) -> kube::Error {
    match error {
        kube::Error::Api(mut status) if hook.manifest.is_secret() => {
            status.message = gitops_core::secret::mask_quoted_values(&status.message);
            kube::Error::Api(status)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(annotations: serde_json::Value) -> Manifest {
        Manifest::new(
            json!({"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": "m", "namespace": "ns", "annotations": annotations}}),
            Origin::new("hooks.yaml").with_line(7),
        )
        .unwrap()
    }

    fn spec(annotations: serde_json::Value) -> Option<HookSpec> {
        hook_spec(&manifest(annotations)).unwrap()
    }

    fn err(annotations: serde_json::Value) -> HookError {
        hook_spec(&manifest(annotations)).unwrap_err()
    }

    fn phases(annotations: serde_json::Value) -> Vec<SyncPhase> {
        spec(annotations).expect("a hook").phases
    }

    use SyncPhase::{PostSync, PreSync, Sync, SyncFail};

    #[test]
    fn an_object_without_hook_annotations_is_not_a_hook() {
        assert_eq!(spec(json!({})), None);
        assert_eq!(
            spec(json!({ARGO_HOOK_DELETE_POLICY_ANNOTATION: "HookSucceeded"})),
            None
        );
    }

    #[test]
    fn argo_hook_types() {
        assert_eq!(phases(json!({ARGO_HOOK_ANNOTATION: "PreSync"})), [PreSync]);
        assert_eq!(phases(json!({ARGO_HOOK_ANNOTATION: "Sync"})), [Sync]);
        assert_eq!(
            phases(json!({ARGO_HOOK_ANNOTATION: "PostSync"})),
            [PostSync]
        );
        assert_eq!(
            phases(json!({ARGO_HOOK_ANNOTATION: "SyncFail"})),
            [SyncFail]
        );
        // Several, in run order, repeats once.
        assert_eq!(
            phases(json!({ARGO_HOOK_ANNOTATION: " PostSync, PreSync ,PostSync"})),
            [PreSync, PostSync]
        );
        // Skip alone: never applied; with a phase, the phase.
        let skip = spec(json!({ARGO_HOOK_ANNOTATION: "Skip"})).unwrap();
        assert!(skip.is_never_applied());
        assert_eq!(phases(json!({ARGO_HOOK_ANNOTATION: "Skip,Sync"})), [Sync]);
        // Deletion hooks are not run by a sync.
        assert!(
            spec(json!({ARGO_HOOK_ANNOTATION: "PostDelete"}))
                .unwrap()
                .is_never_applied()
        );
        assert_eq!(
            spec(json!({ARGO_HOOK_ANNOTATION: "PreSync"}))
                .unwrap()
                .source,
            HookSource::Argo
        );
    }

    #[test]
    fn helm_hooks_map_onto_phases() {
        for (events, expected) in [
            ("pre-install", vec![PreSync]),
            ("pre-upgrade", vec![PreSync]),
            ("post-install", vec![PostSync]),
            ("post-upgrade", vec![PostSync]),
            ("pre-install,pre-upgrade", vec![PreSync]),
            (" Post-Upgrade , pre-install ", vec![PreSync, PostSync]),
            ("pre-install,pre-delete", vec![PreSync]),
            ("pre-delete", vec![]),
            ("post-delete", vec![]),
            ("pre-rollback", vec![]),
            ("post-rollback", vec![]),
            ("test", vec![]),
            ("test-success", vec![]),
            ("test-failure", vec![]),
            // A test hook is never applied, whatever else it names.
            ("post-install,test", vec![]),
        ] {
            let spec = spec(json!({HELM_HOOK_ANNOTATION: events})).expect(events);
            assert_eq!(spec.phases, expected, "{events}");
            assert_eq!(spec.source, HookSource::Helm);
        }
    }

    #[test]
    fn argo_wins_over_helm() {
        let both = spec(json!({
            ARGO_HOOK_ANNOTATION: "PostSync",
            HELM_HOOK_ANNOTATION: "pre-install",
            ARGO_HOOK_DELETE_POLICY_ANNOTATION: "HookFailed",
            HELM_HOOK_DELETE_POLICY_ANNOTATION: "hook-succeeded",
            crate::ARGO_WAVE_ANNOTATION: "3",
            HELM_HOOK_WEIGHT_ANNOTATION: "9",
        }))
        .unwrap();
        assert_eq!(both.phases, [PostSync]);
        assert_eq!(both.delete_policies, [HookDeletePolicy::HookFailed]);
        assert_eq!(both.weight, 3);
        assert_eq!(both.source, HookSource::Argo);
        // Helm's policy and weight serve an Argo hook that names none.
        let mixed = spec(json!({
            ARGO_HOOK_ANNOTATION: "PreSync",
            HELM_HOOK_DELETE_POLICY_ANNOTATION: "hook-succeeded",
            HELM_HOOK_WEIGHT_ANNOTATION: "-2",
        }))
        .unwrap();
        assert_eq!(mixed.delete_policies, [HookDeletePolicy::HookSucceeded]);
        assert_eq!(mixed.weight, -2);
        // Our wave annotation first.
        let ours = spec(json!({
            ARGO_HOOK_ANNOTATION: "PreSync",
            crate::WAVE_ANNOTATION: "1",
            crate::ARGO_WAVE_ANNOTATION: "2",
        }))
        .unwrap();
        assert_eq!(ours.weight, 1);
    }

    #[test]
    fn delete_policies() {
        let policies = |a| spec(a).unwrap().delete_policies;
        assert_eq!(
            policies(json!({ARGO_HOOK_ANNOTATION: "PreSync"})),
            [HookDeletePolicy::BeforeHookCreation]
        );
        assert_eq!(
            policies(json!({HELM_HOOK_ANNOTATION: "pre-install"})),
            [HookDeletePolicy::BeforeHookCreation]
        );
        assert_eq!(
            policies(json!({ARGO_HOOK_ANNOTATION: "PreSync",
                ARGO_HOOK_DELETE_POLICY_ANNOTATION: "HookFailed, HookSucceeded"})),
            [
                HookDeletePolicy::HookSucceeded,
                HookDeletePolicy::HookFailed
            ]
        );
        assert_eq!(
            policies(json!({HELM_HOOK_ANNOTATION: "pre-install",
                HELM_HOOK_DELETE_POLICY_ANNOTATION: "before-hook-creation,Hook-Failed"})),
            [
                HookDeletePolicy::HookFailed,
                HookDeletePolicy::BeforeHookCreation
            ]
        );
        // An empty policy annotation: the default.
        assert_eq!(
            policies(json!({ARGO_HOOK_ANNOTATION: "PreSync",
                ARGO_HOOK_DELETE_POLICY_ANNOTATION: ""})),
            [HookDeletePolicy::BeforeHookCreation]
        );
    }

    #[test]
    fn bad_values_are_errors_naming_object_origin_and_annotation() {
        let e = err(json!({ARGO_HOOK_ANNOTATION: "PreSync,presync"}));
        assert!(matches!(
            &e,
            HookError::UnknownValue { annotation, value, .. }
                if *annotation == ARGO_HOOK_ANNOTATION && value == "presync"
        ));
        assert_eq!(
            e.to_string(),
            "hooks.yaml:7: Job.batch ns/m: annotation argocd.argoproj.io/hook has \"presync\", \
             which is not one of PreSync, Sync, PostSync, SyncFail, Skip, PreDelete, PostDelete \
             (exact case)"
        );
        assert!(matches!(
            err(json!({HELM_HOOK_ANNOTATION: "pre-instal"})),
            HookError::UnknownValue { annotation, .. } if annotation == HELM_HOOK_ANNOTATION
        ));
        assert!(matches!(
            err(json!({ARGO_HOOK_ANNOTATION: "PreSync",
                ARGO_HOOK_DELETE_POLICY_ANNOTATION: "hook-succeeded"})),
            HookError::UnknownValue { annotation, .. }
                if annotation == ARGO_HOOK_DELETE_POLICY_ANNOTATION
        ));
        assert!(matches!(
            err(json!({HELM_HOOK_ANNOTATION: "pre-install",
                HELM_HOOK_DELETE_POLICY_ANNOTATION: "always"})),
            HookError::UnknownValue { annotation, .. }
                if annotation == HELM_HOOK_DELETE_POLICY_ANNOTATION
        ));
        assert!(matches!(
            err(json!({ARGO_HOOK_ANNOTATION: " , "})),
            HookError::Empty { id, origin, annotation: ARGO_HOOK_ANNOTATION }
                if id == manifest(json!({})).id() && origin == Origin::new("hooks.yaml").with_line(7)
        ));
        assert!(matches!(
            err(json!({HELM_HOOK_ANNOTATION: ""})),
            HookError::Empty { .. }
        ));
        let e =
            err(json!({HELM_HOOK_ANNOTATION: "pre-install", HELM_HOOK_WEIGHT_ANNOTATION: "high"}));
        assert!(matches!(&e, HookError::InvalidWeight { annotation, .. }
            if *annotation == HELM_HOOK_WEIGHT_ANNOTATION));
        assert!(e.to_string().contains("is \"high\", not an integer"), "{e}");
    }

    #[test]
    fn values_are_escaped_in_errors() {
        let e = err(json!({ARGO_HOOK_ANNOTATION: "Pre\nERROR forged"}));
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(e.to_string().contains("Pre\\nERROR forged"), "{e}");
    }

    #[test]
    fn crd_install_is_an_ordinary_object_but_not_with_generate_name() {
        assert_eq!(spec(json!({HELM_HOOK_ANNOTATION: "crd-install"})), None);
        let generated = Manifest::new(
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {
                "generateName": "crd-", "annotations": {HELM_HOOK_ANNOTATION: "crd-install"}}}),
            Origin::new("crd.yaml"),
        )
        .unwrap();
        let e = hook_spec(&generated).unwrap_err();
        assert!(matches!(e, HookError::GenerateNameNotAHook { .. }));
        assert!(
            e.to_string()
                .contains("metadata.generateName is only allowed for hooks"),
            "{e}"
        );
    }

    #[test]
    fn hook_runs_print_escaped() {
        let run = HookRun::new(
            ObjectId::new("batch", "Job", Some("ns"), "m\u{1b}[2J"),
            Origin::new("a.yaml"),
            PreSync,
            HookOutcome::Failed,
        )
        .with_message("BackoffLimitExceeded\nforged");
        let text = run.to_string();
        assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
        assert!(
            text.starts_with("PreSync hook Job.batch ns/m\\u{1b}[2J failed: "),
            "{text}"
        );
    }

    fn kinds() -> KindTable {
        let mut table = KindTable::default();
        for (group, kind, plural, namespaced) in [
            ("", "ConfigMap", "configmaps", true),
            ("", "Pod", "pods", true),
            ("batch", "Job", "jobs", true),
            (
                "rbac.authorization.k8s.io",
                "ClusterRole",
                "clusterroles",
                false,
            ),
        ] {
            table.insert(KindInfo {
                resource: kube::discovery::ApiResource {
                    group: group.into(),
                    version: "v1".into(),
                    api_version: if group.is_empty() {
                        "v1".into()
                    } else {
                        format!("{group}/v1")
                    },
                    kind: kind.into(),
                    plural: plural.into(),
                },
                namespaced,
                served: true,
            });
        }
        table
    }

    fn parse(yaml: &str) -> Vec<Manifest> {
        gitops_core::parse_manifests(yaml, "set.yaml").unwrap()
    }

    const SET: &str = "\
apiVersion: batch/v1
kind: Job
metadata: {name: b, annotations: {argocd.argoproj.io/hook: PreSync}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: plain}
---
apiVersion: batch/v1
kind: Job
metadata: {generateName: a-, namespace: elsewhere, annotations: {argocd.argoproj.io/hook: \"PreSync,PostSync\"}}
---
apiVersion: v1
kind: Pod
metadata: {name: z, annotations: {argocd.argoproj.io/hook: PreSync}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: late, annotations: {argocd.argoproj.io/hook: PreSync, helm.sh/hook-weight: \"5\"}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: early, namespace: x, annotations: {argocd.argoproj.io/hook: PreSync, argocd.argoproj.io/sync-wave: \"-1\"}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: skipped, annotations: {argocd.argoproj.io/hook: Skip}}
---
apiVersion: v1
kind: Pod
metadata: {name: smoke, annotations: {helm.sh/hook: test}}
";

    #[test]
    fn plan_hooks_orders_by_weight_kind_and_name_and_leaves_out_skipped_hooks() {
        let (resources, hooks) =
            plan_hooks(parse(SET), &kinds(), &crate::DefaultStaging, None).unwrap();
        let names: Vec<String> = resources.iter().map(|m| m.id().to_string()).collect();
        assert_eq!(names, ["_plain__ConfigMap"]);
        let presync: Vec<String> = hooks
            .in_phase(PreSync)
            .map(|h| h.id.display_name())
            .collect();
        assert_eq!(
            presync,
            [
                "ClusterRole.rbac.authorization.k8s.io early",
                "Pod default/z",
                "Job.batch default/b",
                "Job.batch elsewhere/a-",
                "ConfigMap default/late",
            ]
        );
        assert_eq!(hooks.in_phase(PostSync).count(), 1);
        assert!(!hooks.has_phase(SyncFail));
        assert_eq!(hooks.len(), 5);
        let planned = hooks.planned_runs();
        assert_eq!(planned.len(), 6);
        assert!(planned.iter().all(|r| r.outcome == HookOutcome::Planned));
        assert_eq!(planned[5].phase, PostSync);
    }

    #[test]
    fn plan_hooks_sets_namespaces_as_for_resources() {
        let (_, hooks) =
            plan_hooks(parse(SET), &kinds(), &crate::DefaultStaging, Some("team")).unwrap();
        for hook in hooks.all() {
            let expected = (hook.id.kind != "ClusterRole").then_some("team");
            assert_eq!(hook.id.namespace.as_deref(), expected, "{}", hook.id);
            assert_eq!(hook.manifest.namespace(), expected);
        }
    }

    #[test]
    fn plan_hooks_reports_every_problem() {
        let yaml = "\
apiVersion: example.com/v1
kind: Widget
metadata: {name: w, annotations: {argocd.argoproj.io/hook: PreSync}}
---
apiVersion: batch/v1
kind: Job
metadata: {generateName: m-, annotations: {argocd.argoproj.io/hook: PreSync}}
---
apiVersion: batch/v1
kind: Job
metadata: {generateName: m-, annotations: {argocd.argoproj.io/hook: PostSync}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: bad, annotations: {argocd.argoproj.io/hook: Later}}
";
        let errors = plan_hooks(parse(yaml), &kinds(), &crate::DefaultStaging, None).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(matches!(errors[0], HookError::UnknownKind { .. }));
        assert!(matches!(errors[1], HookError::Duplicate { .. }));
        assert!(
            errors[1]
                .to_string()
                .contains("is also defined at set.yaml:5"),
            "{}",
            errors[1]
        );
        assert!(matches!(errors[2], HookError::UnknownValue { .. }));
    }

    #[test]
    fn planned_hooks_print_by_phase_and_serialise_without_objects() {
        let yaml = "\
apiVersion: v1
kind: Secret
metadata: {name: token, annotations: {argocd.argoproj.io/hook: PreSync, argocd.argoproj.io/hook-delete-policy: HookSucceeded}}
stringData: {token: hunter2}
---
apiVersion: batch/v1
kind: Job
metadata: {generateName: m-, annotations: {argocd.argoproj.io/hook: SyncFail, helm.sh/hook-weight: \"2\"}}
";
        let mut table = kinds();
        table.insert(KindInfo {
            resource: kube::discovery::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
            namespaced: true,
            served: true,
        });
        let (_, hooks) = plan_hooks(parse(yaml), &table, &crate::DefaultStaging, None).unwrap();
        assert_eq!(
            hooks.to_string(),
            "PreSync hooks:\n  Secret default/token, deleted HookSucceeded\n\
             SyncFail hooks:\n  Job.batch default/m-* (weight 2), deleted BeforeHookCreation\n"
        );
        let json = serde_json::to_value(&hooks).unwrap();
        assert!(!json.to_string().contains("hunter2"), "{json}");
        assert_eq!(json[1]["id"], "default_m-_batch_Job");
        assert_eq!(json[1]["phases"], json!(["SyncFail"]));
        assert_eq!(json[1]["delete_policies"], json!(["BeforeHookCreation"]));
        assert_eq!(json[1]["weight"], 2);
        assert_eq!(json[1]["generate_name"], true);
    }

    #[test]
    fn hook_labels_name_the_phase_and_the_inventory_never_the_owner_labels() {
        let owner = crate::InventoryOwner::new("shop", "apps").unwrap().labels();
        let labels = hook_labels(&owner, PostSync);
        assert_eq!(labels[HOOK_PHASE_LABEL], "PostSync");
        assert_eq!(labels[HOOK_OF_NAMESPACE_LABEL], "shop");
        assert_eq!(labels[HOOK_OF_NAME_LABEL], "apps");
        assert!(owner.keys().all(|k| !labels.contains_key(k)));
    }

    #[test]
    fn a_pod_hook_is_done_when_it_succeeded_not_when_ready() {
        let checks = HealthChecks::default();
        let pod = |status: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": status});
        let ready =
            pod(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}));
        assert_eq!(checks.check(&ready).status, Status::Current);
        assert_eq!(hook_health(&checks, &ready).status, Status::InProgress);
        assert_eq!(
            hook_health(&checks, &pod(json!({"phase": "Succeeded"}))).status,
            Status::Current
        );
        let failed = hook_health(&checks, &pod(json!({"phase": "Failed", "message": "oom"})));
        assert_eq!(
            (failed.status, failed.message.as_str()),
            (Status::Failed, "oom")
        );
    }

    #[test]
    fn api_errors_about_a_secret_hook_do_not_quote_its_values() {
        let yaml = "\
apiVersion: v1
kind: Secret
metadata: {name: token, annotations: {argocd.argoproj.io/hook: PreSync}}
stringData: {token: hunter2}
";
        let mut table = kinds();
        table.insert(KindInfo {
            resource: kube::discovery::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(
                &(),
            ),
            namespaced: true,
            served: true,
        });
        let (_, hooks) = plan_hooks(parse(yaml), &table, &crate::DefaultStaging, None).unwrap();
        let status = kube::core::Status::failure(
            r#"Secret "token" is invalid: data[token]: Invalid value: "hunter2": bad"#,
            "Invalid",
        )
        .with_code(422);
        let error = HookRunner::api_error(&hooks.all()[0], PreSync, "creating")(kube::Error::Api(
            Box::new(status),
        ));
        let text = format!("{error}: {}", std::error::Error::source(&error).unwrap());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("PreSync hook Secret default/token: creating it"),
            "{text}"
        );
    }

    #[test]
    fn a_named_hook_may_not_be_a_resource_of_the_set_too() {
        let yaml = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: seed, namespace: team}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: seed, annotations: {argocd.argoproj.io/hook: PreSync}}
";
        let errors =
            plan_hooks(parse(yaml), &kinds(), &crate::DefaultStaging, Some("team")).unwrap_err();
        assert!(
            matches!(&errors[..], [HookError::AlsoAResource { .. }]),
            "{errors:?}"
        );
        assert_eq!(
            errors[0].to_string(),
            "set.yaml:5 (document 2): hook ConfigMap team/seed is the same object as the \
             resource defined at set.yaml:1: rename one of them"
        );
        // In another namespace, it is another object.
        assert!(plan_hooks(parse(yaml), &kinds(), &crate::DefaultStaging, None).is_ok());
    }
}
