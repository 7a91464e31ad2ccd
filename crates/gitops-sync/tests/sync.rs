//! The sync cycle and the reconcile loop against the shared local control plane
//! (gitops-envtest), with local directories, a Git URL nobody answers on, and a source and a
//! renderer written here.

mod common;

use common::commit;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitops_apply::{
    Applier, ApplyOptions, ConfigMapInventory, OWNER_NAME_LABEL, ObjectAction, TakeoverManager,
};
use gitops_core::Manifest;
use gitops_render::{PlainRenderer, RenderError, RenderRequest, Renderer};
use gitops_source::{
    Artifact, FetchOutcome, FetchRequest, GitSource, LocalDirectorySource, Revision, Source,
    SourceError,
};
use gitops_sync::{
    Backoff, ErrorClass, Reconciler, SyncError, SyncProgress, SyncReport, SyncUnit,
    SyncUnitBuilder, WaitPolicy,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn config_map(name: &str, colour: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  colour: {colour}\n"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
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

fn applier(client: &kube::Client, namespace: &str, inventory: &str) -> Applier {
    Applier::builder(
        client.clone(),
        ConfigMapInventory::new(namespace, inventory).unwrap(),
    )
    .build()
}

/// A unit over `source`, rendering plain YAML into `namespace`, its inventory `inventory` there.
fn unit(
    client: &kube::Client,
    namespace: &str,
    inventory: &str,
    source: impl Source + 'static,
) -> SyncUnitBuilder {
    SyncUnit::builder(
        source,
        PlainRenderer::new(),
        applier(client, namespace, inventory),
    )
    .name(inventory)
    .apply_options(
        ApplyOptions::default()
            .with_takeover(TakeoverManager::defaults())
            .with_target_namespace(namespace.to_owned()),
    )
}

async fn sync(unit: &mut SyncUnit) -> SyncReport {
    match unit.sync(&CancellationToken::new()).await {
        Ok(report) => report,
        Err(error) => panic!("sync failed: {}", error.chain()),
    }
}

fn action(report: &SyncReport, name: &str) -> ObjectAction {
    report
        .change_set
        .changes
        .iter()
        .find(|c| c.id.kind == "ConfigMap" && c.id.name == name)
        .unwrap_or_else(|| panic!("ConfigMap {name} not in {}", report.change_set))
        .action
}

async fn live(client: &kube::Client, namespace: &str, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .unwrap()
}

async fn colour_of(client: &kube::Client, namespace: &str, name: &str) -> Option<String> {
    live(client, namespace, name)
        .await
        .map(|cm| cm.data.unwrap_or_default()["colour"].clone())
}

#[tokio::test]
async fn applies_then_writes_nothing_corrects_drift_and_prunes() {
    let (client, namespace) = setup("sync-cycle").await;
    let repo = tempfile::tempdir().unwrap();
    write(repo.path(), "a.yaml", &config_map("a", "blue"));
    write(repo.path(), "b.yaml", &config_map("b", "green"));
    let mut unit = unit(
        &client,
        &namespace,
        "inventory",
        LocalDirectorySource::new(repo.path()),
    )
    .build()
    .unwrap();

    let first = sync(&mut unit).await;
    assert!(first.new_revision && !first.served_last_good);
    assert_eq!(action(&first, "a"), ObjectAction::Created);
    assert_eq!(action(&first, "b"), ObjectAction::Created);
    assert_eq!(
        colour_of(&client, &namespace, "a").await.as_deref(),
        Some("blue")
    );

    // Nothing changed: the same artifact, no write.
    let steady = sync(&mut unit).await;
    assert!(!steady.new_revision && !steady.changed(), "{steady}");
    assert_eq!(steady.change_set.request_counts.writes, 0, "{steady}");
    assert_eq!(steady.revision, first.revision);
    assert_eq!(unit.artifact_store().artifacts().count(), 1);
    eprintln!(
        "steady cycle: {} requests ({}), {:?} in all, {:?} fetching",
        steady.change_set.requests,
        steady.change_set.request_counts,
        steady.timings.total,
        steady.timings.fetch
    );

    // A hand edit is drift: corrected on the next cycle, with no new revision.
    Api::<ConfigMap>::namespaced(client.clone(), &namespace)
        .patch(
            "a",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(serde_json::json!({"data": {"colour": "purple"}})),
        )
        .await
        .unwrap();
    let corrected = sync(&mut unit).await;
    assert!(!corrected.new_revision);
    assert_eq!(action(&corrected, "a"), ObjectAction::Configured);
    assert_eq!(
        colour_of(&client, &namespace, "a").await.as_deref(),
        Some("blue")
    );

    // A file removed from the source: its object is pruned.
    std::fs::remove_file(repo.path().join("b.yaml")).unwrap();
    let pruned = sync(&mut unit).await;
    assert!(pruned.new_revision);
    assert_eq!(action(&pruned, "b"), ObjectAction::Pruned);
    assert!(live(&client, &namespace, "b").await.is_none());
    assert!(live(&client, &namespace, "a").await.is_some());
}

#[tokio::test]
async fn a_broken_revision_serves_the_last_good_set_without_pruning() {
    let (client, namespace) = setup("sync-broken").await;
    let repo = tempfile::tempdir().unwrap();
    write(repo.path(), "a.yaml", &config_map("a", "blue"));
    write(repo.path(), "b.yaml", &config_map("b", "green"));
    let renders = Arc::new(Mutex::new(0_usize));
    let counter = Arc::clone(&renders);
    let mut unit = unit(
        &client,
        &namespace,
        "inventory",
        LocalDirectorySource::new(repo.path()),
    )
    .progress(move |step| {
        if matches!(step, SyncProgress::Rendering { .. }) {
            *counter.lock().unwrap() += 1;
        }
    })
    .build()
    .unwrap();
    let good = sync(&mut unit).await;

    // A commit that removes b and breaks a file: b would be pruned if the set were trusted.
    std::fs::remove_file(repo.path().join("b.yaml")).unwrap();
    write(repo.path(), "broken.yaml", "kind: ConfigMap\nmetadata: [\n");
    // Drift too, so that serving the last good set is seen to apply.
    Api::<ConfigMap>::namespaced(client.clone(), &namespace)
        .patch(
            "a",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(serde_json::json!({"data": {"colour": "purple"}})),
        )
        .await
        .unwrap();
    let error = unit.sync(&CancellationToken::new()).await.unwrap_err();
    assert!(
        matches!(error, SyncError::Render { .. }),
        "{}",
        error.chain()
    );
    assert_eq!(error.class(), ErrorClass::Stalled);
    assert!(error.chain().contains("broken.yaml"), "{}", error.chain());
    let served = error.served().expect("the last good set was served");
    assert!(served.served_last_good);
    assert_eq!(served.revision, good.revision);
    assert_eq!(served.change_set.count(ObjectAction::Pruned), 0);
    assert_eq!(action(served, "a"), ObjectAction::Configured);
    assert!(live(&client, &namespace, "b").await.is_some(), "b pruned");
    assert_eq!(
        colour_of(&client, &namespace, "a").await.as_deref(),
        Some("blue")
    );
    assert_eq!(unit.last_good_revision(), Some(&good.revision));

    // The same broken revision fails the same way (a loop retries it at the interval, not
    // with backoff), and the last good set is served again, from memory (not rendered again).
    let again = unit.sync(&CancellationToken::new()).await.unwrap_err();
    assert_eq!(again.class(), ErrorClass::Stalled);
    let served = again.served().expect("served again");
    assert_eq!(served.change_set.count(ObjectAction::Pruned), 0);
    assert!(live(&client, &namespace, "b").await.is_some(), "b pruned");
    assert_eq!(
        *renders.lock().unwrap(),
        3,
        "the good render, the broken one twice"
    );

    // Fixed: the current revision renders, and now b is pruned.
    std::fs::remove_file(repo.path().join("broken.yaml")).unwrap();
    let fixed = sync(&mut unit).await;
    assert!(!fixed.served_last_good);
    assert_eq!(action(&fixed, "b"), ObjectAction::Pruned);
    assert!(live(&client, &namespace, "b").await.is_none());
}

/// What the tests keep of a cycle.
#[derive(Debug)]
struct Seen {
    class: Option<ErrorClass>,
    failures: u32,
    next_in: Duration,
    triggered: bool,
    actions: BTreeMap<String, ObjectAction>,
}

/// Runs `reconciler` in a task, sending what each cycle did to the returned channel.
fn spawn(
    reconciler: Reconciler,
    cancel: &CancellationToken,
) -> (
    mpsc::UnboundedReceiver<Seen>,
    tokio::task::JoinHandle<SyncUnit>,
) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let cancel = cancel.clone();
    let task = tokio::spawn(async move {
        reconciler
            .run(&cancel, move |event| {
                let actions = match event.result {
                    Ok(report) => report
                        .change_set
                        .changes
                        .iter()
                        .map(|c| (c.id.name.clone(), c.action))
                        .collect(),
                    Err(_) => BTreeMap::new(),
                };
                let _ = sender.send(Seen {
                    class: event.class,
                    failures: event.failures,
                    next_in: event.next_in,
                    triggered: event.triggered,
                    actions,
                });
            })
            .await
    });
    (receiver, task)
}

async fn next(receiver: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(120), receiver.recv())
        .await
        .expect("a cycle within two minutes")
        .expect("the reconciler is running")
}

