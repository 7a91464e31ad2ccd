//! The `plan` verb: a desired set and the live state make a reviewed [`Plan`] (per object the
//! action, a typed reason and the diff; the stale objects; the hooks), with nothing written.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use futures::StreamExt;
use gitops_core::escape::Escaped;
use gitops_core::{ObjectId, Origin};
use gitops_diff::{ChangeKind, Differ, ObjectDiff};
use kube::discovery::ApiResource;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::apply::{
    AfterError, Applier, Decision, NO_MANAGERS, Run, needs_write, other_owner, prunable,
    resolve_inventory_kind,
};
use crate::change::{ChangeSet, ObjectAction, ObjectChange, PlannedAction, Reason};
use crate::counting::{RequestCounter, counting_client};
use crate::error::{ApplyError, ObjectError};
use crate::health::HealthChecks;
use crate::hooks::{PlannedHooks, plan_hooks};
use crate::inventory::Inventory;
use crate::live::Live;
use crate::options::{ApplyOptions, ApplyProgress};
use crate::plan::{
    ApplyOrder, KindInfo, KindTable, OrderOptions, PlannedObject, ignores_extraneous, order,
};
use crate::set::DesiredSet;
use crate::takeover::managers_taken_over;

/// A reviewed plan: what [`Applier::apply`] will do, object by object, made by
/// [`Applier::plan`] from a desired set and the live state, with nothing written.
///
/// It prints like `terraform plan` (`{}`; `{:#}` also lists the unchanged objects): one line per
/// object with a symbol (`+` create, `~` update, `-/+` recreate, `-` prune, `=` unchanged, `#`
/// left alone, `!` invalid), the object and the reason, the changed fields indented under it
/// (a Secret's values masked), then the hooks by phase and a summary line:
///
/// ```text
///   + ConfigMap shop/new (not found)
///   ~ Deployment.apps shop/web (drifted)
///       ~ spec.replicas: 2 -> 3
///   - ConfigMap shop/old (left the set)
/// Plan: 1 to create, 1 to update, 0 to recreate, 1 to prune, 4 unchanged.
/// ```
///
/// As JSON (`Serialize`), for tools, a stable shape:
/// `{"objects": [entry...], "stale": [entry...], "hooks": [...], "summary": {"create", "update",
/// "recreate", "prune", "unchanged", "skip", "invalid"}, "in_sync": bool}`, each entry
/// `{"id": "<inventory form>", "name": "<display name>", "action": "create|update|recreate|prune|unchanged|skip|invalid",
/// "reason": "<Reason variant>", ...the reason's fields, "wave": n, "error": "text" (when
/// invalid), "changes": [{"path", "pointer", "kind", "before", "after"}] (masked for Secrets)}`.
///
/// ```no_run
/// use gitops_apply::{Applier, ApplyOptions, ConfigMapInventory, DesiredSet};
/// use tokio_util::sync::CancellationToken;
/// # async fn example(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let applier = Applier::builder(client, ConfigMapInventory::new("flux-system", "apps")?).build();
/// let set = DesiredSet::from_render(gitops_core::parse_manifests(
///     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: apps}\n", "a.yaml"))?;
/// let cancel = CancellationToken::new();
/// let plan = applier.plan(&set, &ApplyOptions::default(), &cancel).await?;
/// println!("{plan}");
/// let json = serde_json::to_string(&plan)?;
/// // Executes exactly what was shown, or refuses if the cluster moved since.
/// let changes = applier.apply(plan, &cancel, |_| {}).await?;
/// # Ok(())
/// # }
/// ```
pub struct Plan {
    pub(crate) ordered: ApplyOrder,
    pub(crate) kinds: KindTable,
    pub(crate) previous: Option<Inventory>,
    pub(crate) options: ApplyOptions,
    pub(crate) prune: bool,
    pub(crate) may_prune: bool,
    pub(crate) differ: Differ,
    /// Per object of `ordered`: the object as desired (ownership labels added).
    pub(crate) desired: Vec<Value>,
    /// Per object: the object to send, when ignore rules make it differ from `desired`.
    pub(crate) applied: Vec<Option<Value>>,
    pub(crate) decisions: Vec<Decision>,
    pub(crate) taken_over: Vec<BTreeSet<String>>,
    pub(crate) diffs: Vec<Option<ObjectDiff>>,
    pub(crate) live: HashMap<ObjectId, Value>,
    pub(crate) namespaces_made_here: HashSet<String>,
    pub(crate) stale: Vec<StaleObject>,
    pub(crate) hooks: PlannedHooks,
    pub(crate) counter: RequestCounter,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("objects", &self.ordered.objects().len())
            .field("stale", &self.stale.len())
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}

/// An object the previous inventory lists and the set no longer has: what pruning it means.
///
/// ```no_run
/// # fn example(plan: &gitops_apply::Plan) {
/// for stale in plan.stale() {
///     println!("{} {}: {}", stale.action, stale.id.display_name(), stale.reason);
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StaleObject {
    /// The object.
    pub id: ObjectId,
    /// The apiVersion the inventory recorded.
    pub api_version: String,
    /// How the cluster serves it (`None`: its kind is no longer served).
    pub kind: Option<KindInfo>,
    /// What the plan does: [`PlannedAction::Prune`], [`PlannedAction::Skip`] (no ownership
    /// labels, pruning disabled) or [`PlannedAction::Unchanged`] (already gone).
    pub action: PlannedAction,
    /// Why.
    pub reason: Reason,
}

