//! The GitSync controller against the local control plane, with real Git repositories made with
//! the `git` CLI and fetched over `file://`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gitops_envtest::tools::Tool;
use gitops_examples::controller::{
    GitSync, GitSyncController, GitSyncSpec, READY, RECONCILING, RendererKind, STALLED, install_crd,
};
use gitops_examples::git_repo::GitRepository;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

/// How long any one expected state may take to appear.
const TIMEOUT: Duration = Duration::from_secs(60);

fn config_map(namespace: Option<&str>, name: &str, value: &str) -> String {
    let namespace = namespace.map_or(String::new(), |ns| format!("  namespace: {ns}\n"));
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{namespace}data:\n  key: {value}\n"
    )
}

/// The controller on a task, watching one namespace; cancelled when dropped (also on panic).
struct RunningController {
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    _work_dir: tempfile::TempDir,
}

impl RunningController {
    fn start(client: &kube::Client, namespace: &str) -> Self {
        Self::start_with(client, namespace, None, None)
    }

    fn start_with(
        client: &kube::Client,
        namespace: &str,
        kustomize: Option<PathBuf>,
        helm: Option<PathBuf>,
    ) -> Self {
        let work_dir = tempfile::tempdir().expect("a temp dir");
        let cancel = CancellationToken::new();
        let mut builder = GitSyncController::builder(client.clone(), work_dir.path())
            .namespace(namespace)
            .backoff(Duration::from_millis(500), Duration::from_secs(5));
        if let Some(kustomize) = kustomize {
            builder = builder.kustomize_binary(kustomize);
        }
        if let Some(helm) = helm {
            builder = builder.helm_binary(helm);
        }
        let controller = builder.build();
        let task = tokio::spawn(controller.run(cancel.clone()));
        Self {
            cancel,
            task: Some(task),
            _work_dir: work_dir,
        }
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("the controller stops when cancelled")
                .expect("the controller task does not panic");
        }
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The shared control plane, a client, the CRD and a fresh namespace.
async fn setup(prefix: &str) -> (kube::Client, String) {
    let plane = gitops_envtest::shared().await.expect("the control plane");
    let client = plane.client().await.expect("a client");
    install_crd(&client, "gitsync-tests", TIMEOUT, &CancellationToken::new())
        .await
        .expect("the CRD installs");
    let namespace = plane.create_namespace(prefix).await.expect("a namespace");
    (client, namespace)
}

async fn create(api: &Api<GitSync>, name: &str, spec: GitSyncSpec) {
    api.create(&PostParams::default(), &GitSync::new(name, spec))
        .await
        .expect("the GitSync is created");
}

/// Polls the GitSync until `check` holds; panics with its last state after [`TIMEOUT`].
async fn wait_for(
    api: &Api<GitSync>,
    name: &str,
    what: &str,
    check: impl Fn(&GitSync) -> bool,
) -> GitSync {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let sync = api.get(name).await.expect("the GitSync can be read");
        if check(&sync) {
            return sync;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; status: {:#?}",
            sync.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn condition<'a>(
    sync: &'a GitSync,
    type_: &str,
) -> Option<&'a gitops_examples::controller::Condition> {
    sync.status.as_ref().and_then(|s| s.condition(type_))
}

/// Waits until the GitSync `name` is not Ready for `reason`, and checks that it is being
/// retried (Reconciling with ProgressingWithRetry), not stalled.
async fn wait_for_retry(api: &Api<GitSync>, name: &str, reason: &str) -> GitSync {
    let what = format!("Ready False for {reason}");
    let sync = wait_for(api, name, &what, |s| {
        condition(s, READY).is_some_and(|c| c.reason == reason)
    })
    .await;
    assert_eq!(
        condition(&sync, READY).map(|c| c.status.as_str()),
        Some("False")
    );
    assert_eq!(
        condition(&sync, RECONCILING).map(|c| (c.status.as_str(), c.reason.as_str())),
        Some(("True", "ProgressingWithRetry")),
        "{reason}: retried, not stalled"
    );
    assert!(condition(&sync, STALLED).is_none(), "{reason}: not stalled");
    sync
}

/// Whether the GitSync's Ready condition is True.
fn is_ready(sync: &GitSync) -> bool {
    condition(sync, READY).is_some_and(|c| c.status == "True")
}

fn is_ready_at(sync: &GitSync, revision: &str) -> bool {
    condition(sync, READY).is_some_and(|c| c.status == "True")
        && sync
            .status
            .as_ref()
            .is_some_and(|s| s.last_applied_revision.as_deref() == Some(revision))
}

fn inventory_ids(sync: &GitSync) -> Vec<String> {
    sync.status
        .as_ref()
        .and_then(|s| s.inventory.as_ref())
        .map(|i| i.entries.iter().map(|e| e.id.clone()).collect())
        .unwrap_or_default()
}

async fn value_of(api: &Api<ConfigMap>, name: &str) -> Option<String> {
    api.get_opt(name)
        .await
        .expect("a ConfigMap can be read")
        .map(|cm| {
            cm.data
                .unwrap_or_default()
                .get("key")
                .cloned()
                .unwrap_or_default()
        })
}

/// Polls until the ConfigMap has `expected` (`None`: is absent).
async fn wait_for_value(api: &Api<ConfigMap>, name: &str, expected: Option<&str>) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let value = value_of(api, name).await;
        if value.as_deref() == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ConfigMap {name}: expected {expected:?}, have {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until an event of `reason` about GitSync `name` is published; returns its note.
async fn wait_for_event(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    reason: &str,
) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let list = events
            .list(&ListParams::default())
            .await
            .expect("events can be listed");
        let found = list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("GitSync")
        });
        if let Some(event) = found {
            return event.note.unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {reason} event about GitSync {name}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes the GitSync `name` and waits until its finalizer has run and it is gone.
async fn delete(api: &Api<GitSync>, name: &str) {
    api.delete(name, &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while let Some(sync) = api.get_opt(name).await.expect("read") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "GitSync {name} still exists: finalizers {:?}, status {:#?}",
            sync.finalizers(),
            sync.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn git_spec(repo: &GitRepository, path: &str, interval: &str) -> GitSyncSpec {
    GitSyncSpec {
        url: Some(repo.url()),
        path: path.to_owned(),
        interval: interval.to_owned(),
        renderer: RendererKind::Auto,
        prune: true,
        ..GitSyncSpec::default()
    }
}

#[tokio::test]
async fn applies_new_commits_corrects_drift_and_prunes_on_delete() {
    let (client, ns) = setup("gitsync-apply").await;
    let controller = RunningController::start(&client, &ns);
    let repo = GitRepository::create().await.expect("a repository");
    let first = repo
        .commit(
            "first",
            &[
                ("deploy/a.yaml", Some(&config_map(Some(&ns), "a", "one"))),
                ("deploy/b.yaml", Some(&config_map(Some(&ns), "b", "one"))),
                ("README.md", Some("not rendered: outside the path\n")),
            ],
        )
        .await
        .expect("a commit")
        .hash;
    let syncs: Api<GitSync> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    create(&syncs, "app", git_spec(&repo, "deploy", "2s")).await;

    let first_revision = format!("main@sha1:{first}");
    let sync = wait_for(&syncs, "app", "the first revision applied", |s| {
        is_ready_at(s, &first_revision)
    })
    .await;
    let status = sync.status.as_ref().expect("a status");
    assert_eq!(
        status.last_attempted_revision.as_deref(),
        Some(first_revision.as_str())
    );
    assert_eq!(status.observed_generation, sync.metadata.generation);
    let ready = condition(&sync, READY).expect("Ready");
    assert_eq!(ready.reason, "ReconciliationSucceeded");
    assert_eq!(ready.message, format!("Applied revision: {first_revision}"));
    assert_eq!(ready.observed_generation, sync.metadata.generation);
    assert!(condition(&sync, RECONCILING).is_none());
    assert!(condition(&sync, STALLED).is_none());
    assert_eq!(
        inventory_ids(&sync),
        [format!("{ns}_a__ConfigMap"), format!("{ns}_b__ConfigMap")]
    );
    assert!(
        sync.finalizers()
            .iter()
            .any(|f| f == gitops_examples::controller::FINALIZER)
    );
    assert_eq!(value_of(&maps, "a").await.as_deref(), Some("one"));
    assert_eq!(value_of(&maps, "b").await.as_deref(), Some("one"));
    let note = wait_for_event(&client, &ns, "app", "ReconciliationSucceeded").await;
    assert!(
        note.contains(&first_revision) && note.contains("2 created"),
        "{note}"
    );

    // A new commit is applied: a changes, b leaves the set and is pruned.
    let second = repo
        .commit(
            "second",
            &[
                ("deploy/a.yaml", Some(&config_map(Some(&ns), "a", "two"))),
                ("deploy/b.yaml", None),
            ],
        )
        .await
        .expect("a commit")
        .hash;
    let second_revision = format!("main@sha1:{second}");
    let sync = wait_for(&syncs, "app", "the second revision applied", |s| {
        is_ready_at(s, &second_revision)
    })
    .await;
    assert_eq!(inventory_ids(&sync), [format!("{ns}_a__ConfigMap")]);
    assert_eq!(value_of(&maps, "a").await.as_deref(), Some("two"));
    assert_eq!(value_of(&maps, "b").await, None, "b was pruned");

    // Drift: a change made by hand is reverted at the next interval, though Git did not change.
    maps.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"key": "by-hand"}})),
    )
    .await
    .expect("a manual change");
    assert_eq!(value_of(&maps, "a").await.as_deref(), Some("by-hand"));
    wait_for_value(&maps, "a", Some("two")).await;

    // Deleting the GitSync prunes its objects through the finalizer.
    delete(&syncs, "app").await;
    assert_eq!(value_of(&maps, "a").await, None, "a was pruned on delete");
    controller.stop().await;
}

