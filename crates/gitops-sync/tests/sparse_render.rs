//! A sparse artifact renders exactly as the whole one (issue #17): for every field of a
//! kustomization that names a path, for plugin configurations, for a plain directory with a
//! kustomization below it and for a Helm chart whose values file is outside it, the real
//! kustomize and helm binaries are the oracle: the objects (and their origins) rendered from
//! the sparse artifact equal those rendered from the whole one, and where the whole render
//! fails (a remote base, a key in another case, a file outside a kustomization's root, the
//! Helm fields), the sparse one fails with the same error, never on a missing file. Each
//! sparse artifact leaves out a directory nothing references, so that it is sparse indeed.
//!
//! No control plane: the renders run in this process, the tools are the pinned ones.

use std::path::{Path, PathBuf};

use gitops_core::error_chain;
use gitops_envtest::tools::Tool;
use gitops_render::{
    AutoRenderer, HelmRenderer, KustomizeRenderer, PlainRenderer, RenderRequest, Renderer,
    SourceRoot,
};
use gitops_source::{Artifact, FetchOutcome, FetchRequest, LocalDirectorySource, Source, Sparse};
use gitops_sync::RenderReferences;

async fn pinned(tool: Tool) -> PathBuf {
    tokio::task::spawn_blocking(move || gitops_envtest::tools::ensure(tool))
        .await
        .unwrap()
        .expect("the pinned tool")
}

/// A directory holding `files` (path, content), and an unrelated one that nothing references.
fn repository(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut all: Vec<(String, String)> = files
        .iter()
        .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
        .collect();
    for i in 0..20 {
        all.push((
            format!("unrelated/{i}.yaml"),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unrelated-{i}\n"),
        ));
    }
    for (path, text) in all {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }
    dir
}

/// Fetches `repo` into `out/<name>`, whole or sparse.
async fn fetch(repo: &Path, out: &Path, name: &str, sparse: Option<Sparse>) -> Artifact {
    let mut request = FetchRequest::new(out.join(name));
    if let Some(sparse) = sparse {
        request = request.with_sparse(sparse);
    }
    match LocalDirectorySource::new(repo).fetch(request).await {
        Ok(FetchOutcome::Fetched(artifact)) => artifact,
        other => panic!("fetching {name}: {other:?}"),
    }
}

/// What a render gives, comparable across artifacts: each object with its origin, or the
/// error with the artifact's root written as `<root>`.
async fn render(renderer: &dyn Renderer, root: &Path, path: &str) -> Result<Vec<String>, String> {
    let request = RenderRequest::new(SourceRoot::new(root).unwrap(), path);
    match renderer.render(&request).await {
        Ok(manifests) => Ok(manifests
            .iter()
            .map(|m| format!("{} {}", m.origin(), m.object()))
            .collect()),
        Err(error) => {
            let root = std::fs::canonicalize(root).unwrap();
            Err(error_chain(&error).replace(root.to_str().unwrap(), "<root>"))
        }
    }
}

/// Renders `path` of `repo` from the whole artifact and from a sparse one (the path, what
/// the renderer reads besides it, and what their files reference), asserts that both give
/// the same, and that the sparse artifact holds none of the unrelated files; returns the
/// whole render's result.
async fn same_render(
    renderer: &dyn Renderer,
    repo: &Path,
    path: &str,
) -> Result<Vec<String>, String> {
    let out = tempfile::tempdir().unwrap();
    let whole = fetch(repo, out.path(), "whole", None).await;
    let mut paths = vec![path.to_owned()];
    paths.extend(
        renderer
            .reads_besides(Path::new(path))
            .iter()
            .map(|p| p.to_str().unwrap().to_owned()),
    );
    let sparse = Sparse::new(paths).with_references(RenderReferences);
    let part = fetch(repo, out.path(), "part", Some(sparse)).await;
    let held: Vec<&str> = part.files().map(|(path, _)| path).collect();
    assert!(
        !held.iter().any(|file| file.starts_with("unrelated/")),
        "{path}: the sparse artifact holds unrelated files: {held:?}"
    );
    assert!(part.file_count() < whole.file_count());
    let expected = render(renderer, whole.root(), path).await;
    let got = render(renderer, part.root(), path).await;
    assert_eq!(
        got, expected,
        "{path}: the sparse render differs (sparse files: {held:?})"
    );
    expected
}

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
        envFrom:
        - configMapRef: {name: gen}
