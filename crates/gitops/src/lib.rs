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
//!
//! ```
//! use gitops::{Manifest, ObjectId};
//! let manifests = gitops::core::parse_manifests(
//!     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\n",
//!     "settings.yaml",
//! )?;
//! let first: &Manifest = &manifests[0];
//! assert_eq!(first.id(), ObjectId::new("", "ConfigMap", Some("shop"), "settings"));
//! # Ok::<(), gitops::core::ParseError>(())
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
