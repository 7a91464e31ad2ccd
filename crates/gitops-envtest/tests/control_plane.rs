//! The control plane against itself: apply, CRDs, namespace deletion, clean stops.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gitops_envtest::ControlPlane;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::wait::{await_condition, conditions};

fn process_alive(pid: u32) -> bool {
    // A zombie has given up everything but its table entry; count it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "{what} did not happen in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn server_side_applies_a_config_map_and_reads_it_back() {
    let control_plane = gitops_envtest::shared().await.unwrap();
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane.create_namespace("apply").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let desired = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"color": "blue"},
    });
    api.patch(
        "settings",
        &PatchParams::apply("gitops-envtest-test"),
        &Patch::Apply(&desired),
    )
    .await
    .unwrap();
    let read = api.get("settings").await.unwrap();
    assert_eq!(read.data.unwrap()["color"], "blue");
    let managers: Vec<_> = read
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["gitops-envtest-test"]);
}

#[tokio::test]
async fn establishes_a_crd_and_serves_its_custom_resources() {
    let control_plane = gitops_envtest::shared().await.unwrap();
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane.create_namespace("crd").await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.envtest.gitops.rs"},
        "spec": {
            "group": "envtest.gitops.rs",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                }}}
            }]
        }
    });
    crds.patch(
        "widgets.envtest.gitops.rs",
        &PatchParams::apply("gitops-envtest-test"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(
            crds,
            "widgets.envtest.gitops.rs",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("the CRD is Established within 30 s")
    .unwrap();

    let resource = ApiResource {
        group: "envtest.gitops.rs".into(),
        version: "v1".into(),
        api_version: "envtest.gitops.rs/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
    let widget = serde_json::json!({
        "apiVersion": "envtest.gitops.rs/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 3}
    });
    // Discovery of a new CRD can lag behind Established by a moment.
    let start = Instant::now();
    loop {
        match widgets
            .patch(
                "w",
                &PatchParams::apply("gitops-envtest-test"),
                &Patch::Apply(&widget),
            )
            .await
        {
            Ok(_) => break,
            Err(e) if start.elapsed() < Duration::from_secs(10) => {
                eprintln!("retrying: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("applying a Widget: {e}"),
        }
    }
    assert_eq!(widgets.get("w").await.unwrap().data["spec"]["size"], 3);
}

#[tokio::test]
async fn deletes_a_namespace_with_its_contents() {
    let control_plane = gitops_envtest::shared().await.unwrap();
    let client = control_plane.client().await.unwrap();
    let namespace = control_plane.create_namespace("delete").await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    config_maps
        .patch(
            "doomed",
            &PatchParams::apply("gitops-envtest-test"),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "doomed"}
            })),
        )
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(client);
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .unwrap();
    // The namespace controller empties the namespace, then removes its finalizer.
    let start = Instant::now();
    while namespaces.get_opt(&namespace).await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "namespace {namespace} still exists after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn stopping_leaves_no_process_and_no_directory() {
    let control_plane = ControlPlane::builder().start().await.unwrap();
    let pids = control_plane.pids();
    assert_eq!(
        pids.len(),
        3,
        "etcd, kube-apiserver, kube-controller-manager"
    );
    let dir: PathBuf = control_plane.data_dir().unwrap().to_owned();
    assert!(dir.join("kubeconfig").is_file());
    control_plane.stop();
    for pid in pids {
        assert!(!process_alive(pid), "process {pid} is still running");
    }
    assert!(!dir.exists(), "{} still exists", dir.display());
}

/// The variable that marks the child process of `a_process_that_dies_leaves_nothing_behind`.
const WATCHDOG_CHILD: &str = "GITOPS_ENVTEST_WATCHDOG_CHILD";

/// Not a test of its own: a helper that `a_process_that_dies_leaves_nothing_behind` runs in a
/// child process (this test binary, `--exact watchdog_child --ignored`, with [`WATCHDOG_CHILD`]
/// set). It starts a control plane, prints its pids and directory, and exits without dropping
/// it. Run any other way, it fails instead of passing without checking anything.
#[tokio::test]
#[ignore = "a helper, run only by a_process_that_dies_leaves_nothing_behind"]
async fn watchdog_child() {
    assert!(
        std::env::var_os(WATCHDOG_CHILD).is_some(),
        "watchdog_child is a helper: run a_process_that_dies_leaves_nothing_behind instead"
    );
    let control_plane = ControlPlane::builder()
        .without_controller_manager()
        .start()
        .await
        .unwrap();
    let pids: Vec<String> = control_plane.pids().iter().map(u32::to_string).collect();
    println!(
        "CHILD pids={} dir={}",
        pids.join(","),
        control_plane.data_dir().unwrap().display()
    );
    std::process::exit(0);
}

#[tokio::test]
async fn a_process_that_dies_leaves_nothing_behind() {
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "watchdog_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WATCHDOG_CHILD, "1")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD ").map(|(_, rest)| rest))
        .unwrap_or_else(|| {
            panic!(
                "the child printed no CHILD line:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let (pids, dir) = line.split_once(" dir=").unwrap();
    let pids: Vec<u32> = pids
        .trim_start_matches("pids=")
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver");
    let dir = Path::new(dir).to_owned();
    eventually("the watchdog's clean-up", Duration::from_secs(10), || {
        pids.iter().all(|pid| !process_alive(*pid)) && !dir.exists()
    })
    .await;
}
