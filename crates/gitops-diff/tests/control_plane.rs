//! Against a real control plane (Kubernetes v1.37.2 from gitops-envtest): server-side apply a
//! corpus of objects of 35 kinds as `gitops-rs`, read them back with every server default, and
//! check that the engine reports each in sync (zero false drift); then that dropping a label we
//! applied is exactly one removal; then that another manager changing one field is exactly that
//! drift.

// The CRD and corpus literals nest deeper than `json!`'s default budget.
#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::Duration;

use gitops_diff::{ChangeKind, Differ, Schema};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error + Send + Sync>;

const MANAGER: &str = "gitops-rs";
const CORPUS_LABEL: &str = "gitops-rs.test/corpus";

/// One object of the corpus and the drift another manager introduces.
struct Case {
    object: Value,
    /// A JSON pointer into the live object, replaced with `value` by another manager.
    pointer: &'static str,
    value: Value,
    /// The path the engine must report.
    expected: &'static str,
    /// Fields another writer removes (JSON pointers into live), one at a time, with the change
    /// the engine must report for each.
    removals: Vec<Removal>,
}

/// A field removed by hand and the drift it is.
struct Removal {
    pointer: &'static str,
    expected: &'static str,
    kind: ChangeKind,
}

fn case(object: Value, pointer: &'static str, value: Value, expected: &'static str) -> Case {
    Case {
        object,
        pointer,
        value,
        expected,
        removals: Vec::new(),
    }
}

impl Case {
    /// Another writer removes the field at `pointer`: the engine must report `expected` as
    /// added back (the desired value is set, live lacks it).
    fn removes(self, pointer: &'static str, expected: &'static str) -> Self {
        self.removes_as(pointer, expected, ChangeKind::Added)
    }

    fn removes_as(
        mut self,
        pointer: &'static str,
        expected: &'static str,
        kind: ChangeKind,
    ) -> Self {
        self.removals.push(Removal {
            pointer,
            expected,
            kind,
        });
        self
    }
}

/// A pod spec with empty values of every shape: some the apiserver stores (fields of pointer
/// type: `automountServiceAccountToken: false`, `runAsUser: 0`), some it drops (`hostNetwork:
/// false`, `workingDir: ""`, `nodeSelector: {}`, `tolerations: []`, an empty `env`).
fn pod_spec(image: &str) -> Value {
    json!({"automountServiceAccountToken": false, "hostNetwork": false, "nodeSelector": {},
        "tolerations": [], "imagePullSecrets": [],
        "securityContext": {"runAsNonRoot": false, "supplementalGroups": []},
        "containers": [{"name": "web", "image": image, "args": [], "workingDir": "", "stdin": false,
        "ports": [{"containerPort": 8080, "name": "http"}],
        "env": [{"name": "MODE", "value": "test"}, {"name": "EMPTY", "value": ""}],
        "envFrom": [],
        "securityContext": {"allowPrivilegeEscalation": false, "runAsUser": 0, "privileged": false},
        "resources": {"requests": {"cpu": "0.1", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]})
}

fn without(mut object: Value, field: &str) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.remove(field);
    }
    object
}

const WIDGET_CRD: &str = "widgets.diff.gitops-rs.test";

fn widget_crd() -> Value {
    let string_list = json!({"type": "array", "items": {"type": "string"}});
    let object = json!({"type": "object", "properties": {"a": {"type": "string"}}});
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": WIDGET_CRD, "labels": {"app": "web"}},
        "spec": {"group": "diff.gitops-rs.test", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"x-kubernetes-int-or-string": true},
                        "memory": {"type": "string"},
                        "flag": {"type": "boolean"},
                        "count": {"type": "integer"},
                        "note": {"type": "string"},
                        "list": string_list,
                        "obj": object,
                        "map": string_map,
                        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                        "parts": {"type": "array", "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["id"],
                            "items": {"type": "object", "required": ["id"], "properties": {
                                "id": {"type": "string"}, "count": {"type": "integer", "default": 1},
                                "size": {"type": "integer"}}}}}}}}}}]}})
}

