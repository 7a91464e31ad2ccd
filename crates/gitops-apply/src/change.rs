//! What a run did: per object an [`ObjectAction`] and a typed [`Reason`], gathered in a
//! [`ChangeSet`].

use std::fmt;

use gitops_core::ObjectId;
use gitops_core::Origin;
use gitops_core::escape::Escaped;
use gitops_diff::ObjectDiff;
use kube::discovery::ApiResource;
use serde::Serialize;

use crate::counting::RequestCounts;
use crate::error::ObjectError;
use crate::health::{Health, WaitTarget};

/// What happened (or, in a dry run, would happen) to one object. Shown in lower case words.
///
/// ```
/// assert_eq!(gitops_apply::ObjectAction::Configured.to_string(), "configured");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ObjectAction {
    /// It did not exist and was created.
    Created,
    /// It existed and was changed.
    Configured,
    /// An immutable field changed: it was deleted and created again.
    Recreated,
    /// It matched: nothing was written.
    Unchanged,
    /// It left the set and was deleted.
    Pruned,
    /// A policy or an earlier failure kept it from being written or deleted.
    Skipped,
    /// Writing or deleting it failed.
    Failed,
}

impl fmt::Display for ObjectAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::Configured => "configured",
            Self::Recreated => "recreated",
            Self::Unchanged => "unchanged",
            Self::Pruned => "pruned",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        })
    }
}

/// What a [`Plan`](crate::Plan) will do to one object. Shown in lower case words; the plan's
/// symbol is [`PlannedAction::symbol`].
///
/// ```
/// use gitops_apply::PlannedAction;
/// assert_eq!(PlannedAction::Recreate.to_string(), "recreate");
/// assert_eq!(PlannedAction::Recreate.symbol(), "-/+");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PlannedAction {
    /// Create it: it does not exist.
    Create,
    /// Update it in place.
    Update,
    /// Delete it and create it again (an immutable field changes).
    Recreate,
    /// Delete it: it left the set.
    Prune,
    /// Nothing to write: it is in sync.
    Unchanged,
    /// Leave it alone (a policy, or another inventory owns it).
    Skip,
    /// It cannot be written: the server-side dry run rejected it.
    Invalid,
}

impl PlannedAction {
    /// The symbol of the plan's text form: `+` create, `~` update, `-/+` recreate, `-` prune,
    /// `=` unchanged, `#` skip, `!` invalid.
    ///
    /// ```
    /// assert_eq!(gitops_apply::PlannedAction::Prune.symbol(), "-");
    /// ```
    #[must_use]
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Create => "+",
            Self::Update => "~",
            Self::Recreate => "-/+",
            Self::Prune => "-",
            Self::Unchanged => "=",
            Self::Skip => "#",
            Self::Invalid => "!",
        }
    }

    /// Whether the action writes or deletes.
    ///
    /// ```
    /// assert!(gitops_apply::PlannedAction::Create.is_change());
    /// assert!(!gitops_apply::PlannedAction::Skip.is_change());
    /// ```
    #[must_use]
    pub fn is_change(self) -> bool {
        matches!(
            self,
            Self::Create | Self::Update | Self::Recreate | Self::Prune
        )
    }
}

impl fmt::Display for PlannedAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Recreate => "recreate",
            Self::Prune => "prune",
            Self::Unchanged => "unchanged",
            Self::Skip => "skip",
            Self::Invalid => "invalid",
        })
    }
}

