//! Table tests on real object shapes: what counts as drift and what does not.

use std::sync::Arc;

use gitops_diff::{
    ChangeKind, Colour, DiffStatus, Differ, IgnoreRule, LastApplied, ObjectDiff, Schema, Selector,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn differ() -> Differ {
    Differ::builder("gitops-rs").build()
}

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }
        }
    })
}

/// Live as the apiserver returns a Deployment: defaults everywhere, bookkeeping in metadata.
fn as_server_returns(desired: &Value, fields_v1: Option<Value>) -> Value {
    let mut live = desired.clone();
    let meta = live["metadata"].as_object_mut().unwrap();
    meta.insert("uid".into(), json!("0b7c0d7e"));
    meta.insert("resourceVersion".into(), json!("1234"));
    meta.insert("generation".into(), json!(1));
    meta.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
    if let Some(fields) = fields_v1 {
        meta.insert(
            "managedFields".into(),
            json!([{"manager": "gitops-rs", "operation": "Apply", "apiVersion": "apps/v1",
                    "fieldsType": "FieldsV1", "fieldsV1": fields}]),
        );
    }
    let spec = live["spec"].as_object_mut().unwrap();
    spec.insert("revisionHistoryLimit".into(), json!(10));
    spec.insert("progressDeadlineSeconds".into(), json!(600));
    spec.insert(
        "strategy".into(),
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
    );
    let pod = live["spec"]["template"]["spec"].as_object_mut().unwrap();
    pod.insert("restartPolicy".into(), json!("Always"));
    pod.insert("dnsPolicy".into(), json!("ClusterFirst"));
    pod.insert("schedulerName".into(), json!("default-scheduler"));
    pod.insert("securityContext".into(), json!({}));
    pod.insert("terminationGracePeriodSeconds".into(), json!(30));
    for container in pod["containers"].as_array_mut().unwrap() {
        let c = container.as_object_mut().unwrap();
        c.insert("imagePullPolicy".into(), json!("IfNotPresent"));
        c.insert(
            "terminationMessagePath".into(),
            json!("/dev/termination-log"),
        );
        c.insert("terminationMessagePolicy".into(), json!("File"));
        if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports {
                port.as_object_mut()
                    .unwrap()
                    .entry("protocol")
                    .or_insert(json!("TCP"));
            }
        }
    }
    live["status"] = json!({"observedGeneration": 1, "replicas": 2});
    live
}

fn paths(diff: &ObjectDiff) -> Vec<(&str, ChangeKind)> {
    diff.changes
        .iter()
        .map(|c| (c.path.as_str(), c.kind))
        .collect()
}

/// The patch must bring live in sync with desired.
fn assert_patch_converges(differ: &Differ, desired: &Value, live: &Value) {
    let diff = differ.diff(Some(desired), Some(live)).unwrap();
    let predicted = diff.predicted(Some(live)).unwrap().unwrap();
    let again = differ.diff(Some(desired), Some(&predicted)).unwrap();
    assert!(
        again.is_in_sync(),
        "after the patch {:?}: {:#?}",
        diff.patch(),
        again.changes
    );
}

