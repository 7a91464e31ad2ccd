//! Hooks and sync phases against a real control plane (gitops-envtest). No kubelet runs here:
//! the tests write a hook Job's status as its controller would.

use std::collections::BTreeMap;
use std::time::Duration;

use gitops_apply::{
    DefaultStaging, HOOK_OF_NAME_LABEL, HOOK_OF_NAMESPACE_LABEL, HOOK_PHASE_LABEL, HookError,
    HookOutcome, HookRun, HookRunner, InventoryOwner, KindInfo, KindTable, OWNER_NAME_LABEL,
    PlannedHooks, SyncPhase, plan_hooks,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod common;
use common::cluster::{complete_job, dynamic, fail_job};
use common::{applier_builder, inventory_ids, run, run_err, set, setup};

/// The kinds these tests use.
fn kinds() -> KindTable {
    let mut table = KindTable::default();
    for resource in [
        ApiResource::erase::<Job>(&()),
        ApiResource::erase::<ConfigMap>(&()),
    ] {
        table.insert(KindInfo {
            resource,
            namespaced: true,
            served: true,
        });
    }
    table
}

fn owner(ns: &str) -> InventoryOwner {
    InventoryOwner::new(ns, "inventory").unwrap()
}

fn runner(client: &kube::Client, ns: &str) -> HookRunner {
    HookRunner::new(client.clone(), owner(ns).labels())
        .with_interval(Duration::from_millis(100))
        .with_timeout(Duration::from_secs(60))
}

fn hooks(yaml: &str) -> PlannedHooks {
    let set = gitops_core::parse_manifests(yaml, "hooks.yaml").unwrap();
    let (_, hooks) = plan_hooks(set, &kinds(), &DefaultStaging, None).unwrap();
    hooks
}

/// A Job hook: `name` is `metadata.name`, or `generateName` when it ends in '-'.
fn job(ns: &str, name: &str, annotations: &str) -> String {
    let key = if name.ends_with('-') {
        "generateName"
    } else {
        "name"
    };
    format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  {key}: {name}
  namespace: {ns}
  annotations: {{{annotations}}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: main, image: busybox, command: [\"true\"]}}]
"
    )
}

async fn jobs(client: &kube::Client, ns: &str) -> Vec<DynamicObject> {
    dynamic::<Job>(client, ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

/// Waits until a Job whose name starts with `prefix` exists, and returns it.
async fn job_appears(client: &kube::Client, ns: &str, prefix: &str) -> DynamicObject {
    new_job_appears(client, ns, prefix, None).await
}

/// Waits until a Job whose name starts with `prefix` exists, other than the object `not`
/// (a uid), and returns it.
async fn new_job_appears(
    client: &kube::Client,
    ns: &str,
    prefix: &str,
    not: Option<&str>,
) -> DynamicObject {
    for _ in 0..300 {
        if let Some(job) = jobs(client, ns).await.into_iter().find(|j| {
            j.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(prefix))
                && j.metadata.deletion_timestamp.is_none()
                && j.metadata.uid.as_deref() != not
        }) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no new Job {prefix}* in {ns}");
}

/// Runs one phase on a task, so that the test can play the Job controller meanwhile.
fn spawn_phase(
    runner: HookRunner,
    hooks: PlannedHooks,
    phase: SyncPhase,
) -> tokio::task::JoinHandle<(Vec<HookRun>, Result<(), HookError>)> {
    tokio::spawn(async move {
        let mut runs = Vec::new();
        let result = runner
            .run_phase(&hooks, phase, &mut runs, &CancellationToken::new())
            .await;
        (runs, result)
    })
}

/// Runs `phase` of `hooks` here, to its end, and returns its runs and result.
async fn phase_here(
    client: &kube::Client,
    ns: &str,
    hooks: &PlannedHooks,
    phase: SyncPhase,
) -> (Vec<HookRun>, Result<(), HookError>) {
    let mut runs = Vec::new();
    let result = runner(client, ns)
        .run_phase(hooks, phase, &mut runs, &CancellationToken::new())
        .await;
    (runs, result)
}

/// How the test, playing the Job controller, ends a hook Job.
#[derive(Debug, Clone, Copy)]
enum JobEnd {
    /// Completed: [`complete_job`].
    Completed,
    /// Failed at its backoff limit: [`fail_job`].
    Failed,
}

/// Runs `phase` of `hooks` on a task, waits for its Job whose name starts with `prefix`, ends it
/// as `end`, and returns the Job's name with the phase's runs and result.
async fn phase_with_job(
    client: &kube::Client,
    ns: &str,
    hooks: PlannedHooks,
    phase: SyncPhase,
    prefix: &str,
    end: JobEnd,
) -> (String, Vec<HookRun>, Result<(), HookError>) {
    let task = spawn_phase(runner(client, ns), hooks, phase);
    let name = name_of(&job_appears(client, ns, prefix).await);
    match end {
        JobEnd::Completed => complete_job(client, ns, &name).await,
        JobEnd::Failed => fail_job(client, ns, &name).await,
    }
    let (runs, result) = task.await.unwrap();
    (name, runs, result)
}

/// The name of `object`, which has one.
fn name_of(object: &DynamicObject) -> String {
    object.metadata.name.clone().unwrap()
}

#[tokio::test]
async fn a_generate_name_presync_job_runs_until_it_completes() {
    let (client, ns) = setup("hook-presync").await;
    let hooks = hooks(&job(&ns, "migrate-", "argocd.argoproj.io/hook: PreSync"));
    let task = spawn_phase(runner(&client, &ns), hooks, SyncPhase::PreSync);

    let created = job_appears(&client, &ns, "migrate-").await;
    let name = name_of(&created);
    assert_ne!(name, "migrate-", "the server generated the name");
    let labels = created.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels[HOOK_PHASE_LABEL], "PreSync");
    assert_eq!(labels[HOOK_OF_NAMESPACE_LABEL], ns);
    assert_eq!(labels[HOOK_OF_NAME_LABEL], "inventory");
    assert!(
        !labels.contains_key(OWNER_NAME_LABEL),
        "a hook never carries the inventory's ownership labels: {labels:?}"
    );
    // Pending until the Job completes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !task.is_finished(),
        "the phase ended before its Job completed"
    );

    complete_job(&client, &ns, &name).await;
    let (runs, result) = task.await.unwrap();
    result.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].id.name, name);
    assert_eq!(runs[0].phase, SyncPhase::PreSync);
    assert_eq!(runs[0].outcome, HookOutcome::Succeeded);
    // The default policy (BeforeHookCreation) keeps it until the next sync.
    assert!(!runs[0].deleted);
    assert_eq!(jobs(&client, &ns).await.len(), 1);
}

