//! gitops-diff: diff of 10,000 objects (desired against live as the apiserver returns it, with
//! managedFields and the last-applied annotation; one in ten drifted), and side by side on the
//! same inputs, Argo CD's gitops-engine diff (`pkg/diff.Diff`, its client-side three-way diff)
//! through the Go harness in `benches/peers/gitops-engine-diff`.
//!
//! The peer is built with `go` into the gitops-rs cache on first use (`gitops_benches::peers`);
//! the bench fails without it.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use gitops_diff::{Differ, FieldSet, Schema};
use serde_json::{Value, json};

const OBJECTS: usize = 10_000;
const MANAGER: &str = "gitops-rs";

fn desired_object(i: usize) -> Value {
    let name = format!("app-{i}");
    let labels =
        json!({"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "shop", "tier": "web"});
    match i % 10 {
        0..=3 => json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                    {"name": "app", "image": format!("registry.example.com/app:{}", i % 7),
                     "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 9090, "name": "metrics"}],
                     "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "REGION", "value": "eu"},
                             {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                     "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                     "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}}},
                    {"name": "proxy", "image": "envoyproxy/envoy:v1.30", "args": ["--config", "/etc/envoy.yaml"]}]}}}}),
        4 | 5 => json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "spec": {"selector": {"app.kubernetes.io/name": name},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "metrics", "port": 9090, "targetPort": 9090}]}}),
        6 | 7 => json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "data": {"app.properties": "a=1\nb=2\n", "LOG_LEVEL": "info", "REGION": "eu"}}),
        8 => json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "type": "Opaque", "data": {"password": "czNjcjN0", "user": "YWRtaW4="}}),
        _ => json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "spec": {"replicas": 1, "serviceName": name, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                    {"name": "db", "image": "postgres:17", "ports": [{"containerPort": 5432}],
                     "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}]}}),
    }
}