#[allow(clippy::too_many_lines)]
fn corpus(ns: &str) -> Vec<Case> {
    let cluster = |name: &str| format!("{ns}-{name}");
    let labels = json!({"app": "web"});
    vec![
        case(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config", "labels": labels,
                // Empty lists of other types than atomic: server-side apply records no owner.
                "finalizers": [], "ownerReferences": [], "annotations": {}},
            "data": {"key": "value", "other": "x", "empty": ""}, "binaryData": {}, "immutable": false}),
            "/data/key",
            json!("changed"),
            "data.key",
        )
        .removes("/data/empty", "data.empty")
        .removes("/immutable", "immutable")
        .removes("/data/other", "data.other"),
        case(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "secret", "labels": labels},
            "type": "Opaque", "stringData": {"password": "s3cr3t"}}),
            "/data/password",
            json!("b3RoZXI="),
            "data.password",
        ),
        case(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": labels},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]}}),
            "/spec/ports/0/targetPort",
            json!(9090),
            "spec.ports[port=80,protocol=TCP].targetPort",
        )
        .removes("/spec/ports/1", "spec.ports[port=53,protocol=UDP]"),
        case(
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot", "labels": labels},
            "automountServiceAccountToken": false}),
            "/automountServiceAccountToken",
            json!(true),
            "automountServiceAccountToken",
        )
        .removes("/automountServiceAccountToken", "automountServiceAccountToken"),
        case(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": labels},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec("nginx:1.27")}}}),
            "/spec/template/spec/containers/0/image",
            json!("nginx:1.28"),
            "spec.template.spec.containers[name=web].image",
        )
        .removes(
            "/spec/template/spec/automountServiceAccountToken",
            "spec.template.spec.automountServiceAccountToken",
        )
        .removes(
            "/spec/template/spec/containers/0/securityContext/allowPrivilegeEscalation",
            "spec.template.spec.containers[name=web].securityContext.allowPrivilegeEscalation",
        )
        .removes(
            "/spec/template/spec/containers/0/securityContext/runAsUser",
            "spec.template.spec.containers[name=web].securityContext.runAsUser",
        )
        .removes(
            "/spec/template/spec/securityContext/runAsNonRoot",
            "spec.template.spec.securityContext.runAsNonRoot",
        ),
        case(
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "labels": labels},
            "spec": {"serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": pod_spec("postgres:17")},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}]}}),
            "/spec/replicas",
            json!(3),
            "spec.replicas",
        )
        .removes(
            "/spec/template/spec/containers/0/securityContext/privileged",
            "spec.template.spec.containers[name=web].securityContext.privileged",
        ),
        case(
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "labels": labels},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": pod_spec("agent:1")}}}),
            "/spec/template/spec/containers/0/env/0/value",
            json!("prod"),
            "spec.template.spec.containers[name=web].env[name=MODE].value",
        )
        .removes(
            "/spec/template/spec/containers/0/env/1",
            "spec.template.spec.containers[name=web].env[name=EMPTY]",
        )
        .removes(
            "/spec/template/spec/containers/0/env/0/value",
            "spec.template.spec.containers[name=web].env[name=MODE].value",
        ),
        case(
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs", "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "rs"}},
                "template": {"metadata": {"labels": {"app": "rs"}}, "spec": pod_spec("nginx:1.27")}}}),
            "/spec/replicas",
            json!(0),
            "spec.replicas",
        ),
        case(
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job", "labels": labels},
            "spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "job", "image": "busybox", "command": ["true"]}]}}}}),
            "/metadata/labels/app",
            json!("other"),
            "metadata.labels.app",
        ),
        case(
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cron", "labels": labels},
            "spec": {"schedule": "*/5 * * * *", "startingDeadlineSeconds": 0, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
            "/spec/schedule",
            json!("0 * * * *"),
            "spec.schedule",
        )
        .removes("/spec/startingDeadlineSeconds", "spec.startingDeadlineSeconds"),
        case(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod", "labels": labels},
            // Not `tolerations: []`: an admission plugin adds two when the Pod is created.
            "spec": without(pod_spec("nginx:1.27"), "tolerations")}),
            "/spec/containers/0/image",
            json!("nginx:1.26"),
            "spec.containers[name=web].image",
        )
        .removes("/metadata/labels/app", "metadata.labels.app"),
        case(
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "claim", "labels": labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}}),
            "/metadata/labels/app",
            json!("db"),
            "metadata.labels.app",
        ),
        case(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader", "labels": labels},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
            "/rules/0/verbs/0",
            json!("watch"),
            "rules",
        )
        .removes_as("/rules/0/verbs/1", "rules", ChangeKind::Modified),
        case(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "reader", "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": ns}]}),
            "/subjects/0/name",
            json!("default"),
            "subjects",
        ),
        case(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "web", "labels": labels},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 8080}]}]}}),
            "/spec/ingress/0/ports/0/port",
            json!(9090),
            "spec.ingress",
        ),
        case(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "labels": labels},
            "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
            "/spec/rules/0/host",
            json!("other.example.com"),
            "spec.rules",
        ),
        case(
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web", "labels": labels},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5, "metrics": [{"type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}}),
            "/spec/maxReplicas",
            json!(9),
            "spec.maxReplicas",
        ),
        case(
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "labels": labels},
            "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}}),
            "/spec/minAvailable",
            json!(1),
            "spec.minAvailable",
        ),
        case(
            json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits", "labels": labels},
            "spec": {"limits": [{"type": "Container", "default": {"cpu": "0.5", "memory": "512Mi"},
                "defaultRequest": {"cpu": "100m"}}]}}),
            "/spec/limits/0/default/cpu",
            json!("1"),
            "spec.limits",
        ),
        case(
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "quota", "labels": labels},
            "spec": {"hard": {"pods": "10", "requests.cpu": "4", "requests.memory": "8Gi"}}}),
            "/spec/hard/pods",
            json!("20"),
            "spec.hard.pods",
        )
        .removes("/spec/hard/pods", "spec.hard.pods"),
        case(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-1",
                "labels": {"app": "web", "kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}),
            "/endpoints/0/addresses/0",
            json!("10.1.0.2"),
            "endpoints",
        ),
        case(
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "lock", "labels": labels},
            "spec": {"holderIdentity": "one", "leaseDurationSeconds": 15, "leaseTransitions": 0}}),
            "/spec/holderIdentity",
            json!("two"),
            "spec.holderIdentity",
        )
        .removes("/spec/leaseTransitions", "spec.leaseTransitions"),
        case(
            json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "tpl", "labels": labels},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec("nginx:1.27")}}),
            "/template/spec/containers/0/resources/limits/memory",
            json!("2Gi"),
            "template.spec.containers[name=web].resources.limits.memory",
        ),
        case(
            json!({"apiVersion": "diff.gitops-rs.test/v1", "kind": "Widget", "metadata": {"name": "widget", "labels": labels},
            "spec": {"size": "10", "memory": "1Gi", "tags": ["a", "b"], "parts": [{"id": "x", "size": 3}, {"id": "y"}],
                "flag": false, "count": 0, "note": "", "list": [], "obj": {}, "map": {"k": ""}}}),
            "/spec/parts/0/size",
            json!(4),
            "spec.parts[id=x].size",
        )
        .removes("/spec/flag", "spec.flag")
        .removes("/spec/count", "spec.count")
        .removes("/spec/note", "spec.note")
        .removes("/spec/list", "spec.list")
        .removes("/spec/obj", "spec.obj")
        .removes("/spec/map/k", "spec.map.k")
        .removes("/spec/tags/1", "spec.tags[\"b\"]")
        .removes("/spec/parts/1", "spec.parts[id=y]"),
        // Cluster-scoped.
        case(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": cluster("extra"), "labels": labels}}),
            "/metadata/labels/app",
            json!("other"),
            "metadata.labels.app",
        ),
        case(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": cluster("viewer"), "labels": labels},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
                {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
            "/rules/1/nonResourceURLs/0",
            json!("/livez"),
            "rules",
        ),
        case(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": cluster("viewer"), "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster("viewer")},
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": ns}]}),
            "/subjects/0/namespace",
            json!("default"),
            "subjects",
        ),
        case(
            widget_crd(),
            "/metadata/labels/app",
            json!("other"),
            "metadata.labels.app",
        ),
        case(
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": cluster("high"), "labels": labels},
            "value": 1000, "description": "important"}),
            "/description",
            json!("less important"),
            "description",
        ),
        case(
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": cluster("fast"), "labels": labels},
            "provisioner": "example.com/fast", "parameters": {"tier": "gold"}, "allowVolumeExpansion": true}),
            "/allowVolumeExpansion",
            json!(false),
            "allowVolumeExpansion",
        ),
        case(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": cluster("nginx"), "labels": labels},
            "spec": {"controller": "example.com/ingress"}}),
            "/metadata/labels/app",
            json!("x"),
            "metadata.labels.app",
        ),
        case(
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": cluster("pv"), "labels": labels},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/pv"},
                "persistentVolumeReclaimPolicy": "Retain"}}),
            "/spec/persistentVolumeReclaimPolicy",
            json!("Delete"),
            "spec.persistentVolumeReclaimPolicy",
        ),
        case(
            json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": cluster("runc"), "labels": labels},
            "handler": "runc"}),
            "/metadata/labels/app",
            json!("x"),
            "metadata.labels.app",
        ),
        case(
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": format!("{ns}.csi.example.com"), "labels": labels},
            "spec": {"attachRequired": false, "podInfoOnMount": true}}),
            "/metadata/labels/app",
            json!("x"),
            "metadata.labels.app",
        ),
        case(
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": cluster("policy"), "labels": labels},
            "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"],
                "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]}]},
                "validations": [{"expression": "object.spec.replicas <= 50", "message": "too many"}]}}),
            "/spec/validations/0/message",
            json!("way too many"),
            "spec.validations",
        ),
    ]
}