#[tokio::test]
async fn before_hook_creation_replaces_the_previous_object() {
    let (client, ns) = setup("hook-replace").await;
    let yaml = format!(
        "{}---\n{}",
        job(&ns, "migrate-", "argocd.argoproj.io/hook: PreSync"),
        job(&ns, "seed", "argocd.argoproj.io/hook: PreSync")
    );
    let mut previous: BTreeMap<&str, String> = BTreeMap::new();
    for _ in 0..2 {
        let task = spawn_phase(runner(&client, &ns), hooks(&yaml), SyncPhase::PreSync);
        for prefix in ["migrate-", "seed"] {
            let old = previous.get(prefix).map(String::as_str);
            let job = new_job_appears(&client, &ns, prefix, old).await;
            // The new object is created only once the previous one is gone.
            if let Some(old) = old {
                assert!(
                    jobs(&client, &ns).await.iter().all(|j| {
                        j.metadata.uid.as_deref() != Some(old)
                            || j.metadata.deletion_timestamp.is_some()
                    }),
                    "{prefix}: the previous object is still there"
                );
            }
            complete_job(&client, &ns, &name_of(&job)).await;
            previous.insert(prefix, job.metadata.uid.clone().unwrap());
        }
        let (runs, result) = task.await.unwrap();
        result.unwrap();
        assert_eq!(runs.len(), 2);
    }
    let left: Vec<String> = jobs(&client, &ns)
        .await
        .iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .map(name_of)
        .collect();
    assert_eq!(
        left.len(),
        2,
        "one object per hook after two syncs: {left:?}"
    );
}