/// Why an object is (or was) created, updated, recreated, left alone, pruned or failed.
/// `Display` gives a short sentence; JSON (`Serialize`) gives `{"reason": "<Variant>"}` plus
/// the variant's fields (`managers` for [`Reason::TakingOver`]).
///
/// ```
/// use gitops_apply::Reason;
/// assert_eq!(Reason::NotFound.to_string(), "not found");
/// let taking = Reason::TakingOver { managers: vec!["kubectl-edit".into()] };
/// assert_eq!(taking.to_string(), "taking over the fields of \"kubectl-edit\"");
/// assert_eq!(
///     serde_json::to_value(&taking).unwrap(),
///     serde_json::json!({"reason": "TakingOver", "managers": ["kubectl-edit"]})
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "reason")]
#[non_exhaustive]
pub enum Reason {
    /// The object does not exist: it is created.
    NotFound,
    /// A field the set sets differs from the live object.
    Drifted,
    /// The live object matches, but our field manager does not manage it yet: it is written
    /// once to take ownership.
    NotManagedYet,
    /// The fields of these field managers ([`ApplyOptions::takeover`](crate::ApplyOptions::takeover))
    /// are taken over before the write.
    TakingOver {
        /// The field managers.
        managers: Vec<String>,
    },
    /// An immutable field changes: the object is deleted and created again.
    ImmutableChanged,
    /// The live object matches the set.
    InSync,
    /// `apply.gitops.rs/reconcile: disabled` (or Flux's equivalent): never written.
    ReconcileDisabled,
    /// `apply.gitops.rs/ssa: IfNotPresent` and the object exists.
    CreateOnlyExists,
    /// The live object's ownership labels name another inventory (see
    /// [`ObjectError::OwnedByOtherInventory`]).
    OwnedByOtherInventory,
    /// The previous inventory lists it and the set no longer has it.
    LeftTheSet,
    /// It left the set and was already gone.
    AlreadyGone,
    /// It left the set and its kind is no longer served (its CRD went): so are its objects.
    KindNoLongerServed,
    /// It left the set but no longer carries our ownership labels: not pruned.
    NoOwnershipLabels,
    /// It left the set but its annotations disable pruning.
    PruneDisabled,
    /// It left the set and carries `argocd.argoproj.io/compare-options: IgnoreExtraneous`:
    /// pruned as usual, but not counted as drift.
    IgnoredExtraneous,
    /// The run was cancelled before this object.
    Cancelled,
    /// An earlier group failed: the later groups are not written.
    EarlierGroupFailed,
    /// Other objects failed validation: nothing is written.
    OthersFailedValidation,
    /// The server-side dry run (strict validation) rejected it.
    ValidationFailed,
    /// The write failed.
    WriteFailed,
    /// Taking over the fields of other managers failed.
    TakeoverFailed,
    /// Reading it (before a prune) failed.
    ReadFailed,
    /// Deleting it failed.
    DeleteFailed,
    /// It was written but did not settle in time (a CRD not Established, a Namespace not
    /// Active).
    DidNotSettle,
    /// The object was planned but not written (an earlier step stopped the run).
    NotWritten,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::TakingOver { managers } => {
                let names: Vec<String> = managers
                    .iter()
                    .map(|m| format!("\"{}\"", Escaped(m)))
                    .collect();
                return write!(f, "taking over the fields of {}", names.join(", "));
            }
            Self::NotFound => "not found",
            Self::Drifted => "drifted",
            Self::NotManagedYet => "in sync but not managed by us yet",
            Self::ImmutableChanged => "an immutable field changed",
            Self::InSync => "in sync",
            Self::ReconcileDisabled => "reconcile disabled by annotation",
            Self::CreateOnlyExists => "exists; created only when absent",
            Self::OwnedByOtherInventory => "owned by another inventory",
            Self::LeftTheSet => "left the set",
            Self::AlreadyGone => "already gone",
            Self::KindNoLongerServed => "its kind is no longer served",
            Self::NoOwnershipLabels => "it no longer carries our ownership labels",
            Self::PruneDisabled => "pruning disabled by annotation",
            Self::IgnoredExtraneous => {
                "left the set; extraneous objects ignored (IgnoreExtraneous)"
            }
            Self::Cancelled => "cancelled",
            Self::EarlierGroupFailed => "an earlier group failed",
            Self::OthersFailedValidation => "other objects failed validation",
            Self::ValidationFailed => "failed validation",
            Self::WriteFailed => "write failed",
            Self::TakeoverFailed => "taking over fields of other managers failed",
            Self::ReadFailed => "reading it failed",
            Self::DeleteFailed => "delete failed",
            Self::DidNotSettle => "did not settle",
            Self::NotWritten => "not written",
        };
        f.write_str(text)
    }
}

/// One entry of a [`ChangeSet`].
#[derive(Debug)]
pub struct ObjectChange {
    /// The object.
    pub id: ObjectId,
    /// Where its manifest came from (`None` for pruned objects).
    pub origin: Option<Origin>,
    /// How the cluster serves it.
    pub resource: ApiResource,
    /// What happened.
    pub action: ObjectAction,
    /// Why.
    pub reason: Reason,
    /// The error of a failed object, or why an object was skipped when that is an error of
    /// its own ([`ObjectError::OwnedByOtherInventory`]).
    pub error: Option<ObjectError>,
    /// In a dry run, the diff against the live object.
    pub diff: Option<ObjectDiff>,
    /// For an object left [`ObjectAction::Unchanged`]: its health, judged from the live object this
    /// run already listed (no extra request), so that a steady-state run still notices a
    /// workload that became unhealthy without a change. `None` for every other action.
    pub health: Option<Health>,
}

impl fmt::Display for ObjectChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.id.display_name(),
            self.action,
            self.reason
        )?;
        if let Some(error) = &self.error {
            // One line: the error escapes the server's messages itself, its sources (a
            // request's error) are escaped here.
            write!(f, ": {error}")?;
            let mut source = std::error::Error::source(error);
            while let Some(s) = source {
                write!(f, ": {}", Escaped(&s.to_string()))?;
                source = s.source();
            }
        }
        Ok(())
    }
}