impl StaleObject {
    /// The resource the object is served as (its recorded apiVersion when the kind is gone).
    ///
    /// ```
    /// # fn example(stale: &gitops_apply::StaleObject) {
    /// println!("{}", stale.resource().plural);
    /// # }
    /// ```
    #[must_use]
    pub fn resource(&self) -> ApiResource {
        if let Some(kind) = &self.kind {
            return kind.resource.clone();
        }
        let (group, version) = gitops_core::split_api_version(&self.api_version);
        ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: self.api_version.clone(),
            kind: self.id.kind.clone(),
            plural: String::new(),
        }
    }
}

/// One object of a plan, as [`Plan::entries`] shows it.
///
/// ```no_run
/// # fn example(plan: &gitops_apply::Plan) {
/// let invalid = plan
///     .entries()
///     .into_iter()
///     .filter(|e| e.action == gitops_apply::PlannedAction::Invalid)
///     .count();
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct PlanEntry<'p> {
    /// The object.
    pub id: &'p ObjectId,
    /// Where its manifest came from (`None` for stale objects).
    pub origin: Option<&'p Origin>,
    /// What the plan does.
    pub action: PlannedAction,
    /// Why.
    pub reason: Reason,
    /// Why an invalid object cannot be written, or why one is left alone when that is an error
    /// of its own (another inventory owns it).
    pub error: Option<&'p ObjectError>,
    /// The structured diff against the live object (objects to create, update or recreate;
    /// every object in a dry run).
    pub diff: Option<&'p ObjectDiff>,
    /// Its wave.
    pub wave: i64,
}

impl Decision {
    pub(crate) fn planned(&self) -> (PlannedAction, Reason) {
        match self {
            Self::Skip(reason) => (PlannedAction::Skip, reason.clone()),
            Self::OwnedElsewhere(_) => (PlannedAction::Skip, Reason::OwnedByOtherInventory),
            Self::Unchanged => (PlannedAction::Unchanged, Reason::InSync),
            Self::Write {
                exists,
                recreate,
                reason,
                ..
            } => (
                if *recreate {
                    PlannedAction::Recreate
                } else if *exists {
                    PlannedAction::Update
                } else {
                    PlannedAction::Create
                },
                reason.clone(),
            ),
            Self::Failed(_) => (PlannedAction::Invalid, Reason::ValidationFailed),
        }
    }

    /// What an object comes to when its decision stands: a write is what `write` makes of
    /// it (`exists`, `recreate`, the reason).
    pub(crate) fn into_outcome(self, write: impl FnOnce(bool, bool, Reason) -> Outcome) -> Outcome {
        match self {
            Self::Skip(reason) => (ObjectAction::Skipped, reason, None),
            Self::OwnedElsewhere(error) => (
                ObjectAction::Skipped,
                Reason::OwnedByOtherInventory,
                Some(error),
            ),
            Self::Unchanged => (ObjectAction::Unchanged, Reason::InSync, None),
            Self::Failed(error) => (ObjectAction::Failed, Reason::ValidationFailed, Some(error)),
            Self::Write {
                exists,
                recreate,
                reason,
                ..
            } => write(exists, recreate, reason),
        }
    }

    fn error(&self) -> Option<&ObjectError> {
        match self {
            Self::OwnedElsewhere(error) | Self::Failed(error) => Some(error),
            _ => None,
        }
    }
}

/// How many objects a plan creates, updates, ... (its summary line).
///
/// ```
/// let summary = gitops_apply::PlanSummary::default();
/// assert_eq!(
///     summary.to_string(),
///     "Plan: 0 to create, 0 to update, 0 to recreate, 0 to prune, 0 unchanged."
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PlanSummary {
    /// Objects to create.
    pub create: usize,
    /// Objects to update in place.
    pub update: usize,
    /// Objects to delete and create again.
    pub recreate: usize,
    /// Objects to prune.
    pub prune: usize,
    /// Objects in sync.
    pub unchanged: usize,
    /// Objects left alone.
    pub skip: usize,
    /// Objects the server-side dry run rejected.
    pub invalid: usize,
}

impl fmt::Display for PlanSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Plan: {} to create, {} to update, {} to recreate, {} to prune, {} unchanged.",
            self.create, self.update, self.recreate, self.prune, self.unchanged
        )?;
        if self.skip > 0 {
            write!(f, " {} left alone.", self.skip)?;
        }
        if self.invalid > 0 {
            write!(f, " {} invalid.", self.invalid)?;
        }
        Ok(())
    }
}

