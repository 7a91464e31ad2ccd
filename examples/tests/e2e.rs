//! End to end: the demo scenario, the `demo` binary, and the `sync` and `reconcile` binaries
//! against a real control plane and the demo repository.
//!
//! The tests share one control plane (started on first use, stopped by its watchdog when the
//! test process exits) that runs the deployment and replica set controllers, so that the demo's
//! Deployment becomes healthy; each test uses a namespace and an inventory of its own.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gitops_apply::{Action, ConfigMapInventory, InventoryStore as _};
use gitops_envtest::{ControlPlane, DEFAULT_CONTROLLERS};
use gitops_examples::demo::{
    DemoOptions, HAND_EDITED_GREETING, Narrator, REVISION_1, Scenario, ScenarioError, names,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::Api;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_util::sync::CancellationToken;

static CONTROL_PLANE: tokio::sync::OnceCell<ControlPlane> = tokio::sync::OnceCell::const_new();

async fn control_plane() -> &'static ControlPlane {
    CONTROL_PLANE
        .get_or_init(|| async {
            let controllers = DEFAULT_CONTROLLERS
                .iter()
                .chain(&["deployment-controller", "replicaset-controller"])
                .copied();
            ControlPlane::builder()
                .controllers(controllers)
                .start()
                .await
                .expect("the control plane starts")
        })
        .await
}

/// A namespace name of its own for each test (the demo app creates it).
fn unique_namespace(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn inventory_ids(client: &kube::Client, name: &str) -> BTreeSet<String> {
    let store = ConfigMapInventory::new("default", name).unwrap();
    store
        .load(client)
        .await
        .unwrap()
        .map(|inventory| inventory.ids().iter().map(|id| id.kind.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_demo_scenario_goes_through_every_step() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = unique_namespace("demo-scenario");
    let narrator = Narrator::capturing(false);
    let options = DemoOptions::new()
        .namespace(&namespace)
        .interval(Duration::from_millis(500));
    let report = Scenario::new(client.clone(), &narrator, options)
        .run(&CancellationToken::new())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}\n--- narration ---\n{}",
                gitops_examples::pipeline::error_chain(&e),
                narrator.captured().unwrap()
            )
        });
    let narration = narrator.captured().unwrap();

    // The plan: six objects to create, shown as diffs.
    assert_eq!(report.planned_creates, REVISION_1.len());
    assert!(
        report.plan_text.contains("kind: Greeting"),
        "{}",
        report.plan_text
    );

    // Revision 1: all six created at the first commit.
    assert_eq!(report.commits.len(), 3);
    let [first, second, third] = &report.commits[..] else {
        unreachable!()
    };
    assert!(report.initial.applied(first), "{:?}", report.initial);
    assert!(report.initial.new_revision);
    assert_eq!(report.initial.count(Action::Created), 6, "{narration}");

    // Revision 2: the three changed objects configured, the rest untouched.
    assert!(report.change.applied(second), "{:?}", report.change);
    assert!(report.change.new_revision);
    assert_eq!(report.change.count(Action::Configured), 3, "{narration}");
    assert_eq!(report.change.count(Action::Unchanged), 3, "{narration}");
    assert_eq!(report.change.drift_corrected, 0);

    // Drift: corrected at the same revision, counted as drift.
    assert!(report.drift.applied(second));
    assert!(!report.drift.new_revision);
    assert!(report.drift.drift_corrected >= 2, "{:?}", report.drift);

    // Revision 3: the Service pruned, nothing else written.
    assert!(report.prune.applied(third), "{:?}", report.prune);
    assert_eq!(report.prune.count(Action::Pruned), 1, "{narration}");
    assert_eq!(
        report.prune.action_of("Service", names::WEB),
        Some(Action::Pruned)
    );
    assert_eq!(report.inventory_after_prune.len(), REVISION_1.len() - 1);

    // The cluster, checked independently of the scenario's own checks.
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    assert!(services.get_opt(names::WEB).await.unwrap().is_none());
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let greeting = config_maps
        .get(names::CONFIG_MAP)
        .await
        .unwrap()
        .data
        .unwrap()[names::GREETING_KEY]
        .clone();
    assert_eq!(greeting, "Hello from revision 2");
    assert_ne!(greeting, HAND_EDITED_GREETING);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let deployment = deployments.get(names::WEB).await.unwrap();
    assert_eq!(deployment.spec.replicas, Some(0));
    let kinds = inventory_ids(&client, &namespace).await;
    assert!(!kinds.contains("Service"), "{kinds:?}");
    assert!(
        kinds.contains("Greeting") && kinds.contains("Deployment"),
        "{kinds:?}"
    );

    // The narration: five step headers, and one status line per cycle.
    for step in 1..=5 {
        assert!(
            narration.contains(&format!("── Step {step}/5")),
            "{narration}"
        );
    }
    let status_lines = narration
        .lines()
        .filter(|l| l.contains("· main@sha1:"))
        .count();
    assert_eq!(status_lines, report.cycles.len(), "{narration}");
    assert!(
        !narration.contains('\u{1b}'),
        "no colours when asked for none"
    );
}