#[tokio::test]
async fn hook_succeeded_deletes_it_and_a_failure_fails_the_phase_naming_the_hook() {
    let (client, ns) = setup("hook-policies").await;
    let yaml = job(
        &ns,
        "check-",
        "argocd.argoproj.io/hook: PostSync, argocd.argoproj.io/hook-delete-policy: HookSucceeded",
    );
    let (name, runs, result) = phase_with_job(
        &client,
        &ns,
        hooks(&yaml),
        SyncPhase::PostSync,
        "check-",
        JobEnd::Completed,
    )
    .await;
    result.unwrap();
    assert!(runs[0].deleted, "{runs:?}");
    assert_eq!(runs[0].outcome, HookOutcome::Succeeded);
    for _ in 0..100 {
        if jobs(&client, &ns).await.iter().all(|j| name_of(j) != name) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(jobs(&client, &ns).await.iter().all(|j| name_of(j) != name));

    // A failure: the phase fails with a typed error naming the hook object; HookSucceeded
    // keeps a failed hook for a look.
    let (name, runs, result) = phase_with_job(
        &client,
        &ns,
        hooks(&yaml),
        SyncPhase::PostSync,
        "check-",
        JobEnd::Failed,
    )
    .await;
    let error = result.unwrap_err();
    let HookError::Failed { run } = &error else {
        panic!("not a hook failure: {error}");
    };
    assert_eq!(run.id.name, name);
    assert_eq!(run.outcome, HookOutcome::Failed);
    let text = error.to_string();
    assert!(
        text.contains(&format!("PostSync hook Job.batch {ns}/{name} failed")),
        "{text}"
    );
    assert!(text.contains("backoff limit"), "{text}");
    assert!(text.starts_with("hooks.yaml:1: "), "{text}");
    assert!(!runs[0].deleted);
    assert!(jobs(&client, &ns).await.iter().any(|j| name_of(j) == name));
}

#[tokio::test]
async fn hook_failed_deletes_a_failed_hook() {
    let (client, ns) = setup("hook-failed").await;
    let yaml = job(
        &ns,
        "check-",
        "helm.sh/hook: post-install, helm.sh/hook-delete-policy: hook-failed",
    );
    let (_, runs, result) = phase_with_job(
        &client,
        &ns,
        hooks(&yaml),
        SyncPhase::PostSync,
        "check-",
        JobEnd::Failed,
    )
    .await;
    assert!(matches!(result, Err(HookError::Failed { .. })));
    assert!(runs[0].deleted, "{runs:?}");
}

#[tokio::test]
async fn a_named_hook_leaves_an_object_that_is_not_ours_alone() {
    let (client, ns) = setup("hook-not-ours").await;
    let api = dynamic::<ConfigMap>(&client, &ns);
    let theirs: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "seed", "namespace": ns}, "data": {"owner": "someone else"}}))
    .unwrap();
    api.create(&PostParams::default(), &theirs).await.unwrap();
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: seed, namespace: {ns}, \
         annotations: {{argocd.argoproj.io/hook: PreSync}}}}\ndata: {{owner: hook}}\n"
    );
    let (_, result) = phase_here(&client, &ns, &hooks(&yaml), SyncPhase::PreSync).await;
    let error = result.unwrap_err();
    assert!(matches!(error, HookError::NotOurs { .. }), "{error}");
    assert!(error.to_string().contains("left alone"), "{error}");
    let live = api.get("seed").await.unwrap();
    assert_eq!(live.data["data"]["owner"], "someone else");
}

#[tokio::test]
async fn helm_hooks_run_in_their_mapped_phase_and_test_hooks_never() {
    let (client, ns) = setup("hook-helm").await;
    let yaml = format!(
        "{}---\n{}",
        job(&ns, "install-", "helm.sh/hook: \"pre-install,pre-upgrade\""),
        job(&ns, "smoke-", "helm.sh/hook: test")
    );
    let hooks = hooks(&yaml);
    assert_eq!(hooks.len(), 1, "the test hook is left out:\n{hooks}");
    assert!(hooks.has_phase(SyncPhase::PreSync));
    // A phase without hooks writes nothing.
    let (runs, result) = phase_here(&client, &ns, &hooks, SyncPhase::PostSync).await;
    result.unwrap();
    assert!(runs.is_empty());
    assert!(jobs(&client, &ns).await.is_empty());

    let (_, runs, result) = phase_with_job(
        &client,
        &ns,
        hooks,
        SyncPhase::PreSync,
        "install-",
        JobEnd::Completed,
    )
    .await;
    result.unwrap();
    assert_eq!(runs[0].outcome, HookOutcome::Succeeded);
    let names: Vec<String> = jobs(&client, &ns).await.iter().map(name_of).collect();
    assert!(names.iter().all(|n| !n.starts_with("smoke-")), "{names:?}");
}

#[tokio::test]
async fn a_failing_postsync_hook_runs_the_syncfail_hook_and_fails_the_sync_naming_it() {
    let (client, ns) = setup("hook-syncfail").await;
    let yaml = format!(
        "{}---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: report, namespace: {ns}, \
         annotations: {{argocd.argoproj.io/hook: SyncFail}}}}\ndata: {{sync: failed}}\n",
        job(&ns, "check-", "argocd.argoproj.io/hook: PostSync")
    );
    let hooks = hooks(&yaml);
    let runner = runner(&client, &ns);
    let configs = dynamic::<ConfigMap>(&client, &ns);
    let task = {
        let configs = configs.clone();
        tokio::spawn(async move {
            let mut runs = Vec::new();
            let app: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}}))
            .unwrap();
            let result = runner
                .run_sync(
                    &hooks,
                    &mut runs,
                    &CancellationToken::new(),
                    async { configs.create(&PostParams::default(), &app).await },
                    async |_: &DynamicObject| Ok(()),
                )
                .await;
            (runs, result)
        })
    };
    let name = name_of(&job_appears(&client, &ns, "check-").await);
    // The PostSync hook runs after the sync phase wrote its objects; SyncFail has not run.
    assert!(configs.get_opt("app").await.unwrap().is_some());
    assert!(configs.get_opt("report").await.unwrap().is_none());
    fail_job(&client, &ns, &name).await;
    let (runs, result) = task.await.unwrap();
    let Err(gitops_apply::PhaseFailure::Hook { error, done }) = result else {
        panic!("the sync did not fail with the hook: {result:?}");
    };
    assert_eq!(
        done.and_then(|app| app.metadata.name).as_deref(),
        Some("app")
    );
    assert!(
        error
            .to_string()
            .contains(&format!("PostSync hook Job.batch {ns}/{name} failed")),
        "{error}"
    );
    let phases: Vec<(SyncPhase, HookOutcome)> = runs.iter().map(|r| (r.phase, r.outcome)).collect();
    assert_eq!(
        phases,
        [
            (SyncPhase::PostSync, HookOutcome::Failed),
            (SyncPhase::SyncFail, HookOutcome::Succeeded)
        ]
    );
    let report = configs.get("report").await.unwrap();
    assert_eq!(
        report.metadata.labels.unwrap_or_default()[HOOK_PHASE_LABEL],
        "SyncFail"
    );
}

