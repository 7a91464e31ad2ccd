//! The controller kit against the shared local control plane: a custom resource of the test's
//! own embeds `SyncSpec` and `SyncStatus`, and `gitops_sync::controller::run` reconciles it
//! from local directories (and from a Git URL that does not exist).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::commit;
use gitops_sync::Backoff;
use gitops_sync::controller::{
    GitRef, HelmSpec, READY, RECONCILING, REQUESTED_AT_ANNOTATION, RendererKind, RendererSpec,
    STALLED, SecretRef, SourceSpec, SyncContext, SyncResource, SyncSpec, SyncStatus, install_crd,
    run,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// How long any one expected state may take to appear.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A custom resource of the test's own: the kit's spec, flattened, and its status.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "kit.gitops-rs.io",
    version = "v1",
    kind = "AppSync",
    namespaced,
    status = "SyncStatus"
)]
pub struct AppSyncSpec {
    #[serde(flatten)]
    sync: SyncSpec,
}

impl SyncResource for AppSync {
    fn sync_spec(&self) -> &SyncSpec {
        &self.spec.sync
    }
    fn sync_status(&self) -> Option<&SyncStatus> {
        self.status.as_ref()
    }
}

/// The controller on a task, watching one namespace; cancelled when dropped (also on panic).
struct Running {
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    _work_dir: tempfile::TempDir,
}

impl Running {
    fn start(client: &kube::Client, namespace: &str) -> Self {
        Self::start_with(client, namespace, None)
    }

    /// With the pinned kustomize and helm when `tools` has them.
    fn start_with(
        client: &kube::Client,
        namespace: &str,
        tools: Option<(PathBuf, PathBuf)>,
    ) -> Self {
        let work_dir = tempfile::tempdir().expect("a temp dir");
        let cancel = CancellationToken::new();
        let mut builder = SyncContext::builder(client.clone(), work_dir.path())
            .field_manager("kit-tests")
            .backoff(Backoff::new(
                Duration::from_millis(500),
                Duration::from_secs(5),
            ));
        if let Some((kustomize, helm)) = tools {
            builder = builder.kustomize_binary(kustomize).helm_binary(helm);
        }
        let context = builder.build();
        let api: Api<AppSync> = Api::namespaced(client.clone(), namespace);
        let task = tokio::spawn(run(api, context, cancel.clone()));
        Self {
            cancel,
            task: Some(task),
            _work_dir: work_dir,
        }
    }

