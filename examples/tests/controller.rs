//! The `controller` binary end to end against the local control plane: it prints and installs
//! the GitSync CRD, applies a GitSync, prunes on delete through its finalizer, and stops on
//! SIGTERM. What the reconciliation does in detail is tested with the kit, in gitops-sync's
//! `tests/controller.rs`.

use std::process::Command;
use std::time::Duration;

use gitops_examples::controller::{FINALIZER, GitSync, GitSyncSpec};
use gitops_sync::controller::{SourceSpec, SyncSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

/// How long any one expected state may take to appear.
const TIMEOUT: Duration = Duration::from_secs(60);

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

/// Polls until `check` gives `Some`; panics with `what` and the log after [`TIMEOUT`].
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    log: impl Fn() -> String,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; the controller's log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

#[tokio::test]
async fn the_binary_installs_the_crd_applies_prunes_on_delete_and_stops_on_sigterm() {
    let plane = gitops_envtest::shared().await.expect("the control plane");
    let client = plane.client().await.expect("a client");
    let ns = plane
        .create_namespace("gitsync-binary")
        .await
        .expect("a namespace");
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

    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(
        dir.path().join("a.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-binary\ndata:\n  key: present\n",
    )
    .expect("a file");
    let syncs: Api<GitSync> = Api::namespaced(client.clone(), &ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let spec = GitSyncSpec {
        sync: SyncSpec {
            source: SourceSpec {
                local_path: Some(dir.path().to_str().expect("UTF-8").to_owned()),
                ..SourceSpec::default()
            },
            interval: "1h".into(),
            target_namespace: Some(ns.clone()),
            ..SyncSpec::default()
        },
    };
    // The CRD is installed by the binary: create the GitSync once it is served.
    eventually("the GitSync to be created", read_log, || async {
        syncs
            .create(&PostParams::default(), &GitSync::new("app", spec.clone()))
            .await
            .ok()
    })
    .await;
    let sync = eventually("Ready", read_log, || async {
        let sync = syncs.get("app").await.ok()?;
        sync.status.as_ref()?.is_ready().then_some(sync)
    })
    .await;
    assert!(sync.finalizers().iter().any(|f| f == FINALIZER));
    let map = maps.get("from-binary").await.expect("applied");
    assert_eq!(map.data.unwrap_or_default()["key"], "present");

    // Deleting while it runs prunes through the finalizer.
    syncs
        .delete("app", &DeleteParams::default())
        .await
        .expect("deleted");
    eventually("the prune on delete", read_log, || async {
        let gone = syncs.get_opt("app").await.ok()?.is_none()
            && maps.get_opt("from-binary").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;

    let pid = guard.0.as_ref().expect("running").id().to_string();
    // The shell's built-in kill: no procps needed.
    let status = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .expect("sh runs");
    assert!(status.success());
    let exit = eventually("the exit on SIGTERM", read_log, || {
        let exit = guard.0.as_mut().expect("running").try_wait().expect("wait");
        async move { exit }
    })
    .await;
    guard.0 = None;
    assert!(exit.success(), "exit {exit:?}; log:\n{}", read_log());
    let log = read_log();
    assert!(log.contains("GitSync CRD installed"), "{log}");
    assert!(log.contains("GitSync controller stopped"), "{log}");
}
