//! The `apply` verb: executing a reviewed [`Plan`] (after checking it is not stale), and
//! `apply_set`, the one-call path (plan, then execute).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::time::Duration;

use futures::StreamExt;
use gitops_core::ObjectId;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::apply::{AfterError, Applier, Decision, NO_MANAGERS, Run, Stop};
use crate::change::{ChangeSet, ObjectAction, PlannedAction, Reason};
use crate::counting::{RequestCounter, counting_client};
use crate::error::{ApplyError, ObjectError};
use crate::health::{WaitError, WaitReads, WaitTarget, wait_for_current_paged};
use crate::hooks::{HookError, HookRun, HookRunner, PlannedHook, SyncPhase, hook_failure};
use crate::inventory::{Inventory, InventoryError, OWNER_NAMESPACE_LABEL};
use crate::options::{ApplyOptions, ApplyProgress};
use crate::plan::PlannedObject;
use crate::planner::{Outcome, Plan, decide, object_change};
use crate::set::DesiredSet;
use crate::takeover::managers_taken_over;

fn written(outcome: Option<&Outcome>) -> bool {
    matches!(
        outcome,
        Some((
            ObjectAction::Created | ObjectAction::Configured | ObjectAction::Recreated,
            _,
            _
        ))
    )
}

impl Applier {
    /// Brings the cluster to `desired` (the one-call path): [`Applier::plan`], then the plan
    /// executed at once (no staleness check: the plan is fresh). Objects are written group by
    /// group (objects of a group in parallel), then the inventory is updated and what left the
    /// set is pruned.
    ///
    /// # Errors
    /// See [`ApplyError`]; nothing is written when planning or validation fails, and nothing is
    /// pruned when a write failed.
    ///
    /// ```no_run
    /// # async fn example(applier: gitops_apply::Applier, set: gitops_apply::DesiredSet) -> Result<(), gitops_apply::ApplyError> {
    /// let cancel = tokio_util::sync::CancellationToken::new();
    /// let changes = applier.apply_set(set, &gitops_apply::ApplyOptions::default(), &cancel).await?;
    /// println!("{changes}");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn apply_set(
        &self,
        desired: DesiredSet,
        options: &ApplyOptions,
        cancel: &CancellationToken,
    ) -> Result<ChangeSet, ApplyError> {
        self.apply_set_with_progress(desired, options, cancel, |_| {})
            .await
    }

    /// [`Applier::apply_set`], reporting progress as it goes.
    ///
    /// ```no_run
    /// # async fn example(applier: gitops_apply::Applier, set: gitops_apply::DesiredSet) -> Result<(), gitops_apply::ApplyError> {
    /// let cancel = tokio_util::sync::CancellationToken::new();
    /// let options = gitops_apply::ApplyOptions::default();
    /// let changes = applier
    ///     .apply_set_with_progress(set, &options, &cancel, |step| println!("{step:?}"))
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Applier::apply_set`].
    pub async fn apply_set_with_progress(
        &self,
        desired: DesiredSet,
        options: &ApplyOptions,
        cancel: &CancellationToken,
        mut progress: impl FnMut(&ApplyProgress) + Send,
    ) -> Result<ChangeSet, ApplyError> {
        let plan = self
            .plan_with_progress(desired, options, cancel, &mut progress)
            .await?;
        self.execute_in_phases(plan, cancel, &mut progress).await
    }

    /// Executes exactly `plan`, as it was reviewed. First the live objects are read again (the
    /// same lists as the plan) and each object's decision and diff recomputed: when any moved
    /// (a field the set sets was edited, an object to create now exists, one to update or
    /// prune is gone, its owner changed, or another run saved the inventory since), nothing is
    /// written and the plan is refused
    /// ([`ApplyError::StalePlan`]): plan again. A status update alone does not make a plan
    /// stale. A dry-run plan returns what would happen.
    ///
    /// ```no_run
    /// # async fn example(applier: gitops_apply::Applier, set: gitops_apply::DesiredSet) -> Result<(), gitops_apply::ApplyError> {
    /// let cancel = tokio_util::sync::CancellationToken::new();
    /// let plan = applier.plan(&set, &gitops_apply::ApplyOptions::default(), &cancel).await?;
    /// match applier.apply(plan, &cancel, |_| {}).await {
    ///     Err(gitops_apply::ApplyError::StalePlan { moved }) => println!("plan again: {moved:?}"),
    ///     other => println!("{}", other?),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ApplyError::StalePlan`], and as [`Applier::apply_set`].
    pub async fn apply(
        &self,
        plan: Plan,
        cancel: &CancellationToken,
        mut progress: impl FnMut(&ApplyProgress) + Send,
    ) -> Result<ChangeSet, ApplyError> {
        let mut plan = plan;
        if !plan.options.dry_run {
            self.refresh(&mut plan).await?;
        }
        self.execute_in_phases(plan, cancel, &mut progress).await
    }

    /// Reads the live state again and refuses a plan whose outcome moved; the live objects of
    /// the plan are replaced with those just read (the takeover's guard needs the latest
    /// resourceVersion).
    async fn refresh(&self, plan: &mut Plan) -> Result<(), ApplyError> {
        let client = counting_client(&self.client, &plan.counter);
        let run = Run {
            applier: self,
            client: client.clone(),
            options: &plan.options,
        };
        let objects = plan.ordered.objects();
        let live = run.list_live(objects, plan.previous.as_ref()).await?;
        let owner_labels = self.inventory.owner_labels();
        let mut moved: Vec<ObjectId> = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            let now = live.objects.get(&object.id);
            let taken_over = now.map_or_else(Default::default, |now| {
                managers_taken_over(now, &plan.options.takeover, &self.field_manager)
            });
            let (sent, decision) = decide(
                &plan.differ,
                object,
                &plan.desired[i],
                now,
                &taken_over,
                &plan.options,
                &owner_labels,
            );
            let before = plan.decisions[i].planned().0;
            let after = decision.planned().0;
            // A recreate was found by the dry run: now it is an update to be validated again.
            let same_action = before == after
                || (before == PlannedAction::Recreate && after == PlannedAction::Update)
                || before == PlannedAction::Invalid;
            let same_diff = match (&plan.decisions[i], &decision) {
                (Decision::Write { .. }, Decision::Write { .. }) => {
                    let shown = sent.as_ref().unwrap_or(&plan.desired[i]);
                    plan.differ.diff(Some(shown), now).ok() == plan.diffs[i] || plan.options.dry_run
                }
                _ => true,
            };
            if !same_action || !same_diff || taken_over != plan.taken_over[i] {
                moved.push(object.id.clone());
            }
        }
        let gone: Vec<(ObjectId, String)> = plan
            .stale
            .iter()
            .map(|s| (s.id.clone(), s.api_version.clone()))
            .collect();
        let stale_now = self
            .stale_objects(&client, &plan.kinds, gone, &live)
            .await?;
        for (before, now) in plan.stale.iter().zip(&stale_now) {
            // What pruning it means, not its resourceVersion (a status update is no move).
            if before.action != now.action || before.reason != now.reason {
                moved.push(before.id.clone());
            }
        }
        // Another run may have saved the inventory since: recording ours over it would forget
        // what that run wrote (never pruned then), and pruning by the old one is wrong too.
        let inventory_now = self
            .inventory
            .load(&client)
            .await
            .map_err(ApplyError::Inventory)?;
        moved.extend(inventory_moves(
            plan.previous.as_ref(),
            inventory_now.as_ref(),
        ));
        if !moved.is_empty() {
            moved.sort();
            moved.dedup();
            return Err(ApplyError::StalePlan { moved });
        }
        plan.live = live.objects;
        Ok(())
    }

    /// Runs a plan: records the inventory, writes group by group (gated by health between
    /// waves when asked), prunes, saves the inventory and waits when asked.
    pub(crate) async fn execute(
        &self,
        plan: Plan,
        cancel: &CancellationToken,
        progress: &mut (dyn FnMut(&ApplyProgress) + Send),
    ) -> Result<ChangeSet, ApplyError> {
        self.execute_with_hooks(plan, cancel, progress, None).await
    }

    /// [`Applier::execute`], running the Sync hooks with their waves: a hook of wave N after the
    /// objects of wave N are written, before the objects of wave N+1 (and before their health
    /// gate), the hooks of waves past the last before the prune. A failed hook stops the run as
    /// a failed group does (nothing more written, nothing pruned): [`ApplyError::Hook`].
    pub(crate) async fn execute_with_hooks(
        &self,
        plan: Plan,
        cancel: &CancellationToken,
        progress: &mut (dyn FnMut(&ApplyProgress) + Send),
        hooks: Option<SyncHooks<'_>>,
    ) -> Result<ChangeSet, ApplyError> {
        if plan.options.dry_run {
            return Ok(plan.into_unwritten_change_set(&self.health));
        }
        if plan.is_invalid() && !plan.options.best_effort {
            return Err(ApplyError::Invalid {
                change_set: Box::new(plan.into_unwritten_change_set(&self.health)),
            });
        }
        let counter = plan.counter.clone();
        let client = counting_client(&self.client, &counter);
        let mut written = Writes::new(self, &plan, client.clone(), cancel, hooks)
            .write_all(progress)
            .await?;
        let Plan {
            ordered,
            decisions,
            previous,
            stale,
            options,
            live,
            prune,
            may_prune,
            ..
        } = plan;
        let objects = ordered.objects();
        let mut change_set = self.written_change_set(
            objects,
            decisions,
            &live,
            std::mem::take(&mut written.results),
        );
        let any_failed = change_set.count(ObjectAction::Failed) > 0;
        if any_failed {
            // What the cluster serves may have changed under the run (a CRD deleted by hand):
            // the next run discovers again.
            self.catalog.invalidate().await;
        }
        // The inventory: never forget an object this run may have written.
        let mut inventory = set_inventory(objects, |_| true);
        if any_failed
            || written.stop == Some(Stop::Cancelled)
            || written.wave_error.is_some()
            || written.hook_error.is_some()
        {
            inventory = attempted_inventory(objects, &change_set, previous.as_ref());
        } else if prune && previous.is_some() {
            self.prune_stale(&client, stale, &mut inventory, &mut change_set, cancel)
                .await;
        } else if !may_prune && let Some(previous) = &previous {
            // A set that may not prune (not from a render) forgets nothing the inventory lists.
            inventory = inventory.union(previous);
        }
        // An unchanged inventory is not written either: a no-change run writes nothing.
        let saved = if written.stored.take().unwrap_or_default() == inventory {
            Ok(())
        } else {
            self.inventory
                .save(&client, &inventory, &self.field_manager)
                .await
        };
        change_set.requests = counter.get();
        change_set.request_counts = counter.counts();
        let change_set = concluded(change_set, saved, &mut written, cancel)?;
        match options.wait {
            Some(timeout) => {
                self.wait_after((&client, &counter), change_set, timeout, cancel, progress)
                    .await
            }
            None => Ok(change_set),
        }
    }

    /// The change set of a plan's objects after their writes: each object's outcome, else what
    /// its decision was.
    fn written_change_set(
        &self,
        objects: &[PlannedObject],
        decisions: Vec<Decision>,
        live: &HashMap<ObjectId, Value>,
        results: Vec<Option<Outcome>>,
    ) -> ChangeSet {
        let mut change_set = ChangeSet::default();
        for ((object, decision), result) in objects.iter().zip(decisions).zip(results) {
            let outcome = result.unwrap_or_else(|| {
                decision.into_outcome(|_, _, _| (ObjectAction::Skipped, Reason::NotWritten, None))
            });
            change_set
                .changes
                .push(object_change(object, outcome, (&self.health, live), None));
        }
        change_set
    }

    /// Waits for every object of the set to be Current after a run ([`ApplyOptions::wait`]).
    async fn wait_after(
        &self,
        (client, counter): (&kube::Client, &RequestCounter),
        mut change_set: ChangeSet,
        timeout: Duration,
        cancel: &CancellationToken,
        progress: &mut (dyn FnMut(&ApplyProgress) + Send),
    ) -> Result<ChangeSet, ApplyError> {
        let targets = change_set.wait_targets();
        let waited = self
            .wait_on(client, &targets, timeout, cancel, |round| {
                progress(&ApplyProgress::Waiting {
                    current: round.current,
                    total: round.total,
                });
            })
            .await;
        change_set.requests = counter.get();
        change_set.request_counts = counter.counts();
        match waited {
            Ok(()) => Ok(change_set),
            Err(WaitError::Cancelled) => Err(ApplyError::Cancelled {
                change_set: Box::new(change_set),
            }),
            Err(source) => Err(ApplyError::Unhealthy {
                change_set: Box::new(change_set),
                source,
            }),
        }
    }
}

