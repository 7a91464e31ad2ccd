//! What a benchmark records: every figure with all its samples, side by side with its peer and
//! the physical floor it is measured against, written to a JSON file that `scripts/bench`
//! gathers into `benches/results.json` and turns into the README's table.
//!
//! A figure is never typed by hand: a bench builds a [`Comparison`] from the samples it took
//! and hands it to its [`Recorder`]; [`Recorder::finish`] writes `<bench>.json` into the
//! directory named by `GITOPS_BENCH_OUT` (default `target/bench-results`).
//!
//! ```
//! use std::time::Duration;
//! use gitops_benches::results::{Comparison, Measure, Recorder};
//!
//! let out = tempfile::tempdir().unwrap();
//! let mut recorder = Recorder::new("render").out_dir(out.path());
//! recorder.record(
//!     Comparison::new(
//!         "render/plain-1000",
//!         "plain render of 1,000 objects in 100 files",
//!         "both read the same 100 files and produce the same 1,000 objects",
//!     )
//!     .ours("gitops-render", Measure::durations(&[Duration::from_millis(80), Duration::from_millis(82)]))
//!     .peer("kustomize build", Measure::durations(&[Duration::from_secs(2)])),
//! );
//! let path = recorder.finish().unwrap();
//! assert!(path.ends_with("render.json"));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The environment variable that makes every bench run reduced (`scripts/bench --quick`): few
/// samples, small inputs, no timing asserted; it checks that each bench and its peers still run.
pub const QUICK_ENV: &str = "GITOPS_BENCH_QUICK";

/// The environment variable naming the directory the recorders write to.
pub const OUT_ENV: &str = "GITOPS_BENCH_OUT";

/// Whether this is a reduced run (`GITOPS_BENCH_QUICK` set to anything but `0`).
///
/// ```
/// let samples = if gitops_benches::results::quick() { 1 } else { 10 };
/// assert!(samples >= 1);
/// ```
#[must_use]
pub fn quick() -> bool {
    std::env::var_os(QUICK_ENV).is_some_and(|value| value != "0")
}

/// The unit of a [`Measure`]'s samples.
///
/// ```
/// use gitops_benches::results::Unit;
/// assert!(Unit::Seconds.lower_is_better());
/// assert!(!Unit::BytesPerSecond.lower_is_better());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Wall-clock time.
    Seconds,
    /// A size, such as a peak resident set size.
    Bytes,
    /// A throughput.
    BytesPerSecond,
    /// A count, such as API requests.
    Count,
}

impl Unit {
    /// Whether less is better (time, memory, requests) or more (throughput).
    #[must_use]
    pub fn lower_is_better(self) -> bool {
        !matches!(self, Self::BytesPerSecond)
    }
}

/// All the samples of one side of a figure, in one unit.
///
/// ```
/// use gitops_benches::results::Measure;
/// let measure = Measure::new(gitops_benches::results::Unit::Bytes, vec![3.0, 1.0, 2.0]);
/// assert_eq!(measure.median(), 2.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    /// The unit of every sample.
    pub unit: Unit,
    /// Every sample taken, in the order taken.
    pub samples: Vec<f64>,
}

impl Measure {
    /// Samples in `unit`.
    #[must_use]
    pub fn new(unit: Unit, samples: Vec<f64>) -> Self {
        Self { unit, samples }
    }

    /// Durations, recorded in seconds.
    ///
    /// ```
    /// use std::time::Duration;
    /// let measure = gitops_benches::results::Measure::durations(&[Duration::from_millis(1500)]);
    /// assert_eq!(measure.median(), 1.5);
    /// ```
    #[must_use]
    pub fn durations(samples: &[Duration]) -> Self {
        Self::new(
            Unit::Seconds,
            samples.iter().map(Duration::as_secs_f64).collect(),
        )
    }

