//! The flags of `sync` and `reconcile` ([`SyncArgs`]) and what they become: the library's
//! [`SyncSpec`], a [`SpecUnit`] with what a spec cannot hold (credentials read from files and
//! the environment, the CLI's apply options) and a [`UnitFactory`] (tools, field manager,
//! Helm's hooks and version, dry run).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use gitops_apply::{ApplyOptions, TakeoverManager};
use gitops_render::HookPolicy;
use gitops_render::tool::{Tool, ToolLocator};
use gitops_source::{GitCredentials, Revision, Secret};
use gitops_sync::spec::{
    GitRef, HelmSpec, InventorySpec, RendererKind, RendererSpec, SourceSpec, SyncSpec,
};
use gitops_sync::{SpecUnit, SyncUnitBuilder, UnitFactory};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};

/// The annotation of the inventory ConfigMap naming the revision last applied to it, so that a
/// one-shot `sync` (which remembers nothing between runs) tells a new revision from drift.
pub const APPLIED_REVISION_ANNOTATION: &str = "sync.gitops.rs/applied-revision";

/// The renderer, as chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RendererFlag {
    /// Kustomize for a kustomization, plain files otherwise.
    Auto,
    /// YAML and JSON files, recursively.
    Plain,
    /// `kustomize build`.
    Kustomize,
    /// `helm template` (see `--helm-release`).
    Helm,
}

/// What Helm does with hooks, as chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HooksFlag {
    /// Leave hooks out, with a warning.
    Skip,
    /// Keep hooks other than tests, run in their sync phases.
    Include,
}