/// The inventory entries of the objects of a plan that `keep` keeps (synthesized objects never:
/// a target namespace the run creates is not pruned).
fn set_inventory(objects: &[PlannedObject], keep: impl Fn(&ObjectId) -> bool) -> Inventory {
    let mut inventory = Inventory::default();
    for object in objects.iter().filter(|o| !o.synthesized && keep(&o.id)) {
        inventory.insert(object.id.clone(), object.kind.resource.api_version.clone());
    }
    inventory
}

/// The inventory after an incomplete run: only what it attempted (a failed write may still
/// have reached the server) joins what the previous inventory lists.
fn attempted_inventory(
    objects: &[PlannedObject],
    change_set: &ChangeSet,
    previous: Option<&Inventory>,
) -> Inventory {
    let attempted: HashSet<&ObjectId> = change_set
        .changes
        .iter()
        .filter(|c| c.action != ObjectAction::Skipped)
        .map(|c| &c.id)
        .collect();
    let inventory = set_inventory(objects, |id| attempted.contains(id));
    match previous {
        Some(previous) => inventory.union(previous),
        None => inventory,
    }
}

/// What to wait for to see `object` Current.
fn wait_target(object: &PlannedObject) -> WaitTarget {
    WaitTarget {
        id: object.id.clone(),
        resource: object.kind.resource.clone(),
    }
}