#[tokio::test]
async fn a_malformed_manifest_stalls_names_file_and_line_and_prunes_nothing() {
    let (client, ns) = setup("gitsync-stall").await;
    let controller = RunningController::start(&client, &ns);
    let repo = GitRepository::create().await.expect("a repository");
    // No namespaces in the files: targetNamespace puts the objects in the test's namespace.
    let first = repo
        .commit(
            "first",
            &[
                ("a.yaml", Some(&config_map(None, "a", "one"))),
                ("b.yaml", Some(&config_map(None, "b", "one"))),
            ],
        )
        .await
        .expect("a commit")
        .hash;
    let syncs: Api<GitSync> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let spec = GitSyncSpec {
        target_namespace: Some(ns.clone()),
        renderer: RendererKind::Plain,
        ..git_spec(&repo, ".", "2s")
    };
    create(&syncs, "app", spec).await;
    let first_revision = format!("main@sha1:{first}");
    wait_for(&syncs, "app", "the first revision applied", |s| {
        is_ready_at(s, &first_revision)
    })
    .await;

    // b leaves the set in the same commit that breaks a file: nothing may be pruned.
    let broken = repo.commit("broken", &[
            ("b.yaml", None),
            (
                "c.yaml",
                Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  key: [unclosed\n"),
            ),
        ]).await.expect("a commit").hash;
    let broken_revision = format!("main@sha1:{broken}");
    let sync = wait_for(&syncs, "app", "Stalled", |s| {
        condition(s, STALLED).is_some_and(|c| c.status == "True")
    })
    .await;
    let status = sync.status.as_ref().expect("a status");
    assert_eq!(
        status.last_attempted_revision.as_deref(),
        Some(broken_revision.as_str())
    );
    assert_eq!(
        status.last_applied_revision.as_deref(),
        Some(first_revision.as_str())
    );
    let ready = condition(&sync, READY).expect("Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "BuildFailed");
    assert!(
        ready.message.contains("c.yaml:6"),
        "the message names file and line: {}",
        ready.message
    );
    assert!(
        ready.message.contains(&broken_revision),
        "{}",
        ready.message
    );
    assert!(condition(&sync, RECONCILING).is_none());
    assert_eq!(
        inventory_ids(&sync),
        [format!("{ns}_a__ConfigMap"), format!("{ns}_b__ConfigMap")],
        "the inventory still lists what was applied"
    );
    let note = wait_for_event(&client, &ns, "app", "BuildFailed").await;
    assert!(note.contains("c.yaml:6"), "{note}");
    // Several intervals pass: still stalled, and b is still there.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        value_of(&maps, "b").await.as_deref(),
        Some("one"),
        "nothing was pruned"
    );
    let sync = syncs.get("app").await.expect("read");
    assert_eq!(
        condition(&sync, STALLED).map(|c| c.status.as_str()),
        Some("True")
    );

    // A fixing commit recovers: Ready again, Stalled gone, and now b is pruned.
    let fixed = repo
        .commit(
            "fixed",
            &[("c.yaml", Some(&config_map(None, "c", "fixed")))],
        )
        .await
        .expect("a commit")
        .hash;
    let fixed_revision = format!("main@sha1:{fixed}");
    let sync = wait_for(&syncs, "app", "the fix applied", |s| {
        is_ready_at(s, &fixed_revision)
    })
    .await;
    assert!(condition(&sync, STALLED).is_none());
    assert_eq!(value_of(&maps, "b").await, None);
    assert_eq!(value_of(&maps, "c").await.as_deref(), Some("fixed"));

    // With prune off, deleting the GitSync leaves its objects.
    syncs
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"prune": false}})),
        )
        .await
        .expect("prune off");
    wait_for(&syncs, "app", "the new generation observed", |s| {
        s.status.as_ref().and_then(|st| st.observed_generation) == s.metadata.generation
            && is_ready(s)
    })
    .await;
    delete(&syncs, "app").await;
    assert_eq!(value_of(&maps, "a").await.as_deref(), Some("one"));
    assert_eq!(value_of(&maps, "c").await.as_deref(), Some("fixed"));
    controller.stop().await;
}