/// The source, render and apply flags of `sync` and `reconcile`.
#[derive(Clone, Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["url", "path"])))]
pub struct SyncArgs {
    /// The Git repository (file://, git://, http(s)://, ssh:// or user@host:path).
    #[arg(long)]
    pub url: Option<String>,
    /// A local directory instead of a Git repository.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// The Git reference: a branch (`main`), a tag (`v1.2.3`), a semver range (`^1.2`), a
    /// commit (40 hex digits), a ref (`refs/...`), or explicit `branch:`/`tag:`/`semver:`.
    /// Default: the remote's default branch.
    #[arg(long = "ref", value_name = "REF")]
    pub reference: Option<String>,
    /// The Git user name for HTTP basic authentication (the password comes from
    /// `--git-password-env`).
    #[arg(long, requires = "git_password_env")]
    pub git_username: Option<String>,
    /// The environment variable holding the Git password or access token (HTTP basic
    /// authentication with `--git-username`, else a bearer token). Secrets never go on the
    /// command line, where other users can read them.
    #[arg(long, value_name = "VARIABLE")]
    pub git_password_env: Option<String>,
    /// An SSH private key file for `ssh://` and `user@host:path` URLs.
    #[arg(long, value_name = "FILE", conflicts_with = "git_password_env")]
    pub ssh_key: Option<PathBuf>,
    /// The known_hosts file the SSH server's key must match.
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// The directory to render, relative to the source root.
    #[arg(long, default_value = ".")]
    pub subpath: String,
    /// Fetch only what the render of `--subpath` reads: the files below it and, followed
    /// transitively, what its kustomizations and charts name and the `--helm-values` files
    /// (a small folder of a large repository then costs little). A render that reads a path
    /// outside these fails naming it; it never renders with a file missing.
    #[arg(long)]
    pub sparse: bool,
    /// How to render the directory.
    #[arg(long, value_enum, default_value_t = RendererFlag::Auto)]
    pub renderer: RendererFlag,
    /// The Helm release name (with `--renderer helm`). Default: the chart directory's name (the
    /// chart's name when it is the source root), as Argo CD names it after the application.
    #[arg(long)]
    pub helm_release: Option<String>,
    /// What Helm does with a chart's hooks (`helm.sh/hook`): skip them with a warning, or
    /// include those other than tests, run as sync hooks (pre-install and pre-upgrade before
    /// the objects, post-install and post-upgrade after). Test hooks are never applied.
    #[arg(long, value_enum, default_value_t = HooksFlag::Skip)]
    pub helm_hooks: HooksFlag,
    /// The Kubernetes version Helm renders for (`.Capabilities.KubeVersion`, checked against a
    /// chart's `kubeVersion`), such as `v1.35.0`. Default: the cluster's, read by discovery
    /// with the API versions it serves (`.Capabilities.APIVersions`).
    #[arg(long, value_name = "VERSION")]
    pub helm_kube_version: Option<String>,
    /// A Helm values file relative to the chart directory, as in Argo CD and Flux
    /// (repeatable).
    #[arg(long = "helm-values", value_name = "FILE")]
    pub helm_values: Vec<PathBuf>,
    /// A substitution variable, `${NAME}` in the objects becomes VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_variable)]
    pub variables: Vec<(String, String)>,
    /// Puts every namespaced object in this namespace (created when missing).
    #[arg(long)]
    pub namespace: Option<String>,
    /// The ConfigMap keeping the inventory, `<namespace>/<name>` (the namespace must exist or
    /// be the one `--namespace` creates). Default: `gitops-<hash>` in the `--namespace` or
    /// `default`, the hash taken from the URL (or the directory) and `--subpath`, so that syncs
    /// of different repositories or folders never share one (and never prune each other's
    /// objects). Name it to keep the inventory when the URL or subpath changes.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_inventory)]
    pub inventory: Option<(String, String)>,
    /// Delete objects that left the set (the default).
    #[arg(long, overrides_with = "no_prune")]
    pub prune: bool,
    /// Never delete anything.
    #[arg(long, overrides_with = "prune")]
    pub no_prune: bool,
    /// Take back fields other field managers took (by `kubectl edit`, say): Git wins (the
    /// default).
    #[arg(long, overrides_with = "no_force")]
    pub force: bool,
    /// Leave fields other field managers took alone and report the conflicts as failures.
    #[arg(long, overrides_with = "force")]
    pub no_force: bool,
    /// Delete and create again an object whose immutable fields change (a ConfigMap marked
    /// immutable, a Job's template, a Service's clusterIP); without it such an object fails.
    #[arg(long)]
    pub recreate: bool,
    /// Accept a set that renders empty even when that prunes every object the inventory
    /// lists; without it such a sync fails before writing anything.
    #[arg(long)]
    pub allow_empty: bool,
    /// Prune a Namespace or CustomResourceDefinition even when objects of the set live in it
    /// or are of its kind (they would be deleted with it); without it such a sync fails before
    /// writing anything.
    #[arg(long)]
    pub allow_cascading_prune: bool,
    /// Take over objects another inventory owns (their ownership labels name it); without it
    /// such an object is left alone and reported as skipped, so that two applications never
    /// take an object from each other on every run.
    #[arg(long)]
    pub take_ownership: bool,
    /// Make a `${NAME}` without a value (`--var`) or a default (`${NAME:=default}`) an error,
    /// instead of the empty string.
    #[arg(long)]
    pub strict_substitution: bool,
    /// Wait up to this long for the objects to become Current (such as `90s`, `2m`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait: Option<Duration>,
    /// The field manager of server-side apply.
    #[arg(long, default_value = gitops_apply::DEFAULT_FIELD_MANAGER)]
    pub field_manager: String,
    /// The kustomize binary (default: $GITOPS_KUSTOMIZE, else `kustomize` on PATH).
    #[arg(long, value_name = "PATH")]
    pub kustomize: Option<PathBuf>,
    /// The helm binary (default: $GITOPS_HELM, else `helm` on PATH).
    #[arg(long, value_name = "PATH")]
    pub helm: Option<PathBuf>,
    /// The kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Keep artifacts and the Git cache here (reused by later runs) instead of a temporary
    /// directory.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

impl SyncArgs {
    /// The library's spec of these flags (the interval matters only to a loop).
    ///
    /// ```
    /// use clap::Parser;
    /// #[derive(Parser)]
    /// struct Cli {
    ///     #[command(flatten)]
    ///     sync: gitops_examples::pipeline::SyncArgs,
    /// }
    /// let cli = Cli::parse_from(["sync", "--path", "/tmp", "--no-prune", "--var", "ENV=dev"]);
    /// let spec = cli.sync.spec(std::time::Duration::from_secs(30))?;
    /// assert!(!spec.prune);
    /// assert_eq!(spec.substitute["ENV"], "dev");
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    ///
    /// # Errors
    /// A bad `--ref`, `--subpath`, `--helm-release` or `--field-manager`, or a `--path` that
    /// is not UTF-8 (a spec holds text).
    pub fn spec(&self, interval: Duration) -> anyhow::Result<SyncSpec> {
        check_subpath(&self.subpath).map_err(anyhow::Error::msg)?;
        check_field_manager(&self.field_manager).map_err(anyhow::Error::msg)?;
        if self.renderer == RendererFlag::Helm
            && let Some(release) = &self.helm_release
        {
            check_release(release).map_err(anyhow::Error::msg)?;
        }
        let go = |d: Duration| format!("{}ms", d.as_millis().max(1));
        let renderer = RendererSpec {
            kind: match self.renderer {
                RendererFlag::Auto => RendererKind::Auto,
                RendererFlag::Plain => RendererKind::Plain,
                RendererFlag::Kustomize => RendererKind::Kustomize,
                RendererFlag::Helm => RendererKind::Helm,
            },
            helm: (self.renderer == RendererFlag::Helm).then(|| HelmSpec {
                release_name: self.helm_release.clone(),
                values_files: self.helm_values.clone(),
                ..HelmSpec::default()
            }),
        };
        Ok(SyncSpec {
            source: self.source()?,
            path: self.subpath.clone(),
            interval: go(interval),
            renderer,
            inventory: Some(InventorySpec {
                config_map: Some(self.inventory()?.1),
            }),
            substitute: self.variables.iter().cloned().collect(),
            prune: !self.no_prune,
            wait: self.wait.is_some(),
            timeout: self.wait.map(go),
            force: self.recreate,
            target_namespace: self.namespace.clone(),
            suspend: false,
            sparse: self.sparse,
        })
    }