";

const CONFIG_MAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: base\ndata:\n  colour: blue\n";

/// Every field of a kustomization that names a path, bases, components and plugin
/// directories outside the overlay, plugin configurations naming files.
#[tokio::test]
async fn every_kustomization_field_renders_the_same_from_a_sparse_artifact() {
    let kustomize = KustomizeRenderer::new(pinned(Tool::Kustomize).await);
    let overlay = "\
resources:
- ../../base
- local.yaml
components:
- ../../components/ha
patches:
- path: patch.yaml
- patch: |-
    - op: add
      path: /data/inline
      value: \"yes\"
  target: {kind: ConfigMap, name: base}
patchesStrategicMerge:
- sm.yaml
patchesJson6902:
- path: j.yaml
  target: {version: v1, kind: ConfigMap, name: local}
configMapGenerator:
- name: gen
  files: [key=files/a.txt]
  envs: [env/a.env]
secretGenerator:
- name: sec
  env: env/s.env
replacements:
- path: r.yaml
crds:
- crds/widgets.json
configurations:
- config/names.yaml
transformers:
- trans.yaml
- ../../transformers/labels
generators:
- ../../generators/extra
- ../../generators/files
openapi:
  path: schema.json
";
    let repo = repository(&[
        (
            "base/kustomization.yaml",
            "resources:\n- cm.yaml\n- deploy.yaml\n",
        ),
        ("base/cm.yaml", CONFIG_MAP),
        ("base/deploy.yaml", DEPLOYMENT),
        (
            "components/ha/kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\npatches:\n- path: replicas.yaml\n",
        ),
        (
            "components/ha/replicas.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n",
        ),
        (
            "transformers/labels/kustomization.yaml",
            "resources:\n- labels.yaml\n",
        ),
        (
            "transformers/labels/labels.yaml",
            "apiVersion: builtin\nkind: LabelTransformer\nmetadata:\n  name: team\nlabels:\n  team: shop\nfieldSpecs:\n- path: metadata/labels\n  create: true\n",
        ),
        (
            "generators/extra/kustomization.yaml",
            "resources:\n- gen.yaml\n",
        ),
        (
            "generators/extra/gen.yaml",
            "apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata:\n  name: extra\nliterals:\n- mode=extra\n",
        ),
        // A generator configuration in a directory of its own naming a file: kustomize loads
        // it relative to the kustomization that lists the directory.
        (
            "generators/files/kustomization.yaml",
            "resources:\n- gen.yaml\n",
        ),
        (
            "generators/files/gen.yaml",
            "apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata:\n  name: fromfile\nfiles:\n- data.txt\n",
        ),
        ("generators/files/data.txt", "beside the generator\n"),
        ("apps/prod/data.txt", "beside the overlay\n"),
        ("apps/prod/kustomization.yaml", overlay),
        (
            "apps/prod/local.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local\ndata:\n  a: \"1\"\n",
        ),
        (
            "apps/prod/patch.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: base\ndata:\n  patched: \"yes\"\n",
        ),
        (
            "apps/prod/sm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local\ndata:\n  sm: \"yes\"\n",
        ),
        (
            "apps/prod/j.yaml",
            "- op: add\n  path: /data/json\n  value: \"yes\"\n",
        ),
        ("apps/prod/files/a.txt", "hello\n"),
        ("apps/prod/env/a.env", "A=1\n"),
        ("apps/prod/env/s.env", "PASSWORD=s3cret\n"),
        (
            "apps/prod/r.yaml",
            "- source: {kind: ConfigMap, name: base, fieldPath: data.colour}\n  targets:\n  - select: {kind: ConfigMap, name: local}\n    fieldPaths: [data.colour]\n    options: {create: true}\n",
        ),
        ("apps/prod/crds/widgets.json", "{}\n"),
        (
            "apps/prod/config/names.yaml",
            "nameReference:\n- kind: ConfigMap\n  fieldSpecs:\n  - kind: Widget\n    path: spec/configMap\n",
        ),
        (
            "apps/prod/trans.yaml",
            "apiVersion: builtin\nkind: PatchTransformer\nmetadata:\n  name: fix\npath: plugin-patch.yaml\ntarget:\n  kind: ConfigMap\n  name: local\n",
        ),
        (
            "apps/prod/plugin-patch.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local\ndata:\n  plugin: \"yes\"\n",
        ),
        ("apps/prod/schema.json", "{\"definitions\": {}}\n"),
    ]);
    let objects = same_render(&kustomize, repo.path(), "apps/prod")
        .await
        .expect("the overlay renders");
    // Every field took effect (so that a file left out would have shown).
    let all = objects.join("\n");
    for expected in [
        "\"patched\":\"yes\"",
        "\"inline\":\"yes\"",
        "\"sm\":\"yes\"",
        "\"json\":\"yes\"",
        "\"plugin\":\"yes\"",
        "\"team\":\"shop\"",
        "\"replicas\":3",
        "\"mode\":\"extra\"",
        "\"data.txt\":\"beside the overlay\\n\"",
        "\"key\":\"hello\\n\"",
        "\"A\":\"1\"",
        "\"colour\":\"blue\"",
        "\"kind\":\"Secret\"",
    ] {
        assert!(all.contains(expected), "{expected} missing from {all}");
    }
    assert!(all.contains("base/deploy.yaml"), "origins are kept: {all}");
}

