//! The applier: plan, validate, write in order, prune, and the change set it returns.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gitops_core::ObjectId;
use gitops_diff::{DiffError, Differ, IgnoreRule, Normaliser};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::catalog::Catalog;
use crate::change::Reason;
use crate::error::{ApplyError, CascadingLoss, ObjectError};
use crate::health::HealthChecks;
use crate::inventory::{
    Inventory, InventoryError, InventoryStore, OWNER_NAME_LABEL, OWNER_NAMESPACE_LABEL,
};
use crate::options::ApplyOptions;
use crate::plan::{DefaultStaging, KindInfo, KindTable, PlannedObject, Staging};
use crate::takeover::managed_fields_after_takeover;

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

    /// The health checks used when waiting and for [`ObjectChange::health`](crate::ObjectChange::health) (default: the
    /// built-in ones).
    pub fn health_checks(mut self, health: HealthChecks) -> Self {
        self.applier.health = health;
        self
    }

    /// How many writes of one group run at once (default 16, at least 1); also how many
    /// reads and dry runs. It sets how many objects of the set missing from the lists selected
    /// by the ownership labels (new, or without our labels) are read alone before their kind
    /// and namespace are listed unfiltered instead: two per concurrent request (32 by default),
    /// at most two rounds of reads.
    ///
    /// ```no_run
    /// # fn example(client: kube::Client) -> Result<(), gitops_apply::InventoryError> {
    /// let inventory = gitops_apply::ConfigMapInventory::new("flux-system", "apps")?;
    /// let applier = gitops_apply::Applier::builder(client, inventory).concurrency(4).build();
    /// # Ok(())
    /// # }
    /// ```
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

    /// The differ whose ignore rules and normalisers the applier uses (default: none of
    /// either beyond gitops-diff's built-in normalisers); the schema and field manager are set
    /// per run. Ignore rules bind apply: a field a rule covers is left out of the applied
    /// object, so it is neither drift nor written, and its owner keeps it.
    ///
    /// ```no_run
    /// use gitops_diff::{Differ, IgnoreRule, Selector};
    /// # fn example(client: kube::Client) -> Result<(), gitops_apply::InventoryError> {
    /// let differ = Differ::builder("any")
    ///     .ignore(IgnoreRule::new(Selector::default().kind("Deployment")).manager("hpa"))
    ///     .build();
    /// let inventory = gitops_apply::ConfigMapInventory::new("flux-system", "apps")?;
    /// let applier = gitops_apply::Applier::builder(client, inventory).differ(differ).build();
    /// # Ok(())
    /// # }
    /// ```
    pub fn differ(mut self, differ: Differ) -> Self {
        self.applier.differ = differ;
        self
    }

    /// Adds an ignore rule to the differ (see [`ApplierBuilder::differ`]).
    ///
    /// ```no_run
    /// use gitops_diff::{IgnoreRule, Selector};
    /// # fn example(client: kube::Client) -> Result<(), gitops_apply::InventoryError> {
    /// let inventory = gitops_apply::ConfigMapInventory::new("flux-system", "apps")?;
    /// let applier = gitops_apply::Applier::builder(client, inventory)
    ///     .ignore(IgnoreRule::new(Selector::default().kind("Deployment")).manager("hpa"))
    ///     .build();
    /// # Ok(())
    /// # }
    /// ```
    pub fn ignore(mut self, rule: IgnoreRule) -> Self {
        self.applier.differ = self.applier.differ.to_builder().ignore(rule).build();
        self
    }

    /// Adds a normaliser to the differ (see [`ApplierBuilder::differ`]).
    ///
    /// ```no_run
    /// # fn example(client: kube::Client, normaliser: impl gitops_diff::Normaliser + 'static) -> Result<(), gitops_apply::InventoryError> {
    /// let inventory = gitops_apply::ConfigMapInventory::new("flux-system", "apps")?;
    /// let applier = gitops_apply::Applier::builder(client, inventory).normaliser(normaliser).build();
    /// # Ok(())
    /// # }
    /// ```
    pub fn normaliser(mut self, normaliser: impl Normaliser + 'static) -> Self {
        self.applier.differ = self
            .applier
            .differ
            .to_builder()
            .normaliser(normaliser)
            .build();
        self
    }

    /// Whether the merge schema adds the cluster's `/openapi/v3` documents of the
    /// group-versions the set uses that the embedded table lacks (custom resources of installed
    /// CRDs, aggregated APIs), read once per discovery (default `true`).
    ///
    /// ```no_run
    /// # fn example(client: kube::Client) -> Result<(), gitops_apply::InventoryError> {
    /// let inventory = gitops_apply::ConfigMapInventory::new("flux-system", "apps")?;
    /// let applier = gitops_apply::Applier::builder(client, inventory).cluster_schema(false).build();
    /// # Ok(())
    /// # }
    /// ```
    pub fn cluster_schema(mut self, enabled: bool) -> Self {
        self.applier.catalog = self.applier.catalog.with_cluster_schema(enabled);
        self
    }

    /// How long discovery (and the cluster's OpenAPI index) is reused across runs (default
    /// [`crate::DEFAULT_DISCOVERY_TTL`]); it is read again sooner when the set names a kind it
    /// lacks or after the applier wrote or pruned a CRD.
    ///
    /// ```no_run
    /// # fn example(client: kube::Client) -> Result<(), gitops_apply::InventoryError> {
    /// let inventory = gitops_apply::ConfigMapInventory::new("flux-system", "apps")?;
    /// let applier = gitops_apply::Applier::builder(client, inventory)
    ///     .discovery_ttl(std::time::Duration::from_secs(60))
    ///     .build();
    /// # Ok(())
    /// # }
    /// ```
    pub fn discovery_ttl(mut self, ttl: Duration) -> Self {
        self.applier.catalog = self.applier.catalog.with_ttl(ttl);
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
    pub(crate) client: kube::Client,
    pub(crate) inventory: Arc<dyn InventoryStore>,
    pub(crate) field_manager: String,
    pub(crate) staging: Arc<dyn Staging>,
    pub(crate) health: HealthChecks,
    pub(crate) concurrency: usize,
    pub(crate) settle_timeout: Duration,
    pub(crate) wait_interval: Duration,
    pub(crate) page_size: u32,
    pub(crate) differ: Differ,
    pub(crate) catalog: Catalog,
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
pub(crate) enum Stop {
    Cancelled,
    EarlierGroupFailed,
    /// A Sync hook failed (the hooks run with the waves).
    HookFailed,
}

impl Stop {
    pub(crate) fn reason(self) -> Reason {
        match self {
            Self::Cancelled => Reason::Cancelled,
            Self::EarlierGroupFailed => Reason::EarlierGroupFailed,
            Self::HookFailed => Reason::NotWritten,
        }
    }
}

/// How a run goes on after an error of a server-side apply it can live with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterError {
    /// Go on (write as planned).
    Proceed,
    /// Delete the object and create it again.
    Recreate,
    /// Only managers taken over conflict: validate again taking their fields, as the write
    /// will after the takeover (a conflict is found before validation, so it hides errors).
    ValidateTakingOver,
}

