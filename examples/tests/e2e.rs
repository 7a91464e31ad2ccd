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

use gitops_apply::{ConfigMapInventory, InventoryStore as _, ObjectAction};
use gitops_envtest::{ControlPlane, DEFAULT_CONTROLLERS};
use gitops_examples::demo::{
    DemoOptions, DemoRepository, HAND_EDITED_GREETING, Narrator, REVISION_1, REVISION_2,
    REVISION_3_REMOVED, Scenario, ScenarioError, edit_greeting_by_hand, names,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::Api;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_util::sync::CancellationToken;

mod common;
use common::run_sync;

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
                gitops_examples::demo::error_chain(&e),
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
    assert_eq!(
        report.initial.count(ObjectAction::Created),
        6,
        "{narration}"
    );

    // Revision 2: the three changed objects configured, the rest untouched.
    assert!(report.change.applied(second), "{:?}", report.change);
    assert!(report.change.new_revision);
    assert_eq!(
        report.change.count(ObjectAction::Configured),
        3,
        "{narration}"
    );
    assert_eq!(
        report.change.count(ObjectAction::Unchanged),
        3,
        "{narration}"
    );
    assert_eq!(report.change.drift_corrected, 0);

    // Drift: corrected at the same revision, counted as drift.
    assert!(report.drift.applied(second));
    assert!(!report.drift.new_revision);
    assert_eq!(report.drift_corrected, 2, "{:?}", report.drift);

    // Revision 3: the Service pruned, nothing else written.
    assert!(report.prune.applied(third), "{:?}", report.prune);
    assert_eq!(report.prune.count(ObjectAction::Pruned), 1, "{narration}");
    assert_eq!(
        report.prune.action_of("Service", names::WEB),
        Some(ObjectAction::Pruned)
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

/// With a minute between cycles, the scenario is still waiting for the reconciler to pick up
/// revision 2 when it is cancelled: it stops at once, with the reconciler.
#[tokio::test]
async fn cancelling_the_scenario_stops_it_promptly() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = unique_namespace("demo-cancel");
    let narrator = Narrator::capturing(false);
    let cancel = CancellationToken::new();
    let options = DemoOptions::new()
        .namespace(&namespace)
        .interval(Duration::from_secs(60));
    let scenario = Scenario::new(client, &narrator, options);
    let canceller = cancel.clone();
    let started = std::time::Instant::now();
    let (result, ()) = tokio::join!(scenario.run(&cancel), async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        canceller.cancel();
    });
    let error = result.expect_err("a cancelled scenario does not finish");
    assert!(
        matches!(error, ScenarioError::Cancelled { step: 2 | 3 }),
        "{error:?}\n{}",
        narrator.captured().unwrap()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// An object in the way (an immutable ConfigMap of the same name, made by someone else) stops
/// the scenario in step 2 with an error that names it, and nothing else is written.
#[tokio::test]
async fn an_object_in_the_way_fails_the_step_and_is_named() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let namespace = unique_namespace("demo-in-the-way");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let squatter: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).unwrap();
    namespaces
        .create(&Default::default(), &squatter)
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let squatter: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": names::CONFIG_MAP},
        "immutable": true,
        "data": {names::GREETING_KEY: "not yours"},
    }))
    .unwrap();
    config_maps
        .create(&Default::default(), &squatter)
        .await
        .unwrap();

    let narrator = Narrator::capturing(false);
    let options = DemoOptions::new()
        .namespace(&namespace)
        .interval(Duration::from_millis(500))
        .step_timeout(Duration::from_secs(10));
    let started = std::time::Instant::now();
    let error = Scenario::new(client.clone(), &narrator, options)
        .run(&CancellationToken::new())
        .await
        .expect_err("the ConfigMap is in the way");
    let chain = gitops_examples::demo::error_chain(&error);
    assert!(chain.starts_with("step 2"), "{chain}");
    assert!(
        chain.contains(&format!("ConfigMap {namespace}/web-content failed")),
        "{chain}"
    );
    assert!(chain.contains("immutable field(s) data changed"), "{chain}");
    assert!(chain.contains("--namespace"), "{chain}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // Nothing of the demo app was written.
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    assert!(services.get_opt(names::WEB).await.unwrap().is_none());
    assert_eq!(greeting(&client, &namespace).await, "not yours");
}

/// Asserts that a demo run with `TMPDIR=tmp` left nothing behind: no file or directory in
/// `tmp` (the demo repository, the control plane's data, the pipeline's artifacts) and no
/// process that refers to it (etcd, kube-apiserver, kube-controller-manager, the watchdog).
fn assert_cleaned_up(tmp: &std::path::Path, output: &str) {
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}\n{output}");
    let tmp = tmp.to_str().unwrap();
    let processes: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(tmp))
        .collect();
    assert!(
        processes.is_empty(),
        "processes left: {processes:?}\n{output}"
    );
}

