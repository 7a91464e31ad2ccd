//! The `prune`, `delete_all` and `wait` verbs.

use std::time::Duration;

use gitops_core::ObjectId;
use kube::api::{DeleteParams, PropagationPolicy};
use tokio_util::sync::CancellationToken;

use crate::apply::{Applier, object_api, prunable, to_value};
use crate::change::{ChangeSet, ObjectAction, ObjectChange, PlannedAction, Reason};
use crate::counting::{RequestCounter, counting_client};
use crate::error::{ApplyError, ObjectError};
use crate::health::{WaitError, WaitProgress, WaitReads, WaitTarget, wait_for_current_paged};
use crate::hooks::DEFAULT_HOOK_TIMEOUT;
use crate::inventory::Inventory;
use crate::planner::StaleObject;

impl Applier {
    /// Prunes `stale` (from [`Plan::stale`](crate::Plan::stale)) alone: each object, in the
    /// order given (the plan's reverse apply order), is read and deleted if it still carries
    /// our ownership labels and does not disable pruning; then the inventory forgets what is
    /// gone. Objects the plan left alone are left alone.
    ///
    /// ```no_run
    /// # use gitops_apply::{Applier, ApplyOptions, DesiredSet};
    /// # async fn example(applier: Applier, set: DesiredSet) -> Result<(), gitops_apply::ApplyError> {
    /// let cancel = tokio_util::sync::CancellationToken::new();
    /// let plan = applier.plan(&set, &ApplyOptions::default(), &cancel).await?;
    /// let pruned = applier.prune(plan.stale(), &cancel).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ApplyError::Inventory`] when the inventory cannot be read or saved;
    /// [`ApplyError::Incomplete`] when a deletion failed (the inventory keeps that object);
    /// [`ApplyError::Cancelled`].
    pub async fn prune(
        &self,
        stale: &[StaleObject],
        cancel: &CancellationToken,
    ) -> Result<ChangeSet, ApplyError> {
        let counter = RequestCounter::default();
        let client = counting_client(&self.client, &counter);
        let previous = self
            .inventory
            .load(&client)
            .await
            .map_err(ApplyError::Inventory)?
            .unwrap_or_default();
        let stale: Vec<StaleObject> = stale
            .iter()
            .filter(|s| s.action != PlannedAction::Skip)
            .cloned()
            .collect();
        // What the inventory keeps: everything but the objects pruned here.
        let mut inventory = Inventory::default();
        for (id, version) in previous.iter() {
            if !stale.iter().any(|s| &s.id == id) {
                inventory.insert(id.clone(), version);
            }
        }
        let mut change_set = ChangeSet::default();
        self.prune_stale(&client, stale, &mut inventory, &mut change_set, cancel)
            .await;
        self.finish_deletions(&client, &counter, previous, inventory, change_set, cancel)
            .await
    }

