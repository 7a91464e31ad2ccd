//! gitops-rs: a GitOps toolkit as small crates, re-exported here behind features, the way `kube`
//! re-exports kube-client, kube-core and kube-runtime.
//!
//! | module | crate | feature |
//! |---|---|---|
//! | [`core`] | `gitops-core`: manifests with their origin, object ids, parsing | always |
//! | `source` | `gitops-source`: Git and local directory sources, artifacts | `source` |
//! | `render` | `gitops-render`: plain YAML, Kustomize, Helm, substitution | `render` |
//! | `diff` | `gitops-diff`: the three-way diff engine | `diff` |
//! | `apply` | `gitops-apply`: server-side apply, prune, health | `apply` |
//! | `sync` | `gitops-sync`: the reconcile cycle (artifact store, sync units, the loop, the spec→unit factory) | `sync` |
//! | `sync::controller` | `gitops-sync`'s controller kit for kube-runtime controllers | `controller` |
//!
//! [`prelude`] brings the traits and the types a reconciler needs into scope, and [`Error`]
//! wraps every crate's error, so that one `?` fits them all.
//!
//! ```
//! use gitops::{Manifest, ObjectId};
//! let manifests = gitops::core::parse_manifests(
//!     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\n",
//!     "settings.yaml",
//! )?;
//! let first: &Manifest = &manifests[0];
//! assert_eq!(first.id(), ObjectId::new("", "ConfigMap", Some("shop"), "settings"));
//! # Ok::<(), gitops::Error>(())
//! ```
//!
//! # Your own reconciler
//!
//! The library holds the cycle (fetch, render, apply, prune, wait, and the loop with backoff):
//! a program assembles a source, a renderer and an applier into a unit and runs it. Any
//! [`Source`](gitops_source::Source) or [`Renderer`](gitops_render::Renderer) of your own fits
//! the same seams. From a spec ([`gitops_sync::spec::SyncSpec`], which a CLI, a file or a custom
//! resource fills in), [`gitops_sync::UnitFactory`] makes the unit: source, renderer (tools
//! found, Helm told the cluster's capabilities), applier and options.
//!
//! ```no_run
//! # #[cfg(feature = "sync")]
//! # mod with_sync {
//! use std::time::Duration;
//!
//! use gitops::prelude::*;
//! use tokio_util::sync::CancellationToken;
//!
//! async fn run() -> gitops::Result<()> {
//!     let client = kube::Client::try_default().await?;
//!     let source = GitSource::builder("https://example.com/team/config.git", "/var/cache/gitops")
//!         .reference(GitReference::Branch("main".into()))
//!         .build()?;
//!     // Plain YAML, and Kustomize or Helm when found (GITOPS_KUSTOMIZE / GITOPS_HELM, PATH).
//!     let renderer = AutoRenderer::new(PlainRenderer::new()).with_located_tools(None, None)?;
//!     let inventory = ConfigMapInventory::new("default", "shop")?;
//!     let applier = Applier::builder(client, inventory).build();
//!     let unit = SyncUnit::builder(source, renderer, applier)
//!         .path("clusters/prod")
//!         .wait(WaitPolicy::WhenChanged(Duration::from_secs(120)))
//!         .build()?;
//!
//!     let reconciler = Reconciler::new(unit, Duration::from_secs(60)).jitter(0.1);
//!     let trigger = reconciler.trigger(); // hand it to a webhook: trigger.sync_now()
//!     # drop(trigger);
//!     let cancel = CancellationToken::new();
//!     reconciler
//!         .run(&cancel, |cycle| println!("{}", cycle.status_line()))
//!         .await;
//!     Ok(())
//! }
//! # }
//! ```

pub use gitops_core as core;
pub use gitops_core::{GroupKind, Manifest, ObjectId, Origin};

#[cfg(feature = "source")]
pub use gitops_source as source;

#[cfg(feature = "render")]
pub use gitops_render as render;

#[cfg(feature = "diff")]
pub use gitops_diff as diff;

#[cfg(feature = "apply")]
pub use gitops_apply as apply;

#[cfg(feature = "sync")]
pub use gitops_sync as sync;

pub mod prelude;

