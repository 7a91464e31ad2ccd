//! Turns gitoxide's progress tree during a download into [`FetchProgress::Downloading`] reports.
//!
//! gitoxide reports through nested progress items; two of them carry what a caller wants to see:
//! the bytes of pack data read from the remote and the objects indexed from it. Every item of the
//! tree shares one [`Shared`]; those two items count into its counters, and any change to them
//! triggers a throttled report.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gix::odb::pack::{bundle, index};
use gix::progress::{Count, Id, MessageLevel, NestedProgress, Progress, Step, StepShared, Unit};

use crate::source::{FetchProgress, ProgressReporter};

struct Shared {
    reporter: ProgressReporter,
    received_objects: StepShared,
    received_bytes: StepShared,
}

impl Shared {
    fn current(&self) -> FetchProgress {
        FetchProgress::Downloading {
            received_objects: self.received_objects.load(Ordering::Relaxed) as u64,
            received_bytes: self.received_bytes.load(Ordering::Relaxed) as u64,
        }
    }
}

/// One item of gitoxide's progress tree during a download.
pub(super) struct DownloadProgress {
    shared: Arc<Shared>,
    id: Id,
    name: Option<String>,
    counter: StepShared,
    /// Whether this item counts received objects or bytes, so changes are worth reporting.
    reports: bool,
}

impl DownloadProgress {
    /// The root of the tree; reports [`FetchProgress::Downloading`] with nothing received yet.
    pub(super) fn start(reporter: &ProgressReporter) -> Self {
        let shared = Arc::new(Shared {
            reporter: reporter.clone(),
            received_objects: Arc::new(AtomicUsize::new(0)),
            received_bytes: Arc::new(AtomicUsize::new(0)),
        });
        shared.reporter.report(shared.current());
        Self {
            shared,
            id: gix::progress::UNKNOWN,
            name: None,
            counter: Arc::new(AtomicUsize::new(0)),
            reports: false,
        }
    }

    /// A handle that reports the totals once the tree is gone.
    pub(super) fn totals(&self) -> DownloadTotals {
        DownloadTotals(Arc::clone(&self.shared))
    }

    fn changed(&self) {
        if self.reports {
            self.shared
                .reporter
                .report_frequent(|| self.shared.current());
        }
    }
}

/// The totals of a download, reported when it has ended.
pub(super) struct DownloadTotals(Arc<Shared>);

impl DownloadTotals {
    /// Report the totals received (unthrottled).
    pub(super) fn report(&self) {
        self.0.reporter.report(self.0.current());
    }
}

impl Count for DownloadProgress {
    fn set(&self, step: Step) {
        self.counter.store(step, Ordering::Relaxed);
        self.changed();
    }

    fn step(&self) -> Step {
        self.counter.load(Ordering::Relaxed)
    }

    fn inc_by(&self, step: Step) {
        self.counter.fetch_add(step, Ordering::Relaxed);
        self.changed();
    }

    fn counter(&self) -> StepShared {
        Arc::clone(&self.counter)
    }
}

impl Progress for DownloadProgress {
    fn init(&mut self, _max: Option<Step>, _unit: Option<Unit>) {}

    fn set_name(&mut self, name: String) {
        self.name = Some(name);
    }

    fn name(&self) -> Option<String> {
        self.name.clone()
    }

    fn id(&self) -> Id {
        self.id
    }

    fn message(&self, level: MessageLevel, message: String) {
        tracing::trace!(?level, %message, "git transfer");
    }
}

impl NestedProgress for DownloadProgress {
    type SubProgress = Self;

    fn add_child(&mut self, name: impl Into<String>) -> Self::SubProgress {
        self.add_child_with_id(name, gix::progress::UNKNOWN)
    }

    fn add_child_with_id(&mut self, name: impl Into<String>, id: Id) -> Self::SubProgress {
        let read_bytes: Id = bundle::write::ProgressId::ReadPackBytes.into();
        let indexed_objects: Id = index::write::ProgressId::IndexObjects.into();
        let (counter, reports) = if id == read_bytes {
            (Arc::clone(&self.shared.received_bytes), true)
        } else if id == indexed_objects {
            (Arc::clone(&self.shared.received_objects), true)
        } else {
            (Arc::new(AtomicUsize::new(0)), false)
        };
        Self {
            shared: Arc::clone(&self.shared),
            id,
            name: Some(name.into()),
            counter,
            reports,
        }
    }
}
