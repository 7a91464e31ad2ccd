//! A real Helm chart's hooks, rendered by the real helm with `HookPolicy::Include`, run in
//! their sync phases against the real control plane: the pre-install Job (mapped to PreSync)
//! completes before the release's objects are written and is deleted on success, the test Pod is
//! never applied, and neither is in the inventory.

use std::path::Path;
use std::time::Duration;

use gitops_apply::{ObjectAction, SyncPhase};
use gitops_envtest::Tool;
use gitops_render::{HelmRenderer, HookPolicy, RenderRequest, Renderer, SourceRoot};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio_util::sync::CancellationToken;

mod common;
use common::cluster::{complete_job, config_map};
use common::{applier, inventory_ids, set_of, setup};

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A chart with a ConfigMap, a pre-install/pre-upgrade Job deleted when it succeeds, and a test
/// Pod.
fn chart(root: &Path) {
    write(
        root,
        "app/Chart.yaml",
        "apiVersion: v2\nname: app\nversion: 0.1.0\n",
    );
    write(
        root,
        "app/templates/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  greeting: hello\n",
    );
    write(
        root,
        "app/templates/migrate.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ .Release.Name }}-migrate\n  annotations:\n    \"helm.sh/hook\": pre-install,pre-upgrade\n    \"helm.sh/hook-weight\": \"-5\"\n    \"helm.sh/hook-delete-policy\": before-hook-creation,hook-succeeded\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: migrate\n        image: busybox\n",
    );
    write(
        root,
        "app/templates/tests/ping.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}-ping\n  annotations:\n    \"helm.sh/hook\": test\nspec:\n  restartPolicy: Never\n  containers:\n  - name: ping\n    image: busybox\n",
    );
}

#[tokio::test]
async fn a_real_charts_pre_install_job_runs_before_the_release_and_its_test_never() {
    let (client, ns) = setup("helm-hooks").await;
    let helm = tokio::task::spawn_blocking(|| gitops_envtest::tools::ensure(Tool::Helm))
        .await
        .unwrap()
        .expect("the pinned helm");
    let dir = tempfile::tempdir().unwrap();
    chart(dir.path());
    let request = RenderRequest::new(SourceRoot::new(dir.path()).unwrap(), "app");
    let rendered = HelmRenderer::new(helm, "shop")
        .namespace(ns.clone())
        .with_hooks(HookPolicy::Include)
        .render(&request)
        .await
        .expect("helm renders the chart");
    // The test Pod is never rendered as an object, the Job is, with its annotations.
    let kinds: Vec<&str> = rendered.iter().map(|m| m.kind()).collect();
    assert_eq!(kinds, ["ConfigMap", "Job"], "{rendered:?}");

    let applier = applier(&client, &ns);
    // helm template leaves namespaces out: the release's namespace is the target namespace.
    let options = gitops_apply::ApplyOptions::default().with_target_namespace(ns.clone());
    let set = set_of(rendered);
    let plan = applier
        .plan(&set, &options.clone(), &CancellationToken::new())
        .await
        .expect("a plan");
    assert_eq!(plan.summary().create, 1, "{plan}");
    let pre_sync: Vec<_> = plan.hooks().in_phase(SyncPhase::PreSync).collect();
    assert_eq!(pre_sync.len(), 1, "{}", plan.hooks());
    assert_eq!(plan.hooks().len(), 1, "{}", plan.hooks());
    let hooks = plan.hooks().to_string();

    let sync = tokio::spawn({
        let applier = applier.clone();
        let options = options.clone();
        async move {
            applier
                .apply_set(set, &options.clone(), &CancellationToken::new())
                .await
        }
    });
    // The Job is created; the release's ConfigMap waits for it.
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let mut waited = Duration::ZERO;
    while jobs.get_opt("shop-migrate").await.unwrap().is_none() {
        if sync.is_finished() {
            panic!(
                "the sync ended first: {:?}",
                sync.await.unwrap().map(|c| c.to_string())
            );
        }
        assert!(
            waited < Duration::from_secs(30),
            "the hook Job never came; the plan's hooks: {hooks}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        config_map(&client, &ns, "shop-config").await.is_none(),
        "the release was written before its pre-install hook completed"
    );
    complete_job(&client, &ns, "shop-migrate").await;
    let change_set = sync.await.unwrap().expect("the sync succeeds");
    assert_eq!(change_set.count(ObjectAction::Created), 1, "{change_set}");
    assert!(config_map(&client, &ns, "shop-config").await.is_some());
    assert_eq!(change_set.hooks.len(), 1, "{change_set}");

    // hook-succeeded: the Job is deleted (its deletion may still be finishing).
    let mut waited = Duration::ZERO;
    while jobs
        .get_opt("shop-migrate")
        .await
        .unwrap()
        .is_some_and(|job| job.metadata.deletion_timestamp.is_none())
    {
        assert!(waited < Duration::from_secs(30), "the succeeded hook stays");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    // No test Pod, and the inventory lists the ConfigMap only.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    assert!(pods.get_opt("shop-ping").await.unwrap().is_none());
    assert_eq!(
        inventory_ids(&client, &ns).await,
        [format!("{ns}_shop-config__ConfigMap")]
    );
}