#[tokio::test]
async fn a_presync_failure_stops_the_sync_before_it_writes() {
    let (client, ns) = setup("hook-presync-fail").await;
    let hooks = hooks(&job(&ns, "migrate-", "argocd.argoproj.io/hook: PreSync"));
    let runner = runner(&client, &ns);
    let task = tokio::spawn(async move {
        let mut runs = Vec::new();
        let result = runner
            .run_sync(
                &hooks,
                &mut runs,
                &CancellationToken::new(),
                async { Err::<(), _>("the sync phase ran") },
                async |_: &()| Ok(()),
            )
            .await;
        (runs, result)
    });
    let name = name_of(&job_appears(&client, &ns, "migrate-").await);
    fail_job(&client, &ns, &name).await;
    let (runs, result) = task.await.unwrap();
    assert!(
        matches!(
            result,
            Err(gitops_apply::PhaseFailure::Hook { done: None, .. })
        ),
        "{result:?}"
    );
    assert_eq!(runs.len(), 1);
}

#[tokio::test]
async fn a_generate_name_hook_is_created_with_strict_field_validation() {
    let (client, ns) = setup("hook-strict").await;
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{generateName: bad-, namespace: {ns}, \
         annotations: {{argocd.argoproj.io/hook: PreSync}}}}\nbogus: 1\n"
    );
    let (runs, result) = phase_here(&client, &ns, &hooks(&yaml), SyncPhase::PreSync).await;
    let error = result.unwrap_err();
    assert!(matches!(error, HookError::Api { .. }), "{error}");
    let text = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(
        text.contains(&format!("PreSync hook ConfigMap {ns}/bad-: creating it")),
        "{text}"
    );
    assert!(text.contains("bogus"), "{text}");
    // The hook that could not be created is recorded, with why.
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, HookOutcome::Failed);
    assert!(runs[0].message.contains("bogus"), "{}", runs[0].message);
    let configs = dynamic::<ConfigMap>(&client, &ns);
    assert!(
        configs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|c| !name_of(c).starts_with("bad-"))
    );
}

// The hooks through the applier's one-call path (`Applier::apply_set`).

/// The shared test applier, which looks at its hooks every 100 ms.
fn applier(client: &kube::Client, ns: &str) -> gitops_apply::Applier {
    applier_builder(client, ns)
        .wait_interval(Duration::from_millis(100))
        .build()
}

fn config_map(ns: &str, name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}, \
         annotations: {{{annotations}}}}}\ndata: {{k: v}}\n"
    )
}

/// Runs `apply_set` on a task, so that the test can play the Job controller meanwhile.
fn spawn_apply(
    applier: gitops_apply::Applier,
    yaml: String,
    options: gitops_apply::ApplyOptions,
) -> tokio::task::JoinHandle<Result<gitops_apply::ChangeSet, gitops_apply::ApplyError>> {
    tokio::spawn(async move {
        applier
            .apply_set(set(&yaml), &options, &CancellationToken::new())
            .await
    })
}

#[tokio::test]
async fn apply_set_runs_a_presync_job_before_the_sync_phase_writes() {
    let (client, ns) = setup("apply-presync").await;
    let yaml = format!(
        "{}---\n{}",
        job(&ns, "migrate-", "argocd.argoproj.io/hook: PreSync"),
        config_map(&ns, "app", "")
    );
    let configs = dynamic::<ConfigMap>(&client, &ns);
    let task = spawn_apply(
        applier(&client, &ns),
        yaml.clone(),
        gitops_apply::ApplyOptions::default(),
    );
    let name = name_of(&job_appears(&client, &ns, "migrate-").await);
    // While the PreSync hook runs, the Sync phase has written nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(configs.get_opt("app").await.unwrap().is_none());
    assert!(!task.is_finished());
    complete_job(&client, &ns, &name).await;
    let change_set = task.await.unwrap().unwrap();
    assert!(configs.get_opt("app").await.unwrap().is_some());
    assert_eq!(change_set.hooks.len(), 1, "{change_set}");
    let run = &change_set.hooks[0];
    assert_eq!(
        (run.phase, run.outcome, run.id.name.as_str()),
        (SyncPhase::PreSync, HookOutcome::Succeeded, name.as_str())
    );
    // The hook is neither an entry of the change set nor in the inventory.
    assert!(change_set.changes.iter().all(|c| c.id.kind != "Job"));
    assert_eq!(
        inventory_ids(&client, &ns).await,
        [format!("{ns}_app__ConfigMap")]
    );
}