/// The `demo` binary as a user runs it (no `--kubeconfig`: a control plane of its own), with
/// its temporary files in `tmp`.
fn demo_command(tmp: &std::path::Path, interval: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_demo"));
    command
        .args(["--interval", interval, "--color", "never"])
        .env("TMPDIR", tmp)
        .kill_on_drop(true);
    command
}

/// Reads the child's standard output until a line contains `marker`, then sends SIGINT and
/// returns the exit code and everything it printed.
async fn interrupt_after(mut child: tokio::process::Child, marker: &str) -> (Option<i32>, String) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(marker) {
            break;
        }
    }
    assert!(seen.contains(marker), "{seen}");
    let code = interrupt_and_drain(&mut child, &mut lines, &mut seen, "the demo").await;
    (code, seen)
}

/// Sends SIGINT to `child` (the binary `name`), waits up to 20 s for it to exit, appends the
/// rest of its standard output to `seen`, and returns its exit code.
async fn interrupt_and_drain(
    child: &mut tokio::process::Child,
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: &mut String,
    name: &str,
) -> Option<i32> {
    send_sigint(child.id().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap_or_else(|_| panic!("{name} did not stop within 20 s of SIGINT:\n{seen}"))
        .unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
    }
    status.code()
}

/// The README's first command as a user runs it: the `demo` binary starts a control plane of
/// its own, goes through every step, exits 0, and leaves nothing behind.
#[tokio::test]
async fn the_demo_binary_runs_to_the_end_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let output = demo_command(tmp.path(), "0.5").output().await.unwrap();
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
        "+  greeting: Hello from revision 2",
        "3 objects configured",
        "Drift corrected (2 objects)",
        "Service gitops-demo/web deleted",
        "── Step 5/5",
        "The demo took",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains('\u{1b}'), "--color never");
    assert_cleaned_up(tmp.path(), &stdout);
}

/// `--kubeconfig`: the demo runs against a cluster that is already there, in the namespace
/// asked for, and stops nothing of it.
#[tokio::test]
async fn the_demo_binary_uses_an_existing_cluster() {
    let control_plane = control_plane().await;
    let namespace = unique_namespace("demo-existing");
    let tmp = tempfile::tempdir().unwrap();
    let output = demo_command(tmp.path(), "0.5")
        .arg("--kubeconfig")
        .arg(control_plane.kubeconfig_path())
        .args(["--namespace", &namespace])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("Using the cluster of"), "{stdout}");
    assert!(!stdout.contains("Stopping the control plane"), "{stdout}");
    assert!(
        stdout.contains(&format!("Service {namespace}/web deleted")),
        "{stdout}"
    );
    assert_cleaned_up(tmp.path(), &stdout);
    // The cluster still serves, with the demo's objects in it.
    let client = control_plane.client().await.unwrap();
    assert_eq!(greeting(&client, &namespace).await, "Hello from revision 2");
}

/// Ctrl-C (SIGINT) in the middle (30 s between cycles: the demo waits for its second cycle)
/// stops the `demo` binary with exit code 130, and it still stops its control plane and removes
/// its directories.
#[tokio::test]
async fn the_demo_binary_stops_and_cleans_up_on_sigint() {
    let tmp = tempfile::tempdir().unwrap();
    let child = demo_command(tmp.path(), "30")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, seen) = interrupt_after(child, "cycle  1 ·").await;
    assert_eq!(code, Some(130), "{seen}");
    assert!(seen.contains("Interrupted"), "{seen}");
    assert!(!seen.contains("── Step 5/5"), "{seen}");
    assert_cleaned_up(tmp.path(), &seen);
}

/// `--keep`: after the last step the control plane stays up, usable with the kubeconfig shown,
/// until Ctrl-C, which then ends the demo normally (exit 0) and cleans up.
#[tokio::test]
async fn the_demo_binary_keeps_the_control_plane_until_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = demo_command(tmp.path(), "0.5")
        .arg("--keep")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    read_until(
        &mut lines,
        &mut seen,
        Duration::from_secs(120),
        "with the kubectl command",
        |line| line.contains("kubectl --kubeconfig"),
    )
    .await;
    let kubeconfig = seen
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_owned();
    let cluster = ControlPlane::connect(&kubeconfig).await.unwrap();
    let client = cluster.client().await.unwrap();
    assert_eq!(
        greeting(&client, "gitops-demo").await,
        "Hello from revision 2"
    );
    drop(cluster);

    let code = interrupt_and_drain(&mut child, &mut lines, &mut seen, "the demo").await;
    assert_eq!(code, Some(0), "{seen}");
    assert!(!std::path::Path::new(&kubeconfig).exists(), "{seen}");
    assert_cleaned_up(tmp.path(), &seen);
}

