//! gitops-apply: initial apply of 1,000 objects (ConfigMaps, Secrets, Deployments,
//! ServiceAccounts, Roles) and a no-change reconcile of the same 1,000, against a real control
//! plane (gitops-envtest), side by side with `kubectl apply --server-side` of the pinned kubectl.
//!
//! Each initial apply goes to a fresh namespace (made outside the timed part); the no-change
//! reconcile applies again to a namespace that already holds the set. At the end the medians and
//! their ratios are printed, with the API requests of one gitops-apply no-change run.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use gitops_apply::{Applier, ApplyOptions, ConfigMapInventory, DesiredSet};
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
    DesiredSet::new(gitops_core::parse_manifests(&set_yaml(namespace), "set.yaml").unwrap())
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

fn median(samples: &Mutex<Vec<Duration>>) -> Duration {
    let mut samples = samples.lock().unwrap().clone();
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn bench_apply(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kubectl = match gitops_envtest::tools::ensure(Tool::Kubectl) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("skipping the apply benchmark: no kubectl ({e})");
            return;
        }
    };
    let control_plane = runtime.block_on(ControlPlane::builder().start()).unwrap();
    let client = runtime.block_on(control_plane.client()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let options = ApplyOptions::default();
    let timings: [Mutex<Vec<Duration>>; 4] = Default::default();

    let mut group = c.benchmark_group(format!("apply_{OBJECTS}"));
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
                runtime
                    .block_on(applier.apply(set, &options, &cancel))
                    .unwrap();
                let took = start.elapsed();
                timings[0].lock().unwrap().push(took);
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
                kubectl_apply(&kubectl, control_plane.kubeconfig_path(), &file);
                let took = start.elapsed();
                timings[1].lock().unwrap().push(took);
                total += took;
            }
            total
        });
    });

    // The no-change reconcile: one namespace holds the set already.
    let namespace = runtime
        .block_on(control_plane.create_namespace("steady"))
        .unwrap();
    let applier = Applier::builder(
        client.clone(),
        ConfigMapInventory::new(&namespace, "inventory").unwrap(),
    )
    .build();
    runtime
        .block_on(applier.apply(desired(&namespace), &options, &cancel))
        .unwrap();
    let steady = runtime
        .block_on(applier.apply(desired(&namespace), &options, &cancel))
        .unwrap();
    assert_eq!(
        steady.count(gitops_apply::Action::Unchanged),
        OBJECTS,
        "{steady}"
    );
    let requests = steady.requests;
    let steady_file = dir.path().join("steady.yaml");
    std::fs::write(&steady_file, set_yaml(&namespace)).unwrap();
    kubectl_apply(&kubectl, control_plane.kubeconfig_path(), &steady_file);

    group.bench_function("gitops-apply/no-change", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let set = desired(&namespace);
                let start = Instant::now();
                runtime
                    .block_on(applier.apply(set, &options, &cancel))
                    .unwrap();
                let took = start.elapsed();
                timings[2].lock().unwrap().push(took);
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
                kubectl_apply(&kubectl, control_plane.kubeconfig_path(), &steady_file);
                let took = start.elapsed();
                timings[3].lock().unwrap().push(took);
                total += took;
            }
            total
        });
    });
    group.finish();

    let [ours_initial, kubectl_initial, ours_steady, kubectl_steady] =
        timings.each_ref().map(median);
    println!(
        "gitops-apply vs kubectl apply --server-side, {OBJECTS} objects (medians):\n  \
         initial apply:       gitops-apply {ours_initial:>10.2?}  kubectl {kubectl_initial:>10.2?}  ratio {:.1}x\n  \
         no-change reconcile: gitops-apply {ours_steady:>10.2?}  kubectl {kubectl_steady:>10.2?}  ratio {:.1}x\n  \
         API requests of one gitops-apply no-change run: {requests}",
        kubectl_initial.as_secs_f64() / ours_initial.as_secs_f64(),
        kubectl_steady.as_secs_f64() / ours_steady.as_secs_f64(),
    );
}

criterion_group!(benches, bench_apply);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
