//! gitops-diff against Argo CD's gitops-engine (`pkg/diff.Diff`, through the Go harness in
//! `benches/peers/gitops-engine-diff`, built by [`gitops_benches::peers`]), every figure recorded
//! through [`gitops_benches::results::Recorder`] (`diff.json`).
//!
//! Run with `cargo bench -p gitops-benches --bench diff` (or `scripts/bench`); with
//! `GITOPS_BENCH_QUICK=1` it diffs 200 objects once on each side and still checks that both
//! engines find the same drifted objects. The peer is required: the bench fails without it.
//!
//! The corpus: 10,000 objects (Deployments, Services, ConfigMaps, Secrets, StatefulSets), each
//! as desired and as live the way the apiserver returns it after a server-side apply (defaults,
//! `managedFields`, the last-applied annotation, status); one in five drifted (someone else
//! changed an image or a ConfigMap value). Both sides decode every object before the clock
//! starts (as a controller's cache holds them) and diff every pair once per sample; both must
//! find the same drifted objects, checked by index on every run.
//!
//! The figures:
//! - `diff/three-way-<n>`: ours is [`Differ::diff`] (the three-way diff of desired, live and our
//!   managed fields, with the schema's list semantics); the peer is `diff.Diff` as Argo CD's
//!   application controller calls it for a client-side-applied application: the three-way diff
//!   from the last-applied annotation, with the normaliser Argo CD builds from its default
//!   settings (argo-cd's ignore-differences normaliser over the default resource overrides,
//!   status ignored for every kind, then its known-types normaliser).
//! - `diff/server-side-<n>`: the peer is `diff.Diff` with `WithServerSideDiff`, Argo CD's path
//!   for server-side-applied applications (which replaced the structured-merge diff): the
//!   apiserver's dry-run answer (live with the drift undone, as the corpus computes it) is
//!   handed back without a request, then gitops-engine removes webhook mutations by managed
//!   fields with the GVK parser (built from Kubernetes' OpenAPI v2 document, as its cluster
//!   cache builds it), normalises and compares. The dry-run request a real server-side diff
//!   sends per object is not timed on either side.
//!
//! Samples: 10 passes over the corpus on our side, 5 on the peer's (each harness run times
//! every round it makes).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gitops_benches::peers::Peer;
use gitops_benches::results::{Comparison, Measure, Recorder, quick};
use gitops_diff::{Differ, FieldSet, Schema};
use serde_json::{Value, json};

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
/// diff, with the last-applied annotation): defaults, bookkeeping, status; with `drift`, the
/// objects whose index ends in 3 or 7 (one in five) changed by someone else.
fn live_object(desired: &Value, i: usize, schema: &Schema, drift: bool) -> Value {
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
    if drift && drifts(i) {
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

/// Whether object `i` is drifted in the live corpus.
fn drifts(i: usize) -> bool {
    i % 10 == 3 || i % 10 == 7
}

/// One object of the corpus.
struct Triple {
    desired: Value,
    live: Value,
    /// What a server-side apply dry run of `desired` returns: live without the drift.
    predicted: Value,
}

fn corpus(objects: usize) -> Vec<Triple> {
    let schema = Schema::embedded();
    (0..objects)
        .map(|i| {
            let desired = desired_object(i);
            let live = live_object(&desired, i, &schema, true);
            let predicted = live_object(&desired, i, &schema, false);
            Triple {
                desired,
                live,
                predicted,
            }
        })
        .collect()
}

/// One pass of our diff over the corpus: its time and the indices of the drifted objects.
fn ours_pass(differ: &Differ, corpus: &[Triple]) -> (Duration, Vec<usize>) {
    let mut drifted = Vec::new();
    let start = Instant::now();
    for (i, triple) in corpus.iter().enumerate() {
        let diff = differ
            .diff(Some(&triple.desired), Some(&triple.live))
            .expect("diff");
        if !black_box(diff).is_in_sync() {
            drifted.push(i);
        }
    }
    (start.elapsed(), drifted)
}

/// What one harness run reports.
struct PeerRun {
    /// Each round's time over the whole corpus.
    rounds: Vec<Duration>,
    drifted: Vec<usize>,
}

/// Runs the harness in `mode` over the corpus file, `rounds` times.
fn peer_run(
    harness: &Path,
    openapi: &Path,
    corpus_file: &Path,
    objects: usize,
    mode: &str,
    rounds: usize,
) -> PeerRun {
    let output = Command::new(harness)
        .args(["-mode", mode, "-manager", MANAGER, "-rounds"])
        .arg(rounds.to_string())
        .arg("-openapi")
        .arg(openapi)
        .arg(corpus_file)
        .output()
        .expect("running the gitops-engine harness");
    assert!(
        output.status.success(),
        "the gitops-engine harness ({mode}) failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| -> &str {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in the harness's output: {text}"))
    };
    let list = |name: &str| -> Vec<f64> {
        field(name)
            .split(',')
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse()
                    .unwrap_or_else(|_| panic!("{name} in the harness's output: {text}"))
            })
            .collect()
    };
    let rounds = list("rounds_ns_per_object")
        .into_iter()
        .map(|ns| Duration::from_secs_f64(ns * objects as f64 / 1e9))
        .collect();
    let drifted = list("modified_indices")
        .into_iter()
        .map(|i| i as usize)
        .collect();
    PeerRun { rounds, drifted }
}

