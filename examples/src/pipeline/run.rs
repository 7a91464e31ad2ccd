//! What the binaries share around a `gitops-sync` unit: the renderer the flags choose (Helm
//! told the cluster's capabilities), the plan of a dry run, and the annotation that records the
//! revision applied.

use std::path::PathBuf;

use gitops_apply::ObjectAction;
use gitops_diff::Colour;
use gitops_render::tool::{Tool, ToolLocator, locate};
use gitops_render::{
    AutoRenderer, HelmRenderer, KustomizeRenderer, PlainRenderer, Renderer, Substitution,
};
use kube::api::{Api, DynamicObject};

use gitops_sync::spec::{HelmSpec, RendererKind};

use super::config::{ConfigError, SyncConfig};
use super::report::error_chain;

/// The annotation of the inventory ConfigMap naming the revision last applied to it, so that a
/// one-shot `sync` (which remembers nothing between runs) tells a new revision from drift.
pub const APPLIED_REVISION_ANNOTATION: &str = "sync.gitops.rs/applied-revision";

/// What Helm is told of the cluster: `.Capabilities.KubeVersion` and `.Capabilities.APIVersions`.
#[derive(Clone, Debug, Default)]
pub(super) struct Capabilities {
    kube_version: Option<String>,
    api_versions: Vec<String>,
}

/// A human-readable plan of a dry-run change set: one unified YAML diff per object to create or
/// change (Secret values masked, coloured as `colour` says), and one line per object to
/// prune, fail, or be left alone for a reason to act on (owned by another inventory). Reads
/// each changed object from the cluster; an object that cannot be read, or
/// changed since the plan, is shown by its field changes instead.
///
/// ```no_run
/// # async fn run(client: kube::Client, change_set: gitops_apply::ChangeSet) {
/// let text = gitops_examples::pipeline::plan_text(&client, &change_set, gitops_diff::Colour::Never).await;
/// print!("{text}");
/// # }
/// ```
pub async fn plan_text(
    client: &kube::Client,
    change_set: &gitops_apply::ChangeSet,
    colour: Colour,
) -> String {
    let mut text = String::new();
    for change in &change_set.changes {
        match change.action {
            ObjectAction::Created | ObjectAction::Configured | ObjectAction::Recreated => {}
            ObjectAction::Pruned => {
                text.push_str(&format!("--- prune {}\n", change.id.display_name()));
                continue;
            }
            ObjectAction::Failed => {
                text.push_str(&format!("!!! {change}\n"));
                continue;
            }
            // Left alone for a reason to act on (owned by another inventory).
            ObjectAction::Skipped if change.error.is_some() => {
                text.push_str(&format!("=== {change}\n"));
                continue;
            }
            _ => continue,
        }
        let Some(diff) = &change.diff else {
            text.push_str(&format!("*** {change}\n"));
            continue;
        };
        let live = if change.action == ObjectAction::Created {
            None
        } else {
            let api: Api<DynamicObject> = match &change.id.namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &change.resource),
                None => Api::all_with(client.clone(), &change.resource),
            };
            match api.get_opt(&change.id.name).await {
                Ok(live) => live.and_then(|object| serde_json::to_value(object).ok()),
                Err(error) => {
                    tracing::warn!(object = %change.id.display_name(), error = %error_chain(&error), "reading the live object for the plan");
                    None
                }
            }
        };
        match diff.unified_yaml(live.as_ref(), colour) {
            Ok(unified) => text.push_str(&unified),
            Err(error) => {
                // The live object changed since the plan: list the field changes.
                tracing::debug!(error = %error_chain(&error), "falling back to field changes");
                text.push_str(&format!("*** {}\n", change.id.display_name()));
                for field in &diff.changes {
                    text.push_str(&format!("    {:?} {}\n", field.kind, field.path));
                }
            }
        }
    }
    text
}