/// Where the whole render fails on a kustomization, the sparse one fails the same way (naming
/// the file and the field), never on a missing file.
#[tokio::test]
async fn refused_kustomizations_fail_the_same_from_a_sparse_artifact() {
    let kustomize = KustomizeRenderer::new(pinned(Tool::Kustomize).await);
    let repo = repository(&[
        ("base/kustomization.yaml", "resources:\n- cm.yaml\n"),
        ("base/cm.yaml", CONFIG_MAP),
        ("shared/sm.yaml", CONFIG_MAP),
        (
            "charts/web/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 0.1.0\n",
        ),
        // A key in another case: kustomize would read it as `resources`.
        (
            "apps/upper/kustomization.yaml",
            "RESOURCES:\n- ../../base\n",
        ),
        // A remote base.
        (
            "apps/remote/kustomization.yaml",
            "resources:\n- ../../base\n- https://127.0.0.1:1/base.yaml\n",
        ),
        // A file outside the kustomization's root: kustomize's load restrictor refuses it.
        (
            "apps/outside/kustomization.yaml",
            "resources:\n- ../../base\npatchesStrategicMerge:\n- ../../shared/sm.yaml\n",
        ),
        // The Helm fields (kustomize runs without --enable-helm).
        (
            "apps/helm/kustomization.yaml",
            "helmGlobals:\n  chartHome: ../../charts\nhelmCharts:\n- name: web\n  valuesFile: values.yaml\n",
        ),
        ("apps/helm/values.yaml", "a: 1\n"),
        // A resource that the root's ignore file leaves out of both artifacts.
        (".sourceignore", "/apps/ignored/cm.yaml\n"),
        ("apps/ignored/kustomization.yaml", "resources:\n- cm.yaml\n"),
        ("apps/ignored/cm.yaml", CONFIG_MAP),
        // A resource that is missing in the whole artifact too.
        (
            "apps/missing/kustomization.yaml",
            "resources:\n- ../../nowhere\n",
        ),
    ]);
    for (path, expected) in [
        ("apps/upper", "unknown field \"RESOURCES\""),
        ("apps/remote", "remote reference"),
        ("apps/outside", "is not in or below"),
        ("apps/helm", "is not supported"),
        ("apps/missing", "resources"),
        ("apps/ignored", "resources"),
    ] {
        let error = same_render(&kustomize, repo.path(), path)
            .await
            .expect_err(path);
        assert!(error.contains(expected), "{path}: {error}");
        assert!(
            error.contains(path),
            "{path}: the error names the file: {error}"
        );
    }
}