    /// The controller's work directory (Git caches and artifacts).
    fn work_dir(&self) -> &Path {
        self._work_dir.path()
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

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn setup(prefix: &str) -> (kube::Client, String) {
    let plane = gitops_envtest::shared().await.expect("the control plane");
    let client = plane.client().await.expect("a client");
    install_crd(
        &client,
        &AppSync::crd(),
        "kit-tests",
        TIMEOUT,
        &CancellationToken::new(),
    )
    .await
    .expect("the CRD installs");
    let namespace = plane.create_namespace(prefix).await.expect("a namespace");
    (client, namespace)
}

fn config_map(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: {value}\n")
}

fn write(dir: &Path, file: &str, text: Option<&str>) {
    let path = dir.join(file);
    match text {
        Some(text) => std::fs::write(path, text).expect("a file"),
        None => std::fs::remove_file(path).expect("a removal"),
    }
}

fn local_spec(dir: &Path, namespace: &str, interval: &str) -> SyncSpec {
    SyncSpec {
        source: SourceSpec {
            local_path: Some(dir.to_str().expect("a UTF-8 path").to_owned()),
            ..SourceSpec::default()
        },
        interval: interval.to_owned(),
        target_namespace: Some(namespace.to_owned()),
        ..SyncSpec::default()
    }
}

async fn create(api: &Api<AppSync>, name: &str, spec: SyncSpec) {
    api.create(
        &PostParams::default(),
        &AppSync::new(name, AppSyncSpec { sync: spec }),
    )
    .await
    .expect("the AppSync is created");
}

/// Polls the object until `check` holds; panics with its last state after [`TIMEOUT`].
async fn wait_for(
    api: &Api<AppSync>,
    name: &str,
    what: &str,
    check: impl Fn(&AppSync) -> bool,
) -> AppSync {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let object = api.get(name).await.expect("the AppSync can be read");
        if check(&object) {
            return object;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; status: {:#?}",
            object.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn status(object: &AppSync) -> SyncStatus {
    object.status.clone().unwrap_or_default()
}

fn is_ready(object: &AppSync) -> bool {
    status(object).is_ready() && status(object).observed_generation == object.metadata.generation
}

async fn value_of(api: &Api<ConfigMap>, name: &str) -> Option<String> {
    api.get_opt(name)
        .await
        .expect("the ConfigMap can be read")
        .and_then(|map| map.data?.get("key").cloned())
}

async fn wait_for_value(api: &Api<ConfigMap>, name: &str, expected: Option<&str>) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let value = value_of(api, name).await;
        if value.as_deref() == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} is {value:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn delete_and_wait(api: &Api<AppSync>, name: &str) {
    api.delete(name, &DeleteParams::default())
        .await
        .expect("the AppSync is deleted");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while let Some(object) = api.get_opt(name).await.expect("a read") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} still exists: finalizers {:?}, status {:#?}",
            object.finalizers(),
            object.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The note of the first Event about the AppSync `name` with `reason`, waited for.
async fn wait_for_event(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    reason: &str,
) -> String {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let list = events
            .list(&kube::api::ListParams::default())
            .await
            .expect("events can be listed");
        let found = list.items.into_iter().find(|event| {
            event.reason.as_deref() == Some(reason)
                && event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && event.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("AppSync")
        });
        if let Some(event) = found {
            return event.note.unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {reason} event about {name}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn inventory_ids(object: &AppSync) -> Vec<String> {
    status(object)
        .inventory
        .map(|inventory| inventory.entries.into_iter().map(|e| e.id).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn applies_reports_status_corrects_drift_prunes_and_finalizes() {
    let (client, ns) = setup("kit-apply").await;
    let controller = Running::start(&client, &ns);
    let dir = tempfile::tempdir().expect("a temp dir");
    write(dir.path(), "a.yaml", Some(&config_map("a", "one")));
    write(dir.path(), "b.yaml", Some(&config_map("b", "one")));
    let syncs: Api<AppSync> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    create(&syncs, "app", local_spec(dir.path(), &ns, "2s")).await;

    let object = wait_for(&syncs, "app", "Ready", is_ready).await;
    let first = status(&object);
    let revision = first.last_applied_revision.clone().expect("a revision");
    assert_eq!(
        first.last_attempted_revision.as_deref(),
        Some(revision.as_str())
    );
    let ready = first.condition(READY).expect("Ready");
    assert_eq!(ready.reason, "ReconciliationSucceeded");
    assert_eq!(ready.message, format!("Applied revision: {revision}"));
    assert_eq!(ready.observed_generation, object.metadata.generation);
    assert!(first.condition(RECONCILING).is_none() && first.condition(STALLED).is_none());
    assert_eq!(
        inventory_ids(&object),
        [format!("{ns}_a__ConfigMap"), format!("{ns}_b__ConfigMap")]
    );
    assert!(
        object
            .finalizers()
            .iter()
            .any(|f| f == gitops_sync::controller::DEFAULT_FINALIZER)
    );
    assert_eq!(value_of(&maps, "a").await.as_deref(), Some("one"));
    assert_eq!(value_of(&maps, "b").await.as_deref(), Some("one"));
    let note = wait_for_event(&client, &ns, "app", "ReconciliationSucceeded").await;
    assert_eq!(note, format!("Applied revision: {revision} (2 created)"));

    // A new revision: a changes, b leaves the set and is pruned.
    write(dir.path(), "a.yaml", Some(&config_map("a", "two")));
    write(dir.path(), "b.yaml", None);
    let object = wait_for(&syncs, "app", "the new revision", |o| {
        is_ready(o) && status(o).last_applied_revision.as_deref() != Some(revision.as_str())
    })
    .await;
    assert_eq!(inventory_ids(&object), [format!("{ns}_a__ConfigMap")]);
    assert_eq!(value_of(&maps, "a").await.as_deref(), Some("two"));
    assert_eq!(value_of(&maps, "b").await, None, "b was pruned");

    // Drift: a change made by hand is reverted at the next interval, and that cycle, which
    // changes no revision, writes nothing to the object (its status stays as it was).
    let before = syncs.get("app").await.expect("a read").resource_version();
    maps.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"key": "by-hand"}})),
    )
    .await
    .expect("a manual change");
    wait_for_value(&maps, "a", Some("two")).await;
    let after = syncs.get("app").await.expect("a read").resource_version();
    assert_eq!(before, after, "a steady cycle wrote to the object");

    // Deleting the object prunes its objects through the finalizer.
    delete_and_wait(&syncs, "app").await;
    assert_eq!(value_of(&maps, "a").await, None, "a was pruned on delete");
    controller.stop().await;
}

#[tokio::test]
async fn requested_at_asks_for_a_sync_now_and_a_steady_sync_writes_only_its_status() {
    let (client, ns) = setup("kit-requested").await;
    // The controller's requests are counted (and logged).
    let counter = gitops_apply::RequestCounter::with_log();
    let counted = gitops_apply::counting_client(&client, &counter);
    let controller = Running::start(&counted, &ns);
    let dir = tempfile::tempdir().expect("a temp dir");
    write(dir.path(), "a.yaml", Some(&config_map("a", "one")));
    let syncs: Api<AppSync> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    // An interval far beyond the test: only the request can bring the next sync.
    create(&syncs, "app", local_spec(dir.path(), &ns, "1h")).await;
    wait_for(&syncs, "app", "Ready", is_ready).await;

    // A steady sync asked for now: nothing to apply, so its only write is the status that
    // records the request handled.
    let before = counter.requests().len();
    syncs
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {REQUESTED_AT_ANNOTATION: "2026-11-29T11:00:00Z"}}
            })),
        )
        .await
        .expect("the annotation");
    wait_for(&syncs, "app", "the first request handled", |o| {
        status(o).last_handled_reconcile_at.as_deref() == Some("2026-11-29T11:00:00Z")
    })
    .await;
    let requests = counter.requests()[before..].to_vec();
    let writes: Vec<String> = requests
        .iter()
        .filter(|r| r.kind.is_write())
        .map(ToString::to_string)
        .collect();
    println!("a steady requested sync: {} requests:", requests.len());
    for request in &requests {
        println!("  {request}");
    }
    assert_eq!(
        writes,
        [format!(
            "PATCH /apis/kit.gitops-rs.io/v1/namespaces/{ns}/appsyncs/app/status"
        )]
    );