#[tokio::test]
async fn apply_set_fails_naming_a_failed_postsync_hook_after_running_the_syncfail_hook() {
    let (client, ns) = setup("apply-postsync").await;
    let yaml = format!(
        "{}---\n{}---\n{}",
        config_map(&ns, "app", ""),
        job(&ns, "check-", "argocd.argoproj.io/hook: PostSync"),
        config_map(&ns, "report", "argocd.argoproj.io/hook: SyncFail")
    );
    let configs = dynamic::<ConfigMap>(&client, &ns);
    let task = spawn_apply(
        applier(&client, &ns),
        yaml,
        gitops_apply::ApplyOptions::default(),
    );
    let name = name_of(&job_appears(&client, &ns, "check-").await);
    assert!(configs.get_opt("app").await.unwrap().is_some());
    fail_job(&client, &ns, &name).await;
    let error = task.await.unwrap().unwrap_err();
    assert!(
        matches!(error, gitops_apply::ApplyError::Hook { .. }),
        "{error}"
    );
    let text = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(
        text.contains(&format!("PostSync hook Job.batch {ns}/{name} failed")),
        "{text}"
    );
    let change_set = error.change_set().expect("the run's change set");
    let phases: Vec<(SyncPhase, HookOutcome)> = change_set
        .hooks
        .iter()
        .map(|r| (r.phase, r.outcome))
        .collect();
    assert_eq!(
        phases,
        [
            (SyncPhase::PostSync, HookOutcome::Failed),
            (SyncPhase::SyncFail, HookOutcome::Succeeded)
        ]
    );
    assert!(configs.get_opt("report").await.unwrap().is_some());
}

#[tokio::test]
async fn hooks_are_never_in_the_inventory_and_removing_one_prunes_nothing() {
    let (client, ns) = setup("apply-hook-prune").await;
    let applier = applier(&client, &ns);
    let options = gitops_apply::ApplyOptions::default();
    let with_hook = format!(
        "{}---\n{}",
        config_map(&ns, "app", ""),
        config_map(&ns, "seed", "argocd.argoproj.io/hook: PreSync")
    );
    let first = run(&applier, set(&with_hook), &options).await;
    assert_eq!(first.hooks.len(), 1, "{first}");
    assert_eq!(
        inventory_ids(&client, &ns).await,
        [format!("{ns}_app__ConfigMap")]
    );
    let configs = dynamic::<ConfigMap>(&client, &ns);
    let seed = configs.get("seed").await.unwrap();
    let labels = seed.metadata.labels.unwrap_or_default();
    assert!(!labels.contains_key(OWNER_NAME_LABEL), "{labels:?}");

    // The hook leaves the set: nothing is pruned, its object stays.
    let second = run(&applier, set(&config_map(&ns, "app", "")), &options).await;
    assert!(second.hooks.is_empty());
    assert_eq!(
        second.count(gitops_apply::ObjectAction::Pruned),
        0,
        "{second}"
    );
    assert!(configs.get_opt("seed").await.unwrap().is_some());
}

#[tokio::test]
async fn a_dry_run_lists_the_hooks_by_phase_without_running_them() {
    let (client, ns) = setup("apply-hook-dry").await;
    let yaml = format!(
        "{}---\n{}---\n{}",
        config_map(&ns, "app", ""),
        job(&ns, "migrate-", "helm.sh/hook: pre-install"),
        job(&ns, "smoke-", "helm.sh/hook: test-success")
    );
    let change_set = run(
        &applier(&client, &ns),
        set(&yaml),
        &gitops_apply::ApplyOptions::default().with_dry_run(true),
    )
    .await;
    let planned: Vec<(SyncPhase, HookOutcome, String)> = change_set
        .hooks
        .iter()
        .map(|r| (r.phase, r.outcome, r.id.name.clone()))
        .collect();
    assert_eq!(
        planned,
        [(
            SyncPhase::PreSync,
            HookOutcome::Planned,
            "migrate-".to_owned()
        )]
    );
    assert!(jobs(&client, &ns).await.is_empty());
}

#[tokio::test]
async fn cancelling_while_a_presync_hook_runs_writes_nothing_and_reports_cancelled() {
    let (client, ns) = setup("apply-hook-cancel").await;
    let yaml = format!(
        "{}---\n{}",
        job(&ns, "migrate-", "argocd.argoproj.io/hook: PreSync"),
        config_map(&ns, "app", "")
    );
    let cancel = CancellationToken::new();
    let task = {
        let applier = applier(&client, &ns);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            applier
                .apply_set(set(&yaml), &gitops_apply::ApplyOptions::default(), &cancel)
                .await
        })
    };
    job_appears(&client, &ns, "migrate-").await;
    cancel.cancel();
    let error = task.await.unwrap().unwrap_err();
    let gitops_apply::ApplyError::Cancelled { change_set } = &error else {
        panic!("not a cancellation: {error}");
    };
    assert!(change_set.changes.is_empty(), "{change_set}");
    let configs = dynamic::<ConfigMap>(&client, &ns);
    assert!(configs.get_opt("app").await.unwrap().is_none());
    assert!(inventory_ids(&client, &ns).await.is_empty());
}

