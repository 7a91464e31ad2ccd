//! Helpers shared by the applier's tests against the real control plane: a desired set from
//! YAML, a namespace on the shared control plane, an applier with a ConfigMap inventory, one run
//! that must succeed (or fail), and what a change set says of one object. The submodules hold
//! the objects the tests read and write on the cluster ([`cluster`]), the YAML of the objects
//! they apply ([`fixtures`]) and the CRDs they install ([`crd`]).

// Each test binary uses its own part of these.
#![allow(dead_code)]

pub(crate) mod cluster;
pub(crate) mod crd;
pub(crate) mod fixtures;

use std::time::Duration;

use gitops_apply::{
    Applier, ApplierBuilder, ApplyError, ApplyOptions, ChangeSet, ConfigMapInventory, DesiredSet,
    Inventory, InventoryStore as _, ObjectAction, ObjectChange, Plan, Reason, RequestCounts,
};
use gitops_core::{Manifest, ObjectId};
use tokio_util::sync::CancellationToken;

/// The manifests of `yaml`, parsed as the file `set.yaml`.
pub(crate) fn manifests(yaml: &str) -> Vec<Manifest> {
    gitops_core::parse_manifests(yaml, "set.yaml").expect("test YAML parses")
}

/// A rendered desired set of `manifests`.
pub(crate) fn set_of(manifests: Vec<Manifest>) -> DesiredSet {
    DesiredSet::from_render(Ok::<_, std::convert::Infallible>(manifests)).expect("a rendered set")
}

/// A rendered desired set of the manifests of `yaml` (the file `set.yaml`).
pub(crate) fn set(yaml: &str) -> DesiredSet {
    set_of(manifests(yaml))
}

/// The shared control plane's client and a new namespace named after `prefix`.
pub(crate) async fn setup(prefix: &str) -> (kube::Client, String) {
    let cp = gitops_envtest::shared().await.unwrap();
    let client = cp.client().await.unwrap();
    let ns = cp.create_namespace(prefix).await.unwrap();
    (client, ns)
}

/// The ConfigMap inventory `inventory` in `namespace`, the one every test applier keeps.
pub(crate) fn inventory(namespace: &str) -> ConfigMapInventory {
    ConfigMapInventory::new(namespace, "inventory").unwrap()
}

/// An applier builder with [`inventory`] in `namespace` that waits 30 s at most for settling.
pub(crate) fn applier_builder(client: &kube::Client, namespace: &str) -> ApplierBuilder {
    Applier::builder(client.clone(), inventory(namespace)).settle_timeout(Duration::from_secs(30))
}

/// The applier of [`applier_builder`], as it is.
pub(crate) fn applier(client: &kube::Client, namespace: &str) -> Applier {
    applier_builder(client, namespace).build()
}

/// One `apply_set` run with a token never cancelled.
async fn apply_set(
    applier: &Applier,
    desired: DesiredSet,
    options: &ApplyOptions,
) -> Result<ChangeSet, ApplyError> {
    applier
        .apply_set(desired, options, &CancellationToken::new())
        .await
}

/// One `apply_set` run that must succeed, and its change set.
pub(crate) async fn run(
    applier: &Applier,
    desired: DesiredSet,
    options: &ApplyOptions,
) -> ChangeSet {
    let result = apply_set(applier, desired, options).await;
    result.unwrap_or_else(|e| panic!("apply failed: {e}"))
}

/// One `apply_set` run that must fail, and its error.
pub(crate) async fn run_err(
    applier: &Applier,
    desired: DesiredSet,
    options: &ApplyOptions,
) -> ApplyError {
    let result = apply_set(applier, desired, options).await;
    result.expect_err("the run must fail")
}

/// The plan of `desired`, which must be made.
pub(crate) async fn planned(
    applier: &Applier,
    desired: &DesiredSet,
    options: &ApplyOptions,
) -> Plan {
    let result = applier
        .plan(desired, options, &CancellationToken::new())
        .await;
    result.unwrap_or_else(|e| panic!("planning failed: {e}"))
}

/// The request counts of a run that sent `lists` lists, `reads` other reads and nothing else.
pub(crate) fn read_only_counts(lists: u64, reads: u64) -> RequestCounts {
    RequestCounts {
        total: lists + reads,
        lists,
        reads,
        dry_runs: 0,
        writes: 0,
    }
}

/// The entry of `id` (an [`ObjectId`] as text) in `change_set`, which must hold it.
pub(crate) fn change<'a>(change_set: &'a ChangeSet, id: &str) -> &'a ObjectChange {
    let id: ObjectId = id.parse().unwrap();
    change_set
        .get(&id)
        .unwrap_or_else(|| panic!("{id} not in the change set:\n{change_set}"))
}

/// The action taken on `id` in `change_set`.
pub(crate) fn action(change_set: &ChangeSet, id: &str) -> ObjectAction {
    change(change_set, id).action
}

/// The action taken on `id` in `change_set`, and why.
pub(crate) fn outcome(change_set: &ChangeSet, id: &str) -> (ObjectAction, Reason) {
    let change = change(change_set, id);
    (change.action, change.reason.clone())
}

/// The stored [`inventory`] of `namespace`, which must exist.
pub(crate) async fn stored_inventory(client: &kube::Client, namespace: &str) -> Inventory {
    inventory(namespace)
        .load(client)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no inventory in {namespace}"))
}

/// The ids (as text) the stored [`inventory`] of `namespace` lists; none without an inventory.
pub(crate) async fn inventory_ids(client: &kube::Client, namespace: &str) -> Vec<String> {
    inventory(namespace)
        .load(client)
        .await
        .unwrap()
        .map(|inventory| inventory.iter().map(|(id, _)| id.to_string()).collect())
        .unwrap_or_default()
}