/// Ctrl-C while the control plane is starting: the half-started control plane is stopped too.
#[tokio::test]
async fn the_demo_binary_stops_and_cleans_up_on_sigint_while_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let child = demo_command(tmp.path(), "30")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, seen) = interrupt_after(child, "Starting a local control plane").await;
    assert_eq!(code, Some(130), "{seen}");
    assert!(!seen.contains("── Step 1/5"), "{seen}");
    assert_cleaned_up(tmp.path(), &seen);
}

/// On a machine without the control plane's binaries the demo says that it builds them (here
/// without Go, so the build fails at once with an error that says what to install).
#[tokio::test]
async fn the_demo_binary_says_when_it_must_build_the_control_plane() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let output = demo_command(tmp.path(), "0.5")
        .env("GITOPS_ENVTEST_CACHE", cache.path())
        .env_remove("GITOPS_ENVTEST_BIN_DIR")
        // git, and no Go.
        .env("PATH", "/usr/bin:/bin")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("First run: building etcd v3.7.0, kube-apiserver v1.37.2, kube-controller-manager v1.37.2"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&cache.path().display().to_string()),
        "{stdout}"
    );
    assert!(stdout.contains("needs Go"), "{stdout}");
    assert_cleaned_up(tmp.path(), &stdout);
}