#[tokio::test]
async fn a_failed_fetch_backs_off_exponentially() {
    let (client, namespace) = setup("sync-backoff").await;
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = tempfile::tempdir().unwrap();
    let source = GitSource::builder(format!("git://127.0.0.1:{port}/repo.git"), cache.path())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let unit = unit(&client, &namespace, "inventory", source)
        .build()
        .unwrap();
    let cancel = CancellationToken::new();
    let reconciler = Reconciler::new(unit, Duration::from_secs(3600)).backoff(Backoff::new(
        Duration::from_millis(50),
        Duration::from_millis(200),
    ));
    let (mut receiver, task) = spawn(reconciler, &cancel);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next(&mut receiver).await);
    }
    cancel.cancel();
    let unit = task.await.unwrap();
    assert!(unit.applied_revision().is_none());
    let classes: Vec<_> = seen.iter().map(|s| s.class).collect();
    assert_eq!(classes, [Some(ErrorClass::Transient); 4]);
    let delays: Vec<_> = seen.iter().map(|s| s.next_in).collect();
    assert_eq!(delays, [50, 100, 200, 200].map(Duration::from_millis));
    let failures: Vec<_> = seen.iter().map(|s| s.failures).collect();
    assert_eq!(failures, [1, 2, 3, 4]);
    // Nothing was applied, so no inventory was made.
    assert!(live(&client, &namespace, "inventory").await.is_none());
}