impl Plan {
    /// Every object of the set in apply order, then the stale objects in prune order.
    ///
    /// ```no_run
    /// # fn example(plan: &gitops_apply::Plan) {
    /// for entry in plan.entries() {
    ///     println!("{} {}: {}", entry.action, entry.id.display_name(), entry.reason);
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn entries(&self) -> Vec<PlanEntry<'_>> {
        let mut entries: Vec<PlanEntry<'_>> = self
            .ordered
            .objects()
            .iter()
            .zip(&self.decisions)
            .zip(&self.diffs)
            .map(|((object, decision), diff)| {
                let (action, reason) = decision.planned();
                PlanEntry {
                    id: &object.id,
                    origin: Some(object.manifest.origin()),
                    action,
                    reason,
                    error: decision.error(),
                    diff: diff.as_ref(),
                    wave: object.wave,
                }
            })
            .collect();
        entries.extend(self.stale.iter().map(|stale| PlanEntry {
            id: &stale.id,
            origin: None,
            action: stale.action,
            reason: stale.reason.clone(),
            error: None,
            diff: None,
            wave: 0,
        }));
        entries
    }

    /// The objects the previous inventory lists and the set lacks, in prune order (empty when
    /// the plan does not prune); give them to [`Applier::prune`] to prune them alone.
    ///
    /// ```no_run
    /// # fn example(plan: &gitops_apply::Plan) {
    /// println!("{} stale", plan.stale().len());
    /// # }
    /// ```
    #[must_use]
    pub fn stale(&self) -> &[StaleObject] {
        &self.stale
    }

    /// The hooks of the set, by phase (kept out of the objects and the inventory).
    ///
    /// ```no_run
    /// # fn example(plan: &gitops_apply::Plan) {
    /// println!("{}", plan.hooks());
    /// # }
    /// ```
    #[must_use]
    pub fn hooks(&self) -> &PlannedHooks {
        &self.hooks
    }

    /// The options the plan was made with (and will be executed with).
    ///
    /// ```no_run
    /// # fn example(plan: &gitops_apply::Plan) {
    /// assert!(!plan.options().dry_run || plan.options().dry_run);
    /// # }
    /// ```
    #[must_use]
    pub fn options(&self) -> &ApplyOptions {
        &self.options
    }

    /// How many objects each action has.
    ///
    /// ```no_run
    /// # fn example(plan: &gitops_apply::Plan) {
    /// println!("{}", plan.summary());
    /// # }
    /// ```
    #[must_use]
    pub fn summary(&self) -> PlanSummary {
        let mut summary = PlanSummary::default();
        for entry in self.entries() {
            let count = match entry.action {
                PlannedAction::Create => &mut summary.create,
                PlannedAction::Update => &mut summary.update,
                PlannedAction::Recreate => &mut summary.recreate,
                PlannedAction::Prune => &mut summary.prune,
                PlannedAction::Unchanged => &mut summary.unchanged,
                PlannedAction::Skip => &mut summary.skip,
                PlannedAction::Invalid => &mut summary.invalid,
            };
            *count += 1;
        }
        summary
    }

    /// The entries that count as drift: objects to create, update, recreate or prune, and
    /// invalid ones; a stale object carrying Argo CD's `IgnoreExtraneous` compare option
    /// ([`crate::COMPARE_OPTIONS_ANNOTATION`]) does not count.
    ///
    /// ```no_run
    /// # fn example(plan: &gitops_apply::Plan) {
    /// let drifted: Vec<String> = plan.drifted().map(|e| e.id.display_name()).collect();
    /// # }
    /// ```
    pub fn drifted(&self) -> impl Iterator<Item = PlanEntry<'_>> {
        self.entries().into_iter().filter(|entry| {
            (entry.action.is_change() || entry.action == PlannedAction::Invalid)
                && entry.reason != Reason::IgnoredExtraneous
        })
    }

    /// Whether nothing drifted ([`Plan::drifted`] is empty).
    ///
    /// ```no_run
    /// # fn example(plan: &gitops_apply::Plan) {
    /// if plan.is_in_sync() { println!("in sync"); }
    /// # }
    /// ```
    #[must_use]
    pub fn is_in_sync(&self) -> bool {
        self.drifted().next().is_none()
    }

    /// Whether some object failed validation.
    pub(crate) fn is_invalid(&self) -> bool {
        self.decisions
            .iter()
            .any(|d| matches!(d, Decision::Failed(_)))
    }

    /// The change set of a plan that is not executed: a dry run (what would happen), or a
    /// plan with invalid objects (nothing written).
    pub(crate) fn into_unwritten_change_set(self, health: &HealthChecks) -> ChangeSet {
        let invalid = self.is_invalid();
        let Plan {
            ordered,
            options,
            decisions,
            diffs,
            live,
            stale,
            counter,
            ..
        } = self;
        let dry_run = options.dry_run;
        let mut change_set = ChangeSet {
            dry_run,
            ..ChangeSet::default()
        };
        for ((object, decision), diff) in ordered.objects().iter().zip(decisions).zip(diffs) {
            let outcome = decision.into_outcome(|exists, recreate, reason| {
                if invalid && !dry_run {
                    (ObjectAction::Skipped, Reason::OthersFailedValidation, None)
                } else if recreate {
                    (ObjectAction::Recreated, reason, None)
                } else if exists {
                    (ObjectAction::Configured, reason, None)
                } else {
                    (ObjectAction::Created, reason, None)
                }
            });
            let diff = diff.filter(|_| dry_run);
            change_set
                .changes
                .push(object_change(object, outcome, (health, &live), diff));
        }
        if dry_run {
            for stale in stale {
                let action = match stale.action {
                    PlannedAction::Skip => ObjectAction::Skipped,
                    _ => ObjectAction::Pruned,
                };
                change_set.changes.push(ObjectChange {
                    resource: stale.resource(),
                    id: stale.id,
                    origin: None,
                    action,
                    reason: stale.reason,
                    error: None,
                    diff: None,
                    health: None,
                });
            }
        }
        change_set.requests = counter.get();
        change_set.request_counts = counter.counts();
        change_set
    }
}

/// What one object of a run came to: its action, why, and the error when it failed.
pub(crate) type Outcome = (ObjectAction, Reason, Option<ObjectError>);

/// The change of one object of a plan: `outcome`, the health of an unchanged object (from the
/// live objects read), and its diff.
pub(crate) fn object_change(
    object: &PlannedObject,
    (action, reason, error): Outcome,
    (health, live): (&HealthChecks, &HashMap<ObjectId, Value>),
    diff: Option<ObjectDiff>,
) -> ObjectChange {
    let health = (action == ObjectAction::Unchanged)
        .then(|| live.get(&object.id).map(|live| health.check(live)))
        .flatten();
    ObjectChange {
        id: object.id.clone(),
        origin: Some(object.manifest.origin().clone()),
        resource: object.kind.resource.clone(),
        action,
        reason,
        error,
        diff,
        health,
    }
}

