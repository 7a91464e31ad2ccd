//! Shared helpers for the benchmarks in `benches/benches/`: fixtures that several benchmarks use.
//!
//! Run them with `cargo bench -p gitops-benches`.