/// No managers taken over.
pub(crate) static NO_MANAGERS: BTreeSet<String> = BTreeSet::new();

/// What to do with one planned object, decided before any write.
#[derive(Debug)]
pub(crate) enum Decision {
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

pub(crate) fn object_api(
    client: &kube::Client,
    kind: &KindInfo,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) if kind.namespaced => Api::namespaced_with(client.clone(), ns, &kind.resource),
        _ => Api::all_with(client.clone(), &kind.resource),
    }
}

pub(crate) fn to_value(object: &DynamicObject, resource: &ApiResource) -> Value {
    let mut value = serde_json::to_value(object).expect("objects serialise");
    value["apiVersion"] = Value::String(resource.api_version.clone());
    value["kind"] = Value::String(resource.kind.clone());
    value
}

pub(crate) struct Run<'a> {
    pub(crate) applier: &'a Applier,
    pub(crate) client: kube::Client,
    pub(crate) options: &'a ApplyOptions,
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
    pub(crate) async fn server_side_apply(
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
    pub(crate) async fn take_over(
        &self,
        object: &PlannedObject,
        live: &Value,
    ) -> Result<(), ObjectError> {
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
    pub(crate) fn on_apply_error(
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

    pub(crate) async fn recreate(
        &self,
        object: &PlannedObject,
        desired: &Value,
    ) -> Result<(), ObjectError> {
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
    pub(crate) async fn cascading_losses(
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
            if live.is_some_and(|live| {
                prunable(&to_value(&live, &kind.resource), &owner_labels).is_ok()
            }) {
                losses.push(CascadingLoss {
                    pruned: id.clone(),
                    lost: lost.into_iter().cloned().collect(),
                });
            }
        }
        Ok(losses)
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
                differ: Differ::builder(DEFAULT_FIELD_MANAGER).build(),
                catalog: Catalog::default(),
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

    /// Saves `union` (the previous inventory and the new set) unless the cluster holds it
    /// already (`stored`); with no inventory yet and nothing to record, checks that one could
    /// be saved (a server-side dry run for [`crate::ConfigMapInventory`]).
    pub(crate) async fn record(
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
}

/// When `live`'s ownership labels name another inventory than ours (`owner_labels`): that
/// inventory. An object without ownership labels (created by hand, say) is nobody's.
pub(crate) fn other_owner(
    live: &Value,
    owner_labels: &BTreeMap<String, String>,
) -> Option<ObjectError> {
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
pub(crate) fn prunable(
    live: &Value,
    owner_labels: &BTreeMap<String, String>,
) -> Result<(), Reason> {
    if !crate::live::carries(live, owner_labels) {
        return Err(Reason::NoOwnershipLabels);
    }
    let annotations = crate::planner::annotations_of(live);
    if !crate::plan::ObjectPolicy::from_annotations(&annotations).prune {
        return Err(Reason::PruneDisabled);
    }
    Ok(())
}

/// The objects of `objects` a deletion of `id` would delete with it: for a Namespace, those in
/// it; for a CRD (named `<plural>.<group>`), those of its kind.
pub(crate) fn cascade_of<'o>(id: &ObjectId, objects: &'o [PlannedObject]) -> Vec<&'o ObjectId> {
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

pub(crate) fn resolve_inventory_kind<'k>(
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
pub(crate) fn needs_write(
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