#[tokio::test]
async fn a_trigger_asks_for_a_sync_now() {
    let (client, namespace) = setup("sync-trigger").await;
    let repo = tempfile::tempdir().unwrap();
    write(repo.path(), "a.yaml", &config_map("a", "blue"));
    let unit = unit(
        &client,
        &namespace,
        "inventory",
        LocalDirectorySource::new(repo.path()),
    )
    .build()
    .unwrap();
    let cancel = CancellationToken::new();
    // An hour between cycles: only the trigger can start the second one within the test.
    let reconciler = Reconciler::new(unit, Duration::from_secs(3600)).jitter(0.1);
    let trigger = reconciler.trigger();
    let (mut receiver, task) = spawn(reconciler, &cancel);
    let first = next(&mut receiver).await;
    assert_eq!(first.class, None);
    assert!(!first.triggered);
    assert_eq!(first.actions["a"], ObjectAction::Created);
    assert!(first.next_in >= Duration::from_secs(3600));

    write(repo.path(), "c.yaml", &config_map("c", "red"));
    let webhook = trigger.clone();
    tokio::spawn(async move {
        webhook.sync_now();
        webhook.sync_now();
    })
    .await
    .unwrap();
    let second = next(&mut receiver).await;
    assert!(second.triggered);
    assert_eq!(second.actions["c"], ObjectAction::Created);
    assert_eq!(second.actions["a"], ObjectAction::Unchanged);
    assert!(live(&client, &namespace, "c").await.is_some());
    cancel.cancel();
    task.await.unwrap();
    // Two asks made one sync.
    assert!(receiver.recv().await.is_none());
}

/// A source written outside the library: files kept in memory, a revision per version.
#[derive(Clone, Default)]
struct MemorySource {
    state: Arc<Mutex<(u64, BTreeMap<String, String>)>>,
}

impl MemorySource {
    fn set(&self, file: &str, text: Option<&str>) {
        let mut state = self.state.lock().unwrap();
        state.0 += 1;
        match text {
            Some(text) => state.1.insert(file.to_owned(), text.to_owned()),
            None => state.1.remove(file),
        };
    }
}

#[async_trait::async_trait]
impl Source for MemorySource {
    fn location(&self) -> String {
        "memory".to_owned()
    }

    async fn fetch(&self, request: FetchRequest) -> Result<FetchOutcome, SourceError> {
        let (version, files) = self.state.lock().unwrap().clone();
        let revision = Revision::from_string(format!("memory:{version}"));
        if request.last_revision() == Some(&revision) {
            return Ok(FetchOutcome::Unchanged(revision));
        }
        let other = |error: std::io::Error| SourceError::Other {
            location: "memory".into(),
            message: "writing the artifact".into(),
            source: Some(error.into()),
        };
        std::fs::create_dir_all(request.destination()).map_err(other)?;
        for (file, text) in &files {
            std::fs::write(request.destination().join(file), text).map_err(other)?;
        }
        Ok(FetchOutcome::Fetched(Artifact::from_dir(
            revision,
            request.destination(),
        )?))
    }
}

/// A renderer written outside the library: each line `name=colour` of `colours.txt` is a
/// ConfigMap.
struct ColourRenderer;

#[async_trait::async_trait]
impl Renderer for ColourRenderer {
    async fn render(&self, request: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        let error = |message: String| RenderError::Other {
            renderer: "colours".into(),
            source: message.into(),
        };
        let file = request.resolve_dir()?.join("colours.txt");
        let text = std::fs::read_to_string(&file).map_err(|e| error(e.to_string()))?;
        let mut manifests = Vec::new();
        for (line, entry) in text.lines().enumerate() {
            let Some((name, colour)) = entry.split_once('=') else {
                return Err(error(format!("colours.txt:{}: not name=colour", line + 1)));
            };
            manifests.extend(
                gitops_core::parse_manifests(&config_map(name, colour), "colours.txt")
                    .map_err(|e| error(e.to_string()))?,
            );
        }
        Ok(manifests)
    }
}

