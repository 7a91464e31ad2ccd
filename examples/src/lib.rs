//! Runnable programs that assemble the gitops-rs crates into reconcilers, and the code they share.
//!
//! | binary | what it does | its module |
//! |---|---|---|
//! | `sync` | one shot: source → render → diff → apply → prune → wait | [`pipeline`] |
//! | `reconcile` | the GitOps agent: the same on an interval, correcting drift | [`pipeline`] |
//! | `controller` | a kube-runtime controller over a custom resource of ours | [`controller`] |
//! | `demo` | the README's first command: a local control plane, a demo repository, the reconciler | [`demo`] |

pub mod controller;
pub mod demo;
pub mod git_repo;
pub mod pipeline;
