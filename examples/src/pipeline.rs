//! What the `sync` and `reconcile` binaries (and the demo) share around the library's
//! [`UnitFactory`](gitops_sync::UnitFactory): their flags ([`SyncArgs`] → a
//! [`SyncSpec`](gitops_sync::spec::SyncSpec) and a unit builder), the revision recorded on the
//! inventory ([`APPLIED_REVISION_ANNOTATION`]) and the printing. The cycle (fetch, render,
//! apply, prune, wait; the last good set served without pruning; the loop with backoff) and
//! the spec→unit construction are the library's: an agent of your own uses `gitops-sync`
//! directly, not this module.
//!
//! ```no_run
//! use std::time::Duration;
//! use clap::Parser;
//! use gitops_examples::pipeline::SyncArgs;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     sync: SyncArgs,
//! }
//! # async fn run() -> anyhow::Result<()> {
//! let cli = Cli::parse();
//! let client = cli.sync.client().await?;
//! let work_dir = tempfile::tempdir()?;
//! let interval = Duration::from_secs(30);
//! let unit = cli.sync.unit(client, work_dir.path(), interval, false).await?.build()?;
//! gitops_sync::Reconciler::new(unit, interval)
//!     .run(&tokio_util::sync::CancellationToken::new(), |event| println!("{}", event.status_line()))
//!     .await;
//! # Ok(())
//! # }
//! ```

mod cli;
mod print;

pub use cli::{APPLIED_REVISION_ANNOTATION, HooksFlag, RendererFlag, SyncArgs};
pub use print::{
    ProgressBars, cancel_on_ctrl_c, init_tracing, name_flags, print_changes, print_failure,
    without_listed_changes,
};