#[tokio::test]
async fn local_paths_apply_and_invalid_specs_stall() {
    let (client, ns) = setup("gitsync-local").await;
    let controller = RunningController::start(&client, &ns);
    let dir = local_dir(&ns, "local", "here");
    let syncs: Api<GitSync> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let local = local_spec(dir.path());
    create(&syncs, "local", local).await;
    let bad = GitSyncSpec {
        url: Some("file:///nowhere".into()),
        local_path: Some("/tmp".into()),
        interval: "1h".into(),
        ..GitSyncSpec::default()
    };
    create(&syncs, "both", bad).await;

    let sync = wait_for(&syncs, "local", "Ready", is_ready).await;
    let revision = sync
        .status
        .as_ref()
        .and_then(|s| s.last_applied_revision.clone())
        .expect("a revision");
    assert!(revision.starts_with("sha256:"), "{revision}");
    assert_eq!(value_of(&maps, "local").await.as_deref(), Some("here"));

    let sync = wait_for(&syncs, "both", "Stalled", |s| {
        condition(s, STALLED).is_some_and(|c| c.status == "True")
    })
    .await;
    let stalled = condition(&sync, STALLED).expect("Stalled");
    assert_eq!(stalled.reason, "InvalidSpec");
    assert_eq!(
        stalled.message,
        "invalid GitSync: spec: exactly one of url and localPath must be set"
    );

    // The interval is an hour: a requested reconciliation picks up a change now.
    std::fs::write(
        dir.path().join("a.yaml"),
        config_map(Some(&ns), "local", "changed"),
    )
    .expect("write");
    syncs
        .patch(
            "local",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                gitops_examples::controller::REQUESTED_AT_ANNOTATION: "now"
            }}})),
        )
        .await
        .expect("request a reconciliation");
    wait_for_value(&maps, "local", Some("changed")).await;
    wait_for(&syncs, "local", "the request acknowledged", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_handled_reconcile_at.as_deref())
            == Some("now")
    })
    .await;

    for name in ["local", "both"] {
        delete(&syncs, name).await;
    }
    assert_eq!(value_of(&maps, "local").await, None);
    controller.stop().await;
}