async fn api_for(
    client: &kube::Client,
    object: &Value,
    ns: &str,
) -> Result<(Api<DynamicObject>, bool), Error> {
    let api_version = object["apiVersion"].as_str().ok_or("apiVersion")?;
    let kind = object["kind"].as_str().ok_or("kind")?;
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, caps): (ApiResource, _) = pinned_kind(client, &gvk).await?;
    let namespaced = caps.scope == Scope::Namespaced;
    let api = if namespaced {
        Api::namespaced_with(client.clone(), ns, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    Ok((api, namespaced))
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Server-side applies as `gitops-rs`, retrying while the namespace's default ServiceAccount or a
/// new CRD is not there yet.
async fn apply(api: &Api<DynamicObject>, object: &Value) -> Result<(), Error> {
    let params = PatchParams::apply(MANAGER).force();
    let mut attempt = 0;
    loop {
        match api
            .patch(&name_of(object), &params, &Patch::Apply(object))
            .await
        {
            Ok(_) => return Ok(()),
            Err(_) if attempt < 40 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(format!("applying {}: {e}", object["kind"]).into()),
        }
    }
}

async fn get(api: &Api<DynamicObject>, object: &Value) -> Result<Value, Error> {
    Ok(serde_json::to_value(api.get(&name_of(object)).await?)?)
}

async fn wait_established(client: &kube::Client) -> Result<(), Error> {
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    for _ in 0..100 {
        let crd = serde_json::to_value(crds.get(WIDGET_CRD).await?)?;
        let established = crd
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
            });
        if established {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the Widget CRD never became established".into())
}

/// Runs the corpus; returns every failure as a message (so that cleanup always runs).
async fn run_corpus(client: &kube::Client, ns: &str, cases: &[Case]) -> Result<Vec<String>, Error> {
    let mut failures = Vec::new();
    // The CRD first: the Widget needs it.
    let crd = cases
        .iter()
        .find(|c| c.object["kind"] == "CustomResourceDefinition")
        .ok_or("no CRD")?;
    let (crd_api, _) = api_for(client, &crd.object, ns).await?;
    apply(&crd_api, &with_corpus_label(&crd.object)).await?;
    wait_established(client).await?;
    let mut schema = (*Schema::embedded()).clone();
    schema.add_crd(&crd.object)?;
    let differ = Differ::builder(MANAGER).schema(Arc::new(schema)).build();

    let mut lives = Vec::new();
    for case in cases {
        let desired = with_corpus_label(&case.object);
        let (api, namespaced) = api_for(client, &desired, ns).await?;
        apply(&api, &desired).await?;
        let live = get(&api, &desired).await?;
        let mut desired_in_ns = desired.clone();
        if namespaced {
            desired_in_ns["metadata"]["namespace"] = json!(ns);
        }
        let diff = differ.diff(Some(&desired_in_ns), Some(&live))?;
        if !diff.is_in_sync() {
            failures.push(format!(
                "{}: false drift {:#?}",
                diff.id.display_name(),
                diff.changes
            ));
        }
        if differ.needs_apply(&desired_in_ns, Some(&live))? {
            failures.push(format!(
                "{}: needs_apply on an object in sync",
                diff.id.display_name()
            ));
        }
        lives.push((api, desired_in_ns, live));
    }

    // Dropping the label we applied: exactly one removal, found through managedFields.
    for (_, desired, live) in &lives {
        let mut without = desired.clone();
        without["metadata"]["labels"]
            .as_object_mut()
            .ok_or("labels")?
            .remove(CORPUS_LABEL);
        let diff = differ.diff(Some(&without), Some(live))?;
        let got: Vec<_> = diff
            .changes
            .iter()
            .map(|c| (c.path.as_str(), c.kind))
            .collect();
        let expected = format!("metadata.labels[\"{CORPUS_LABEL}\"]");
        if got != [(expected.as_str(), ChangeKind::Removed)] {
            failures.push(format!(
                "{}: removing our label gave {got:?}",
                diff.id.display_name()
            ));
        }
    }

    // Another writer removes a field we applied (false, 0, "", an empty list or map, a list
    // item, a map key): exactly that drift; applying again puts it back and is in sync.
    for ((api, desired, _), case) in lives.iter().zip(cases) {
        for removal in &case.removals {
            failures.extend(remove_and_restore(&differ, api, desired, removal).await?);
        }
    }

    // Another manager changes one field: exactly that drift.
    for ((api, desired, _), case) in lives.iter().zip(cases) {
        let patch: json_patch::Patch = serde_json::from_value(json!([
            {"op": "replace", "path": case.pointer, "value": case.value}
        ]))?;
        let params = PatchParams {
            field_manager: Some("intruder".to_owned()),
            ..PatchParams::default()
        };
        api.patch(&name_of(desired), &params, &Patch::Json::<()>(patch))
            .await
            .map_err(|e| format!("{}: patching {}: {e}", desired["kind"], case.pointer))?;
        let live = get(api, desired).await?;
        let diff = differ.diff(Some(desired), Some(&live))?;
        let got: Vec<_> = diff
            .changes
            .iter()
            .map(|c| (c.path.as_str(), c.kind))
            .collect();
        if got != [(case.expected, ChangeKind::Modified)] {
            failures.push(format!(
                "{}: after changing {}, expected exactly {} but got {:#?} (live metadata {})",
                diff.id.display_name(),
                case.pointer,
                case.expected,
                diff.changes,
                live["metadata"]
            ));
        }
        if !differ.needs_apply(desired, Some(&live))? {
            failures.push(format!(
                "{}: needs_apply missed the drift",
                diff.id.display_name()
            ));
        }
    }
    Ok(failures)
}

/// Removes one field as another writer (`kubectl patch --type=json`), checks the drift, applies
/// again, and checks that the field is back and the object in sync.
async fn remove_and_restore(
    differ: &Differ,
    api: &Api<DynamicObject>,
    desired: &Value,
    removal: &Removal,
) -> Result<Vec<String>, Error> {
    let mut failures = Vec::new();
    let kind = desired["kind"].as_str().unwrap_or_default();
    let patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "remove", "path": removal.pointer}]))?;
    let params = PatchParams {
        field_manager: Some("kubectl-patch".to_owned()),
        ..PatchParams::default()
    };
    api.patch(&name_of(desired), &params, &Patch::Json::<()>(patch))
        .await
        .map_err(|e| format!("{kind}: removing {}: {e}", removal.pointer))?;
    let live = get(api, desired).await?;
    if live.pointer(removal.pointer).is_some() {
        return Err(format!(
            "{kind}: {} is still there after its removal",
            removal.pointer
        )
        .into());
    }
    let diff = differ.diff(Some(desired), Some(&live))?;
    let got: Vec<_> = diff
        .changes
        .iter()
        .map(|c| (c.path.as_str(), c.kind))
        .collect();
    if got != [(removal.expected, removal.kind)] {
        failures.push(format!(
            "{kind}: after removing {}, expected exactly {} ({:?}) but got {:#?}",
            removal.pointer, removal.expected, removal.kind, diff.changes
        ));
    }
    if !differ.needs_apply(desired, Some(&live))? {
        failures.push(format!(
            "{kind}: needs_apply missed the removal of {}",
            removal.pointer
        ));
    }
    apply(api, desired).await?;
    let live = get(api, desired).await?;
    if live.pointer(removal.pointer).is_none() {
        failures.push(format!(
            "{kind}: applying again did not restore {}",
            removal.pointer
        ));
    }
    let diff = differ.diff(Some(desired), Some(&live))?;
    if !diff.is_in_sync() || differ.needs_apply(desired, Some(&live))? {
        failures.push(format!(
            "{kind}: after restoring {}, false drift {:#?}",
            removal.pointer, diff.changes
        ));
    }
    Ok(failures)
}