/// The result of a run: one entry per object, in apply order, then the pruned objects.
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// The entries.
    pub changes: Vec<ObjectChange>,
    /// API requests sent by the run (discovery, reads, dry runs, writes, inventory).
    pub requests: u64,
    /// The same requests, by what they do (lists, other reads, dry runs, writes).
    pub request_counts: RequestCounts,
    /// Whether nothing was written (dry-run mode).
    pub dry_run: bool,
    /// The hook objects of the run, by phase in run order ([`crate::HookRun`]); in a dry run,
    /// the hooks that would run ([`crate::HookOutcome::Planned`]). Hooks are never entries
    /// of [`ChangeSet::changes`] nor of the inventory.
    pub hooks: Vec<crate::HookRun>,
}

impl ChangeSet {
    /// How many entries have this action.
    #[must_use]
    pub fn count(&self, action: ObjectAction) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// The entry of an object.
    #[must_use]
    pub fn get(&self, id: &ObjectId) -> Option<&ObjectChange> {
        self.changes.iter().find(|c| &c.id == id)
    }

    /// The failed entries.
    pub fn failed(&self) -> impl Iterator<Item = &ObjectChange> {
        self.changes
            .iter()
            .filter(|c| c.action == ObjectAction::Failed)
    }

    /// The objects to wait for after this run: every object of the set that exists.
    #[must_use]
    pub fn wait_targets(&self) -> Vec<WaitTarget> {
        self.changes
            .iter()
            .filter(|c| {
                matches!(
                    c.action,
                    ObjectAction::Created
                        | ObjectAction::Configured
                        | ObjectAction::Recreated
                        | ObjectAction::Unchanged
                )
            })
            .map(|c| WaitTarget {
                id: c.id.clone(),
                resource: c.resource.clone(),
            })
            .collect()
    }
}

impl fmt::Display for ChangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        for hook in &self.hooks {
            writeln!(f, "{hook}")?;
        }
        write!(f, "{} API request(s)", self.requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_as_its_own_words() {
        let reasons = [
            (Reason::NotFound, "not found"),
            (Reason::Drifted, "drifted"),
            (Reason::NotManagedYet, "in sync but not managed by us yet"),
            (
                Reason::TakingOver {
                    managers: vec!["kubectl-edit".into(), "evil\u{1b}[31m".into()],
                },
                "taking over the fields of \"kubectl-edit\", \"evil\\u{1b}[31m\"",
            ),
            (Reason::ImmutableChanged, "an immutable field changed"),
            (Reason::InSync, "in sync"),
            (
                Reason::ReconcileDisabled,
                "reconcile disabled by annotation",
            ),
            (Reason::CreateOnlyExists, "exists; created only when absent"),
            (Reason::OwnedByOtherInventory, "owned by another inventory"),
            (Reason::LeftTheSet, "left the set"),
            (Reason::AlreadyGone, "already gone"),
            (Reason::KindNoLongerServed, "its kind is no longer served"),
            (
                Reason::NoOwnershipLabels,
                "it no longer carries our ownership labels",
            ),
            (Reason::PruneDisabled, "pruning disabled by annotation"),
            (
                Reason::IgnoredExtraneous,
                "left the set; extraneous objects ignored (IgnoreExtraneous)",
            ),
            (Reason::Cancelled, "cancelled"),
            (Reason::EarlierGroupFailed, "an earlier group failed"),
            (
                Reason::OthersFailedValidation,
                "other objects failed validation",
            ),
            (Reason::ValidationFailed, "failed validation"),
            (Reason::WriteFailed, "write failed"),
            (
                Reason::TakeoverFailed,
                "taking over fields of other managers failed",
            ),
            (Reason::ReadFailed, "reading it failed"),
            (Reason::DeleteFailed, "delete failed"),
            (Reason::DidNotSettle, "did not settle"),
            (Reason::NotWritten, "not written"),
        ];
        for (reason, text) in &reasons {
            assert_eq!(reason.to_string(), *text, "{reason:?}");
            // JSON names the variant.
            let json = serde_json::to_value(reason).unwrap();
            let name = format!("{reason:?}");
            assert!(name.starts_with(json["reason"].as_str().unwrap()), "{json}");
        }
        let texts: std::collections::HashSet<String> =
            reasons.iter().map(|(r, _)| r.to_string()).collect();
        assert_eq!(texts.len(), reasons.len(), "two reasons read the same");
    }

    #[test]
    fn actions_read_in_lower_case_and_serialise_so() {
        assert_eq!(ObjectAction::Pruned.to_string(), "pruned");
        assert_eq!(
            serde_json::to_value(ObjectAction::Created).unwrap(),
            serde_json::json!("created")
        );
        assert_eq!(PlannedAction::Invalid.to_string(), "invalid");
        assert_eq!(PlannedAction::Invalid.symbol(), "!");
        assert_eq!(
            serde_json::to_value(PlannedAction::Recreate).unwrap(),
            serde_json::json!("recreate")
        );
    }
}