/// A value shown in a plan: compact JSON, escaped.
fn shown_value(value: Option<&Value>) -> String {
    match value {
        None => "(none)".to_owned(),
        Some(value) => Escaped(&value.to_string()).to_string(),
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verbose = f.alternate();
        for entry in self.entries() {
            if entry.action == PlannedAction::Unchanged && !verbose {
                continue;
            }
            write!(
                f,
                "{:>5} {} ({})",
                entry.action.symbol(),
                entry.id.display_name(),
                entry.reason
            )?;
            if let Some(error) = entry.error {
                write!(f, ": {error}")?;
            }
            writeln!(f)?;
            for change in entry.diff.map(|d| d.changes.as_slice()).unwrap_or_default() {
                let path = Escaped(&change.path);
                match change.kind {
                    ChangeKind::Added => {
                        writeln!(
                            f,
                            "        + {path}: {}",
                            shown_value(change.after.as_ref())
                        )?;
                    }
                    ChangeKind::Removed => {
                        writeln!(
                            f,
                            "        - {path}: {}",
                            shown_value(change.before.as_ref())
                        )?;
                    }
                    _ => writeln!(
                        f,
                        "        ~ {path}: {} -> {}",
                        shown_value(change.before.as_ref()),
                        shown_value(change.after.as_ref())
                    )?,
                }
            }
        }
        if !self.hooks.is_empty() {
            write!(f, "{}", self.hooks)?;
        }
        write!(f, "{}", self.summary())
    }
}

impl Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Entry<'p> {
            id: String,
            name: String,
            action: PlannedAction,
            #[serde(flatten)]
            reason: Reason,
            wave: i64,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<String>,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            changes: &'p [gitops_diff::Change],
        }
        #[derive(Serialize)]
        struct Shown<'p> {
            objects: Vec<Entry<'p>>,
            stale: Vec<Entry<'p>>,
            hooks: &'p PlannedHooks,
            summary: PlanSummary,
            in_sync: bool,
        }
        fn entry(e: PlanEntry<'_>) -> Entry<'_> {
            Entry {
                id: e.id.to_string(),
                name: e.id.display_name(),
                action: e.action,
                reason: e.reason,
                wave: e.wave,
                error: e.error.map(|error| Escaped(&error.to_string()).to_string()),
                changes: e.diff.map(|d| d.changes.as_slice()).unwrap_or_default(),
            }
        }
        let count = self.ordered.objects().len();
        let mut entries = self.entries();
        let stale = entries.split_off(count);
        Shown {
            objects: entries.into_iter().map(entry).collect(),
            stale: stale.into_iter().map(entry).collect(),
            hooks: &self.hooks,
            summary: self.summary(),
            in_sync: self.is_in_sync(),
        }
        .serialize(serializer)
    }
}

/// The progress report of a validated plan: how many objects it writes and how many failed.
fn validated(decisions: &[Decision]) -> ApplyProgress {
    ApplyProgress::Validated {
        to_write: decisions
            .iter()
            .filter(|d| matches!(d, Decision::Write { .. }))
            .count(),
        failed: decisions
            .iter()
            .filter(|d| matches!(d, Decision::Failed(_)))
            .count(),
    }
}

/// The objects the previous inventory lists and the set no longer has, with their versions.
fn listed_but_gone(previous: &Inventory, objects: &[PlannedObject]) -> Vec<(ObjectId, String)> {
    let keep: HashSet<&ObjectId> = objects.iter().map(|o| &o.id).collect();
    previous
        .iter()
        .filter(|(id, _)| !keep.contains(id))
        .map(|(id, version)| (id.clone(), version.to_owned()))
        .collect()
}

impl Applier {
    /// Plans `set`: discovery (cached, see [`crate::ApplierBuilder::discovery_ttl`]), the hooks
    /// taken out, the objects ordered, the live objects read (one list per kind and namespace,
    /// selected by the ownership labels, and a read of each object of the set it misses while
    /// they are few; see [`crate::ApplierBuilder::concurrency`]), the local no-op decision, a server-side dry run (strict field validation) of what needs
    /// a write, and per object the action, a typed reason and the diff; then the stale objects
    /// (what the previous inventory lists and the set lacks, when the set and the options may
    /// prune). Nothing is written. Execute it with [`Applier::apply`].
    ///
    /// ```no_run
    /// # async fn example(applier: gitops_apply::Applier, set: gitops_apply::DesiredSet) -> Result<(), gitops_apply::ApplyError> {
    /// let cancel = tokio_util::sync::CancellationToken::new();
    /// let plan = applier.plan(&set, &gitops_apply::ApplyOptions::default(), &cancel).await?;
    /// println!("{plan}");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// Discovery, schema, hooks, ordering, the inventory, a cascading prune or reading the live
    /// objects ([`ApplyError`]); an object the dry run rejects is not an error but an
    /// [`PlannedAction::Invalid`] entry.
    pub async fn plan(
        &self,
        set: &DesiredSet,
        options: &ApplyOptions,
        cancel: &CancellationToken,
    ) -> Result<Plan, ApplyError> {
        self.plan_with_progress(set.clone(), options, cancel, &mut |_| {})
            .await
    }