fn with_corpus_label(object: &Value) -> Value {
    let mut object = object.clone();
    object["metadata"]["labels"][CORPUS_LABEL] = json!("yes");
    object
}

async fn delete_cluster_scoped(client: &kube::Client, ns: &str, cases: &[Case]) {
    // The Widget before its CRD; namespaced objects go with the namespace.
    for case in cases.iter().rev() {
        if let Ok((api, false)) = api_for(client, &case.object, ns).await {
            let _ = api
                .delete(&name_of(&case.object), &DeleteParams::default())
                .await;
        }
    }
}

#[tokio::test]
async fn corpus_of_35_kinds_has_no_false_drift_and_exact_drift() -> Result<(), Error> {
    let control_plane = gitops_envtest::shared().await?;
    let client = control_plane.client().await?;
    let ns = control_plane.create_namespace("gitops-diff").await?;
    let cases = corpus(&ns);
    let kinds: std::collections::BTreeSet<&str> = cases
        .iter()
        .filter_map(|c| c.object["kind"].as_str())
        .collect();
    assert!(kinds.len() >= 30, "only {} kinds", kinds.len());
    let result = run_corpus(&client, &ns, &cases).await;
    delete_cluster_scoped(&client, &ns, &cases).await;
    let failures = result?;
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn the_cluster_schema_is_read_from_openapi_v3() -> Result<(), Error> {
    let control_plane = gitops_envtest::shared().await?;
    let client = control_plane.client().await?;
    let cancel = CancellationToken::new();
    let mut reported = 0;
    let schema = gitops_diff::fetch_cluster_schema(
        |path| {
            let client = client.clone();
            async move {
                let request = http::Request::get(path).body(Vec::new())?;
                Ok::<_, Error>(client.request_text(request).await?)
            }
        },
        &cancel,
        |done, _total| reported = done,
    )
    .await?;
    assert!(reported > 10, "only {reported} documents");
    let root = schema
        .kind("apps/v1", "Deployment")
        .ok_or("no Deployment")?;
    let containers = schema.path(root, &["spec", "template", "spec", "containers"]);
    assert!(
        matches!(
            containers,
            gitops_diff::FieldSchema::List {
                list_type: gitops_diff::ListType::Map,
                ..
            }
        ),
        "{containers:?}"
    );
    // A cancelled read stops with a clear error.
    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let err = gitops_diff::fetch_cluster_schema(
        |path| {
            let client = client.clone();
            async move {
                let request = http::Request::get(path).body(Vec::new())?;
                Ok::<_, Error>(client.request_text(request).await?)
            }
        },
        &cancelled,
        |_, _| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, gitops_diff::ClusterSchemaError::Cancelled),
        "{err}"
    );
    Ok(())
}

