//! Shared parts of the benchmarks in `benches/benches/`: the [`results`] every bench records
//! (each figure with its samples, its peer and its floor), from which `scripts/bench` writes
//! `benches/results.json` and the README's table, and the Go [`peers`], built once into a cache.
//!
//! Run them all with their peers with `scripts/bench` (`--quick` for a reduced run that only
//! checks every bench and peer still runs), or one with `cargo bench -p gitops-benches --bench
//! <name>`.

pub mod peers;
pub mod report;
pub mod results;