    fn source(&self) -> anyhow::Result<SourceSpec> {
        let reference = self.reference.as_deref().map(str::parse::<GitRef>);
        Ok(match (&self.url, &self.path) {
            (Some(url), _) => SourceSpec {
                url: Some(url.clone()),
                reference: reference.transpose()?,
                ..SourceSpec::default()
            },
            (None, path) => {
                let path = path.as_deref().unwrap_or(Path::new("."));
                let absolute = std::fs::canonicalize(path).or_else(|_| std::path::absolute(path));
                let absolute = absolute.with_context(|| {
                    format!("--path {}", gitops_core::escape::EscapedPath(path))
                })?;
                let text = absolute.to_str().with_context(|| {
                    format!(
                        "--path {} is not UTF-8: give a path whose name is UTF-8",
                        gitops_core::escape::EscapedPath(path)
                    )
                })?;
                SourceSpec {
                    local_path: Some(text.to_owned()),
                    ..SourceSpec::default()
                }
            }
        })
    }

    /// The inventory ConfigMap, `(namespace, name)`: `--inventory`, else
    /// [`InventorySpec::derived`] from the source and subpath, in the `--namespace` or
    /// `default`.
    ///
    /// # Errors
    /// A `--path` that cannot be made absolute, or is not UTF-8.
    pub fn inventory(&self) -> anyhow::Result<(String, String)> {
        if let Some(named) = &self.inventory {
            return Ok(named.clone());
        }
        let derived = InventorySpec::derived(&self.source()?, &self.subpath);
        let namespace = self.namespace.as_deref().unwrap_or("default");
        Ok((namespace.to_owned(), derived.config_map.unwrap_or_default()))
    }

    /// A builder of the unit these flags describe (with `dry_run` as given), its Git cache
    /// and artifacts in `work_dir`.
    ///
    /// # Errors
    /// A credentials file or variable that cannot be read, or the factory's errors.
    pub async fn unit(
        &self,
        client: kube::Client,
        work_dir: &Path,
        interval: Duration,
        dry_run: bool,
    ) -> anyhow::Result<SyncUnitBuilder> {
        let locator = |tool, path: &Option<PathBuf>| ToolLocator::new(tool).explicit(path.clone());
        let mut factory = UnitFactory::new(client, work_dir)
            .kustomize(locator(Tool::Kustomize, &self.kustomize))
            .helm(locator(Tool::Helm, &self.helm))
            .field_manager(&self.field_manager)
            .helm_hooks(match self.helm_hooks {
                HooksFlag::Skip => HookPolicy::Skip,
                HooksFlag::Include => HookPolicy::Include,
            })
            .fetch_timeout(Duration::from_secs(120))
            .dry_run(dry_run);
        if let Some(version) = &self.helm_kube_version {
            factory = factory.helm_kube_version(version);
        }
        let options = ApplyOptions::default()
            .with_takeover(TakeoverManager::defaults())
            .with_force(!self.no_force)
            .with_create_target_namespace(self.namespace.is_some())
            .with_allow_empty_set(self.allow_empty)
            .with_allow_cascading_prune(self.allow_cascading_prune)
            .with_take_ownership(self.take_ownership);
        let mut unit = SpecUnit::new(self.spec(interval)?, self.inventory()?.0)
            .apply_options(options)
            .strict_substitution(self.strict_substitution);
        if self.url.is_some() {
            if let Some(credentials) = self.git_credentials()? {
                unit = unit.credentials(credentials);
            }
            if let Some(path) = &self.known_hosts {
                unit = unit.known_hosts(read_file(path, "known_hosts")?);
            }
        }
        Ok(factory.unit(unit).await?)
    }

