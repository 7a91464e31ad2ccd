//! Objects on the control plane as the tests read and write them: a ConfigMap and one of its
//! values, a hand edit, and the statuses the controllers this control plane lacks would write
//! (a Deployment rolled out, a Job completed or failed).

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

/// Objects of the built-in kind `K` in `namespace`, as dynamic objects.
pub(crate) fn dynamic<K>(client: &kube::Client, namespace: &str) -> Api<DynamicObject>
where
    K: kube::Resource<DynamicType = ()>,
{
    Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<K>(&()))
}

/// The ConfigMap `namespace/name`, if it exists.
pub(crate) async fn config_map(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .unwrap()
}

/// The value of `key` in ConfigMap `namespace/name`, which must exist.
pub(crate) async fn config_value(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> String {
    let config_map = config_map(client, namespace, name)
        .await
        .unwrap_or_else(|| panic!("ConfigMap {namespace}/{name} exists"));
    config_map.data.unwrap_or_default()[key].clone()
}

/// A merge patch of ConfigMap `namespace/name` by field manager `manager`, as `kubectl edit` makes.
pub(crate) async fn update_as(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    manager: &str,
    patch: Value,
) {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams {
                field_manager: Some(manager.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(patch),
        )
        .await
        .unwrap();
}

/// Writes `status` into the status of the `K` `namespace/name`, as its controller would.
pub(crate) async fn write_status<K>(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    status: Value,
) where
    K: kube::Resource<DynamicType = ()>,
{
    dynamic::<K>(client, namespace)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
}

/// Writes the status of Deployment `namespace/web` rolled out, `replicas` ready and available.
pub(crate) async fn web_rolled_out(client: &kube::Client, namespace: &str, replicas: u32) {
    write_status::<k8s_openapi::api::apps::v1::Deployment>(
        client,
        namespace,
        "web",
        json!({"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas}),
    )
    .await;
}

/// When the Jobs of [`complete_job`] and [`fail_job`] started and ended.
const NOW: &str = "2026-01-01T00:00:00Z";

/// Writes the status of the Job `namespace/name` that completed (no kubelet runs Jobs here).
pub(crate) async fn complete_job(client: &kube::Client, namespace: &str, name: &str) {
    write_status::<k8s_openapi::api::batch::v1::Job>(client, namespace, name, json!({"startTime": NOW, "completionTime": NOW, "succeeded": 1, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastTransitionTime": NOW, "lastProbeTime": NOW},
        {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastTransitionTime": NOW, "lastProbeTime": NOW}]})).await;
}

/// Writes the status of the Job `namespace/name` that reached its backoff limit.
pub(crate) async fn fail_job(client: &kube::Client, namespace: &str, name: &str) {
    write_status::<k8s_openapi::api::batch::v1::Job>(client, namespace, name, json!({"startTime": NOW, "failed": 1, "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastTransitionTime": NOW, "lastProbeTime": NOW},
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastTransitionTime": NOW, "lastProbeTime": NOW}]})).await;
}
