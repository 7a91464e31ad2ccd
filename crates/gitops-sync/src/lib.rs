//! The GitOps reconcile cycle, built only on the traits of the crates below it: any
//! [`gitops_source::Source`], any [`gitops_render::Renderer`] (with post-renderers and
//! substitution), and an [`gitops_apply::Applier`] with any [`gitops_apply::InventoryStore`].
//!
//! Each part is usable alone, as kube-runtime's are:
//! - [`ArtifactStore`]: fetches through a source; an unchanged revision hands back the artifact
//!   it already has; old artifacts are removed within [`StoreLimits`], never the one in use.
//! - [`RenderedSet`]: the right to prune in the type. [`RenderedSet::Current`] was rendered from
//!   the source's current revision and may prune; [`RenderedSet::LastGood`] is the last good set
//!   served again after a failure and only applies. A failed fetch or render is an error, never
//!   a set, so it never prunes.
//! - [`SyncUnit`]: one sync — fetch, render, apply, prune, wait by [`WaitPolicy`] — returning a
//!   [`SyncReport`] (revision, change set, timings, whether the last good set was served), or a
//!   [`SyncError`] whose [`SyncError::class`] says [`ErrorClass::Transient`] (retry with
//!   backoff) or [`ErrorClass::Stalled`] (bad input: wait for a new revision).
//! - [`Reconciler`]: the loop — interval with jitter, exponential [`Backoff`] on transient
//!   errors, stalled units waiting for the interval (or a trigger) instead of retrying soon,
//!   cancellation, a report per cycle ([`CycleEvent`]), and a [`Trigger`] that
//!   asks for a sync now. One loop per unit, nothing global: many units fit in one process.
//! - [`spec`]: the serde spec of a unit — [`spec::SyncSpec`] with its source, Git reference,
//!   renderer (plain, Kustomize, Helm) and inventory — for a CLI, a file or a custom resource;
//!   it needs no kube-runtime (the `controller` feature adds JSON schemas and re-exports it).
//!
//! # Your own reconciler
//!
//! A source and a renderer of your own fit the same seams as the crates' own:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use gitops_apply::{Applier, ApplyOptions, ConfigMapInventory};
//! use gitops_render::{RenderError, RenderRequest, Renderer};
//! use gitops_source::LocalDirectorySource;
//! use gitops_sync::{Reconciler, SyncUnit, WaitPolicy};
//! use tokio_util::sync::CancellationToken;
//!
//! /// A renderer of your own: every YAML file directly in the directory.
//! struct OneDirectory;
//!
//! #[async_trait::async_trait]
//! impl Renderer for OneDirectory {
//!     async fn render(&self, request: &RenderRequest) -> Result<Vec<gitops_core::Manifest>, RenderError> {
//!         let dir = request.resolve_dir()?;
//!         let mut objects = Vec::new();
//!         for entry in std::fs::read_dir(&dir).map_err(|e| RenderError::Other {
//!             renderer: "one-directory".into(),
//!             source: e.into(),
//!         })? {
//!             let path = entry.map_err(|e| RenderError::Other { renderer: "one-directory".into(), source: e.into() })?.path();
//!             let text = std::fs::read_to_string(&path).map_err(|e| RenderError::Other {
//!                 renderer: "one-directory".into(),
//!                 source: e.into(),
//!             })?;
//!             let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
//!             objects.extend(gitops_core::parse_manifests(&text, name).map_err(|e| RenderError::Other {
//!                 renderer: "one-directory".into(),
//!                 source: e.into(),
//!             })?);
//!         }
//!         Ok(objects)
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = kube::Client::try_default().await?;
//! let applier = Applier::builder(client, ConfigMapInventory::new("default", "my-app")?).build();
//! let unit = SyncUnit::builder(LocalDirectorySource::new("./deploy"), OneDirectory, applier)
//!     .apply_options(ApplyOptions::default().with_target_namespace("default".to_owned()))
//!     .wait(WaitPolicy::WhenChanged(Duration::from_secs(120)))
//!     .build()?;
//! let cancel = CancellationToken::new();
//! let reconciler = Reconciler::new(unit, Duration::from_secs(60)).jitter(0.1);
//! let trigger = reconciler.trigger(); // a webhook asks with trigger.sync_now()
//! # drop(trigger);
//! reconciler
//!     .run(&cancel, |event| println!("{}", event.status_line()))
//!     .await;
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "controller")]
pub mod controller;
mod error;
mod factory;
mod reconcile;
mod rendered;
mod report;
pub mod spec;
mod store;
mod unit;

pub use error::{ErrorClass, SyncError};
pub use factory::{
    Capabilities, DEFAULT_FIELD_MANAGER, FactoryError, SpecUnit, UnitFactory, discover_capabilities,
};
pub use reconcile::{Backoff, CycleEvent, Reconciler, Trigger};
pub use rendered::{Rendered, RenderedSet};
pub use report::{action_name, plan_text, short_revision};
pub use store::{ArtifactStore, Fetched, StoreError, StoreLimits};
pub use unit::{
    RenderReferences, SyncProgress, SyncReport, SyncTimings, SyncUnit, SyncUnitBuilder, WaitPolicy,
};
