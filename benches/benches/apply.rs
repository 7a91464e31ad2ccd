//! gitops-apply: initial apply of 1,000 objects (ConfigMaps, Secrets, Deployments,
//! ServiceAccounts, Roles) and a no-change reconcile of the same 1,000, against a real control
//! plane (gitops-envtest), side by side in one run with two peers:
//!
//! - `kubectl apply --server-side` of the pinned kubectl (a process per run, timed whole);
//! - Flux's server-side apply engine, `ResourceManager.ApplyAllStaged` of
//!   `github.com/fluxcd/pkg/ssa` configured as kustomize-controller configures it (4 concurrent
//!   dry runs, its cleanup of kubectl's field managers, ownership labels), through the Go harness
//!   in `benches/peers/flux-ssa`. The harness times the apply call only (its client and
//!   RESTMapper are warm, as in a running controller) and runs without a client-side rate limit
//!   (kustomize-controller's default is 50 requests/s, which would only slow it further).
//!
//! Each initial apply goes to a fresh namespace (made outside the timed part); each tool's
//! no-change reconcile applies again to a namespace of its own that already holds the set. At the
//! end the medians, their ratios and the API requests of each engine are printed.
//!
//! The Flux peer is built with `go` into the gitops-rs cache on first use
//! (`gitops_benches::peers`); the bench fails without it.
//!
//! Measured on 2026-11-23 (2 cores shared with other builds, load average 6 to 9; two runs):
//! initial apply gitops-apply 2.34 s / 2.80 s, kubectl 4.06 s / 4.60 s (1.7x / 1.6x), Flux ssa
//! 5.41 s / 6.37 s (2.3x / 2.3x); no-change reconcile gitops-apply 73 ms, kubectl 2.87 s /
//! 3.05 s (39x / 42x), Flux ssa 2.79 s / 2.66 s (38x / 36x). Requests: a no-change run of
//! gitops-apply sends 8 (5 lists for 5 kinds, discovery, the inventory), Flux 2,000 (a get and a
//! dry run per object); an initial apply 2,009 against Flux's 3,000.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group};
use gitops_apply::{
    Applier, ApplyOptions, ConfigMapInventory, DesiredSet, ObjectAction, RequestCounts,
};
use gitops_benches::peers::Peer;
use gitops_envtest::{ControlPlane, Tool};
use tokio_util::sync::CancellationToken;

const OBJECTS: usize = 1_000;

fn set_yaml(namespace: &str) -> String {
    let mut yaml = String::new();
    for i in 0..OBJECTS {
        let name = format!("app-{i:04}");
        let object = match i % 10 {
            0..=3 => format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{app: {name}}}}}\ndata: {{LOG_LEVEL: info, REGION: eu, index: \"{i}\"}}\n"
            ),
            4 | 5 => format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\ntype: Opaque\ndata: {{password: czNjcjN0}}\n"
            ),
            6 | 7 => format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n      - name: app\n        image: registry.example.com/app:{i}\n        ports: [{{containerPort: 8080}}]\n        resources: {{requests: {{cpu: 250m, memory: 256Mi}}}}\n"
            ),
            8 => format!(
                "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
            ),
            _ => format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: {name}, namespace: {namespace}}}\nrules: [{{apiGroups: [\"\"], resources: [configmaps], verbs: [get, list]}}]\n"
            ),
        };
        yaml.push_str(&object);
        yaml.push_str("---\n");
    }
    yaml
}

fn desired(namespace: &str) -> DesiredSet {
    DesiredSet::from_render(gitops_core::parse_manifests(
        &set_yaml(namespace),
        "set.yaml",
    ))
    .unwrap()
}

fn kubectl_apply(kubectl: &Path, kubeconfig: &Path, file: &Path) {
    let output = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "apply",
            "--server-side",
            "--field-manager=kubectl-bench",
            "-f",
        ])
        .arg(file)
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One reconcile of the Flux harness: its own timing and request counts.
#[derive(Debug, Default, Clone, Copy)]
struct FluxRun {
    elapsed: Duration,
    requests: RequestCounts,
    created: usize,
    unchanged: usize,
}

