//! The sync pipeline and the reconciler against the shared local control plane
//! (gitops-envtest), with real Git repositories in temporary directories reached over `file://`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitops_apply::ObjectAction;
use gitops_examples::git_repo::GitRepository;
use gitops_examples::pipeline::{
    Backoff, Pipeline, ProgressSink, Reconciler, RendererChoice, SourceSpec, SyncConfig, SyncError,
    SyncProgress, SyncReport, error_chain,
};
use gitops_source::GitReference;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn config_map(name: &str, colour: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  colour: {colour}\n"
    )
}

const SECRET: &str =
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\nstringData:\n  token: s3cret-value\n";

/// A pipeline over `source` that puts everything in `namespace` and keeps its inventory there.
fn pipeline(client: &kube::Client, namespace: &str, source: SourceSpec, dry_run: bool) -> Pipeline {
    let config = SyncConfig::builder(source)
        .subpath("app")
        .renderer(RendererChoice::Plain)
        .target_namespace(namespace)
        .inventory(format!("{namespace}/inventory").parse().unwrap())
        .wait_timeout(Duration::from_secs(30))
        .dry_run(dry_run)
        .build()
        .expect("valid configuration");
    Pipeline::new(client.clone(), config).expect("pipeline")
}

async fn sync(pipeline: &mut Pipeline) -> SyncReport {
    match pipeline
        .sync_once(&CancellationToken::new(), &ProgressSink::none())
        .await
    {
        Ok(report) => report,
        Err(error) => panic!("sync failed: {}", error_chain(&error)),
    }
}

/// Syncs `config` once and checks that it created the ConfigMap `name` with `colour`.
async fn sync_creates(
    client: &kube::Client,
    namespace: &str,
    config: SyncConfig,
    name: &str,
    colour: &str,
) {
    let mut pipeline = Pipeline::new(client.clone(), config).unwrap();
    let report = sync(&mut pipeline).await;
    assert_eq!(action(&report, "ConfigMap", name), ObjectAction::Created);
    assert_eq!(
        colour_of(client, namespace, name).await.as_deref(),
        Some(colour)
    );
}

fn action(report: &SyncReport, kind: &str, name: &str) -> ObjectAction {
    report
        .change_set
        .changes
        .iter()
        .find(|c| c.id.kind == kind && c.id.name == name)
        .unwrap_or_else(|| panic!("{kind} {name} not in {}", report.change_set))
        .action
}

async fn colour_of(client: &kube::Client, namespace: &str, name: &str) -> Option<String> {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .unwrap()
        .map(|cm| cm.data.unwrap_or_default()["colour"].clone())
}