    /// For finalizers: deletes everything the inventory lists, in reverse apply order (stage and
    /// kind, then namespace and name), each only if it still carries our ownership labels and
    /// does not disable pruning; then the hook objects of this inventory left in the cluster
    /// (found by their hook labels, every served kind listed once); then deletes the inventory
    /// itself (kept when a deletion failed, listing what remains).
    ///
    /// ```no_run
    /// # async fn example(applier: gitops_apply::Applier) -> Result<(), gitops_apply::ApplyError> {
    /// let deleted = applier.delete_all(&tokio_util::sync::CancellationToken::new()).await?;
    /// println!("{} pruned", deleted.count(gitops_apply::ObjectAction::Pruned));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ApplyError::Discovery`] or [`ApplyError::Catalog`] when the kinds cannot be read,
    /// [`ApplyError::Inventory`], [`ApplyError::Incomplete`] when a deletion failed,
    /// [`ApplyError::Cancelled`].
    pub async fn delete_all(&self, cancel: &CancellationToken) -> Result<ChangeSet, ApplyError> {
        let counter = RequestCounter::default();
        let client = counting_client(&self.client, &counter);
        let Some(previous) = self
            .inventory
            .load(&client)
            .await
            .map_err(ApplyError::Inventory)?
        else {
            return Ok(ChangeSet {
                requests: counter.get(),
                request_counts: counter.counts(),
                ..ChangeSet::default()
            });
        };
        let kinds = self
            .catalog
            .kinds(&client, &[])
            .await
            .map_err(ApplyError::from_catalog)?;
        let gone: Vec<(ObjectId, String)> = previous
            .iter()
            .map(|(id, version)| (id.clone(), version.to_owned()))
            .collect();
        let stale = self
            .stale_objects(&client, &kinds, gone, &crate::live::Live::default())
            .await?;
        let mut inventory = Inventory::default();
        let mut change_set = ChangeSet::default();
        self.prune_stale(&client, stale, &mut inventory, &mut change_set, cancel)
            .await;
        // The hook objects their delete policies kept go too (they carry hook labels, not the
        // inventory), as Argo CD deletes every object of an application, hooks included.
        if !cancel.is_cancelled() {
            let runner = self.hook_runner(client.clone(), DEFAULT_HOOK_TIMEOUT);
            change_set
                .changes
                .extend(runner.delete_left_over(&kinds, cancel).await);
        }
        let failed = change_set.count(ObjectAction::Failed) > 0;
        if inventory.is_empty() && !failed && !cancel.is_cancelled() {
            self.inventory
                .delete(&client)
                .await
                .map_err(ApplyError::Inventory)?;
            change_set.requests = counter.get();
            change_set.request_counts = counter.counts();
            return Ok(change_set);
        }
        self.finish_deletions(&client, &counter, previous, inventory, change_set, cancel)
            .await
    }

    /// Saves what the inventory keeps after deletions and turns failures into errors.
    async fn finish_deletions(
        &self,
        client: &kube::Client,
        counter: &RequestCounter,
        previous: Inventory,
        inventory: Inventory,
        mut change_set: ChangeSet,
        cancel: &CancellationToken,
    ) -> Result<ChangeSet, ApplyError> {
        let saved = if inventory == previous {
            Ok(())
        } else {
            self.inventory
                .save(client, &inventory, &self.field_manager)
                .await
        };
        change_set.requests = counter.get();
        change_set.request_counts = counter.counts();
        if cancel.is_cancelled() {
            return Err(ApplyError::Cancelled {
                change_set: Box::new(change_set),
            });
        }
        if change_set.count(ObjectAction::Failed) > 0 {
            if let Err(error) = &saved {
                tracing::warn!(error = %error, "could not save the inventory after a failed prune");
            }
            return Err(ApplyError::Incomplete {
                change_set: Box::new(change_set),
            });
        }
        saved.map_err(ApplyError::Inventory)?;
        Ok(change_set)
    }

