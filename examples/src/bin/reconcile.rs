//! `reconcile`: the GitOps agent, a `gitops-sync` [`Reconciler`] over the unit the flags
//! describe. Syncs on an interval until Ctrl-C: every cycle fetches (a poll that finds the
//! revision unchanged downloads and renders nothing), applies (the applier compares with the
//! live objects, so drift is corrected even when Git did not change), prunes only after a good
//! render, and prints one status line:
//!
//! ```text
//! cycle 1 ok main@sha1:3f9c0d1e2a4b: 4 created, 0 configured, 0 unchanged, 0 pruned, 0 drift corrected, 0.31s, 19 API requests (5 writes); next in 30s
//! cycle 2 ok main@sha1:3f9c0d1e2a4b: 0 created, 1 configured, 3 unchanged, 0 pruned, 1 drift corrected, 0.05s, 8 API requests (1 writes); next in 30s
//! cycle 3 Stalled: rendering main@sha1:77aa… failed: app/bad.yaml:1:7: invalid YAML … [applied main@sha1:3f9c…: … (served last good, no prune)]; next in 30s
//! ```
//!
//! A failed fetch or render applies the last good revision again without pruning; a transient
//! failure (an unreachable host) is retried sooner (exponential backoff from 2 s up to
//! `--max-backoff`), a stalled one (bad input) waits for the interval; `--jitter 0.1` adds up
//! to a tenth of the interval at random, so that many agents do not sync in step.
//!
//! ```text
//! reconcile --url https://example.com/config.git --ref main --inventory default/apps --interval 30s
//! ```
//!
//! Exits 0 after Ctrl-C, 1 when the configuration is invalid.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gitops_examples::pipeline::{
    ProgressBars, SyncArgs, cancel_on_ctrl_c, init_tracing, name_flags,
};
use gitops_sync::{Backoff, Reconciler, SyncProgress};

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
    /// A random fraction of the interval added to each wait, so that many agents do not sync
    /// in step (0 to 1; 0.1 adds up to 10%).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    jitter: f64,
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("expected a fraction between 0 and 1, got {text:?}")),
    }
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
    let client = args.sync.client().await?;
    // Artifacts and the Git cache: --work-dir (kept across runs), else a temporary directory.
    let temporary = tempfile::Builder::new()
        .prefix("gitops-reconcile-")
        .tempdir()?;
    let work_dir = args.sync.work_dir.as_deref().unwrap_or(temporary.path());
    // A progress bar on standard error, when it is a terminal; lines print above it.
    let bars = ProgressBars::new();
    let bar = bars.clone();
    let unit = (args
        .sync
        .unit(client.clone(), work_dir, args.interval, false)
        .await?)
        .progress(move |step| {
            bar.show(step);
            // Entries the fetch left out (symbolic links, submodules), once per new revision.
            if let SyncProgress::LeftOut { entries, .. } = step {
                for entry in entries {
                    bar.println(&format!("warning: {entry} was left out of the artifact"));
                }
            }
        })
        .build()?;
    println!(
        "reconciling {} every {}",
        unit.name(),
        humantime::format_duration(args.interval)
    );

    // The first Ctrl-C stops cleanly; a second one exits at once.
    let cancel = cancel_on_ctrl_c();
    let (record, mut recorded) = tokio::sync::mpsc::unbounded_channel();
    let recorder = tokio::spawn({
        let (client, sync) = (client.clone(), args.sync.clone());
        // The revision applied, on the inventory, so that a one-shot `sync` tells drift.
        async move {
            while let Some(revision) = recorded.recv().await {
                sync.record_applied_revision(&client, &revision).await;
            }
        }
    });
    let unit = Reconciler::new(unit, args.interval)
        .backoff(Backoff::new(Duration::from_secs(2), args.max_backoff))
        .jitter(args.jitter)
        .run(&cancel, |event| {
            if let Ok(report) = event.result
                && report.new_revision
                && !report.served_last_good
            {
                let _ = record.send(report.revision.clone());
            }
            // A success with the drift it corrected and its API requests; a failure as the
            // library words it (its class, the chain, the last good revision served).
            let line = match event.result {
                Ok(report) => format!(
                    "cycle {} ok {}; next in {}",
                    event.cycle,
                    report.status_line(),
                    humantime::format_duration(event.next_in)
                ),
                Err(_) => event.status_line(),
            };
            bars.println(&name_flags(&line));
            bars.set_idle(format!(
                "next cycle in {}",
                humantime::format_duration(event.next_in)
            ));
        })
        .await;
    bars.finish();
    drop(record);
    let _ = recorder.await;
    match unit.applied_revision() {
        Some(revision) => println!("stopped; last applied {revision}"),
        None => println!("stopped; nothing applied"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn jitter_is_a_fraction() {
        use clap::Parser as _;
        let parse =
            |jitter| super::Args::try_parse_from(["reconcile", "--path", "/", "--jitter", jitter]);
        assert_eq!(parse("0.1").unwrap().jitter, 0.1);
        assert!(parse("1.5").is_err() && parse("-0.1").is_err() && parse("x").is_err());
    }
}
