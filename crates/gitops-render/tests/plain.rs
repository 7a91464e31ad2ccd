//! The plain renderer on real directories: the bad-input corpus (each error names the exact file
//! and line), every refusal, and substitution composed on top.

use std::fs;
use std::path::{Path, PathBuf};

use gitops_render::{
    PlainRenderer, RenderError, RenderRequest, Renderer, RootError, SourceRoot, Substitution,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

async fn render_at(
    renderer: &impl Renderer,
    root: &Path,
    path: &str,
) -> Result<Vec<gitops_core::Manifest>, RenderError> {
    renderer
        .render(&RenderRequest::new(SourceRoot::new(root).unwrap(), path))
        .await
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[tokio::test]
async fn bad_input_corpus_names_file_and_line() {
    let cases = [
        (
            "broken-yaml",
            "broken-yaml/app.yaml:11:8: invalid YAML: unclosed bracket '['",
        ),
        (
            "missing-kind",
            "missing-kind/app.yaml:7 (document 2): missing kind",
        ),
        (
            "missing-name",
            "missing-name/app.yaml:1: missing metadata.name",
        ),
        (
            "duplicates",
            "ConfigMap shop/settings is defined twice: at duplicates/a.yaml:1 and at duplicates/apps/b.yaml:7 (document 2)",
        ),
        (
            "bad-json",
            "bad-json/app.json:4:29: invalid JSON: key must be a string",
        ),
        (
            "bad-namespace",
            "bad-namespace/app.yaml:6 (document 2): metadata.namespace \"Not_Valid\" is invalid",
        ),
        ("list-item", "list-item/list.yaml:1: missing metadata.name"),
    ];
    let root = fixtures().join("bad");
    for (case, expected) in cases {
        let err = render_at(&PlainRenderer::new(), &root, case)
            .await
            .expect_err(case);
        let text = err.to_string();
        assert!(
            text.starts_with(expected),
            "{case}: got {text:?}, expected {expected:?}..."
        );
        assert!(!text.contains('\n'), "{case}: {text:?}");
    }
}

#[tokio::test]
async fn refuses_paths_that_leave_the_root() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "apps/a.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n",
    );
    for (path, expected) in [
        ("../", "../: the path leaves the source root"),
        (
            "apps/../../etc",
            "apps/../../etc: the path leaves the source root",
        ),
        (
            "/etc",
            "/etc: absolute paths are refused; give a path relative to the source root",
        ),
        ("nope", "nope: not found in the source root"),
        ("apps/a.yaml", "apps/a.yaml: not a directory"),
    ] {
        let err = render_at(&PlainRenderer::new(), dir.path(), path)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), expected);
        assert!(matches!(err, RenderError::Root(_)));
    }
}

#[tokio::test]
async fn refuses_symlinks_pointing_outside() {
    let outside = tempfile::tempdir().unwrap();
    write(
        outside.path(),
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: stolen\n",
    );
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "apps/a.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n",
    );
    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        dir.path().join("apps/link.yaml"),
    )
    .unwrap();
    let err = render_at(&PlainRenderer::new(), dir.path(), "apps")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RenderError::Root(e) if matches!(&**e, RootError::SymlinkEscapes { link, .. } if link == Path::new("apps/link.yaml"))),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("apps/link.yaml: symbolic link points outside the source root")
    );

    // A directory link that leaves, and the rendered directory itself being such a link.
    fs::remove_file(dir.path().join("apps/link.yaml")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("apps/sub")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    for path in ["apps", "out"] {
        let err = render_at(&PlainRenderer::new(), dir.path(), path)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RenderError::Root(e) if matches!(**e, RootError::SymlinkEscapes { .. })),
            "{path}: {err}"
        );
    }

    // Links that stay inside are followed; a loop is read once.
    fs::remove_file(dir.path().join("apps/sub")).unwrap();
    std::os::unix::fs::symlink("../apps", dir.path().join("apps/loop")).unwrap();
    std::os::unix::fs::symlink("a.yaml", dir.path().join("apps/alias.yml")).unwrap();
    let err = render_at(&PlainRenderer::new(), dir.path(), "apps")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Namespace a is defined twice: at apps/a.yaml:1 and at apps/alias.yml:1"
    );
}

