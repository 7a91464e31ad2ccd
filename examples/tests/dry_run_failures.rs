//! End to end: `sync --dry-run` exits 1 when the real run would fail (issue #13, defect 3),
//! as the real run does, and names the object and why.

use gitops_envtest::ControlPlane;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

mod common;
use common::run_sync;

/// An immutable ConfigMap whose data the repository changes: the real run fails (exit 1), and
/// so does the dry run, which names the immutable field instead of promising a change.
#[tokio::test]
async fn a_dry_run_that_would_fail_exits_1() {
    let control_plane = ControlPlane::start().await.unwrap();
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane.create_namespace("dry-run").await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let live: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "frozen"},
        "immutable": true,
        "data": {"color": "blue"},
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &live)
        .await
        .unwrap();

    let repository = tempfile::tempdir().unwrap();
    std::fs::write(
        repository.path().join("frozen.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\n  namespace: {namespace}\nimmutable: true\ndata:\n  color: green\n"
        ),
    )
    .unwrap();
    let flags: Vec<String> = vec![
        "--path".into(),
        repository.path().display().to_string(),
        "--inventory".into(),
        format!("{namespace}/inventory"),
        "--kubeconfig".into(),
        control_plane.kubeconfig_path().display().to_string(),
    ];

    let plan = run_sync(&flags, &["--dry-run"]).await;
    assert_eq!(plan.code, Some(1), "{}\n{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("frozen"), "{}", plan.stdout);
    assert!(plan.stdout.contains("immutable"), "{}", plan.stdout);
    let plan_json = run_sync(&flags, &["--dry-run", "--output", "json"]).await;
    assert_eq!(plan_json.code, Some(1), "{}", plan_json.stderr);

    let real = run_sync(&flags, &[]).await;
    assert_eq!(real.code, Some(1), "{}\n{}", real.stdout, real.stderr);
    let still = config_maps.get("frozen").await.unwrap();
    assert_eq!(still.data.unwrap()["color"], "blue");
}
