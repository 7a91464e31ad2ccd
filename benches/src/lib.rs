//! Shared parts of the benchmarks in `benches/benches/`: the [`results`] every bench records
//! (each figure with its samples, its peer and its floor), from which `scripts/bench` writes
//! `benches/results.json` and the README's table.
//!
//! Run them all with their peers with `scripts/bench` (`--quick` for a reduced run that only
//! checks every bench and peer still runs), or one with `cargo bench -p gitops-benches --bench
//! <name>`.

pub mod results;