#[test]
fn server_defaults_are_not_drift() {
    let desired = deployment(json!([
        {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
    ]));
    let live = as_server_returns(&desired, None);
    let diff = differ().diff(Some(&desired), Some(&live)).unwrap();
    assert_eq!(diff.status, DiffStatus::InSync, "{:#?}", diff.changes);
    assert!(!differ().needs_apply(&desired, Some(&live)).unwrap());
}

#[test]
fn reordered_containers_are_not_drift() {
    let desired = deployment(json!([
        {"name": "web", "image": "nginx:1.27"},
        {"name": "sidecar", "image": "envoy:1.30"}
    ]));
    let mut live = as_server_returns(&desired, None);
    live["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .reverse();
    assert!(
        differ()
            .diff(Some(&desired), Some(&live))
            .unwrap()
            .is_in_sync()
    );
}

#[test]
fn env_added_in_the_middle_is_one_addition() {
    let before = deployment(json!([{"name": "web", "image": "nginx", "env": [
        {"name": "A", "value": "1"}, {"name": "C", "value": "3"}]}]));
    let live = as_server_returns(&before, None);
    let desired = deployment(json!([{"name": "web", "image": "nginx", "env": [
        {"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}]}]));
    let diff = differ().diff(Some(&desired), Some(&live)).unwrap();
    assert_eq!(
        paths(&diff),
        vec![(
            "spec.template.spec.containers[name=web].env[name=B]",
            ChangeKind::Added
        )]
    );
    assert_eq!(
        diff.changes[0].pointer,
        "/spec/template/spec/containers/0/env/-"
    );
    assert_eq!(
        diff.changes[0].after,
        Some(json!({"name": "B", "value": "2"}))
    );
    assert_patch_converges(&differ(), &desired, &live);
}

#[test]
fn quantities_compare_by_value() {
    let desired = deployment(json!([{"name": "web", "image": "nginx", "resources": {
        "requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": 2}}}]));
    let mut live = as_server_returns(&desired, None);
    live["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "1000m", "memory": "1073741824"}, "limits": {"cpu": "2"}});
    assert!(
        differ()
            .diff(Some(&desired), Some(&live))
            .unwrap()
            .is_in_sync()
    );
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] =
        json!("500m");
    let diff = differ().diff(Some(&desired), Some(&live)).unwrap();
    assert_eq!(
        paths(&diff),
        vec![(
            "spec.template.spec.containers[name=web].resources.requests.cpu",
            ChangeKind::Modified
        )]
    );
    assert_eq!(diff.changes[0].before, Some(json!("500m")));
    assert_eq!(diff.changes[0].after, Some(json!("1")));
}

#[test]
fn an_hpa_owning_replicas_is_ignored_by_rule() {
    let desired = deployment(json!([{"name": "web", "image": "nginx"}]));
    let mut live = as_server_returns(
        &desired,
        Some(
            json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}),
        ),
    );
    live["spec"]["replicas"] = json!(7);
    live["metadata"]["managedFields"]
        .as_array_mut()
        .unwrap()
        .push(
            json!({"manager": "kube-controller-manager", "operation": "Update",
            "apiVersion": "apps/v1", "subresource": "scale", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}}}),
        );
    let plain = differ().diff(Some(&desired), Some(&live)).unwrap();
    assert_eq!(paths(&plain), vec![("spec.replicas", ChangeKind::Modified)]);
    let with_rule = Differ::builder("gitops-rs")
        .ignore(
            IgnoreRule::new(Selector::default().group("apps").kind("Deployment"))
                .manager("kube-controller-manager"),
        )
        .build();
    assert!(
        with_rule
            .diff(Some(&desired), Some(&live))
            .unwrap()
            .is_in_sync()
    );
    assert!(!with_rule.needs_apply(&desired, Some(&live)).unwrap());
    // A rule for another kind does not apply.
    let other = Differ::builder("gitops-rs")
        .ignore(
            IgnoreRule::new(Selector::default().kind("StatefulSet"))
                .manager("kube-controller-manager"),
        )
        .build();
    assert!(
        !other
            .diff(Some(&desired), Some(&live))
            .unwrap()
            .is_in_sync()
    );
}

#[test]
fn a_removed_label_we_owned_is_drift_but_foreign_labels_are_not() {
    let desired = deployment(json!([{"name": "web", "image": "nginx"}]));
    let mut live = as_server_returns(
        &desired,
        Some(json!({"f:metadata": {"f:labels": {"f:app": {}, "f:tier": {}}}})),
    );
    let labels = live["metadata"]["labels"].as_object_mut().unwrap();
    labels.insert("tier".into(), json!("front"));
    labels.insert("team".into(), json!("shop"));
    let diff = differ().diff(Some(&desired), Some(&live)).unwrap();
    assert_eq!(
        paths(&diff),
        vec![("metadata.labels.tier", ChangeKind::Removed)]
    );
    assert_eq!(diff.changes[0].before, Some(json!("front")));
    assert_eq!(diff.changes[0].pointer, "/metadata/labels/tier");
    let predicted = diff.predicted(Some(&live)).unwrap().unwrap();
    assert_eq!(
        predicted["metadata"]["labels"],
        json!({"app": "web", "team": "shop"})
    );
    // Without a record of what was applied, nothing can be called removed.
    let forgetful = Differ::builder("gitops-rs")
        .last_applied(LastApplied::Nothing)
        .build();
    assert!(
        forgetful
            .diff(Some(&desired), Some(&live))
            .unwrap()
            .is_in_sync()
    );
}

#[test]
fn a_removed_container_and_env_from_the_last_applied_annotation() {
    let applied = deployment(json!([
        {"name": "web", "image": "nginx", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "envoy"}
    ]));
    let mut live = as_server_returns(&applied, None);
    live["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": applied.to_string()
    });
    let desired = deployment(json!([
        {"name": "web", "image": "nginx", "env": [{"name": "B", "value": "2"}]}
    ]));
    let diff = differ().diff(Some(&desired), Some(&live)).unwrap();
    assert_eq!(
        paths(&diff),
        vec![
            (
                "spec.template.spec.containers[name=web].env[name=A]",
                ChangeKind::Removed
            ),
            (
                "spec.template.spec.containers[name=sidecar]",
                ChangeKind::Removed
            ),
        ]
    );
    assert_patch_converges(&differ(), &desired, &live);
}

#[test]
fn service_ports_by_port_and_protocol_with_int_or_string() {
    let desired = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "8080"},
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"}]}});
    let live = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "uid": "x"},
        "spec": {"clusterIP": "10.0.0.12", "clusterIPs": ["10.0.0.12"], "type": "ClusterIP",
            "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster", "selector": {"app": "web"}, "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"},
            {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}});
    assert!(
        differ()
            .diff(Some(&desired), Some(&live))
            .unwrap()
            .is_in_sync()
    );
    let mut changed = live.clone();
    changed["spec"]["ports"][1]["targetPort"] = json!(9090);
    let diff = differ().diff(Some(&desired), Some(&changed)).unwrap();
    assert_eq!(
        paths(&diff),
        vec![(
            "spec.ports[port=80,protocol=TCP].targetPort",
            ChangeKind::Modified
        )]
    );
    assert_eq!(diff.changes[0].pointer, "/spec/ports/1/targetPort");
}

