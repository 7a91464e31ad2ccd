//! The applier: plan, validate, write in order, prune, and the change set it returns.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use gitops_core::{Manifest, ObjectId, Origin};
use gitops_diff::{DiffError, Differ, ObjectDiff, Schema};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PropagationPolicy,
};
use kube::discovery::{ApiResource, Discovery};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::change::{ChangeSet, ObjectAction, ObjectChange, Reason};
use crate::counting::{RequestCounter, counting_client};
use crate::error::{ApplyError, CascadingLoss, ObjectError};
use crate::health::{HealthChecks, WaitError, WaitProgress, WaitTarget, wait_for_current_paged};
use crate::inventory::{
    Inventory, InventoryError, InventoryStore, OWNER_NAME_LABEL, OWNER_NAMESPACE_LABEL,
};
use crate::options::{ApplyOptions, ApplyProgress};
use crate::plan::{
    DefaultStaging, KindInfo, KindTable, OrderOptions, PlannedObject, Staging, order,
};
use crate::set::DesiredSet;
use crate::takeover::{managed_fields_after_takeover, managers_taken_over};

/// The field manager used unless another is given.
pub const DEFAULT_FIELD_MANAGER: &str = "gitops-rs";

/// Builds an [`Applier`].
#[must_use]
pub struct ApplierBuilder {
    applier: Applier,
}

impl ApplierBuilder {
    /// The field manager of server-side apply (default [`DEFAULT_FIELD_MANAGER`]).
    pub fn field_manager(mut self, field_manager: impl Into<String>) -> Self {
        self.applier.field_manager = field_manager.into();
        self
    }

    /// What counts as a stage (default [`DefaultStaging`]).
    pub fn staging(mut self, staging: impl Staging + 'static) -> Self {
        self.applier.staging = Arc::new(staging);
        self
    }

    /// The health checks used when waiting and for [`ObjectChange::health`] (default: the
    /// built-in ones).
    pub fn health_checks(mut self, health: HealthChecks) -> Self {
        self.applier.health = health;
        self
    }

    /// How many writes of one group run at once (default 16, at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.applier.concurrency = concurrency.max(1);
        self
    }

    /// How long to wait for CRDs to be Established, Namespaces Active and recreated objects to
    /// be gone (default 60 s).
    pub fn settle_timeout(mut self, timeout: Duration) -> Self {
        self.applier.settle_timeout = timeout;
        self
    }

    /// How often the health of the set is polled with [`ApplyOptions::wait`] (default 1 s).
    pub fn wait_interval(mut self, interval: Duration) -> Self {
        self.applier.wait_interval = interval;
        self
    }

    /// How many objects a list reads per page (default [`crate::DEFAULT_PAGE_SIZE`], at least
    /// 1). Every list of a run (the live objects, health) is paginated, and starts again when
    /// its continue token expires.
    ///
    /// ```no_run
    /// # fn example(client: kube::Client) -> Result<(), gitops_apply::InventoryError> {
    /// let inventory = gitops_apply::ConfigMapInventory::new("flux-system", "apps")?;
    /// let applier = gitops_apply::Applier::builder(client, inventory).page_size(200).build();
    /// # Ok(())
    /// # }
    /// ```
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.applier.page_size = page_size.max(1);
        self
    }

    /// The applier.
    pub fn build(self) -> Applier {
        self.applier
    }
}

/// Applies sets of objects with server-side apply, keeping an inventory to prune what leaves the
/// set.
///
/// ```no_run
/// use gitops_apply::{Applier, ApplyOptions, ConfigMapInventory, DesiredSet};
/// # async fn example(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let inventory = ConfigMapInventory::new("flux-system", "apps")?;
/// let applier = Applier::builder(client, inventory).field_manager("my-controller").build();
/// let set = DesiredSet::from_render(gitops_core::parse_manifests(
///     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: apps}\n", "a.yaml"))?;
/// let changes = applier
///     .apply_set(set, &ApplyOptions::default(), &tokio_util::sync::CancellationToken::new())
///     .await?;
/// println!("{changes}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Applier {
    client: kube::Client,
    inventory: Arc<dyn InventoryStore>,
    field_manager: String,
    staging: Arc<dyn Staging>,
    health: HealthChecks,
    concurrency: usize,
    settle_timeout: Duration,
    wait_interval: Duration,
    page_size: u32,
}