fn flux_apply(binary: &Path, kubeconfig: &Path, file: &Path) -> FluxRun {
    let output = Command::new(binary)
        .arg("-kubeconfig")
        .arg(kubeconfig)
        .arg("-file")
        .arg(file)
        .output()
        .expect("the Flux harness runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Flux harness failed: {}{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let field = |name: &str| -> u64 {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the harness output: {text}"))
    };
    FluxRun {
        elapsed: Duration::from_nanos(field("elapsed_ns")),
        requests: RequestCounts {
            total: field("requests"),
            lists: field("list"),
            reads: field("get"),
            dry_runs: field("dry_run"),
            writes: field("patch") + field("other"),
        },
        created: field("created") as usize,
        unchanged: field("unchanged") as usize,
    }
}

fn median(samples: &Mutex<Vec<Duration>>) -> Duration {
    let mut samples = samples.lock().unwrap().clone();
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn ratio(theirs: Duration, ours: Duration) -> String {
    if theirs.is_zero() || ours.is_zero() {
        return "n/a".into();
    }
    format!("{:.1}x", theirs.as_secs_f64() / ours.as_secs_f64())
}

/// Timings of each engine: initial and no-change.
#[derive(Default)]
struct Timings {
    ours_initial: Mutex<Vec<Duration>>,
    kubectl_initial: Mutex<Vec<Duration>>,
    flux_initial: Mutex<Vec<Duration>>,
    ours_steady: Mutex<Vec<Duration>>,
    kubectl_steady: Mutex<Vec<Duration>>,
    flux_steady: Mutex<Vec<Duration>>,
}

fn bench_apply(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kubectl = gitops_envtest::tools::ensure(Tool::Kubectl).unwrap_or_else(|e| {
        panic!("the apply bench needs the pinned kubectl ({e}); `scripts/bench` builds it")
    });
    let flux = Some(Peer::FluxSsa.require());
    let control_plane = runtime.block_on(ControlPlane::builder().start()).unwrap();
    let kubeconfig = control_plane.kubeconfig_path().to_path_buf();
    let client = runtime.block_on(control_plane.client()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let options = ApplyOptions::default();
    let timings = Timings::default();
    let mut ours_initial_requests = RequestCounts::default();
    let mut flux_initial_requests = RequestCounts::default();

    let mut group = c.benchmark_group(format!("apply_{OBJECTS}"));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(20));

    group.bench_function("gitops-apply/initial", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let namespace = runtime
                    .block_on(control_plane.create_namespace("ours"))
                    .unwrap();
                let set = desired(&namespace);
                let applier = Applier::builder(
                    client.clone(),
                    ConfigMapInventory::new(&namespace, "inventory").unwrap(),
                )
                .build();
                let start = Instant::now();
                let done = runtime
                    .block_on(applier.apply_set(set, &options, &cancel))
                    .unwrap();
                let took = start.elapsed();
                assert_eq!(done.count(ObjectAction::Created), OBJECTS, "{done}");
                ours_initial_requests = done.request_counts;
                timings.ours_initial.lock().unwrap().push(took);
                total += took;
            }
            total
        });
    });

    group.bench_function("kubectl/initial", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let namespace = runtime
                    .block_on(control_plane.create_namespace("kubectl"))
                    .unwrap();
                let file = dir.path().join(format!("{namespace}.yaml"));
                std::fs::write(&file, set_yaml(&namespace)).unwrap();
                let start = Instant::now();
                kubectl_apply(&kubectl, &kubeconfig, &file);
                let took = start.elapsed();
                timings.kubectl_initial.lock().unwrap().push(took);
                total += took;
            }
            total
        });
    });

    if let Some(flux) = &flux {
        group.bench_function("flux-ssa/initial", |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let namespace = runtime
                        .block_on(control_plane.create_namespace("flux"))
                        .unwrap();
                    let file = dir.path().join(format!("{namespace}.yaml"));
                    std::fs::write(&file, set_yaml(&namespace)).unwrap();
                    let run = flux_apply(flux, &kubeconfig, &file);
                    assert_eq!(run.created, OBJECTS, "{run:?}");
                    flux_initial_requests = run.requests;
                    timings.flux_initial.lock().unwrap().push(run.elapsed);
                    total += run.elapsed;
                }
                total
            });
        });
    }

    // The no-change reconcile: each engine has a namespace that holds the set already.
    let namespace = runtime
        .block_on(control_plane.create_namespace("steady"))
        .unwrap();
    let applier = Applier::builder(
        client.clone(),
        ConfigMapInventory::new(&namespace, "inventory").unwrap(),
    )
    .build();
    runtime
        .block_on(applier.apply_set(desired(&namespace), &options, &cancel))
        .unwrap();
    let steady = runtime
        .block_on(applier.apply_set(desired(&namespace), &options, &cancel))
        .unwrap();
    assert_eq!(steady.count(ObjectAction::Unchanged), OBJECTS, "{steady}");
    let ours_steady_requests = steady.request_counts;
    let kubectl_namespace = runtime
        .block_on(control_plane.create_namespace("steady-kubectl"))
        .unwrap();
    let kubectl_file = dir.path().join("steady-kubectl.yaml");
    std::fs::write(&kubectl_file, set_yaml(&kubectl_namespace)).unwrap();
    kubectl_apply(&kubectl, &kubeconfig, &kubectl_file);
    let flux_file = dir.path().join("steady-flux.yaml");
    let mut flux_steady_requests = RequestCounts::default();
    if let Some(flux) = &flux {
        let flux_namespace = runtime
            .block_on(control_plane.create_namespace("steady-flux"))
            .unwrap();
        std::fs::write(&flux_file, set_yaml(&flux_namespace)).unwrap();
        flux_apply(flux, &kubeconfig, &flux_file);
        let run = flux_apply(flux, &kubeconfig, &flux_file);
        assert_eq!(run.unchanged, OBJECTS, "{run:?}");
        flux_steady_requests = run.requests;
    }

    group.bench_function("gitops-apply/no-change", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let set = desired(&namespace);
                let start = Instant::now();
                runtime
                    .block_on(applier.apply_set(set, &options, &cancel))
                    .unwrap();
                let took = start.elapsed();
                timings.ours_steady.lock().unwrap().push(took);
                total += took;
            }
            total
        });
    });

    group.bench_function("kubectl/no-change", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let start = Instant::now();
                kubectl_apply(&kubectl, &kubeconfig, &kubectl_file);
                let took = start.elapsed();
                timings.kubectl_steady.lock().unwrap().push(took);
                total += took;
            }
            total
        });
    });

    if let Some(flux) = &flux {
        group.bench_function("flux-ssa/no-change", |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let run = flux_apply(flux, &kubeconfig, &flux_file);
                    timings.flux_steady.lock().unwrap().push(run.elapsed);
                    total += run.elapsed;
                }
                total
            });
        });
    }
    group.finish();

    let ours_initial = median(&timings.ours_initial);
    let kubectl_initial = median(&timings.kubectl_initial);
    let flux_initial = median(&timings.flux_initial);
    let ours_steady = median(&timings.ours_steady);
    let kubectl_steady = median(&timings.kubectl_steady);
    let flux_steady = median(&timings.flux_steady);
    println!(
        "gitops-apply vs kubectl apply --server-side vs Flux ssa ApplyAllStaged, {OBJECTS} objects (medians; ratio = peer / gitops-apply):\n  \
         initial apply:       gitops-apply {ours_initial:>9.2?}  kubectl {kubectl_initial:>9.2?} ({})  flux-ssa {flux_initial:>9.2?} ({})\n  \
         no-change reconcile: gitops-apply {ours_steady:>9.2?}  kubectl {kubectl_steady:>9.2?} ({})  flux-ssa {flux_steady:>9.2?} ({})\n  \
         API requests, initial apply:  gitops-apply {ours_initial_requests}\n  \
         {:>30}flux-ssa     {flux_initial_requests}\n  \
         API requests, no-change:      gitops-apply {ours_steady_requests}\n  \
         {:>30}flux-ssa     {flux_steady_requests}",
        ratio(kubectl_initial, ours_initial),
        ratio(flux_initial, ours_initial),
        ratio(kubectl_steady, ours_steady),
        ratio(flux_steady, ours_steady),
        "",
        "",
    );
}

criterion_group!(benches, bench_apply);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
