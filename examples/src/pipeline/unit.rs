//! [`sync_unit`]: a `gitops-sync` [`SyncUnit`] set up from a [`SyncConfig`] (the flags of the
//! `sync` and `reconcile` binaries); the cycle itself is the library's.

use std::path::Path;

use gitops_apply::{Applier, ApplyOptions, ConfigMapInventory, TakeoverManager};
use gitops_source::{GitSource, LocalDirectorySource, Revision, Source, SourceError};
use gitops_sync::{ArtifactStore, SyncError, SyncUnit, SyncUnitBuilder, WaitPolicy};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};

use gitops_sync::spec::RendererKind;

use super::config::{ConfigError, SyncConfig, git_reference};
use super::report::error_chain;
use super::run::{APPLIED_REVISION_ANNOTATION, build_renderer, discover_capabilities};

/// A [`SyncUnit`]'s builder for `config` (add a progress callback, then build): its source (Git, with its Git cache in `work_dir`, or a local
/// directory), its renderer (Helm told the cluster's version and API versions, read once here
/// by discovery unless `--helm-kube-version` is given), an applier keeping its inventory in the
/// configured ConfigMap, the apply options of the flags (taking over `kubectl` edits, as the
/// library's default does), and a wait after changes when a wait timeout is set.
///
/// ```no_run
/// use gitops_examples::pipeline::{SyncConfig, local_source, sync_unit};
/// # async fn run(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let config = SyncConfig::builder(local_source("./deploy")).build()?;
/// let work_dir = tempfile::tempdir()?;
/// let mut unit = sync_unit(client, &config, work_dir.path()).await?.build()?;
/// let report = unit.sync(&tokio_util::sync::CancellationToken::new()).await?;
/// println!("{report}");
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`ConfigError`]: the source, the inventory or a tool named by the configuration is not
/// usable, or the artifact store cannot be made in `work_dir`.
pub async fn sync_unit(
    client: kube::Client,
    config: &SyncConfig,
    work_dir: &Path,
) -> Result<SyncUnitBuilder, ConfigError> {
    let capabilities = match config.renderer.kind {
        RendererKind::Helm | RendererKind::Auto => {
            Some(discover_capabilities(&client, config.helm_kube_version.as_deref()).await)
        }
        RendererKind::Plain | RendererKind::Kustomize => None,
    };
    let renderer = build_renderer(config, capabilities.as_ref())?;
    let inventory = ConfigMapInventory::new(&config.inventory.namespace, &config.inventory.name)
        .map_err(|source| ConfigError::InvalidInventory {
            location: config.inventory.to_string(),
            source: Some(source),
        })?;
    let applier = Applier::builder(client, inventory)
        .field_manager(config.field_manager.clone())
        .build();
    let builder = match (&config.source.url, &config.source.local_path) {
        (Some(url), _) => {
            let mut git = GitSource::builder(url.clone(), work_dir.join("git-cache"))
                .reference(git_reference(&config.source))
                .timeout(config.fetch_timeout);
            if let Some(credentials) = &config.credentials {
                git = git.credentials(credentials.clone());
            }
            if let Some(known_hosts) = &config.known_hosts {
                git = git.known_hosts(known_hosts.clone());
            }
            unit_of(git.build().map_err(ConfigError::Source)?, renderer, applier)
        }
        (None, path) => {
            let path = std::path::PathBuf::from(path.clone().unwrap_or_default());
            if !path.is_dir() {
                return Err(ConfigError::Source(SourceError::InvalidConfiguration {
                    message: format!(
                        "{} is not a directory",
                        gitops_core::escape::EscapedPath(&path)
                    ),
                    source: None,
                }));
            }
            unit_of(LocalDirectorySource::new(path), renderer, applier)
        }
    };
    let artifacts = work_dir.join("artifacts");
    let store = ArtifactStore::new(artifacts)
        .map_err(|source| ConfigError::Unit(Box::new(SyncError::Setup(source))))?;
    Ok(builder
        .path(&config.subpath)
        .apply_options(apply_options(config))
        .wait(
            config
                .wait_timeout
                .map_or(WaitPolicy::Never, WaitPolicy::WhenChanged),
        )
        .artifact_store(store))
}