#[tokio::test]
async fn a_hook_the_server_refuses_fails_the_plan_before_any_write() {
    let (client, ns) = setup("apply-hook-invalid").await;
    let yaml = format!(
        "{}---\n{}---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{generateName: report-, namespace: {ns}, \
         annotations: {{argocd.argoproj.io/hook: PostSync}}}}\nbogus: 1\n",
        job(&ns, "migrate-", "argocd.argoproj.io/hook: PreSync"),
        config_map(&ns, "app", "")
    );
    let error = run_err(
        &applier(&client, &ns),
        set(&yaml),
        &gitops_apply::ApplyOptions::default(),
    )
    .await;
    let gitops_apply::ApplyError::Hooks { errors } = &error else {
        panic!("not a hook problem: {error}");
    };
    assert_eq!(errors.len(), 1, "{error}");
    let text = format!(
        "{}: {}",
        errors[0],
        std::error::Error::source(&errors[0]).unwrap()
    );
    assert!(
        text.contains(&format!(
            "PostSync hook ConfigMap {ns}/report-: validating it"
        )),
        "{text}"
    );
    assert!(text.contains("bogus"), "{text}");
    // Nothing ran, nothing was written.
    assert!(jobs(&client, &ns).await.is_empty());
    let configs = dynamic::<ConfigMap>(&client, &ns);
    assert!(configs.get_opt("app").await.unwrap().is_none());
}

#[tokio::test]
async fn hooks_validate_in_a_namespace_the_set_creates_and_run_again_by_name() {
    let (client, ns) = setup("apply-hook-newns").await;
    let made = format!("{ns}-made");
    let yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {made}}}\n---\n{}---\n{}",
        config_map(&made, "app", ""),
        config_map(&made, "seed", "argocd.argoproj.io/hook: PostSync")
    );
    let applier = applier(&client, &ns);
    let configs = dynamic::<ConfigMap>(&client, &made);
    let mut uids = Vec::new();
    // The second run has nothing to sync: only RunHooks::Always runs its hooks.
    for options in [
        gitops_apply::ApplyOptions::default(),
        gitops_apply::ApplyOptions::default().with_run_hooks(gitops_apply::RunHooks::Always),
    ] {
        let mut events = Vec::new();
        let change_set = applier
            .apply_set_with_progress(
                set(&yaml),
                &options,
                &CancellationToken::new(),
                |progress| {
                    if let gitops_apply::ApplyProgress::Hook(run) = progress {
                        events.push((run.phase, run.outcome, run.id.name.clone()));
                    }
                },
            )
            .await
            .unwrap();
        // Each hook object is reported when created and when done.
        assert_eq!(
            events,
            [
                (SyncPhase::PostSync, HookOutcome::Running, "seed".to_owned()),
                (
                    SyncPhase::PostSync,
                    HookOutcome::Succeeded,
                    "seed".to_owned()
                ),
            ]
        );
        assert_eq!(change_set.hooks.len(), 1, "{change_set}");
        assert_eq!(change_set.hooks[0].outcome, HookOutcome::Succeeded);
        uids.push(configs.get("seed").await.unwrap().metadata.uid.unwrap());
    }
    assert_ne!(
        uids[0], uids[1],
        "BeforeHookCreation made the named hook anew"
    );
}