    /// Peak resident set sizes in bytes.
    ///
    /// ```
    /// let measure = gitops_benches::results::Measure::bytes(&[46 << 20]);
    /// assert_eq!(measure.median(), (46u64 << 20) as f64);
    /// ```
    #[must_use]
    pub fn bytes(samples: &[u64]) -> Self {
        Self::new(
            Unit::Bytes,
            samples.iter().map(|&bytes| bytes as f64).collect(),
        )
    }

    /// The median sample (the mean of the middle two for an even count); `NaN` without samples.
    #[must_use]
    pub fn median(&self) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    /// The smallest and largest sample; `None` without samples.
    #[must_use]
    pub fn range(&self) -> Option<(f64, f64)> {
        let min = self.samples.iter().copied().min_by(f64::total_cmp)?;
        let max = self.samples.iter().copied().max_by(f64::total_cmp)?;
        Some((min, max))
    }
}

impl fmt::Display for Measure {
    /// The median in a readable unit, with the number of samples: `82.0 ms (n=10)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.median();
        match self.unit {
            Unit::Seconds if value < 1e-3 => write!(f, "{:.1} µs", value * 1e6),
            Unit::Seconds if value < 1.0 => write!(f, "{:.1} ms", value * 1e3),
            Unit::Seconds => write!(f, "{value:.2} s"),
            Unit::Bytes if value < f64::from(1 << 20) => write!(f, "{:.1} KiB", value / 1024.0),
            Unit::Bytes => write!(f, "{:.1} MiB", value / f64::from(1 << 20)),
            Unit::BytesPerSecond => write!(f, "{:.1} MB/s", value / 1e6),
            Unit::Count => write!(f, "{value}"),
        }?;
        write!(f, " (n={})", self.samples.len())
    }
}

/// One named side of a comparison: ours, the peer, or the floor.
///
/// ```
/// use gitops_benches::results::{Measure, Side};
/// let side = Side::new("git clone --depth 1", Measure::bytes(&[1024]));
/// assert_eq!(side.name, "git clone --depth 1");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// What ran: `gitops-render plain`, `kustomize build v5.8.1`, `Flux ssa (harness process)`.
    pub name: String,
    /// Its samples.
    pub measure: Measure,
}

impl Side {
    /// A side named `name`.
    #[must_use]
    pub fn new(name: impl Into<String>, measure: Measure) -> Self {
        Self {
            name: name.into(),
            measure,
        }
    }
}

