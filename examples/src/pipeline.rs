//! What the `sync` and `reconcile` binaries (and the demo) share around a `gitops-sync` unit:
//! the flags ([`cli::SyncArgs`] → [`SyncConfig`], on the library's spec types of
//! [`gitops_sync::spec`]), the unit those flags describe
//! ([`sync_unit`]: source, renderer with Helm told the cluster's capabilities, applier,
//! options), the revision recorded on the inventory ([`APPLIED_REVISION_ANNOTATION`]) and the
//! printing (status lines, the dry-run plan, JSON).
//!
//! The cycle itself (fetch, render, apply, prune, wait; the last good set served without
//! pruning; the loop with backoff) is the library's: an agent of your own uses `gitops-sync`
//! directly, not this module.
//!
//! ```no_run
//! use std::time::Duration;
//! use gitops_examples::pipeline::{SyncConfig, git_source, parse_git_reference, sync_unit};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = SyncConfig::builder(git_source(
//!         "https://example.com/team/config.git",
//!         &parse_git_reference("main")?,
//!     ))
//!     .subpath("clusters/dev")
//!     .inventory("default/dev-apps".parse()?)
//!     .wait_timeout(Duration::from_secs(120))
//!     .build()?;
//! let work_dir = tempfile::tempdir()?;
//! let unit = sync_unit(kube::Client::try_default().await?, &config, work_dir.path())
//!     .await?
//!     .build()?;
//! gitops_sync::Reconciler::new(unit, Duration::from_secs(30))
//!     .run(&CancellationToken::new(), |event| println!("{}", event.status_line()))
//!     .await;
//! # Ok(())
//! # }
//! ```

pub mod cli;
mod config;
mod report;
mod run;
mod unit;

pub use config::{
    ConfigError, InventoryLocation, SyncConfig, SyncConfigBuilder, git_source, local_source,
    parse_git_reference, source_location,
};
pub use report::{
    SyncReport, action_name, drift_corrected, error_chain, short_revision, unit_status_line,
};
pub use run::{APPLIED_REVISION_ANNOTATION, plan_text};
pub use unit::{read_applied_revision, record_applied_revision, sync_unit};