    /// The Git credentials the flags name, read from the environment or files.
    fn git_credentials(&self) -> anyhow::Result<Option<GitCredentials>> {
        if let Some(path) = &self.ssh_key {
            return Ok(Some(GitCredentials::SshKey {
                private_key: Secret::new(read_file(path, "SSH key")?),
                passphrase: None,
            }));
        }
        let Some(variable) = &self.git_password_env else {
            return Ok(None);
        };
        let secret = std::env::var(variable).with_context(|| {
            format!("the environment variable {variable} is not set (or not UTF-8)")
        })?;
        Ok(Some(match &self.git_username {
            Some(username) => GitCredentials::Basic {
                username: username.clone(),
                password: Secret::new(secret),
            },
            None => GitCredentials::BearerToken(Secret::new(secret)),
        }))
    }

    /// A Kubernetes client from `--kubeconfig`, or the default configuration.
    ///
    /// # Errors
    /// When the kubeconfig cannot be read or names no usable cluster.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .with_context(|| format!("loading kubeconfig {}", path.display()))?
            }
            None => kube::Config::infer()
                .await
                .context("finding a kubeconfig (set --kubeconfig or $KUBECONFIG)")?,
        };
        kube::Client::try_from(config).context("creating the Kubernetes client")
    }

    /// The revision the inventory ConfigMap records ([`APPLIED_REVISION_ANNOTATION`]): `None`
    /// when there is none yet, it records none, or it cannot be read (a first sync, then).
    pub async fn applied_revision(&self, client: &kube::Client) -> Option<Revision> {
        let (namespace, name) = self.inventory().ok()?;
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        let configmap = api.get_opt(&name).await.ok()??;
        let mut annotations = configmap.metadata.annotations?;
        annotations
            .remove(APPLIED_REVISION_ANNOTATION)
            .map(Revision::from_string)
    }

    /// Records `revision` on the inventory ConfigMap (a merge patch of one annotation that the
    /// applier's own writes leave alone). A failure is only logged: it is a hint.
    pub async fn record_applied_revision(&self, client: &kube::Client, revision: &Revision) {
        let Ok((namespace, name)) = self.inventory() else {
            return;
        };
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        let patch = serde_json::json!({
            "metadata": {"annotations": {APPLIED_REVISION_ANNOTATION: revision.as_str()}}
        });
        let params = PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        };
        if let Err(error) = api.patch(&name, &params, &Patch::Merge(&patch)).await {
            tracing::debug!(%error, "recording the applied revision");
        }
    }
}

fn read_file(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} file {}", path.display()))
}

fn parse_variable(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

fn check_subpath(text: &str) -> Result<(), String> {
    let path = Path::new(text);
    let escapes = path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
    if text.is_empty() || escapes {
        return Err(format!(
            "subpath {text:?} must be relative and stay inside the source (no `..`)"
        ));
    }
    Ok(())
}

fn check_release(text: &str) -> Result<(), String> {
    let valid = !text.is_empty()
        && text.len() <= 53
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid Helm release name {text:?}: use at most 53 lower-case letters, digits and '-'"
        ))
    }
}

fn check_field_manager(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the field manager must not be empty".to_owned());
    }
    Ok(())
}

