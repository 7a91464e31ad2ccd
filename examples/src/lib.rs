//! Runnable programs that assemble the gitops-rs crates into reconcilers: `sync` (one shot),
//! `reconcile` (the polling agent) and `controller` (a kube-runtime controller over a custom
//! resource), plus the one-command demo. They land with the examples issue; this package holds
//! their shared code.
