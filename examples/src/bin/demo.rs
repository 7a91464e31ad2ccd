//! `demo`: the README's first command. Starts a local Kubernetes control plane (building the
//! pinned binaries on first use), makes a Git repository of the demo app in a temporary
//! directory, and lets the reconciler take it through a plan and apply, a new commit, hand edits
//! (drift) and a deleted file (prune). It stops by itself, and on Ctrl-C (SIGINT) or SIGTERM,
//! and leaves nothing behind: the control plane is stopped and the temporary directories are
//! removed. Exit codes: 0 done (with `--keep`, after Ctrl-C), 1 failed, 130 interrupted.
//!
//! ```text
//! cargo run -p gitops-examples --bin demo
//! cargo run -p gitops-examples --bin demo -- --keep     # then look around with kubectl
//! cargo run -p gitops-examples --bin demo -- --kubeconfig ~/.kube/config   # another cluster
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use gitops_diff::Colour;
use gitops_envtest::{ControlPlane, DEFAULT_CONTROLLERS, Tool, tools::Toolbox};
use gitops_examples::demo::error_chain;
use gitops_examples::demo::{
    DEFAULT_NAMESPACE, DemoOptions, Narrator, Scenario, ScenarioError, Tone,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The controllers the demo runs besides the defaults: the deployment and replica set
/// controllers roll out the demo's Deployment (with no pods, as there is no kubelet), so that
/// it becomes healthy.
const DEMO_CONTROLLERS: &[&str] = &["deployment-controller", "replicaset-controller"];

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ColourChoice {
    /// When standard output is a terminal.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// A GitOps loop against a local control plane, step by step: plan and apply, a new commit,
/// drift, prune.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Use the cluster of this kubeconfig instead of starting a local control plane. The demo
    /// creates cluster-scoped objects there (a Namespace and a CRD) and leaves them.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The namespace of the demo app.
    #[arg(long, default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// Seconds between reconcile cycles.
    #[arg(long, default_value_t = 2.0, value_parser = parse_seconds)]
    interval: f64,
    /// Colours.
    #[arg(long, value_enum, default_value_t = ColourChoice::Auto)]
    color: ColourChoice,
    /// After the last step, keep the local control plane and the demo's objects until Ctrl-C,
    /// to look around with kubectl.
    #[arg(long, conflicts_with = "kubeconfig")]
    keep: bool,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|e| format!("not a number of seconds: {e}"))?;
    if seconds.is_finite() && (0.1..=3600.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err("between 0.1 and 3600 seconds".to_owned())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // kube logs each failed readiness probe while the apiserver starts: expected,
                // and not worth showing.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("error,kube_client::client::builder=off")
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let narrator = match args.color {
        ColourChoice::Auto => Narrator::stdout(),
        ColourChoice::Always => Narrator::stdout_with_colour(true),
        ColourChoice::Never => Narrator::stdout_with_colour(false),
    };

    // The handlers are registered here, before anything is started: a Ctrl-C at any moment
    // after this line cleans up.
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
        (Err(error), _) | (_, Err(error)) => {
            narrator.line(Tone::Bad, &format!("Cannot handle Ctrl-C: {error}"));
            return ExitCode::FAILURE;
        }
    };
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        on_signal.cancel();
    });

    match run(&args, &narrator, &cancel).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if cancel.is_cancelled() => {
            narrator.line(
                Tone::Notice,
                &format!("Interrupted: {}", error_chain(error.as_ref())),
            );
            // Everything of ours is stopped and removed by now. A build of the control plane's
            // binaries may still run on a blocking thread, which the runtime would wait for
            // (minutes): exit without waiting; the build's lock keeps the cache consistent.
            std::process::exit(130)
        }
        Err(error) => {
            narrator.line(
                Tone::Bad,
                &format!("The demo failed: {}", error_chain(error.as_ref())),
            );
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args, narrator: &Narrator, cancel: &CancellationToken) -> anyhow::Result<()> {
    narrator.title("gitops-rs demo: a GitOps reconciler against a local Kubernetes control plane");
    let started = Instant::now();
    let control_plane = match &args.kubeconfig {
        Some(path) => {
            narrator.line(
                Tone::Plain,
                &format!("Using the cluster of {}", path.display()),
            );
            ControlPlane::connect(path)
                .await
                .with_context(|| format!("connecting to the cluster of {}", path.display()))?
        }
        None => start_control_plane(narrator, cancel).await?,
    };
    let client = control_plane
        .client()
        .await
        .context("creating a client for the control plane")?;
    let options = DemoOptions::new()
        .namespace(&args.namespace)
        .interval(Duration::from_secs_f64(args.interval))
        .colour(match args.color {
            ColourChoice::Auto => Colour::Auto,
            ColourChoice::Always => Colour::Always,
            ColourChoice::Never => Colour::Never,
        });
    let result = Scenario::new(client, narrator, options).run(cancel).await;
    if let Ok(report) = &result {
        narrator.line(
            Tone::Good,
            &format!(
                "The demo took {:.1}s in all ({:.1}s of it the scenario)",
                started.elapsed().as_secs_f64(),
                report.elapsed.as_secs_f64()
            ),
        );
        if args.keep {
            narrator.line(
                Tone::Plain,
                &format!(
                    "The control plane stays up until Ctrl-C; look around with\n      \
                     kubectl --kubeconfig {} get namespace,all,configmaps,greetings -n {}",
                    control_plane.kubeconfig_path().display(),
                    args.namespace
                ),
            );
            cancel.cancelled().await;
        }
    }
    if args.kubeconfig.is_none() {
        narrator.line(
            Tone::Plain,
            "Stopping the control plane and removing its directory",
        );
    }
    control_plane.stop();
    result.map_err(|error: ScenarioError| anyhow::Error::new(error))?;
    Ok(())
}