fn parse_inventory(text: &str) -> Result<(String, String), String> {
    let invalid = || format!("invalid inventory location {text:?}: expected <namespace>/<name>");
    let (namespace, name) = text.split_once('/').ok_or_else(invalid)?;
    gitops_apply::ConfigMapInventory::new(namespace, name)
        .map_err(|e| format!("{}: {e}", invalid()))?;
    Ok((namespace.to_owned(), name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sync: SyncArgs,
    }

    /// The flags of `args`, words separated by single spaces.
    fn parse(args: &str) -> SyncArgs {
        Cli::try_parse_from(args.split(' ')).unwrap().sync
    }

    #[test]
    fn flags_become_a_spec() {
        let args = parse(concat!(
            "sync --url file:///srv/repo --ref v1.2.0 --subpath apps --renderer helm",
            " --helm-release web --inventory ops/web --wait 90s --no-prune --prune --recreate"
        ));
        let spec = args.spec(Duration::from_secs(30)).unwrap();
        assert!(spec.prune, "the last of --prune/--no-prune wins");
        assert!(!spec.sparse, "whole artifacts unless --sparse");
        let sparse = parse("sync --path /srv --subpath apps --sparse");
        assert!(sparse.spec(Duration::from_secs(30)).unwrap().sparse);
        assert!(spec.force, "--recreate is the spec's force");
        let settings = spec.settings().unwrap();
        assert_eq!(settings.timeout, Duration::from_secs(90));
        assert_eq!(settings.interval, Duration::from_secs(30));
        assert_eq!(args.inventory().unwrap(), ("ops".into(), "web".into()));
        assert_eq!(spec.renderer.kind, RendererKind::Helm);
        let helm = spec.renderer.helm.unwrap();
        assert_eq!(helm.release_name.as_deref(), Some("web"));
        let tag = gitops_source::GitReference::Tag("v1.2.0".into());
        assert_eq!(spec.source.reference.unwrap().to_reference(), tag);
    }

    #[test]
    fn credentials_come_from_the_environment_and_files() {
        let credentials = |extra: &str| {
            let args = parse(&format!("sync --url https://example.com/a.git {extra}"));
            args.git_credentials()
        };
        // PATH is set in every test environment; it stands in for a token variable.
        let basic = credentials("--git-username bot --git-password-env PATH").unwrap();
        assert!(matches!(basic, Some(GitCredentials::Basic { username, .. }) if username == "bot"));
        let bearer = credentials("--git-password-env PATH").unwrap();
        assert!(matches!(bearer, Some(GitCredentials::BearerToken(_))));
        let missing = credentials("--git-password-env GITOPS_TEST_SURELY_UNSET_VARIABLE");
        let error = missing.unwrap_err().to_string();
        assert!(error.contains("UNSET_VARIABLE is not set"), "{error}");
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
        let ssh = credentials(&format!("--ssh-key {}", key.display())).unwrap();
        assert!(matches!(ssh, Some(GitCredentials::SshKey { .. })));
        let no_password = Cli::try_parse_from("sync --url u --git-username bot".split(' '));
        assert!(
            no_password.is_err(),
            "a user name needs a password variable"
        );
    }

    #[test]
    fn a_path_that_is_not_utf8_is_refused_not_mangled() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt as _;
        let path = OsStr::from_bytes(b"/tmp/caf\xe9");
        let cli = Cli::try_parse_from([OsStr::new("sync"), OsStr::new("--path"), path]);
        let error = cli.unwrap().sync.spec(Duration::from_secs(1));
        let error = error.unwrap_err().to_string();
        assert!(
            error.contains("is not UTF-8") && error.contains("caf"),
            "{error}"
        );
    }

    #[test]
    fn bad_flags_are_refused() {
        for bad in [
            "sync",
            "sync --path a --url b",
            "sync --path a --var =x",
            "sync --path a --inventory noslash",
            "sync --path a --inventory ns/-bad",
            "sync --path a --wait soon",
        ] {
            let parsed = Cli::try_parse_from(bad.split(' '));
            assert!(parsed.is_err(), "{bad:?} must be refused");
        }
        // Parsed, then refused as a configuration (exit code 1 for both binaries).
        for (flags, message) in [
            ("--path / --subpath ../x", "must be relative"),
            ("--path / --subpath /abs", "must be relative"),
            ("--path / --field-manager=", "must not be empty"),
            (
                "--path / --renderer helm --helm-release Web_App",
                "release name",
            ),
            ("--url u --ref semver:>>1", "invalid Git reference"),
        ] {
            let spec = parse(&format!("sync {flags}")).spec(Duration::from_secs(1));
            let error = spec.unwrap_err().to_string();
            assert!(error.contains(message), "{flags}: {error}");
        }
    }
}
