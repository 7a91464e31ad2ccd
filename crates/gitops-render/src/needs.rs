//! What a render reads besides the directory it renders: [`reads_references`] and
//! [`referenced_paths`], for fetching only the part of a repository a render needs (a sparse
//! artifact).

use std::path::Path;

use serde_json::Value;

use crate::kustomize::{go_fold, lenient_references};

/// The kinds of file whose content names other paths a render reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Kustomization,
    Chart,
}

/// `path`'s kind by its file name. kustomize reads `kustomization.yaml`, `kustomization.yml`
/// and `Kustomization`; helm reads `Chart.yaml` (and a v1 chart's `requirements.yaml`). Names
/// are compared ignoring case, so that a filesystem that ignores case cannot make a renderer
/// read a file whose references were not followed.
fn kind(path: &str) -> Option<Kind> {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    match name.as_str() {
        "kustomization.yaml" | "kustomization.yml" | "kustomization" => Some(Kind::Kustomization),
        "chart.yaml" | "requirements.yaml" => Some(Kind::Chart),
        _ => None,
    }
}

/// Whether the file at `path` (`/`-separated) may name other paths that a render of its
/// directory reads: a kustomization file or a Helm chart's `Chart.yaml`. Plain YAML files name
/// none.
///
/// ```
/// use gitops_render::reads_references;
/// assert!(reads_references("apps/prod/kustomization.yaml"));
/// assert!(reads_references("apps/prod/Kustomization"));
/// assert!(reads_references("charts/web/Chart.yaml"));
/// assert!(!reads_references("apps/prod/deployment.yaml"));
/// ```
#[must_use]
pub fn reads_references(path: &str) -> bool {
    kind(path).is_some()
}

/// The paths (files or directories, relative to the directory holding the file) that a render
/// may read because the file at `path` with this `content` names them:
///
/// - a kustomization: `resources`, `bases`, `components`, `crds`, `configurations`,
///   `generators`, `transformers`, `validators`, `patchesStrategicMerge`, `patches[].path`,
///   `patchesJson6902[].path`, `replacements[].path`, `openapi.path`, the generators' `files`,
///   `envs` and `env`, the files that inline plugin configurations name, and the Helm fields'
///   chart home and values files. Keys count in any case (kustomize matches them ignoring case),
///   nothing is refused: the renderer's own checks refuse what they refuse, on a file that is
///   there;
/// - a chart's `Chart.yaml` (or `requirements.yaml`): the `file://` repositories of its
///   dependencies (a chart directory is otherwise self-contained);
/// - anything else: nothing.
///
/// A remote reference (a URL, a Git address) is not a path and is left out; a text that is not
/// YAML names nothing.
///
/// ```
/// use gitops_render::referenced_paths;
/// let kustomization = b"RESOURCES: [../../base, https://example.com/x.yaml]\npatches:\n- PATH: fix.yaml\n";
/// assert_eq!(referenced_paths("apps/prod/kustomization.yaml", kustomization), ["../../base", "fix.yaml"]);
/// let chart = b"apiVersion: v2\nname: web\ndependencies:\n- name: lib\n  repository: file://../lib\n";
/// assert_eq!(referenced_paths("charts/web/Chart.yaml", chart), ["../lib"]);
/// assert!(referenced_paths("apps/prod/cm.yaml", b"resources: [x]\n").is_empty());
/// ```
#[must_use]
pub fn referenced_paths(path: &str, content: &[u8]) -> Vec<String> {
    let Some(kind) = kind(path) else {
        return Vec::new();
    };
    let Ok(text) = std::str::from_utf8(content) else {
        return Vec::new();
    };
    match kind {
        Kind::Kustomization => lenient_references(text, Path::new(path)),
        Kind::Chart => chart_dependencies(text, Path::new(path)),
    }
}