/// The cluster's version (unless `kube_version` is given) and the API versions it serves, as
/// helm's `--kube-version` and `--api-versions` take them (`v1`, `v1/Pod`, `apps/v1`,
/// `apps/v1/Deployment`), read with aggregated discovery (two requests). What cannot be read is
/// left out with a warning: helm then uses its own defaults.
pub(super) async fn discover_capabilities(
    client: &kube::Client,
    kube_version: Option<&str>,
) -> Capabilities {
    let kube_version = match kube_version {
        Some(version) => Some(version.to_owned()),
        None => match client.apiserver_version().await {
            Ok(info) => Some(info.git_version),
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "reading the cluster's version for helm (set --helm-kube-version)");
                None
            }
        },
    };
    let mut api_versions = std::collections::BTreeSet::new();
    for (what, result) in [
        ("/api", client.list_core_api_versions_aggregated().await),
        ("/apis", client.list_api_groups_aggregated().await),
    ] {
        let list = match result {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "reading the API versions the cluster serves ({what}) for helm");
                continue;
            }
        };
        for group in list.items {
            let name = group
                .metadata
                .and_then(|metadata| metadata.name)
                .unwrap_or_default();
            for version in group.versions {
                let Some(version_name) = version.version else {
                    continue;
                };
                let group_version = if name.is_empty() {
                    version_name
                } else {
                    format!("{name}/{version_name}")
                };
                for resource in &version.resources {
                    if let Some(kind) = resource
                        .response_kind
                        .as_ref()
                        .and_then(|kind| kind.kind.as_deref())
                        .filter(|kind| !kind.is_empty())
                    {
                        api_versions.insert(format!("{group_version}/{kind}"));
                    }
                }
                api_versions.insert(group_version);
            }
        }
    }
    tracing::debug!(
        ?kube_version,
        api_versions = api_versions.len(),
        "cluster capabilities for helm"
    );
    Capabilities {
        kube_version,
        api_versions: api_versions.into_iter().collect(),
    }
}

/// A Helm renderer with the configuration's namespace, hooks and `capabilities`; `release`
/// names the release and its values (else, or without a release name, the release is named
/// after the chart).
fn helm_renderer(
    config: &SyncConfig,
    binary: PathBuf,
    release: Option<&HelmSpec>,
    capabilities: Option<&Capabilities>,
) -> HelmRenderer {
    let mut helm = HelmRenderer::with_binary(binary).with_hooks(config.helm_hooks);
    if let Some(namespace) = release
        .and_then(|release| release.namespace.as_ref())
        .or(config.target_namespace.as_ref())
    {
        helm = helm.namespace(namespace.clone());
    }
    if let Some(release) = release {
        if let Some(name) = &release.release_name {
            helm = helm.release(name.clone());
        }
        helm = helm.include_crds(release.includes_crds());
        for file in &release.values_files {
            helm = helm.values_file(file.clone());
        }
        if let Some(values) = &release.values {
            helm = helm.values(values.clone());
        }
    }
    let kube_version = config
        .helm_kube_version
        .as_ref()
        .or(capabilities.and_then(|c| c.kube_version.as_ref()));
    if let Some(version) = kube_version {
        helm = helm.with_kube_version(version.clone());
    }
    if let Some(capabilities) = capabilities {
        helm = helm.with_api_versions(capabilities.api_versions.iter().cloned());
    }
    helm
}