/// Someone edits a live object's field that the pipeline manages, as `kubectl edit` would.
async fn tamper(client: &kube::Client, namespace: &str, name: &str) {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({"data": {"colour": "purple"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        colour_of(client, namespace, name).await.as_deref(),
        Some("purple")
    );
}

async fn setup(prefix: &str) -> (kube::Client, String) {
    let control_plane = gitops_envtest::shared().await.expect("control plane");
    let client = control_plane.client().await.expect("client");
    let namespace = control_plane
        .create_namespace(prefix)
        .await
        .expect("namespace");
    (client, namespace)
}

#[tokio::test]
async fn applies_then_changes_nothing_corrects_drift_and_prunes() {
    let (client, namespace) = setup("pipeline-cycle").await;
    let repository = GitRepository::create().await.expect("a repository");
    repository
        .commit(
            "first",
            &[
                ("app/a.yaml", Some(&config_map("a", "blue"))),
                ("app/b.yaml", Some(&config_map("b", "green"))),
                ("app/secret.yaml", Some(SECRET)),
                ("README.md", Some("not rendered: outside the subpath\n")),
            ],
        )
        .await
        .expect("a commit");
    let source = SourceSpec::git(repository.url(), GitReference::Branch("main".into()));
    let mut pipeline = pipeline(&client, &namespace, source, false);

    // First sync: everything is created, and waited for.
    let first = sync(&mut pipeline).await;
    assert!(first.new_revision);
    assert!(
        first.revision.as_str().starts_with("main@sha1:"),
        "{}",
        first.revision
    );
    assert_eq!(
        first.count(ObjectAction::Created),
        3,
        "{}",
        first.change_set
    );
    assert!(first.changed());
    assert!(first.waited.is_some());
    assert_eq!(
        colour_of(&client, &namespace, "a").await.as_deref(),
        Some("blue")
    );
    let version_before = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
        .get("a")
        .await
        .unwrap()
        .metadata
        .resource_version;

    // Second sync, nothing changed anywhere: no writes at all.
    let second = sync(&mut pipeline).await;
    assert!(!second.new_revision);
    assert_eq!(second.revision, first.revision);
    assert!(!second.changed(), "{}", second.change_set);
    assert_eq!(second.count(ObjectAction::Unchanged), 3);
    assert_eq!(second.api_writes, 0, "a no-change sync must not write");
    assert!(
        second.waited.is_none(),
        "nothing written: nothing to wait for"
    );
    assert_eq!(second.drift_corrected(), 0);
    let version_after = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
        .get("a")
        .await
        .unwrap()
        .metadata
        .resource_version;
    assert_eq!(version_before, version_after);

    // Someone changes a live object: the next sync (Git unchanged) corrects it.
    tamper(&client, &namespace, "a").await;
    let third = sync(&mut pipeline).await;
    assert_eq!(action(&third, "ConfigMap", "a"), ObjectAction::Configured);
    assert_eq!(third.drift_corrected(), 1);
    assert!(third.waited.is_some(), "a corrected object is waited for");
    assert_eq!(
        colour_of(&client, &namespace, "a").await.as_deref(),
        Some("blue")
    );

    // A commit removes b: it is pruned; a changes colour: configured, not drift.
    repository
        .commit(
            "remove b",
            &[
                ("app/b.yaml", None),
                ("app/a.yaml", Some(&config_map("a", "red"))),
            ],
        )
        .await
        .expect("a commit");
    let fourth = sync(&mut pipeline).await;
    assert!(fourth.new_revision);
    assert_ne!(fourth.revision, first.revision);
    assert_eq!(action(&fourth, "ConfigMap", "b"), ObjectAction::Pruned);
    assert_eq!(action(&fourth, "ConfigMap", "a"), ObjectAction::Configured);
    assert_eq!(fourth.drift_corrected(), 0);
    assert_eq!(colour_of(&client, &namespace, "b").await, None);
    assert_eq!(
        colour_of(&client, &namespace, "a").await.as_deref(),
        Some("red")
    );
    assert_eq!(pipeline.applied_revision(), Some(&fourth.revision));
}

#[tokio::test]
async fn a_broken_commit_keeps_the_last_good_revision_and_prunes_nothing() {
    let (client, namespace) = setup("pipeline-broken").await;
    let repository = GitRepository::create().await.expect("a repository");
    repository
        .commit(
            "good",
            &[
                ("app/a.yaml", Some(&config_map("a", "blue"))),
                ("app/b.yaml", Some(&config_map("b", "green"))),
            ],
        )
        .await
        .expect("a commit");
    let source = SourceSpec::git(repository.url(), GitReference::Branch("main".into()));
    let mut pipeline = pipeline(&client, &namespace, source, false);
    let good = sync(&mut pipeline).await;
    assert_eq!(good.count(ObjectAction::Created), 2);

    // The broken commit drops b and has malformed YAML; meanwhile a drifts.
    repository
        .commit(
            "broken",
            &[
                ("app/b.yaml", None),
                (
                    "app/broken.yaml",
                    Some("apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n"),
                ),
            ],
        )
        .await
        .expect("a commit");
    tamper(&client, &namespace, "a").await;
    let error = pipeline
        .sync_once(&CancellationToken::new(), &ProgressSink::none())
        .await
        .expect_err("a malformed file must fail the render");
    let message = error_chain(&error);
    assert!(matches!(error, SyncError::Render { .. }), "{message}");
    assert!(
        message.contains("broken.yaml"),
        "the error names the file: {message}"
    );
    let served = error.served().expect("the last good revision is served");
    assert!(served.served_last_good);
    assert_eq!(served.revision, good.revision);
    assert_eq!(
        served.count(ObjectAction::Pruned),
        0,
        "{}",
        served.change_set
    );
    assert_eq!(
        action(served, "ConfigMap", "a"),
        ObjectAction::Configured,
        "drift still corrected"
    );
    assert_eq!(
        colour_of(&client, &namespace, "a").await.as_deref(),
        Some("blue")
    );
    assert_eq!(
        colour_of(&client, &namespace, "b").await.as_deref(),
        Some("green"),
        "nothing is pruned after a failed render"
    );
    assert_eq!(pipeline.last_good_revision(), Some(&good.revision));

    // Polling the same broken revision again: still failing, still nothing pruned.
    let again = pipeline
        .sync_once(&CancellationToken::new(), &ProgressSink::none())
        .await
        .expect_err("still broken");
    assert_eq!(
        again.served().map(|r| r.count(ObjectAction::Pruned)),
        Some(0)
    );
    assert!(colour_of(&client, &namespace, "b").await.is_some());

    // The fix: b's removal now takes effect.
    repository
        .commit("fix", &[("app/broken.yaml", None)])
        .await
        .expect("a commit");
    let fixed = sync(&mut pipeline).await;
    assert_eq!(action(&fixed, "ConfigMap", "b"), ObjectAction::Pruned);
    assert_eq!(colour_of(&client, &namespace, "b").await, None);

    // The repository disappears: the fetch fails, the last good set is served, a's drift is
    // still corrected.
    tamper(&client, &namespace, "a").await;
    std::fs::remove_dir_all(repository.path()).unwrap();
    let error = pipeline
        .sync_once(&CancellationToken::new(), &ProgressSink::none())
        .await
        .expect_err("the repository is gone");
    assert!(
        matches!(error, SyncError::Fetch { .. }),
        "{}",
        error_chain(&error)
    );
    let served = error.served().expect("served");
    assert_eq!(served.revision, fixed.revision);
    assert_eq!(action(served, "ConfigMap", "a"), ObjectAction::Configured);
    assert_eq!(
        colour_of(&client, &namespace, "a").await.as_deref(),
        Some("blue")
    );
}

#[tokio::test]
async fn objects_that_never_become_current_fail_the_wait_and_cancellation_stops_early() {
    let (client, namespace) = setup("pipeline-wait").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("app")).unwrap();
    // No scheduler and no deployment controller run: this Deployment never becomes Current.
    std::fs::write(
        dir.path().join("app/web.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers: [{name: web, image: nginx}]\n",
    )
    .unwrap();
    let config = SyncConfig::builder(SourceSpec::local(dir.path()))
        .subpath("app")
        .target_namespace(&namespace)
        .inventory(format!("{namespace}/inventory").parse().unwrap())
        .wait_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut pipeline = Pipeline::new(client.clone(), config).unwrap();

    // A cancelled token stops before anything is fetched or written.
    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let error = pipeline
        .sync_once(&cancelled, &ProgressSink::none())
        .await
        .expect_err("cancelled");
    assert!(error.is_cancelled(), "{}", error_chain(&error));
    let stopped = Reconciler::new(pipeline, Duration::from_secs(1))
        .run(&cancelled, |event| {
            panic!("no cycle may run: {}", event.status_line())
        })
        .await;
    assert!(stopped.applied_revision().is_none());
    let mut pipeline = stopped;

    let error = pipeline
        .sync_once(&CancellationToken::new(), &ProgressSink::none())
        .await
        .expect_err("the Deployment never becomes Current");
    let message = error_chain(&error);
    let SyncError::Wait { report, .. } = &error else {
        panic!("expected a wait failure: {message}");
    };
    assert_eq!(action(report, "Deployment", "web"), ObjectAction::Created);
    assert!(report.waited.unwrap() >= Duration::from_secs(2));
    assert!(message.contains("web"), "{message}");

    // The next cycle writes nothing, yet the apply saw from the objects it listed that the
    // Deployment is still not Current: the cycle waits and fails again rather than pass.
    let error = pipeline
        .sync_once(&CancellationToken::new(), &ProgressSink::none())
        .await
        .expect_err("still not Current");
    let message = error_chain(&error);
    let SyncError::Wait { report, .. } = &error else {
        panic!("expected a wait failure: {message}");
    };
    assert_eq!(action(report, "Deployment", "web"), ObjectAction::Unchanged);
    assert_eq!(report.api_writes, 0, "{message}");
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_masks_secrets_in_the_plan() {
    let (client, namespace) = setup("pipeline-dry").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("app")).unwrap();
    std::fs::write(dir.path().join("app/a.yaml"), config_map("a", "${COLOUR}")).unwrap();
    std::fs::write(dir.path().join("app/secret.yaml"), SECRET).unwrap();
    let config = SyncConfig::builder(SourceSpec::local(dir.path()))
        .subpath("app")
        .target_namespace(&namespace)
        .variable("COLOUR", "teal")
        .inventory(format!("{namespace}/inventory").parse().unwrap())
        .dry_run(true)
        .build()
        .unwrap();
    let mut pipeline = Pipeline::new(client.clone(), config).unwrap();
    let steps = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&steps);
    let report = pipeline
        .sync_once(
            &CancellationToken::new(),
            &ProgressSink::new(move |step| record.lock().unwrap().push(step.clone())),
        )
        .await
        .expect("dry run");
    assert!(report.change_set.dry_run);
    assert!(report.revision.as_str().starts_with("sha256:"));
    assert_eq!(
        report.count(ObjectAction::Created),
        2,
        "{}",
        report.change_set
    );
    assert!(report.changed());
    assert_eq!(report.api_writes, 0, "a dry run writes nothing");
    assert_eq!(colour_of(&client, &namespace, "a").await, None);
    assert!(
        Api::<Secret>::namespaced(client.clone(), &namespace)
            .get_opt("token")
            .await
            .unwrap()
            .is_none()
    );
    let plan = pipeline
        .plan_text(&report, gitops_diff::Colour::Never)
        .await;
    assert!(
        plan.contains(&format!("+++ desired/ConfigMap {namespace}/a")),
        "{plan}"
    );
    assert!(plan.contains("colour: teal"), "substituted: {plan}");
    assert!(
        !plan.contains("s3cret-value"),
        "Secret values are masked: {plan}"
    );
    assert!(plan.contains("***"), "{plan}");
    let steps = steps.lock().unwrap();
    assert!(
        matches!(steps.first(), Some(SyncProgress::Fetching(_))),
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .any(|s| matches!(s, SyncProgress::Rendered { objects: 2, .. }))
    );
    assert!(steps.iter().any(|s| matches!(s, SyncProgress::Applying(_))));
}

#[tokio::test]
async fn the_reconciler_corrects_drift_each_cycle_and_stops_on_cancellation() {
    let (client, namespace) = setup("pipeline-loop").await;
    let repository = GitRepository::create().await.expect("a repository");
    repository
        .commit("first", &[("app/a.yaml", Some(&config_map("a", "blue")))])
        .await
        .expect("a commit");
    let source = SourceSpec::git(repository.url(), GitReference::Branch("main".into()));
    let pipeline = pipeline(&client, &namespace, source, false);

    let cancel = CancellationToken::new();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (tampered_tx, mut tampered_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let drift_client = client.clone();
    let drift_namespace = namespace.clone();
    let record = Arc::clone(&lines);
    let stop = cancel.clone();
    let reconciler = Reconciler::new(pipeline, Duration::from_millis(300)).backoff(Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(1),
    ));
    let run = tokio::spawn(async move {
        reconciler
            .run(&stop, move |event| {
                record.lock().unwrap().push(event.status_line());
                if let Ok(report) = event.result
                    && report.drift_corrected() > 0
                {
                    let _ = tampered_tx.send(event.cycle);
                }
            })
            .await
    });
    // Let the first cycle apply, then drift the object; a later cycle corrects it.
    tokio::time::timeout(Duration::from_secs(30), async {
        while colour_of(&drift_client, &drift_namespace, "a")
            .await
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the first cycle applies");
    tamper(&drift_client, &drift_namespace, "a").await;
    let corrected_in = tokio::time::timeout(Duration::from_secs(30), tampered_rx.recv())
        .await
        .expect("a cycle corrects the drift")
        .unwrap();
    assert!(corrected_in >= 2);
    assert_eq!(
        colour_of(&client, &namespace, "a").await.as_deref(),
        Some("blue")
    );

    cancel.cancel();
    let pipeline = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the reconciler stops promptly on cancellation")
        .unwrap();
    assert!(pipeline.applied_revision().is_some());
    let lines = lines.lock().unwrap();
    assert!(lines.len() >= 2, "{lines:?}");
    assert!(lines[0].starts_with("cycle 1 ok main@sha1:"), "{lines:?}");
    assert!(lines.iter().all(|l| l.contains(" ok ")), "{lines:?}");
}

/// Runs the `sync` binary with JSON output; its exit code and what it printed.
async fn run_sync_binary(
    kubeconfig: &Path,
    dir: &Path,
    namespace: &str,
    extra: &[&str],
) -> (i32, serde_json::Value) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sync"))
        .arg("--path")
        .arg(dir)
        .args([
            "--subpath",
            "app",
            "--namespace",
            namespace,
            "--output",
            "json",
        ])
        .args(["--inventory", &format!("{namespace}/inventory")])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(extra)
        .output()
        .await
        .expect("sync runs");
    if output.stdout.is_empty() {
        return (
            output.status.code().expect("exit code"),
            serde_json::Value::Null,
        );
    }
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "sync printed no JSON ({error}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().expect("exit code"), json)
}

#[tokio::test]
async fn the_sync_binary_reports_changes_with_its_exit_code() {
    let control_plane = gitops_envtest::shared().await.expect("control plane");
    let (client, namespace) = setup("pipeline-bin").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("app")).unwrap();
    std::fs::write(dir.path().join("app/a.yaml"), config_map("a", "blue")).unwrap();
    let kubeconfig = control_plane.kubeconfig_path();
    let sync =
        |extra: &'static [&'static str]| run_sync_binary(kubeconfig, dir.path(), &namespace, extra);

    let (code, json) = sync(&["--dry-run"]).await;
    assert_eq!(code, 2, "a dry run with changes exits 2: {json}");
    assert_eq!(json["counts"]["created"], 1);
    assert_eq!(colour_of(&client, &namespace, "a").await, None);

    let (code, json) = sync(&[]).await;
    assert_eq!(code, 2, "{json}");
    let objects = json["objects"].as_array().unwrap();
    let entry = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    assert_eq!(entry["action"], "created", "{json}");
    let (code, json) = sync(&[]).await;
    assert_eq!(code, 0, "in sync exits 0: {json}");
    assert_eq!(json["apiWrites"], 0);

    std::fs::write(dir.path().join("app/a.yaml"), "kind: [\n").unwrap();
    let (code, json) = sync(&[]).await;
    assert_eq!(code, 1, "a failure exits 1: {json}");
    assert!(json["error"].as_str().unwrap().contains("a.yaml"), "{json}");

    let (code, _) = sync(&["--renderer", "nonsense"]).await;
    assert_eq!(code, 1, "bad flags exit 1, not 2 (which means changed)");
}

