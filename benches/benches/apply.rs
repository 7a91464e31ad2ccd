//! gitops-apply against Flux's server-side apply engine and `kubectl apply --server-side`, on a
//! set of 1,000 objects (ConfigMaps, Secrets, Deployments, ServiceAccounts, Roles), against a
//! real control plane (gitops-envtest), every figure recorded through
//! `gitops_benches::results` (`scripts/bench` gathers them).
//!
//! Equal work, side by side:
//! - **ours**: `Applier::apply_set` of gitops-apply with a warm client (discovery and schema
//!   cached, as in a running agent), at its default concurrency (16 writes at once) and at
//!   Flux's (4): the same objects, the same server-side apply, an inventory recorded before
//!   the first write;
//! - **Flux ssa**: `ResourceManager.ApplyAllStaged` of `github.com/fluxcd/pkg/ssa` configured as
//!   kustomize-controller configures it (4 concurrent dry runs, then one apply at a time, its
//!   cleanup of kubectl's field managers, ownership labels), through the Go harness in
//!   `benches/peers/flux-ssa`. The harness's clock covers the apply call only (its client and
//!   RESTMapper are warm, as in a running controller) and it runs without a client-side rate
//!   limit (kustomize-controller's default of 50 requests/s would only slow it);
//! - **kubectl**, reported separately as process-level: `kubectl apply --server-side` of the
//!   pinned kubectl, a process per run timed whole (start, discovery, parsing, the requests);
//!   ours beside it is still the warm in-process applier, so that figure says what an agent
//!   saves over a scripted loop, not which engine is faster.
//!
//! Workloads: the **initial apply** (each sample into a fresh namespace made outside the clock),
//! the **no-change reconcile** (the set applied again to a namespace that holds it), and both in
//! a **crowded** namespace: ten times as many unrelated ConfigMaps and Secrets as the set has
//! (6,000, another inventory's) beside it, and a cluster-scoped kind (50 of the Roles become
//! ClusterRoles), since our reads are lists while Flux's (a get and a dry run per object) are
//! not. Ours reads the live state with one list per kind and namespace selected by its
//! ownership labels (plus a get of each object of the set those lists miss while they are at
//! most two per concurrent request, else an unfiltered list of that kind and namespace): the
//! no-change reconcile reads the set's own objects, not the crowd; the initial apply, all of
//! whose objects are new, lists each kind and namespace unfiltered, crowd included. In the
//! crowded namespace, each initial sample first deletes the set (outside the clock) so that
//! only the crowd remains.
//!
//! The floor of the no-change reconcile is the sum of the requests it needs over a warm
//! connection: the requests our reconcile sent (logged by a `RequestCounter`), each distinct
//! one (its path and query, the label selector of a selected list included) sent once more,
//! one after the other, with a warm client (the pages of one list count as one unpaged list:
//! `limit` and `continue` left out).
//!
//! Samples (full run): initial apply 5 per engine (kubectl 3); no-change 20 of ours, 5 of Flux,
//! 3 of kubectl; crowded: initial 3 per engine, no-change 10 of ours and 5 of Flux. Quick run
//! (`GITOPS_BENCH_QUICK=1`): 20 objects, one sample each (two of ours), the same assertions.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gitops_apply::{
    Applier, ApplyOptions, ConfigMapInventory, DesiredSet, ObjectAction, RequestCounter,
    RequestCounts, counting_client,
};
use gitops_benches::peers::Peer;
use gitops_benches::results::{Comparison, Measure, Recorder, quick};
use gitops_envtest::{ControlPlane, Tool};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// The size of the set.
fn objects() -> usize {
    if quick() { 20 } else { 1_000 }
}

/// `full` samples, or `quick` in a quick run.
fn samples(full: usize, quick_samples: usize) -> usize {
    if quick() { quick_samples } else { full }
}