#[tokio::test]
async fn a_source_and_a_renderer_of_our_own_fit_the_seams() {
    let (client, namespace) = setup("sync-seams").await;
    let source = MemorySource::default();
    source.set("colours.txt", Some("sky=blue\ngrass=green\n"));
    let mut unit = SyncUnit::builder(
        source.clone(),
        ColourRenderer,
        applier(&client, &namespace, "colours"),
    )
    .apply_options(ApplyOptions::default().with_target_namespace(namespace.clone()))
    .build()
    .unwrap();
    let first = sync(&mut unit).await;
    assert_eq!(first.revision.as_str(), "memory:1");
    assert_eq!(action(&first, "sky"), ObjectAction::Created);
    assert_eq!(
        colour_of(&client, &namespace, "grass").await.as_deref(),
        Some("green")
    );
    let steady = sync(&mut unit).await;
    assert!(!steady.changed() && !steady.new_revision);

    // A bad line stalls without pruning; the fix prunes.
    source.set("colours.txt", Some("sky=blue\nnonsense\n"));
    let error = unit.sync(&CancellationToken::new()).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Stalled);
    assert!(error.chain().contains("colours.txt:2"), "{}", error.chain());
    assert!(live(&client, &namespace, "grass").await.is_some());
    source.set("colours.txt", Some("sky=navy\n"));
    let fixed = sync(&mut unit).await;
    assert_eq!(fixed.revision.as_str(), "memory:3");
    assert_eq!(action(&fixed, "grass"), ObjectAction::Pruned);
    assert_eq!(
        colour_of(&client, &namespace, "sky").await.as_deref(),
        Some("navy")
    );
}