/// Any error of the gitops-rs crates, so that one `?` fits them all; the crate's own error is
/// its [`std::error::Error::source`], with the rest of the chain below it.
///
/// ```
/// fn parse(text: &str) -> gitops::Result<usize> {
///     Ok(gitops::core::parse_manifests(text, "app.yaml")?.len())
/// }
/// let error = parse("kind: [").unwrap_err();
/// assert!(matches!(error, gitops::Error::Parse(_)));
/// assert!(std::error::Error::source(&error).is_some());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Parsing manifests failed (`gitops-core`).
    #[error("parsing manifests failed")]
    Parse(#[source] gitops_core::ParseError),
    /// Fetching a source failed (`gitops-source`).
    #[cfg(feature = "source")]
    #[error("fetching the source failed")]
    Source(#[source] Box<gitops_source::SourceError>),
    /// Rendering failed (`gitops-render`).
    #[cfg(feature = "render")]
    #[error("rendering failed")]
    Render(#[source] Box<gitops_render::RenderError>),
    /// kustomize or helm was given but is not an executable file (`gitops-render`).
    #[cfg(feature = "render")]
    #[error("locating a rendering tool failed")]
    Locate(#[source] gitops_render::tool::LocateError),
    /// Diffing failed (`gitops-diff`).
    #[cfg(feature = "diff")]
    #[error("diffing failed")]
    Diff(#[source] Box<gitops_diff::DiffError>),
    /// Applying, planning or pruning failed (`gitops-apply`).
    #[cfg(feature = "apply")]
    #[error("applying failed")]
    Apply(#[source] Box<gitops_apply::ApplyError>),
    /// Waiting for health failed (`gitops-apply`).
    #[cfg(feature = "apply")]
    #[error("waiting for the objects to become Current failed")]
    Wait(#[source] Box<gitops_apply::WaitError>),
    /// Reading or writing an inventory failed (`gitops-apply`).
    #[cfg(feature = "apply")]
    #[error("the inventory failed")]
    Inventory(#[source] Box<gitops_apply::InventoryError>),
    /// Talking to the Kubernetes API failed (making a client, for one).
    #[cfg(feature = "apply")]
    #[error("the Kubernetes client failed")]
    Kube(#[source] Box<kube::Error>),
    /// A sync failed (`gitops-sync`); its [`gitops_sync::SyncError::class`] says whether to
    /// retry.
    #[cfg(feature = "sync")]
    #[error("the sync failed")]
    Sync(#[source] Box<gitops_sync::SyncError>),
    /// A spec could not become a sync unit (`gitops-sync`'s
    /// [`UnitFactory`](gitops_sync::UnitFactory)).
    #[cfg(feature = "sync")]
    #[error("making the sync unit failed")]
    Factory(#[source] Box<gitops_sync::FactoryError>),
}

/// A result whose error is [`Error`].
///
/// ```
/// fn nothing() -> gitops::Result<()> { Ok(()) }
/// assert!(nothing().is_ok());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<gitops_core::ParseError> for Error {
    fn from(error: gitops_core::ParseError) -> Self {
        Self::Parse(error)
    }
}

/// `From` for each boxed variant.
macro_rules! from_boxed {
    ($feature:literal, $variant:ident, $error:ty) => {
        #[cfg(feature = $feature)]
        impl From<$error> for Error {
            fn from(error: $error) -> Self {
                Self::$variant(Box::new(error))
            }
        }
    };
}

from_boxed!("source", Source, gitops_source::SourceError);
from_boxed!("render", Render, gitops_render::RenderError);
from_boxed!("diff", Diff, gitops_diff::DiffError);
from_boxed!("apply", Apply, gitops_apply::ApplyError);
from_boxed!("apply", Wait, gitops_apply::WaitError);
from_boxed!("apply", Inventory, gitops_apply::InventoryError);
from_boxed!("apply", Kube, kube::Error);
from_boxed!("sync", Sync, gitops_sync::SyncError);
from_boxed!("sync", Factory, gitops_sync::FactoryError);

#[cfg(feature = "render")]
impl From<gitops_render::tool::LocateError> for Error {
    fn from(error: gitops_render::tool::LocateError) -> Self {
        Self::Locate(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_keeps_its_chain() {
        let error: Error = gitops_core::parse_manifests("kind: [", "app.yaml")
            .unwrap_err()
            .into();
        let source = std::error::Error::source(&error).expect("the parse error");
        assert!(source.to_string().contains("app.yaml"), "{source}");
    }

    #[cfg(feature = "sync")]
    #[test]
    fn a_sync_error_keeps_its_class() {
        let error: Error = gitops_sync::SyncError::Cancelled { step: "fetching" }.into();
        let Error::Sync(sync) = &error else {
            panic!("not a sync error: {error:?}");
        };
        assert_eq!(sync.class(), gitops_sync::ErrorClass::Cancelled);
        assert_eq!(error.to_string(), "the sync failed");
        let error: Error = gitops_sync::FactoryError::NoInventory.into();
        assert!(matches!(error, Error::Factory(_)), "{error:?}");
    }

    #[cfg(feature = "controller")]
    #[test]
    fn the_controller_feature_brings_the_kit() {
        let spec = crate::sync::controller::SyncSpec::default();
        assert!(spec.prune);
    }
}