/// How a run that wrote ends: cancelled, unhealthy between waves, incomplete (a failure to save
/// the inventory is only logged then), else as saving the inventory went.
// Once per run, never on a hot path; the error is what the run returns.
#[allow(clippy::result_large_err)]
fn concluded(
    change_set: ChangeSet,
    saved: Result<(), InventoryError>,
    written: &mut Written,
    cancel: &CancellationToken,
) -> Result<ChangeSet, ApplyError> {
    if written.stop == Some(Stop::Cancelled) || cancel.is_cancelled() {
        return Err(ApplyError::Cancelled {
            change_set: Box::new(change_set),
        });
    }
    let failed = change_set.count(ObjectAction::Failed) > 0;
    if (failed || written.wave_error.is_some() || written.hook_error.is_some())
        && let Err(error) = &saved
    {
        tracing::warn!(error = %error, "could not save the inventory after a failed run");
    }
    if let Some(error) = written.hook_error.take() {
        return Err(hook_failure(error, change_set));
    }
    if let Some(source) = written.wave_error.take() {
        return Err(ApplyError::Unhealthy {
            change_set: Box::new(change_set),
            source,
        });
    }
    if failed {
        return Err(ApplyError::Incomplete {
            change_set: Box::new(change_set),
        });
    }
    saved.map_err(ApplyError::Inventory)?;
    Ok(change_set)
}

