//! The object model shared by the gitops-rs crates.
//!
//! - [`Manifest`]: one Kubernetes object (JSON inside) that remembers its [`Origin`]: file,
//!   document and line, so that any later error can say where the object came from.
//! - [`ObjectId`]: group, kind, namespace and name, with the stable string form inventories use.
//! - [`parse_manifests`]: multi-document YAML and JSON into validated manifests, with errors that
//!   give file and line.
//! - [`escape`]: names from a repository or a cluster printed without control characters, so
//!   that a hostile file name cannot forge a log line.
//! - [`secret`]: which objects are Secrets and masked copies of them, so that no output shows a
//!   Secret's values.
//!
//! ```
//! let manifests = gitops_core::parse_manifests(
//!     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
//!     "namespace.yaml",
//! )?;
//! assert_eq!(manifests[0].id().to_string(), "_shop__Namespace");
//! # Ok::<(), gitops_core::ParseError>(())
//! ```

mod error_chain;
pub mod escape;
mod id;
mod manifest;
mod parse;
pub mod secret;

pub use error_chain::error_chain;
pub use id::{GroupKind, IdError, ObjectId, split_api_version};
pub use manifest::{
    ARGO_HOOK_ANNOTATION, HELM_HOOK_ANNOTATION, InvalidManifest, Manifest, Origin,
    check_namespace_name,
};
pub use parse::{
    Document, ParseError, ParseLimits, documents_to_manifests, is_integer_out_of_range, is_list,
    parse_json_documents, parse_manifests, parse_manifests_with, parse_yaml_documents,
    parse_yaml_documents_with,
};
