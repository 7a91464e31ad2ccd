//! The Kustomize renderer against the pinned kustomize binary: overlays, components, patches,
//! generators, images, namePrefix and namespace on our fixtures, and every refusal.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{CountingServer, copy_fixture, fixtures, tool, write};
use gitops_envtest::Tool;
use gitops_render::{
    AutoRenderer, KustomizeError, KustomizeRenderer, PlainRenderer, RenderError, RenderProgress,
    RenderRequest, Renderer, RootError, SourceRoot, Substitution, ToolLimits,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

async fn kustomize() -> KustomizeRenderer {
    KustomizeRenderer::new(tool(Tool::Kustomize).await)
        .limits(ToolLimits::new().with_timeout(Duration::from_secs(60)))
}

fn request(root: &Path, path: &str) -> RenderRequest {
    RenderRequest::new(SourceRoot::new(root).unwrap(), path)
}

#[tokio::test]
async fn builds_an_overlay_with_components_patches_generators_and_images() {
    let renderer = kustomize().await;
    renderer.check_version().await.unwrap();
    let objects = renderer
        .render(&request(&fixtures().join("kustomize"), "overlays/prod"))
        .await
        .unwrap();
    let ids: Vec<String> = objects.iter().map(|o| o.id().to_string()).collect();
    let config_name = objects[0].name().to_owned();
    let secret_name = objects[1].name().to_owned();
    assert!(config_name.starts_with("prod-web-config-"), "{config_name}");
    assert!(secret_name.starts_with("prod-web-secret-"), "{secret_name}");
    assert_eq!(
        ids,
        [
            format!("shop_{config_name}__ConfigMap"),
            format!("shop_{secret_name}__Secret"),
            "shop_prod-web__Service".to_owned(),
            "shop_prod-web_apps_Deployment".to_owned(),
            "shop_prod-web_policy_PodDisruptionBudget".to_owned(),
        ]
    );
    // configMapGenerator with behavior: merge over the base's generator.
    assert_eq!(objects[0].object()["data"], json!({"LOG_LEVEL": "warn"}));
    // secretGenerator from an env file.
    assert_eq!(
        objects[1].object()["data"],
        json!({"API_TOKEN": "czNjcjN0"})
    );
    // JSON 6902 patch from a file.
    assert_eq!(objects[2].object()["spec"]["ports"][0]["port"], 8443);
    let deployment = objects[3].object();
    // The component's inline JSON 6902 patch.
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    // images.
    assert_eq!(container["image"], "registry.example/nginx:1.27");
    // Strategic merge patch, merged into the container by name.
    assert_eq!(container["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(container["name"], "web");
    // The generated name is referenced with its hash.
    assert_eq!(
        container["envFrom"][0]["configMapRef"]["name"],
        config_name.as_str()
    );
    // Origins are the source files, mapped from kustomize's origin annotations, which are
    // removed again; generated objects come from the generator entry of the kustomization that
    // generates them (a merged ConfigMap from the base's).
    let origins: Vec<String> = objects.iter().map(|o| o.origin().to_string()).collect();
    assert_eq!(
        origins,
        [
            "base/kustomization.yaml:7",
            "overlays/prod/kustomization.yaml:25",
            "base/service.yaml:1",
            "base/deployment.yaml:1",
            "components/ha/pdb.yaml:1",
        ]
    );
    assert!(
        objects
            .iter()
            .all(|o| o.annotation("config.kubernetes.io/origin").is_none()
                && o.object()["metadata"].get("annotations").is_none()),
        "{objects:?}"
    );
}

#[tokio::test]
async fn origins_name_the_document_and_line_and_respect_the_users_build_metadata() {
    let renderer = kustomize().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "base/all.yaml",
        "# config\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations:\n    keep: me\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: a\n",
    );
    write(d, "base/kustomization.yaml", "resources:\n- all.yaml\n");
    write(
        d,
        "app/kustomization.yaml",
        "resources:\n- ../base\nnameSuffix: -x\nsortOptions:\n  order: fifo\n",
    );
    let before: Vec<(String, std::time::SystemTime)> = walk(d);
    let objects = renderer.render(&request(d, "app")).await.unwrap();
    let seen: Vec<String> = objects
        .iter()
        .map(|o| format!("{} {} @ {}", o.kind(), o.name(), o.origin()))
        .collect();
    // fifo order (carried over from the user's sortOptions), each object at its own document.
    assert_eq!(
        seen,
        [
            "ConfigMap a-x @ base/all.yaml:2",
            "ConfigMap b-x @ base/all.yaml:9 (document 2)",
            "Secret a-x @ base/all.yaml:14 (document 3)",
        ]
    );
    assert_eq!(
        objects[0].object()["metadata"]["annotations"],
        json!({"keep": "me"})
    );
    // Nothing was written into the source.
    assert_eq!(walk(d), before);

    // A kustomization that asks for origin annotations itself keeps them.
    write(
        d,
        "own/kustomization.yaml",
        "resources:\n- ../base\nbuildMetadata: [originAnnotations]\n",
    );
    let objects = renderer.render(&request(d, "own")).await.unwrap();
    assert!(
        objects
            .iter()
            .all(|o| o.annotation("config.kubernetes.io/origin").is_some()),
        "{objects:?}"
    );
    assert_eq!(objects[0].origin().file.to_str(), Some("base/all.yaml"));
}

#[tokio::test]
async fn a_component_built_on_its_own_keeps_file_origins() {
    let renderer = kustomize().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "comp/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n- cm.yaml\n",
    );
    write(
        d,
        "comp/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
    );
    let objects = renderer.render(&request(d, "comp")).await.unwrap();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].origin().to_string(), "comp/cm.yaml:1");
}