/// A desired null, as a YAML `key:` with nothing after it or a Helm template with an unset value
/// renders it: server-side apply stores the zero value of the field (`""` in a string map, `"0"`
/// for a quantity, the default for a pointer field such as `replicas`) and owns the field, so the
/// object is in sync after one apply and a second apply changes nothing; another writer's value
/// there is drift, which applying again undoes.
#[tokio::test]
async fn desired_nulls_are_in_sync_after_one_apply() -> Result<(), Error> {
    let control_plane = gitops_envtest::shared().await?;
    let client = control_plane.client().await?;
    let ns = control_plane.create_namespace("gitops-diff-null").await?;
    let differ = Differ::builder(MANAGER).build();
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "nulls", "namespace": ns, "labels": {"app": "web", "tier": null},
            "annotations": {"note": null}},
        "data": {"a": "x", "b": null}});
    let mut spec = pod_spec("nginx:1.27");
    spec["nodeSelector"] = json!({"disk": null, "zone": "a"});
    spec["containers"][0]["resources"] = json!({"limits": {"cpu": null, "memory": "1Gi"}});
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nulls", "namespace": ns},
        "spec": {"replicas": null, "minReadySeconds": null, "selector": {"matchLabels": {"app": "nulls"}},
            "template": {"metadata": {"labels": {"app": "nulls"}}, "spec": spec}}});
    let mut failures = Vec::new();
    for desired in [&config_map, &deployment] {
        let kind = desired["kind"].as_str().unwrap_or_default();
        let (api, _) = api_for(&client, desired, &ns).await?;
        apply(&api, desired).await?;
        let live = get(&api, desired).await?;
        let diff = differ.diff(Some(desired), Some(&live))?;
        if !diff.is_in_sync() || differ.needs_apply(desired, Some(&live))? {
            failures.push(format!("{kind}: false drift {:#?}", diff.changes));
        }
        // The server agrees: a second apply changes nothing.
        apply(&api, desired).await?;
        let again = get(&api, desired).await?;
        if again["metadata"]["resourceVersion"] != live["metadata"]["resourceVersion"] {
            failures.push(format!("{kind}: the second apply changed the object"));
        }
    }
    // What the server stored for the nulls.
    let (api, _) = api_for(&client, &config_map, &ns).await?;
    let live = get(&api, &config_map).await?;
    assert_eq!(live["data"], json!({"a": "x", "b": ""}));
    let (deployments, _) = api_for(&client, &deployment, &ns).await?;
    let live_deployment = get(&deployments, &deployment).await?;
    assert_eq!(live_deployment["spec"]["replicas"], json!(1));
    assert_eq!(
        live_deployment["spec"]["template"]["spec"]["nodeSelector"],
        json!({"disk": "", "zone": "a"})
    );
    assert_eq!(
        live_deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        json!("0")
    );

    // Another writer sets the null entry: drift, which applying again undoes.
    let params = PatchParams {
        field_manager: Some("kubectl-edit".to_owned()),
        ..PatchParams::default()
    };
    api.patch("nulls", &params, &Patch::Merge(json!({"data": {"b": "y"}})))
        .await?;
    let live = get(&api, &config_map).await?;
    let diff = differ.diff(Some(&config_map), Some(&live))?;
    let got: Vec<_> = diff
        .changes
        .iter()
        .map(|c| (c.path.as_str(), c.kind))
        .collect();
    if got != [("data.b", ChangeKind::Modified)] || !differ.needs_apply(&config_map, Some(&live))? {
        failures.push(format!("ConfigMap: another writer's data.b gave {got:?}"));
    }
    apply(&api, &config_map).await?;
    let live = get(&api, &config_map).await?;
    if live["data"]["b"] != "" || !differ.diff(Some(&config_map), Some(&live))?.is_in_sync() {
        failures.push(format!("ConfigMap: applying again left {}", live["data"]));
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

mod against_the_server {
    //! The diff properties checked against the real apiserver instead of the differ itself:
    //! apply a generated PodTemplate (a whole pod spec, and no controller that acts on it) or
    //! ConfigMap (string maps with empty and null values) as
    //! `gitops-rs`, let another writer edit it (remove, change or add a field) and maybe change
    //! desired, then ask the server what applying desired would do (a server-side dry-run
    //! apply) and compare with the differ's verdict.

    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use serde_json::{Map, Value, json};

    fn optional(map: &mut Map<String, Value>, name: &str, value: Option<Value>) {
        if let Some(value) = value {
            map.insert(name.to_owned(), value);
        }
    }

    /// A string, an empty string or a null.
    fn text(values: &'static [&'static str]) -> impl Strategy<Value = Value> {
        prop_oneof![
            prop::sample::select(values).prop_map(|s| json!(s)),
            Just(json!("")),
            Just(Value::Null),
        ]
    }

    fn container(name: &'static str) -> impl Strategy<Value = Value> {
        (
            prop::sample::select(vec!["nginx:1.27", "nginx:1.28"]),
            prop::option::of(prop_oneof![Just(json!([])), Just(json!(["-v"]))]),
            prop::option::of(prop_oneof![Just(json!("")), Just(json!("/srv"))]),
            prop::option::of(any::<bool>()),
            prop::option::of(prop::collection::btree_map(
                prop::sample::select(vec!["A", "B", "C"]),
                text(&["x", "y"]),
                0..3,
            )),
            prop::option::of(prop::collection::btree_set(
                prop::sample::select(vec![80u16, 8080]),
                0..3,
            )),
            prop::option::of((
                prop::sample::select(vec![json!("1"), json!("1000m"), json!("0"), Value::Null]),
                prop::sample::select(vec![json!("64Mi"), json!("67108864")]),
            )),
            prop::option::of((
                prop::option::of(any::<bool>()),
                // Not `true`: the apiserver refuses it with `allowPrivilegeEscalation: false`.
                prop::option::of(Just(false)),
                prop::option::of(prop::sample::select(vec![0i64, 1000])),
            )),
        )
            .prop_map(
                move |(image, args, working_dir, stdin, env, ports, resources, security)| {
                    let mut c = Map::new();
                    c.insert("name".into(), json!(name));
                    c.insert("image".into(), json!(image));
                    optional(&mut c, "args", args);
                    optional(&mut c, "workingDir", working_dir);
                    optional(&mut c, "stdin", stdin.map(Value::Bool));
                    optional(
                        &mut c,
                        "env",
                        env.map(|env| {
                            env.into_iter()
                                .map(|(k, v)| json!({"name": k, "value": v}))
                                .collect()
                        }),
                    );
                    optional(
                        &mut c,
                        "ports",
                        ports.map(|ports| {
                            ports
                                .into_iter()
                                .map(|p| json!({"containerPort": p}))
                                .collect()
                        }),
                    );
                    optional(
                        &mut c,
                        "resources",
                        resources.map(|(cpu, memory)| {
                            json!({"limits": {"cpu": cpu}, "requests": {"memory": memory}})
                        }),
                    );
                    optional(
                        &mut c,
                        "securityContext",
                        security.map(|(escalation, privileged, user)| {
                            let mut s = Map::new();
                            optional(
                                &mut s,
                                "allowPrivilegeEscalation",
                                escalation.map(Value::Bool),
                            );
                            optional(&mut s, "privileged", privileged.map(Value::Bool));
                            optional(&mut s, "runAsUser", user.map(|u| json!(u)));
                            Value::Object(s)
                        }),
                    );
                    Value::Object(c)
                },
            )
    }

    pub(super) fn pod_template(name: String) -> impl Strategy<Value = Value> {
        let containers = prop_oneof![
            container("web").prop_map(|c| vec![c]),
            (container("web"), container("log")).prop_map(|(a, b)| vec![a, b]),
        ];
        (
            prop::collection::btree_map(
                prop::sample::select(vec!["tier", "team"]),
                text(&["a", "b"]),
                0..3,
            ),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::option::of(prop::collection::btree_map(
                prop::sample::select(vec!["disk", "zone"]),
                text(&["ssd", "a"]),
                0..3,
            )),
            prop::option::of(prop_oneof![
                Just(json!([])),
                Just(json!([{"key": "k", "operator": "Exists"}]))
            ]),
            prop::option::of(prop::sample::select(vec![0i64, 30, 60])),
            prop::option::of((
                prop::option::of(any::<bool>()),
                prop::option::of(prop::sample::select(vec![0i64, 1000])),
            )),
            containers,
        )
            .prop_map(
                move |(
                    labels,
                    automount,
                    host_network,
                    node_selector,
                    tolerations,
                    grace,
                    security,
                    containers,
                )| {
                    let mut spec = Map::new();
                    optional(
                        &mut spec,
                        "automountServiceAccountToken",
                        automount.map(Value::Bool),
                    );
                    optional(&mut spec, "hostNetwork", host_network.map(Value::Bool));
                    optional(&mut spec, "nodeSelector", node_selector.map(|m| json!(m)));
                    optional(&mut spec, "tolerations", tolerations);
                    optional(
                        &mut spec,
                        "terminationGracePeriodSeconds",
                        grace.map(|g| json!(g)),
                    );
                    optional(
                        &mut spec,
                        "securityContext",
                        security.map(|(non_root, user)| {
                            let mut s = Map::new();
                            optional(&mut s, "runAsNonRoot", non_root.map(Value::Bool));
                            optional(&mut s, "runAsUser", user.map(|u| json!(u)));
                            Value::Object(s)
                        }),
                    );
                    spec.insert("containers".into(), Value::Array(containers));
                    let mut labels: Map<String, Value> =
                        labels.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                    labels.insert("app".into(), json!("web"));
                    json!({"apiVersion": "v1", "kind": "PodTemplate",
                        "metadata": {"name": name, "labels": labels},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec}})
                },
            )
    }

    /// A ConfigMap: string maps with empty and null values.
    pub(super) fn config_map(name: String) -> impl Strategy<Value = Value> {
        (
            prop::collection::btree_map(
                prop::sample::select(vec!["tier", "team"]),
                text(&["a", "b"]),
                0..3,
            ),
            prop::option::of(prop::collection::btree_map(
                prop::sample::select(vec!["a", "b", "c"]),
                text(&["x", "y"]),
                0..4,
            )),
            prop::option::of(Just(json!({}))),
            // Not `true`: an immutable ConfigMap refuses the next case's changes.
            prop::option::of(Just(false)),
        )
            .prop_map(move |(labels, data, binary, immutable)| {
                let mut object = Map::new();
                object.insert("apiVersion".into(), json!("v1"));
                object.insert("kind".into(), json!("ConfigMap"));
                object.insert("metadata".into(), json!({"name": name, "labels": labels}));
                optional(&mut object, "data", data.map(|d| json!(d)));
                optional(&mut object, "binaryData", binary);
                optional(&mut object, "immutable", immutable.map(Value::Bool));
                Value::Object(object)
            })
    }

    /// What another writer does to the live object.
    #[derive(Debug, Clone, Copy)]
    pub(super) enum Edit {
        /// Remove the field or item at this position among all of them.
        Remove(usize),
        /// Change the scalar at this position among all of them.
        Change(usize),
        /// Add a label nobody applies.
        AddLabel,
        Nothing,
    }

    pub(super) fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            4 => any::<usize>().prop_map(Edit::Remove),
            3 => any::<usize>().prop_map(Edit::Change),
            1 => Just(Edit::AddLabel),
            1 => Just(Edit::Nothing),
        ]
    }

    /// Every JSON pointer under `pointer` in `value` (fields, items, and their contents).
    fn pointers(value: &Value, pointer: &str, out: &mut Vec<(String, Value)>) {
        let escape = |s: &str| s.replace('~', "~0").replace('/', "~1");
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let p = format!("{pointer}/{}", escape(k));
                    out.push((p.clone(), v.clone()));
                    pointers(v, &p, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let p = format!("{pointer}/{i}");
                    out.push((p.clone(), v.clone()));
                    pointers(v, &p, out);
                }
            }
            _ => {}
        }
    }

    /// The JSON patch of an edit against `live`, if it has one.
    pub(super) fn edit_patch(edit: Edit, live: &Value) -> Option<Value> {
        let mut all = Vec::new();
        for root in [
            "/metadata/labels",
            "/template",
            "/data",
            "/binaryData",
            "/immutable",
        ] {
            if let Some(v) = live.pointer(root) {
                all.push((root.to_owned(), v.clone()));
                pointers(v, root, &mut all);
            }
        }
        match edit {
            Edit::Remove(i) if !all.is_empty() => {
                let (path, _) = &all[i % all.len()];
                Some(json!([{"op": "remove", "path": path}]))
            }
            Edit::Change(i) => {
                let scalars: Vec<_> = all
                    .iter()
                    // `immutable: true` would refuse every later write.
                    .filter(|(p, v)| {
                        !v.is_object() && !v.is_array() && !v.is_null() && p != "/immutable"
                    })
                    .collect();
                let (path, value) = scalars.get(i % scalars.len().max(1))?;
                let changed = match value {
                    Value::Bool(b) => json!(!b),
                    Value::Number(n) => json!(n.as_i64().unwrap_or(0) + 1),
                    Value::String(s) => json!(format!("{s}0")),
                    _ => return None,
                };
                Some(json!([{"op": "replace", "path": path, "value": changed}]))
            }
            Edit::AddLabel => {
                Some(json!([{"op": "add", "path": "/metadata/labels/foreign", "value": "x"}]))
            }
            _ => None,
        }
    }

    /// The object without server bookkeeping, for comparing contents.
    pub(super) fn content(object: &Value) -> Value {
        let mut object = object.clone();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "managedFields",
                "resourceVersion",
                "creationTimestamp",
                "uid",
                "generation",
            ] {
                meta.remove(field);
            }
        }
        object
    }

    /// The fields of `manager`'s `Apply` entry.
    pub(super) fn applied_fields(object: &Value, manager: &str) -> Value {
        object
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .and_then(|entries| {
                entries
                    .iter()
                    .find(|e| e["manager"] == manager && e["operation"] == "Apply")
            })
            .map(|e| e["fieldsV1"].clone())
            .unwrap_or(Value::Null)
    }

    /// One generated case: what was applied, what desired is now, and another writer's edit.
    pub(super) fn cases(count: usize) -> Vec<(Value, Value, Edit)> {
        let strategy = (0..count).map(|i| {
            // Even cases a PodTemplate, odd ones a ConfigMap.
            let object = move |name: String| {
                if i % 2 == 0 {
                    pod_template(name).boxed()
                } else {
                    config_map(name).boxed()
                }
            };
            let name = format!("case-{i}");
            (
                object(name.clone()),
                prop::option::weighted(0.3, object(name)),
                edit(),
            )
        });
        let mut runner = TestRunner::deterministic();
        strategy
            .map(|s| {
                let (applied, desired, edit) = s
                    .new_tree(&mut runner)
                    .expect("generating a case")
                    .current();
                let desired = desired.unwrap_or_else(|| applied.clone());
                (applied, desired, edit)
            })
            .collect()
    }
}