/// The Sync-phase hooks of a run, run with their waves ([`Applier::execute_with_hooks`]).
pub(crate) struct SyncHooks<'h> {
    /// Runs them.
    pub(crate) runner: &'h HookRunner,
    /// The hooks not run yet, in run order (by weight, their wave).
    pub(crate) pending: Vec<&'h PlannedHook>,
    /// Every hook object touched.
    pub(crate) runs: &'h mut Vec<HookRun>,
}

/// The writes of a plan, group by group: the state a run carries between its steps.
struct Writes<'p> {
    applier: &'p Applier,
    plan: &'p Plan,
    run: Run<'p>,
    cancel: &'p CancellationToken,
    /// Per object of the plan: what its write came to.
    results: Vec<Option<Outcome>>,
    /// Why the remaining groups are not written.
    stop: Option<Stop>,
    /// Why a health-gated wave did not become Current.
    wave_error: Option<WaitError>,
    /// The Sync hooks to run with the waves.
    hooks: Option<SyncHooks<'p>>,
    /// Why a Sync hook failed.
    hook_error: Option<HookError>,
    /// What the run records before its first write: the previous inventory and the new set.
    recorded_union: Inventory,
    /// What the inventory store holds.
    stored: Option<Inventory>,
    /// Whether `recorded_union` is recorded (or needs no record).
    recorded: bool,
    /// The index of the Namespace that holds the inventory when this run creates it: the record
    /// follows the group that creates it.
    inventory_namespace: Option<usize>,
}

