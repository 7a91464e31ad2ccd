//! `reconcile`: the GitOps agent. Syncs on an interval until Ctrl-C: every cycle fetches (a poll
//! that finds the revision unchanged downloads and renders nothing), applies (the applier
//! compares with the live objects, so drift is corrected even when Git did not change), prunes
//! only after a good render, and prints one status line:
//!
//! ```text
//! cycle 1 ok main@sha1:3f9c0d1e2a4b: 4 created, 0 configured, 0 unchanged, 0 pruned, 0 drift corrected, 0.31s, 19 API requests (5 writes); next in 30s
//! cycle 2 ok main@sha1:3f9c0d1e2a4b: 0 created, 1 configured, 3 unchanged, 0 pruned, 1 drift corrected, 0.05s, 8 API requests (1 writes); next in 30s
//! cycle 3 failed after 0.05s: rendering main@sha1:77aa01b2c3d4… failed: app/bad.yaml:1:7: invalid YAML: unclosed bracket '[' at line 1, column 7 [served main@sha1:3f9c0d1e2a4b (last good): 0 created, 0 configured, 4 unchanged, 0 pruned, 0 drift corrected, 0.05s, 6 API requests (0 writes)]; retry in 2s
//! ```
//!
//! When a fetch or render fails, the last good revision is applied again without pruning, and
//! the next cycle comes sooner (exponential backoff from 2 s up to `--max-backoff`).
//!
//! ```text
//! reconcile --url https://example.com/config.git --ref main --inventory default/apps --interval 30s
//! ```
//!
//! Exits 0 after Ctrl-C, 1 when the configuration is invalid.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gitops_examples::pipeline::cli::{
    ProgressBars, SyncArgs, cancel_on_ctrl_c, init_tracing, name_flags,
};
use gitops_examples::pipeline::{Backoff, Pipeline, Reconciler};

/// The GitOps agent: sync on an interval, correct drift, stop on Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "reconcile", version)]
struct Args {
    #[command(flatten)]
    sync: SyncArgs,
    /// Time between cycles (such as `30s`, `5m`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// The longest wait before retrying after failures (the first retry comes after 2 s).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    max_backoff: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", name_flags(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.sync.to_config(false)?;
    let client = args.sync.client().await?;
    let pipeline = Pipeline::new(client, config)?;
    println!(
        "reconciling {} every {}",
        pipeline.location(),
        humantime::format_duration(args.interval)
    );

    // The first Ctrl-C stops cleanly; a second one exits at once.
    let cancel = cancel_on_ctrl_c();

    let bars = ProgressBars::new();
    let pipeline = Reconciler::new(pipeline, args.interval)
        .backoff(Backoff::new(Duration::from_secs(2), args.max_backoff))
        .progress(bars.sink())
        .run(&cancel, |event| {
            // Entries the fetch left out (symbolic links, submodules), once per revision.
            if let Ok(report) = event.result
                && report.new_revision
            {
                for entry in &report.skipped_entries {
                    bars.println(&format!("warning: {entry} was left out of the artifact"));
                }
            }
            bars.println(&name_flags(&event.status_line()));
            bars.set_idle(format!(
                "next cycle in {}",
                humantime::format_duration(event.next_in)
            ));
        })
        .await;
    bars.finish();
    match pipeline.applied_revision() {
        Some(revision) => println!("stopped; last applied {revision}"),
        None => println!("stopped; nothing applied"),
    }
    Ok(())
}