/// One figure: our measure beside the peer's for the same work, and optionally the physical
/// floor of that work (the least any implementation could take: parsing the input, the needed
/// requests over a warm connection, writing the files).
///
/// ```
/// use std::time::Duration;
/// use gitops_benches::results::{Comparison, Measure};
/// let figure = Comparison::new("diff/10k", "three-way diff of 10,000 objects", "same inputs, same drift found")
///     .ours("gitops-diff", Measure::durations(&[Duration::from_millis(10)]))
///     .peer("gitops-engine", Measure::durations(&[Duration::from_millis(600)]));
/// assert_eq!(figure.ratio().map(|r| r.round()), Some(60.0));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// A stable key, `<bench>/<workload>`: the table's rows are sorted by it.
    pub id: String,
    /// The workload in a few words, for the table.
    pub workload: String,
    /// What both sides do, so a reader can check the work is equal.
    pub equal_work: String,
    /// Ours.
    pub ours: Option<Side>,
    /// The peer.
    pub peer: Option<Side>,
    /// The physical floor, when the bench measures one.
    pub floor: Option<Side>,
    /// Anything a reader must know to read the figure (a known limit, why a ratio is near 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Comparison {
    /// A figure with its key, workload and the statement of equal work; add the sides with
    /// [`ours`](Self::ours), [`peer`](Self::peer) and [`floor`](Self::floor).
    #[must_use]
    pub fn new(
        id: impl Into<String>,
        workload: impl Into<String>,
        equal_work: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            workload: workload.into(),
            equal_work: equal_work.into(),
            ours: None,
            peer: None,
            floor: None,
            note: None,
        }
    }

    /// Our side.
    #[must_use]
    pub fn ours(mut self, name: impl Into<String>, measure: Measure) -> Self {
        self.ours = Some(Side::new(name, measure));
        self
    }

    /// The peer's side.
    #[must_use]
    pub fn peer(mut self, name: impl Into<String>, measure: Measure) -> Self {
        self.peer = Some(Side::new(name, measure));
        self
    }

    /// The physical floor of the work.
    #[must_use]
    pub fn floor(mut self, name: impl Into<String>, measure: Measure) -> Self {
        self.floor = Some(Side::new(name, measure));
        self
    }

    /// A note for the reader.
    #[must_use]
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// How many times better ours is than the peer, from the medians (peer / ours for time
    /// and memory, ours / peer for throughput); `None` without both sides or in other units.
    #[must_use]
    pub fn ratio(&self) -> Option<f64> {
        let (ours, peer) = (&self.ours.as_ref()?.measure, &self.peer.as_ref()?.measure);
        if ours.unit != peer.unit {
            return None;
        }
        let ratio = if ours.unit.lower_is_better() {
            peer.median() / ours.median()
        } else {
            ours.median() / peer.median()
        };
        ratio.is_finite().then_some(ratio)
    }

    /// How far ours is above the floor (ours / floor for time and memory); `None` without both.
    #[must_use]
    pub fn over_floor(&self) -> Option<f64> {
        let (ours, floor) = (&self.ours.as_ref()?.measure, &self.floor.as_ref()?.measure);
        if ours.unit != floor.unit {
            return None;
        }
        let ratio = if ours.unit.lower_is_better() {
            ours.median() / floor.median()
        } else {
            floor.median() / ours.median()
        };
        ratio.is_finite().then_some(ratio)
    }
}

/// The errors of writing a bench's results.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultsError {
    /// The output directory or file could not be written.
    #[error("writing the bench results to {path}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The results could not be serialised.
    #[error("serialising the bench results")]
    Serialise(#[source] serde_json::Error),
}

/// The results of one bench run, as written to `<bench>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResults {
    /// The bench's name (`render`, `apply`, ...).
    pub bench: String,
    /// Whether it was a reduced (`--quick`) run, whose figures mean nothing.
    pub quick: bool,
    /// Its figures, in the order recorded.
    pub figures: Vec<Comparison>,
}

/// Collects a bench's figures and writes them when the bench ends.
///
/// Every figure is also printed as it is recorded, so a run read in the terminal shows the
/// same numbers the file holds.
#[derive(Debug)]
#[must_use = "call finish() to write the results"]
pub struct Recorder {
    results: BenchResults,
    out_dir: PathBuf,
}