#[tokio::test]
async fn refuses_oversized_files_and_alias_bombs() {
    let dir = tempfile::tempdir().unwrap();
    let mut big =
        String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  blob: \"");
    big.push_str(&"x".repeat(2 << 20));
    big.push_str("\"\n");
    write(dir.path(), "big/big.yaml", &big);
    let err = render_at(
        &PlainRenderer::new().max_file_size(1 << 20),
        dir.path(),
        "big",
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("big/big.yaml: 2097222 bytes is more than the limit of 1048576 bytes"),
        "{err}"
    );

    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    write(dir.path(), "bomb/bomb.yaml", &bomb);
    let err = render_at(&PlainRenderer::new(), dir.path(), "bomb")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("bomb/bomb.yaml:"), "{text}");
    assert!(text.contains("invalid YAML"), "{text}");
}

async fn render_with(
    root: &Path,
    path: &str,
    substitution: Substitution,
) -> Result<Vec<gitops_core::Manifest>, RenderError> {
    PlainRenderer::new()
        .render(
            &RenderRequest::new(SourceRoot::new(root).unwrap(), path)
                .with_substitution(substitution),
        )
        .await
}

#[tokio::test]
async fn substitution_runs_before_validation_with_typed_values() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "app.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${APP}-${ENV:=dev}\n  namespace: ${NS}\n  annotations:\n    region: ${REGION:-eu}\n    replicas: ${REPLICAS}\nspec:\n  replicas: ${REPLICAS}\n  paused: ${PAUSED:=false}\n  revisionHistoryLimit: \"${REPLICAS}\"\n  template:\n    spec:\n      containers:\n      - name: web\n        image: ${IMAGE/:/@}\n        args: [\"$${APP}\", \"${APP^^}\"]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: script\n  annotations:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\ndata:\n  run.sh: echo ${HOME}\n",
    );
    write(
        dir.path(),
        "b.json",
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j-${ENV:=dev}", "namespace": "${NS}"}, "data": {"n": "${REPLICAS}"}}"#,
    );
    let substitution = Substitution::new()
        .with_variable("APP", "web")
        .with_variable("NS", "shop")
        .with_variable("REPLICAS", "3")
        .with_variable("IMAGE", "nginx:1.27")
        .strict(true);
    let objects = render_with(dir.path(), ".", substitution.clone())
        .await
        .unwrap();
    let deployment = &objects[0];
    assert_eq!(deployment.id().to_string(), "shop_web-dev_apps_Deployment");
    assert_eq!(deployment.annotation("region"), Some("eu"));
    // An annotation is always text.
    assert_eq!(deployment.annotation("replicas"), Some("3"));
    let spec = &deployment.object()["spec"];
    // Unquoted: typed as YAML types it; quoted: text.
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["paused"], false);
    assert_eq!(spec["revisionHistoryLimit"], "3");
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx@1.27");
    assert_eq!(container["args"], serde_json::json!(["${APP}", "WEB"]));
    assert_eq!(deployment.origin().to_string(), "app.yaml:1");
    assert_eq!(objects[1].object()["data"]["run.sh"], "echo ${HOME}");
    // JSON strings are always text.
    assert_eq!(objects[2].id().to_string(), "shop_j-dev__ConfigMap");
    assert_eq!(objects[2].object()["data"]["n"], "3");

    // Validation after substitution names file and line.
    write(
        dir.path(),
        "more.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: more\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: ${BAD_NS}\n",
    );
    let err = render_with(
        dir.path(),
        ".",
        substitution.clone().with_variable("BAD_NS", "Not_A_Label"),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "more.yaml:6 (document 2): metadata.namespace \"Not_A_Label\" is invalid: a namespace is a DNS label: lower-case letters, digits and '-'"
    );
    // Empty, the namespace is null: a cluster-wide or default-namespace object.
    let cleared = render_with(
        dir.path(),
        ".",
        substitution.clone().with_variable("BAD_NS", ""),
    )
    .await
    .unwrap();
    assert_eq!(
        cleared
            .iter()
            .find(|o| o.name() == "bad")
            .unwrap()
            .namespace(),
        None
    );

    // Strict mode names the unset variables and the object with its origin.
    write(
        dir.path(),
        "more.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: more\ndata:\n  a: ${ZONE}${AREA:-a}\n",
    );
    let err = render_with(dir.path(), ".", substitution.clone())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ConfigMap more from more.yaml:1: variables not set (strict mode): ZONE"
    );

    // Substitution that makes two objects collide is caught.
    write(
        dir.path(),
        "more.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${APP}-dev\n  namespace: shop\n",
    );
    let err = render_with(dir.path(), ".", substitution)
        .await
        .unwrap_err();
    assert!(matches!(err, RenderError::Duplicate(_)), "{err}");
    assert!(
        err.to_string().contains("at app.yaml:1 and at more.yaml:1"),
        "{err}"
    );
}