fn send_sigint(pid: u32) {
    // The shell's own `kill`, so that no package beyond a shell is needed.
    let status = std::process::Command::new("sh")
        .args(["-c", "kill -INT \"$1\"", "sh", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The flags `sync` and `reconcile` share for the demo repository in `namespace`.
fn source_flags(control_plane: &ControlPlane, repository: &DemoRepository) -> Vec<String> {
    vec![
        "--url".into(),
        repository.url(),
        "--ref".into(),
        "main".into(),
        "--subpath".into(),
        "app".into(),
        "--inventory".into(),
        format!("default/{}", repository.namespace()),
        "--kubeconfig".into(),
        control_plane.kubeconfig_path().display().to_string(),
        "--force".into(),
        "--wait".into(),
        "60s".into(),
    ]
}

async fn greeting(client: &kube::Client, namespace: &str) -> String {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    config_maps
        .get(names::CONFIG_MAP)
        .await
        .unwrap()
        .data
        .unwrap()[names::GREETING_KEY]
        .clone()
}

/// `sync` on the demo repository: exit codes 2 (changed), 0 (in sync) and 1 (failed);
/// `--dry-run` writes nothing; `--output json` parses; drift is corrected.
#[tokio::test]
async fn the_sync_binary_reports_changed_in_sync_and_failed() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let repository = DemoRepository::create(&unique_namespace("demo-sync"))
        .await
        .unwrap();
    let namespace = repository.namespace().to_owned();
    let flags = source_flags(control_plane, &repository);

    // A dry run: the plan as diffs, exit 2 (would change), and nothing written.
    let plan = run_sync(&flags, &["--dry-run"]).await;
    assert_eq!(plan.code, Some(2), "{}\n{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("+kind: ConfigMap"), "{}", plan.stdout);
    assert!(plan.stdout.contains("dry run"), "{}", plan.stdout);
    let plan_json = run_sync(&flags, &["--dry-run", "--output", "json"]).await;
    assert_eq!(plan_json.code, Some(2), "{}", plan_json.stderr);
    let json: serde_json::Value = serde_json::from_str(&plan_json.stdout).unwrap();
    assert_eq!(json["dryRun"], true);
    assert_eq!(json["counts"]["created"], 6, "{json:#}");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt(&namespace).await.unwrap().is_none());
    assert!(inventory_ids(&client, &namespace).await.is_empty());

    // The first sync creates the six objects: exit 2, JSON with one entry per object.
    let first = run_sync(&flags, &["--output", "json"]).await;
    assert_eq!(first.code, Some(2), "{}\n{}", first.stdout, first.stderr);
    let json: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(json["dryRun"], false);
    assert_eq!(json["counts"]["created"], 6, "{json:#}");
    assert_eq!(json["objects"].as_array().unwrap().len(), 6);
    let head = repository.head().await.unwrap();
    assert!(
        json["revision"].as_str().unwrap().ends_with(&head.hash),
        "{json:#}"
    );
    assert_eq!(greeting(&client, &namespace).await, "Hello from revision 1");

    // Again: in sync, exit 0.
    let again = run_sync(&flags, &[]).await;
    assert_eq!(again.code, Some(0), "{}\n{}", again.stdout, again.stderr);
    assert!(
        again
            .stdout
            .contains("0 created, 0 configured, 6 unchanged"),
        "{}",
        again.stdout
    );

    // A hand edit is drift: corrected, exit 2.
    edit_greeting_by_hand(&client, &namespace).await.unwrap();
    let drift = run_sync(&flags, &["--output", "json"]).await;
    assert_eq!(drift.code, Some(2), "{}\n{}", drift.stdout, drift.stderr);
    let json: serde_json::Value = serde_json::from_str(&drift.stdout).unwrap();
    assert_eq!(json["counts"]["configured"], 1, "{json:#}");
    assert_eq!(greeting(&client, &namespace).await, "Hello from revision 1");

    // A commit with a broken file fails the render: exit 1, the file and line named, nothing
    // written or pruned.
    let broken = gitops_examples::demo::DemoFile {
        path: "app/broken.yaml",
        contents: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n",
    };
    repository
        .commit("A broken file", &[broken], &["app/service.yaml"])
        .await
        .unwrap();
    let failed = run_sync(&flags, &[]).await;
    assert_eq!(failed.code, Some(1), "{}\n{}", failed.stdout, failed.stderr);
    assert!(
        failed.stderr.contains("app/broken.yaml"),
        "{}",
        failed.stderr
    );
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    assert!(
        services.get_opt(names::WEB).await.unwrap().is_some(),
        "a failed render never prunes"
    );
    let failed_json = run_sync(&flags, &["--output", "json"]).await;
    assert_eq!(failed_json.code, Some(1));
    let json: serde_json::Value = serde_json::from_str(&failed_json.stdout).unwrap();
    assert!(
        json["error"].as_str().unwrap().contains("app/broken.yaml"),
        "{json:#}"
    );

    // Bad flags fail too (not clap's 2, which means "changed" here).
    let usage = run_sync(&["--subpath".into(), "app".into()], &[]).await;
    assert_eq!(usage.code, Some(1), "{}", usage.stderr);
}

/// Reads `lines` until one satisfies `done`; panics after `within`, with what was read.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: &mut String,
    within: Duration,
    what: &str,
    done: impl Fn(&str) -> bool,
) {
    let found = tokio::time::timeout(within, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if done(&line) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "no line {what} within {within:?}:\n{seen}"
    );
}

/// `reconcile` on the demo repository applies revision 1, picks up a new commit, corrects a
/// hand edit although Git did not change, prunes what a commit removed, and stops with exit 0
/// on SIGINT.
#[tokio::test]
async fn the_reconcile_binary_follows_commits_corrects_drift_and_stops_on_sigint() {
    let control_plane = control_plane().await;
    let client = control_plane.client().await.unwrap();
    let repository = DemoRepository::create(&unique_namespace("demo-reconcile"))
        .await
        .unwrap();
    let namespace = repository.namespace().to_owned();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_reconcile"))
        .args(source_flags(control_plane, &repository))
        .args(["--interval", "500ms"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let within = Duration::from_secs(60);

    let first = repository.head().await.unwrap();
    let first_revision = format!("main@sha1:{}", &first.hash[..12]);
    read_until(
        &mut lines,
        &mut seen,
        within,
        "applying revision 1",
        |line| {
            line.contains(&first_revision) && line.contains(" ok ") && line.contains("6 created")
        },
    )
    .await;

    let second = repository
        .commit("Revision 2", REVISION_2, &[])
        .await
        .unwrap();
    let second_revision = format!("main@sha1:{}", &second.hash[..12]);
    read_until(
        &mut lines,
        &mut seen,
        within,
        "applying revision 2",
        |line| line.contains(&second_revision) && line.contains("3 configured"),
    )
    .await;
    assert_eq!(greeting(&client, &namespace).await, "Hello from revision 2");

    edit_greeting_by_hand(&client, &namespace).await.unwrap();
    read_until(&mut lines, &mut seen, within, "correcting drift", |line| {
        line.contains(&second_revision) && line.contains("1 drift corrected")
    })
    .await;
    assert_eq!(greeting(&client, &namespace).await, "Hello from revision 2");

    repository
        .commit("Revision 3", &[], REVISION_3_REMOVED)
        .await
        .unwrap();
    let third = repository.head().await.unwrap();
    let third_revision = format!("main@sha1:{}", &third.hash[..12]);
    read_until(
        &mut lines,
        &mut seen,
        within,
        "pruning the Service",
        |line| line.contains(&third_revision) && line.contains("1 pruned"),
    )
    .await;
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    assert!(services.get_opt(names::WEB).await.unwrap().is_none());

    let code = interrupt_and_drain(&mut child, &mut lines, &mut seen, "reconcile").await;
    assert_eq!(code, Some(0), "{seen}");
    assert!(
        seen.contains(&format!("stopped; last applied main@sha1:{}", third.hash)),
        "{seen}"
    );
}