async fn start_control_plane(
    narrator: &Narrator,
    cancel: &CancellationToken,
) -> anyhow::Result<ControlPlane> {
    let toolbox = Toolbox::from_env().context("finding the envtest cache")?;
    // With GITOPS_ENVTEST_BIN_DIR the binaries are prebuilt and nothing is ever built.
    let prebuilt = std::env::var_os("GITOPS_ENVTEST_BIN_DIR").is_some_and(|v| !v.is_empty());
    let missing: Vec<String> = [Tool::Etcd, Tool::KubeApiserver, Tool::KubeControllerManager]
        .into_iter()
        .filter(|tool| !prebuilt && !toolbox.cached_path(*tool).is_file())
        .map(|tool| tool.to_string())
        .collect();
    if !missing.is_empty() {
        narrator.line(
            Tone::Notice,
            &format!(
                "First run: building {} from pinned Go modules with the machine's Go. This takes \
                 several minutes, once; the binaries are cached in {}",
                missing.join(", "),
                gitops_envtest::tools::cache_root()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "the envtest cache".to_owned())
            ),
        );
    }
    narrator.line(
        Tone::Plain,
        "Starting a local control plane: etcd, kube-apiserver, kube-controller-manager on \
         127.0.0.1",
    );
    let started = Instant::now();
    let controllers = DEFAULT_CONTROLLERS.iter().chain(DEMO_CONTROLLERS).copied();
    let start = ControlPlane::builder()
        .controllers(controllers)
        .toolbox(toolbox)
        .start();
    let control_plane = tokio::select! {
        // Dropping the start future stops what it started (its watchdog removes the rest).
        () = cancel.cancelled() => anyhow::bail!("cancelled while starting the control plane"),
        started = start => started.context("starting the local control plane")?,
    };
    narrator.line(
        Tone::Good,
        &format!(
            "Control plane up at {} in {:.1}s (kubeconfig for kubectl: {})",
            control_plane.server(),
            started.elapsed().as_secs_f64(),
            control_plane.kubeconfig_path().display()
        ),
    );
    Ok(control_plane)
}