    // Drift made by hand and a new request: corrected at once, though the interval is far.
    maps.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"key": "by-hand"}})),
    )
    .await
    .expect("a manual change");
    syncs
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {REQUESTED_AT_ANNOTATION: "2026-11-29T12:00:00Z"}}
            })),
        )
        .await
        .expect("the annotation");
    let object = wait_for(&syncs, "app", "the request handled", |o| {
        status(o).last_handled_reconcile_at.as_deref() == Some("2026-11-29T12:00:00Z")
    })
    .await;
    assert!(status(&object).is_ready());
    assert_eq!(
        value_of(&maps, "a").await.as_deref(),
        Some("one"),
        "drift corrected by the request"
    );
    delete_and_wait(&syncs, "app").await;
    controller.stop().await;
}

#[tokio::test]
async fn a_malformed_manifest_stalls_naming_file_and_line_and_prunes_nothing() {
    let (client, ns) = setup("kit-stall").await;
    let controller = Running::start(&client, &ns);
    let dir = tempfile::tempdir().expect("a temp dir");
    write(dir.path(), "a.yaml", Some(&config_map("a", "one")));
    write(dir.path(), "b.yaml", Some(&config_map("b", "one")));
    let syncs: Api<AppSync> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    create(&syncs, "app", local_spec(dir.path(), &ns, "2s")).await;
    let object = wait_for(&syncs, "app", "Ready", is_ready).await;
    let good = status(&object).last_applied_revision.expect("a revision");

    // b leaves and a breaks: the set does not render, so nothing is pruned.
    write(dir.path(), "b.yaml", None);
    write(
        dir.path(),
        "a.yaml",
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: [\n"),
    );
    let object = wait_for(&syncs, "app", "Stalled", |o| {
        status(o)
            .condition(STALLED)
            .is_some_and(|c| c.status == "True")
    })
    .await;
    let stalled = status(&object);
    let ready = stalled.condition(READY).expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "BuildFailed")
    );
    assert!(ready.message.contains("a.yaml:3"), "{}", ready.message);
    assert!(stalled.condition(RECONCILING).is_none());
    assert_eq!(
        stalled.last_applied_revision.as_deref(),
        Some(good.as_str())
    );
    assert_ne!(
        stalled.last_attempted_revision.as_deref(),
        Some(good.as_str())
    );
    assert_eq!(
        value_of(&maps, "b").await.as_deref(),
        Some("one"),
        "nothing pruned"
    );

    // Fixed: Ready again, and now b is pruned.
    write(dir.path(), "a.yaml", Some(&config_map("a", "three")));
    wait_for(&syncs, "app", "Ready again", |o| {
        is_ready(o) && status(o).condition(STALLED).is_none()
    })
    .await;
    assert_eq!(value_of(&maps, "a").await.as_deref(), Some("three"));
    assert_eq!(value_of(&maps, "b").await, None);
    delete_and_wait(&syncs, "app").await;
    controller.stop().await;
}

