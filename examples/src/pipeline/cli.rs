//! What the `sync` and `reconcile` binaries share: their command-line flags ([`SyncArgs`]), the
//! Kubernetes client they build from them, printing, progress bars ([`ProgressBars`]) and
//! logging.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use gitops_apply::ApplyProgress;
use gitops_source::{FetchProgress, GitCredentials, Secret};
use gitops_sync::SyncProgress;

use gitops_sync::spec::{HelmSpec, RendererKind, RendererSpec};

use super::config::{
    ConfigError, InventoryLocation, SyncConfig, git_source, local_source, parse_git_reference,
};
use super::report::short_revision;

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
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub inventory: Option<InventoryLocation>,
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

fn read_file(path: &std::path::Path, what: &'static str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

fn parse_variable(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

impl SyncArgs {
    /// The configuration these flags describe; `dry_run` as given.
    ///
    /// ```
    /// use clap::Parser;
    /// use gitops_examples::pipeline::cli::SyncArgs;
    ///
    /// #[derive(Parser)]
    /// struct Cli {
    ///     #[command(flatten)]
    ///     sync: SyncArgs,
    /// }
    /// let cli = Cli::parse_from(["sync", "--path", "/tmp", "--no-prune", "--var", "ENV=dev"]);
    /// let config = cli.sync.to_config(false)?;
    /// assert!(!config.prune());
    /// assert_eq!(config.variables()["ENV"], "dev");
    /// # Ok::<(), gitops_examples::pipeline::ConfigError>(())
    /// ```
    ///
    /// # Errors
    /// [`ConfigError`] for a bad reference, subpath, inventory or release name.
    pub fn to_config(&self, dry_run: bool) -> Result<SyncConfig, ConfigError> {
        let mut credentials = (None, None);
        let source = match (&self.url, &self.path) {
            (Some(url), _) => {
                let reference = match &self.reference {
                    Some(text) => parse_git_reference(text)?,
                    None => gitops_source::GitReference::DefaultBranch,
                };
                let known_hosts = self
                    .known_hosts
                    .as_deref()
                    .map(|path| read_file(path, "known_hosts"))
                    .transpose()?;
                credentials = (self.git_credentials()?, known_hosts);
                git_source(url.clone(), &reference)
            }
            (None, Some(path)) => local_source(path),
            // clap's group requires one of them.
            (None, None) => unreachable!("clap requires --url or --path"),
        };
        let renderer = match self.renderer {
            RendererFlag::Auto => RendererSpec::default(),
            RendererFlag::Plain => RendererSpec {
                kind: RendererKind::Plain,
                helm: None,
            },
            RendererFlag::Kustomize => RendererSpec {
                kind: RendererKind::Kustomize,
                helm: None,
            },
            RendererFlag::Helm => RendererSpec {
                kind: RendererKind::Helm,
                // Without --helm-release, the release is named after the chart's directory.
                helm: Some(HelmSpec {
                    release_name: self.helm_release.clone(),
                    values_files: self.helm_values.clone(),
                    ..HelmSpec::default()
                }),
            },
        };
        let mut builder = SyncConfig::builder(source)
            .subpath(self.subpath.clone())
            .renderer(renderer)
            .prune(!self.no_prune)
            .force(!self.no_force)
            .field_manager(self.field_manager.clone())
            .recreate_on_immutable(self.recreate)
            .allow_empty_set(self.allow_empty)
            .allow_cascading_prune(self.allow_cascading_prune)
            .strict_substitution(self.strict_substitution)
            .take_ownership(self.take_ownership)
            .helm_hooks(match self.helm_hooks {
                HooksFlag::Skip => gitops_render::HookPolicy::Skip,
                HooksFlag::Include => gitops_render::HookPolicy::Include,
            })
            .dry_run(dry_run);
        for (name, value) in &self.variables {
            builder = builder.variable(name.clone(), value.clone());
        }
        if let Some(namespace) = &self.namespace {
            builder = builder.target_namespace(namespace.clone());
        }
        if let Some(git_credentials) = credentials.0 {
            builder = builder.git_credentials(git_credentials);
        }
        if let Some(known_hosts) = credentials.1 {
            builder = builder.known_hosts(known_hosts);
        }
        if let Some(version) = &self.helm_kube_version {
            builder = builder.helm_kube_version(version.clone());
        }
        if let Some(inventory) = &self.inventory {
            builder = builder.inventory(inventory.clone());
        }
        if let Some(wait) = self.wait {
            builder = builder.wait_timeout(wait);
        }
        if let Some(dir) = &self.work_dir {
            builder = builder.work_dir(dir.clone());
        }
        if let Some(kustomize) = &self.kustomize {
            builder = builder.kustomize_binary(kustomize.clone());
        }
        if let Some(helm) = &self.helm {
            builder = builder.helm_binary(helm.clone());
        }
        builder.build()
    }

    /// The Git credentials the flags name, read from the environment or files.
    fn git_credentials(&self) -> Result<Option<GitCredentials>, ConfigError> {
        if let Some(path) = &self.ssh_key {
            return Ok(Some(GitCredentials::SshKey {
                private_key: Secret::new(read_file(path, "SSH key")?),
                passphrase: None,
            }));
        }
        let Some(variable) = &self.git_password_env else {
            return Ok(None);
        };
        let secret = std::env::var(variable).map_err(|_| ConfigError::MissingSecret {
            variable: variable.clone(),
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
        use anyhow::Context as _;
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(
                    kubeconfig,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .with_context(|| format!("loading kubeconfig {}", path.display()))?
            }
            None => kube::Config::infer()
                .await
                .context("finding a kubeconfig (set --kubeconfig or $KUBECONFIG)")?,
        };
        kube::Client::try_from(config).context("creating the Kubernetes client")
    }
}

/// A token cancelled by the first Ctrl-C (SIGINT), so that a run stops cleanly; a second Ctrl-C
/// exits the process at once with status 130. Call it inside a Tokio runtime.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() {
/// let cancel = gitops_examples::pipeline::cli::cancel_on_ctrl_c();
/// cancel.cancelled().await;
/// println!("stopping");
/// # }
/// ```
#[must_use]
pub fn cancel_on_ctrl_c() -> CancellationToken {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    cancel
}

/// Logs to standard error, filtered by `RUST_LOG` (default `warn`, so that progress bars and
/// status lines stay readable); coloured only when standard error is a terminal and `NO_COLOR` is
/// unset. Library options that log lines name are replaced by the flags that set them
/// ([`name_flags`]).
pub fn init_tracing() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(|| FlagNamingWriter(std::io::stderr()))
        .init();
}

/// The library options some errors and warnings name (for callers of the library), and the
/// flag of `sync` and `reconcile` that sets each.
const OPTION_FLAGS: [(&str, &str); 5] = [
    ("ApplyOptions::allow_empty_set", "--allow-empty"),
    ("ApplyOptions::recreate_on_immutable", "--recreate"),
    (
        "ApplyOptions::allow_cascading_prune",
        "--allow-cascading-prune",
    ),
    ("ApplyOptions::take_ownership", "--take-ownership"),
    ("HookPolicy::Include", "--helm-hooks include"),
];

/// `text` with every library option it names (such as `ApplyOptions::allow_empty_set`)
/// replaced by the command-line flag that sets it (`--allow-empty`): what the binaries print.
///
/// ```
/// use gitops_examples::pipeline::cli::name_flags;
/// assert_eq!(
///     name_flags("refusing to prune them all (allow it with ApplyOptions::allow_empty_set)"),
///     "refusing to prune them all (allow it with --allow-empty)"
/// );
/// ```
#[must_use]
pub fn name_flags(text: &str) -> String {
    OPTION_FLAGS
        .iter()
        .fold(text.to_owned(), |text, (option, flag)| {
            text.replace(option, flag)
        })
}

/// `message` (an error) without the lines that list an object of `change_set` as the text
/// output prints it (`  - ConfigMap shop/a failed: ...`), and without the colon that
/// introduced them, for a binary that printed the change set already: each failure is then
/// shown once.
///
/// ```
/// use gitops_apply::{ObjectAction, ChangeSet};
/// use gitops_examples::pipeline::cli::without_listed_changes;
///
/// let message = "applying r failed: 0 object(s) failed validation, nothing was written:";
/// let shortened = without_listed_changes(message, &ChangeSet::default());
/// assert_eq!(shortened, "applying r failed: 0 object(s) failed validation, nothing was written");
/// ```
#[must_use]
pub fn without_listed_changes(message: &str, change_set: &gitops_apply::ChangeSet) -> String {
    let listed: std::collections::BTreeSet<String> = change_set
        .changes
        .iter()
        .map(|change| change.to_string())
        .collect();
    let kept: Vec<&str> = message
        .lines()
        .filter(|line| {
            line.trim_start()
                .strip_prefix("- ")
                .is_none_or(|item| !listed.contains(item.trim_end()))
        })
        .collect();
    kept.join("\n").trim_end().trim_end_matches(':').to_owned()
}

/// Prints one line per object that was (or would be) created, changed, pruned, that failed, or
/// that was left alone for a reason to act on (owned by another inventory), names escaped and
/// options named as flags; the unchanged and other skipped ones are only counted in the status
/// line. Then the sync hooks run, by phase.
///
/// ```
/// gitops_examples::pipeline::cli::print_changes(&gitops_apply::ChangeSet::default());
/// ```
pub fn print_changes(change_set: &gitops_apply::ChangeSet) {
    use gitops_apply::ObjectAction;
    for change in &change_set.changes {
        let quiet = change.action == ObjectAction::Unchanged
            || (change.action == ObjectAction::Skipped && change.error.is_none());
        if !quiet {
            println!("{}", name_flags(&change.to_string()));
        }
    }
    // The sync hooks (Argo CD's, or Helm's with `--helm-hooks include`), by phase.
    for hook in &change_set.hooks {
        println!("{hook}");
    }
}

/// Prints a failed sync: on standard output what it wrote and the last good revision served
/// (as JSON with `json`), then the error on standard error, names escaped and options named as
/// flags; in a `dry_run`, a failed apply is said to be planning.
///
/// ```
/// let error = gitops_sync::SyncError::Cancelled { step: "fetching" };
/// gitops_examples::pipeline::cli::print_failure(error, false, false);
/// ```
pub fn print_failure(error: gitops_sync::SyncError, dry_run: bool, json: bool) {
    use gitops_sync::SyncError;
    let mut message = error.chain();
    if dry_run && matches!(error, SyncError::Apply { .. }) {
        // A dry run plans: say so rather than "applying".
        message = message.replacen("applying ", "planning (dry run) ", 1);
    }
    let unit_report =
        |report: gitops_sync::SyncReport| super::SyncReport::from_unit(report, Vec::new());
    let (served, waited, apply) = match error {
        SyncError::Fetch { served, .. } | SyncError::Render { served, .. } => {
            (served.map(|report| unit_report(*report)), None, None)
        }
        SyncError::Wait { report, .. } => (None, Some(unit_report(*report)), None),
        SyncError::Apply { source, .. } => (None, None, Some(source)),
        _ => (None, None, None),
    };
    let listed = (apply.as_ref().and_then(|error| error.change_set()))
        .or(waited.as_ref().map(|report| &report.change_set))
        .or(served.as_ref().map(|report| &report.change_set));
    if json {
        let mut json = serde_json::json!({ "error": name_flags(&message) });
        if let Some(report) = &served {
            json["servedLastGood"] = report.to_json();
        }
        if let Some(report) = &waited {
            json["report"] = report.to_json();
        }
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        println!("{}", name_flags(&text));
    } else {
        if let Some(change_set) = listed {
            print_changes(change_set);
            // The failed objects are listed above already: once is enough.
            message = without_listed_changes(&message, change_set);
        }
        if let Some(report) = &served {
            println!("served the last good revision: {}", report.status_line());
        }
    }
    eprintln!("error: {}", name_flags(&message));
}

/// Writes log lines to standard error through [`name_flags`]. The formatter writes each event
/// in one call, so a name is never split between two writes.
struct FlagNamingWriter(std::io::Stderr);

impl std::io::Write for FlagNamingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) if text.contains("::") => {
                self.0.write_all(name_flags(text).as_bytes())?;
            }
            _ => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A progress bar on standard error following a sync's steps: a spinner while listing refs,
/// rendering and applying; a bar while writing files and waiting. Hidden when standard error
/// is not a terminal.
#[derive(Clone, Debug)]
pub struct ProgressBars {
    bar: ProgressBar,
}

impl Default for ProgressBars {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressBars {
    /// A hidden bar, drawn once the first step arrives.
    ///
    /// ```
    /// let bars = gitops_examples::pipeline::cli::ProgressBars::new();
    /// bars.println("a line above the bar");
    /// bars.finish();
    /// ```
    #[must_use]
    pub fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(spinner_style());
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar }
    }

    /// Shows a unit's step (hand it to `gitops_sync::SyncUnitBuilder::progress`).
    ///
    /// ```
    /// use gitops_examples::pipeline::cli::ProgressBars;
    /// let bars = ProgressBars::new();
    /// let step = gitops_sync::SyncProgress::Rendering {
    ///     revision: gitops_source::Revision::from_string("sha256:1"),
    /// };
    /// bars.show(&step);
    /// bars.finish();
    /// ```
    pub fn show(&self, step: &SyncProgress) {
        show(&self.bar, step);
    }

    /// Shows `message` with a spinner, between cycles for instance.
    pub fn set_idle(&self, message: impl Into<String>) {
        as_spinner(&self.bar, message.into());
    }

    /// Prints `line` above the bar (on standard output).
    pub fn println(&self, line: &str) {
        self.bar.suspend(|| println!("{line}"));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn as_spinner(bar: &ProgressBar, message: String) {
    bar.set_style(spinner_style());
    bar.set_message(message);
}

fn as_bar(bar: &ProgressBar, message: &'static str, position: u64, length: u64) {
    bar.set_style(bar_style());
    bar.set_message(message);
    bar.set_length(length);
    bar.set_position(position);
}

fn show(bar: &ProgressBar, step: &SyncProgress) {
    match step {
        SyncProgress::Fetching(fetch) => match fetch {
            FetchProgress::ListingRefs => as_spinner(bar, "fetch: listing refs".into()),
            FetchProgress::ScanningDirectory => {
                as_spinner(bar, "fetch: scanning the directory".into());
            }
            FetchProgress::Downloading {
                received_objects,
                received_bytes,
            } => as_spinner(
                bar,
                format!(
                    "fetch: downloading, {received_objects} objects, {}",
                    indicatif::HumanBytes(*received_bytes)
                ),
            ),
            FetchProgress::SelectingFiles => as_spinner(bar, "fetch: selecting files".into()),
            FetchProgress::WritingFiles {
                files_written,
                files_total,
            } => as_bar(
                bar,
                "fetch: writing files",
                *files_written as u64,
                *files_total as u64,
            ),
            FetchProgress::Unchanged { revision } | FetchProgress::Done { revision } => {
                as_spinner(bar, format!("fetched {}", short_revision(revision)));
            }
            _ => {}
        },
        SyncProgress::Fetched { revision, changed } => as_spinner(
            bar,
            format!(
                "{} {}",
                if *changed { "fetched" } else { "unchanged" },
                short_revision(revision)
            ),
        ),
        SyncProgress::Rendering { revision } => {
            as_spinner(bar, format!("rendering {}", short_revision(revision)));
        }
        SyncProgress::Rendered { objects, .. } => {
            as_spinner(bar, format!("rendered {objects} objects"));
        }
        SyncProgress::Applying(apply) => match apply {
            ApplyProgress::Planned { objects, groups } => as_spinner(
                bar,
                format!("apply: planned {objects} objects in {groups} groups, validating"),
            ),
            ApplyProgress::Validated { to_write, failed } => as_spinner(
                bar,
                format!("apply: {to_write} to write, {failed} failed validation"),
            ),
            ApplyProgress::GroupDone { group, groups, .. } => {
                as_bar(
                    bar,
                    "apply: writing groups",
                    *group as u64 + 1,
                    *groups as u64,
                );
            }
            ApplyProgress::Waiting { current, total } => {
                as_bar(bar, "wait: objects Current", *current as u64, *total as u64);
            }
            ApplyProgress::Hook(run) => as_spinner(bar, format!("hook: {run}")),
            _ => {}
        },
        SyncProgress::ServingLastGood { revision } => {
            as_spinner(
                bar,
                format!("serving the last good {}", short_revision(revision)),
            );
        }
        SyncProgress::Waiting(wait) => {
            as_bar(
                bar,
                "wait: objects Current",
                wait.current as u64,
                wait.total as u64,
            );
        }
        _ => {}
    }
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

    #[test]
    fn listed_failures_are_not_repeated_and_options_become_flags() {
        let change = gitops_apply::ObjectChange {
            id: gitops_core::ObjectId::new("", "ConfigMap", Some("shop"), "frozen"),
            origin: None,
            resource: kube::discovery::ApiResource {
                group: String::new(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                plural: "configmaps".into(),
            },
            action: gitops_apply::ObjectAction::Failed,
            reason: gitops_apply::Reason::ValidationFailed,
            error: None,
            diff: None,
            health: None,
        };
        let listed = change.to_string();
        let change_set = gitops_apply::ChangeSet {
            changes: vec![change],
            ..gitops_apply::ChangeSet::default()
        };
        let change = listed;
        let message = format!(
            "applying r failed: 1 object(s) failed validation, nothing was written:\n  - {change}\n  - ConfigMap shop/other failed: not listed"
        );
        assert_eq!(
            without_listed_changes(&message, &change_set),
            "applying r failed: 1 object(s) failed validation, nothing was written:\n  - ConfigMap shop/other failed: not listed"
        );
        let only = format!("applying r failed: 1 object(s) failed:\n  - {change}");
        assert_eq!(
            without_listed_changes(&only, &change_set),
            "applying r failed: 1 object(s) failed"
        );
        assert_eq!(
            name_flags("(ApplyOptions::recreate_on_immutable) and HookPolicy::Include"),
            "(--recreate) and --helm-hooks include"
        );
    }

    #[test]
    fn flags_become_a_configuration() {
        let cli = Cli::try_parse_from([
            "sync",
            "--url",
            "file:///srv/repo",
            "--ref",
            "v1.2.0",
            "--subpath",
            "apps",
            "--renderer",
            "helm",
            "--helm-release",
            "web",
            "--inventory",
            "ops/web",
            "--wait",
            "90s",
            "--no-prune",
            "--prune",
        ])
        .unwrap();
        let config = cli.sync.to_config(true).unwrap();
        assert!(config.prune(), "the last of --prune/--no-prune wins");
        assert!(config.force, "Git wins by default");
        let cli = Cli::try_parse_from(["sync", "--path", "/tmp", "--force", "--no-force"]).unwrap();
        assert!(!cli.sync.to_config(false).unwrap().force);
        assert!(config.dry_run());
        assert_eq!(config.wait_timeout(), Some(Duration::from_secs(90)));
        assert_eq!(config.inventory().to_string(), "ops/web");
        assert_eq!(config.renderer().kind, RendererKind::Helm);
        assert_eq!(
            config
                .renderer()
                .helm
                .as_ref()
                .unwrap()
                .release_name
                .as_deref(),
            Some("web")
        );
        assert_eq!(
            config.source().reference.as_ref().unwrap().to_reference(),
            gitops_source::GitReference::Tag("v1.2.0".into())
        );
    }

    #[test]
    fn credentials_come_from_the_environment_and_files() {
        let parse = |args: &[&str]| {
            let mut all = vec!["sync", "--url", "https://example.com/a.git"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).unwrap().sync.to_config(false)
        };
        // PATH is set in every test environment; it stands in for a token variable.
        let config = parse(&["--git-username", "bot", "--git-password-env", "PATH"]).unwrap();
        assert!(matches!(
            &config.credentials,
            Some(GitCredentials::Basic { username, .. }) if username == "bot"
        ));
        let config = parse(&["--git-password-env", "PATH"]).unwrap();
        assert!(matches!(
            config.credentials,
            Some(GitCredentials::BearerToken(_))
        ));
        let missing = parse(&["--git-password-env", "GITOPS_TEST_SURELY_UNSET_VARIABLE"]);
        assert!(matches!(missing, Err(ConfigError::MissingSecret { .. })));
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
        let config = parse(&["--ssh-key", key.to_str().unwrap()]).unwrap();
        assert!(matches!(
            config.credentials,
            Some(GitCredentials::SshKey { .. })
        ));
        let absent = dir.path().join("absent");
        let error = parse(&["--known-hosts", absent.to_str().unwrap()]).unwrap_err();
        assert!(matches!(error, ConfigError::ReadFile { .. }), "{error}");
        assert!(
            Cli::try_parse_from(["sync", "--url", "u", "--git-username", "bot"]).is_err(),
            "a user name needs a password variable"
        );
    }

    #[test]
    fn progress_steps_become_bar_messages() {
        let bar = ProgressBar::hidden();
        let revision = gitops_source::Revision::git("main", &"ab".repeat(20));
        show(
            &bar,
            &SyncProgress::Fetching(FetchProgress::WritingFiles {
                files_written: 3,
                files_total: 8,
            }),
        );
        assert_eq!(bar.message(), "fetch: writing files");
        assert_eq!((bar.position(), bar.length()), (3, Some(8)));
        show(
            &bar,
            &SyncProgress::Fetched {
                revision: revision.clone(),
                changed: false,
            },
        );
        assert_eq!(bar.message(), "unchanged main@sha1:abababababab");
        show(
            &bar,
            &SyncProgress::Applying(ApplyProgress::GroupDone {
                group: 1,
                groups: 3,
                written: 4,
                failed: 0,
            }),
        );
        assert_eq!((bar.position(), bar.length()), (2, Some(3)));
        show(
            &bar,
            &SyncProgress::Waiting(gitops_apply::WaitProgress {
                current: 5,
                total: 6,
                pending: Vec::new(),
            }),
        );
        assert_eq!(bar.message(), "wait: objects Current");
        assert_eq!((bar.position(), bar.length()), (5, Some(6)));
        show(
            &bar,
            &SyncProgress::ServingLastGood {
                revision: revision.clone(),
            },
        );
        assert_eq!(
            bar.message(),
            "serving the last good main@sha1:abababababab"
        );
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(
            Cli::try_parse_from(["sync"]).is_err(),
            "a source is required"
        );
        assert!(Cli::try_parse_from(["sync", "--path", "a", "--url", "b"]).is_err());
        assert!(Cli::try_parse_from(["sync", "--path", "a", "--var", "=x"]).is_err());
        assert!(Cli::try_parse_from(["sync", "--path", "a", "--inventory", "noslash"]).is_err());
        assert!(Cli::try_parse_from(["sync", "--path", "a", "--wait", "soon"]).is_err());
    }
}