/// What the writes of a plan came to.
struct Written {
    results: Vec<Option<Outcome>>,
    stop: Option<Stop>,
    wave_error: Option<WaitError>,
    hook_error: Option<HookError>,
    stored: Option<Inventory>,
}

impl<'p> Writes<'p> {
    fn new(
        applier: &'p Applier,
        plan: &'p Plan,
        client: kube::Client,
        cancel: &'p CancellationToken,
        hooks: Option<SyncHooks<'p>>,
    ) -> Self {
        let objects = plan.ordered.objects();
        let mut recorded_union = set_inventory(objects, |_| true);
        if let Some(previous) = &plan.previous {
            recorded_union = recorded_union.union(previous);
        }
        let inventory_namespace = applier
            .inventory
            .owner_labels()
            .get(OWNER_NAMESPACE_LABEL)
            .filter(|ns| plan.namespaces_made_here.contains(ns.as_str()))
            .and_then(|ns| {
                objects.iter().position(|o| {
                    o.id.group.is_empty() && o.id.kind == "Namespace" && &o.id.name == ns
                })
            });
        // A run cancelled already writes nothing, not even the record.
        let recorded = cancel.is_cancelled()
            || !plan
                .decisions
                .iter()
                .any(|d| matches!(d, Decision::Write { .. }));
        Self {
            applier,
            plan,
            run: Run {
                applier,
                client,
                options: &plan.options,
            },
            cancel,
            results: (0..objects.len()).map(|_| None).collect(),
            stop: None,
            wave_error: None,
            hooks,
            hook_error: None,
            recorded_union,
            stored: plan.previous.clone(),
            recorded,
            inventory_namespace,
        }
    }

    /// Records the inventory, then writes group by group.
    async fn write_all(
        mut self,
        progress: &mut (dyn FnMut(&ApplyProgress) + Send),
    ) -> Result<Written, ApplyError> {
        // Record what this run may write before its first write (the previous inventory and
        // the new set): an interruption at any point then leaves nothing untracked, and a bad
        // inventory location (a missing namespace, no permission) fails here, with nothing
        // written. Entries of objects never created are harmless: pruning one finds it gone.
        // When the inventory's namespace is one this run creates, the record follows the group
        // that creates it.
        if !self.recorded && self.inventory_namespace.is_none() {
            self.applier
                .record(&self.run.client, &self.recorded_union, &mut self.stored)
                .await
                .map_err(ApplyError::Inventory)?;
            self.recorded = true;
        }
        let plan = self.plan;
        let objects = plan.ordered.objects();
        let groups: Vec<usize> = plan.ordered.groups().map(<[_]>::len).collect();
        let count = groups.len();
        let mut start = 0;
        for (index, len) in groups.into_iter().enumerate() {
            let wave = objects[start].wave;
            if start == 0 || objects[start - 1].wave != wave {
                self.run_sync_hooks(Some(wave), progress).await;
            }
            self.write_group(start..start + len, (index, count), progress)
                .await?;
            start += len;
        }
        self.run_sync_hooks(None, progress).await;
        Ok(Written {
            results: self.results,
            stop: self.stop,
            wave_error: self.wave_error,
            hook_error: self.hook_error,
            stored: self.stored,
        })
    }