    /// The set is taken by value: its manifests move into the plan rather than being copied
    /// (one copy fewer of every object while a sync runs).
    pub(crate) async fn plan_with_progress(
        &self,
        set: DesiredSet,
        options: &ApplyOptions,
        cancel: &CancellationToken,
        progress: &mut (dyn FnMut(&ApplyProgress) + Send),
    ) -> Result<Plan, ApplyError> {
        let counter = RequestCounter::default();
        let client = counting_client(&self.client, &counter);
        let run = Run {
            applier: self,
            client: client.clone(),
            options,
        };
        // A set that does not come from a render never prunes.
        let prune = options.prune && set.may_prune();
        let may_prune = set.may_prune();
        let Prepared {
            kinds,
            ordered,
            hooks,
            previous,
            differ,
        } = self.prepare(&run, set, prune, cancel).await?;
        let objects = ordered.objects();
        let desired = self.desired_objects(objects);
        progress(&ApplyProgress::Planned {
            objects: objects.len(),
            groups: ordered.groups().count(),
        });
        let live = run.list_live(objects, previous.as_ref()).await?;
        let mut decided = self.decide_all(&differ, objects, &desired, &live.objects, options);
        let namespaces_made_here = namespaces_made_here(objects, &decided.decisions);
        self.validate_writes(&run, objects, &desired, &mut decided, &namespaces_made_here)
            .await;
        progress(&validated(&decided.decisions));
        let stale = match (&previous, prune) {
            (Some(previous), true) => {
                let gone = listed_but_gone(previous, objects);
                self.stale_objects(&client, &kinds, gone, &live).await?
            }
            _ => Vec::new(),
        };
        Ok(Plan {
            ordered,
            kinds,
            previous,
            options: options.clone(),
            prune,
            may_prune,
            differ,
            desired,
            applied: decided.applied,
            decisions: decided.decisions,
            taken_over: decided.taken_over,
            diffs: decided.diffs,
            live: live.objects,
            namespaces_made_here,
            stale,
            hooks,
            counter,
        })
    }

    /// The first steps of a plan: discovery, the hooks taken out, the previous inventory, the
    /// schema, the objects ordered and the cascading prunes refused.
    async fn prepare(
        &self,
        run: &Run<'_>,
        set: DesiredSet,
        prune: bool,
        cancel: &CancellationToken,
    ) -> Result<Prepared, ApplyError> {
        let (client, options) = (&run.client, run.options);
        let mut kinds = self
            .catalog
            .kinds(client, set.manifests())
            .await
            .map_err(ApplyError::from_catalog)?;
        // The CRDs of the set first: a hook may be a custom resource of one of them.
        kinds.add_crds(set.manifests());
        let (resources, hooks) = plan_hooks(
            set.into_manifests(),
            &kinds,
            self.staging.as_ref(),
            options.target_namespace.as_deref(),
        )
        .map_err(|errors| ApplyError::Hooks { errors })?;
        let previous = self
            .inventory
            .load(client)
            .await
            .map_err(ApplyError::Inventory)?;
        let previous_len = previous.as_ref().map_or(0, Inventory::len);
        if resources.is_empty() && prune && previous_len > 0 && !options.allow_empty_set {
            return Err(ApplyError::EmptySet {
                previous: previous_len,
            });
        }
        let schema = self
            .catalog
            .schema(client, &resources, cancel)
            .await
            .map_err(ApplyError::from_catalog)?;
        let differ = self
            .differ
            .to_builder()
            .field_manager(self.field_manager.clone())
            .schema(schema)
            .build();
        let order_options = OrderOptions {
            target_namespace: options.target_namespace.clone(),
            create_target_namespace: options.create_target_namespace,
        };
        let ordered = order(resources, &kinds, self.staging.as_ref(), &order_options)
            .map_err(ApplyError::Plan)?;
        if prune
            && !options.allow_cascading_prune
            && let Some(previous) = &previous
        {
            let losses = run
                .cascading_losses(&kinds, previous, ordered.objects())
                .await?;
            if !losses.is_empty() {
                return Err(ApplyError::CascadingPrune { losses });
            }
        }
        Ok(Prepared {
            kinds,
            ordered,
            hooks,
            previous,
            differ,
        })
    }

    /// Each object as desired: the ownership labels added (synthesized objects excepted).
    fn desired_objects(&self, objects: &[PlannedObject]) -> Vec<Value> {
        let owner_labels = self.inventory.owner_labels();
        objects
            .iter()
            .map(|object| {
                let mut manifest = object.manifest.clone();
                if !object.synthesized {
                    for (key, value) in &owner_labels {
                        manifest.set_label(key, value);
                    }
                }
                manifest.into_object()
            })
            .collect()
    }

    /// Decides locally, per object, what needs a write (and the diff of what does, or of every
    /// object in a dry run).
    fn decide_all(
        &self,
        differ: &Differ,
        objects: &[PlannedObject],
        desired: &[Value],
        live: &HashMap<ObjectId, Value>,
        options: &ApplyOptions,
    ) -> Decided {
        let owner_labels = self.inventory.owner_labels();
        let mut decided = Decided::default();
        for (object, desired) in objects.iter().zip(desired) {
            let live = live.get(&object.id);
            let taken_over = live.map_or_else(BTreeSet::new, |live| {
                managers_taken_over(live, &options.takeover, &self.field_manager)
            });
            let (sent, decision) = decide(
                differ,
                object,
                desired,
                live,
                &taken_over,
                options,
                &owner_labels,
            );
            let shown = sent.as_ref().unwrap_or(desired);
            let diff = if options.dry_run || matches!(decision, Decision::Write { .. }) {
                differ.diff(Some(shown), live).ok()
            } else {
                None
            };
            decided.taken_over.push(taken_over);
            decided.applied.push(sent);
            decided.diffs.push(diff);
            decided.decisions.push(decision);
        }
        decided
    }