#[tokio::test]
async fn invalid_specs_and_missing_tools_stall_and_failed_fetches_are_retried() {
    let (client, ns) = setup("kit-failures").await;
    let controller = Running::start(&client, &ns);
    let syncs: Api<AppSync> = Api::namespaced(client.clone(), &ns);
    let dir = tempfile::tempdir().expect("a temp dir");

    let mut both = local_spec(dir.path(), &ns, "1m");
    both.source.url = Some("file:///nowhere".into());
    create(&syncs, "both", both).await;
    let object = wait_for(&syncs, "both", "Stalled", |o| {
        status(o).condition(STALLED).is_some()
    })
    .await;
    let ready = status(&object).condition(READY).cloned().expect("Ready");
    assert_eq!(ready.reason, "InvalidSpec");
    assert_eq!(
        ready.message,
        "invalid spec: spec.source: exactly one of url and localPath must be set"
    );

    let mut kustomize = local_spec(dir.path(), &ns, "1m");
    kustomize.renderer.kind = RendererKind::Kustomize;
    create(&syncs, "kustomize", kustomize).await;
    let object = wait_for(&syncs, "kustomize", "Stalled", |o| {
        status(o).condition(STALLED).is_some()
    })
    .await;
    let ready = status(&object).condition(READY).cloned().expect("Ready");
    assert_eq!(ready.reason, "BuildFailed");
    assert!(
        ready.message.contains("needs the kustomize binary"),
        "{}",
        ready.message
    );

    let missing = tempfile::tempdir().expect("a temp dir");
    let gone = missing.path().join("gone.git");
    let spec = SyncSpec {
        source: SourceSpec {
            url: Some(format!("file://{}", gone.display())),
            ..SourceSpec::default()
        },
        interval: "1h".into(),
        ..SyncSpec::default()
    };
    create(&syncs, "fetch", spec).await;
    let object = wait_for(&syncs, "fetch", "retrying", |o| {
        status(o)
            .condition(RECONCILING)
            .is_some_and(|c| c.reason == "ProgressingWithRetry")
    })
    .await;
    let failed = status(&object);
    assert_eq!(
        failed.condition(READY).expect("Ready").reason,
        "FetchFailed"
    );
    assert!(failed.condition(STALLED).is_none());
    // A Secret that is not there is retried (it may be created); one whose keys make no
    // credentials stalls, without showing its values.
    let secret_spec = |secret: &str| SyncSpec {
        source: SourceSpec {
            url: Some(format!("file://{}", gone.display())),
            secret_ref: Some(SecretRef {
                name: secret.to_owned(),
            }),
            ..SourceSpec::default()
        },
        interval: "1h".into(),
        ..SyncSpec::default()
    };
    create(&syncs, "no-secret", secret_spec("absent")).await;
    let object = wait_for(&syncs, "no-secret", "retrying", |o| {
        status(o)
            .condition(READY)
            .is_some_and(|c| c.reason == "AuthenticationFailed")
    })
    .await;
    assert!(status(&object).condition(RECONCILING).is_some());
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let half: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "half"},
        "stringData": {"password": "s3cr3t-value"},
    }))
    .expect("a Secret");
    secrets
        .create(&PostParams::default(), &half)
        .await
        .expect("the Secret is created");
    create(&syncs, "half-secret", secret_spec("half")).await;
    let object = wait_for(&syncs, "half-secret", "Stalled", |o| {
        status(o).condition(STALLED).is_some()
    })
    .await;
    let text = format!("{:?}", object.status);
    assert!(
        text.contains("username and password come together"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t-value"), "{text}");
    for name in ["both", "kustomize", "fetch", "no-secret", "half-secret"] {
        delete_and_wait(&syncs, name).await;
    }
    controller.stop().await;
}

#[tokio::test]
async fn git_sources_render_with_kustomize_and_helm_and_unhealthy_objects_are_retried() {
    let tool = |tool| async move {
        tokio::task::spawn_blocking(move || gitops_envtest::tools::ensure(tool))
            .await
            .expect("the tool task")
            .unwrap_or_else(|e| panic!("the pinned {tool:?}: {e}"))
    };
    let tools = (
        tool(gitops_envtest::tools::Tool::Kustomize).await,
        tool(gitops_envtest::tools::Tool::Helm).await,
    );
    let (client, ns) = setup("kit-tools").await;
    let controller = Running::start_with(&client, &ns, Some(tools));
    let syncs: Api<AppSync> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);

    // `auto` renders a kustomization with kustomize; `helm` renders a chart, the object's name
    // as release name, with inline values and a substituted variable.
    let repo = tempfile::tempdir().expect("a temp dir");
    let head = commit(
        repo.path(),
        &[
            (
                "base/kustomization.yaml",
                "resources:\n- config.yaml\nnamePrefix: k-\n",
            ),
            ("base/config.yaml", &config_map("a", "kustomized")),
            (
                "chart/Chart.yaml",
                "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
            ),
            ("chart/values.yaml", "greeting: hello\n"),
            (
                "chart/templates/config.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  key: {{ .Values.greeting }}\n  env: ${ENV}\n",
            ),
        ],
    );
    let git_spec = |path: &str| SyncSpec {
        source: SourceSpec {
            url: Some(format!("file://{}", repo.path().display())),
            reference: Some(GitRef {
                branch: Some("main".into()),
                ..GitRef::default()
            }),
            ..SourceSpec::default()
        },
        path: path.to_owned(),
        interval: "1h".into(),
        target_namespace: Some(ns.clone()),
        ..SyncSpec::default()
    };
    create(&syncs, "kustomized", git_spec("base")).await;
    let mut helm = git_spec("chart");
    helm.renderer = RendererSpec {
        kind: RendererKind::Helm,
        helm: Some(HelmSpec {
            values: Some(serde_json::json!({"greeting": "bonjour"})),
            ..HelmSpec::default()
        }),
    };
    helm.substitute.insert("ENV".into(), "prod".into());
    create(&syncs, "charted", helm).await;
    let revision = format!("main@sha1:{head}");
    for name in ["kustomized", "charted"] {
        wait_for(&syncs, name, "the revision applied", |o| {
            is_ready(o) && status(o).last_applied_revision.as_deref() == Some(revision.as_str())
        })
        .await;
    }
    assert_eq!(value_of(&maps, "k-a").await.as_deref(), Some("kustomized"));
    assert_eq!(
        value_of(&maps, "charted-config").await.as_deref(),
        Some("bonjour")
    );
    let env = maps
        .get("charted-config")
        .await
        .expect("read")
        .data
        .unwrap_or_default();
    assert_eq!(env.get("env").map(String::as_str), Some("prod"));

    // With `wait`, a Deployment that never becomes available (this control plane runs no
    // deployment controller) is applied but reported unhealthy, and retried.
    let dir = tempfile::tempdir().expect("a temp dir");
    write(
        dir.path(),
        "web.yaml",
        Some(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: registry.example/web:1\n",
        ),
    );
    let unhealthy = SyncSpec {
        wait: true,
        timeout: Some("2s".into()),
        ..local_spec(dir.path(), &ns, "1h")
    };
    create(&syncs, "unhealthy", unhealthy).await;
    let object = wait_for(&syncs, "unhealthy", "HealthCheckFailed, retried", |o| {
        status(o)
            .condition(READY)
            .is_some_and(|c| c.reason == "HealthCheckFailed")
            && status(o).condition(RECONCILING).is_some()
    })
    .await;
    let failed = status(&object);
    let message = &failed.condition(READY).expect("Ready").message;
    assert!(message.contains("web"), "{message}");
    assert!(
        failed.last_applied_revision.is_some(),
        "the revision was applied; only its health is missing"
    );

    for name in ["kustomized", "charted", "unhealthy"] {
        delete_and_wait(&syncs, name).await;
    }
    assert_eq!(value_of(&maps, "k-a").await, None);
    assert_eq!(value_of(&maps, "charted-config").await, None);
    controller.stop().await;
}