/// Every file under `dir` with its modification time.
fn walk(dir: &Path) -> Vec<(String, std::time::SystemTime)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(next).unwrap() {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            if metadata.is_dir() {
                stack.push(entry.path());
            } else {
                files.push((
                    entry.path().display().to_string(),
                    metadata.modified().unwrap(),
                ));
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn auto_detection_and_substitution_compose() {
    let dir = copy_fixture("kustomize");
    write(
        dir.path(),
        "plain/ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop-${ENV}\n",
    );
    write(
        dir.path(),
        "overlays/prod/kustomization.yaml",
        &std::fs::read_to_string(dir.path().join("overlays/prod/kustomization.yaml"))
            .unwrap()
            .replace("namePrefix: prod-", "namePrefix: ${ENV}-"),
    );
    let renderer = AutoRenderer::new(PlainRenderer::new()).with_kustomize(kustomize().await);
    let substitution = Substitution::new().with_variable("ENV", "eu").strict(true);
    let built = renderer
        .render(&request(dir.path(), "overlays/prod").with_substitution(substitution.clone()))
        .await
        .unwrap();
    assert_eq!(built.len(), 5);
    assert!(
        built.iter().all(|o| o.name().starts_with("eu-web")),
        "{built:?}"
    );
    let plain = renderer
        .render(&request(dir.path(), "plain").with_substitution(substitution))
        .await
        .unwrap();
    assert_eq!(plain[0].name(), "shop-eu");
    assert_eq!(plain[0].origin().to_string(), "plain/ns.yaml:1");

    let without = AutoRenderer::new(PlainRenderer::new());
    let err = without
        .render(&request(dir.path(), "overlays/prod"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RenderError::Kustomize(e) if matches!(**e, KustomizeError::NoBinary { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn refuses_references_outside_the_root_and_remote_bases() {
    let renderer = kustomize().await;
    let outside = tempfile::tempdir().unwrap();
    write(
        outside.path(),
        "kustomization.yaml",
        "resources:\n- cm.yaml\n",
    );
    write(
        outside.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stolen\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "escape/kustomization.yaml",
        &format!(
            "resources:\n- ../../{}\n",
            outside.path().file_name().unwrap().to_str().unwrap()
        ),
    );
    write(
        d,
        "absolute/kustomization.yaml",
        &format!("resources:\n- {}\n", outside.path().display()),
    );
    write(
        d,
        "remote/kustomization.yaml",
        "resources:\n- https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.8.1\n",
    );
    write(
        d,
        "env/kustomization.yaml",
        "configMapGenerator:\n- name: c\n  files:\n  - passwd=../../../../etc/passwd\n",
    );
    let cases: [(&str, &str); 4] = [
        (
            "escape",
            "escape/kustomization.yaml: resources: escape/../../",
        ),
        ("absolute", "absolute/kustomization.yaml: resources: /"),
        (
            "remote",
            "remote/kustomization.yaml: resources: remote reference \"https://github.com/",
        ),
        (
            "env",
            "env/kustomization.yaml: configMapGenerator.files: env/../../../../etc/passwd: the path leaves the source root",
        ),
    ];
    for (path, expected) in cases {
        let err = renderer.render(&request(d, path)).await.unwrap_err();
        assert!(err.to_string().starts_with(expected), "{path}: {err}");
    }

    // A symbolic link that leaves the root, anywhere under it, is refused before kustomize runs.
    write(d, "linked/kustomization.yaml", "resources:\n- cm.yaml\n");
    std::os::unix::fs::symlink(outside.path().join("cm.yaml"), d.join("linked/cm.yaml")).unwrap();
    let err = renderer.render(&request(d, "linked")).await.unwrap_err();
    assert!(
        matches!(&err, RenderError::Kustomize(e) if matches!(
            **e,
            KustomizeError::Reference {
                source: RootError::SymlinkEscapes { .. },
                ..
            }
        )),
        "{err}"
    );
}

/// What the counting server serves to kustomize: a ConfigMap.
const FETCHED: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fetched\n";

/// Runs the pinned kustomize directly on `dir` (no checks of ours).
async fn kustomize_build(dir: &Path) -> String {
    let out = tokio::process::Command::new(tool(Tool::Kustomize).await)
        .arg("build")
        .arg(dir)
        .output()
        .await
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn the_pinned_kustomize_reads_keys_ignoring_case_and_resolves_merge_keys() {
    // What the reference check has to defend against: kustomize reads every one of these as
    // `resources` (Go's JSON decoder folds case, with Unicode's long s; its YAML reader merges).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, text) in [
        ("upper", "RESOURCES: [cm.yaml]\n"),
        ("mixed", "Resources: [cm.yaml]\n"),
        ("folded", "re\u{17f}ources: [cm.yaml]\n"),
        ("merged", "<<: {resources: [cm.yaml]}\n"),
        ("nested", "resources: [cm.yaml]\npatches:\n- PATH: p.yaml\n"),
    ] {
        write(d, &format!("{name}/kustomization.yaml"), text);
        write(d, &format!("{name}/cm.yaml"), FETCHED);
        write(
            d,
            &format!("{name}/p.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fetched\ndata:\n  patched: \"yes\"\n",
        );
        let out = kustomize_build(&d.join(name)).await;
        assert!(out.contains("name: fetched"), "{name}: {out}");
        if name == "nested" {
            assert!(out.contains("patched: \"yes\""), "{name}: {out}");
        }
        // Refused by the renderer before kustomize runs.
        let err = kustomize()
            .await
            .render(&request(d, name))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RenderError::Kustomize(e) if matches!(
                **e,
                KustomizeError::UnknownField { .. } | KustomizeError::MergeKey { .. }
            )),
            "{name}: {err}"
        );
    }
}

#[tokio::test]
async fn keys_that_are_not_exact_field_names_are_refused_and_nothing_is_fetched() {
    let server = CountingServer::start(FETCHED);
    let renderer = kustomize().await;
    let outside = tempfile::tempdir().unwrap();
    write(
        outside.path(),
        "kustomization.yaml",
        "resources:\n- cm.yaml\n",
    );
    write(
        outside.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stolen\n",
    );
    let outside_name = outside.path().file_name().unwrap().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = server.url("/x.yaml");
    let cases = [
        (
            "upper",
            format!("RESOURCES:\n- {url}\n"),
            "upper/kustomization.yaml:1: unknown field \"RESOURCES\"",
        ),
        (
            "outside",
            format!("kind: Kustomization\nResources: [../../{outside_name}]\n"),
            "outside/kustomization.yaml:2: unknown field \"Resources\"",
        ),
        (
            "folded",
            format!("re\u{17f}ources: [{url}]\n"),
            "folded/kustomization.yaml:1: unknown field \"re\u{17f}ources\"",
        ),
        (
            "merged",
            format!("<<: {{resources: [{url}]}}\n"),
            "merged/kustomization.yaml:1: YAML merge keys (<<) are refused",
        ),
        (
            "patch",
            format!("resources: []\npatches:\n- PATH: {url}\n"),
            "patch/kustomization.yaml:3: patches[0]: unknown field \"PATH\"",
        ),
        (
            "generator",
            "configMapGenerator:\n- name: c\n  FILES:\n  - passwd=../../../../etc/passwd\n"
                .to_owned(),
            "generator/kustomization.yaml:3: configMapGenerator[0]: unknown field \"FILES\"",
        ),
        (
            "deep",
            "resources: [../upper]\n".to_owned(),
            "upper/kustomization.yaml:1: unknown field \"RESOURCES\"",
        ),
    ];
    // A plugin configuration whose path kustomize would fetch.
    write(
        d,
        "transformer/t.yaml",
        &format!(
            "apiVersion: builtin\nkind: PatchTransformer\nmetadata:\n  name: p\ntarget:\n  kind: ConfigMap\npath: {url}\n"
        ),
    );
    write(d, "transformer/cm.yaml", FETCHED);
    let cases: Vec<(&str, String, &str)> = cases
        .into_iter()
        .chain([(
            "transformer",
            "resources: [cm.yaml]\ntransformers: [t.yaml]\n".to_owned(),
            "transformer/t.yaml: transformers configuration: path: remote reference",
        )])
        .collect();
    for (path, text, expected) in &cases {
        write(d, &format!("{path}/kustomization.yaml"), text);
        let err = renderer.render(&request(d, path)).await.unwrap_err();
        assert!(err.to_string().starts_with(expected), "{path}: {err}");
    }
    assert_eq!(server.connections(), 0, "kustomize reached the network");
}

#[tokio::test]
async fn names_are_printed_escaped() {
    let renderer = kustomize().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A directory name that would forge a log line.
    let name = "app\nERROR forged";
    write(
        d,
        &format!("{name}/kustomization.yaml"),
        "resources: [missing.yaml]\n",
    );
    let err = renderer.render(&request(d, name)).await.unwrap_err();
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    assert!(
        text.starts_with(
            "app\\nERROR forged/kustomization.yaml: resources: app\\nERROR forged/missing.yaml"
        ),
        "{text}"
    );
    let progress = RenderProgress::Started {
        path: name.into(),
        renderer: "kustomize",
    };
    assert_eq!(
        progress.to_string(),
        "rendering app\\nERROR forged with kustomize"
    );
}

#[tokio::test]
async fn load_restrictor_and_kustomize_errors_are_surfaced_with_the_path() {
    let renderer = kustomize().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Inside the source root but outside the kustomization's own root: kustomize's load
    // restrictor refuses the file.
    write(
        d,
        "shared/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n",
    );
    write(
        d,
        "app/kustomization.yaml",
        "resources:\n- ../shared/cm.yaml\n",
    );
    let err = renderer.render(&request(d, "app")).await.unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("kustomize build app: "), "{text}");
    assert!(
        text.contains("security; file 'shared/cm.yaml' is not in or below 'app'"),
        "{text}"
    );
    assert!(
        !text.contains(&d.display().to_string()),
        "absolute paths leak: {text}"
    );

    // A patch aimed at nothing.
    write(
        d,
        "broken/kustomization.yaml",
        "resources:\n- cm.yaml\npatches:\n- path: missing-target.yaml\n",
    );
    write(
        d,
        "broken/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    );
    write(
        d,
        "broken/missing-target.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nope\ndata:\n  a: b\n",
    );
    let err = renderer.render(&request(d, "broken")).await.unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("kustomize build broken: "), "{text}");
    assert!(text.contains("nope"), "{text}");

    // Not a kustomization.
    write(d, "none/x.yaml", "a: 1\n");
    let err = renderer.render(&request(d, "none")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "none: no kustomization.yaml, kustomization.yml or Kustomization"
    );
}

#[tokio::test]
async fn exec_plugins_stay_off() {
    let renderer = kustomize().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let marker = d.join("ran");
    write(d, "app/kustomization.yaml", "generators:\n- gen.yaml\n");
    write(
        d,
        "app/gen.yaml",
        &format!(
            "apiVersion: example.com/v1\nkind: Gen\nmetadata:\n  name: g\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: /bin/sh\n        args: [\"-c\", \"touch {}\"]\n",
            marker.display()
        ),
    );
    let err = renderer.render(&request(d, "app")).await.unwrap_err();
    assert!(
        err.to_string().starts_with("kustomize build app: "),
        "{err}"
    );
    assert!(
        err.to_string().contains("external plugins disabled"),
        "{err}"
    );
    assert!(!marker.exists(), "an exec function ran");
}

fn fake_tool(dir: &Path, script: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-kustomize");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn timeout_and_cancellation_kill_the_build() {
    let tools = tempfile::tempdir().unwrap();
    let dir = copy_fixture("kustomize");
    let slow = KustomizeRenderer::new(fake_tool(tools.path(), "sleep 30"))
        .limits(ToolLimits::new().with_timeout(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    let err = slow
        .render(&request(dir.path(), "overlays/prod"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("did not finish within 300ms"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        canceller.cancel();
    });
    let slow = slow.limits(ToolLimits::new().with_timeout(Duration::from_secs(60)));
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = events.clone();
    let err = slow
        .render(
            &request(dir.path(), "overlays/prod")
                .with_cancellation(cancel)
                .with_progress(move |event| recorder.lock().unwrap().push(event.to_string())),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RenderError::Cancelled), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Started, never finished.
    assert_eq!(
        *events.lock().unwrap(),
        ["rendering overlays/prod with kustomize"]
    );
}

#[tokio::test]
async fn substitution_types_kustomize_output_and_validates_it_afterwards() {
    let renderer = kustomize().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "app/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-${ENV}\n  namespace: ${NS}\n  annotations:\n    replicas: \"${REPLICAS}\"\nspec:\n  replicas: ${REPLICAS}\n  paused: ${PAUSED:=false}\n",
    );
    write(
        d,
        "app/kustomization.yaml",
        "resources:\n- deploy.yaml\ncommonLabels:\n  env: ${ENV}\n",
    );
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = events.clone();
    let substitution = Substitution::new()
        .with_variable("ENV", "prod")
        .with_variable("NS", "shop")
        .with_variable("REPLICAS", "3");
    let objects = renderer
        .render(
            &request(d, "app")
                .with_substitution(substitution.clone())
                .with_progress(move |event| recorder.lock().unwrap().push(event.clone())),
        )
        .await
        .unwrap();
    let deployment = &objects[0];
    assert_eq!(deployment.id().to_string(), "shop_web-prod_apps_Deployment");
    assert_eq!(deployment.object()["spec"]["replicas"], 3);
    assert_eq!(deployment.object()["spec"]["paused"], false);
    // kustomize drops the quotes, but an annotation is always text.
    assert_eq!(deployment.annotation("replicas"), Some("3"));
    assert_eq!(deployment.label("env"), Some("prod"));
    assert_eq!(deployment.origin().to_string(), "app/deploy.yaml:1");
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].to_string(), "rendering app with kustomize");
    assert!(
        matches!(
            &events[1],
            RenderProgress::Finished {
                objects: 1,
                renderer: "kustomize",
                ..
            }
        ),
        "{events:?}"
    );

    // Validation runs after substitution and names the source file and line.
    let err = renderer
        .render(&request(d, "app").with_substitution(substitution.with_variable("NS", "No_Such")))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "app/deploy.yaml:1: metadata.namespace \"No_Such\" is invalid: a namespace is a DNS label: lower-case letters, digits and '-'"
    );
}

/// Issue #12 item 4: the YAML parser's default budget of 1,024 documents refused a
/// `kustomize build` of more objects.
#[tokio::test]
async fn builds_more_than_1024_objects() {
    let dir = tempfile::tempdir().unwrap();
    let mut resources = String::new();
    for i in 0..3000 {
        resources.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c-{i}\ndata:\n  index: \"{i}\"\n"
        ));
    }
    write(dir.path(), "app/many.yaml", &resources);
    write(
        dir.path(),
        "app/kustomization.yaml",
        "resources:\n- many.yaml\nnamespace: shop\n",
    );
    let objects = kustomize()
        .await
        .render(&request(dir.path(), "app"))
        .await
        .unwrap();
    assert_eq!(objects.len(), 3000);
    assert!(objects.iter().all(|o| o.namespace() == Some("shop")));
    assert!(objects.iter().any(|o| o.name() == "c-2999"));
}

#[tokio::test]
async fn plain_builds_a_kustomization_subfolder_with_kustomize_as_flux_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "apps/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    );
    write(
        d,
        "apps/web/kustomization.yaml",
        "namePrefix: web-\nresources:\n- cm.yaml\n",
    );
    write(
        d,
        "apps/web/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n",
    );
    write(
        d,
        "apps/z.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: z\n",
    );
    let kustomize = kustomize().await;
    let renderer = PlainRenderer::new().with_kustomize(kustomize.clone());
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let objects = renderer
        .render(&request(d, "apps").with_progress(move |event| {
            if let RenderProgress::Started { path, renderer } = event {
                seen.lock()
                    .unwrap()
                    .push(format!("{renderer} {}", path.display()));
            }
        }))
        .await
        .unwrap();
    let summary: Vec<String> = objects
        .iter()
        .map(|o| format!("{} @ {}", o.name(), o.origin()))
        .collect();
    // In the tree's order, each object with its origin.
    assert_eq!(
        summary,
        [
            "a @ apps/a.yaml:1",
            "web-b @ apps/web/cm.yaml:1",
            "z @ apps/z.yaml:1"
        ]
    );
    assert_eq!(
        *events.lock().unwrap(),
        ["plain apps", "kustomize apps/web"]
    );

    // The auto renderer lends its kustomize to the plain renderer.
    let auto = AutoRenderer::new(PlainRenderer::new()).with_kustomize(kustomize.clone());
    assert_eq!(auto.render(&request(d, "apps")).await.unwrap(), objects);

    // Never skipped silently: without kustomize it is an error naming the folder.
    let err = PlainRenderer::new()
        .render(&request(d, "apps"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("apps/web: holds a kustomization"),
        "{err}"
    );

    // Duplicates across the tree are errors naming both places.
    write(d, "apps/web/kustomization.yaml", "resources:\n- cm.yaml\n");
    write(
        d,
        "apps/web/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    );
    let err = renderer.render(&request(d, "apps")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "ConfigMap a is defined twice: at apps/a.yaml:1 and at apps/web/cm.yaml:1"
    );

    // Jailed like any kustomize build.
    let outside = tempfile::tempdir().unwrap();
    write(
        outside.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: secret\n",
    );
    write(
        d,
        "apps/web/kustomization.yaml",
        &format!(
            "resources:\n- {}\n",
            outside.path().join("cm.yaml").display()
        ),
    );
    let err = renderer.render(&request(d, "apps")).await.unwrap_err();
    assert!(
        matches!(&err, RenderError::Root(_) | RenderError::Kustomize(_)),
        "{err}"
    );
    assert!(!err.to_string().contains("secret"), "{err}");
}