impl Recorder {
    /// A recorder for the bench `bench`, writing to `GITOPS_BENCH_OUT` (default
    /// `target/bench-results` under the workspace).
    pub fn new(bench: impl Into<String>) -> Self {
        let out_dir = std::env::var_os(OUT_ENV).map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-results"),
            PathBuf::from,
        );
        Self {
            results: BenchResults {
                bench: bench.into(),
                quick: quick(),
                figures: Vec::new(),
            },
            out_dir,
        }
    }

    /// Writes to `dir` instead.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = dir.into();
        self
    }

    /// Records a figure (and prints it).
    ///
    /// # Panics
    /// When the figure lacks our side or its peer's: a comparison with a side missing would
    /// "pass" comparing nothing. A figure with no peer by nature (a floor only) names the floor
    /// as its peer.
    pub fn record(&mut self, figure: Comparison) {
        assert!(
            figure.ours.is_some() && figure.peer.is_some(),
            "bench figure {} lacks a side: ours and the peer are both required",
            figure.id
        );
        println!("{}", summary_line(&figure));
        self.results.figures.push(figure);
    }

    /// The figures recorded so far.
    #[must_use]
    pub fn figures(&self) -> &[Comparison] {
        &self.results.figures
    }

    /// Writes `<bench>.json` and returns its path.
    ///
    /// # Errors
    /// [`ResultsError`] when the file cannot be written.
    pub fn finish(self) -> Result<PathBuf, ResultsError> {
        std::fs::create_dir_all(&self.out_dir).map_err(|source| ResultsError::Write {
            path: self.out_dir.clone(),
            source,
        })?;
        let path = self.out_dir.join(format!("{}.json", self.results.bench));
        let text = serde_json::to_string_pretty(&self.results).map_err(ResultsError::Serialise)?;
        std::fs::write(&path, text).map_err(|source| ResultsError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

/// One line for the terminal: `render/plain-1000: gitops-render 82.0 ms (n=10) vs kustomize
/// build 2.00 s (n=3): 24.4x`.
#[must_use]
pub fn summary_line(figure: &Comparison) -> String {
    let side = |side: &Option<Side>| {
        side.as_ref().map_or_else(
            || "-".to_owned(),
            |side| format!("{} {}", side.name, side.measure),
        )
    };
    let mut line = format!(
        "{}: {} vs {}",
        figure.id,
        side(&figure.ours),
        side(&figure.peer)
    );
    if let Some(ratio) = figure.ratio() {
        line.push_str(&format!(": {ratio:.2}x"));
    }
    if let Some(floor) = &figure.floor {
        line.push_str(&format!("; floor {} {}", floor.name, floor.measure));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_below_a_mebibyte_are_shown_in_kibibytes() {
        assert_eq!(Measure::bytes(&[10 << 10]).to_string(), "10.0 KiB (n=1)");
        assert_eq!(Measure::bytes(&[46 << 20]).to_string(), "46.0 MiB (n=1)");
    }

    #[test]
    fn the_ratio_is_peer_over_ours_for_time_and_ours_over_peer_for_throughput() {
        let time = Comparison::new("a/b", "w", "e")
            .ours("us", Measure::new(Unit::Seconds, vec![1.0, 2.0, 3.0]))
            .peer("them", Measure::new(Unit::Seconds, vec![8.0]));
        assert_eq!(time.ratio(), Some(4.0));
        let throughput = Comparison::new("a/c", "w", "e")
            .ours("us", Measure::new(Unit::BytesPerSecond, vec![30.0]))
            .peer("them", Measure::new(Unit::BytesPerSecond, vec![10.0]));
        assert_eq!(throughput.ratio(), Some(3.0));
        let mixed = Comparison::new("a/d", "w", "e")
            .ours("us", Measure::new(Unit::Seconds, vec![1.0]))
            .peer("them", Measure::new(Unit::Bytes, vec![1.0]));
        assert_eq!(mixed.ratio(), None);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let measure = Measure::new(Unit::Count, vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(measure.median(), 2.5);
        assert_eq!(measure.range(), Some((1.0, 4.0)));
        assert!(Measure::new(Unit::Count, vec![]).median().is_nan());
    }

    #[test]
    #[should_panic(expected = "lacks a side")]
    fn a_figure_without_its_peer_is_refused() {
        let mut recorder = Recorder::new("x").out_dir(std::env::temp_dir());
        recorder.record(
            Comparison::new("x/y", "w", "e").ours("us", Measure::new(Unit::Seconds, vec![1.0])),
        );
    }

    #[test]
    fn the_written_file_reads_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let mut recorder = Recorder::new("apply").out_dir(dir.path());
        let figure = Comparison::new("apply/x", "w", "e")
            .ours("us", Measure::durations(&[Duration::from_millis(5)]))
            .peer("them", Measure::durations(&[Duration::from_millis(50)]))
            .floor("requests", Measure::durations(&[Duration::from_millis(2)]))
            .note("n");
        recorder.record(figure.clone());
        let path = recorder.finish().unwrap();
        let read: BenchResults =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(read.bench, "apply");
        assert_eq!(read.figures, vec![figure]);
        assert_eq!(read.figures[0].over_floor().map(f64::round), Some(3.0));
    }
}