#[tokio::test]
async fn a_secret_type_error_never_shows_the_value_in_the_status() {
    const VALUE: &str = "98765432";
    let (client, ns) = setup("kit-secret").await;
    let controller = Running::start(&client, &ns);
    let dir = tempfile::tempdir().expect("a temp dir");
    write(
        dir.path(),
        "secret.yaml",
        Some(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {VALUE}\n"
        )),
    );
    let syncs: Api<AppSync> = Api::namespaced(client.clone(), &ns);
    create(&syncs, "app", local_spec(dir.path(), &ns, "2s")).await;
    let object = wait_for(&syncs, "app", "Stalled", |o| {
        status(o)
            .condition(STALLED)
            .is_some_and(|c| c.status == "True")
    })
    .await;
    let text = format!("{:?}", object.status);
    assert!(!text.contains(VALUE), "{text}");
    let note = wait_for_event(&client, &ns, "app", "BuildFailed").await;
    assert!(
        note.contains("stringData.password") && !note.contains(VALUE),
        "{note}"
    );
    let message = &status(&object)
        .condition(READY)
        .expect("Ready")
        .message
        .clone();
    assert!(
        message.contains("secret.yaml:1") && message.contains("stringData.password"),
        "{message}"
    );
    delete_and_wait(&syncs, "app").await;
    controller.stop().await;
}