#[tokio::test]
async fn two_units_with_their_own_inventories_run_side_by_side() {
    let (client, namespace) = setup("sync-two").await;
    let repo_a = tempfile::tempdir().unwrap();
    let repo_b = tempfile::tempdir().unwrap();
    write(repo_a.path(), "a.yaml", &config_map("a1", "blue"));
    write(repo_a.path(), "a2.yaml", &config_map("a2", "blue"));
    write(repo_b.path(), "b.yaml", &config_map("b1", "green"));
    let cancel = CancellationToken::new();
    let mut runs = Vec::new();
    for (inventory, repo) in [("app-a", &repo_a), ("app-b", &repo_b)] {
        let unit = unit(
            &client,
            &namespace,
            inventory,
            LocalDirectorySource::new(repo.path()),
        )
        .build()
        .unwrap();
        let reconciler = Reconciler::new(unit, Duration::from_secs(3600));
        let trigger = reconciler.trigger();
        let (receiver, task) = spawn(reconciler, &cancel);
        runs.push((trigger, receiver, task));
    }
    for (_, receiver, _) in &mut runs {
        assert_eq!(next(receiver).await.class, None);
    }
    let owner = |cm: Option<ConfigMap>| {
        cm.and_then(|cm| cm.metadata.labels)
            .and_then(|labels| labels.get(OWNER_NAME_LABEL).cloned())
    };
    assert_eq!(
        owner(live(&client, &namespace, "a1").await).as_deref(),
        Some("app-a")
    );
    assert_eq!(
        owner(live(&client, &namespace, "b1").await).as_deref(),
        Some("app-b")
    );

    // Unit A drops a2: only A prunes, and B's objects stay.
    std::fs::remove_file(repo_a.path().join("a2.yaml")).unwrap();
    runs[0].0.sync_now();
    let seen = next(&mut runs[0].1).await;
    assert_eq!(seen.actions["a2"], ObjectAction::Pruned);
    assert!(!seen.actions.contains_key("b1"));
    assert!(live(&client, &namespace, "a2").await.is_none());
    assert!(live(&client, &namespace, "b1").await.is_some());
    runs[1].0.sync_now();
    let seen = next(&mut runs[1].1).await;
    assert_eq!(seen.actions["b1"], ObjectAction::Unchanged);
    assert!(!seen.actions.contains_key("a1"));

    cancel.cancel();
    for (_, _, task) in runs {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn waiting_follows_the_policy() {
    let (client, namespace) = setup("sync-wait").await;
    let repo = tempfile::tempdir().unwrap();
    write(repo.path(), "a.yaml", &config_map("a", "blue"));
    let mut unit = unit(
        &client,
        &namespace,
        "inventory",
        LocalDirectorySource::new(repo.path()),
    )
    .wait(WaitPolicy::WhenChanged(Duration::from_secs(60)))
    .build()
    .unwrap();
    // A new revision waits; a steady cycle (nothing written, all Current) does not.
    assert!(sync(&mut unit).await.timings.wait.is_some());
    assert!(sync(&mut unit).await.timings.wait.is_none());

    // A Deployment never becomes available without nodes: the wait fails, as a transient
    // error that carries what was applied.
    write(
        repo.path(),
        "web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - {name: web, image: registry.invalid/web:1}\n",
    );
    drop(unit);
    let mut unit = self::unit(
        &client,
        &namespace,
        "inventory",
        LocalDirectorySource::new(repo.path()),
    )
    .wait(WaitPolicy::Always(Duration::from_secs(2)))
    .build()
    .unwrap();
    let error = unit.sync(&CancellationToken::new()).await.unwrap_err();
    assert!(matches!(error, SyncError::Wait { .. }), "{}", error.chain());
    assert_eq!(error.class(), ErrorClass::Transient);
    let report = error.served().expect("the report of the apply");
    assert_eq!(action(report, "a"), ObjectAction::Unchanged);
    assert!(error.chain().contains("web"), "{}", error.chain());
}

#[tokio::test]
async fn a_failed_fetch_serves_the_last_good_set_without_pruning() {
    let (client, namespace) = setup("sync-fetch-fails").await;
    let parent = tempfile::tempdir().unwrap();
    let repo = parent.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    write(&repo, "a.yaml", &config_map("a", "blue"));
    let mut unit = unit(
        &client,
        &namespace,
        "inventory",
        LocalDirectorySource::new(&repo),
    )
    .build()
    .unwrap();
    let good = sync(&mut unit).await;
    // The directory is gone: an empty set would prune everything, a failed fetch prunes nothing.
    std::fs::remove_dir_all(&repo).unwrap();
    let error = unit.sync(&CancellationToken::new()).await.unwrap_err();
    assert!(
        matches!(error, SyncError::Fetch { .. }),
        "{}",
        error.chain()
    );
    // A missing directory is configuration: it stalls (retried at the interval).
    assert_eq!(error.class(), ErrorClass::Stalled);
    let served = error.served().expect("the last good set was served");
    assert!(served.served_last_good);
    assert_eq!(served.revision, good.revision);
    assert_eq!(served.change_set.count(ObjectAction::Pruned), 0);
    assert!(live(&client, &namespace, "a").await.is_some());
}

#[tokio::test]
async fn cancelling_stops_the_loop_within_a_sync() {
    let (client, namespace) = setup("sync-cancel").await;
    let repo = tempfile::tempdir().unwrap();
    // Never available without nodes: the sync waits until cancelled.
    write(
        repo.path(),
        "web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - {name: web, image: registry.invalid/web:1}\n",
    );
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let unit = unit(
        &client,
        &namespace,
        "inventory",
        LocalDirectorySource::new(repo.path()),
    )
    .wait(WaitPolicy::Always(Duration::from_secs(3600)))
    .progress(move |step| {
        if matches!(step, SyncProgress::Waiting(_)) {
            stop.cancel();
        }
    })
    .build()
    .unwrap();
    let (mut receiver, task) = spawn(Reconciler::new(unit, Duration::from_secs(3600)), &cancel);
    let unit = tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("the loop stops when cancelled")
        .unwrap();
    // The cancelled cycle is not reported; what was written stays written.
    assert!(receiver.recv().await.is_none());
    assert!(unit.applied_revision().is_some());
    assert!(
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), &namespace)
            .get_opt("web")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_stalled_unit_waits_for_the_interval_not_the_backoff() {
    let (client, namespace) = setup("sync-stalled").await;
    let repo = tempfile::tempdir().unwrap();
    write(repo.path(), "broken.yaml", "kind: ConfigMap\nmetadata: [\n");
    let unit = unit(
        &client,
        &namespace,
        "inventory",
        LocalDirectorySource::new(repo.path()),
    )
    .build()
    .unwrap();
    let cancel = CancellationToken::new();
    let reconciler = Reconciler::new(unit, Duration::from_secs(3600)).backoff(Backoff::new(
        Duration::from_millis(50),
        Duration::from_millis(200),
    ));
    let trigger = reconciler.trigger();
    let (mut receiver, task) = spawn(reconciler, &cancel);
    let stalled = next(&mut receiver).await;
    assert_eq!(stalled.class, Some(ErrorClass::Stalled));
    assert_eq!(stalled.failures, 0);
    assert_eq!(stalled.next_in, Duration::from_secs(3600));

    // A fix, and a trigger (a webhook on push): applied at once, nothing was ever pruned.
    std::fs::remove_file(repo.path().join("broken.yaml")).unwrap();
    write(repo.path(), "a.yaml", &config_map("a", "blue"));
    trigger.sync_now();
    let fixed = next(&mut receiver).await;
    assert_eq!(fixed.class, None);
    assert!(fixed.triggered);
    assert_eq!(fixed.actions["a"], ObjectAction::Created);
    cancel.cancel();
    task.await.unwrap();
}

/// A dry run writes nothing and applies no revision; entries the source left out are reported
/// once per new fetch; a unit told the revision applied before it existed (a one-shot program,
/// `SyncUnitBuilder::applied_revision`) counts a sync of that revision as not new, its writes
/// as drift corrected.
#[tokio::test]
async fn a_dry_run_writes_nothing_left_out_entries_are_reported_and_a_known_revision_is_not_new() {
    let (client, namespace) = setup("sync-dry-run").await;
    let repo = tempfile::tempdir().unwrap();
    write(repo.path(), "a.yaml", &config_map("a", "blue"));
    std::os::unix::fs::symlink(repo.path().join("a.yaml"), repo.path().join("link.yaml")).unwrap();
    let left_out = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&left_out);
    let mut dry_run = unit(
        &client,
        &namespace,
        "inventory",
        LocalDirectorySource::new(repo.path()),
    )
    .apply_options(
        ApplyOptions::default()
            .with_target_namespace(namespace.clone())
            .with_dry_run(true),
    )
    .progress(move |step| {
        if let SyncProgress::LeftOut { entries, .. } = step {
            seen.lock()
                .unwrap()
                .extend(entries.iter().map(ToString::to_string));
        }
    })
    .build()
    .unwrap();
    let planned = sync(&mut dry_run).await;
    assert!(planned.change_set.dry_run);
    assert_eq!(action(&planned, "a"), ObjectAction::Created);
    assert_eq!(planned.change_set.request_counts.writes, 0, "{planned}");
    assert!(live(&client, &namespace, "a").await.is_none());
    assert!(dry_run.applied_revision().is_none());
    let again = sync(&mut dry_run).await;
    assert_eq!(action(&again, "a"), ObjectAction::Created);
    let left_out = left_out.lock().unwrap().clone();
    assert_eq!(left_out.len(), 1, "once per new fetch: {left_out:?}");
    assert!(left_out[0].starts_with("link.yaml"), "{left_out:?}");

    // The real run applies; a later unit knows the revision from it (as from an annotation).
    let mut first = unit(
        &client,
        &namespace,
        "inventory",
        LocalDirectorySource::new(repo.path()),
    )
    .build()
    .unwrap();
    let applied = sync(&mut first).await;
    assert!(applied.new_revision);
    Api::<ConfigMap>::namespaced(client.clone(), &namespace)
        .patch(
            "a",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(serde_json::json!({"data": {"colour": "purple"}})),
        )
        .await
        .unwrap();
    let mut one_shot = unit(
        &client,
        &namespace,
        "inventory",
        LocalDirectorySource::new(repo.path()),
    )
    .applied_revision(Some(applied.revision.clone()))
    .build()
    .unwrap();
    let corrected = sync(&mut one_shot).await;
    assert!(!corrected.new_revision, "{corrected}");
    assert_eq!(action(&corrected, "a"), ObjectAction::Configured);
    assert_eq!(
        colour_of(&client, &namespace, "a").await.as_deref(),
        Some("blue")
    );
}

#[tokio::test]
async fn a_spec_becomes_a_unit_through_the_factory() {
    use gitops_sync::spec::{InventorySpec, SourceSpec, SyncSpec};
    use gitops_sync::{FactoryError, SpecUnit, UnitFactory};
    let (client, namespace) = setup("sync-factory").await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &config_map("a", "${COLOUR}"));
    let work = tempfile::tempdir().unwrap();
    let spec = SyncSpec {
        source: SourceSpec {
            local_path: Some(dir.path().to_str().unwrap().to_owned()),
            ..SourceSpec::default()
        },
        interval: "1m".into(),
        inventory: Some(InventorySpec {
            config_map: Some("from-spec".into()),
        }),
        substitute: BTreeMap::from([("COLOUR".to_owned(), "teal".to_owned())]),
        target_namespace: Some(namespace.clone()),
        ..SyncSpec::default()
    };
    let factory = UnitFactory::new(client.clone(), work.path()).field_manager("factory-test");

    // A dry run from the factory plans and writes nothing.
    let dry = factory.clone().dry_run(true);
    let unit = SpecUnit::new(spec.clone(), namespace.clone());
    let mut planned = dry.unit(unit).await.unwrap().build().unwrap();
    let report = sync(&mut planned).await;
    assert!(report.change_set.dry_run);
    assert_eq!(action(&report, "a"), ObjectAction::Created);
    assert_eq!(colour_of(&client, &namespace, "a").await, None);

    // The real unit applies with the spec's substitution into its target namespace, keeps its
    // inventory in the ConfigMap the spec names, and writes as the factory's field manager.
    let unit = SpecUnit::new(spec.clone(), namespace.clone()).name("from-spec");
    let mut unit = factory.unit(unit).await.unwrap().build().unwrap();
    assert_eq!(unit.name(), "from-spec");
    let report = sync(&mut unit).await;
    assert_eq!(action(&report, "a"), ObjectAction::Created);
    assert_eq!(
        colour_of(&client, &namespace, "a").await.as_deref(),
        Some("teal")
    );
    let live = live(&client, &namespace, "a").await.unwrap();
    let managers: Vec<_> = (live.metadata.managed_fields.unwrap_or_default().into_iter())
        .filter_map(|entry| entry.manager)
        .collect();
    assert!(managers.iter().any(|m| m == "factory-test"), "{managers:?}");
    let inventory: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    assert!(inventory.get_opt("from-spec").await.unwrap().is_some());
    let again = sync(&mut unit).await;
    assert_eq!(
        again.change_set.request_counts.writes,
        0,
        "{}",
        again.status_line()
    );

    // Without an inventory name and an applier, the factory says what is missing.
    let mut without = spec;
    without.inventory = None;
    let error = factory
        .unit(SpecUnit::new(without, namespace.clone()))
        .await
        .unwrap_err();
    assert!(matches!(error, FactoryError::NoInventory), "{error:?}");
}