impl fmt::Debug for Applier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Applier")
            .field("field_manager", &self.field_manager)
            .field("concurrency", &self.concurrency)
            .field("settle_timeout", &self.settle_timeout)
            .finish_non_exhaustive()
    }
}

/// Why the remaining groups of a run are not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    EarlierGroupFailed,
}

impl Stop {
    fn reason(self) -> Reason {
        match self {
            Self::Cancelled => Reason::Cancelled,
            Self::EarlierGroupFailed => Reason::EarlierGroupFailed,
        }
    }
}

/// How a run goes on after an error of a server-side apply it can live with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterError {
    /// Go on (write as planned).
    Proceed,
    /// Delete the object and create it again.
    Recreate,
    /// Only managers taken over conflict: validate again taking their fields, as the write
    /// will after the takeover (a conflict is found before validation, so it hides errors).
    ValidateTakingOver,
}

/// No managers taken over.
static NO_MANAGERS: BTreeSet<String> = BTreeSet::new();

/// What to do with one planned object, decided before any write.
#[derive(Debug)]
enum Decision {
    Skip(Reason),
    OwnedElsewhere(ObjectError),
    Unchanged,
    Write {
        exists: bool,
        recreate: bool,
        takeover: bool,
        reason: Reason,
    },
    Failed(ObjectError),
}

fn object_api(
    client: &kube::Client,
    kind: &KindInfo,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) if kind.namespaced => Api::namespaced_with(client.clone(), ns, &kind.resource),
        _ => Api::all_with(client.clone(), &kind.resource),
    }
}

fn to_value(object: &DynamicObject, resource: &ApiResource) -> Value {
    let mut value = serde_json::to_value(object).expect("objects serialise");
    value["apiVersion"] = Value::String(resource.api_version.clone());
    value["kind"] = Value::String(resource.kind.clone());
    value
}

struct Run<'a> {
    applier: &'a Applier,
    client: kube::Client,
    options: &'a ApplyOptions,
}