/// The Kubernetes OpenAPI v2 document (`api/openapi-spec/swagger.json` of the `k8s.io/kubernetes`
/// module the harness builds with), for the harness's GVK parser.
fn openapi_document() -> PathBuf {
    let output = Command::new("go")
        .args(["mod", "download", "-json", "k8s.io/kubernetes"])
        .current_dir(Peer::GitopsEngineDiff.source_dir())
        .env("GOTOOLCHAIN", gitops_benches::peers::toolchain())
        .output()
        .expect("running `go mod download` for the OpenAPI document");
    assert!(
        output.status.success(),
        "go mod download k8s.io/kubernetes failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let module: Value = serde_json::from_slice(&output.stdout).expect("go's JSON");
    let path = Path::new(module["Dir"].as_str().expect("the module's directory"))
        .join("api/openapi-spec/swagger.json");
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

fn main() {
    let quick = quick();
    let (objects, ours_samples, peer_rounds): (usize, usize, usize) =
        if quick { (200, 1, 1) } else { (10_000, 10, 5) };
    let corpus = corpus(objects);
    let expected: Vec<usize> = (0..objects).filter(|&i| drifts(i)).collect();
    assert_eq!(expected.len(), objects / 5);

    let harness = Peer::GitopsEngineDiff.require();
    let version = Peer::GitopsEngineDiff
        .module_version()
        .expect("the peer's module version");
    let openapi = openapi_document();
    let dir = tempfile::tempdir().expect("temporary directory");
    let corpus_file = dir.path().join("corpus.json");
    let triples: Vec<Value> = corpus
        .iter()
        .map(|t| json!({"desired": t.desired, "live": t.live, "predicted": t.predicted}))
        .collect();
    std::fs::write(&corpus_file, serde_json::to_vec(&triples).expect("JSON"))
        .expect("writing the corpus");

    let differ = Differ::builder(MANAGER).build();
    // One untimed pass: the schema's lazily built parts, the allocator's first pages.
    assert_eq!(
        ours_pass(&differ, &corpus).1,
        expected,
        "gitops-diff's drifted objects"
    );
    let mut recorder = Recorder::new("diff");
    for (mode, id, workload, peer_name) in [
        (
            "three-way",
            "three-way",
            "three-way diff",
            "gitops-engine diff.Diff, three-way, Argo CD's default normaliser",
        ),
        (
            "server-side",
            "server-side",
            "diff of server-side-applied objects",
            "gitops-engine diff.Diff, server-side diff (dry-run answer given), Argo CD's default normaliser",
        ),
    ] {
        // Ours before and after the peer's run, so both see the same machine.
        let mut ours = Vec::new();
        for _ in 0..ours_samples.div_ceil(2) {
            let (elapsed, drifted) = ours_pass(&differ, &corpus);
            assert_eq!(drifted, expected, "gitops-diff's drifted objects");
            ours.push(elapsed);
        }
        let peer = peer_run(&harness, &openapi, &corpus_file, objects, mode, peer_rounds);
        assert_eq!(
            peer.drifted, expected,
            "gitops-engine ({mode}) and gitops-diff find different drifted objects"
        );
        for _ in ours.len()..ours_samples {
            ours.push(ours_pass(&differ, &corpus).0);
        }
        recorder.record(
            Comparison::new(
                format!("diff/{id}-{objects}"),
                format!("{workload} of {objects} objects, one in five drifted"),
                "the same (desired, live) pairs, decoded before the clock; every pair diffed once \
                 per sample; both find the same drifted objects (checked by index)",
            )
            .ours("gitops-diff Differ::diff", Measure::durations(&ours))
            .peer(
                format!("{peer_name} ({version})"),
                Measure::durations(&peer.rounds),
            )
            .note(format!(
                "{ours_samples} passes over the corpus on our side, {peer_rounds} rounds of the \
                 harness; {} drifted objects found by both",
                expected.len()
            )),
        );
    }
    let path = recorder.finish().expect("writing the diff results");
    println!("diff results written to {}", path.display());
}