/// Records `revision` on the inventory ConfigMap of `config` ([`APPLIED_REVISION_ANNOTATION`],
/// a merge patch of one annotation that the applier's own writes of the inventory leave
/// alone), so that a later one-shot `sync` tells a new revision from drift. A failure is only
/// logged: the annotation is a hint, not the inventory.
///
/// ```no_run
/// # async fn run(client: kube::Client, config: gitops_examples::pipeline::SyncConfig) {
/// let revision = gitops_source::Revision::from_string("main@sha1:3f9c0d1e2a4b");
/// gitops_examples::pipeline::record_applied_revision(&client, &config, &revision).await;
/// # }
/// ```
pub async fn record_applied_revision(
    client: &kube::Client,
    config: &SyncConfig,
    revision: &Revision,
) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &config.inventory.namespace);
    let patch = serde_json::json!({
        "metadata": {"annotations": {APPLIED_REVISION_ANNOTATION: revision.as_str()}}
    });
    let params = PatchParams {
        field_manager: Some(config.field_manager.clone()),
        ..PatchParams::default()
    };
    if let Err(error) = api
        .patch(&config.inventory.name, &params, &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(inventory = %config.inventory, error = %error_chain(&error), "recording the applied revision");
    }
}

/// A builder over `source` (a function, so that each kind of source keeps its own type).
fn unit_of(
    source: impl Source + 'static,
    renderer: Box<dyn gitops_render::Renderer>,
    applier: Applier,
) -> SyncUnitBuilder {
    SyncUnit::builder(source, renderer, applier)
}

/// The apply options of `config`'s flags.
fn apply_options(config: &SyncConfig) -> ApplyOptions {
    ApplyOptions::default()
        .with_takeover(TakeoverManager::defaults())
        .with_force(config.force)
        .with_dry_run(config.dry_run)
        .with_target_namespace(config.target_namespace.clone())
        .with_create_target_namespace(
            config.target_namespace.is_some() && config.create_target_namespace,
        )
        .with_prune(config.prune)
        .with_recreate_on_immutable(config.recreate_on_immutable)
        .with_allow_empty_set(config.allow_empty_set)
        .with_allow_cascading_prune(config.allow_cascading_prune)
        .with_take_ownership(config.take_ownership)
}

/// The revision the inventory ConfigMap of `config` records ([`APPLIED_REVISION_ANNOTATION`]):
/// `None` when there is no inventory yet, it records none, or it cannot be read (then the
/// revision counts as new, as on a first sync).
///
/// ```no_run
/// # async fn run(client: kube::Client, config: gitops_examples::pipeline::SyncConfig) {
/// let applied = gitops_examples::pipeline::read_applied_revision(&client, &config).await;
/// # drop(applied);
/// # }
/// ```
pub async fn read_applied_revision(client: &kube::Client, config: &SyncConfig) -> Option<Revision> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &config.inventory.namespace);
    match api.get_opt(&config.inventory.name).await {
        Ok(configmap) => configmap
            .and_then(|configmap| configmap.metadata.annotations)
            .and_then(|mut annotations| annotations.remove(APPLIED_REVISION_ANNOTATION))
            .map(Revision::from_string),
        Err(error) => {
            tracing::debug!(inventory = %config.inventory, error = %error_chain(&error), "reading the applied revision");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_directory_is_refused_naming_it() {
        // A client that is never used: a plain renderer needs no discovery.
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        let config = SyncConfig::builder(crate::pipeline::local_source("/nonexistent/dir"))
            .renderer(gitops_sync::spec::RendererSpec {
                kind: RendererKind::Plain,
                helm: None,
            })
            .build()
            .unwrap();
        let work_dir = tempfile::tempdir().unwrap();
        let Err(error) = sync_unit(client, &config, work_dir.path()).await else {
            panic!("a missing directory must be refused");
        };
        assert!(error_chain(&error).contains("/nonexistent/dir"), "{error}");
    }
}
