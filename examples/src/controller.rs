//! The GitSync custom resource: Flux's `GitRepository` and `Kustomization` folded into one
//! object, reconciled by [`gitops_sync::controller`] (the `controller` binary is `run` on it).
//!
//! ```yaml
//! apiVersion: examples.gitops-rs.io/v1alpha1
//! kind: GitSync
//! metadata: {name: apps, namespace: team-a}
//! spec:
//!   source: {url: https://git.example.com/team-a/config.git, ref: {branch: main}}
//!   path: clusters/prod
//!   interval: 5m
//!   renderer: {kind: auto}   # auto | plain | kustomize | helm
//!   targetNamespace: team-a
//!   sparse: true             # fetch only clusters/prod and what its files reference
//! ```

use gitops_sync::controller::{SyncResource, SyncSpec, SyncStatus};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The finalizer that prunes a GitSync's objects when it is deleted.
pub const FINALIZER: &str = "examples.gitops-rs.io/finalizer";
/// The field manager of the applied objects (the status and inventory use `-status` and
/// `-inventory` after it).
pub const FIELD_MANAGER: &str = "gitsync-controller";

/// The spec of a [`GitSync`]: the kit's [`SyncSpec`], as is.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "examples.gitops-rs.io",
    version = "v1alpha1",
    kind = "GitSync",
    doc = "Syncs a directory of a Git repository (or of a local directory) to the cluster: Flux's GitRepository and Kustomization folded into one object.",
    namespaced,
    status = "SyncStatus",
    shortname = "gsync",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.lastAppliedRevision"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct GitSyncSpec {
    /// What to sync and how.
    #[serde(flatten)]
    pub sync: SyncSpec,
}

impl SyncResource for GitSync {
    fn sync_spec(&self) -> &SyncSpec {
        &self.spec.sync
    }

    fn sync_status(&self) -> Option<&SyncStatus> {
        self.status.as_ref()
    }
}

/// The CRD as YAML, for `kubectl apply -f -`.
///
/// ```
/// let yaml = gitops_examples::controller::crd_yaml();
/// assert!(yaml.contains("name: gitsyncs.examples.gitops-rs.io"));
/// ```
#[must_use]
pub fn crd_yaml() -> String {
    serde_saphyr::to_string(&GitSync::crd()).expect("a CRD serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_crd_file_is_current_and_the_example_is_valid() {
        let committed = include_str!("../controller/gitsync-crd.yaml");
        assert!(
            committed == crd_yaml(),
            "examples/controller/gitsync-crd.yaml is stale: regenerate it with `cargo run -p gitops-examples --bin controller -- crd > examples/controller/gitsync-crd.yaml`"
        );
        let text = include_str!("../controller/gitsync-example.yaml");
        let manifests = gitops_core::parse_manifests(text, "gitsync-example.yaml").unwrap();
        let sync: GitSync = serde_json::from_value(manifests[0].object().clone()).unwrap();
        let settings = sync.spec.sync.settings().unwrap();
        assert_eq!(settings.interval.as_secs(), 300);
        assert_eq!(settings.timeout.as_secs(), 120);
        assert!(sync.spec.sync.wait && sync.spec.sync.prune);
    }
}
