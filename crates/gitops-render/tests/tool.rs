//! Finding the real pinned kustomize and helm (built by gitops-envtest, which only the tests
//! use): on a private `PATH`, through their variables, explicitly; their versions; and a render
//! with each renderer made by `locate`.

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::{tool, write};
use gitops_render::tool::{FoundBy, Tool, ToolLocator};
use gitops_render::{
    AutoRenderer, HelmRenderer, KustomizeRenderer, PINNED_HELM_VERSION, PINNED_KUSTOMIZE_VERSION,
    PlainRenderer, RenderRequest, Renderer, SourceRoot, ToolLimits,
};

/// A private `PATH` directory holding links named `kustomize` and `helm` to the pinned tools.
async fn private_bin() -> tempfile::TempDir {
    let bin = tempfile::tempdir().unwrap();
    let kustomize = tool(gitops_envtest::Tool::Kustomize).await;
    let helm = tool(gitops_envtest::Tool::Helm).await;
    std::os::unix::fs::symlink(kustomize, bin.path().join("kustomize")).unwrap();
    std::os::unix::fs::symlink(helm, bin.path().join("helm")).unwrap();
    bin
}

fn on_path(tool: Tool, bin: &Path) -> ToolLocator {
    ToolLocator::new(tool)
        .without_variable()
        .with_search_path(OsString::from(format!("/nonexistent:{}", bin.display())))
}

#[tokio::test]
async fn the_pinned_tools_are_found_on_path_and_report_their_versions() {
    let bin = private_bin().await;
    let limits = ToolLimits::new();
    for (tool, pinned) in [
        (Tool::Kustomize, PINNED_KUSTOMIZE_VERSION),
        (Tool::Helm, PINNED_HELM_VERSION),
    ] {
        let found = on_path(tool, bin.path()).locate().unwrap();
        assert_eq!(found.path(), bin.path().join(tool.binary_name()));
        assert_eq!(found.found_by(), FoundBy::SearchPath);
        assert_eq!(found.version(&limits).await.unwrap(), pinned);
        found
            .require_version(tool.pinned_version(), &limits)
            .await
            .unwrap();
        let err = found.require_version("v0.0.1", &limits).await.unwrap_err();
        assert!(
            err.to_string()
                .ends_with(&format!("is {pinned}, v0.0.1 is required")),
            "{err}"
        );
    }
}

#[tokio::test]
async fn renderers_made_by_locate_render_with_the_tool_found() {
    let bin = private_bin().await;
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in [
        (
            "app/kustomization.yaml",
            "resources: [cm.yaml]\nnamePrefix: k-\n",
        ),
        (
            "app/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n",
        ),
        (
            "chart/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 0.1.0\n",
        ),
        (
            "chart/templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\n",
        ),
    ] {
        write(dir.path(), file, text);
    }
    let request = |path: &str| RenderRequest::new(SourceRoot::new(dir.path()).unwrap(), path);

    // Explicit paths, as a program's --kustomize and --helm flags give them.
    let kustomize = KustomizeRenderer::locate(Some(&bin.path().join("kustomize"))).unwrap();
    let objects = kustomize.render(&request("app")).await.unwrap();
    assert_eq!(objects[0].name(), "k-settings");
    let helm = HelmRenderer::locate(Some(&bin.path().join("helm"))).unwrap();
    let objects = helm.render(&request("chart")).await.unwrap();
    assert_eq!(objects[0].name(), "chart-settings");

    // The automatic renderer with both found the same way.
    let auto = AutoRenderer::new(PlainRenderer::new())
        .with_located_tools(
            Some(&bin.path().join("kustomize")),
            Some(&bin.path().join("helm")),
        )
        .unwrap();
    assert_eq!(
        auto.render(&request("app")).await.unwrap()[0].name(),
        "k-settings"
    );
    assert_eq!(
        auto.render(&request("chart")).await.unwrap()[0].name(),
        "chart-settings"
    );

    // A wrong explicit path is refused when the renderer is made, naming it.
    let wrong = bin.path().join("kustomize-missing");
    let err = AutoRenderer::new(PlainRenderer::new())
        .with_located_tools(Some(&wrong), None)
        .unwrap_err();
    assert!(err.to_string().contains("kustomize-missing"), "{err}");
}