#[tokio::test]
async fn helm_is_told_the_capabilities_of_the_cluster() {
    let (client, _namespace) = setup("sync-capabilities").await;
    let capabilities = gitops_sync::discover_capabilities(&client, None).await;
    let served = client.apiserver_version().await.unwrap().git_version;
    assert_eq!(capabilities.kube_version.as_deref(), Some(served.as_str()));
    for expected in ["v1", "v1/ConfigMap", "apps/v1", "apps/v1/Deployment"] {
        assert!(
            capabilities.api_versions.iter().any(|v| v == expected),
            "{expected} missing from {:?}",
            capabilities.api_versions
        );
    }
    let pinned = gitops_sync::discover_capabilities(&client, Some("v1.30.0")).await;
    assert_eq!(pinned.kube_version.as_deref(), Some("v1.30.0"));
}

/// The files of a directory, relative and sorted.
fn files_below(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                found.push(relative.to_str().unwrap().to_owned());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn a_sparse_unit_materialises_its_path_and_what_its_kustomizations_reference() {
    let kustomize = tokio::task::spawn_blocking(|| {
        gitops_envtest::tools::ensure(gitops_envtest::tools::Tool::Kustomize)
    })
    .await
    .unwrap()
    .expect("the pinned kustomize");
    let (client, namespace) = setup("sync-sparse").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let mut files: Vec<(String, String)> = vec![
        (
            "apps/prod/kustomization.yaml".into(),
            "resources:\n- ../../base\nnamePrefix: prod-\n".into(),
        ),
        (
            "apps/upper/kustomization.yaml".into(),
            "RESOURCES:\n- ../../base\n".into(),
        ),
        (
            "base/kustomization.yaml".into(),
            "resources:\n- cm.yaml\n".into(),
        ),
        ("base/cm.yaml".into(), config_map("a", "blue")),
        (
            "extra/kustomization.yaml".into(),
            "resources:\n- cm.yaml\n".into(),
        ),
        ("extra/cm.yaml".into(), config_map("b", "green")),
    ];
    // An unrelated big directory.
    for i in 0..300 {
        files.push((
            format!("big/{i}.yaml"),
            config_map(&format!("big-{i}"), "x"),
        ));
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_str()))
        .collect();
    commit(&repo, &borrowed);
    let source = |cache: &str| {
        GitSource::builder(format!("file://{}", repo.display()), dir.path().join(cache))
            .build()
            .unwrap()
    };
    let kustomized = |source: GitSource, path: &str, inventory: &str| {
        SyncUnit::builder(
            source,
            gitops_render::KustomizeRenderer::new(&kustomize),
            applier(&client, &namespace, inventory),
        )
        .name(inventory)
        .path(path)
        .sparse(true)
        .apply_options(
            ApplyOptions::default()
                .with_takeover(TakeoverManager::defaults())
                .with_target_namespace(namespace.clone()),
        )
        .build()
        .unwrap()
    };
    let mut prod = kustomized(source("cache-prod"), "apps/prod", "prod");
    let report = sync(&mut prod).await;
    assert_eq!(action(&report, "prod-a"), ObjectAction::Created);
    assert_eq!(
        colour_of(&client, &namespace, "prod-a").await.as_deref(),
        Some("blue")
    );
    let artifact = prod.artifact_store().current().unwrap().clone();
    assert_eq!(
        files_below(artifact.root()),
        [
            "apps/prod/kustomization.yaml",
            "base/cm.yaml",
            "base/kustomization.yaml"
        ]
    );
    // The same revision again: the same artifact, nothing written.
    let again = sync(&mut prod).await;
    assert!(!again.new_revision);
    assert_eq!(
        prod.artifact_store().current().unwrap().root(),
        artifact.root()
    );

    // A reference added in a later commit is materialised.
    commit(
        &repo,
        &[(
            "apps/prod/kustomization.yaml",
            "resources:\n- ../../base\n- ../../extra\nnamePrefix: prod-\n",
        )],
    );
    let report = sync(&mut prod).await;
    assert!(report.new_revision);
    assert_eq!(action(&report, "prod-b"), ObjectAction::Created);
    assert_eq!(action(&report, "prod-a"), ObjectAction::Unchanged);
    let artifact = prod.artifact_store().current().unwrap();
    let held = files_below(artifact.root());
    assert!(held.contains(&"extra/cm.yaml".to_owned()), "{held:?}");
    assert!(
        !held.iter().any(|path| path.starts_with("big/")),
        "{held:?}"
    );
    assert!(
        !held.iter().any(|path| path.starts_with("apps/upper")),
        "{held:?}"
    );

    // A key kustomize reads ignoring case: what it names is materialised, and the render fails
    // on the key, naming it (never on a missing file, never outside the artifact).
    let mut upper = kustomized(source("cache-upper"), "apps/upper", "upper");
    let error = upper
        .sync(&CancellationToken::new())
        .await
        .expect_err("an upper-case key is refused");
    let chain = error.chain().to_string();
    assert!(chain.contains("unknown field \"RESOURCES\""), "{chain}");
    let artifact = upper.artifact_store().current().unwrap();
    assert_eq!(
        files_below(artifact.root()),
        [
            "apps/upper/kustomization.yaml",
            "base/cm.yaml",
            "base/kustomization.yaml"
        ]
    );
}

