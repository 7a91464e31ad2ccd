//! [`Reconciler`]: the GitOps agent's loop around [`Pipeline::sync_once`].

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::report::{ProgressSink, SyncError, SyncReport, error_chain, short_revision};
use super::run::Pipeline;

/// Exponential backoff after failed cycles: `initial`, doubled after each consecutive failure,
/// never more than `max`.
///
/// ```
/// use std::time::Duration;
/// use gitops_examples::pipeline::Backoff;
/// let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
/// assert_eq!(backoff.delay(1), Duration::from_secs(1));
/// assert_eq!(backoff.delay(3), Duration::from_secs(4));
/// assert_eq!(backoff.delay(30), Duration::from_secs(5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// A backoff from `initial` up to `max` (at least `initial`).
    #[must_use]
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
        }
    }

    /// The delay after `failures` consecutive failures (1 for the first).
    #[must_use]
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1 << doublings)
            .map_or(self.max, |delay| delay.min(self.max))
    }
}

impl Default for Backoff {
    /// 2 seconds, doubling up to 5 minutes.
    fn default() -> Self {
        Self::new(Duration::from_secs(2), Duration::from_secs(300))
    }
}

/// One finished cycle of a [`Reconciler`], handed to its callback.
#[derive(Debug)]
pub struct CycleEvent<'a> {
    /// The cycle number, from 1.
    pub cycle: u64,
    /// The sync's result.
    pub result: &'a Result<SyncReport, SyncError>,
    /// Consecutive failed cycles, this one included (0 after a success).
    pub failures: u32,
    /// When the next cycle starts, unless cancelled.
    pub next_in: Duration,
    /// How long the cycle took.
    pub duration: Duration,
}

impl CycleEvent<'_> {
    /// One status line: `cycle 3 ok main@sha1:…: 0 created, … ; next in 30s`, or
    /// `cycle 4 failed: <error chain> [served …]; retry in 4s`.
    #[must_use]
    pub fn status_line(&self) -> String {
        match self.result {
            Ok(report) => format!(
                "cycle {} ok {}; next in {}",
                self.cycle,
                report.status_line(),
                format_duration(self.next_in)
            ),
            Err(error) => {
                let served = match error.served() {
                    Some(report) => format!(" [served {}]", report.status_line()),
                    None => String::new(),
                };
                let revision = match error {
                    SyncError::Wait { report, .. } => {
                        format!(" {}", short_revision(&report.revision))
                    }
                    _ => String::new(),
                };
                format!(
                    "cycle {} failed{revision} after {:.2}s: {}{served}; retry in {}",
                    self.cycle,
                    self.duration.as_secs_f64(),
                    error_chain(error),
                    format_duration(self.next_in)
                )
            }
        }
    }
}

fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

/// Runs a [`Pipeline`] on an interval: every cycle fetches (cheap when Git did not change),
/// corrects drift (the applier compares with the live state every time), prunes only after a
/// good render, backs off exponentially after failures, reports each cycle, and stops cleanly
/// when cancelled.
///
/// ```no_run
/// use std::time::Duration;
/// use gitops_examples::pipeline::{Pipeline, Reconciler};
/// use tokio_util::sync::CancellationToken;
///
/// # async fn run(pipeline: Pipeline) {
/// let cancel = CancellationToken::new();
/// let stop = cancel.clone();
/// tokio::spawn(async move {
///     let _ = tokio::signal::ctrl_c().await;
///     stop.cancel();
/// });
/// let pipeline = Reconciler::new(pipeline, Duration::from_secs(30))
///     .run(&cancel, |event| println!("{}", event.status_line()))
///     .await;
/// # drop(pipeline);
/// # }
/// ```
#[derive(Debug)]
#[must_use]
pub struct Reconciler {
    pipeline: Pipeline,
    interval: Duration,
    backoff: Backoff,
    progress: ProgressSink,
}

impl Reconciler {
    /// Syncs `pipeline` every `interval` (at least 100 ms), with the default [`Backoff`].
    pub fn new(pipeline: Pipeline, interval: Duration) -> Self {
        Self {
            pipeline,
            interval: interval.max(Duration::from_millis(100)),
            backoff: Backoff::default(),
            progress: ProgressSink::none(),
        }
    }

    /// The backoff after failed cycles (default [`Backoff::default`]): a failed cycle is retried
    /// after the backoff's delay instead of the interval, so a transient failure is retried
    /// soon and a lasting one ever less often.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Where each cycle reports its steps.
    pub fn progress(mut self, progress: ProgressSink) -> Self {
        self.progress = progress;
        self
    }

    /// The pipeline.
    #[must_use]
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Runs cycles until `cancel` is cancelled, calling `on_cycle` after each finished cycle
    /// (a cycle interrupted by cancellation is not reported). Returns the pipeline, which keeps
    /// its last good revision.
    pub async fn run(
        mut self,
        cancel: &CancellationToken,
        mut on_cycle: impl FnMut(&CycleEvent<'_>),
    ) -> Pipeline {
        let mut cycle = 0_u64;
        let mut failures = 0_u32;
        while !cancel.is_cancelled() {
            cycle += 1;
            let started = Instant::now();
            let result = self.pipeline.sync_once(cancel, &self.progress).await;
            if matches!(&result, Err(error) if error.is_cancelled()) {
                break;
            }
            let next_in = match &result {
                Ok(_) => {
                    failures = 0;
                    self.interval
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    self.backoff.delay(failures)
                }
            };
            on_cycle(&CycleEvent {
                cycle,
                result: &result,
                failures,
                next_in,
                duration: started.elapsed(),
            });
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(next_in) => {}
            }
        }
        tracing::info!(cycles = cycle, "reconciler stopped");
        self.pipeline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(3));
        let delays: Vec<_> = (1..=5).map(|n| backoff.delay(n)).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 3000, 3000].map(Duration::from_millis)
        );
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(3));
        assert_eq!(backoff.delay(0), Duration::from_millis(500));
        let inverted = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(inverted.max, Duration::from_secs(2));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }
}