/// The set: `objects()` objects named `<prefix>-NNNN` in `namespace`; with `cluster_scoped`,
/// every twentieth object is a ClusterRole named after the namespace (cluster-wide unique).
fn set_yaml(namespace: &str, prefix: &str, cluster_scoped: bool) -> String {
    let mut yaml = String::new();
    for i in 0..objects() {
        let name = format!("{prefix}-{i:04}");
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
            _ if cluster_scoped && i % 20 == 19 => format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {namespace}-{name}}}\nrules: [{{apiGroups: [\"\"], resources: [configmaps], verbs: [get, list]}}]\n"
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

/// Ten times as many unrelated ConfigMaps and Secrets as the set holds, in the proportion of
/// the set (two ConfigMaps to a Secret).
fn crowd_yaml(namespace: &str) -> String {
    let mut yaml = String::new();
    for i in 0..objects() * 6 {
        let object = if i % 3 == 2 {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: other-{i:05}, namespace: {namespace}}}\ntype: Opaque\ndata: {{token: b3RoZXI=}}\n"
            )
        } else {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: other-{i:05}, namespace: {namespace}}}\ndata: {{owner: someone-else, index: \"{i}\"}}\n"
            )
        };
        yaml.push_str(&object);
        yaml.push_str("---\n");
    }
    yaml
}

/// The URI of a logged request without its paging parameters (`limit`, `continue`): the pages
/// of one list become one unpaged list, its label selector kept.
fn unpaged(path: &str, query: Option<&str>) -> String {
    let kept: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|part| {
            !part.is_empty() && !part.starts_with("limit=") && !part.starts_with("continue=")
        })
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

fn desired(yaml: &str) -> DesiredSet {
    DesiredSet::from_render(gitops_core::parse_manifests(yaml, "set.yaml")).expect("a valid set")
}

fn run_kubectl(kubectl: &Path, kubeconfig: &Path, args: &[&str], file: &Path) {
    let output = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .arg("-f")
        .arg(file)
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn kubectl_apply(kubectl: &Path, kubeconfig: &Path, file: &Path) {
    run_kubectl(
        kubectl,
        kubeconfig,
        &["apply", "--server-side", "--field-manager=kubectl-bench"],
        file,
    );
}

/// Deletes the objects of `file` and waits until they are gone (outside every clock).
fn kubectl_delete(kubectl: &Path, kubeconfig: &Path, file: &Path) {
    run_kubectl(
        kubectl,
        kubeconfig,
        &["delete", "--ignore-not-found", "--wait=true"],
        file,
    );
}

/// One reconcile of the Flux harness: its own timing, request counts and actions.
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

/// What the bench shares: the runtime, the control plane and its tools.
struct Bench {
    runtime: Runtime,
    control_plane: ControlPlane,
    client: kube::Client,
    kubectl: std::path::PathBuf,
    flux: std::path::PathBuf,
    dir: tempfile::TempDir,
    cancel: CancellationToken,
}

impl Bench {
    fn namespace(&self, prefix: &str) -> String {
        self.runtime
            .block_on(self.control_plane.create_namespace(prefix))
            .expect("a namespace")
    }

    fn applier(
        &self,
        client: kube::Client,
        namespace: &str,
        inventory: &str,
        concurrency: usize,
    ) -> Applier {
        Applier::builder(
            client,
            ConfigMapInventory::new(namespace, inventory).expect("an inventory"),
        )
        .concurrency(concurrency)
        .build()
    }

    /// One apply of `yaml` by ours; asserts every object took `action`.
    fn ours(
        &self,
        applier: &Applier,
        yaml: &str,
        action: ObjectAction,
    ) -> (Duration, RequestCounts) {
        let set = desired(yaml);
        let started = Instant::now();
        let done = self
            .runtime
            .block_on(applier.apply_set(set, &ApplyOptions::default(), &self.cancel))
            .unwrap_or_else(|error| panic!("gitops-apply: {error}"));
        let took = started.elapsed();
        assert_eq!(done.count(action), objects(), "{done}");
        (took, done.request_counts)
    }

    fn file(&self, name: &str, yaml: &str) -> std::path::PathBuf {
        let file = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).expect("writing a set");
        file
    }

    fn flux(&self, file: &Path) -> FluxRun {
        flux_apply(&self.flux, self.control_plane.kubeconfig_path(), file)
    }

    fn kubectl(&self, file: &Path) -> Duration {
        let started = Instant::now();
        kubectl_apply(&self.kubectl, self.control_plane.kubeconfig_path(), file);
        started.elapsed()
    }

    /// The floor of a no-change reconcile of `yaml` by `applier`'s settings: the requests it
    /// sends, logged, then each distinct one (path and query, without the paging parameters)
    /// sent once more over a warm client, in order.
    fn floor(
        &self,
        namespace: &str,
        inventory: &str,
        yaml: &str,
        samples: usize,
    ) -> (Vec<Duration>, usize) {
        let _entered = self.runtime.enter();
        let counter = RequestCounter::with_log();
        let counted = counting_client(&self.client, &counter);
        let applier = self.applier(counted, namespace, inventory, 16);
        // The first run warms the new applier's caches (discovery, schema); the second is the
        // no-change reconcile of a running agent.
        self.ours(&applier, yaml, ObjectAction::Unchanged);
        let warm = counter.requests().len();
        self.ours(&applier, yaml, ObjectAction::Unchanged);
        let mut paths: Vec<String> = Vec::new();
        for request in counter.requests().into_iter().skip(warm) {
            assert_eq!(
                request.method,
                http::Method::GET,
                "a no-change reconcile writes nothing: {request}"
            );
            let uri = unpaged(&request.path, request.query.as_deref());
            if !paths.contains(&uri) {
                paths.push(uri);
            }
        }
        let send_all = || {
            self.runtime.block_on(async {
                for path in &paths {
                    let request = http::Request::get(path.as_str())
                        .body(Vec::new())
                        .expect("a request");
                    self.client
                        .request_text(request)
                        .await
                        .unwrap_or_else(|error| panic!("GET {path}: {error}"));
                }
            });
        };
        send_all(); // warm
        let timings = (0..samples)
            .map(|_| {
                let started = Instant::now();
                send_all();
                started.elapsed()
            })
            .collect();
        (timings, paths.len())
    }
}