/// The local (`file://`) repositories of a chart's dependencies; keys are matched ignoring case,
/// as helm's YAML decoding does.
fn chart_dependencies(text: &str, file: &Path) -> Vec<String> {
    let Ok(documents) = gitops_core::parse_yaml_documents(text, file) else {
        return Vec::new();
    };
    let field = |map: &serde_json::Map<String, Value>, name: &str| -> Vec<Value> {
        map.iter()
            .filter(|(key, _)| go_fold(key) == name)
            .map(|(_, value)| value.clone())
            .collect()
    };
    let mut found = Vec::new();
    for document in documents {
        let Value::Object(chart) = document.value else {
            continue;
        };
        for dependencies in field(&chart, "dependencies") {
            let Value::Array(dependencies) = dependencies else {
                continue;
            };
            for dependency in dependencies {
                let Value::Object(dependency) = dependency else {
                    continue;
                };
                for repository in field(&dependency, "repository") {
                    if let Value::String(repository) = repository
                        && let Some(local) = repository.strip_prefix("file://")
                        && !local.is_empty()
                    {
                        found.push(local.to_owned());
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(path: &str, text: &str) -> Vec<String> {
        referenced_paths(path, text.as_bytes())
    }

    #[test]
    fn kustomization_file_names_in_any_case() {
        for name in [
            "kustomization.yaml",
            "kustomization.yml",
            "Kustomization",
            "KUSTOMIZATION.YAML",
            "a/b/Kustomization.yml",
        ] {
            assert!(reads_references(name), "{name}");
            assert_eq!(paths(name, "resources: [x]\n"), ["x"], "{name}");
        }
        for name in [
            "kustomization.json",
            "a/kustomization.yaml.bak",
            "values.yaml",
            "",
        ] {
            assert!(!reads_references(name), "{name}");
            assert!(paths(name, "resources: [x]\n").is_empty(), "{name}");
        }
    }

    #[test]
    fn every_field_that_names_a_path() {
        let text = "\
resources: [../../base, deploy.yaml]
bases: [../old]
components: [../../components/ha]
crds: [crds/a.yaml]
configurations: [config/names.yaml]
generators: [gen/]
transformers: [trans.yaml]
validators: [valid/]
patchesStrategicMerge: [sm.yaml]
patches:
- path: p.yaml
- patch: |-
    - op: remove
      path: /spec
patchesJson6902:
- path: j.yaml
  target: {kind: Deployment, name: web}
replacements:
- path: r.yaml
openapi:
  path: schema.json
configMapGenerator:
- name: cm
  files: [key=files/a.txt, files/b.txt]
  envs: [env/a.env]
secretGenerator:
- name: s
  env: env/s.env
";
        assert_eq!(
            paths("apps/prod/kustomization.yaml", text),
            [
                "../../base",
                "../../components/ha",
                "../old",
                "config/names.yaml",
                "crds/a.yaml",
                "deploy.yaml",
                "env/a.env",
                "env/s.env",
                "files/a.txt",
                "files/b.txt",
                "gen/",
                "j.yaml",
                "p.yaml",
                "r.yaml",
                "schema.json",
                "sm.yaml",
                "trans.yaml",
                "valid/",
            ]
        );
    }

    #[test]
    fn keys_in_any_case_are_followed() {
        // kustomize matches keys ignoring case (Go's folding: `ſ` is `s`, the Kelvin sign `k`):
        // the jail refuses such a file, and what it names is materialised all the same.
        let text = "\
RESOURCES: [../../base]
Resources: [more.yaml]
PATCHES:
- PATH: p.yaml
configMapGenerator:
- FILES: [a.txt]
  ENVS: [b.env]
\u{17f}ecretGenerator:
- Env: s.env
conf\u{130}gurations: [c.yaml]
val\u{131}dators: [v.yaml]
";
        assert_eq!(
            paths("kustomization.yaml", text),
            [
                "../../base",
                "a.txt",
                "b.env",
                "c.yaml",
                "more.yaml",
                "p.yaml",
                "s.env",
                "v.yaml",
            ]
        );
        // The renderer's own check refuses the same text, naming the key and line.
        let error =
            crate::kustomization_references(text, Path::new("kustomization.yaml")).unwrap_err();
        assert!(
            matches!(error, crate::KustomizeError::UnknownField { .. }),
            "{error}"
        );
    }

    #[test]
    fn remote_references_are_not_paths() {
        let text = "\
resources:
- https://example.com/x.yaml
- github.com/org/repo//base?ref=v1
- git@github.com:org/repo.git
- ../base
";
        assert_eq!(paths("kustomization.yaml", text), ["../base"]);
    }

    #[test]
    fn dot_dot_chains_are_kept_as_written() {
        // Resolving against the file's directory, and refusing what leaves the root, is the
        // fetch's business (gitops_source::Sparse); the finder reports what the file says.
        let text = "resources: [../../../../etc, ./a/../b, ../x/../../y]\n";
        assert_eq!(
            paths("a/kustomization.yaml", text),
            ["../../../../etc", "../x/../../y", "./a/../b"]
        );
    }

    #[test]
    fn inline_plugin_configurations_and_helm_fields() {
        let text = "\
transformers:
- |-
  apiVersion: builtin
  kind: PatchTransformer
  metadata: {name: fix}
  Path: inline-patch.yaml
helmGlobals:
  chartHome: ../charts
helmCharts:
- name: web
  valuesFile: values-prod.yaml
  additionalValuesFiles: [extra.yaml]
";
        assert_eq!(
            paths("kustomization.yaml", text),
            [
                "../charts",
                "extra.yaml",
                "inline-patch.yaml",
                "values-prod.yaml"
            ]
        );
        // Without a chart home, kustomize's default `charts`.
        assert_eq!(
            paths("kustomization.yaml", "helmCharts: [{name: web}]\n"),
            ["charts"]
        );
    }

    #[test]
    fn chart_dependencies_on_local_charts() {
        let text = "\
apiVersion: v2
name: web
version: 0.1.0
dependencies:
- name: lib
  repository: file://../../libs/lib
- name: redis
  repository: https://charts.example.com
- name: vendored
  version: 1.0.0
- name: upper
  REPOSITORY: file://../upper
";
        assert_eq!(
            paths("charts/web/Chart.yaml", text),
            ["../../libs/lib", "../upper"]
        );
        assert_eq!(
            paths(
                "old/requirements.yaml",
                "dependencies:\n- name: a\n  repository: file://../a\n"
            ),
            ["../a"]
        );
    }

    #[test]
    fn plain_yaml_and_broken_files_name_nothing() {
        assert!(paths("deploy.yaml", "kind: Kustomization\nresources: [x]\n").is_empty());
        assert!(paths("kustomization.yaml", "resources: [unclosed\n").is_empty());
        assert!(paths("kustomization.yaml", "- a list\n").is_empty());
        assert!(referenced_paths("kustomization.yaml", b"\xff\xfe").is_empty());
        assert!(paths("Chart.yaml", "dependencies: nope\n").is_empty());
    }
}