    /// Validates every write with a server-side dry run (objects of kinds not served yet
    /// excepted); an object the server refuses becomes [`Decision::Failed`], one whose change
    /// is immutable a recreate.
    async fn validate_writes(
        &self,
        run: &Run<'_>,
        objects: &[PlannedObject],
        desired: &[Value],
        decided: &mut Decided,
        namespaces_made_here: &HashSet<String>,
    ) {
        let validations: Vec<_> = (0..objects.len())
            .filter(|&i| {
                matches!(decided.decisions[i], Decision::Write { .. }) && objects[i].kind.served
            })
            .map(|i| {
                let object = &objects[i];
                let sent = decided.applied[i].as_ref().unwrap_or(&desired[i]);
                let taken_over = &decided.taken_over[i];
                let namespace_made_here = object
                    .id
                    .namespace
                    .as_deref()
                    .is_some_and(|ns| namespaces_made_here.contains(ns));
                async move {
                    let result = validate_one(run, object, sent, taken_over, namespace_made_here);
                    (i, result.await)
                }
            })
            .collect();
        let validations = futures::stream::iter(validations)
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>()
            .await;
        let decisions = &mut decided.decisions;
        for (i, result) in validations {
            match result {
                // The dry run of an object taken over was repeated, taking the fields.
                Ok(AfterError::Proceed | AfterError::ValidateTakingOver) => {}
                Ok(AfterError::Recreate) => {
                    decisions[i] = Decision::Write {
                        exists: true,
                        recreate: true,
                        takeover: false,
                        reason: Reason::ImmutableChanged,
                    };
                }
                Err(error) => decisions[i] = Decision::Failed(error),
            }
        }
        if decisions.iter().any(|d| matches!(d, Decision::Failed(_))) {
            // A kind that vanished since discovery fails validation: discover again next time.
            self.catalog.invalidate().await;
        }
    }

    /// What pruning each of `gone` (inventory entries the set lacks) means, in prune order:
    /// read from the lists already made when they tell (see [`Live::known`]: an object a list
    /// selected by our labels did not return may exist without them), else with one read each.
    pub(crate) async fn stale_objects(
        &self,
        client: &kube::Client,
        kinds: &KindTable,
        gone: Vec<(ObjectId, String)>,
        live: &Live,
    ) -> Result<Vec<StaleObject>, ApplyError> {
        let owner_labels = self.inventory.owner_labels();
        let mut stale = Vec::with_capacity(gone.len());
        for (id, api_version) in gone {
            let kind = resolve_inventory_kind(kinds, &id, &api_version).cloned();
            let Some(info) = &kind else {
                stale.push(StaleObject {
                    id,
                    api_version,
                    kind,
                    action: PlannedAction::Prune,
                    reason: Reason::KindNoLongerServed,
                });
                continue;
            };
            let namespace = id.namespace.clone().filter(|_| info.namespaced);
            let key = (
                info.resource.api_version.clone(),
                info.resource.plural.clone(),
                namespace,
            );
            let object = if let Some(known) = live.known(&key, &id) {
                known.cloned()
            } else {
                let api = crate::apply::object_api(client, info, id.namespace.as_deref());
                api.get_opt(&id.name)
                    .await
                    .map_err(|source| ApplyError::Read {
                        id: id.clone(),
                        source: source.into(),
                    })?
                    .map(|o| crate::apply::to_value(&o, &info.resource))
            };
            let (action, reason) = match &object {
                None => (PlannedAction::Unchanged, Reason::AlreadyGone),
                Some(object) => match prunable(object, &owner_labels) {
                    Err(reason) => (PlannedAction::Skip, reason),
                    Ok(()) if ignores_extraneous(&annotations_of(object)) => {
                        (PlannedAction::Prune, Reason::IgnoredExtraneous)
                    }
                    Ok(()) => (PlannedAction::Prune, Reason::LeftTheSet),
                },
            };
            stale.push(StaleObject {
                id,
                api_version,
                kind,
                action,
                reason,
            });
        }
        let staging = self.staging.as_ref();
        let key = |s: &StaleObject| {
            let namespaced = s.kind.as_ref().is_none_or(|k| k.namespaced);
            let kind = s.id.group_kind();
            (
                staging.stage(&kind, namespaced),
                staging.kind_rank(&kind),
                s.id.kind.clone(),
                s.id.namespace.clone(),
                s.id.name.clone(),
            )
        };
        stale.sort_by_key(|s| std::cmp::Reverse(key(s)));
        Ok(stale)
    }
}

/// What the first steps of a plan give ([`Applier::prepare`]).
struct Prepared {
    kinds: KindTable,
    ordered: ApplyOrder,
    hooks: PlannedHooks,
    previous: Option<Inventory>,
    differ: Differ,
}

/// The local decisions of a plan, per object ([`Applier::decide_all`]).
#[derive(Default)]
struct Decided {
    taken_over: Vec<BTreeSet<String>>,
    applied: Vec<Option<Value>>,
    diffs: Vec<Option<ObjectDiff>>,
    decisions: Vec<Decision>,
}

/// The Namespaces the plan creates.
fn namespaces_made_here(objects: &[PlannedObject], decisions: &[Decision]) -> HashSet<String> {
    objects
        .iter()
        .zip(decisions)
        .filter(|(o, d)| {
            o.id.group.is_empty()
                && o.id.kind == "Namespace"
                && matches!(d, Decision::Write { exists: false, .. })
        })
        .map(|(o, _)| o.id.name.clone())
        .collect()
}