    /// Runs the Sync hooks due before the first group of wave `next` (those of a lower wave),
    /// or every one left when `next` is `None`; none once the run stopped or an object failed.
    /// A hook that fails stops the run.
    async fn run_sync_hooks(
        &mut self,
        next: Option<i64>,
        progress: &mut (dyn FnMut(&ApplyProgress) + Send),
    ) {
        let Some(hooks) = &mut self.hooks else {
            return;
        };
        let failed = self
            .results
            .iter()
            .any(|r| matches!(r, Some((ObjectAction::Failed, _, _))));
        let due = hooks
            .pending
            .iter()
            .take_while(|h| next.is_none_or(|wave| h.spec.weight < wave))
            .count();
        if self.stop.is_some() || failed || due == 0 {
            return;
        }
        let due: Vec<&PlannedHook> = hooks.pending.drain(..due).collect();
        let observe = &mut |run: &HookRun| progress(&ApplyProgress::Hook(run.clone()));
        let ran = hooks
            .runner
            .run_hooks_observed(&due, SyncPhase::Sync, hooks.runs, self.cancel, observe)
            .await;
        match ran {
            Ok(()) => {}
            Err(HookError::Cancelled) => self.stop = Some(Stop::Cancelled),
            Err(error) => {
                self.stop = Some(Stop::HookFailed);
                self.hook_error = Some(error);
            }
        }
    }

    /// Writes one group (objects in parallel), after the health gate of a new wave; CRDs and
    /// Namespaces written settle before the next group.
    async fn write_group(
        &mut self,
        range: Range<usize>,
        (group, groups): (usize, usize),
        progress: &mut (dyn FnMut(&ApplyProgress) + Send),
    ) -> Result<(), ApplyError> {
        let objects = self.plan.ordered.objects();
        if self.stop.is_none() && self.cancel.is_cancelled() {
            self.stop = Some(Stop::Cancelled);
        }
        // Health-gated waves: a new wave starts when every object of the waves before is
        // Current.
        if self.stop.is_none()
            && let Some(timeout) = self.plan.options.wait_between_waves
            && range.start > 0
            && objects[range.start].wave != objects[range.start - 1].wave
        {
            self.gate_wave(range.start, timeout, progress).await;
        }
        if let Some(why) = self.stop {
            for i in range {
                if matches!(self.plan.decisions[i], Decision::Write { .. }) {
                    self.results[i] = Some((ObjectAction::Skipped, why.reason(), None));
                }
            }
            return Ok(());
        }
        let mut failed = self.write_objects(range.clone()).await;
        failed |= self.settle(range.clone()).await;
        if !self.recorded
            && self
                .inventory_namespace
                .is_some_and(|i| written(self.results[i].as_ref()))
        {
            let client = &self.run.client;
            if let Err(error) = self
                .applier
                .record(client, &self.recorded_union, &mut self.stored)
                .await
            {
                tracing::warn!(error = %error, "could not record the inventory");
                return Err(ApplyError::Inventory(error));
            }
            self.recorded = true;
        }
        let results = &self.results[range];
        progress(&ApplyProgress::GroupDone {
            group,
            groups,
            written: results.iter().filter(|r| written(r.as_ref())).count(),
            failed: results
                .iter()
                .filter(|r| matches!(r, Some((ObjectAction::Failed, _, _))))
                .count(),
        });
        if failed && !self.plan.options.best_effort {
            self.stop = Some(Stop::EarlierGroupFailed);
        }
        Ok(())
    }