#[test]
fn a_secret_change_is_masked_everywhere_but_the_patch() {
    let desired = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "db", "namespace": "shop"},
        "stringData": {"password": "s3cr3t-new", "user": "admin"}});
    let live = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "db", "namespace": "shop", "uid": "x"},
        "data": {"password": "czNjcjN0LW9sZA==", "user": "YWRtaW4="}});
    let diff = differ().diff(Some(&desired), Some(&live)).unwrap();
    assert_eq!(paths(&diff), vec![("data.password", ChangeKind::Modified)]);
    assert_eq!(diff.changes[0].before, Some(json!("*** (before)")));
    assert_eq!(diff.changes[0].after, Some(json!("*** (after)")));
    let json = diff.to_json().unwrap();
    assert!(
        !json.contains("czNjcjN0") && !json.contains("s3cr3t"),
        "{json}"
    );
    let yaml = diff.unified_yaml(Some(&live), Colour::Never).unwrap();
    assert!(
        !yaml.contains("czNjcjN0") && !yaml.contains("YWRtaW4="),
        "{yaml}"
    );
    assert!(yaml.contains("-  password: \"*** (before)\""), "{yaml}");
    assert!(yaml.contains("+  password: \"*** (after)\""), "{yaml}");
    assert!(yaml.contains("   user: \"***\""), "{yaml}");
    let coloured = diff.unified_yaml(Some(&live), Colour::Always).unwrap();
    assert!(coloured.contains("\u{1b}[31m-  password"), "{coloured}");
    // The patch carries the real value: it is meant to be applied.
    let patch = serde_json::to_string(&diff.patch()).unwrap();
    assert!(patch.contains("czNjcjN0LW5ldw=="), "{patch}");
}

#[test]
fn finalizers_are_a_set() {
    let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "finalizers": ["example.com/a"]}, "data": {"k": "v"}});
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "finalizers": ["example.com/other", "example.com/b", "example.com/a"],
            "managedFields": [{"manager": "gitops-rs", "operation": "Apply", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:finalizers": {"v:\"example.com/a\"": {}, "v:\"example.com/b\"": {}}},
                             "f:data": {"f:k": {}}}}]},
        "data": {"k": "v"}});
    let diff = differ().diff(Some(&desired), Some(&live)).unwrap();
    assert_eq!(
        paths(&diff),
        vec![(
            "metadata.finalizers[\"example.com/b\"]",
            ChangeKind::Removed
        )]
    );
    assert_eq!(diff.changes[0].pointer, "/metadata/finalizers/1");
    assert_patch_converges(&differ(), &desired, &live);
}

