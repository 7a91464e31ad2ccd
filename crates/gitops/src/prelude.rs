//! The traits and types a reconciler needs, for `use gitops::prelude::*;`.
//!
//! ```
//! use gitops::prelude::*;
//! # #[cfg(feature = "render")]
//! # let _ = PlainRenderer::new();
//! let id: ObjectId = ObjectId::new("", "ConfigMap", Some("shop"), "settings");
//! # let _ = id;
//! ```

pub use crate::{Error, Result};
pub use gitops_core::{Manifest, ObjectId};

#[cfg(feature = "source")]
pub use gitops_source::{
    Artifact, GitReference, GitSource, LocalDirectorySource, Revision, Source,
};

#[cfg(feature = "render")]
pub use gitops_render::{
    AutoRenderer, HelmRenderer, KustomizeRenderer, PlainRenderer, RenderRequest, Renderer,
    Substitution,
};

#[cfg(feature = "apply")]
pub use gitops_apply::{
    Applier, ApplyOptions, ChangeSet, ConfigMapInventory, HealthCheck, InventoryStore, ObjectAction,
};

#[cfg(feature = "sync")]
pub use gitops_sync::{
    Backoff, ErrorClass, Reconciler, SpecUnit, SyncError, SyncReport, SyncUnit, Trigger,
    UnitFactory, WaitPolicy,
};