fn path_string(path: &Path) -> String {
    PathBuf::from(path).display().to_string()
}

/// A temporary directory holding `a.yaml`: the ConfigMap `name` in `ns` with `value`.
fn local_dir(ns: &str, name: &str, value: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("a.yaml"), config_map(Some(ns), name, value)).expect("write");
    dir
}

/// A GitSync of the local directory `dir`, polled hourly.
fn local_spec(dir: &Path) -> GitSyncSpec {
    GitSyncSpec {
        local_path: Some(path_string(dir)),
        interval: "1h".into(),
        ..GitSyncSpec::default()
    }
}

#[tokio::test]
async fn kustomize_and_helm_render_and_unhealthy_objects_are_retried() {
    let tool = |tool| async move {
        tokio::task::spawn_blocking(move || gitops_envtest::tools::ensure(tool))
            .await
            .expect("the tool task")
            .unwrap_or_else(|e| panic!("the pinned {tool:?}: {e}"))
    };
    let (kustomize, helm) = (tool(Tool::Kustomize).await, tool(Tool::Helm).await);
    let (client, ns) = setup("gitsync-tools").await;
    let controller = RunningController::start_with(&client, &ns, Some(kustomize), Some(helm));
    let syncs: Api<GitSync> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);

    // `auto` renders a directory with a kustomization with kustomize; `helm` renders a chart
    // with the GitSync's name as release name.
    let repo = GitRepository::create().await.expect("a repository");
    let head = repo.commit("kustomization and chart", &[
            (
                "base/kustomization.yaml",
                Some("resources:\n- config.yaml\nnamePrefix: k-\n"),
            ),
            ("base/config.yaml", Some(&config_map(None, "a", "kustomized"))),
            ("chart/Chart.yaml", Some("apiVersion: v2\nname: demo\nversion: 0.1.0\n")),
            ("chart/values.yaml", Some("greeting: hello\n")),
            (
                "chart/templates/config.yaml",
                Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  key: {{ .Values.greeting }}\n"),
            ),
        ]).await.expect("a commit").hash;
    let spec = GitSyncSpec {
        target_namespace: Some(ns.clone()),
        ..git_spec(&repo, "base", "1h")
    };
    create(&syncs, "kustomized", spec).await;
    let spec = GitSyncSpec {
        target_namespace: Some(ns.clone()),
        renderer: RendererKind::Helm,
        ..git_spec(&repo, "chart", "1h")
    };
    create(&syncs, "charted", spec).await;
    let revision = format!("main@sha1:{head}");
    for name in ["kustomized", "charted"] {
        wait_for(&syncs, name, "the revision applied", |s| {
            is_ready_at(s, &revision)
        })
        .await;
    }
    assert_eq!(
        value_of(&maps, "charted-config").await.as_deref(),
        Some("hello")
    );
    assert_eq!(value_of(&maps, "k-a").await.as_deref(), Some("kustomized"));

    // With `wait`, a Deployment that never becomes available (this control plane runs no
    // deployment controller) is applied but reported unhealthy, and retried.
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(
        dir.path().join("web.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: web\n        image: registry.example/web:1\n"
        ),
    )
    .expect("write");
    let spec = GitSyncSpec {
        wait: true,
        timeout: Some("2s".into()),
        ..local_spec(dir.path())
    };
    create(&syncs, "unhealthy", spec).await;
    let sync = wait_for_retry(&syncs, "unhealthy", "HealthCheckFailed").await;
    let ready = condition(&sync, READY).expect("Ready");
    assert!(
        ready.message.contains("Deployment.apps"),
        "{}",
        ready.message
    );
    assert!(ready.message.contains("web"), "{}", ready.message);
    let status = sync.status.as_ref().expect("a status");
    assert!(
        status.last_applied_revision.is_some(),
        "the revision was applied; only its health is missing"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert!(deployments.get_opt("web").await.expect("read").is_some());

    for name in ["kustomized", "charted", "unhealthy"] {
        delete(&syncs, name).await;
    }
    assert_eq!(value_of(&maps, "k-a").await, None);
    assert_eq!(value_of(&maps, "charted-config").await, None);
    assert!(deployments.get_opt("web").await.expect("read").is_none());
    controller.stop().await;
}