#[tokio::test]
async fn substitution_refuses_injection_with_the_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n---\n# the target\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: ${TYPE}\n  selector:\n    app: \"${TYPE}\"\n",
    );
    for value in [
        "ClusterIP\n  evil: key",
        "a: b",
        "x\n---\napiVersion: v1\nkind: Secret",
        "[a, b]",
        "{evil: 1}",
    ] {
        let err = render_with(
            dir.path(),
            ".",
            Substitution::new().with_variable("TYPE", value),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, RenderError::Substitute(e) if matches!(**e, gitops_render::SubstituteError::Structure { .. })),
            "{value:?}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with(
                "Service web from app.yaml:7 (document 2): at /spec/type: the value substituted from TYPE would not stay"
            ),
            "{text}"
        );
    }
    // In a quoted scalar the same text is only text: no key, no document is added.
    write(
        dir.path(),
        "app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  a: \"${V}\"\n",
    );
    let objects = render_with(
        dir.path(),
        ".",
        Substitution::new().with_variable("V", "x\n---\nkind: Secret\nevil: key"),
    )
    .await
    .unwrap();
    assert_eq!(objects.len(), 1);
    assert_eq!(
        objects[0].object()["data"],
        serde_json::json!({"a": "x\n---\nkind: Secret\nevil: key"})
    );
}

#[tokio::test]
async fn substitution_as_a_step_after_the_renderer_runs_before_validation() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "app.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: ${NS}\nspec:\n  replicas: ${REPLICAS}\n",
    );
    let renderer = PlainRenderer::new().then(
        Substitution::new()
            .with_variable("NS", "shop")
            .with_variable("REPLICAS", "2"),
    );
    let request = RenderRequest::new(SourceRoot::new(dir.path()).unwrap(), ".");
    let objects = renderer.render(&request).await.unwrap();
    assert_eq!(objects[0].namespace(), Some("shop"));
    assert_eq!(objects[0].object()["spec"]["replicas"], 2);
    // The request's own variables win; strict mode holds if either asks for it.
    let objects = renderer
        .render(
            &request
                .clone()
                .with_substitution(Substitution::new().with_variable("REPLICAS", "5")),
        )
        .await
        .unwrap();
    assert_eq!(objects[0].object()["spec"]["replicas"], 5);
    assert_eq!(objects[0].namespace(), Some("shop"));
    write(
        dir.path(),
        "zone.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: zone\n  namespace: ${NS}\ndata:\n  zone: ${ZONE}\n",
    );
    // Not strict: the unset variable becomes empty (text, since ConfigMap data is text).
    let objects = renderer.render(&request).await.unwrap();
    let zone = objects.iter().find(|o| o.name() == "zone").unwrap();
    assert_eq!(zone.namespace(), Some("shop"));
    assert_eq!(zone.object()["data"], serde_json::json!({"zone": ""}));
    let err = renderer
        .render(&request.with_substitution(Substitution::new().strict(true)))
        .await
        .unwrap_err();
    // The object is named as written: a name made of variables would print their values.
    assert_eq!(
        err.to_string(),
        "ConfigMap ${NS}/zone from zone.yaml:1: variables not set (strict mode): ZONE"
    );
}