#[test]
fn ignore_paths_with_wildcards() {
    let desired = deployment(json!([{"name": "web", "image": "nginx:1.27"}]));
    let mut live = as_server_returns(&desired, None);
    live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    live["metadata"]["labels"]["app"] = json!("other");
    let differ = Differ::builder("gitops-rs")
        .ignore(
            IgnoreRule::new(Selector::default().name("w*").label("app", "web"))
                .path("/spec/template/spec/containers/*/image")
                .unwrap(),
        )
        .build();
    let diff = differ.diff(Some(&desired), Some(&live)).unwrap();
    // The selector matches desired's labels; only the image is ignored.
    assert_eq!(
        paths(&diff),
        vec![("metadata.labels.app", ChangeKind::Modified)]
    );
}

#[test]
fn ignore_paths_select_list_items_by_key() {
    let desired = deployment(json!([
        {"name": "web", "image": "nginx:1.27"},
        {"name": "proxy", "image": "envoy:1.30"}
    ]));
    let mut live = as_server_returns(&desired, None);
    // Reordered in live, both images changed.
    live["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .reverse();
    live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("envoy:1.31");
    live["spec"]["template"]["spec"]["containers"][1]["image"] = json!("nginx:1.28");
    let differ = Differ::builder("gitops-rs")
        .ignore(
            IgnoreRule::new(Selector::default())
                .path("/spec/template/spec/containers/[name=proxy]/image")
                .unwrap(),
        )
        .build();
    let diff = differ.diff(Some(&desired), Some(&live)).unwrap();
    assert_eq!(
        paths(&diff),
        vec![(
            "spec.template.spec.containers[name=web].image",
            ChangeKind::Modified
        )]
    );
    assert_eq!(
        diff.changes[0].pointer,
        "/spec/template/spec/containers/1/image"
    );
}

#[test]
fn statefulset_claim_templates_with_server_defaults_are_not_drift() {
    let desired = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}});
    let mut live = desired.clone();
    live["spec"]["volumeClaimTemplates"][0] = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem",
            "resources": {"requests": {"storage": "1073741824"}}}, "status": {"phase": "Pending"}});
    assert!(
        differ()
            .diff(Some(&desired), Some(&live))
            .unwrap()
            .is_in_sync()
    );
    live["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] =
        json!("2Gi");
    let diff = differ().diff(Some(&desired), Some(&live)).unwrap();
    assert_eq!(
        paths(&diff),
        vec![("spec.volumeClaimTemplates", ChangeKind::Modified)]
    );
}

#[test]
fn custom_resources_use_the_crd_schema() {
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced", "versions": [{"name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                "type": "object", "properties": {"parts": {"type": "array",
                    "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
                    "items": {"type": "object", "properties": {"id": {"type": "string"},
                        "size": {"type": "integer"}}}}}}}}}}]}});
    let mut schema = (*Schema::embedded()).clone();
    schema.add_crd(&crd).unwrap();
    let differ = Differ::builder("gitops-rs")
        .schema(Arc::new(schema))
        .build();
    let desired = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"parts": [{"id": "a", "size": 1}, {"id": "b", "size": 2}]}});
    let live = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"parts": [{"id": "c", "size": 9}, {"id": "b", "size": 2}, {"id": "a", "size": 1}]}});
    // Keyed: order and a foreign item do not matter.
    assert!(
        differ
            .diff(Some(&desired), Some(&live))
            .unwrap()
            .is_in_sync()
    );
    // Without the CRD the list is atomic: drift.
    assert!(
        !self::differ()
            .diff(Some(&desired), Some(&live))
            .unwrap()
            .is_in_sync()
    );
}

