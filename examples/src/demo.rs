//! The demo: the README's first command, `cargo run -p gitops-examples --bin demo`.
//!
//! It takes a fresh machine to a running GitOps loop and shows what the loop does:
//!
//! 1. a local control plane ([`gitops_envtest::ControlPlane`], built from pinned sources on
//!    first use) and a Git repository ([`DemoRepository`]) holding the demo app of
//!    `examples/demo/`: a Namespace, a ConfigMap, a Deployment, a Service, a CRD and a custom
//!    resource of it;
//! 2. the initial plan (unified diffs of a server-side dry run), then the reconciler
//!    ([`gitops_sync::Reconciler`]) applying revision 1;
//! 3. a commit that changes the app, picked up on the next poll and applied;
//! 4. hand edits of live objects (`kubectl edit`, `kubectl scale`), detected as drift and
//!    corrected although Git did not change;
//! 5. a file deleted from Git, its object pruned.
//!
//! The [`Scenario`] checks every step on the cluster and returns a [`DemoReport`], so the
//! end-to-end test runs exactly what the demo shows. The [`Narrator`] prints step headers and
//! one status line per reconcile cycle.

mod app;
mod narrator;
mod repo;
mod scenario;

pub use app::{
    APP_PATH, DEFAULT_NAMESPACE, DemoFile, REVISION_1, REVISION_2, REVISION_3_REMOVED,
    greeting_group, names,
};
pub use narrator::{Narrator, Tone};
pub use repo::{Commit, DemoRepository, RepositoryError};
pub use scenario::{
    CycleSummary, DemoOptions, DemoReport, HAND_EDITED_GREETING, HAND_SCALED_REPLICAS, STEPS,
    Scenario, ScenarioError, edit_greeting_by_hand,
};

/// An error and its sources on one line (the library's, re-exported for the demo's binary).
pub use gitops_core::error_chain;
