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

#[tokio::test]
async fn substitution_runs_after_a_plain_render() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "app.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${APP}-${ENV:=dev}\n  annotations:\n    region: ${REGION:-eu}\ndata:\n  image: ${IMAGE/:/@}\n  literal: $${APP}\n  upper: ${APP^^}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: script\n  annotations:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\ndata:\n  run.sh: echo ${HOME}\n",
    );
    let renderer = PlainRenderer::new().then(
        Substitution::new()
            .with_variable("APP", "web")
            .with_variable("IMAGE", "nginx:1.27")
            .strict(true),
    );
    let objects = render_at(&renderer, dir.path(), ".").await.unwrap();
    assert_eq!(objects[0].name(), "web-dev");
    assert_eq!(objects[0].annotation("region"), Some("eu"));
    assert_eq!(
        objects[0].object()["data"],
        serde_json::json!({"image": "nginx@1.27", "literal": "${APP}", "upper": "WEB"})
    );
    assert_eq!(objects[1].object()["data"]["run.sh"], "echo ${HOME}");
    assert_eq!(objects[0].origin().to_string(), "app.yaml:1");

    // Strict mode names the unset variables and the object with its origin.
    write(
        dir.path(),
        "more.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: more\ndata:\n  a: ${ZONE}${AREA:-a}\n",
    );
    let err = render_at(&renderer, dir.path(), ".").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "ConfigMap more from more.yaml:1: variables not set (strict mode): ZONE"
    );

    // Substitution that makes two objects collide is caught after the step.
    write(
        dir.path(),
        "more.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${APP}-dev\n",
    );
    let err = render_at(&renderer, dir.path(), ".").await.unwrap_err();
    assert!(matches!(err, RenderError::Duplicate(_)), "{err}");
}
