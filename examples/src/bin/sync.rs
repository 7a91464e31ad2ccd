//! `sync`: one GitOps sync — fetch a Git repository (or read a directory), render it, apply it
//! with server-side apply, prune what left it, and optionally wait until everything is Current.
//!
//! ```text
//! sync --url https://example.com/config.git --ref main --subpath clusters/dev \
//!      --inventory default/dev --wait 2m
//! sync --path ./deploy --dry-run            # coloured diffs, Secrets masked, nothing written
//! sync --path ./deploy --output json        # the change set for CI
//! ```
//!
//! Exit codes, as `terraform plan -detailed-exitcode` uses them:
//! - `0`: in sync: nothing was (or, with `--dry-run`, would be) changed;
//! - `1`: failed: bad flags or configuration, or the fetch, render, apply or wait failed (with
//!   `--output json`, the error is printed as JSON); with `--dry-run`, objects the real run
//!   would fail on (an immutable change, a conflict, a rejected object);
//! - `2`: changed: objects were (or would be) created, configured, recreated or pruned.
//!
//! Logs go to standard error, filtered by `RUST_LOG` (default `warn`); a progress bar on
//! standard error follows the fetch, render, apply and wait when it is a terminal.

use std::process::ExitCode;

use clap::Parser;
use gitops_diff::Colour;
use gitops_examples::pipeline::cli::{
    ProgressBars, SyncArgs, cancel_on_ctrl_c, init_tracing, name_flags, without_listed_changes,
};
use gitops_examples::pipeline::{Pipeline, SyncError, SyncReport, error_chain};

/// Exit code: in sync.
const IN_SYNC: u8 = 0;
/// Exit code: failed.
const FAILED: u8 = 1;
/// Exit code: changed.
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

impl From<ColourFlag> for Colour {
    fn from(flag: ColourFlag) -> Self {
        match flag {
            ColourFlag::Auto => Colour::Auto,
            ColourFlag::Always => Colour::Always,
            ColourFlag::Never => Colour::Never,
        }
    }
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
    match run(&args).await {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let message = name_flags(&format!("{error:#}"));
            if args.output == Output::Json {
                println!("{}", serde_json::json!({ "error": message }));
            }
            eprintln!("error: {message}");
            ExitCode::from(FAILED)
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<u8> {
    let config = args.sync.to_config(args.dry_run)?;
    let client = args.sync.client().await?;
    let mut pipeline = Pipeline::new(client, config)?;

    // The first Ctrl-C stops cleanly; a second one exits at once.
    let cancel = cancel_on_ctrl_c();

    let bars = ProgressBars::new();
    let result = pipeline.sync_once(&cancel, &bars.sink()).await;
    bars.finish();
    match result {
        Ok(report) => {
            print_report(&pipeline, &report, args).await;
            // A dry run reports what the real run would fail on as failed objects: the exit
            // code is then the real run's, 1.
            Ok(if report.change_set.failed().next().is_some() {
                FAILED
            } else if report.changed() {
                CHANGED
            } else {
                IN_SYNC
            })
        }
        Err(error) => {
            print_failure(&error, args.output);
            Ok(FAILED)
        }
    }
}

async fn print_report(pipeline: &Pipeline, report: &SyncReport, args: &Args) {
    for entry in &report.skipped_entries {
        eprintln!("warning: {entry} was left out of the artifact");
    }
    match args.output {
        Output::Json => println!(
            "{}",
            name_flags(&serde_json::to_string_pretty(&report.to_json()).unwrap_or_default())
        ),
        Output::Text => {
            if report.change_set.dry_run {
                let plan = pipeline.plan_text(report, args.color.into()).await;
                print!("{}", name_flags(&plan));
            } else {
                print_changes(&report.change_set);
            }
            println!("{}", report.status_line());
        }
    }
}

fn print_failure(error: &SyncError, output: Output) {
    let served = error.served();
    match output {
        Output::Json => {
            let mut json = serde_json::json!({ "error": name_flags(&error_chain(error)) });
            if let Some(report) = served {
                json["servedLastGood"] = report.to_json();
            }
            if let SyncError::Wait { report, .. } = error {
                json["report"] = report.to_json();
            }
            println!(
                "{}",
                name_flags(&serde_json::to_string_pretty(&json).unwrap_or_default())
            );
        }
        Output::Text => {
            if let Some(change_set) = error.change_set() {
                print_changes(change_set);
            }
            if let Some(report) = served {
                println!("served the last good revision: {}", report.status_line());
            }
        }
    }
    let mut message = error_chain(error);
    if output == Output::Text
        && let Some(change_set) = error.change_set()
    {
        // The failed objects are listed above already: once is enough.
        message = without_listed_changes(&message, change_set);
    }
    eprintln!("error: {}", name_flags(&message));
}

/// One line per object that was (or would be) created, changed, pruned, that failed, or that
/// was left alone for a reason to act on (owned by another inventory); the unchanged and
/// other skipped ones are only counted in the status line.
fn print_changes(change_set: &gitops_apply::ChangeSet) {
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
