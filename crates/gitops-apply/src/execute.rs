//! The `apply` verb: executing a reviewed [`Plan`] (after checking it is not stale), and
//! `apply_set`, the one-call path (plan, then execute).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use gitops_core::ObjectId;
use tokio_util::sync::CancellationToken;

use crate::apply::{AfterError, Applier, Decision, NO_MANAGERS, Run, Stop};
use crate::change::{ChangeSet, ObjectAction, ObjectChange, PlannedAction, Reason};
use crate::counting::counting_client;
use crate::error::{ApplyError, ObjectError};
use crate::health::{WaitError, WaitProgress, WaitTarget, wait_for_current_paged};
use crate::inventory::{Inventory, OWNER_NAMESPACE_LABEL};
use crate::options::{ApplyOptions, ApplyProgress};
use crate::planner::{Plan, decide};
use crate::set::DesiredSet;
use crate::takeover::managers_taken_over;

/// What one written object came to.
type Outcome = (ObjectAction, Reason, Option<ObjectError>);

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
            .plan_with_progress(&desired, options, cancel, &mut progress)
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
        let (live, listed) = run.list_live(objects).await?;
        let owner_labels = self.inventory.owner_labels();
        let mut moved: Vec<ObjectId> = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            let now = live.get(&object.id);
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
            .stale_objects(&client, &plan.kinds, gone, &live, &listed)
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
        plan.live = live;
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
        let options = &plan.options;
        let run = Run {
            applier: self,
            client: client.clone(),
            options,
        };
        let objects = plan.ordered.objects();
        let decisions = &plan.decisions;
        let previous = &plan.previous;
        let live = &plan.live;
        let owner_labels = self.inventory.owner_labels();

        // Record what this run may write before its first write (the previous inventory and
        // the new set): an interruption at any point then leaves nothing untracked, and a bad
        // inventory location (a missing namespace, no permission) fails here, with nothing
        // written. Entries of objects never created are harmless: pruning one finds it gone.
        // When the inventory's namespace is one this run creates, the record follows the group
        // that creates it.
        let mut recorded_union = Inventory::default();
        for object in objects.iter().filter(|o| !o.synthesized) {
            recorded_union.insert(object.id.clone(), object.kind.resource.api_version.clone());
        }
        if let Some(previous) = previous {
            recorded_union = recorded_union.union(previous);
        }
        let mut stored = previous.clone();
        let inventory_namespace = owner_labels.get(OWNER_NAMESPACE_LABEL).cloned();
        let inventory_namespace_index = inventory_namespace
            .as_deref()
            .filter(|ns| plan.namespaces_made_here.contains(*ns))
            .and_then(|ns| {
                objects.iter().position(|o| {
                    o.id.group.is_empty() && o.id.kind == "Namespace" && o.id.name == ns
                })
            });
        // A run cancelled already writes nothing, not even the record.
        let mut recorded = cancel.is_cancelled()
            || !decisions
                .iter()
                .any(|d| matches!(d, Decision::Write { .. }));
        if !recorded && inventory_namespace_index.is_none() {
            self.record(&client, &recorded_union, &mut stored)
                .await
                .map_err(ApplyError::Inventory)?;
            recorded = true;
        }

        // Write group by group.
        let mut results: Vec<Option<Outcome>> = (0..objects.len()).map(|_| None).collect();
        let mut offset = 0;
        let mut stop: Option<Stop> = None;
        let mut wave_error: Option<WaitError> = None;
        let groups: Vec<usize> = plan.ordered.groups().map(<[_]>::len).collect();
        let group_count = groups.len();
        for (group_index, group_len) in groups.into_iter().enumerate() {
            let range = offset..offset + group_len;
            offset += group_len;
            if stop.is_none() && cancel.is_cancelled() {
                stop = Some(Stop::Cancelled);
            }
            // Health-gated waves: a new wave starts when every object of the waves before is
            // Current.
            if stop.is_none()
                && let Some(timeout) = options.wait_between_waves
                && range.start > 0
                && objects[range.start].wave != objects[range.start - 1].wave
            {
                let targets: Vec<WaitTarget> = (0..range.start)
                    .filter(|&i| {
                        objects[i].wave == objects[range.start - 1].wave
                            && (written(results[i].as_ref())
                                || matches!(decisions[i], Decision::Unchanged))
                    })
                    .map(|i| WaitTarget {
                        id: objects[i].id.clone(),
                        resource: objects[i].kind.resource.clone(),
                    })
                    .collect();
                let next_wave = objects[range.start].wave;
                let waited = wait_for_current_paged(
                    &client,
                    &targets,
                    &self.health,
                    (timeout, self.wait_interval),
                    self.page_size,
                    cancel,
                    |round: &WaitProgress| {
                        progress(&ApplyProgress::WaveWaiting {
                            next_wave,
                            current: round.current,
                            total: round.total,
                        });
                    },
                )
                .await;
                if let Err(error) = waited {
                    stop = Some(if matches!(error, WaitError::Cancelled) {
                        Stop::Cancelled
                    } else {
                        Stop::EarlierGroupFailed
                    });
                    if !matches!(error, WaitError::Cancelled) {
                        wave_error = Some(error);
                    }
                }
            }
            if let Some(why) = stop {
                for i in range {
                    if matches!(decisions[i], Decision::Write { .. }) {
                        results[i] = Some((ObjectAction::Skipped, why.reason(), None));
                    }
                }
                continue;
            }
            let writes: Vec<_> = range
                .clone()
                .filter_map(|i| {
                    let Decision::Write {
                        exists,
                        recreate,
                        takeover,
                        ref reason,
                    } = decisions[i]
                    else {
                        return None;
                    };
                    let run = &run;
                    let object = &objects[i];
                    let sent = plan.applied[i].as_ref().unwrap_or(&plan.desired[i]);
                    // A recreate is a create: the object goes whole, the fields ignore rules
                    // leave out of an update included (there is no owner left to keep them).
                    let whole = &plan.desired[i];
                    let live = live.get(&object.id).filter(|_| takeover);
                    let applied = reason.clone();
                    Some(async move {
                        if let Some(live) = live
                            && let Err(error) = run.take_over(object, live).await
                        {
                            return (
                                i,
                                (ObjectAction::Failed, Reason::TakeoverFailed, Some(error)),
                            );
                        }
                        let mut recreate = recreate;
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
                        let outcome = match result {
                            Ok(()) if recreate => {
                                (ObjectAction::Recreated, Reason::ImmutableChanged, None)
                            }
                            Ok(()) if exists => (ObjectAction::Configured, applied, None),
                            Ok(()) => (ObjectAction::Created, applied, None),
                            Err(error) => (ObjectAction::Failed, Reason::WriteFailed, Some(error)),
                        };
                        (i, outcome)
                    })
                })
                .collect();
            let writes = futures::stream::iter(writes)
                .buffer_unordered(self.concurrency)
                .collect::<Vec<_>>()
                .await;
            let mut group_failed = false;
            for (i, outcome) in writes {
                group_failed |= outcome.0 == ObjectAction::Failed;
                results[i] = Some(outcome);
            }
            // CRDs must be Established and Namespaces Active before the next group.
            let settle: Vec<(usize, WaitTarget)> = range
                .clone()
                .filter(|i| {
                    let id = &objects[*i].id;
                    written(results[*i].as_ref())
                        && ((id.group == "apiextensions.k8s.io"
                            && id.kind == "CustomResourceDefinition")
                            || (id.group.is_empty() && id.kind == "Namespace"))
                })
                .map(|i| {
                    (
                        i,
                        WaitTarget {
                            id: objects[i].id.clone(),
                            resource: objects[i].kind.resource.clone(),
                        },
                    )
                })
                .collect();
            if settle
                .iter()
                .any(|(_, t)| t.id.kind == "CustomResourceDefinition")
            {
                // The kinds the cluster serves changed: the next run discovers again.
                self.catalog.invalidate().await;
            }
            if !settle.is_empty() {
                let targets: Vec<WaitTarget> = settle.iter().map(|(_, t)| t.clone()).collect();
                if let Err(error) = wait_for_current_paged(
                    &client,
                    &targets,
                    &self.health,
                    (self.settle_timeout, Duration::from_millis(100)),
                    self.page_size,
                    cancel,
                    |_| {},
                )
                .await
                {
                    group_failed = true;
                    let message = error.to_string();
                    for (i, _) in &settle {
                        results[*i] = Some((
                            ObjectAction::Failed,
                            Reason::DidNotSettle,
                            Some(ObjectError::NotReady {
                                message: message.clone(),
                            }),
                        ));
                    }
                }
            }
            if !recorded && inventory_namespace_index.is_some_and(|i| written(results[i].as_ref()))
            {
                if let Err(error) = self.record(&client, &recorded_union, &mut stored).await {
                    tracing::warn!(error = %error, "could not record the inventory");
                    return Err(ApplyError::Inventory(error));
                }
                recorded = true;
            }
            progress(&ApplyProgress::GroupDone {
                group: group_index,
                groups: group_count,
                written: range
                    .clone()
                    .filter(|i| written(results[*i].as_ref()))
                    .count(),
                failed: range
                    .clone()
                    .filter(|i| matches!(results[*i], Some((ObjectAction::Failed, _, _))))
                    .count(),
            });
            if group_failed && !options.best_effort {
                stop = Some(Stop::EarlierGroupFailed);
            }
        }

        let mut change_set = ChangeSet::default();
        let mut any_failed = false;
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
        for ((object, decision), result) in ordered.objects().iter().zip(decisions).zip(results) {
            let (action, reason, error) = match (decision, result) {
                (_, Some(outcome)) => outcome,
                (Decision::Skip(reason), None) => (ObjectAction::Skipped, reason, None),
                (Decision::OwnedElsewhere(error), None) => (
                    ObjectAction::Skipped,
                    Reason::OwnedByOtherInventory,
                    Some(error),
                ),
                (Decision::Unchanged, None) => (ObjectAction::Unchanged, Reason::InSync, None),
                (Decision::Failed(error), None) => {
                    (ObjectAction::Failed, Reason::ValidationFailed, Some(error))
                }
                (Decision::Write { .. }, None) => (ObjectAction::Skipped, Reason::NotWritten, None),
            };
            any_failed |= action == ObjectAction::Failed;
            let health = (action == ObjectAction::Unchanged)
                .then(|| live.get(&object.id).map(|live| self.health.check(live)))
                .flatten();
            change_set.changes.push(ObjectChange {
                id: object.id.clone(),
                origin: Some(object.manifest.origin().clone()),
                resource: object.kind.resource.clone(),
                action,
                reason,
                error,
                diff: None,
                health,
            });
        }
        let objects = ordered.objects();

        // The inventory: never forget an object this run may have written.
        let mut inventory = Inventory::default();
        for object in objects.iter().filter(|o| !o.synthesized) {
            inventory.insert(object.id.clone(), object.kind.resource.api_version.clone());
        }
        if any_failed {
            // What the cluster serves may have changed under the run (a CRD deleted by hand):
            // the next run discovers again.
            self.catalog.invalidate().await;
        }
        let incomplete = any_failed || stop == Some(Stop::Cancelled) || wave_error.is_some();
        if incomplete {
            // Only what this run attempted (a failed write may still have reached the server)
            // joins what the previous inventory lists.
            let attempted: HashSet<&ObjectId> = change_set
                .changes
                .iter()
                .filter(|c| c.action != ObjectAction::Skipped)
                .map(|c| &c.id)
                .collect();
            inventory = Inventory::default();
            for object in objects
                .iter()
                .filter(|o| !o.synthesized && attempted.contains(&o.id))
            {
                inventory.insert(object.id.clone(), object.kind.resource.api_version.clone());
            }
            if let Some(previous) = &previous {
                for (id, version) in previous.iter() {
                    if !inventory.contains(id) {
                        inventory.insert(id.clone(), version);
                    }
                }
            }
        } else if prune && previous.is_some() {
            self.prune_stale(&client, stale, &mut inventory, &mut change_set, cancel)
                .await;
        } else if !may_prune && let Some(previous) = &previous {
            // A set that may not prune (not from a render) forgets nothing the inventory lists.
            inventory = inventory.union(previous);
        }
        // An unchanged inventory is not written either: a no-change run writes nothing.
        let saved = if stored.as_ref().unwrap_or(&Inventory::default()) == &inventory {
            Ok(())
        } else {
            self.inventory
                .save(&client, &inventory, &self.field_manager)
                .await
        };
        change_set.requests = counter.get();
        change_set.request_counts = counter.counts();
        if stop == Some(Stop::Cancelled) || cancel.is_cancelled() {
            return Err(ApplyError::Cancelled {
                change_set: Box::new(change_set),
            });
        }
        if let Some(source) = wave_error {
            if let Err(error) = &saved {
                tracing::warn!(error = %error, "could not save the inventory after a failed run");
            }
            return Err(ApplyError::Unhealthy {
                change_set: Box::new(change_set),
                source,
            });
        }
        if change_set.count(ObjectAction::Failed) > 0 {
            if let Err(error) = &saved {
                tracing::warn!(error = %error, "could not save the inventory after a failed run");
            }
            return Err(ApplyError::Incomplete {
                change_set: Box::new(change_set),
            });
        }
        saved.map_err(ApplyError::Inventory)?;
        if let Some(timeout) = options.wait {
            let targets = change_set.wait_targets();
            let waited = wait_for_current_paged(
                &client,
                &targets,
                &self.health,
                (timeout, self.wait_interval),
                self.page_size,
                cancel,
                |round: &WaitProgress| {
                    progress(&ApplyProgress::Waiting {
                        current: round.current,
                        total: round.total,
                    });
                },
            )
            .await;
            change_set.requests = counter.get();
            change_set.request_counts = counter.counts();
            match waited {
                Ok(()) => {}
                Err(WaitError::Cancelled) => {
                    return Err(ApplyError::Cancelled {
                        change_set: Box::new(change_set),
                    });
                }
                Err(source) => {
                    return Err(ApplyError::Unhealthy {
                        change_set: Box::new(change_set),
                        source,
                    });
                }
            }
        }
        Ok(change_set)
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