fn main() {
    // `cargo bench` passes `--bench`; this bench takes no arguments of its own.
    let runtime = Runtime::new().expect("a runtime");
    let kubectl = gitops_envtest::tools::ensure(Tool::Kubectl).unwrap_or_else(|error| {
        panic!("the apply bench needs the pinned kubectl ({error}); `scripts/bench` builds it")
    });
    let flux = Peer::FluxSsa.require();
    let control_plane = runtime
        .block_on(ControlPlane::builder().start())
        .expect("a control plane");
    let client = {
        let _entered = runtime.enter();
        runtime.block_on(control_plane.client()).expect("a client")
    };
    let bench = Bench {
        runtime,
        control_plane,
        client,
        kubectl,
        flux,
        dir: tempfile::tempdir().expect("a temporary directory"),
        cancel: CancellationToken::new(),
    };
    let n = objects();
    let flux_name = format!(
        "Flux ssa {} (ApplyAllStaged, harness)",
        Peer::FluxSsa
            .module_version()
            .expect("the Flux module version")
    );
    let mut recorder = Recorder::new("apply");
    let mut requests: BTreeMap<&str, RequestCounts> = BTreeMap::new();

    // The connection and the server's caches warmed once, outside every clock.
    let warm = bench.namespace("warm-up");
    let applier = bench.applier(bench.client.clone(), &warm, "inventory", 16);
    bench.ours(
        &applier,
        &set_yaml(&warm, "app", false),
        ObjectAction::Created,
    );

    // Initial apply, each sample into a fresh namespace.
    let mut ours_initial = Vec::new();
    let mut ours4_initial = Vec::new();
    let mut flux_initial = Vec::new();
    let mut kubectl_initial = Vec::new();
    for round in 0..samples(5, 1) {
        for (concurrency, into) in [(16, &mut ours_initial), (4, &mut ours4_initial)] {
            let namespace = bench.namespace("ours");
            let applier = bench.applier(bench.client.clone(), &namespace, "inventory", concurrency);
            let (took, counts) = bench.ours(
                &applier,
                &set_yaml(&namespace, "app", false),
                ObjectAction::Created,
            );
            into.push(took);
            requests.insert(
                if concurrency == 16 {
                    "ours initial"
                } else {
                    "ours (4) initial"
                },
                counts,
            );
        }
        let namespace = bench.namespace("flux");
        let run = bench.flux(&bench.file(&namespace, &set_yaml(&namespace, "app", false)));
        assert_eq!(run.created, n, "{run:?}");
        requests.insert("Flux initial", run.requests);
        flux_initial.push(run.elapsed);
        if round < samples(3, 1) {
            let namespace = bench.namespace("kubectl");
            kubectl_initial
                .push(bench.kubectl(&bench.file(&namespace, &set_yaml(&namespace, "app", false))));
        }
    }
    let equal_initial = format!(
        "both server-side apply the same {n} objects into a namespace that holds none of them, \
         over a warm connection; ours also records its inventory first; Flux dry-runs 4 at a \
         time, then applies one at a time; Flux's RESTMapper is resolved before its clock, \
         while ours is a new applier per namespace whose discovery (3 reads) is in its clock"
    );
    recorder.record(
        Comparison::new(
            "apply/initial",
            format!("initial apply of {n} objects"),
            &equal_initial,
        )
        .ours(
            "gitops-apply (16 at once)",
            Measure::durations(&ours_initial),
        )
        .peer(&flux_name, Measure::durations(&flux_initial)),
    );
    recorder.record(
        Comparison::new(
            "apply/initial-concurrency-4",
            format!("initial apply of {n} objects, ours at Flux's concurrency (4)"),
            &equal_initial,
        )
        .ours(
            "gitops-apply (4 at once)",
            Measure::durations(&ours4_initial),
        )
        .peer(&flux_name, Measure::durations(&flux_initial)),
    );
    recorder.record(
        Comparison::new(
            "apply/initial-kubectl",
            format!("initial apply of {n} objects vs kubectl (process-level)"),
            "the same objects server-side applied; kubectl is a process per run timed whole (start, discovery, parsing), ours a warm in-process applier",
        )
        .ours("gitops-apply (16 at once)", Measure::durations(&ours_initial))
        .peer("kubectl apply --server-side (process)", Measure::durations(&kubectl_initial))
        .note("process-level: kubectl's start and discovery are in its figure"),
    );

    // No-change reconcile: each engine applies again to a namespace that holds the set.
    let namespace = bench.namespace("steady");
    let yaml = set_yaml(&namespace, "app", false);
    let ours_applier = bench.applier(bench.client.clone(), &namespace, "inventory", 16);
    bench.ours(&ours_applier, &yaml, ObjectAction::Created);
    let ours4_applier = bench.applier(bench.client.clone(), &namespace, "inventory", 4);
    let mut ours_steady = Vec::new();
    let mut ours4_steady = Vec::new();
    for _ in 0..samples(20, 2) {
        let (took, counts) = bench.ours(&ours_applier, &yaml, ObjectAction::Unchanged);
        ours_steady.push(took);
        requests.insert("ours no-change", counts);
        ours4_steady.push(bench.ours(&ours4_applier, &yaml, ObjectAction::Unchanged).0);
    }
    let (floor, floor_requests) = bench.floor(&namespace, "inventory", &yaml, samples(20, 2));
    let flux_namespace = bench.namespace("steady-flux");
    let flux_file = bench.file(&flux_namespace, &set_yaml(&flux_namespace, "app", false));
    assert_eq!(bench.flux(&flux_file).created, n);
    let mut flux_steady = Vec::new();
    for _ in 0..samples(5, 1) {
        let run = bench.flux(&flux_file);
        assert_eq!(run.unchanged, n, "{run:?}");
        requests.insert("Flux no-change", run.requests);
        flux_steady.push(run.elapsed);
    }
    let kubectl_namespace = bench.namespace("steady-kubectl");
    let kubectl_file = bench.file(
        &kubectl_namespace,
        &set_yaml(&kubectl_namespace, "app", false),
    );
    bench.kubectl(&kubectl_file);
    let kubectl_steady: Vec<Duration> = (0..samples(3, 1))
        .map(|_| bench.kubectl(&kubectl_file))
        .collect();
    let floor_name = format!("the {floor_requests} needed requests over a warm connection");
    let equal_steady = format!(
        "the {n} objects are in the namespace as applied; both find every object unchanged and \
         write nothing (ours: its inventory and a list per kind and namespace selected by its \
         ownership labels; Flux: a get and a dry run per object); warm clients"
    );
    recorder.record(
        Comparison::new(
            "apply/no-change",
            format!("no-change reconcile of {n} objects"),
            &equal_steady,
        )
        .ours(
            "gitops-apply (16 at once)",
            Measure::durations(&ours_steady),
        )
        .peer(&flux_name, Measure::durations(&flux_steady))
        .floor(&floor_name, Measure::durations(&floor)),
    );
    recorder.record(
        Comparison::new(
            "apply/no-change-concurrency-4",
            format!("no-change reconcile of {n} objects, ours at Flux's concurrency (4)"),
            &equal_steady,
        )
        .ours(
            "gitops-apply (4 at once)",
            Measure::durations(&ours4_steady),
        )
        .peer(&flux_name, Measure::durations(&flux_steady))
        .floor(&floor_name, Measure::durations(&floor)),
    );
    recorder.record(
        Comparison::new(
            "apply/no-change-kubectl",
            format!("no-change reconcile of {n} objects vs kubectl (process-level)"),
            "the same objects applied again unchanged; kubectl is a process per run timed whole, ours a warm in-process applier",
        )
        .ours("gitops-apply (16 at once)", Measure::durations(&ours_steady))
        .peer("kubectl apply --server-side (process)", Measure::durations(&kubectl_steady))
        .note("process-level: kubectl's start and discovery are in its figure"),
    );

    // The crowded namespace: 6n unrelated ConfigMaps and Secrets beside the set, and
    // ClusterRoles in the set. Ours and Flux share it (each sees the other's set too).
    let crowded = bench.namespace("crowded");
    let crowd = bench.applier(bench.client.clone(), &crowded, "crowd", 16);
    let crowd_set = desired(&crowd_yaml(&crowded));
    bench
        .runtime
        .block_on(crowd.apply_set(crowd_set, &ApplyOptions::default(), &bench.cancel))
        .expect("the crowd");
    let ours_yaml = set_yaml(&crowded, "ours", true);
    let flux_yaml = set_yaml(&crowded, "flux", true);
    let ours_file = bench.file("crowded-ours", &ours_yaml);
    let flux_crowded_file = bench.file("crowded-flux", &flux_yaml);
    let kubeconfig = bench.control_plane.kubeconfig_path().to_path_buf();
    let mut ours_crowded_initial = Vec::new();
    let mut flux_crowded_initial = Vec::new();
    for round in 0..samples(3, 1) {
        let applier = bench.applier(bench.client.clone(), &crowded, &format!("ours-{round}"), 16);
        ours_crowded_initial.push(bench.ours(&applier, &ours_yaml, ObjectAction::Created).0);
        let run = bench.flux(&flux_crowded_file);
        assert_eq!(run.created, n, "{run:?}");
        flux_crowded_initial.push(run.elapsed);
        if round + 1 < samples(3, 1) {
            kubectl_delete(&bench.kubectl, &kubeconfig, &ours_file);
            kubectl_delete(&bench.kubectl, &kubeconfig, &flux_crowded_file);
        }
    }
    let last_inventory = format!("ours-{}", samples(3, 1) - 1);
    let ours_crowded = bench.applier(bench.client.clone(), &crowded, &last_inventory, 16);
    let mut ours_crowded_steady = Vec::new();
    for _ in 0..samples(10, 2) {
        let (took, counts) = bench.ours(&ours_crowded, &ours_yaml, ObjectAction::Unchanged);
        ours_crowded_steady.push(took);
        requests.insert("ours crowded no-change", counts);
    }
    let (crowded_floor, crowded_floor_requests) =
        bench.floor(&crowded, &last_inventory, &ours_yaml, samples(10, 2));
    let mut flux_crowded_steady = Vec::new();
    for _ in 0..samples(5, 1) {
        let run = bench.flux(&flux_crowded_file);
        assert_eq!(run.unchanged, n, "{run:?}");
        requests.insert("Flux crowded no-change", run.requests);
        flux_crowded_steady.push(run.elapsed);
    }
    let crowd_note = format!(
        "{} unrelated ConfigMaps and Secrets and the other engine's set in the namespace; {} of \
         the set are ClusterRoles",
        6 * n,
        n / 20
    );
    recorder.record(
        Comparison::new(
            "apply/crowded-initial",
            format!("initial apply of {n} objects into a crowded namespace"),
            format!("{equal_initial}; the set is deleted between samples, outside the clock"),
        )
        .ours(
            "gitops-apply (16 at once)",
            Measure::durations(&ours_crowded_initial),
        )
        .peer(&flux_name, Measure::durations(&flux_crowded_initial))
        .note(&crowd_note),
    );
    recorder.record(
        Comparison::new(
            "apply/crowded-no-change",
            format!("no-change reconcile of {n} objects in a crowded namespace"),
            &equal_steady,
        )
        .ours(
            "gitops-apply (16 at once)",
            Measure::durations(&ours_crowded_steady),
        )
        .peer(&flux_name, Measure::durations(&flux_crowded_steady))
        .floor(
            format!("the {crowded_floor_requests} needed requests over a warm connection"),
            Measure::durations(&crowded_floor),
        )
        .note(&crowd_note),
    );

    for (what, counts) in &requests {
        println!("API requests, {what}: {counts}");
    }
    let path = recorder.finish().expect("writing the results");
    println!("apply: results in {}", path.display());
    bench.control_plane.stop();
}