    /// Waits for the objects of the wave before `start` (written or unchanged) to be Current;
    /// when they do not become so, the run stops.
    async fn gate_wave(
        &mut self,
        start: usize,
        timeout: Duration,
        progress: &mut (dyn FnMut(&ApplyProgress) + Send),
    ) {
        let objects = self.plan.ordered.objects();
        let wave = objects[start - 1].wave;
        let targets: Vec<WaitTarget> = (0..start)
            .filter(|&i| {
                objects[i].wave == wave
                    && (written(self.results[i].as_ref())
                        || matches!(self.plan.decisions[i], Decision::Unchanged))
            })
            .map(|i| wait_target(&objects[i]))
            .collect();
        let next_wave = objects[start].wave;
        let waited = self
            .applier
            .wait_on(&self.run.client, &targets, timeout, self.cancel, |round| {
                progress(&ApplyProgress::WaveWaiting {
                    next_wave,
                    current: round.current,
                    total: round.total,
                });
            })
            .await;
        match waited {
            Ok(()) => {}
            Err(WaitError::Cancelled) => self.stop = Some(Stop::Cancelled),
            Err(error) => {
                self.stop = Some(Stop::EarlierGroupFailed);
                self.wave_error = Some(error);
            }
        }
    }

    /// Writes the objects of `range` to write, in parallel; whether one failed.
    async fn write_objects(&mut self, range: Range<usize>) -> bool {
        let this = &*self;
        let writes: Vec<_> = range
            .filter_map(|i| {
                let Decision::Write {
                    exists,
                    recreate,
                    takeover,
                    ref reason,
                } = this.plan.decisions[i]
                else {
                    return None;
                };
                let write = (exists, recreate, takeover, reason.clone());
                Some(async move { (i, this.write_one(i, write).await) })
            })
            .collect();
        let outcomes = futures::stream::iter(writes)
            .buffer_unordered(this.applier.concurrency)
            .collect::<Vec<_>>()
            .await;
        let mut failed = false;
        for (i, outcome) in outcomes {
            failed |= outcome.0 == ObjectAction::Failed;
            self.results[i] = Some(outcome);
        }
        failed
    }

    /// Writes object `i` as its decision says (`exists`, `recreate`, `takeover`, and the
    /// reason): taken over first when asked, recreated when its change is immutable.
    async fn write_one(
        &self,
        i: usize,
        (exists, mut recreate, takeover, reason): (bool, bool, bool, Reason),
    ) -> Outcome {
        let (run, plan) = (&self.run, self.plan);
        let object = &plan.ordered.objects()[i];
        let sent = plan.applied[i].as_ref().unwrap_or(&plan.desired[i]);
        // A recreate is a create: the object goes whole, the fields ignore rules leave out of
        // an update included (there is no owner left to keep them).
        let whole = &plan.desired[i];
        if takeover
            && let Some(live) = plan.live.get(&object.id)
            && let Err(error) = run.take_over(object, live).await
        {
            return (ObjectAction::Failed, Reason::TakeoverFailed, Some(error));
        }
        let result = if recreate {
            run.recreate(object, whole).await
        } else {
            match run.server_side_apply(object, sent, false, false).await {
                // Objects of kinds a CRD of this set defines had no dry run.
                Err(error)
                    if run.on_apply_error(object, &error, &NO_MANAGERS, false)
                        == Some(AfterError::Recreate) =>
                {
                    recreate = true;
                    run.recreate(object, whole).await
                }
                other => other,
            }
        };
        match result {
            Ok(()) if recreate => (ObjectAction::Recreated, Reason::ImmutableChanged, None),
            Ok(()) if exists => (ObjectAction::Configured, reason, None),
            Ok(()) => (ObjectAction::Created, reason, None),
            Err(error) => (ObjectAction::Failed, Reason::WriteFailed, Some(error)),
        }
    }