    /// Waits up to `timeout` for every target to be Current (health by the applier's
    /// [`HealthChecks`](crate::HealthChecks), lists paged by its page size), failing fast on the
    /// first Failed object.
    ///
    /// Each round lists the pending objects of a kind and namespace by the inventory's
    /// ownership labels ([`InventoryStore::owner_labels`](crate::InventoryStore::owner_labels)),
    /// as the plan reads them: a namespace crowded with other objects is not read whole on
    /// every round. A pending object that list misses (its labels removed by hand, or gone) is
    /// read alone while such objects are few, its kind and namespace listed unfiltered when
    /// they are many; the health seen is the same either way.
    ///
    /// ```no_run
    /// # async fn example(applier: gitops_apply::Applier, changes: gitops_apply::ChangeSet) {
    /// let cancel = tokio_util::sync::CancellationToken::new();
    /// let waited = applier
    ///     .wait(&changes.wait_targets(), std::time::Duration::from_secs(60), &cancel, |_| {})
    ///     .await;
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`WaitError`]: an object Failed, the timeout passed, reading failed, or cancelled.
    pub async fn wait(
        &self,
        targets: &[WaitTarget],
        timeout: Duration,
        cancel: &CancellationToken,
        progress: impl FnMut(&WaitProgress),
    ) -> Result<(), WaitError> {
        self.wait_on(&self.client, targets, timeout, cancel, progress)
            .await
    }

    /// [`Applier::wait`] through a run's (counting) client.
    pub(crate) async fn wait_on(
        &self,
        client: &kube::Client,
        targets: &[WaitTarget],
        timeout: Duration,
        cancel: &CancellationToken,
        progress: impl FnMut(&WaitProgress),
    ) -> Result<(), WaitError> {
        let owner_labels = self.inventory.owner_labels();
        let reads = WaitReads {
            page_size: self.page_size,
            owner_labels: Some(&owner_labels),
        };
        wait_for_current_paged(
            client,
            targets,
            &self.health,
            (timeout, self.wait_interval),
            reads,
            cancel,
            progress,
        )
        .await
    }

    /// Deletes `stale` in the order given (reverse apply order), each if it still carries our
    /// ownership labels and does not disable pruning, reading it first; what is not deleted
    /// (a failure, cancellation, a read error) stays in `inventory`.
    pub(crate) async fn prune_stale(
        &self,
        client: &kube::Client,
        stale: Vec<StaleObject>,
        inventory: &mut Inventory,
        change_set: &mut ChangeSet,
        cancel: &CancellationToken,
    ) {
        let owner_labels = self.inventory.owner_labels();
        let mut crd_pruned = false;
        for stale in stale {
            let resource = stale.resource();
            let id = stale.id.clone();
            let version = stale.api_version.clone();
            let mut entry = |action, reason: Reason, error| {
                change_set.changes.push(ObjectChange {
                    id: id.clone(),
                    origin: None,
                    resource: resource.clone(),
                    action,
                    reason,
                    error,
                    diff: None,
                    health: None,
                });
            };
            let Some(kind) = &stale.kind else {
                // The kind is no longer served (its CRD went): so are its objects.
                entry(ObjectAction::Pruned, Reason::KindNoLongerServed, None);
                continue;
            };
            if cancel.is_cancelled() {
                inventory.insert(id.clone(), &version);
                entry(ObjectAction::Skipped, Reason::Cancelled, None);
                continue;
            }
            let api = object_api(client, kind, id.namespace.as_deref());
            let live = match api.get_opt(&id.name).await {
                Ok(live) => live,
                Err(e) => {
                    inventory.insert(id.clone(), &version);
                    entry(
                        ObjectAction::Failed,
                        Reason::ReadFailed,
                        Some(ObjectError::from_kube_about(&id, None, e)),
                    );
                    continue;
                }
            };
            let Some(live) = live else {
                entry(ObjectAction::Pruned, Reason::AlreadyGone, None);
                continue;
            };
            if let Err(why) = prunable(&to_value(&live, &kind.resource), &owner_labels) {
                entry(ObjectAction::Skipped, why, None);
                continue;
            }
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            let reason = if stale.reason == Reason::IgnoredExtraneous {
                Reason::IgnoredExtraneous
            } else {
                Reason::LeftTheSet
            };
            match api.delete(&id.name, &params).await {
                Ok(_) => {
                    crd_pruned |= id.kind == "CustomResourceDefinition";
                    entry(ObjectAction::Pruned, reason, None);
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    entry(ObjectAction::Pruned, Reason::AlreadyGone, None);
                }
                Err(e) => {
                    inventory.insert(id.clone(), &version);
                    entry(
                        ObjectAction::Failed,
                        Reason::DeleteFailed,
                        Some(ObjectError::from_kube_about(&id, None, e)),
                    );
                }
            }
        }
        if crd_pruned {
            self.catalog.invalidate().await;
        }
    }
}
