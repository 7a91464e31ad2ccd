//! The Helm renderer against the pinned helm binary: a chart with values files, inline values,
//! CRDs, kube version and API versions; vendored and missing dependencies; every refusal.

mod common;

use std::path::Path;

use common::{CountingServer, copy_fixture, fixtures, tool, write};
use gitops_envtest::Tool;
use gitops_render::{
    AutoRenderer, HelmError, HelmRenderer, HookPolicy, PlainRenderer, RenderError, RenderProgress,
    RenderRequest, Renderer, SourceRoot, SubstituteError, Substitution, ToolLimits,
};
use serde_json::json;

async fn helm(release: &str) -> HelmRenderer {
    HelmRenderer::new(tool(Tool::Helm).await, release)
}

fn request(root: &Path, path: &str) -> RenderRequest {
    RenderRequest::new(SourceRoot::new(root).unwrap(), path)
}

#[tokio::test]
async fn renders_a_chart_with_values_crds_and_capabilities() {
    let renderer = helm("shop")
        .await
        .namespace("retail")
        .values_file("../../env/prod-values.yaml")
        .values(json!({"greeting": "bonjour", "extra": "yes"}))
        .kube_version("1.37.2")
        .api_version("example.com/v1/Widget");
    let objects = renderer
        .render(&request(&fixtures().join("helm"), "charts/web"))
        .await
        .unwrap();
    let summary: Vec<String> = objects
        .iter()
        .map(|o| format!("{} {} @ {}", o.kind(), o.name(), o.origin()))
        .collect();
    assert_eq!(
        summary,
        [
            "CustomResourceDefinition widgets.example.com @ charts/web/crds/widgets.yaml",
            "ConfigMap shop-config @ charts/web/templates/config.yaml",
            "ConfigMap shop-extra @ charts/web/templates/config.yaml (document 2)",
            "Deployment shop-web @ charts/web/templates/deployment.yaml",
        ]
    );
    let config = objects[1].object();
    assert_eq!(
        config["data"],
        json!({"greeting": "bonjour", "kubeVersion": "v1.37.2", "hasWidgets": "true"})
    );
    let deployment = &objects[3];
    assert_eq!(deployment.namespace(), Some("retail"));
    assert_eq!(deployment.object()["spec"]["replicas"], 3);
    assert_eq!(
        deployment.object()["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );

    let without_crds = helm("shop").await.include_crds(false);
    let objects = without_crds
        .render(&request(&fixtures().join("helm"), "charts/web"))
        .await
        .unwrap();
    assert!(
        objects
            .iter()
            .all(|o| o.kind() != "CustomResourceDefinition")
    );
    assert_eq!(objects[0].object()["data"]["hasWidgets"], "false");
}

#[tokio::test]
async fn dependencies_must_be_vendored() {
    let renderer = helm("r").await;
    let err = renderer
        .render(&request(&fixtures().join("helm"), "charts/needs-deps"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RenderError::Helm(e) if matches!(**e, HelmError::DependencyNotVendored { .. })),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "charts/needs-deps/Chart.yaml: dependency \"redis\" (from \"https://charts.example.com/stable\") is not vendored in charts/; run `helm dependency build` and commit charts/, rendering never downloads"
    );

    // Vendored as a directory: rendered with the parent, offline.
    let dir = copy_fixture("helm");
    write(
        dir.path(),
        "charts/needs-deps/charts/redis/Chart.yaml",
        "apiVersion: v2\nname: redis\nversion: 18.0.0\n",
    );
    write(
        dir.path(),
        "charts/needs-deps/charts/redis/templates/svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}-redis\nspec:\n  ports:\n  - port: 6379\n",
    );
    let objects = renderer
        .render(&request(dir.path(), "charts/needs-deps"))
        .await
        .unwrap();
    let origins: Vec<String> = objects.iter().map(|o| o.origin().to_string()).collect();
    assert_eq!(
        origins,
        [
            // helm orders by kind: ConfigMap before Service.
            "charts/needs-deps/templates/cm.yaml",
            "charts/needs-deps/charts/redis/templates/svc.yaml",
        ]
    );
}

#[tokio::test]
async fn refuses_values_files_outside_the_root_and_surfaces_helm_errors() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "values.yaml", "replicaCount: 9\n");
    let dir = copy_fixture("helm");
    let name = outside
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    for (file, expected) in [
        (
            format!("../../../{name}/values.yaml"),
            "the path leaves the source root",
        ),
        (
            outside.path().join("values.yaml").display().to_string(),
            "absolute paths are refused",
        ),
        (
            "missing.yaml".to_owned(),
            "charts/web/missing.yaml: not found in the source root",
        ),
    ] {
        let err = helm("r")
            .await
            .values_file(&file)
            .render(&request(dir.path(), "charts/web"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RenderError::Helm(e) if matches!(**e, HelmError::ValuesFile { .. })),
            "{err}"
        );
        assert!(err.to_string().contains(expected), "{file}: {err}");
    }

    std::os::unix::fs::symlink(
        outside.path().join("values.yaml"),
        dir.path().join("env/link.yaml"),
    )
    .unwrap();
    let err = helm("r")
        .await
        .values_file("../../env/link.yaml")
        .render(&request(dir.path(), "charts/web"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("symbolic link points outside"),
        "{err}"
    );

    // A link inside the chart that leaves the root.
    std::os::unix::fs::symlink(
        outside.path().join("values.yaml"),
        dir.path().join("charts/web/templates/x.yaml"),
    )
    .unwrap();
    let err = helm("r")
        .await
        .render(&request(dir.path(), "charts/web"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("charts/web/templates/x.yaml: symbolic link points outside"),
        "{err}"
    );

    // helm's own error, with the chart path, and no absolute paths.
    write(
        dir.path(),
        "charts/broken/Chart.yaml",
        "apiVersion: v2\nname: broken\nversion: 0.1.0\n",
    );
    write(
        dir.path(),
        "charts/broken/templates/bad.yaml",
        "metadata:\n  name: {{ .Values.name | nosuchfunc }}\n",
    );
    let err = helm("r")
        .await
        .render(&request(dir.path(), "charts/broken"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("helm template r charts/broken: "),
        "{text}"
    );
    assert!(text.contains("nosuchfunc"), "{text}");
    assert!(!text.contains(&dir.path().display().to_string()), "{text}");

    let err = helm("r")
        .await
        .render(&request(dir.path(), "env"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "env: not a Helm chart (no Chart.yaml)");
}

#[tokio::test]
async fn substitution_applies_to_each_rendered_template_before_validation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "chart/Chart.yaml",
        "apiVersion: v2\nname: sub\nversion: 0.1.0\n",
    );
    write(
        d,
        "chart/templates/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-${ENV}\n  namespace: ${NS}\nspec:\n  replicas: ${REPLICAS}\n  template:\n    metadata:\n      annotations:\n        quoted: \"${REPLICAS}\"\n",
    );
    write(
        d,
        "chart/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\nspec:\n  k: ${VALUE}\n",
    );
    let substitution = Substitution::new()
        .with_variable("ENV", "prod")
        .with_variable("NS", "shop")
        .with_variable("REPLICAS", "3")
        .strict(true);
    let renderer = helm("r")
        .await
        .limits(ToolLimits::new().with_timeout(std::time::Duration::from_secs(60)));
    let err = renderer
        .render(
            &request(d, "chart")
                .with_substitution(substitution.clone().with_variable("VALUE", "a: b")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RenderError::Substitute(e) if matches!(**e, SubstituteError::Structure { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("ConfigMap cm from chart/templates/cm.yaml: at /spec/k: "),
        "{err}"
    );
    let err = renderer
        .render(&request(d, "chart").with_substitution(substitution.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ConfigMap cm from chart/templates/cm.yaml: variables not set (strict mode): VALUE"
    );
    let objects = renderer
        .render(&request(d, "chart").with_substitution(substitution.with_variable("VALUE", "true")))
        .await
        .unwrap();
    assert_eq!(objects[0].object()["spec"]["k"], true);
    let deployment = &objects[1];
    assert_eq!(deployment.id().to_string(), "shop_r-prod_apps_Deployment");
    assert_eq!(deployment.object()["spec"]["replicas"], 3);
    assert_eq!(
        deployment.object()["spec"]["template"]["metadata"]["annotations"]["quoted"],
        "3"
    );
    assert_eq!(
        deployment.origin().to_string(),
        "chart/templates/deploy.yaml"
    );
}

#[tokio::test]
async fn values_schemas_never_reach_the_network_or_the_host() {
    let server = CountingServer::start(r#"{"type": "object"}"#);
    let url = server.url("/schema.json");
    let helm_binary = tool(gitops_envtest::Tool::Helm).await;
    let renderer = helm("r").await;
    let dir = copy_fixture("helm");
    let d = dir.path();
    let chart = "charts/web";
    // Refs inside the schema and an embedded draft: helm validates offline.
    write(
        d,
        "charts/web/values.schema.json",
        r##"{"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"replicaCount": {"$ref": "#/definitions/count"}}, "definitions": {"count": {"type": "integer"}}}"##,
    );
    renderer.render(&request(d, chart)).await.unwrap();

    let refused = |err: &RenderError| match err {
        RenderError::Helm(e) => match &**e {
            HelmError::SchemaReference {
                file, reference, ..
            } => Some((file.to_string_lossy().into_owned(), reference.clone())),
            _ => None,
        },
        _ => None,
    };
    // A remote $ref in the chart's own schema.
    write(
        d,
        "charts/web/values.schema.json",
        &format!(r#"{{"properties": {{"image": {{"$ref": "{url}"}}}}}}"#),
    );
    let err = renderer.render(&request(d, chart)).await.unwrap_err();
    assert_eq!(
        refused(&err),
        Some(("charts/web/values.schema.json".to_owned(), url.clone())),
        "{err}"
    );
    // A relative $ref: helm would read it from the host's root directory.
    write(
        d,
        "charts/web/values.schema.json",
        r#"{"$ref": "etc/passwd"}"#,
    );
    let err = renderer.render(&request(d, chart)).await.unwrap_err();
    assert!(refused(&err).is_some(), "{err}");
    // A $schema that helm's library does not embed would be fetched.
    write(
        d,
        "charts/web/values.schema.json",
        &format!(r#"{{"$schema": "{url}"}}"#),
    );
    let err = renderer.render(&request(d, chart)).await.unwrap_err();
    assert!(refused(&err).is_some(), "{err}");
    std::fs::remove_file(d.join("charts/web/values.schema.json")).unwrap();

    // A subchart packaged by helm itself, vendored as an archive, with a remote $ref.
    let sub = tempfile::tempdir().unwrap();
    write(
        sub.path(),
        "sub/Chart.yaml",
        "apiVersion: v2\nname: sub\nversion: 0.1.0\n",
    );
    write(
        sub.path(),
        "sub/values.schema.json",
        &format!(r#"{{"$ref": "{url}"}}"#),
    );
    let status = std::process::Command::new(&helm_binary)
        .arg("package")
        .arg(sub.path().join("sub"))
        .arg("--destination")
        .arg(d.join("charts/web/charts"))
        .env("HELM_CACHE_HOME", sub.path().join("cache"))
        .env("HELM_CONFIG_HOME", sub.path().join("config"))
        .env("HELM_DATA_HOME", sub.path().join("data"))
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let err = renderer.render(&request(d, chart)).await.unwrap_err();
    assert_eq!(
        refused(&err),
        Some((
            "charts/web/charts/sub-0.1.0.tgz/sub/values.schema.json".to_owned(),
            url.clone()
        )),
        "{err}"
    );
    assert_eq!(server.connections(), 0, "helm reached the network");
}

/// Whether the process `pid` still runs (a zombie waiting to be reaped does not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => !matches!(
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

/// Waits (up to a minute: a kill takes effect at once, the bound only keeps a broken run from
/// hanging) until `pid` no longer runs; whether it still runs then.
async fn still_running_after_waiting(pid: u32) -> bool {
    for _ in 0..600 {
        if !running(pid) {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    running(pid)
}

/// Issue #12 item 8: a timeout or a cancellation killed only the tool, not what it started. A
/// fake helm starts a grandchild (`sleep 1000`) and hangs; after the timeout and after a
/// cancellation, the grandchild is gone too.
#[tokio::test]
async fn timeout_and_cancellation_kill_everything_the_tool_started() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let fake = dir.path().join("fake-helm");
    write(
        dir.path(),
        "fake-helm",
        &format!(
            "#!/bin/sh\nsleep 1000 &\necho $! > '{}.tmp'\nmv '{0}.tmp' '{0}'\nsleep 1000\n",
            pid_file.display()
        ),
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let grandchild = || async {
        for _ in 0..600 {
            if let Ok(text) = std::fs::read_to_string(&pid_file) {
                return text.trim().parse::<u32>().unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the fake helm never started its grandchild");
    };

    // Timeout.
    let renderer = HelmRenderer::new(&fake, "web")
        .limits(ToolLimits::new().with_timeout(std::time::Duration::from_secs(3)));
    let err = renderer
        .render(&request(&fixtures().join("helm"), "charts/web"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not finish within"), "{err}");
    let pid = grandchild().await;
    assert!(
        !still_running_after_waiting(pid).await,
        "the grandchild {pid} survived the timeout"
    );

    // Cancellation.
    std::fs::remove_file(&pid_file).unwrap();
    let renderer = HelmRenderer::new(&fake, "web");
    let cancel = tokio_util::sync::CancellationToken::new();
    let request = request(&fixtures().join("helm"), "charts/web").with_cancellation(cancel.clone());
    let render = tokio::spawn(async move { renderer.render(&request).await });
    let pid = grandchild().await;
    assert!(running(pid));
    cancel.cancel();
    let err = render.await.unwrap().unwrap_err();
    assert!(matches!(err, RenderError::Cancelled), "{err}");
    assert!(
        !still_running_after_waiting(pid).await,
        "the grandchild {pid} survived the cancellation"
    );
}

/// Issue #12 item 4: the YAML parser's default budget of 1,024 documents refused a
/// `helm template` of more objects.
#[tokio::test]
async fn renders_a_chart_of_more_than_1024_objects() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "big/Chart.yaml",
        "apiVersion: v2\nname: big\nversion: 0.1.0\n",
    );
    write(dir.path(), "big/values.yaml", "count: 3000\n");
    write(
        dir.path(),
        "big/templates/many.yaml",
        "{{- range $i := until (int .Values.count) }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c-{{ $i }}\ndata:\n  index: \"{{ $i }}\"\n{{- end }}\n",
    );
    let objects = helm("big")
        .await
        .render(&request(dir.path(), "big"))
        .await
        .unwrap();
    assert_eq!(objects.len(), 3000);
    assert!(objects.iter().any(|o| o.name() == "c-2999"));
}

/// A chart in `dir/charts/app` with a ConfigMap, a test Pod of a random name and a pre-install
/// Job, and a values file beside its Chart.yaml.
fn chart_with_hooks(dir: &Path) {
    write(
        dir,
        "charts/app/Chart.yaml",
        "apiVersion: v2\nname: app-chart\nversion: 0.1.0\n",
    );
    write(dir, "charts/app/values.yaml", "greeting: hello\n");
    write(dir, "charts/app/values-prod.yaml", "greeting: bonjour\n");
    write(
        dir,
        "charts/app/templates/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  greeting: {{ .Values.greeting }}\n",
    );
    write(
        dir,
        "charts/app/templates/tests/test-connection.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}-test-{{ randAlphaNum 6 | lower }}\n  annotations:\n    \"helm.sh/hook\": test\nspec:\n  restartPolicy: Never\n  containers:\n  - name: wget\n    image: busybox\n",
    );
    write(
        dir,
        "charts/app/templates/migrate.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ .Release.Name }}-migrate\n  annotations:\n    \"helm.sh/hook\": pre-install,Pre-Upgrade\n    \"helm.sh/hook-delete-policy\": before-hook-creation\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: migrate\n        image: busybox\n",
    );
}

#[tokio::test]
async fn hooks_are_never_release_objects_tests_never_returned_others_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    chart_with_hooks(dir.path());
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let request = request(dir.path(), "charts/app").with_progress(move |event| {
        if let RenderProgress::HookSkipped { .. } = event {
            seen.lock().unwrap().push(event.clone());
        }
    });
    // The release is named after the chart's directory, not "release".
    let renderer = HelmRenderer::with_binary(tool(Tool::Helm).await);
    let first = renderer.render(&request).await.unwrap();
    let second = renderer.render(&request).await.unwrap();
    let summary = |objects: &[gitops_core::Manifest]| -> Vec<String> {
        objects
            .iter()
            .map(|o| format!("{} {} @ {}", o.kind(), o.name(), o.origin()))
            .collect()
    };
    assert_eq!(
        summary(&first),
        ["ConfigMap app-config @ charts/app/templates/config.yaml"]
    );
    assert_eq!(first, second, "two renders give the same set");
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[0],
        RenderProgress::HookSkipped {
            path: "charts/app".into(),
            object: "Job app-migrate".into(),
            hooks: vec!["pre-install".into(), "pre-upgrade".into()],
            origin: gitops_core::Origin::new("charts/app/templates/migrate.yaml"),
        }
    );
    assert_eq!(
        events[0].to_string(),
        "charts/app: left out helm hook Job app-migrate (pre-install,pre-upgrade) from charts/app/templates/migrate.yaml: hooks are not release objects (HookPolicy::Include keeps them)"
    );

    // Kept for a phase engine, annotations intact; the test Pod still never.
    let objects = renderer
        .clone()
        .with_hooks(HookPolicy::Include)
        .render(&request)
        .await
        .unwrap();
    assert_eq!(
        summary(&objects),
        [
            "ConfigMap app-config @ charts/app/templates/config.yaml",
            "Job app-migrate @ charts/app/templates/migrate.yaml",
        ]
    );
    assert_eq!(
        objects[1].object()["metadata"]["annotations"]["helm.sh/hook"],
        "pre-install,Pre-Upgrade"
    );

    // helm's --skip-tests changes nothing we return.
    let objects = renderer
        .clone()
        .skip_tests(true)
        .render(&request)
        .await
        .unwrap();
    assert_eq!(first, objects);
}

#[tokio::test]
async fn values_files_are_relative_to_the_chart_and_the_release_defaults_to_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    chart_with_hooks(dir.path());
    write(dir.path(), "env/prod.yaml", "greeting: hola\n");
    let helm = tool(Tool::Helm).await;
    let greeting = |objects: &[gitops_core::Manifest]| {
        objects[0].object()["data"]["greeting"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let objects = HelmRenderer::with_binary(&helm)
        .values_file("values-prod.yaml")
        .render(&request(dir.path(), "charts/app"))
        .await
        .unwrap();
    assert_eq!(objects[0].name(), "app-config");
    assert_eq!(greeting(&objects), "bonjour");
    let objects = HelmRenderer::with_binary(&helm)
        .release("shop")
        .values_file("../../env/prod.yaml")
        .render(&request(dir.path(), "charts/app"))
        .await
        .unwrap();
    assert_eq!(objects[0].name(), "shop-config");
    assert_eq!(greeting(&objects), "hola");
    // Above the root is still refused.
    let err = HelmRenderer::with_binary(&helm)
        .values_file("../../../values.yaml")
        .render(&request(dir.path(), "charts/app"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("the path leaves the source root"),
        "{err}"
    );

    // A chart at the root of the source: its release is the chart's own name.
    let chart_root = dir.path().join("charts/app");
    let objects = HelmRenderer::with_binary(&helm)
        .render(&request(&chart_root, "."))
        .await
        .unwrap();
    assert_eq!(objects[0].name(), "app-chart-config");

    // Auto picks Helm for a directory holding Chart.yaml (and says so when it has no helm).
    let auto = AutoRenderer::new(PlainRenderer::new());
    let err = auto
        .render(&request(dir.path(), "charts/app"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "charts/app: is a Helm chart (it has Chart.yaml), but no helm binary is configured"
    );
    let objects = auto
        .with_helm(HelmRenderer::with_binary(&helm))
        .render(&request(dir.path(), "charts/app"))
        .await
        .unwrap();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].name(), "app-config");
}

#[tokio::test]
async fn capabilities_come_from_the_given_kube_version_and_api_versions() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "web/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 0.1.0\nkubeVersion: \">=1.23.0-0\"\n",
    );
    write(
        dir.path(),
        "web/templates/pdb.yaml",
        "{{- if .Capabilities.APIVersions.Has \"policy/v1/PodDisruptionBudget\" }}\napiVersion: policy/v1\n{{- else }}\napiVersion: policy/v1beta1\n{{- end }}\nkind: PodDisruptionBudget\nmetadata:\n  name: {{ .Release.Name }}\n  annotations:\n    kube: {{ .Capabilities.KubeVersion.Version }}\nspec:\n  maxUnavailable: 1\n",
    );
    let helm = tool(Tool::Helm).await;
    let objects = HelmRenderer::with_binary(&helm)
        .with_kube_version("v1.37.2")
        .with_api_versions(["apps/v1", "policy/v1/PodDisruptionBudget"])
        .render(&request(dir.path(), "web"))
        .await
        .unwrap();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].api_version(), "policy/v1");
    assert_eq!(
        objects[0].object()["metadata"]["annotations"]["kube"],
        "v1.37.2"
    );
    let objects = HelmRenderer::with_binary(&helm)
        .with_kube_version("1.37")
        .render(&request(dir.path(), "web"))
        .await
        .unwrap();
    assert_eq!(objects[0].api_version(), "policy/v1beta1");
    assert_eq!(
        objects[0].object()["metadata"]["annotations"]["kube"],
        "v1.37"
    );
    // An older cluster: helm's own refusal, naming the constraint.
    let err = HelmRenderer::with_binary(&helm)
        .with_kube_version("v1.22.5")
        .render(&request(dir.path(), "web"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(">=1.23.0-0"), "{err}");
    assert!(err.to_string().contains("v1.22.5"), "{err}");

    // Checked before helm runs.
    let err = HelmRenderer::with_binary(&helm)
        .with_kube_version("latest\u{1b}[31m")
        .render(&request(dir.path(), "web"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RenderError::Helm(e) if matches!(**e, HelmError::InvalidKubeVersion { .. })),
        "{err}"
    );
    assert!(!err.to_string().contains('\u{1b}'), "{err}");
    let err = HelmRenderer::with_binary(&helm)
        .with_api_versions(["apps/v1,batch/v1"])
        .render(&request(dir.path(), "web"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "API version \"apps/v1,batch/v1\" is not an API version such as apps/v1 or batch/v1/Job"
    );
}

/// helm quotes values in its errors (`fail`, `required`, template errors); inline values often
/// hold credentials, so they are masked in the error, its whole source chain and `Debug`.
#[tokio::test]
async fn inline_values_never_appear_in_helm_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "chart/Chart.yaml",
        "apiVersion: v2\nname: leaky\nversion: 0.1.0\n",
    );
    write(
        dir.path(),
        "chart/templates/fail.yaml",
        "{{ fail (printf \"refusing %s\" .Values.db.password) }}\n",
    );
    let secret = "hunter2-secret-value";
    let error = helm("leaky")
        .await
        .values(json!({"db": {"password": secret}}))
        .render(&request(dir.path(), "chart"))
        .await
        .unwrap_err();
    let mut printed = format!("{error} {error:?}");
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&error);
    while let Some(cause) = source {
        printed.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(printed.contains("refusing ***"), "{printed}");
    assert!(!printed.contains(secret), "{printed}");
}