    /// Waits for the CRDs written in `range` to be Established and its Namespaces Active before
    /// the next group; whether one did not settle (each marked failed then).
    async fn settle(&mut self, range: Range<usize>) -> bool {
        let objects = self.plan.ordered.objects();
        let settle: Vec<usize> = range
            .filter(|&i| {
                let id = &objects[i].id;
                written(self.results[i].as_ref())
                    && ((id.group == "apiextensions.k8s.io"
                        && id.kind == "CustomResourceDefinition")
                        || (id.group.is_empty() && id.kind == "Namespace"))
            })
            .collect();
        if settle.is_empty() {
            return false;
        }
        if settle
            .iter()
            .any(|&i| objects[i].id.kind == "CustomResourceDefinition")
        {
            // The kinds the cluster serves changed: the next run discovers again.
            self.applier.catalog.invalidate().await;
        }
        let targets: Vec<WaitTarget> = settle.iter().map(|&i| wait_target(&objects[i])).collect();
        let applier = self.applier;
        let owner_labels = applier.inventory.owner_labels();
        let reads = WaitReads {
            page_size: applier.page_size,
            owner_labels: Some(&owner_labels),
        };
        let Err(error) = wait_for_current_paged(
            &self.run.client,
            &targets,
            &applier.health,
            (applier.settle_timeout, Duration::from_millis(100)),
            reads,
            self.cancel,
            |_| {},
        )
        .await
        else {
            return false;
        };
        let message = error.to_string();
        for i in settle {
            self.results[i] = Some((
                ObjectAction::Failed,
                Reason::DidNotSettle,
                Some(ObjectError::NotReady {
                    message: message.clone(),
                }),
            ));
        }
        true
    }
}

/// The objects whose inventory entry differs between the inventory a plan read (`before`) and
/// the one stored now: listed by one and not the other, or recorded at another apiVersion. No
/// inventory and an empty one are the same.
fn inventory_moves(before: Option<&Inventory>, now: Option<&Inventory>) -> Vec<ObjectId> {
    let empty = Inventory::default();
    let (before, now) = (before.unwrap_or(&empty), now.unwrap_or(&empty));
    if before == now {
        return Vec::new();
    }
    let versions = |inventory: &Inventory| -> BTreeMap<ObjectId, String> {
        inventory
            .iter()
            .map(|(id, version)| (id.clone(), version.to_owned()))
            .collect()
    };
    let (before, now) = (versions(before), versions(now));
    let mut moved: Vec<ObjectId> = before
        .iter()
        .filter(|(id, version)| now.get(*id) != Some(*version))
        .map(|(id, _)| id.clone())
        .collect();
    moved.extend(now.keys().filter(|id| !before.contains_key(*id)).cloned());
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(entries: &[(&str, &str)]) -> Inventory {
        let mut inventory = Inventory::default();
        for (id, version) in entries {
            inventory.insert(id.parse().unwrap(), *version);
        }
        inventory
    }

    #[test]
    fn inventory_moves_name_added_dropped_and_re_versioned_entries() {
        let before = inventory(&[
            ("shop_a__ConfigMap", "v1"),
            ("shop_b_apps_Deployment", "apps/v1"),
        ]);
        assert!(inventory_moves(Some(&before), Some(&before.clone())).is_empty());
        assert!(inventory_moves(None, Some(&Inventory::default())).is_empty());
        let now = inventory(&[
            ("shop_b_apps_Deployment", "apps/v1beta2"),
            ("shop_c__ConfigMap", "v1"),
        ]);
        let mut moved: Vec<String> = inventory_moves(Some(&before), Some(&now))
            .iter()
            .map(ToString::to_string)
            .collect();
        moved.sort();
        assert_eq!(
            moved,
            [
                "shop_a__ConfigMap",
                "shop_b_apps_Deployment",
                "shop_c__ConfigMap"
            ]
        );
        assert_eq!(inventory_moves(None, Some(&now)).len(), 2);
    }
}