/// Live as the apiserver returns it after a server-side apply (and, for the peer's three-way
/// diff, with the last-applied annotation): defaults, bookkeeping, status; every tenth drifted.
fn live_object(desired: &Value, i: usize, schema: &Schema) -> Value {
    let mut live = desired.clone();
    let api_version = desired["apiVersion"].as_str().unwrap_or_default();
    let kind = desired["kind"].as_str().unwrap_or_default();
    let root = schema
        .kind(api_version, kind)
        .cloned()
        .unwrap_or(gitops_diff::FieldSchema::Deduced);
    let fields = FieldSet::from_applied_object(schema, &root, desired).to_fields_v1();
    let meta = live["metadata"].as_object_mut().expect("metadata");
    meta.insert(
        "uid".into(),
        json!(format!("5f0c1a2b-0000-4000-8000-{i:012}")),
    );
    meta.insert("resourceVersion".into(), json!(format!("{}", 1000 + i)));
    meta.insert("creationTimestamp".into(), json!("2026-11-23T09:00:00Z"));
    meta.insert(
        "annotations".into(),
        json!({"kubectl.kubernetes.io/last-applied-configuration": desired.to_string()}),
    );
    meta.insert(
        "managedFields".into(),
        json!([{"manager": MANAGER, "operation": "Apply", "apiVersion": api_version,
            "time": "2026-11-23T09:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields}]),
    );
    match kind {
        "Deployment" | "StatefulSet" => {
            meta.insert("generation".into(), json!(1));
            let spec = live["spec"].as_object_mut().expect("spec");
            spec.insert("revisionHistoryLimit".into(), json!(10));
            if kind == "Deployment" {
                spec.insert("progressDeadlineSeconds".into(), json!(600));
                spec.insert(
                    "strategy".into(),
                    json!({"type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
                );
            } else {
                spec.insert("podManagementPolicy".into(), json!("OrderedReady"));
                spec.insert(
                    "updateStrategy".into(),
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
                spec["volumeClaimTemplates"][0]["apiVersion"] = json!("v1");
                spec["volumeClaimTemplates"][0]["kind"] = json!("PersistentVolumeClaim");
                spec["volumeClaimTemplates"][0]["spec"]["volumeMode"] = json!("Filesystem");
                spec["volumeClaimTemplates"][0]["status"] = json!({"phase": "Pending"});
            }
            let pod = live["spec"]["template"]["spec"]
                .as_object_mut()
                .expect("pod spec");
            for (field, value) in [
                ("restartPolicy", json!("Always")),
                ("dnsPolicy", json!("ClusterFirst")),
                ("schedulerName", json!("default-scheduler")),
                ("securityContext", json!({})),
                ("terminationGracePeriodSeconds", json!(30)),
            ] {
                pod.insert(field.into(), value);
            }
            for container in pod["containers"].as_array_mut().expect("containers") {
                let c = container.as_object_mut().expect("container");
                c.insert("imagePullPolicy".into(), json!("IfNotPresent"));
                c.insert(
                    "terminationMessagePath".into(),
                    json!("/dev/termination-log"),
                );
                c.insert("terminationMessagePolicy".into(), json!("File"));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports {
                        port["protocol"] = json!("TCP");
                    }
                }
                if let Some(resources) = c.get_mut("resources") {
                    resources["limits"]["cpu"] = json!("1000m");
                }
                if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
                    for var in env {
                        if let Some(field_ref) = var.pointer_mut("/valueFrom/fieldRef") {
                            field_ref["apiVersion"] = json!("v1");
                        }
                    }
                }
                if let Some(probe) = c.get_mut("readinessProbe") {
                    probe["httpGet"]["scheme"] = json!("HTTP");
                    for (field, value) in [
                        ("timeoutSeconds", 1),
                        ("periodSeconds", 10),
                        ("successThreshold", 1),
                        ("failureThreshold", 3),
                    ] {
                        probe[field] = json!(value);
                    }
                }
            }
            live["status"] = json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3});
        }
        "Service" => {
            let spec = live["spec"].as_object_mut().expect("spec");
            for (field, value) in [
                (
                    "clusterIP",
                    json!(format!("10.96.{}.{}", i / 250 % 250, i % 250)),
                ),
                (
                    "clusterIPs",
                    json!([format!("10.96.{}.{}", i / 250 % 250, i % 250)]),
                ),
                ("type", json!("ClusterIP")),
                ("sessionAffinity", json!("None")),
                ("ipFamilies", json!(["IPv4"])),
                ("ipFamilyPolicy", json!("SingleStack")),
                ("internalTrafficPolicy", json!("Cluster")),
            ] {
                spec.insert(field.into(), value);
            }
            for port in spec["ports"].as_array_mut().expect("ports") {
                port["protocol"] = json!("TCP");
            }
            live["status"] = json!({"loadBalancer": {}});
        }
        _ => {}
    }
    if i % 10 == 3 || i % 10 == 7 {
        // Drift: someone else changed a field we set.
        match kind {
            "Deployment" => {
                live["spec"]["template"]["spec"]["containers"][0]["image"] =
                    json!("registry.example.com/app:hotfix")
            }
            _ => live["data"]["LOG_LEVEL"] = json!("debug"),
        }
    }
    live
}

fn corpus() -> Vec<(Value, Value)> {
    let schema = Schema::embedded();
    (0..OBJECTS)
        .map(|i| {
            let desired = desired_object(i);
            let live = live_object(&desired, i, &schema);
            (desired, live)
        })
        .collect()
}

fn bench_diff(c: &mut Criterion) {
    let corpus = corpus();
    let differ = Differ::builder(MANAGER).build();
    let drifted = corpus
        .iter()
        .filter(|(d, l)| !differ.diff(Some(d), Some(l)).expect("diff").is_in_sync())
        .count();
    assert_eq!(
        drifted,
        OBJECTS / 5,
        "the corpus drifts in one object out of five"
    );
    let mut group = c.benchmark_group("gitops_diff");
    group.throughput(Throughput::Elements(OBJECTS as u64));
    group.sample_size(10);
    group.bench_function("diff_10000_objects", |b| {
        b.iter(|| {
            for (desired, live) in &corpus {
                black_box(differ.diff(Some(desired), Some(live)).expect("diff"));
            }
        });
    });
    group.bench_function("needs_apply_10000_objects", |b| {
        b.iter(|| {
            for (desired, live) in &corpus {
                black_box(differ.needs_apply(desired, Some(live)).expect("diff"));
            }
        });
    });
    group.finish();
}

/// Best of `rounds`, in nanoseconds per object: the same measure the Go harness prints.
fn ours_ns_per_object(corpus: &[(Value, Value)], rounds: usize) -> (f64, usize) {
    let differ = Differ::builder(MANAGER).build();
    let mut best = Duration::MAX;
    let mut modified = 0;
    for _ in 0..rounds {
        modified = 0;
        let start = Instant::now();
        for (desired, live) in corpus {
            if !differ
                .diff(Some(desired), Some(live))
                .expect("diff")
                .is_in_sync()
            {
                modified += 1;
            }
        }
        best = best.min(start.elapsed());
    }
    (best.as_nanos() as f64 / corpus.len() as f64, modified)
}

fn compare_with_gitops_engine() {
    let corpus = corpus();
    let (ours, our_modified) = ours_ns_per_object(&corpus, 5);
    let dir = tempfile::tempdir().expect("temporary directory");
    let binary = gitops_benches::peers::Peer::GitopsEngineDiff.require();
    let pairs: Vec<Value> = corpus
        .iter()
        .map(|(d, l)| json!({"desired": d, "live": l}))
        .collect();
    let corpus_file = dir.path().join("corpus.json");
    std::fs::write(&corpus_file, serde_json::to_vec(&pairs).expect("json"))
        .expect("writing the corpus");
    let output = Command::new(&binary)
        .arg(&corpus_file)
        .arg("5")
        .output()
        .expect("running the gitops-engine harness");
    assert!(
        output.status.success(),
        "the gitops-engine harness failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| -> Option<f64> {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    let (Some(theirs), Some(their_modified)) = (field("ns_per_object"), field("modified")) else {
        panic!("unexpected output of the gitops-engine harness: {text}");
    };
    println!(
        "gitops_diff vs gitops-engine pkg/diff.Diff on {OBJECTS} objects (best of 5 rounds):\n  \
         gitops-diff:   {ours:>10.0} ns/object ({our_modified} drifted)\n  \
         gitops-engine: {theirs:>10.0} ns/object ({their_modified} drifted)\n  \
         ratio: gitops-diff is {:.1}x faster",
        theirs / ours
    );
}

criterion_group!(benches, bench_diff);

fn main() {
    benches();
    compare_with_gitops_engine();
    Criterion::default().configure_from_args().final_summary();
}