#[test]
fn the_binary_prints_the_crd() {
    let output = Command::new(env!("CARGO_BIN_EXE_controller"))
        .arg("crd")
        .output()
        .expect("the controller binary runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let yaml = String::from_utf8(output.stdout).expect("utf-8");
    let manifests = gitops_core::parse_manifests(&yaml, "crd.yaml").expect("valid YAML");
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0].kind(), "CustomResourceDefinition");
    assert_eq!(manifests[0].name(), "gitsyncs.examples.gitops-rs.io");
}

/// A child process, killed and reaped when dropped (also on panic).
struct ChildGuard(Option<std::process::Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn the_binary_installs_the_crd_reconciles_and_stops_on_sigterm() {
    let (client, ns) = setup("gitsync-binary").await;
    let plane = gitops_envtest::shared().await.expect("the control plane");
    let work_dir = tempfile::tempdir().expect("a temp dir");
    let log_path = work_dir.path().join("controller.log");
    let log = std::fs::File::create(&log_path).expect("a log file");
    let child = Command::new(env!("CARGO_BIN_EXE_controller"))
        .args(["run", "--install-crd", "--namespace", &ns, "--work-dir"])
        .arg(work_dir.path().join("work"))
        .env("KUBECONFIG", plane.kubeconfig_path())
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().expect("a second handle"))
        .stderr(log)
        .spawn()
        .expect("the controller binary starts");
    let mut guard = ChildGuard(Some(child));
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let dir = local_dir(&ns, "from-binary", "present");
    let syncs: Api<GitSync> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let spec = local_spec(dir.path());
    create(&syncs, "app", spec).await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while value_of(&maps, "from-binary").await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the binary did not apply; its log:\n{}",
            read_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for(&syncs, "app", "Ready", is_ready).await;
    // Delete while it runs, so that the finalizer is not left behind.
    delete(&syncs, "app").await;
    assert_eq!(value_of(&maps, "from-binary").await, None);

    let pid = guard.0.as_ref().expect("running").id().to_string();
    // The shell's built-in kill: no procps needed.
    let status = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .expect("sh runs");
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let exit = loop {
        if let Some(exit) = guard.0.as_mut().expect("running").try_wait().expect("wait") {
            break exit;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the binary did not stop on SIGTERM; its log:\n{}",
            read_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    guard.0 = None;
    assert!(exit.success(), "exit {exit:?}; log:\n{}", read_log());
    let log = read_log();
    assert!(log.contains("GitSync CRD installed"), "{log}");
    assert!(log.contains("GitSync controller stopped"), "{log}");
}

#[tokio::test]
async fn a_failed_fetch_is_retried_with_backoff_until_it_works() {
    let (client, ns) = setup("gitsync-retry").await;
    let controller = RunningController::start(&client, &ns);
    let syncs: Api<GitSync> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    // The repository does not exist yet.
    let parent = tempfile::tempdir().expect("a temp dir");
    let path = parent.path().join("late");
    let spec = GitSyncSpec {
        url: Some(format!("file://{}", path.display())),
        interval: "1h".into(),
        ..GitSyncSpec::default()
    };
    create(&syncs, "late", spec).await;
    let sync = wait_for_retry(&syncs, "late", "FetchFailed").await;
    let ready = condition(&sync, READY).expect("Ready");
    assert!(
        ready.message.starts_with("fetching file://"),
        "{}",
        ready.message
    );
    assert_eq!(
        sync.status
            .as_ref()
            .and_then(|s| s.last_attempted_revision.as_ref()),
        None
    );

    // The repository appears: a retry (backoff at most 5 s here, the interval is an hour)
    // applies it without any change to the GitSync.
    std::fs::create_dir(&path).expect("mkdir");
    let repo = GitRepository::builder()
        .in_dir(&path)
        .create()
        .await
        .expect("a repository");
    let head = repo
        .commit(
            "late",
            &[("a.yaml", Some(&config_map(Some(&ns), "late", "arrived")))],
        )
        .await
        .expect("a commit")
        .hash;
    let revision = format!("main@sha1:{head}");
    let sync = wait_for(&syncs, "late", "the retry applied", |s| {
        is_ready_at(s, &revision)
    })
    .await;
    assert!(condition(&sync, RECONCILING).is_none());
    assert_eq!(value_of(&maps, "late").await.as_deref(), Some("arrived"));

    delete(&syncs, "late").await;
    controller.stop().await;
}

/// A Secret whose value has the wrong type stalls the GitSync; the status condition and the
/// event name the file, line and key, never the value (issue #11, item 4).
#[tokio::test]
async fn a_secret_type_error_never_shows_the_value_in_status_or_events() {
    const VALUE: &str = "98765432";
    let (client, ns) = setup("gitsync-secret").await;
    let controller = RunningController::start(&client, &ns);
    let repo = GitRepository::create().await.expect("a repository");
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {VALUE}\n"
    );
    repo.commit("a secret", &[("secret.yaml", Some(&secret))])
        .await
        .expect("a commit");
    let syncs: Api<GitSync> = Api::namespaced(client.clone(), &ns);
    let spec = GitSyncSpec {
        target_namespace: Some(ns.clone()),
        renderer: RendererKind::Plain,
        ..git_spec(&repo, ".", "2s")
    };
    create(&syncs, "app", spec).await;
    let sync = wait_for(&syncs, "app", "Stalled", |s| {
        condition(s, STALLED).is_some_and(|c| c.status == "True")
    })
    .await;
    let status = format!("{:?}", sync.status);
    assert!(!status.contains(VALUE), "{status}");
    let ready = condition(&sync, READY).expect("Ready");
    assert!(
        ready.message.contains("secret.yaml:1") && ready.message.contains("stringData.password"),
        "{}",
        ready.message
    );
    let note = wait_for_event(&client, &ns, "app", "BuildFailed").await;
    assert!(note.contains("stringData.password"), "{note}");
    assert!(!note.contains(VALUE), "{note}");
    controller.stop().await;
}
