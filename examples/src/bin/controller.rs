//! `controller`: the GitSync controller.
//!
//! ```text
//! controller crd                       # print the CRD (kubectl apply -f -)
//! controller run --install-crd         # install the CRD, then reconcile GitSyncs until Ctrl-C
//! controller run --namespace team-a --kustomize /usr/local/bin/kustomize
//! ```
//!
//! kustomize and helm: `--kustomize` / `--helm`, else `GITOPS_KUSTOMIZE` / `GITOPS_HELM`, else
//! `PATH` (see `gitops_render::tool`).
//!
//! The cluster comes from `KUBECONFIG` (or `~/.kube/config`, or the in-cluster service account).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gitops_core::escape::EscapedPath;
use gitops_examples::controller::{FIELD_MANAGER, FINALIZER, GitSync, crd_yaml};
use gitops_render::tool::{Located, Tool, ToolLocator};
use gitops_sync::Backoff;
use gitops_sync::controller::{SyncContext, install_crd};
use kube::{Api, CustomResourceExt};
use tokio_util::sync::CancellationToken;

/// The GitSync controller: Flux's GitRepository and Kustomization folded into one resource.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinition of GitSync as YAML.
    Crd,
    /// Reconcile GitSyncs until interrupted (Ctrl-C or SIGTERM).
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Install (or update) the CRD before starting, and wait until it is served.
    #[arg(long)]
    install_crd: bool,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
    /// Where Git caches and artifacts are kept (default: a directory under the system's temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The kustomize binary (for `renderer: kustomize`, and kustomizations under `auto`).
    /// Default: $GITOPS_KUSTOMIZE, else `kustomize` on PATH.
    #[arg(long)]
    kustomize: Option<PathBuf>,
    /// The helm binary (for `renderer: helm`). Default: $GITOPS_HELM, else `helm` on PATH.
    #[arg(long)]
    helm: Option<PathBuf>,
    /// How many GitSyncs are reconciled at once.
    #[arg(long, default_value_t = 4)]
    concurrency: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_runtime=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", crd_yaml());
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the cluster (KUBECONFIG)")?;
    let cancel = CancellationToken::new();
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("stopping");
            cancel.cancel();
        }
    });
    if args.install_crd {
        install_crd(
            &client,
            &GitSync::crd(),
            FIELD_MANAGER,
            Duration::from_secs(60),
            &cancel,
        )
        .await
        .context("installing the GitSync CRD")?;
        tracing::info!("GitSync CRD installed");
    }
    let work_dir = args
        .work_dir
        .unwrap_or_else(|| std::env::temp_dir().join("gitsync-controller"));
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating the work directory {}", work_dir.display()))?;
    let mut builder = SyncContext::builder(client.clone(), work_dir)
        .field_manager(FIELD_MANAGER)
        .finalizer(FINALIZER)
        .backoff(Backoff::new(
            Duration::from_secs(5),
            Duration::from_secs(300),
        ))
        .concurrency(args.concurrency);
    // Each tool: the flag, else GITOPS_KUSTOMIZE / GITOPS_HELM, else PATH; a GitSync that needs
    // one found nowhere stalls, naming it.
    let locate = |tool: Tool, flag: Option<PathBuf>| {
        let found = ToolLocator::new(tool)
            .explicit(flag)
            .locate_optional()
            .with_context(|| format!("finding {tool}"))?;
        match &found {
            Some(found) => tracing::info!(
                path = %EscapedPath(found.path()),
                "{tool} {}",
                found.found_by().describe(tool)
            ),
            None => tracing::info!("{tool} not found: GitSyncs that need it will stall"),
        }
        anyhow::Ok(found.map(Located::into_path))
    };
    if let Some(kustomize) = locate(Tool::Kustomize, args.kustomize)? {
        builder = builder.kustomize_binary(kustomize);
    }
    if let Some(helm) = locate(Tool::Helm, args.helm)? {
        builder = builder.helm_binary(helm);
    }
    let api: Api<GitSync> = match &args.namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    };
    tracing::info!(namespace = ?args.namespace, "GitSync controller starting");
    gitops_sync::controller::run(api, builder.build(), cancel).await;
    tracing::info!("GitSync controller stopped");
    Ok(())
}