#[test]
fn create_delete_and_a_report_over_a_set() {
    let desired = deployment(json!([{"name": "web", "image": "nginx"}]));
    let live = as_server_returns(&desired, None);
    let mut drifted = live.clone();
    drifted["spec"]["replicas"] = json!(1);
    let orphan = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old"}});
    let new = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}, "data": {"a": "b"}});
    let report = differ()
        .diff_all(
            [
                (Some(&desired), Some(&live)),
                (Some(&desired), Some(&drifted)),
                (None, Some(&orphan)),
                (Some(&new), None),
            ],
            &CancellationToken::new(),
        )
        .unwrap();
    assert_eq!(
        report.summary.to_string(),
        "1 in sync, 1 to create, 1 to update (1 field changes), 1 to delete"
    );
    assert_eq!(report.drifted().count(), 3);
    let json: Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!(json["objects"][1]["status"], "update");
    assert_eq!(json["objects"][1]["changes"][0]["path"], "spec.replicas");
    assert_eq!(json["objects"][3]["status"], "create");
    let created = report.objects[3].unified_yaml(None, Colour::Never).unwrap();
    assert!(created.contains("+data:"), "{created}");
    let deleted = report.objects[2]
        .unified_yaml(Some(&orphan), Colour::Never)
        .unwrap();
    assert!(deleted.contains("-kind: ConfigMap"), "{deleted}");
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = differ()
        .diff_all([(Some(&desired), Some(&live))], &cancel)
        .unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let desired = deployment(json!([]));
    let err = differ().diff(None, None).unwrap_err();
    assert!(err.to_string().contains("nothing to compare"));
    let err = differ()
        .diff(Some(&json!({"kind": "X"})), None)
        .unwrap_err();
    assert!(err.to_string().contains("apiVersion"), "{err}");
    let mut other = desired.clone();
    other["metadata"]["name"] = json!("other");
    let err = differ().diff(Some(&desired), Some(&other)).unwrap_err();
    assert!(err.to_string().contains("different objects"), "{err}");
    let mut bad_fields = desired.clone();
    bad_fields["metadata"]["managedFields"] = json!([{"manager": "gitops-rs", "operation": "Apply",
        "fieldsV1": {"f:spec": {"q:x": {}}}}]);
    let err = differ()
        .diff(Some(&desired), Some(&bad_fields))
        .unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        chain.contains("gitops-rs") && chain.contains("q:x"),
        "{chain}"
    );
    let mut bad_annotation = desired.clone();
    bad_annotation["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": "{not json"});
    let err = differ()
        .diff(Some(&desired), Some(&bad_annotation))
        .unwrap_err();
    assert!(err.to_string().contains("last-applied"), "{err}");
}

#[test]
fn long_associative_lists_match_by_key() {
    let env: Vec<Value> = (0..40)
        .map(|i| json!({"name": format!("VAR_{i}"), "value": format!("{i}")}))
        .collect();
    let desired = deployment(json!([{"name": "web", "image": "nginx", "env": env}]));
    let mut live = as_server_returns(&desired, None);
    let live_env = live["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap();
    live_env.reverse();
    live_env[0]["value"] = json!("changed");
    let diff = differ().diff(Some(&desired), Some(&live)).unwrap();
    assert_eq!(
        paths(&diff),
        vec![(
            "spec.template.spec.containers[name=web].env[name=VAR_39].value",
            ChangeKind::Modified
        )]
    );
    assert_eq!(
        diff.changes[0].pointer,
        "/spec/template/spec/containers/0/env/0/value"
    );
    assert_patch_converges(&differ(), &desired, &live);
}

/// What the apiserver returned for a Deployment applied with `hostNetwork: false` (dropped: not a
/// pointer field, yet owned) and `automountServiceAccountToken: false` (stored), after another
/// writer removed the latter (which takes it from its owners).
#[test]
fn an_empty_value_we_own_may_be_absent_but_one_removed_by_hand_is_drift() {
    let mut desired = deployment(json!([{"name": "web", "image": "nginx:1.27",
        "securityContext": {"allowPrivilegeEscalation": false, "privileged": false}}]));
    desired["spec"]["template"]["spec"]["hostNetwork"] = json!(false);
    desired["spec"]["template"]["spec"]["automountServiceAccountToken"] = json!(false);
    desired["spec"]["template"]["spec"]["nodeSelector"] = json!({});
    let owned = json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {
        "f:replicas": {}, "f:selector": {}, "f:template": {"f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:hostNetwork": {}, "f:nodeSelector": {}, "f:containers": {"k:{\"name\":\"web\"}": {
            ".": {}, "f:name": {}, "f:image": {}, "f:securityContext": {"f:privileged": {}}}}}}}});
    let mut live = as_server_returns(&desired, Some(owned));
    let pod = live["spec"]["template"]["spec"].as_object_mut().unwrap();
    pod.remove("hostNetwork");
    pod.remove("automountServiceAccountToken");
    pod.remove("nodeSelector");
    pod["containers"][0]["securityContext"]
        .as_object_mut()
        .unwrap()
        .remove("allowPrivilegeEscalation");
    let differ = differ();
    let diff = differ.diff(Some(&desired), Some(&live)).unwrap();
    assert_eq!(
        paths(&diff),
        [
            (
                "spec.template.spec.automountServiceAccountToken",
                ChangeKind::Added
            ),
            (
                "spec.template.spec.containers[name=web].securityContext.allowPrivilegeEscalation",
                ChangeKind::Added
            ),
        ]
    );
    assert!(differ.needs_apply(&desired, Some(&live)).unwrap());
    assert_patch_converges(&differ, &desired, &live);
    // Without an entry of ours (not applied by us yet, or every field taken by others),
    // nothing is owned: every empty value live lacks is drift (one apply stores it or makes
    // the entry that owns it).
    live["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    let diff = differ.diff(Some(&desired), Some(&live)).unwrap();
    assert_eq!(diff.changes.len(), 4, "{:#?}", diff.changes);
    assert!(differ.needs_apply(&desired, Some(&live)).unwrap());
    assert_patch_converges(&differ, &desired, &live);
}

