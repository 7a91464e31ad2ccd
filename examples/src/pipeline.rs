//! The sync pipeline the `sync` and `reconcile` binaries (and the demo) are built on: the code a
//! user copies into their own GitOps agent.
//!
//! One sync ([`Pipeline::sync_once`]) runs the GitOps steps in order:
//!
//! 1. **fetch** the source ([`SourceSpec`]: a Git URL at a branch, tag, semver range or commit,
//!    or a local directory); an unchanged revision downloads nothing;
//! 2. **render** the subpath ([`RendererChoice`]: plain YAML/JSON, Kustomize, Helm, or automatic),
//!    then substitute `${VARIABLES}`; an unchanged revision is not rendered again;
//! 3. **diff and apply** with server-side apply: the applier reads the live objects (one list
//!    per kind and namespace) and writes only what differs, so a cycle without Git changes is
//!    cheap and still corrects drift;
//! 4. **prune** what the inventory (a ConfigMap, [`InventoryLocation`]) lists and the set lacks;
//! 5. **wait** until the objects are Current (kstatus), when a wait timeout is set.
//!
//! Safety: a failed fetch or render never prunes. The pipeline keeps the last good rendered set
//! and applies it again without pruning ([`SyncError::served`]); only a set rendered from the
//! revision the source has now is allowed to prune.
//!
//! [`Reconciler`] runs syncs on an interval with exponential [`Backoff`] after failures, one
//! [`CycleEvent`] per cycle, and stops on cancellation.
//!
//! ```no_run
//! use std::time::Duration;
//! use gitops_examples::pipeline::{
//!     Pipeline, ProgressSink, Reconciler, SourceSpec, SyncConfig, parse_git_reference,
//! };
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = SyncConfig::builder(SourceSpec::git(
//!         "https://example.com/team/config.git",
//!         parse_git_reference("main")?,
//!     ))
//!     .subpath("clusters/dev")
//!     .inventory("default/dev-apps".parse()?)
//!     .wait_timeout(Duration::from_secs(120))
//!     .build()?;
//! let mut pipeline = Pipeline::new(kube::Client::try_default().await?, config)?;
//!
//! // One shot:
//! let cancel = CancellationToken::new();
//! let report = pipeline.sync_once(&cancel, &ProgressSink::none()).await?;
//! println!("{}", report.status_line());
//!
//! // Or the agent's loop, until `cancel` fires:
//! Reconciler::new(pipeline, Duration::from_secs(30))
//!     .run(&cancel, |event| println!("{}", event.status_line()))
//!     .await;
//! # Ok(())
//! # }
//! ```

pub mod cli;
mod config;
mod reconcile;
mod report;
mod run;
mod unit;

pub use config::{
    ConfigError, HelmRelease, InventoryLocation, RendererChoice, SourceSpec, SyncConfig,
    SyncConfigBuilder, parse_git_reference,
};
pub use reconcile::{Backoff, CycleEvent, Reconciler};
pub use report::{
    ProgressSink, SyncError, SyncProgress, SyncReport, action_name, drift_corrected, error_chain,
    short_revision, unit_status_line,
};
pub use run::{APPLIED_REVISION_ANNOTATION, Pipeline, plan_text};
pub use unit::{read_applied_revision, record_applied_revision, sync_unit};
