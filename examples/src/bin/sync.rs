//! `sync`: one GitOps sync, a `gitops-sync` unit's — fetch a Git repository (or read a
//! directory), render it, apply it with server-side apply, prune what left it, and optionally
//! wait until everything is Current.
//!
//! ```text
//! sync --url https://example.com/config.git --ref main --subpath clusters/dev \
//!      --inventory default/dev --wait 2m
//! sync --path ./deploy --dry-run            # coloured diffs, Secrets masked, nothing written
//! sync --path ./deploy --output json        # the change set for CI
//! ```
//!
//! Exit codes, as `terraform plan -detailed-exitcode` uses them: `0` in sync (nothing was, or
//! would be, changed); `1` failed (bad flags or configuration; the fetch, render, apply or wait
//! failed, printed as JSON with `--output json`; with `--dry-run`, objects the real run would
//! fail on); `2` changed (objects were, or would be, created, configured, recreated or pruned).
//! The inventory records the revision applied, so that a later run tells drift from a new
//! revision. Logs go to standard error, filtered by `RUST_LOG` (default `warn`); a progress bar
//! there follows the fetch, render, apply and wait when it is a terminal.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use gitops_diff::Colour;
use gitops_examples::pipeline::{
    ProgressBars, SyncArgs, cancel_on_ctrl_c, init_tracing, name_flags, print_changes,
    print_failure,
};
use gitops_sync::SyncProgress;

// The exit codes.
const IN_SYNC: u8 = 0;
const FAILED: u8 = 1;
const CHANGED: u8 = 2;

/// One GitOps sync: fetch, render, apply, prune, wait.
#[derive(Debug, Parser)]
#[command(
    name = "sync",
    version,
    after_help = "Exit codes (as terraform plan -detailed-exitcode): 0 in sync, nothing changed; 1 failed; 2 changed (with --dry-run: would change)."
)]
struct Args {
    #[command(flatten)]
    sync: SyncArgs,
    /// Print the plan as coloured unified diffs (Secret values masked) and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// How to print the result: text, or JSON (the change set, for CI).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Colour the diffs of --dry-run: auto (when standard output is a terminal), always, never.
    #[arg(long, value_enum, default_value_t = ColourFlag::Auto)]
    color: ColourFlag,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ColourFlag {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors exit with 1 (clap's own default, 2, means "changed" here).
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { FAILED } else { IN_SYNC });
        }
    };
    init_tracing();
    ExitCode::from(run(&args).await.unwrap_or_else(|error| {
        let message = name_flags(&format!("{error:#}"));
        if args.output == Output::Json {
            println!("{}", serde_json::json!({ "error": message }));
        }
        eprintln!("error: {message}");
        FAILED
    }))
}

async fn run(args: &Args) -> anyhow::Result<u8> {
    let client = args.sync.client().await?;
    // Artifacts and the Git cache: --work-dir (kept across runs), else a temporary directory.
    let temporary = tempfile::Builder::new().prefix("gitops-sync-").tempdir()?;
    let work_dir = args.sync.work_dir.as_deref().unwrap_or(temporary.path());
    let skipped = Arc::new(Mutex::new(Vec::new()));
    let left_out = Arc::clone(&skipped);
    // A progress bar on standard error, when it is a terminal.
    let bars = ProgressBars::new();
    let bar = bars.clone();
    let once = Duration::from_secs(3600); // One sync: the spec's interval does not matter.
    let unit = args.sync.unit(client.clone(), work_dir, once, args.dry_run);
    let mut unit = (unit.await?)
        // A one-shot run remembers nothing: the inventory records the revision last applied.
        .applied_revision(args.sync.applied_revision(&client).await)
        .progress(move |step| {
            bar.show(step);
            if let SyncProgress::LeftOut { entries, .. } = step {
                let mut left_out = left_out.lock().unwrap_or_else(|e| e.into_inner());
                left_out.extend(entries.iter().map(ToString::to_string));
            }
        })
        .build()?;
    let result = unit.sync(&cancel_on_ctrl_c()).await;
    bars.finish();
    let skipped = std::mem::take(&mut *skipped.lock().unwrap_or_else(|e| e.into_inner()));
    for entry in &skipped {
        eprintln!("warning: {entry} was left out of the artifact");
    }
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            print_failure(error, args.output == Output::Json);
            return Ok(FAILED);
        }
    };
    let failed = report.change_set.failed().next().is_some();
    if !args.dry_run && !failed && report.new_revision {
        args.sync
            .record_applied_revision(&client, &report.revision)
            .await;
    }
    match args.output {
        Output::Json => {
            let mut json = report.to_json();
            json["skippedEntries"] = serde_json::json!(skipped);
            println!("{}", name_flags(&serde_json::to_string_pretty(&json)?));
        }
        Output::Text if args.dry_run => {
            let colour = [Colour::Auto, Colour::Always, Colour::Never][args.color as usize];
            let plan = gitops_sync::plan_text(&client, &report.change_set, colour).await;
            print!("{}", name_flags(&plan));
        }
        Output::Text => print_changes(&report.change_set),
    }
    if args.output == Output::Text {
        println!("{}", report.status_line());
    }
    // A dry run reports what the real run would fail on as failed objects: exit as it would.
    Ok(if failed {
        FAILED
    } else if report.changed() {
        CHANGED
    } else {
        IN_SYNC
    })
}