/// A server-side dry run of one write: how the run goes on after it, or why the object cannot
/// be written. A conflict with managers the run takes over is validated again, taking them.
async fn validate_one(
    run: &Run<'_>,
    object: &PlannedObject,
    sent: &Value,
    taken_over: &BTreeSet<String>,
    namespace_made_here: bool,
) -> Result<AfterError, ObjectError> {
    let mut taking_over = false;
    loop {
        let error = match run.server_side_apply(object, sent, true, taking_over).await {
            Ok(()) => return Ok(AfterError::Proceed),
            Err(error) => error,
        };
        let managers = if taking_over {
            &NO_MANAGERS
        } else {
            taken_over
        };
        match run.on_apply_error(object, &error, managers, namespace_made_here) {
            Some(AfterError::ValidateTakingOver) => taking_over = true,
            Some(after) => return Ok(after),
            None => return Err(error),
        }
    }
}

/// The annotations of an object.
pub(crate) fn annotations_of(object: &Value) -> std::collections::BTreeMap<&str, &str> {
    object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .collect()
}

/// The local decision for one object: the object to send when ignore rules make it differ from
/// `desired`, and what to do.
pub(crate) fn decide(
    differ: &Differ,
    object: &crate::plan::PlannedObject,
    desired: &Value,
    live: Option<&Value>,
    taken_over: &BTreeSet<String>,
    options: &ApplyOptions,
    owner_labels: &std::collections::BTreeMap<String, String>,
) -> (Option<Value>, Decision) {
    if !object.policy.reconcile {
        return (None, Decision::Skip(Reason::ReconcileDisabled));
    }
    if !options.take_ownership
        && !object.synthesized
        && let Some(owner) = live.and_then(|live| other_owner(live, owner_labels))
    {
        return (None, Decision::OwnedElsewhere(owner));
    }
    let Some(live) = live else {
        return (
            None,
            Decision::Write {
                exists: false,
                recreate: false,
                takeover: false,
                reason: Reason::NotFound,
            },
        );
    };
    if object.policy.create_only {
        return (None, Decision::Skip(Reason::CreateOnlyExists));
    }
    // Ignore rules bind apply: the fields they cover are left out of what is sent.
    let sent = if differ.ignore_rules().is_empty() {
        None
    } else {
        match differ.applied_object(desired, Some(live)) {
            Ok(sent) => Some(sent).filter(|sent| sent != desired),
            Err(source) => return (None, Decision::Failed(ObjectError::Diff { source })),
        }
    };
    if !taken_over.is_empty() {
        return (
            sent,
            Decision::Write {
                exists: true,
                recreate: false,
                takeover: true,
                reason: Reason::TakingOver {
                    managers: taken_over.iter().cloned().collect(),
                },
            },
        );
    }
    let decision = match needs_write(differ, sent.as_ref().unwrap_or(desired), live) {
        Ok(Some(reason)) => Decision::Write {
            exists: true,
            recreate: false,
            takeover: false,
            reason,
        },
        Ok(None) => Decision::Unchanged,
        Err(source) => Decision::Failed(ObjectError::Diff { source }),
    };
    (sent, decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{DefaultStaging, KindInfo};
    use serde_json::json;

    fn kinds() -> KindTable {
        let mut kinds = KindTable::default();
        for (kind, plural) in [("ConfigMap", "configmaps"), ("Secret", "secrets")] {
            kinds.insert(KindInfo {
                resource: ApiResource {
                    group: String::new(),
                    version: "v1".into(),
                    api_version: "v1".into(),
                    kind: kind.into(),
                    plural: plural.into(),
                },
                namespaced: true,
                served: true,
            });
        }
        kinds
    }

    /// A plan made by hand: a ConfigMap to create, one drifted, a Secret drifted, one in sync,
    /// one invalid; two stale objects, one of them ignored as extraneous.
    fn plan() -> Plan {
        let yaml = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: new, namespace: shop}
data: {a: '1'}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {color: blue}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: shop}
stringData: {password: hunter2-is-secret}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: same, namespace: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: bad, namespace: shop}
";
        let manifests = gitops_core::parse_manifests(yaml, "set.yaml").unwrap();
        let kinds = kinds();
        let ordered = order(manifests, &kinds, &DefaultStaging, &OrderOptions::default()).unwrap();
        let differ = Differ::builder("gitops-rs").build();
        let desired: Vec<Value> = ordered
            .objects()
            .iter()
            .map(|o| o.manifest.object().clone())
            .collect();
        let mut decisions = Vec::new();
        let mut diffs = Vec::new();
        for (object, desired) in ordered.objects().iter().zip(&desired) {
            let write = |exists, reason| Decision::Write {
                exists,
                recreate: false,
                takeover: false,
                reason,
            };
            let (decision, live) = match object.id.name.as_str() {
                "new" => (write(false, Reason::NotFound), None),
                "settings" => (
                    write(true, Reason::Drifted),
                    Some(json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "settings", "namespace": "shop"},
                        "data": {"color": "red"}})),
                ),
                "token" => (
                    write(true, Reason::Drifted),
                    Some(json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "token", "namespace": "shop"},
                        "data": {"password": "b2xkLXNlY3JldC12YWx1ZQ=="}})),
                ),
                "bad" => (
                    Decision::Failed(ObjectError::Rejected {
                        code: 422,
                        message: "data: Invalid value".into(),
                    }),
                    None,
                ),
                _ => (Decision::Unchanged, None),
            };
            let diff = matches!(decision, Decision::Write { .. })
                .then(|| differ.diff(Some(desired), live.as_ref()).unwrap());
            decisions.push(decision);
            diffs.push(diff);
        }
        let stale = |name: &str, action, reason| StaleObject {
            id: ObjectId::new("", "ConfigMap", Some("shop"), name),
            api_version: "v1".into(),
            kind: kinds.resolve("", "v1", "ConfigMap").cloned(),
            action,
            reason,
        };
        let count = ordered.objects().len();
        Plan {
            stale: vec![
                stale("old", PlannedAction::Prune, Reason::LeftTheSet),
                stale("extra", PlannedAction::Prune, Reason::IgnoredExtraneous),
            ],
            ordered,
            kinds,
            previous: None,
            options: ApplyOptions::default(),
            prune: true,
            may_prune: true,
            differ,
            desired,
            applied: vec![None; count],
            decisions,
            taken_over: vec![BTreeSet::new(); count],
            diffs,
            live: HashMap::new(),
            namespaces_made_here: HashSet::new(),
            hooks: PlannedHooks::default(),
            counter: RequestCounter::default(),
        }
    }

    #[test]
    fn a_plan_prints_like_terraform_plan_with_secrets_masked() {
        let plan = plan();
        let text = plan.to_string();
        let expected = [
            "    ~ Secret shop/token (drifted)",
            "        ~ data.password: \"*** (before)\" -> \"*** (after)\"",
            "    ! ConfigMap shop/bad (failed validation): rejected by the server (422): data: Invalid value",
            "    + ConfigMap shop/new (not found)",
            "    ~ ConfigMap shop/settings (drifted)",
            "        ~ data.color: \"red\" -> \"blue\"",
            "    - ConfigMap shop/old (left the set)",
            "    - ConfigMap shop/extra (left the set; extraneous objects ignored (IgnoreExtraneous))",
            "Plan: 1 to create, 2 to update, 0 to recreate, 2 to prune, 1 unchanged. 1 invalid.",
        ]
        .join("\n");
        assert_eq!(text, expected);
        assert!(!text.contains("hunter2-is-secret"), "{text}");
        assert!(!text.contains("b2xkLXNlY3JldC12YWx1ZQ"), "{text}");
        assert!(!text.contains("old-secret-value"), "{text}");
        assert!(
            text.contains("    - ConfigMap shop/old (left the set)\n"),
            "{text}"
        );
        assert!(
            text.contains("    - ConfigMap shop/extra (left the set; extraneous"),
            "{text}"
        );
        assert!(
            !text.contains("shop/same"),
            "unchanged objects only in {{:#}}: {text}"
        );
        assert!(
            text.ends_with(
                "Plan: 1 to create, 2 to update, 0 to recreate, 2 to prune, 1 unchanged. 1 invalid."
            ),
            "{text}"
        );
        let verbose = format!("{plan:#}");
        assert!(
            verbose.contains("    = ConfigMap shop/same (in sync)\n"),
            "{verbose}"
        );
    }

    #[test]
    fn a_plan_serialises_to_a_stable_json_shape() {
        let plan = plan();
        let json = serde_json::to_value(&plan).unwrap();
        let text = json.to_string();
        assert!(!text.contains("hunter2-is-secret"), "{text}");
        assert!(!text.contains("b2xkLXNlY3JldC12YWx1ZQ"), "{text}");
        let objects = json["objects"].as_array().unwrap();
        assert_eq!(objects.len(), 5);
        let settings = objects
            .iter()
            .find(|o| o["name"] == "ConfigMap shop/settings")
            .unwrap();
        assert_eq!(settings["id"], "shop_settings__ConfigMap");
        assert_eq!(settings["action"], "update");
        assert_eq!(settings["reason"], "Drifted");
        assert_eq!(settings["wave"], 0);
        assert_eq!(settings["changes"][0]["path"], "data.color");
        assert_eq!(settings["changes"][0]["before"], "red");
        assert_eq!(settings["changes"][0]["after"], "blue");
        let bad = objects.iter().find(|o| o["action"] == "invalid").unwrap();
        assert_eq!(bad["reason"], "ValidationFailed");
        assert!(bad["error"].as_str().unwrap().contains("422"), "{bad}");
        let same = objects.iter().find(|o| o["action"] == "unchanged").unwrap();
        assert!(
            same.get("changes").is_none() && same.get("error").is_none(),
            "{same}"
        );
        assert_eq!(json["stale"][0]["action"], "prune");
        assert_eq!(json["stale"][1]["reason"], "IgnoredExtraneous");
        assert_eq!(
            json["summary"],
            json!({"create": 1, "update": 2, "recreate": 0, "prune": 2, "unchanged": 1,
                   "skip": 0, "invalid": 1})
        );
        assert_eq!(json["in_sync"], false);
        assert_eq!(json["hooks"], json!([]));
    }

    #[test]
    fn names_and_values_from_a_repository_or_a_cluster_are_escaped() {
        let mut plan = plan();
        plan.stale[0].id = ObjectId::new("", "ConfigMap", Some("shop"), "old\nPlan: 0 to create");
        let text = plan.to_string();
        assert!(
            text.contains("    - ConfigMap shop/old\\nPlan: 0 to create (left the set)\n"),
            "{text}"
        );
        assert_eq!(
            text.lines().filter(|l| l.starts_with("Plan:")).count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn an_extraneous_object_is_not_drift() {
        let mut plan = plan();
        // Only the extraneous stale object is left to do.
        plan.decisions = plan.decisions.iter().map(|_| Decision::Unchanged).collect();
        plan.diffs = plan.diffs.iter().map(|_| None).collect();
        plan.stale.remove(0);
        assert_eq!(plan.summary().prune, 1);
        assert!(plan.is_in_sync(), "{plan}");
        assert_eq!(plan.drifted().count(), 0);
        plan.stale[0].reason = Reason::LeftTheSet;
        assert!(!plan.is_in_sync());
    }
}