/// The pinned binary of `tool`, built into the gitops-envtest cache when missing.
async fn tool(tool: gitops_envtest::Tool) -> std::path::PathBuf {
    tokio::task::spawn_blocking(move || gitops_envtest::tools::ensure(tool))
        .await
        .unwrap()
        .expect("the pinned tool builds")
}

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
}

#[tokio::test]
async fn kustomize_overlays_reach_bases_outside_the_subpath_and_helm_charts_render() {
    let (client, namespace) = setup("pipeline-tools").await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("base/kustomization.yaml", "resources: [settings.yaml]\n"),
            ("base/settings.yaml", &config_map("settings", "blue")),
            (
                "overlays/prod/kustomization.yaml",
                "resources: [../../base]\nnamePrefix: prod-\n",
            ),
            (
                "chart/Chart.yaml",
                "apiVersion: v2\nname: colours\nversion: 0.1.0\n",
            ),
            ("chart/values.yaml", "colour: grey\n"),
            ("chart/values-prod.yaml", "colour: gold\n"),
            (
                "chart/templates/settings.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  colour: {{ .Values.colour }}\n",
            ),
        ],
    );

    // Kustomize, picked automatically; the overlay's base lies outside the subpath.
    let config = SyncConfig::builder(SourceSpec::local(dir.path()))
        .subpath("overlays/prod")
        .kustomize_binary(tool(gitops_envtest::Tool::Kustomize).await)
        .target_namespace(&namespace)
        .inventory(format!("{namespace}/kustomize").parse().unwrap())
        .build()
        .unwrap();
    sync_creates(&client, &namespace, config, "prod-settings", "blue").await;

    // Helm, with a values file relative to the chart (as in Argo CD and Flux).
    let config = SyncConfig::builder(SourceSpec::local(dir.path()))
        .subpath("chart")
        .renderer(RendererChoice::Helm(
            gitops_examples::pipeline::HelmRelease::new("shop").values_file("values-prod.yaml"),
        ))
        .helm_binary(tool(gitops_envtest::Tool::Helm).await)
        .target_namespace(&namespace)
        .inventory(format!("{namespace}/helm").parse().unwrap())
        .build()
        .unwrap();
    sync_creates(&client, &namespace, config, "shop-settings", "gold").await;
}