pub(super) fn build_renderer(
    config: &SyncConfig,
    capabilities: Option<&Capabilities>,
) -> Result<Box<dyn Renderer>, ConfigError> {
    // Each tool: the configured path, else GITOPS_KUSTOMIZE / GITOPS_HELM, else PATH. A path
    // configured that is wrong is an error; a tool found nowhere is one only when a directory
    // needs it, and the error then says how to give it.
    let renderer: Box<dyn Renderer> = match config.renderer.kind {
        RendererKind::Plain => Box::new(PlainRenderer::new()),
        RendererKind::Auto => {
            let mut auto = AutoRenderer::new(PlainRenderer::new());
            let helm = ToolLocator::new(Tool::Helm)
                .explicit(config.helm_binary.as_deref())
                .locate_optional()?;
            if let Some(helm) = helm {
                auto = auto.with_helm(helm_renderer(config, helm.into_path(), None, capabilities));
            }
            Box::new(auto.with_located_tools(
                config.kustomize_binary.as_deref(),
                config.helm_binary.as_deref(),
            )?)
        }
        RendererKind::Kustomize => Box::new(KustomizeRenderer::locate(
            config.kustomize_binary.as_deref(),
        )?),
        RendererKind::Helm => {
            let binary = locate(Tool::Helm, config.helm_binary.as_deref())?;
            let release = config.renderer.helm.clone().unwrap_or_default();
            Box::new(helm_renderer(config, binary, Some(&release), capabilities))
        }
    };
    if config.variables.is_empty() && !config.strict_substitution {
        return Ok(renderer);
    }
    let substitution = Substitution::new()
        .with_variables(config.variables.clone())
        .strict(config.strict_substitution);
    Ok(Box::new(renderer.then(substitution)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::local_source;
    use gitops_sync::spec::RendererSpec;

    fn renderer(kind: RendererKind) -> RendererSpec {
        RendererSpec { kind, helm: None }
    }

    /// Marks the child process of `missing_tools_are_named`.
    const MISSING_TOOLS_CHILD: &str = "GITOPS_EXAMPLES_MISSING_TOOLS_CHILD";

    #[test]
    fn missing_tools_are_named() {
        // A configured path must be an executable file: it is refused when the renderer is
        // made, naming it (it was taken as given, and failed only when a kustomization came).
        for kind in [RendererKind::Kustomize, RendererKind::Auto] {
            let config = SyncConfig::builder(local_source("/"))
                .renderer(renderer(kind))
                .kustomize_binary("/nonexistent/kustomize")
                .build()
                .unwrap();
            let Err(error) = build_renderer(&config, None) else {
                panic!("a kustomize binary that does not exist must be refused");
            };
            assert!(
                matches!(error, ConfigError::Tool(ref e) if !e.is_not_found()),
                "{error:?}"
            );
            assert!(
                error_chain(&error).contains("/nonexistent/kustomize (given explicitly)"),
                "{error}"
            );
        }

        // Found nowhere (an empty PATH, GITOPS_KUSTOMIZE and GITOPS_HELM unset): the error names
        // the tool and how to give it. The environment is the process's, so a child process
        // checks it.
        let empty = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pipeline::run::tests::missing_tools_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(MISSING_TOOLS_CHILD, "1")
            .env("PATH", empty.path())
            .env_remove("GITOPS_KUSTOMIZE")
            .env_remove("GITOPS_HELM")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("test result: ok. 1 passed"),
            "the child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Not a test of its own: `missing_tools_are_named` runs it in a child process whose PATH
    /// is empty, without `GITOPS_KUSTOMIZE` and `GITOPS_HELM`. Run any other way, it fails.
    #[test]
    #[ignore = "a helper, run only by missing_tools_are_named"]
    fn missing_tools_child() {
        assert!(
            std::env::var_os(MISSING_TOOLS_CHILD).is_some(),
            "missing_tools_child is a helper: run missing_tools_are_named instead"
        );
        for (choice, tool) in [
            (renderer(RendererKind::Kustomize), "kustomize"),
            (
                RendererSpec {
                    kind: RendererKind::Helm,
                    helm: Some(HelmSpec {
                        release_name: Some("release".into()),
                        ..HelmSpec::default()
                    }),
                },
                "helm",
            ),
        ] {
            let config = SyncConfig::builder(local_source("/"))
                .renderer(choice)
                .build()
                .unwrap();
            let Err(error) = build_renderer(&config, None) else {
                panic!("{tool} is nowhere, yet a renderer was built");
            };
            assert!(
                matches!(error, ConfigError::Tool(ref e) if e.is_not_found()),
                "{error:?}"
            );
            assert_eq!(
                error.to_string(),
                format!(
                    "{tool} not found: set GITOPS_{}, pass its path (such as --{tool}) or put it on PATH",
                    tool.to_uppercase()
                )
            );
        }
        // The automatic renderer does without them, until a directory needs one.
        let config = SyncConfig::builder(local_source("/")).build().unwrap();
        assert!(build_renderer(&config, None).is_ok());
    }
}