#[tokio::test]
async fn hooks_of_one_weight_run_together_and_a_lower_weight_runs_first() {
    let (client, ns) = setup("hook-weights").await;
    let yaml = format!(
        "{}---\n{}---\n{}",
        job(
            &ns,
            "first-",
            "argocd.argoproj.io/hook: PreSync, argocd.argoproj.io/sync-wave: \"-1\""
        ),
        job(&ns, "a-", "argocd.argoproj.io/hook: PreSync"),
        job(&ns, "b-", "argocd.argoproj.io/hook: PreSync"),
    );
    let task = spawn_phase(runner(&client, &ns), hooks(&yaml), SyncPhase::PreSync);
    let first = name_of(&job_appears(&client, &ns, "first-").await);
    // The hooks of weight 0 wait for the one of weight -1.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let names: Vec<String> = jobs(&client, &ns).await.iter().map(name_of).collect();
    assert_eq!(names, std::slice::from_ref(&first));
    complete_job(&client, &ns, &first).await;
    let a = name_of(&job_appears(&client, &ns, "a-").await);
    let b = name_of(&job_appears(&client, &ns, "b-").await);
    fail_job(&client, &ns, &a).await;
    let (runs, result) = task.await.unwrap();
    assert!(
        matches!(result, Err(HookError::Failed { .. })),
        "{result:?}"
    );
    let outcomes: Vec<(String, HookOutcome, String)> = runs
        .iter()
        .map(|r| (r.id.name.clone(), r.outcome, r.message.clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (first, HookOutcome::Succeeded, String::new()),
            (
                a,
                HookOutcome::Failed,
                "Job has reached the specified backoff limit".to_owned()
            ),
            (
                b,
                HookOutcome::Running,
                "left running: another hook of its phase failed".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn no_hook_runs_when_objects_of_the_set_fail_validation() {
    let (client, ns) = setup("apply-hook-novalid").await;
    let yaml = format!(
        "{}---\n{}---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: broken, namespace: {ns}}}\nbogus: 1\n",
        config_map(&ns, "seed", "argocd.argoproj.io/hook: PreSync"),
        config_map(&ns, "report", "argocd.argoproj.io/hook: SyncFail")
    );
    let error = run_err(
        &applier(&client, &ns),
        set(&yaml),
        &gitops_apply::ApplyOptions::default(),
    )
    .await;
    assert!(
        matches!(error, gitops_apply::ApplyError::Invalid { .. }),
        "{error}"
    );
    let outcomes: Vec<(SyncPhase, HookOutcome)> = error
        .change_set()
        .unwrap()
        .hooks
        .iter()
        .map(|r| (r.phase, r.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            (SyncPhase::PreSync, HookOutcome::NotRun),
            (SyncPhase::SyncFail, HookOutcome::NotRun)
        ]
    );
    let configs = dynamic::<ConfigMap>(&client, &ns);
    assert!(configs.get_opt("seed").await.unwrap().is_none());
    assert!(configs.get_opt("report").await.unwrap().is_none());
}

#[tokio::test]
async fn a_run_with_nothing_to_sync_runs_no_hook_and_sends_no_request_for_them() {
    let (client, ns) = setup("apply-hook-insync").await;
    let applier = applier(&client, &ns);
    let options = gitops_apply::ApplyOptions::default();
    let plain = config_map(&ns, "app", "");
    let with_hook = format!(
        "{plain}---\n{}",
        config_map(&ns, "seed", "argocd.argoproj.io/hook: PreSync")
    );
    let first = run(&applier, set(&with_hook), &options).await;
    assert_eq!(first.hooks[0].outcome, HookOutcome::Succeeded);
    // Nothing to sync: the hook is listed as not run, and the run sends what a run of the
    // same set without the hook sends.
    let configs = dynamic::<ConfigMap>(&client, &ns);
    let uid = configs.get("seed").await.unwrap().metadata.uid;
    let again = run(&applier, set(&with_hook), &options).await;
    assert_eq!(again.hooks.len(), 1);
    assert_eq!(again.hooks[0].outcome, HookOutcome::NotRun);
    assert_eq!(configs.get("seed").await.unwrap().metadata.uid, uid);
    let without = run(&applier, set(&plain), &options).await;
    assert_eq!(again.request_counts, without.request_counts);
    assert_eq!(again.request_counts.writes, 0);
    // Never: not even a run with something to sync runs them.
    let changed = with_hook.replace("{k: v}", "{k: changed}");
    let never = run(
        &applier,
        set(&changed),
        &options
            .clone()
            .with_run_hooks(gitops_apply::RunHooks::Never),
    )
    .await;
    assert_eq!(never.hooks[0].outcome, HookOutcome::NotRun);
    assert_eq!(configs.get("seed").await.unwrap().metadata.uid, uid);
}

#[tokio::test]
async fn the_target_namespace_is_created_before_the_presync_hooks() {
    let (client, ns) = setup("apply-hook-target").await;
    let target = format!("{ns}-target");
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {k: v}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: seed, \
         annotations: {argocd.argoproj.io/hook: PreSync}}\ndata: {k: v}\n";
    let change_set = run(
        &applier(&client, &ns),
        set(yaml),
        &gitops_apply::ApplyOptions::default()
            .with_target_namespace(target.clone())
            .with_create_target_namespace(true),
    )
    .await;
    assert_eq!(change_set.hooks[0].outcome, HookOutcome::Succeeded);
    assert_eq!(
        change_set.hooks[0].id.namespace.as_deref(),
        Some(target.as_str())
    );
    let configs = dynamic::<ConfigMap>(&client, &target);
    assert!(configs.get_opt("seed").await.unwrap().is_some());
    assert!(configs.get_opt("app").await.unwrap().is_some());
}

#[tokio::test]
async fn a_sync_hook_runs_with_its_wave_before_the_next_wave_is_written() {
    let (client, ns) = setup("apply-sync-waves").await;
    let yaml = [
        config_map(&ns, "first", ""),
        // No wave annotation: wave 0, after "first" and before "second".
        job(&ns, "zero-", "argocd.argoproj.io/hook: Sync"),
        job(
            &ns,
            "one-",
            "argocd.argoproj.io/hook: Sync, argocd.argoproj.io/sync-wave: \"1\"",
        ),
        config_map(&ns, "second", "argocd.argoproj.io/sync-wave: \"1\""),
        config_map(&ns, "third", "argocd.argoproj.io/sync-wave: \"2\""),
    ]
    .join("---\n");
    let configs = dynamic::<ConfigMap>(&client, &ns);
    let exists = async |name: &str| configs.get_opt(name).await.unwrap().is_some();
    let task = spawn_apply(
        applier(&client, &ns),
        yaml,
        gitops_apply::ApplyOptions::default(),
    );
    // The hook of wave 0 runs once wave 0 is written, before wave 1.
    let zero = name_of(&job_appears(&client, &ns, "zero-").await);
    assert!(exists("first").await);
    assert!(!exists("second").await && !exists("third").await);
    complete_job(&client, &ns, &zero).await;
    // The hook of wave 1 runs once wave 1 is written, before wave 2.
    let one = name_of(&job_appears(&client, &ns, "one-").await);
    assert!(exists("second").await);
    assert!(!exists("third").await);
    assert!(!task.is_finished());
    complete_job(&client, &ns, &one).await;
    let change_set = task.await.unwrap().unwrap();
    assert!(exists("third").await);
    let runs: Vec<(SyncPhase, HookOutcome, &str)> = change_set
        .hooks
        .iter()
        .map(|r| (r.phase, r.outcome, r.id.name.as_str()))
        .collect();
    assert_eq!(
        runs,
        [
            (SyncPhase::Sync, HookOutcome::Succeeded, zero.as_str()),
            (SyncPhase::Sync, HookOutcome::Succeeded, one.as_str()),
        ]
    );
}

#[tokio::test]
async fn a_failed_sync_hook_stops_the_later_waves_and_prunes_nothing() {
    let (client, ns) = setup("apply-sync-wave-fail").await;
    let applier = applier(&client, &ns);
    let configs = dynamic::<ConfigMap>(&client, &ns);
    run(
        &applier,
        set(&config_map(&ns, "old", "")),
        &Default::default(),
    )
    .await;
    let yaml = [
        config_map(&ns, "first", ""),
        job(&ns, "check-", "argocd.argoproj.io/hook: Sync"),
        config_map(&ns, "later", "argocd.argoproj.io/sync-wave: \"1\""),
    ]
    .join("---\n");
    let task = spawn_apply(applier, yaml, gitops_apply::ApplyOptions::default());
    let check = name_of(&job_appears(&client, &ns, "check-").await);
    fail_job(&client, &ns, &check).await;
    let error = task.await.unwrap().unwrap_err();
    let gitops_apply::ApplyError::Hook { source, change_set } = &error else {
        panic!("{error:?}");
    };
    assert!(source.to_string().contains(&check), "{source}");
    let later = change_set
        .changes
        .iter()
        .find(|c| c.id.name == "later")
        .unwrap();
    assert_eq!(later.action, gitops_apply::ObjectAction::Skipped);
    assert!(configs.get_opt("later").await.unwrap().is_none());
    // A failed sync prunes nothing, and forgets nothing it wrote.
    assert!(configs.get_opt("old").await.unwrap().is_some());
    let mut ids = inventory_ids(&client, &ns).await;
    ids.sort();
    assert_eq!(
        ids,
        [
            format!("{ns}_first__ConfigMap"),
            format!("{ns}_old__ConfigMap")
        ]
    );
}

#[tokio::test]
async fn delete_all_deletes_the_hook_objects_of_its_inventory_and_no_other() {
    let (client, ns) = setup("delete-all-hooks").await;
    let configs = dynamic::<ConfigMap>(&client, &ns);
    let exists = async |name: &str| configs.get_opt(name).await.unwrap().is_some();
    let with_hook = |app: &str, hook: &str| {
        format!(
            "{}---\n{}",
            config_map(&ns, app, ""),
            config_map(&ns, hook, "argocd.argoproj.io/hook: PreSync")
        )
    };
    // Two inventories in one namespace, each with a hook its delete policy keeps.
    let ours = applier(&client, &ns);
    let other = gitops_apply::Applier::builder(
        client.clone(),
        gitops_apply::ConfigMapInventory::new(&ns, "other").unwrap(),
    )
    .build();
    let options = gitops_apply::ApplyOptions::default();
    run(&ours, set(&with_hook("app", "seed")), &options).await;
    run(&other, set(&with_hook("other-app", "other-seed")), &options).await;
    assert!(exists("seed").await && exists("other-seed").await);

    let deleted = ours.delete_all(&CancellationToken::new()).await.unwrap();
    let seed = deleted
        .changes
        .iter()
        .find(|c| c.id.name == "seed")
        .unwrap_or_else(|| panic!("no entry for the hook: {deleted}"));
    assert_eq!(
        (seed.action, seed.id.namespace.as_deref()),
        (gitops_apply::ObjectAction::Pruned, Some(ns.as_str()))
    );
    assert!(!exists("seed").await && !exists("app").await);
    // The other inventory's objects and hook stay.
    assert!(exists("other-seed").await && exists("other-app").await);
    assert!(inventory_ids(&client, &ns).await.is_empty());
}