/// A desired null is the zero value server-side apply stores, in a field it then owns.
#[test]
fn a_desired_null_is_compared_as_the_server_stores_it() {
    let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "shop", "labels": {"tier": null}},
        "data": {"a": "x", "b": null}});
    let ours = |fields: Value| {
        json!([{"manager": "gitops-rs", "operation": "Apply", "apiVersion": "v1",
            "fieldsType": "FieldsV1", "fieldsV1": fields}])
    };
    let all = json!({"f:metadata": {"f:labels": {"f:tier": {}}}, "f:data": {"f:a": {}, "f:b": {}}});
    let stored = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "shop", "labels": {"tier": ""}, "managedFields": ours(all)},
        "data": {"a": "x", "b": ""}});
    let differ = differ();
    assert!(
        differ
            .diff(Some(&desired), Some(&stored))
            .unwrap()
            .is_in_sync()
    );
    assert!(!differ.needs_apply(&desired, Some(&stored)).unwrap());

    // Another writer set data.b (taking it from us): drift back to the zero value.
    let mut edited = stored.clone();
    edited["data"]["b"] = json!("y");
    edited["metadata"]["managedFields"] =
        ours(json!({"f:metadata": {"f:labels": {"f:tier": {}}}, "f:data": {"f:a": {}}}));
    let diff = differ.diff(Some(&desired), Some(&edited)).unwrap();
    assert_eq!(paths(&diff), [("data.b", ChangeKind::Modified)]);
    assert_eq!(diff.changes[0].after, Some(json!("")));
    assert_patch_converges(&differ, &desired, &edited);

    // Another writer removed the label (taking it from us): the apply stores it again.
    let mut removed = stored.clone();
    removed["metadata"]["labels"] = json!({});
    removed["metadata"]["managedFields"] = ours(json!({"f:data": {"f:a": {}, "f:b": {}}}));
    let diff = differ.diff(Some(&desired), Some(&removed)).unwrap();
    assert_eq!(paths(&diff), [("metadata.labels.tier", ChangeKind::Added)]);
    assert_patch_converges(&differ, &desired, &removed);

    // `replicas: null` is defaulted to 1 in a field we own: in sync.
    let mut desired = deployment(json!([{"name": "web", "image": "nginx:1.27"}]));
    desired["spec"]["replicas"] = Value::Null;
    let owned = json!({"f:spec": {"f:replicas": {}}});
    let mut live = as_server_returns(&desired, Some(owned));
    live["spec"]["replicas"] = json!(1);
    assert!(
        differ
            .diff(Some(&desired), Some(&live))
            .unwrap()
            .is_in_sync()
    );
}
