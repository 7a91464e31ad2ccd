//! A three-way diff engine with Kubernetes semantics.
//!
//! Given the **desired** state of an object (rendered from Git), its **live** state (read from
//! the cluster) and what was **last applied** (the fields our field manager owns in
//! `metadata.managedFields`, or the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation), [`Differ`] reports:
//!
//! - a field desired sets that live holds with another value: drift;
//! - a field only live has, which we never set and do not own (server defaults, other
//!   controllers): not drift;
//! - a field we owned or last applied that desired no longer sets: a removal, drift.
//!
//! Lists follow the Kubernetes schema ([`Schema`]): associative lists by their keys (containers
//! by `name`, ports by `containerPort` and `protocol`, ...), sets as sets, atomic lists whole. The
//! schema of the built-in kinds is embedded (generated from the Kubernetes v1.37.2 OpenAPI v3
//! documents); CRDs add theirs ([`Schema::add_crd`]), and [`fetch_cluster_schema`] reads what a
//! cluster serves ([`fetch_cluster_schema_of`] only the group-versions asked for, with the
//! hashes of their documents for a cache). Before comparing, quantities (`"1000m"` = `"1"`) and int-or-string values are
//! normalised; [`Normaliser`]s handle the rest (Secret `stringData` by default). Empty values
//! (`false`, `0`, `""`, `[]`, `{}`) and nulls are compared as server-side apply stores them,
//! with our field manager's ownership telling a value the apiserver dropped from one removed by
//! hand (see [`Differ::diff`]): every verdict is checked against a real apiserver's dry-run
//! apply in the tests. [`IgnoreRule`]s skip paths or fields owned by other managers (an HPA's
//! replicas), and bind apply too: [`Differ::applied_object`] is the object to send, with those
//! fields left out so that their owner keeps them. Flux's drift ignore rules
//! ([`FluxDriftIgnoreRule`]) and Argo CD's `ignoreDifferences` ([`ArgoIgnoreDifference`]) convert
//! into ignore rules.
//!
//! Outputs: per object a [`DiffStatus`] and field-level [`Change`]s, an RFC 6902 patch
//! ([`ObjectDiff::patch`]), a unified YAML diff with Secret values masked
//! ([`ObjectDiff::unified_yaml`]), JSON, and a [`Summary`] over a set ([`DiffReport`]).
//!
//! The applier's no-op check is [`Differ::needs_apply`], which stops at the first difference.
//!
//! ```
//! use gitops_diff::{Differ, IgnoreRule, Selector};
//! use serde_json::json;
//!
//! let differ = Differ::builder("gitops-rs")
//!     .ignore(IgnoreRule::new(Selector::default().kind("Deployment")).manager("hpa-controller"))
//!     .build();
//! let desired = json!({"apiVersion": "apps/v1", "kind": "Deployment",
//!     "metadata": {"name": "web"}, "spec": {"replicas": 2}});
//! let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
//!     "metadata": {"name": "web", "managedFields": [
//!         {"manager": "gitops-rs", "operation": "Apply", "fieldsType": "FieldsV1",
//!          "fieldsV1": {"f:spec": {"f:replicas": {}}}},
//!         {"manager": "hpa-controller", "operation": "Update", "subresource": "scale",
//!          "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
//!     "spec": {"replicas": 5}});
//! assert!(differ.diff(Some(&desired), Some(&live))?.is_in_sync());
//! # Ok::<(), gitops_diff::DiffError>(())
//! ```

mod applied;
mod cluster;
mod diff;
mod fieldpath;
mod ignore;
mod normalise;
mod output;
mod peers;
mod quantity;
mod schema;

pub use cluster::{
    BoxError, ClusterSchemaError, OpenApiDocument, OpenApiIndex, fetch_cluster_schema,
    fetch_cluster_schema_of, fetch_openapi_documents, fetch_openapi_index,
};
pub use diff::{
    Change, ChangeKind, DiffError, DiffStatus, Differ, DifferBuilder, LAST_APPLIED_ANNOTATION,
    LastApplied, ObjectDiff, SECRET_MASK,
};
pub use fieldpath::{FieldSet, FieldsV1Error, PathElement, canonical_json, item_key};
pub use ignore::{
    FieldRegex, IgnoreError, IgnoreRule, LabelSelector, PathPattern, PathStep, Requirement,
    Selector, SelectorField,
};
pub use normalise::{NormaliseError, Normaliser, SecretStringData, Side};
pub use output::{Colour, DiffReport, OutputError, Summary};
pub use peers::{ArgoIgnoreDifference, FluxDriftIgnoreRule, FluxTarget, PeerRuleError};
pub use quantity::{Quantity, QuantityError};
pub use schema::{FieldSchema, ListKey, ListType, Schema, SchemaError, TypeId};