impl Run<'_> {
    fn params(&self, force: bool, dry_run: bool) -> PatchParams {
        let mut params = PatchParams::apply(&self.applier.field_manager).validation_strict();
        if force {
            params = params.force();
        }
        if dry_run {
            params = params.dry_run();
        }
        params
    }

    /// A server-side apply of `desired` (a dry run when `dry_run`), forced when the call or the
    /// object asks for it or when `take_conflicts` (a dry run of an object being taken over).
    async fn server_side_apply(
        &self,
        object: &PlannedObject,
        desired: &Value,
        dry_run: bool,
        take_conflicts: bool,
    ) -> Result<(), ObjectError> {
        let api = object_api(&self.client, &object.kind, object.id.namespace.as_deref());
        let force = self.options.force || object.policy.force || take_conflicts;
        let params = self.params(force, dry_run);
        let mut attempt = 0;
        loop {
            match api
                .patch(&object.id.name, &params, &Patch::Apply(desired))
                .await
            {
                Ok(_) => return Ok(()),
                // A kind whose CRD was just established can take a moment to be served.
                Err(kube::Error::Api(status))
                    if status.code == 404 && !object.kind.served && attempt < 25 =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(ObjectError::from_kube_about(&object.id, Some(desired), e)),
            }
        }
    }

    /// Moves the fields the managers of [`ApplyOptions::takeover`] own into our `Apply` entry
    /// of managedFields (a JSON patch guarded by the resourceVersion), so that the apply that
    /// follows owns (and may remove) them.
    async fn take_over(&self, object: &PlannedObject, live: &Value) -> Result<(), ObjectError> {
        let Some(entries) = managed_fields_after_takeover(
            live,
            &self.options.takeover,
            &self.applier.field_manager,
        ) else {
            return Ok(());
        };
        let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
            {"op": "test", "path": "/metadata/resourceVersion",
             "value": live.pointer("/metadata/resourceVersion")},
            {"op": "replace", "path": "/metadata/managedFields", "value": entries},
        ]))
        .expect("a well-formed JSON patch");
        let api = object_api(&self.client, &object.kind, object.id.namespace.as_deref());
        api.patch(
            &object.id.name,
            &PatchParams::default(),
            &Patch::<()>::Json(patch),
        )
        .await
        .map_err(|e| ObjectError::from_kube_about(&object.id, Some(live), e))?;
        Ok(())
    }

    /// The one place that decides what a failed server-side apply of `object` (the dry run or
    /// the write) means, `None` being a failure of the object: an immutable change is
    /// recreated when the call or the object opts in; conflicts only with managers taken over
    /// (`taken_over`) are no failure, as their fields are ours once taken over and the write
    /// follows the takeover, but the dry run is repeated taking those fields, to validate what
    /// the write will send; a 404 of an object whose namespace this run creates
    /// (`namespace_made_here`, only known in the dry run) is no failure either.
    fn on_apply_error(
        &self,
        object: &PlannedObject,
        error: &ObjectError,
        taken_over: &BTreeSet<String>,
        namespace_made_here: bool,
    ) -> Option<AfterError> {
        match error {
            ObjectError::Immutable { .. }
                if self.options.recreate_on_immutable || object.policy.recreate =>
            {
                Some(AfterError::Recreate)
            }
            ObjectError::Conflict { conflicts }
                if !taken_over.is_empty()
                    && conflicts.iter().all(|c| taken_over.contains(&c.manager)) =>
            {
                Some(AfterError::ValidateTakingOver)
            }
            ObjectError::Rejected { code: 404, .. } if namespace_made_here => {
                Some(AfterError::Proceed)
            }
            _ => None,
        }
    }

    async fn recreate(&self, object: &PlannedObject, desired: &Value) -> Result<(), ObjectError> {
        let api = object_api(&self.client, &object.kind, object.id.namespace.as_deref());
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api.delete(&object.id.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(ObjectError::from_kube_about(&object.id, Some(desired), e)),
        }
        let start = Instant::now();
        while api
            .get_opt(&object.id.name)
            .await
            .map_err(|e| ObjectError::from_kube_about(&object.id, Some(desired), e))?
            .is_some()
        {
            if start.elapsed() > self.applier.settle_timeout {
                return Err(ObjectError::NotReady {
                    message: format!(
                        "still present {:?} after its deletion",
                        self.applier.settle_timeout
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.server_side_apply(object, desired, false, false).await
    }

    /// The Namespaces and CRDs that left the set, would be pruned (they exist, carry the
    /// ownership labels and allow pruning) and whose deletion would delete objects of the set.
    async fn cascading_losses(
        &self,
        kinds: &KindTable,
        previous: &Inventory,
        objects: &[PlannedObject],
    ) -> Result<Vec<CascadingLoss>, ApplyError> {
        let desired: HashSet<&ObjectId> = objects.iter().map(|o| &o.id).collect();
        let owner_labels = self.applier.inventory.owner_labels();
        let mut losses = Vec::new();
        for (id, version) in previous.iter().filter(|(id, _)| !desired.contains(id)) {
            let lost = cascade_of(id, objects);
            if lost.is_empty() {
                continue;
            }
            let Some(kind) = resolve_inventory_kind(kinds, id, version) else {
                continue;
            };
            let api = object_api(&self.client, kind, None);
            let live = api
                .get_opt(&id.name)
                .await
                .map_err(|source| ApplyError::Read {
                    id: id.clone(),
                    source: source.into(),
                })?;
            if live.is_some_and(|live| prunable(&live, &owner_labels).is_ok()) {
                losses.push(CascadingLoss {
                    pruned: id.clone(),
                    lost: lost.into_iter().cloned().collect(),
                });
            }
        }
        Ok(losses)
    }

    async fn list_live(
        &self,
        objects: &[PlannedObject],
    ) -> Result<HashMap<ObjectId, Value>, ApplyError> {
        let mut keys: Vec<(&KindInfo, Option<&str>)> = Vec::new();
        let mut seen = HashSet::new();
        for object in objects.iter().filter(|o| o.kind.served) {
            let namespace = object.id.namespace.as_deref();
            if seen.insert((
                &object.kind.resource.api_version,
                &object.kind.resource.plural,
                namespace,
            )) {
                keys.push((&object.kind, namespace));
            }
        }
        let lists: Vec<_> = keys
            .into_iter()
            .map(|(kind, namespace)| async move {
                let api = object_api(&self.client, kind, namespace);
                let page_size = self.applier.page_size;
                match crate::paging::list_all(&api, &ListParams::default(), page_size).await {
                    Ok(list) => Ok(list
                        .iter()
                        .map(|o| to_value(o, &kind.resource))
                        .collect::<Vec<_>>()),
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
                    Err(source) => Err(ApplyError::List {
                        plural: kind.resource.plural.clone(),
                        namespace: namespace.unwrap_or("the cluster").to_owned(),
                        source: source.into(),
                    }),
                }
            })
            .collect();
        // Futures collected first: the stream then holds no closure, which keeps the future of
        // a run provably Send (tokio::spawn).
        let lists = futures::stream::iter(lists)
            .buffer_unordered(self.applier.concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        let mut live = HashMap::new();
        for value in lists.into_iter().flatten() {
            let Ok(manifest) = Manifest::new(value, Origin::new("<live>")) else {
                continue;
            };
            let id = manifest.id();
            live.insert(id, manifest.into_object());
        }
        Ok(live)
    }
}

impl Applier {
    /// A builder for an applier that keeps its inventory in `inventory`.
    pub fn builder(
        client: kube::Client,
        inventory: impl InventoryStore + 'static,
    ) -> ApplierBuilder {
        ApplierBuilder {
            applier: Self {
                client,
                inventory: Arc::new(inventory),
                field_manager: DEFAULT_FIELD_MANAGER.to_owned(),
                staging: Arc::new(DefaultStaging),
                health: HealthChecks::default(),
                concurrency: 16,
                settle_timeout: Duration::from_secs(60),
                wait_interval: Duration::from_secs(1),
                page_size: crate::paging::DEFAULT_PAGE_SIZE,
            },
        }
    }

    /// The field manager.
    #[must_use]
    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    /// The health checks.
    #[must_use]
    pub fn health_checks(&self) -> &HealthChecks {
        &self.health
    }

    /// Brings the cluster to `desired` (the one-call path): plans (discovery, namespaces, order), reads the live
    /// objects (one list per kind and namespace), validates every object that needs a write with
    /// a server-side dry run and strict field validation, writes group by group (objects of a
    /// group in parallel), then updates the inventory and prunes what left the set.
    ///
    /// # Errors
    /// See [`ApplyError`]; nothing is written when planning or validation fails, and nothing is
    /// pruned when a write failed.
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
    /// # Errors
    /// As [`Applier::apply_set`].
    pub async fn apply_set_with_progress(
        &self,
        desired: DesiredSet,
        options: &ApplyOptions,
        cancel: &CancellationToken,
        mut progress: impl FnMut(&ApplyProgress) + Send,
    ) -> Result<ChangeSet, ApplyError> {
        let counter = RequestCounter::default();
        let client = counting_client(&self.client, &counter);
        let run = Run {
            applier: self,
            client: client.clone(),
            options,
        };
        let discovery = Discovery::new(client.clone())
            .run_aggregated()
            .await
            .map_err(|e| ApplyError::Discovery(e.into()))?;
        let mut kinds = KindTable::from_discovery(&discovery);
        kinds.add_crds(desired.manifests());
        // A set that does not come from a render never prunes.
        let prune = options.prune && desired.may_prune();
        let previous = self
            .inventory
            .load(&client)
            .await
            .map_err(ApplyError::Inventory)?;
        let previous_len = previous.as_ref().map_or(0, Inventory::len);
        if desired.manifests().is_empty() && prune && previous_len > 0 && !options.allow_empty_set {
            return Err(ApplyError::EmptySet {
                previous: previous_len,
            });
        }
        let mut schema: Option<Schema> = None;
        for manifest in desired.manifests() {
            if manifest.group() == "apiextensions.k8s.io"
                && manifest.kind() == "CustomResourceDefinition"
            {
                schema
                    .get_or_insert_with(|| Schema::embedded().as_ref().clone())
                    .add_crd(manifest.object())
                    .map_err(|source| ApplyError::Schema {
                        origin: manifest.origin().clone(),
                        source,
                    })?;
            }
        }
        let mut differ = Differ::builder(self.field_manager.clone());
        if let Some(schema) = schema {
            differ = differ.schema(Arc::new(schema));
        }
        let differ = differ.build();
        let order_options = OrderOptions {
            target_namespace: options.target_namespace.clone(),
            create_target_namespace: options.create_target_namespace,
        };
        let plan = order(
            desired.into_manifests(),
            &kinds,
            self.staging.as_ref(),
            &order_options,
        )
        .map_err(ApplyError::Plan)?;
        let objects = plan.objects();
        if prune
            && !options.allow_cascading_prune
            && let Some(previous) = &previous
        {
            let losses = run.cascading_losses(&kinds, previous, objects).await?;
            if !losses.is_empty() {
                return Err(ApplyError::CascadingPrune { losses });
            }
        }
        let owner_labels = self.inventory.owner_labels();
        let desired_values: Vec<Value> = objects
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
            .collect();
        progress(&ApplyProgress::Planned {
            objects: objects.len(),
            groups: plan.groups().count(),
        });
        let live = run.list_live(objects).await?;
        // An unchanged object's health comes free from the live object just listed.
        let unchanged_health = |id: &ObjectId, action: ObjectAction| {
            (action == ObjectAction::Unchanged)
                .then(|| live.get(id).map(|live| self.health.check(live)))
                .flatten()
        };

        // Decide locally what needs a write.
        let taken_over: Vec<BTreeSet<String>> = objects
            .iter()
            .map(|object| {
                live.get(&object.id).map_or_else(BTreeSet::new, |live| {
                    managers_taken_over(live, &options.takeover, &self.field_manager)
                })
            })
            .collect();
        let mut diffs: Vec<Option<ObjectDiff>> = Vec::with_capacity(objects.len());
        let mut decisions: Vec<Decision> = objects
            .iter()
            .zip(&desired_values)
            .zip(&taken_over)
            .map(|((object, desired), taken_over)| {
                let live = live.get(&object.id);
                diffs.push(if options.dry_run {
                    differ.diff(Some(desired), live).ok()
                } else {
                    None
                });
                if !object.policy.reconcile {
                    return Decision::Skip(Reason::ReconcileDisabled);
                }
                if !options.take_ownership
                    && !object.synthesized
                    && let Some(owner) = live.and_then(|live| other_owner(live, &owner_labels))
                {
                    return Decision::OwnedElsewhere(owner);
                }
                match live {
                    Some(_) if object.policy.create_only => {
                        Decision::Skip(Reason::CreateOnlyExists)
                    }
                    Some(_) if !taken_over.is_empty() => Decision::Write {
                        exists: true,
                        recreate: false,
                        takeover: true,
                        reason: Reason::TakingOver {
                            managers: taken_over.iter().cloned().collect(),
                        },
                    },
                    Some(live) => match needs_write(&differ, desired, live) {
                        Ok(Some(reason)) => Decision::Write {
                            exists: true,
                            recreate: false,
                            takeover: false,
                            reason,
                        },
                        Ok(None) => Decision::Unchanged,
                        Err(source) => Decision::Failed(ObjectError::Diff { source }),
                    },
                    None => Decision::Write {
                        exists: false,
                        recreate: false,
                        takeover: false,
                        reason: Reason::NotFound,
                    },
                }
            })
            .collect();

        // Validate every write with a server-side dry run before the first write.
        let namespaces_made_here: HashSet<&str> = objects
            .iter()
            .zip(&decisions)
            .filter(|(o, d)| {
                o.id.group.is_empty()
                    && o.id.kind == "Namespace"
                    && matches!(d, Decision::Write { exists: false, .. })
            })
            .map(|(o, _)| o.id.name.as_str())
            .collect();
        let to_validate: Vec<usize> = decisions
            .iter()
            .enumerate()
            .filter(|(i, d)| matches!(d, Decision::Write { .. }) && objects[*i].kind.served)
            .map(|(i, _)| i)
            .collect();
        let validations: Vec<_> = to_validate
            .into_iter()
            .map(|i| {
                let run = &run;
                let object = &objects[i];
                let desired = &desired_values[i];
                let taken_over = &taken_over[i];
                let namespace_made_here = object
                    .id
                    .namespace
                    .as_deref()
                    .is_some_and(|ns| namespaces_made_here.contains(ns));
                async move {
                    let mut taking_over = false;
                    let result = loop {
                        let error = match run
                            .server_side_apply(object, desired, true, taking_over)
                            .await
                        {
                            Ok(()) => break Ok(AfterError::Proceed),
                            Err(error) => error,
                        };
                        let managers = if taking_over {
                            &NO_MANAGERS
                        } else {
                            taken_over
                        };
                        match run.on_apply_error(object, &error, managers, namespace_made_here) {
                            Some(AfterError::ValidateTakingOver) => taking_over = true,
                            Some(after) => break Ok(after),
                            None => break Err(error),
                        }
                    };
                    (i, result)
                }
            })
            .collect();
        let validations = futures::stream::iter(validations)
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>()
            .await;
        for (i, result) in validations {
            match result {
                // The dry run of an object taken over was repeated above, taking the fields.
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
        let invalid = decisions.iter().any(|d| matches!(d, Decision::Failed(_)));
        progress(&ApplyProgress::Validated {
            to_write: decisions
                .iter()
                .filter(|d| matches!(d, Decision::Write { .. }))
                .count(),
            failed: decisions
                .iter()
                .filter(|d| matches!(d, Decision::Failed(_)))
                .count(),
        });

        if options.dry_run || (invalid && !options.best_effort) {
            let mut change_set = ChangeSet {
                dry_run: options.dry_run,
                ..ChangeSet::default()
            };
            for ((object, decision), diff) in objects.iter().zip(decisions).zip(diffs) {
                let (action, reason, error) = match decision {
                    Decision::Skip(reason) => (ObjectAction::Skipped, reason, None),
                    Decision::OwnedElsewhere(error) => (
                        ObjectAction::Skipped,
                        Reason::OwnedByOtherInventory,
                        Some(error),
                    ),
                    Decision::Unchanged => (ObjectAction::Unchanged, Reason::InSync, None),
                    Decision::Failed(error) if options.dry_run => {
                        (ObjectAction::Failed, Reason::ValidationFailed, Some(error))
                    }
                    Decision::Failed(error) => {
                        (ObjectAction::Failed, Reason::ValidationFailed, Some(error))
                    }
                    Decision::Write { .. } if invalid && !options.dry_run => {
                        (ObjectAction::Skipped, Reason::OthersFailedValidation, None)
                    }
                    Decision::Write {
                        exists,
                        recreate,
                        reason,
                        ..
                    } => (
                        if recreate {
                            ObjectAction::Recreated
                        } else if exists {
                            ObjectAction::Configured
                        } else {
                            ObjectAction::Created
                        },
                        reason,
                        None,
                    ),
                };
                change_set.changes.push(ObjectChange {
                    id: object.id.clone(),
                    origin: Some(object.manifest.origin().clone()),
                    resource: object.kind.resource.clone(),
                    action,
                    reason,
                    error,
                    diff,
                    health: unchanged_health(&object.id, action),
                });
            }
            if options.dry_run
                && prune
                && let Some(previous) = &previous
            {
                let keep: HashSet<&ObjectId> = objects.iter().map(|o| &o.id).collect();
                for (id, version) in previous.iter().filter(|(id, _)| !keep.contains(id)) {
                    let Some(kind) = resolve_inventory_kind(&kinds, id, version) else {
                        continue;
                    };
                    change_set.changes.push(ObjectChange {
                        id: id.clone(),
                        origin: None,
                        resource: kind.resource.clone(),
                        action: ObjectAction::Pruned,
                        reason: Reason::LeftTheSet,
                        error: None,
                        diff: None,
                        health: None,
                    });
                }
            }
            change_set.requests = counter.get();
            change_set.request_counts = counter.counts();
            if invalid && !options.dry_run {
                return Err(ApplyError::Invalid {
                    change_set: Box::new(change_set),
                });
            }
            return Ok(change_set);
        }

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
        if let Some(previous) = &previous {
            recorded_union = recorded_union.union(previous);
        }
        let mut stored = previous.clone();
        let inventory_namespace = owner_labels.get(OWNER_NAMESPACE_LABEL).cloned();
        let inventory_namespace_index = inventory_namespace
            .as_deref()
            .filter(|ns| namespaces_made_here.contains(ns))
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
        let mut results: Vec<Option<(ObjectAction, Reason, Option<ObjectError>)>> =
            (0..objects.len()).map(|_| None).collect();
        let mut offset = 0;
        let mut stop: Option<Stop> = None;
        let group_count = plan.groups().count();
        for (group_index, group) in plan.groups().enumerate() {
            let range = offset..offset + group.len();
            offset += group.len();
            if stop.is_none() && cancel.is_cancelled() {
                stop = Some(Stop::Cancelled);
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
                    let desired = &desired_values[i];
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
                            run.recreate(object, desired).await
                        } else {
                            match run.server_side_apply(object, desired, false, false).await {
                                // Objects of kinds a CRD of this set defines had no dry run.
                                Err(error)
                                    if run.on_apply_error(object, &error, &NO_MANAGERS, false)
                                        == Some(AfterError::Recreate) =>
                                {
                                    recreate = true;
                                    run.recreate(object, desired).await
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
                    matches!(
                        results[*i],
                        Some((
                            ObjectAction::Created
                                | ObjectAction::Configured
                                | ObjectAction::Recreated,
                            _,
                            _
                        ))
                    ) && ((id.group == "apiextensions.k8s.io"
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
            if !recorded
                && inventory_namespace_index.is_some_and(|i| {
                    matches!(
                        results[i],
                        Some((
                            ObjectAction::Created
                                | ObjectAction::Configured
                                | ObjectAction::Recreated,
                            _,
                            _
                        ))
                    )
                })
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
                    .filter(|i| {
                        matches!(
                            results[*i],
                            Some((
                                ObjectAction::Created
                                    | ObjectAction::Configured
                                    | ObjectAction::Recreated,
                                _,
                                _
                            ))
                        )
                    })
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
        for ((object, decision), result) in objects.iter().zip(decisions).zip(results) {
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
            let health = unchanged_health(&object.id, action);
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

        // The inventory: never forget an object this run may have written.
        let mut inventory = Inventory::default();
        for object in objects.iter().filter(|o| !o.synthesized) {
            inventory.insert(object.id.clone(), object.kind.resource.api_version.clone());
        }
        let incomplete = any_failed || stop == Some(Stop::Cancelled);
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
        } else if prune && let Some(previous) = &previous {
            self.prune(
                &run,
                &kinds,
                previous,
                &mut inventory,
                &mut change_set,
                cancel,
            )
            .await;
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

    /// Saves `union` (the previous inventory and the new set) unless the cluster holds it
    /// already (`stored`); with no inventory yet and nothing to record, checks that one could
    /// be saved (a server-side dry run for [`crate::ConfigMapInventory`]).
    async fn record(
        &self,
        client: &kube::Client,
        union: &Inventory,
        stored: &mut Option<Inventory>,
    ) -> Result<(), InventoryError> {
        match stored {
            Some(stored) if stored == union => Ok(()),
            None if union.is_empty() => {
                self.inventory
                    .check(client, union, &self.field_manager)
                    .await
            }
            _ => {
                self.inventory
                    .save(client, union, &self.field_manager)
                    .await?;
                *stored = Some(union.clone());
                Ok(())
            }
        }
    }

    /// Deletes, in reverse apply order, what `previous` lists and `inventory` (the new set)
    /// lacks, if it still carries our ownership labels and does not disable pruning.
    async fn prune(
        &self,
        run: &Run<'_>,
        kinds: &KindTable,
        previous: &Inventory,
        inventory: &mut Inventory,
        change_set: &mut ChangeSet,
        cancel: &CancellationToken,
    ) {
        let owner_labels = self.inventory.owner_labels();
        let mut gone: Vec<(ObjectId, String, Option<KindInfo>)> = previous
            .iter()
            .filter(|(id, _)| !inventory.contains(id))
            .map(|(id, version)| {
                (
                    id.clone(),
                    version.to_owned(),
                    resolve_inventory_kind(kinds, id, version).cloned(),
                )
            })
            .collect();
        let key = |id: &ObjectId, kind: &Option<KindInfo>| {
            let namespaced = kind.as_ref().is_none_or(|k| k.namespaced);
            (
                self.staging.stage(&id.group_kind(), namespaced),
                self.staging.kind_rank(&id.group_kind()),
                id.kind.clone(),
                id.namespace.clone(),
                id.name.clone(),
            )
        };
        gone.sort_by_key(|(id, _, kind)| std::cmp::Reverse(key(id, kind)));
        for (id, version, kind) in gone {
            let mut entry = |action, reason: Reason, error, resource| {
                change_set.changes.push(ObjectChange {
                    id: id.clone(),
                    origin: None,
                    resource,
                    action,
                    reason,
                    error,
                    diff: None,
                    health: None,
                });
            };
            let Some(kind) = kind else {
                // The kind is no longer served (its CRD went): so are its objects.
                let group = &id.group;
                entry(
                    ObjectAction::Pruned,
                    Reason::KindNoLongerServed,
                    None,
                    ApiResource {
                        group: group.clone(),
                        version: version.clone(),
                        api_version: if group.is_empty() {
                            version.clone()
                        } else {
                            format!("{group}/{version}")
                        },
                        kind: id.kind.clone(),
                        plural: String::new(),
                    },
                );
                continue;
            };
            if cancel.is_cancelled() {
                inventory.insert(id.clone(), version);
                entry(
                    ObjectAction::Skipped,
                    Reason::Cancelled,
                    None,
                    kind.resource.clone(),
                );
                continue;
            }
            let api = object_api(&run.client, &kind, id.namespace.as_deref());
            let live = match api.get_opt(&id.name).await {
                Ok(live) => live,
                Err(e) => {
                    inventory.insert(id.clone(), version);
                    entry(
                        ObjectAction::Failed,
                        Reason::ReadFailed,
                        Some(ObjectError::from_kube_about(&id, None, e)),
                        kind.resource.clone(),
                    );
                    continue;
                }
            };
            let Some(live) = live else {
                entry(
                    ObjectAction::Pruned,
                    Reason::AlreadyGone,
                    None,
                    kind.resource.clone(),
                );
                continue;
            };
            if let Err(why) = prunable(&live, &owner_labels) {
                entry(ObjectAction::Skipped, why, None, kind.resource.clone());
                continue;
            }
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match api.delete(&id.name, &params).await {
                Ok(_) => entry(
                    ObjectAction::Pruned,
                    Reason::LeftTheSet,
                    None,
                    kind.resource.clone(),
                ),
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    entry(
                        ObjectAction::Pruned,
                        Reason::AlreadyGone,
                        None,
                        kind.resource.clone(),
                    );
                }
                Err(e) => {
                    inventory.insert(id.clone(), version);
                    entry(
                        ObjectAction::Failed,
                        Reason::DeleteFailed,
                        Some(ObjectError::from_kube_about(&id, None, e)),
                        kind.resource.clone(),
                    );
                }
            }
        }
    }
}

/// When `live`'s ownership labels name another inventory than ours (`owner_labels`): that
/// inventory. An object without ownership labels (created by hand, say) is nobody's.
fn other_owner(live: &Value, owner_labels: &BTreeMap<String, String>) -> Option<ObjectError> {
    let labels = live.pointer("/metadata/labels")?.as_object()?;
    let differs = owner_labels.iter().any(|(key, ours)| {
        labels
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|theirs| theirs != ours)
    });
    differs.then(|| {
        let label = |key: &str| {
            labels
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        ObjectError::OwnedByOtherInventory {
            namespace: label(OWNER_NAMESPACE_LABEL),
            name: label(OWNER_NAME_LABEL),
        }
    })
}

/// Whether a live object that left the set may be pruned: it still carries the ownership
/// labels and does not disable pruning by annotation. `Err` says why not.
fn prunable(live: &DynamicObject, owner_labels: &BTreeMap<String, String>) -> Result<(), Reason> {
    let labels = live.metadata.labels.clone().unwrap_or_default();
    if !owner_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        return Err(Reason::NoOwnershipLabels);
    }
    let annotations: BTreeMap<&str, &str> = live
        .metadata
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if !crate::plan::ObjectPolicy::from_annotations(&annotations).prune {
        return Err(Reason::PruneDisabled);
    }
    Ok(())
}

/// The objects of `objects` a deletion of `id` would delete with it: for a Namespace, those in
/// it; for a CRD (named `<plural>.<group>`), those of its kind.
fn cascade_of<'o>(id: &ObjectId, objects: &'o [PlannedObject]) -> Vec<&'o ObjectId> {
    let namespace = id.group.is_empty() && id.kind == "Namespace";
    let crd = id.group == "apiextensions.k8s.io" && id.kind == "CustomResourceDefinition";
    let (plural, group) = id.name.split_once('.').unwrap_or((&id.name, ""));
    objects
        .iter()
        .filter(|o| {
            (namespace && o.id.namespace.as_deref() == Some(id.name.as_str()))
                || (crd && o.kind.resource.plural == plural && o.kind.resource.group == group)
        })
        .map(|o| &o.id)
        .collect()
}

fn resolve_inventory_kind<'k>(
    kinds: &'k KindTable,
    id: &ObjectId,
    version: &str,
) -> Option<&'k KindInfo> {
    let exact = gitops_core::split_api_version(version).1;
    kinds
        .resolve(&id.group, exact, &id.kind)
        .or_else(|| kinds.resolve_group_kind(&id.group, &id.kind))
        .filter(|k| k.served)
}

/// The no-op decision: whether `desired` must be written given `live`. An object in sync that
/// our field manager does not manage yet is written once to take ownership.
fn needs_write(
    differ: &Differ,
    desired: &Value,
    live: &Value,
) -> Result<Option<Reason>, DiffError> {
    Ok(if differ.needs_apply(desired, Some(live))? {
        Some(Reason::Drifted)
    } else if !differ.is_managed(live) {
        Some(Reason::NotManagedYet)
    } else {
        None
    })
}