/// A plain directory whose subdirectory is a kustomization with a base outside, rendered by
/// the automatic renderer; a Helm chart whose values file is outside it, with a vendored
/// dependency.
#[tokio::test]
async fn plain_directories_and_charts_render_the_same_from_a_sparse_artifact() {
    let kustomize = KustomizeRenderer::new(pinned(Tool::Kustomize).await);
    let helm = pinned(Tool::Helm).await;
    let repo = repository(&[
        ("base/kustomization.yaml", "resources:\n- cm.yaml\n"),
        ("base/cm.yaml", CONFIG_MAP),
        (
            "apps/plain/local.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local\n",
        ),
        (
            "apps/plain/sub/kustomization.yaml",
            "resources:\n- ../../../base\nnamePrefix: sub-\n",
        ),
        (
            "charts/web/Chart.yaml",
            "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n- name: lib\n  version: 0.1.0\n  repository: file://../lib\n",
        ),
        ("charts/web/values.yaml", "colour: default\n"),
        (
            "charts/web/templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  colour: {{ .Values.colour }}\n",
        ),
        (
            "charts/web/charts/lib/Chart.yaml",
            "apiVersion: v2\nname: lib\nversion: 0.1.0\n",
        ),
        (
            "charts/web/charts/lib/templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lib\n",
        ),
        (
            "charts/lib/Chart.yaml",
            "apiVersion: v2\nname: lib\nversion: 0.1.0\n",
        ),
        ("env/prod/values.yaml", "colour: prod\n"),
        ("env/dev/values.yaml", "colour: dev\n"),
    ]);
    let auto = AutoRenderer::new(PlainRenderer::new()).with_kustomize(kustomize);
    let objects = same_render(&auto, repo.path(), "apps/plain")
        .await
        .expect("the plain directory renders");
    assert!(
        objects.join("\n").contains("\"name\":\"sub-base\""),
        "{objects:?}"
    );

    let chart = HelmRenderer::new(&helm, "web").values_file("../../env/prod/values.yaml");
    let objects = same_render(&chart, repo.path(), "charts/web")
        .await
        .expect("the chart renders");
    let all = objects.join("\n");
    assert!(all.contains("\"colour\":\"prod\""), "{all}");
    assert!(all.contains("\"name\":\"lib\""), "{all}");
    // Through the automatic renderer too.
    let auto = AutoRenderer::new(PlainRenderer::new())
        .with_helm(HelmRenderer::new(&helm, "web").values_file("../../env/prod/values.yaml"));
    same_render(&auto, repo.path(), "charts/web")
        .await
        .expect("the chart renders");
}

