//! The pinned helm and kustomize, built as their releases are: they report the pinned version,
//! and helm renders for the Kubernetes minor of the control plane, not its built-in v1.20.0.

use std::path::Path;
use std::process::Command;

use gitops_envtest::Tool;
use gitops_envtest::tools::{HELM_VERSION, KUBERNETES_VERSION, KUSTOMIZE_VERSION};

fn run(binary: &Path, args: &[&str]) -> String {
    let output = Command::new(binary)
        .args(args)
        .env("HELM_CACHE_HOME", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{binary:?} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn helm_reports_the_pinned_version() {
    let helm = gitops_envtest::tools::ensure(Tool::Helm).unwrap();
    assert_eq!(
        run(&helm, &["version", "--template", "{{.Version}}"]),
        HELM_VERSION
    );
}

#[test]
fn helm_renders_for_the_kubernetes_minor_of_the_control_plane() {
    let helm = gitops_envtest::tools::ensure(Tool::Helm).unwrap();
    let chart = tempfile::tempdir().unwrap();
    // A chart that only installs on a recent cluster, printing what helm believes the cluster is.
    write(
        chart.path(),
        "Chart.yaml",
        "apiVersion: v2\nname: capabilities\nversion: 0.1.0\nkubeVersion: \">=1.23.0-0\"\n",
    );
    write(
        chart.path(),
        "templates/configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capabilities\ndata:\n  \
         version: {{ .Capabilities.KubeVersion.Version | quote }}\n  \
         minor: {{ .Capabilities.KubeVersion.Minor | quote }}\n",
    );
    let rendered = run(
        &helm,
        &["template", "release", chart.path().to_str().unwrap()],
    );
    let minor = KUBERNETES_VERSION.split('.').nth(1).unwrap();
    assert!(
        rendered.contains(&format!("version: \"v1.{minor}.0\"")),
        "{rendered}"
    );
    assert!(
        rendered.contains(&format!("minor: \"{minor}\"")),
        "{rendered}"
    );
}

#[test]
fn kustomize_reports_the_pinned_version() {
    let kustomize = gitops_envtest::tools::ensure(Tool::Kustomize).unwrap();
    assert_eq!(run(&kustomize, &["version"]).trim(), KUSTOMIZE_VERSION);
}