#[tokio::test]
async fn no_error_shows_a_variables_value() {
    const SECRET: &str = "pa55-w0rd-n0t-shown";
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "db.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  url: postgres://app:${DB_PASSWORD}@db\n",
    );
    let substitution = Substitution::new().with_variable("DB_PASSWORD", format!("{SECRET} # x"));
    let err = render_with(dir.path(), ".", substitution.clone())
        .await
        .unwrap_err();
    let mut shown = format!("{err}\n{err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        shown.push_str(&format!("\n{inner}\n{inner:?}"));
        source = inner.source();
    }
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(
        err.to_string().starts_with(
            "Secret db from db.yaml:1: at /stringData/url: the value substituted from DB_PASSWORD would not stay one unquoted YAML scalar"
        ),
        "{err}"
    );
    let request = RenderRequest::new(SourceRoot::new(dir.path()).unwrap(), ".")
        .with_substitution(substitution);
    assert!(!format!("{request:?}").contains(SECRET));
}

#[tokio::test]
async fn file_names_cannot_forge_lines_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let forged = "app\nERROR forged \u{1b}[2J.yaml";
    // Invalid YAML, a missing name, a path that leaves the root, a duplicate and a substitution
    // failure: every error names the file escaped, on one line.
    let cases = [
        ("broken", "a: [\n"),
        ("invalid", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"),
        (
            "substitute",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: ${V}\n",
        ),
    ];
    for (sub, text) in cases {
        write(dir.path(), &format!("{sub}/{forged}"), text);
        let err = render_with(
            dir.path(),
            sub,
            Substitution::new().with_variable("V", "a: b"),
        )
        .await
        .unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains(['\n', '\u{1b}']), "{sub}: {shown:?}");
        assert!(
            shown.contains("app\\nERROR forged \\u{1b}[2J.yaml"),
            "{sub}: {shown}"
        );
    }
    write(
        dir.path(),
        &format!("dup/{forged}"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    );
    let err = render_at(&PlainRenderer::new(), dir.path(), "dup")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains('\n'), "{err}");
    let err = render_at(&PlainRenderer::new(), dir.path(), "nope\n../x")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains('\n'), "{err}");
}

/// Issue #12 item 4: the YAML parser's default budget of 1,024 documents refused a file of more
/// objects; 20,000 render, and the limit stays configurable per request.
#[tokio::test]
async fn renders_a_file_of_20000_objects() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c-{i}\n  labels:\n    app: web\ndata:\n  index: \"{i}\"\n"
        ));
    }
    write(dir.path(), "many.yaml", &text);
    let objects = render_at(&PlainRenderer::new(), dir.path(), ".")
        .await
        .unwrap();
    assert_eq!(objects.len(), 20_000);
    assert_eq!(objects[19_999].object()["data"]["index"], "19999");
    let err = PlainRenderer::new()
        .render(
            &RenderRequest::new(SourceRoot::new(dir.path()).unwrap(), ".")
                .with_parse_limits(gitops_core::ParseLimits::default().with_max_documents(10_000)),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("many.yaml:"), "{err}");
}

/// Issue #12 item 3: a post-render step could null `metadata` through `object_mut`, and the
/// applier panicked on it. A step can now only change an object through `Manifest::edit`,
/// which refuses the change with a clear error and keeps the object valid.
#[tokio::test]
async fn a_post_renderer_that_nulls_metadata_gets_a_clear_error() {
    struct NullMetadata;

    #[async_trait::async_trait]
    impl gitops_render::PostRenderer for NullMetadata {
        async fn post_render(
            &self,
            _request: &RenderRequest,
            mut manifests: Vec<gitops_core::Manifest>,
        ) -> Result<Vec<gitops_core::Manifest>, RenderError> {
            for manifest in &mut manifests {
                let origin = manifest.origin().to_string();
                manifest
                    .edit(|object| object["metadata"] = serde_json::Value::Null)
                    .map_err(|source| RenderError::Other {
                        renderer: format!("null-metadata at {origin}"),
                        source: Box::new(source),
                    })?;
            }
            Ok(manifests)
        }
    }

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    );
    let err = render_at(&PlainRenderer::new().then(NullMetadata), dir.path(), ".")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "null-metadata at cm.yaml:1: missing metadata.name"
    );
}