/// Every field that names a file, pointing outside the kustomization's directory (kustomize's
/// load restrictor refuses a file there, not a directory): whatever the whole render gives, the
/// sparse one gives the same, so that no field's file is ever missing from a sparse artifact.
#[tokio::test]
async fn fields_naming_files_outside_the_kustomization_render_the_same() {
    let kustomize = KustomizeRenderer::new(pinned(Tool::Kustomize).await);
    let patch =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: base\ndata:\n  patched: \"yes\"\n";
    let json_patch = "- op: add\n  path: /data/json\n  value: \"yes\"\n";
    let cases: &[(&str, &str)] = &[
        ("openapi", "openapi:\n  path: ../../shared/schema.json\n"),
        ("crds", "crds:\n- ../../shared/crds.json\n"),
        (
            "configurations",
            "configurations:\n- ../../shared/names.yaml\n",
        ),
        ("patches", "patches:\n- path: ../../shared/patch.yaml\n"),
        (
            "json6902",
            "patchesJson6902:\n- path: ../../shared/json.yaml\n  target: {version: v1, kind: ConfigMap, name: base}\n",
        ),
        (
            "strategic",
            "patchesStrategicMerge:\n- ../../shared/patch.yaml\n",
        ),
        (
            "replacements",
            "replacements:\n- path: ../../shared/r.yaml\n",
        ),
        (
            "files",
            "configMapGenerator:\n- name: gen\n  files: [key=../../shared/a.txt]\n",
        ),
        (
            "envs",
            "configMapGenerator:\n- name: gen\n  envs: [../../shared/a.env]\n",
        ),
        (
            "env",
            "secretGenerator:\n- name: sec\n  env: ../../shared/a.env\n",
        ),
        (
            "transformer-file",
            "transformers:\n- ../../shared/trans.yaml\n",
        ),
        (
            "transformer-inline",
            "transformers:\n- |-\n  apiVersion: builtin\n  kind: PatchTransformer\n  metadata: {name: fix}\n  path: ../../shared/patch.yaml\n",
        ),
        (
            "resource-file",
            "resources:\n- ../../base\n- ../../shared/cm.yaml\n",
        ),
        ("component", "components:\n- ../../shared/component\n"),
    ];
    let mut files: Vec<(String, String)> = vec![
        ("base/kustomization.yaml".into(), "resources:\n- cm.yaml\n".into()),
        ("base/cm.yaml".into(), CONFIG_MAP.into()),
        ("shared/schema.json".into(), "{\"definitions\": {}}\n".into()),
        ("shared/crds.json".into(), "{}\n".into()),
        (
            "shared/names.yaml".into(),
            "nameReference:\n- kind: ConfigMap\n  fieldSpecs:\n  - kind: Widget\n    path: spec/configMap\n".into(),
        ),
        ("shared/patch.yaml".into(), patch.into()),
        ("shared/json.yaml".into(), json_patch.into()),
        (
            "shared/r.yaml".into(),
            "- source: {kind: ConfigMap, name: base, fieldPath: data.colour}\n  targets:\n  - select: {kind: ConfigMap, name: base}\n    fieldPaths: [data.copy]\n    options: {create: true}\n".into(),
        ),
        ("shared/a.txt".into(), "hello\n".into()),
        ("shared/a.env".into(), "A=1\n".into()),
        (
            "shared/trans.yaml".into(),
            "apiVersion: builtin\nkind: LabelTransformer\nmetadata:\n  name: team\nlabels:\n  team: shop\nfieldSpecs:\n- path: metadata/labels\n  create: true\n".into(),
        ),
        (
            "shared/cm.yaml".into(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n".into(),
        ),
        (
            "shared/component/kustomization.yaml".into(),
            "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\npatches:\n- path: patch.yaml\n".into(),
        ),
        ("shared/component/patch.yaml".into(), patch.into()),
    ];
    for (name, fields) in cases {
        files.push((
            format!("apps/{name}/kustomization.yaml"),
            if fields.starts_with("resources:") {
                (*fields).to_owned()
            } else {
                format!("resources:\n- ../../base\n{fields}")
            },
        ));
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, text)| (path.as_str(), text.as_str()))
        .collect();
    let repo = repository(&borrowed);
    for (name, _) in cases {
        let path = format!("apps/{name}");
        let result = same_render(&kustomize, repo.path(), &path).await;
        if *name == "component" {
            // A directory may be outside (it is materialised with everything below it).
            assert!(result.is_ok(), "{result:?}");
        } else {
            // A file may not: kustomize's load restrictor refuses it, in both renders alike.
            let error = result.expect_err(name);
            assert!(error.contains("is not in or below"), "{name}: {error}");
        }
    }
}