#[tokio::test]
async fn cancelling_the_scenario_stops_it_promptly() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = unique_namespace("demo-cancel");
    let narrator = Narrator::capturing(false);
    let cancel = CancellationToken::new();
    let options = DemoOptions::new()
        .namespace(&namespace)
        .interval(Duration::from_millis(500));
    let scenario = Scenario::new(client, &narrator, options);
    let canceller = cancel.clone();
    let started = std::time::Instant::now();
    let (result, ()) = tokio::join!(scenario.run(&cancel), async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        canceller.cancel();
    });
    let error = result.expect_err("a cancelled scenario does not finish");
    assert!(
        matches!(error, ScenarioError::Cancelled { .. }),
        "{error:?}\n{}",
        narrator.captured().unwrap()
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// The path that follows `marker` on a line of the demo's output, up to a space or `)`.
fn path_after(output: &str, marker: &str) -> std::path::PathBuf {
    let start = output
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in:\n{output}"))
        + marker.len();
    output[start..]
        .split([' ', ')', '\n'])
        .next()
        .unwrap()
        .into()
}

/// Asserts that the demo left nothing behind: its repository and its control plane's directory
/// are gone, and no process of the control plane is left.
fn assert_cleaned_up(output: &str) {
    let repository = path_after(output, "git init ");
    assert!(!repository.exists(), "{} is left", repository.display());
    let kubeconfig = path_after(output, "kubeconfig for kubectl: ");
    let data_dir = kubeconfig.parent().unwrap();
    assert!(!data_dir.exists(), "{} is left", data_dir.display());
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let processes = String::from_utf8_lossy(&ps.stdout);
    let data_dir = data_dir.to_str().unwrap();
    assert!(
        !processes.lines().any(|p| p.contains(data_dir)),
        "processes of {data_dir} are left:\n{processes}"
    );
}

/// The README's first command as a user runs it: the `demo` binary starts a control plane of
/// its own, goes through every step, exits 0, and leaves nothing behind.
#[tokio::test]
async fn the_demo_binary_runs_to_the_end_and_cleans_up() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--interval", "0.5", "--color", "never"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{stderr}",
        output.status
    );
    for expected in [
        "Control plane up at https://127.0.0.1:",
        "Plan (a server-side dry run): 6 objects to create",
        "+kind: Greeting",
        "6 objects created and healthy",
        "3 objects configured",
        "Drift corrected (2 objects)",
        "Service gitops-demo/web deleted",
        "── Step 5/5",
        "The demo took",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains('\u{1b}'), "--color never");
    assert_cleaned_up(&stdout);
}

/// Ctrl-C (SIGINT) in the middle stops the `demo` binary with exit code 130, and it still
/// stops its control plane and removes its directories.
#[tokio::test]
async fn the_demo_binary_stops_and_cleans_up_on_sigint() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--interval", "0.5", "--color", "never"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("cycle  1 ·") {
            break;
        }
    }
    assert!(seen.contains("cycle  1 ·"), "{seen}");
    send_sigint(child.id().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the demo stops within 20 s of SIGINT")
        .unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
    }
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("Interrupted"), "{seen}");
    assert!(!seen.contains("── Step 5/5"), "{seen}");
    assert_cleaned_up(&seen);
}

fn send_sigint(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
