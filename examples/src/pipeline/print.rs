//! How `sync` and `reconcile` print: the change set, a failed sync, the dry-run plan, log
//! lines with library options named as the flags that set them, and a progress bar.

use std::time::Duration;

use gitops_sync::{SyncError, SyncProgress};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

/// A token cancelled by the first Ctrl-C (SIGINT), so that a run stops cleanly; a second Ctrl-C
/// exits the process at once with status 130. Call it inside a Tokio runtime.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() {
/// let cancel = gitops_examples::pipeline::cancel_on_ctrl_c();
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
const OPTION_FLAGS: [(&str, &str); 6] = [
    ("ApplyOptions::allow_empty_set", "--allow-empty"),
    ("ApplyOptions::recreate_on_immutable", "--recreate"),
    (
        "ApplyOptions::allow_cascading_prune",
        "--allow-cascading-prune",
    ),
    ("ApplyOptions::take_ownership", "--take-ownership"),
    ("HookPolicy::Include", "--helm-hooks include"),
    ("UnitFactory::helm_kube_version", "--helm-kube-version"),
];

/// `text` with every library option it names (such as `ApplyOptions::allow_empty_set`)
/// replaced by the command-line flag that sets it (`--allow-empty`): what the binaries print.
///
/// ```
/// use gitops_examples::pipeline::name_flags;
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
/// use gitops_examples::pipeline::without_listed_changes;
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
/// gitops_examples::pipeline::print_changes(&gitops_apply::ChangeSet::default());
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
/// flags (a failed dry run says itself that it was planning).
///
/// ```
/// let error = gitops_sync::SyncError::Cancelled { step: "fetching" };
/// gitops_examples::pipeline::print_failure(error, false);
/// ```
pub fn print_failure(error: SyncError, json: bool) {
    let mut message = error.chain();
    let (served, waited, apply) = match error {
        SyncError::Fetch { served, .. } | SyncError::Render { served, .. } => (served, None, None),
        SyncError::Wait { report, .. } => (None, Some(report), None),
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
    /// let bars = gitops_examples::pipeline::ProgressBars::new();
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
    /// use gitops_examples::pipeline::ProgressBars;
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

fn as_spinner(bar: &ProgressBar, message: String) {
    bar.set_style(spinner_style());
    bar.set_message(message);
}

/// The library's words for `step`; a bar for the steps that count, a spinner otherwise.
fn show(bar: &ProgressBar, step: &SyncProgress) {
    let Some(message) = step.message() else {
        return;
    };
    let Some((position, length)) = step.counts() else {
        return as_spinner(bar, message);
    };
    let style = ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
        .map(|style| style.progress_chars("=> "));
    bar.set_style(style.unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message(message);
    bar.set_length(length);
    bar.set_position(position);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_failures_are_not_repeated_and_options_become_flags() {
        let change = gitops_apply::ObjectChange {
            id: gitops_core::ObjectId::new("", "ConfigMap", Some("shop"), "frozen"),
            origin: None,
            resource: kube::discovery::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(
                &(),
            ),
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
        let message = format!(
            "applying r failed: 1 object(s) failed validation, nothing was written:\n  - {listed}\n  - ConfigMap shop/other failed: not listed"
        );
        assert_eq!(
            without_listed_changes(&message, &change_set),
            "applying r failed: 1 object(s) failed validation, nothing was written:\n  - ConfigMap shop/other failed: not listed"
        );
        let only = format!("applying r failed: 1 object(s) failed:\n  - {listed}");
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
    fn progress_steps_become_a_bar_or_a_spinner() {
        let bar = ProgressBar::hidden();
        let revision = gitops_source::Revision::git("main", &"ab".repeat(20));
        let writing = gitops_source::FetchProgress::WritingFiles {
            files_written: 3,
            files_total: 8,
        };
        show(&bar, &SyncProgress::Fetching(writing));
        assert_eq!(bar.message(), "fetch: writing files");
        assert_eq!((bar.position(), bar.length()), (3, Some(8)));
        let changed = false;
        show(&bar, &SyncProgress::Fetched { revision, changed });
        assert_eq!(bar.message(), "unchanged main@sha1:abababababab");
    }
}