/// The differ's verdict against the server's: for generated PodTemplates and ConfigMaps (some
/// written first by another tool), hand edits and
/// changes of desired, a server-side dry-run apply of desired changes the object whenever the
/// differ reports drift, and the differ reports drift whenever the dry-run changes the object's
/// contents (a drift report that changes only our ownership is allowed: a desired empty value
/// we never applied is applied once, to own it); after the real apply the differ reports the
/// object in sync.
#[tokio::test]
async fn the_differs_verdict_is_the_servers() -> Result<(), Error> {
    use against_the_server::{applied_fields, cases, content, edit_patch};

    let control_plane = gitops_envtest::shared().await?;
    let client = control_plane.client().await?;
    let ns = control_plane.create_namespace("gitops-diff-server").await?;
    let differ = Differ::builder(MANAGER).build();
    let count = std::env::var("GITOPS_DIFF_SERVER_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut failures = Vec::new();
    let (mut edited, mut drifted, mut in_sync) = (0, 0, 0);
    // Generating walks deeply nested strategies: on a thread with room for them.
    let generated = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || cases(count))?
        .join()
        .map_err(|_| "generating the cases panicked")?;
    for (i, (applied, desired, edit)) in generated.into_iter().enumerate() {
        let name = name_of(&applied);
        let (api, _) = api_for(&client, &applied, &ns).await?;
        let params = PatchParams::apply(MANAGER).force();
        // Every fifth object was written first by another tool: we own nothing of it yet.
        let first = if i % 5 == 4 {
            PatchParams::apply("other-tool").force()
        } else {
            params.clone()
        };
        api.patch(&name, &first, &Patch::Apply(&applied))
            .await
            .map_err(|e| format!("{name}: applying {applied}: {e}"))?;
        let mut live = get(&api, &applied).await?;
        if let Some(patch) = edit_patch(edit, &live) {
            let patch: json_patch::Patch = serde_json::from_value(patch)?;
            let params = PatchParams {
                field_manager: Some("kubectl-edit".to_owned()),
                ..PatchParams::default()
            };
            // An edit the apiserver refuses (an invalid value) leaves the object as it was.
            if api
                .patch(&name, &params, &Patch::Json::<()>(patch))
                .await
                .is_ok()
            {
                edited += 1;
                live = get(&api, &applied).await?;
            }
        }
        let mut desired = desired;
        desired["metadata"]["namespace"] = json!(ns);
        let diff = differ.diff(Some(&desired), Some(&live))?;
        let drift = !diff.is_in_sync();
        if differ.needs_apply(&desired, Some(&live))? != drift {
            failures.push(format!("{name}: needs_apply disagrees with diff"));
        }
        let dry_run = PatchParams::apply(MANAGER).force().dry_run();
        let predicted = serde_json::to_value(
            api.patch(&name, &dry_run, &Patch::Apply(&desired))
                .await
                .map_err(|e| format!("{name}: dry-run apply: {e}"))?,
        )?;
        let contents_change = content(&predicted) != content(&live);
        let ownership_changes =
            applied_fields(&predicted, MANAGER) != applied_fields(&live, MANAGER);
        let show = || {
            format!(
                "edit {edit:?}\napplied {applied}\ndesired {desired}\nlive {}\nserver's result {}\ndiffer {:#?}",
                content(&live),
                content(&predicted),
                diff.changes
            )
        };
        if contents_change && !drift {
            failures.push(format!("{name}: missed drift\n{}", show()));
        }
        if drift && !contents_change && !ownership_changes {
            failures.push(format!("{name}: false drift\n{}", show()));
        }
        if drift {
            drifted += 1;
        } else {
            in_sync += 1;
        }
        api.patch(&name, &params, &Patch::Apply(&desired)).await?;
        let live = get(&api, &desired).await?;
        let again = differ.diff(Some(&desired), Some(&live))?;
        if !again.is_in_sync() {
            failures.push(format!(
                "{name}: not in sync after applying: {:#?}\ndesired {desired}\nlive {}",
                again.changes,
                content(&live)
            ));
        }
    }
    eprintln!("{count} cases: {edited} edited, {drifted} drifted, {in_sync} in sync");
    // The generator must exercise both verdicts.
    assert!(
        drifted > count / 5 && in_sync > count / 10,
        "{drifted} drifted, {in_sync} in sync"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}

/// Ignore rules bind apply: another field manager (as an HPA does, through the scale
/// subresource) owns `spec.replicas`; with a rule ignoring that manager, the object the differ
/// gives to apply leaves the replicas out, so a server-side apply without force neither
/// conflicts nor changes them, and the other manager keeps them. A path rule on a field we alone
/// own keeps its live value: the apply does not delete it.
#[tokio::test]
async fn the_applied_object_leaves_another_managers_field_alone() -> Result<(), Error> {
    let control_plane = gitops_envtest::shared().await?;
    let client = control_plane.client().await?;
    let ns = control_plane
        .create_namespace("gitops-diff-applied")
        .await?;
    let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "scaled", "namespace": ns},
        "spec": {"replicas": 2, "minReadySeconds": 5,
            "selector": {"matchLabels": {"app": "scaled"}},
            "template": {"metadata": {"labels": {"app": "scaled"}}, "spec": pod_spec("nginx:1.27")}}});
    let (api, _) = api_for(&client, &desired, &ns).await?;
    apply(&api, &desired).await?;
    // The autoscaler's write, as the HPA controller makes it.
    let scale = PatchParams {
        field_manager: Some("hpa-test".to_owned()),
        ..PatchParams::default()
    };
    api.patch_subresource(
        "scale",
        "scaled",
        &scale,
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await?;
    let live = get(&api, &desired).await?;
    assert_eq!(live["spec"]["replicas"], 5);
    let no_force = PatchParams::apply(MANAGER);

    // Without a rule: the replicas are drift, and applying them conflicts.
    let plain = Differ::builder(MANAGER).build();
    assert_eq!(plain.applied_object(&desired, Some(&live))?, desired);
    assert!(plain.needs_apply(&desired, Some(&live))?);
    let conflict = api
        .patch("scaled", &no_force, &Patch::Apply(&desired))
        .await
        .unwrap_err();
    assert!(
        matches!(&conflict, kube::Error::Api(s) if s.code == 409),
        "{conflict}"
    );

    // With a rule for the autoscaler: no drift, and the applied object leaves replicas alone.
    let differ = Differ::builder(MANAGER)
        .ignore(
            gitops_diff::IgnoreRule::new(gitops_diff::Selector::default().kind("Deployment"))
                .manager("hpa-test"),
        )
        .build();
    let applied = differ.applied_object(&desired, Some(&live))?;
    assert!(applied.pointer("/spec/replicas").is_none(), "{applied}");
    assert!(!differ.needs_apply(&applied, Some(&live))?);
    assert!(differ.diff(Some(&applied), Some(&live))?.is_in_sync());
    api.patch("scaled", &no_force, &Patch::Apply(&applied))
        .await?;
    let after = get(&api, &desired).await?;
    assert_eq!(after["spec"]["replicas"], 5);
    assert_eq!(after["spec"]["minReadySeconds"], 5);
    let owners: Vec<&str> = after["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry.pointer("/fieldsV1/f:spec/f:replicas").is_some())
        .filter_map(|entry| entry["manager"].as_str())
        .collect();
    assert_eq!(owners, ["hpa-test"]);

    // A path rule on a field we alone own: its live value is kept, not deleted nor changed.
    let mut changed = desired.clone();
    changed["spec"]["minReadySeconds"] = json!(10);
    let by_path = differ
        .to_builder()
        .ignore(
            gitops_diff::IgnoreRule::new(gitops_diff::Selector::default().kind("Deployment"))
                .path("/spec/minReadySeconds")?,
        )
        .build();
    let applied = by_path.applied_object(&changed, Some(&after))?;
    assert_eq!(applied["spec"]["minReadySeconds"], 5);
    assert!(!by_path.needs_apply(&applied, Some(&after))?);
    api.patch("scaled", &no_force, &Patch::Apply(&applied))
        .await?;
    let last = get(&api, &desired).await?;
    assert_eq!(last["spec"]["minReadySeconds"], 5);
    assert_eq!(last["spec"]["replicas"], 5);
    Ok(())
}

/// The cluster's OpenAPI v3 document of just one group-version (a CRD installed outside the
/// set): its list-map is typed, so a reordered list is no drift and one item changed by key is
/// one change; the embedded table alone compares the list as atomic. The document's hash is
/// returned, and stays the same while the CRD does.
#[tokio::test]
async fn the_schema_of_one_installed_crd_is_read_from_the_cluster() -> Result<(), Error> {
    let control_plane = gitops_envtest::shared().await?;
    let client = control_plane.client().await?;
    let ns = control_plane.create_namespace("gitops-diff-subset").await?;
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "racks.subset.gitops-rs.test"},
        "spec": {"group": "subset.gitops-rs.test", "scope": "Namespaced",
            "names": {"kind": "Rack", "plural": "racks", "singular": "rack", "listKind": "RackList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "slots": {"type": "array", "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["slot"],
                            "items": {"type": "object", "required": ["slot"], "properties": {
                                "slot": {"type": "integer"}, "card": {"type": "string"}}}}}}}}}}]}});
    let (crds, _) = api_for(&client, &crd, &ns).await?;
    apply(&crds, &crd).await?;
    let path = gitops_diff::OpenApiIndex::path_of("subset.gitops-rs.test", "v1");
    let fetch = |path: String| {
        let client = client.clone();
        async move {
            let request = http::Request::get(path).body(Vec::new())?;
            Ok::<_, Error>(client.request_text(request).await?)
        }
    };
    let cancel = CancellationToken::new();
    // The document is published a moment after the CRD is established.
    let mut read = None;
    for _ in 0..100 {
        let (schema, hashes) =
            gitops_diff::fetch_cluster_schema_of(fetch, std::slice::from_ref(&path), &cancel)
                .await?;
        if hashes.contains_key(&path) {
            read = Some((schema, hashes));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (schema, hashes) = read.ok_or("the Rack document was never published")?;
    assert!(!hashes[&path].is_empty(), "{hashes:?}");
    assert_eq!(
        hashes.len(),
        1,
        "only the group-version asked for: {hashes:?}"
    );
    let (_, again) =
        gitops_diff::fetch_cluster_schema_of(fetch, std::slice::from_ref(&path), &cancel).await?;
    assert_eq!(again, hashes);

    let rack = |slots: Value| {
        json!({"apiVersion": "subset.gitops-rs.test/v1", "kind": "Rack",
            "metadata": {"name": "r", "namespace": ns}, "spec": {"slots": slots}})
    };
    let applied = rack(json!([{"slot": 1, "card": "a"}, {"slot": 2, "card": "b"}]));
    let (racks, _) = api_for(&client, &applied, &ns).await?;
    apply(&racks, &applied).await?;
    let live = get(&racks, &applied).await?;
    let with_cluster = Differ::builder(MANAGER).schema(Arc::new(schema)).build();
    let embedded_only = Differ::builder(MANAGER).build();
    let reordered = rack(json!([{"slot": 2, "card": "b"}, {"slot": 1, "card": "a"}]));
    assert!(
        with_cluster
            .diff(Some(&reordered), Some(&live))?
            .is_in_sync()
    );
    assert!(
        !embedded_only
            .diff(Some(&reordered), Some(&live))?
            .is_in_sync()
    );
    let one_changed = rack(json!([{"slot": 2, "card": "c"}, {"slot": 1, "card": "a"}]));
    let diff = with_cluster.diff(Some(&one_changed), Some(&live))?;
    let changes: Vec<(&str, ChangeKind)> = diff
        .changes
        .iter()
        .map(|c| (c.path.as_str(), c.kind))
        .collect();
    assert_eq!(changes, [("spec.slots[slot=2].card", ChangeKind::Modified)]);
    Ok(())
}
