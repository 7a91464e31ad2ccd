//! Helpers shared by the applier's tests against the real control plane: a desired set from
//! YAML, a namespace on the shared control plane, an applier with a ConfigMap inventory, one run
//! that must succeed, and the action taken on one object.

// Each test binary uses its own part of these.
#![allow(dead_code)]

use std::time::Duration;

use gitops_apply::{
    Applier, ApplyOptions, ChangeSet, ConfigMapInventory, DesiredSet, ObjectAction,
};
use gitops_core::{Manifest, ObjectId};
use tokio_util::sync::CancellationToken;

pub(crate) fn manifests(yaml: &str) -> Vec<Manifest> {
    gitops_core::parse_manifests(yaml, "set.yaml").expect("test YAML parses")
}

pub(crate) fn set(yaml: &str) -> DesiredSet {
    DesiredSet::from_render(Ok::<_, std::convert::Infallible>(manifests(yaml))).unwrap()
}

/// The shared control plane's client and a new namespace named after `prefix`.
pub(crate) async fn setup(prefix: &str) -> (kube::Client, String) {
    let cp = gitops_envtest::shared().await.unwrap();
    let client = cp.client().await.unwrap();
    let ns = cp.create_namespace(prefix).await.unwrap();
    (client, ns)
}

pub(crate) fn applier(client: &kube::Client, namespace: &str) -> Applier {
    let inventory = ConfigMapInventory::new(namespace, "inventory").unwrap();
    Applier::builder(client.clone(), inventory)
        .settle_timeout(Duration::from_secs(30))
        .build()
}

pub(crate) async fn run(
    applier: &Applier,
    desired: DesiredSet,
    options: &ApplyOptions,
) -> ChangeSet {
    match applier
        .apply_set(desired, options, &CancellationToken::new())
        .await
    {
        Ok(change_set) => change_set,
        Err(e) => panic!("apply failed: {e}"),
    }
}

pub(crate) fn action(change_set: &ChangeSet, id: &str) -> ObjectAction {
    let id: ObjectId = id.parse().unwrap();
    change_set
        .get(&id)
        .unwrap_or_else(|| panic!("{id} not in the change set:\n{change_set}"))
        .action
}