#[tokio::test]
async fn a_sparse_spec_made_into_a_unit_by_the_factory_fetches_only_what_its_render_reads() {
    use gitops_render::tool::{Tool, ToolLocator};
    use gitops_sync::spec::{HelmSpec, InventorySpec, RendererKind, RendererSpec, SyncSpec};
    use gitops_sync::{SpecUnit, UnitFactory};
    let pinned = |tool| async move {
        tokio::task::spawn_blocking(move || gitops_envtest::tools::ensure(tool))
            .await
            .unwrap()
            .expect("the pinned tool")
    };
    let kustomize = pinned(gitops_envtest::tools::Tool::Kustomize).await;
    let helm = pinned(gitops_envtest::tools::Tool::Helm).await;
    let (client, namespace) = setup("sync-sparse-spec").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let mut files: Vec<(String, String)> = vec![
        (
            "apps/prod/kustomization.yaml".into(),
            "resources:\n- ../../base\nnamePrefix: prod-\n".into(),
        ),
        (
            "base/kustomization.yaml".into(),
            "resources:\n- cm.yaml\n".into(),
        ),
        ("base/cm.yaml".into(), config_map("a", "blue")),
        (
            "charts/web/Chart.yaml".into(),
            "apiVersion: v2\nname: web\nversion: 0.1.0\n".into(),
        ),
        ("charts/web/values.yaml".into(), "colour: default\n".into()),
        (
            "charts/web/templates/cm.yaml".into(),
            config_map("web", "{{ .Values.colour }}"),
        ),
        ("env/prod/values.yaml".into(), "colour: prod\n".into()),
        ("env/dev/values.yaml".into(), "colour: dev\n".into()),
    ];
    for i in 0..100 {
        files.push((
            format!("big/{i}.yaml"),
            config_map(&format!("big-{i}"), "x"),
        ));
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_str()))
        .collect();
    commit(&repo, &borrowed);
    let work = tempfile::tempdir().unwrap();
    let factory = UnitFactory::new(client.clone(), work.path())
        .kustomize(ToolLocator::new(Tool::Kustomize).explicit(Some(kustomize)))
        .helm(ToolLocator::new(Tool::Helm).explicit(Some(helm)))
        .field_manager("sparse-spec");
    // As a user's custom resource holds it.
    let spec: SyncSpec = serde_json::from_value(serde_json::json!({
        "source": {"url": format!("file://{}", repo.display())},
        "path": "apps/prod",
        "interval": "1m",
        "inventory": {"configMap": "sparse-kustomize"},
        "targetNamespace": namespace,
        "sparse": true,
    }))
    .unwrap();
    let unit = |spec: SyncSpec, subdir: &str| {
        SpecUnit::new(spec, namespace.clone())
            .name(subdir)
            .work_subdir(subdir)
    };
    let mut prod = factory
        .unit(unit(spec.clone(), "prod"))
        .await
        .unwrap()
        .build()
        .unwrap();
    let report = sync(&mut prod).await;
    assert_eq!(action(&report, "prod-a"), ObjectAction::Created);
    assert_eq!(
        colour_of(&client, &namespace, "prod-a").await.as_deref(),
        Some("blue")
    );
    // The subpath and the base it references; nothing of the rest of the repository.
    let artifact = prod.artifact_store().current().unwrap();
    assert_eq!(
        files_below(artifact.root()),
        [
            "apps/prod/kustomization.yaml",
            "base/cm.yaml",
            "base/kustomization.yaml"
        ]
    );

    // A chart whose values file is outside it: the values file is fetched too.
    let chart = SyncSpec {
        path: "charts/web".into(),
        renderer: RendererSpec {
            kind: RendererKind::Helm,
            helm: Some(HelmSpec {
                release_name: Some("web".into()),
                values_files: vec!["../../env/prod/values.yaml".into()],
                ..HelmSpec::default()
            }),
        },
        inventory: Some(InventorySpec {
            config_map: Some("sparse-helm".into()),
        }),
        ..spec.clone()
    };
    let mut web = factory
        .unit(unit(chart, "web"))
        .await
        .unwrap()
        .build()
        .unwrap();
    let report = sync(&mut web).await;
    assert_eq!(action(&report, "web"), ObjectAction::Created);
    assert_eq!(
        colour_of(&client, &namespace, "web").await.as_deref(),
        Some("prod")
    );
    let artifact = web.artifact_store().current().unwrap();
    assert_eq!(
        files_below(artifact.root()),
        [
            "charts/web/Chart.yaml",
            "charts/web/templates/cm.yaml",
            "charts/web/values.yaml",
            "env/prod/values.yaml"
        ]
    );

    // Without `sparse`, the whole revision.
    let whole = SyncSpec {
        sparse: false,
        ..spec
    };
    let mut whole = factory
        .unit(unit(whole, "whole"))
        .await
        .unwrap()
        .build()
        .unwrap();
    sync(&mut whole).await;
    let held = files_below(whole.artifact_store().current().unwrap().root());
    assert!(held.contains(&"big/0.yaml".to_owned()), "{held:?}");
    assert!(held.contains(&"env/dev/values.yaml".to_owned()), "{held:?}");
}
