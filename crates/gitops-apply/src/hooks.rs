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
//! writes the resources, and the `Sync` hooks with them; once the resources are healthy the
//! `PostSync` hooks run. When any step fails, the `SyncFail` hooks run and the sync fails.

use std::fmt;

use gitops_core::escape::Escaped;
use gitops_core::{Manifest, ObjectId, Origin};
use serde::Serialize;

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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
}

impl fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Planned => "planned",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::NotRun => "not run",
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
/// hook (see the [module](self) for the annotations and the Helm mapping). A hook whose
/// [`HookSpec::is_never_applied`] is true (Argo CD's `Skip`, Helm's test, delete and rollback
/// hooks) must be left out of the set: neither applied nor run.
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
    let argo = manifest.annotation(ARGO_HOOK_ANNOTATION);
    let helm = manifest.annotation(HELM_HOOK_ANNOTATION);
    let unknown = |annotation, value: &str, expected| HookError::UnknownValue {
        id: manifest.id(),
        origin: manifest.origin().clone(),
        annotation,
        value: value.to_owned(),
        expected,
    };
    let empty = |annotation| HookError::Empty {
        id: manifest.id(),
        origin: manifest.origin().clone(),
        annotation,
    };
    let (source, phases) = if let Some(value) = argo {
        let mut phases = Vec::new();
        let mut any = false;
        for item in items(value) {
            any = true;
            match item {
                "Skip" | "PreDelete" | "PostDelete" => {}
                other => phases.push(
                    other
                        .parse::<SyncPhase>()
                        .map_err(|()| unknown(ARGO_HOOK_ANNOTATION, other, ARGO_HOOKS))?,
                ),
            }
        }
        if !any {
            return Err(empty(ARGO_HOOK_ANNOTATION));
        }
        (HookSource::Argo, phases)
    } else if let Some(value) = helm {
        let events: Vec<String> = items(value).map(str::to_ascii_lowercase).collect();
        if events.is_empty() {
            return Err(empty(HELM_HOOK_ANNOTATION));
        }
        // Helm 2's `crd-install` is not a hook: Argo CD applies such an object as a resource.
        if events.iter().all(|e| e == "crd-install") {
            return match manifest.generate_name() {
                Some(_) => Err(HookError::GenerateNameNotAHook {
                    id: manifest.id(),
                    origin: manifest.origin().clone(),
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
                None => return Err(unknown(HELM_HOOK_ANNOTATION, event, HELM_HOOKS)),
            }
        }
        // A test hook is run by `helm test` only, whatever else it names.
        if test {
            phases.clear();
        }
        (HookSource::Helm, phases)
    } else {
        return Ok(None);
    };

    let policies = if let Some(value) = manifest.annotation(ARGO_HOOK_DELETE_POLICY_ANNOTATION) {
        items(value)
            .map(|item| match item {
                "HookSucceeded" => Ok(HookDeletePolicy::HookSucceeded),
                "HookFailed" => Ok(HookDeletePolicy::HookFailed),
                "BeforeHookCreation" => Ok(HookDeletePolicy::BeforeHookCreation),
                other => Err(unknown(
                    ARGO_HOOK_DELETE_POLICY_ANNOTATION,
                    other,
                    ARGO_POLICIES,
                )),
            })
            .collect::<Result<Vec<_>, _>>()?
    } else if let Some(value) = manifest.annotation(HELM_HOOK_DELETE_POLICY_ANNOTATION) {
        items(value)
            .map(|item| match item.to_ascii_lowercase().as_str() {
                "hook-succeeded" => Ok(HookDeletePolicy::HookSucceeded),
                "hook-failed" => Ok(HookDeletePolicy::HookFailed),
                "before-hook-creation" => Ok(HookDeletePolicy::BeforeHookCreation),
                _ => Err(unknown(
                    HELM_HOOK_DELETE_POLICY_ANNOTATION,
                    item,
                    HELM_POLICIES,
                )),
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };

    let mut weight = 0;
    for annotation in [
        crate::WAVE_ANNOTATION,
        crate::ARGO_WAVE_ANNOTATION,
        HELM_HOOK_WEIGHT_ANNOTATION,
    ] {
        if let Some(value) = manifest.annotation(annotation) {
            weight = value.trim().parse().map_err(|_| HookError::InvalidWeight {
                id: manifest.id(),
                origin: manifest.origin().clone(),
                annotation,
                value: value.to_owned(),
            })?;
            break;
        }
    }

    let mut spec = HookSpec::new(phases)
        .with_delete_policies(policies)
        .with_weight(weight);
    spec.source = source;
    Ok(Some(spec))
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
        assert_eq!(
            err(json!({ARGO_HOOK_ANNOTATION: " , "})),
            HookError::Empty {
                id: manifest(json!({})).id(),
                origin: Origin::new("hooks.yaml").with_line(7),
                annotation: ARGO_HOOK_ANNOTATION
            }
        );
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
}