/// Issue #17: a spec with `sparse` is fetched sparse by the controller: the artifact holds the
/// path and the base its kustomization references, not the rest of the repository.
#[tokio::test]
async fn a_sparse_spec_fetches_only_its_path_and_what_it_references() {
    let kustomize = tokio::task::spawn_blocking(|| {
        gitops_envtest::tools::ensure(gitops_envtest::tools::Tool::Kustomize)
    })
    .await
    .expect("the tool task")
    .expect("the pinned kustomize");
    let (client, ns) = setup("kit-sparse").await;
    let controller = Running::start_with(&client, &ns, Some((kustomize, PathBuf::from("helm"))));
    let syncs: Api<AppSync> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let repo = tempfile::tempdir().expect("a temp dir");
    let head = commit(
        repo.path(),
        &[
            (
                "apps/prod/kustomization.yaml",
                "resources:\n- ../../base\nnamePrefix: p-\n",
            ),
            ("base/kustomization.yaml", "resources:\n- config.yaml\n"),
            ("base/config.yaml", &config_map("a", "sparse")),
            ("other/unrelated.yaml", &config_map("other", "x")),
        ],
    );
    let spec = SyncSpec {
        source: SourceSpec {
            url: Some(format!("file://{}", repo.path().display())),
            ..SourceSpec::default()
        },
        path: "apps/prod".into(),
        interval: "1h".into(),
        renderer: RendererSpec {
            kind: RendererKind::Kustomize,
            helm: None,
        },
        target_namespace: Some(ns.clone()),
        sparse: true,
        ..SyncSpec::default()
    };
    create(&syncs, "sparse", spec).await;
    let revision = format!("main@sha1:{head}");
    wait_for(&syncs, "sparse", "the revision applied", |o| {
        is_ready(o) && status(o).last_applied_revision.as_deref() == Some(revision.as_str())
    })
    .await;
    assert_eq!(value_of(&maps, "p-a").await.as_deref(), Some("sparse"));
    let mut files = Vec::new();
    let mut pending = vec![controller.work_dir().to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("a directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path.display().to_string());
            }
        }
    }
    assert!(
        files.iter().any(|f| f.ends_with("/base/config.yaml")),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.ends_with("/other/unrelated.yaml")),
        "{files:?}"
    );
    delete_and_wait(&syncs, "sparse").await;
    controller.stop().await;
}
