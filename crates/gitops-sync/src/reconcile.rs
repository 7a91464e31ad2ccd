//! [`Reconciler`]: the loop around [`SyncUnit::sync`], with interval, jitter, backoff,
//! cancellation and a [`Trigger`].

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::{ErrorClass, SyncError};
use crate::unit::{SyncReport, SyncUnit};

/// Exponential backoff after transient failures: `initial`, doubled after each consecutive
/// failure, never more than `max`.
///
/// ```
/// use std::time::Duration;
/// use gitops_sync::Backoff;
/// let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
/// assert_eq!(backoff.delay(1), Duration::from_secs(1));
/// assert_eq!(backoff.delay(3), Duration::from_secs(4));
/// assert_eq!(backoff.delay(30), Duration::from_secs(5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff from `initial` up to `max` (at least `initial`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let backoff = gitops_sync::Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
    /// assert_eq!(backoff.delay(5), Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
        }
    }

    /// The delay after `failures` consecutive failures (1 for the first).
    ///
    /// ```
    /// use std::time::Duration;
    /// let backoff = gitops_sync::Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    /// assert_eq!(backoff.delay(2), Duration::from_secs(1));
    /// ```
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

/// A handle that asks a [`Reconciler`] for a sync now (from a webhook, a watch, a signal).
/// Clone it freely and send it anywhere. Asks coalesce: however many arrive while the
/// reconciler syncs or sleeps, one sync follows; an ask made before a sync starts is served by
/// that sync.
///
/// ```
/// let trigger = gitops_sync::Trigger::new();
/// let webhook = trigger.clone();
/// std::thread::spawn(move || webhook.sync_now()).join().unwrap();
/// assert!(trigger.take_request());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Trigger {
    notify: Arc<Notify>,
}

impl Trigger {
    /// A trigger that no reconciler listens to yet (give it to one with
    /// [`Reconciler::with_trigger`]).
    ///
    /// ```
    /// assert!(!gitops_sync::Trigger::new().take_request());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a sync now.
    ///
    /// ```
    /// let trigger = gitops_sync::Trigger::new();
    /// trigger.sync_now();
    /// trigger.sync_now();
    /// assert!(trigger.take_request());
    /// ```
    pub fn sync_now(&self) {
        self.notify.notify_one();
    }

    /// Takes the ask waiting to be served, if any: whether there was one. For a reconciler of
    /// your own (take the ask before each sync, so that one sync serves it); a running
    /// [`Reconciler`] takes them itself.
    ///
    /// ```
    /// let trigger = gitops_sync::Trigger::new();
    /// trigger.sync_now();
    /// assert!(trigger.take_request());
    /// assert!(!trigger.take_request());
    /// ```
    #[must_use]
    pub fn take_request(&self) -> bool {
        self.notify.notified().now_or_never().is_some()
    }

    /// Waits for an ask.
    async fn asked(&self) {
        self.notify.notified().await;
    }
}

/// One finished cycle of a [`Reconciler`], handed to its callback.
#[derive(Debug)]
#[non_exhaustive]
pub struct CycleEvent<'a> {
    /// The cycle number, from 1.
    pub cycle: u64,
    /// The sync's result.
    pub result: &'a Result<SyncReport, SyncError>,
    /// `None` after a success; else what the failure means.
    pub class: Option<ErrorClass>,
    /// Consecutive transient failures, this one included (0 after a success or a stall).
    pub failures: u32,
    /// When the next cycle starts, unless cancelled or triggered.
    pub next_in: Duration,
    /// How long the cycle took.
    pub duration: Duration,
    /// Whether a [`Trigger`] started this cycle.
    pub triggered: bool,
}

impl CycleEvent<'_> {
    /// One status line: `cycle 3 ok <report>; next in 30s` or
    /// `cycle 4 Transient: <error chain>; retry in 4s`.
    ///
    /// ```
    /// # fn show(event: &gitops_sync::CycleEvent<'_>) {
    /// println!("{}", event.status_line());
    /// # }
    /// ```
    #[must_use]
    pub fn status_line(&self) -> String {
        match self.result {
            Ok(report) => format!(
                "cycle {} ok {report}; next in {:?}",
                self.cycle, self.next_in
            ),
            Err(error) => {
                let served = error
                    .served()
                    .map(|report| format!(" [applied {report}]"))
                    .unwrap_or_default();
                format!(
                    "cycle {} {:?}: {}{served}; next in {:?}",
                    self.cycle,
                    self.class.unwrap_or(ErrorClass::Transient),
                    error.chain(),
                    self.next_in
                )
            }
        }
    }
}

/// Runs a [`SyncUnit`] in a loop: every `interval` (plus a random jitter, so that many units
/// do not sync in step), at once when its [`Trigger`] asks, after an exponential [`Backoff`]
/// on transient failures, and at the interval again after a stalled one (bad input: the same
/// revision fails the same way, so only a new revision or the interval helps). It stops when
/// the cancellation token is cancelled, and hands the unit back.
///
/// Reconcilers share nothing: run one per unit, as many as needed in one process.
///
/// ```no_run
/// use std::time::Duration;
/// use gitops_sync::{Reconciler, SyncUnit};
/// use tokio_util::sync::CancellationToken;
///
/// # async fn run(unit: SyncUnit) {
/// let cancel = CancellationToken::new();
/// let reconciler = Reconciler::new(unit, Duration::from_secs(60)).jitter(0.1);
/// let trigger = reconciler.trigger(); // give it to a webhook
/// let task = tokio::spawn({
///     let cancel = cancel.clone();
///     async move { reconciler.run(&cancel, |event| println!("{}", event.status_line())).await }
/// });
/// trigger.sync_now();
/// cancel.cancel();
/// let _unit = task.await.unwrap();
/// # }
/// ```
#[derive(Debug)]
#[must_use]
pub struct Reconciler {
    unit: SyncUnit,
    interval: Duration,
    jitter: f64,
    backoff: Backoff,
    trigger: Trigger,
}

impl Reconciler {
    /// Syncs `unit` every `interval` (at least 100 ms), without jitter, with the default
    /// [`Backoff`] and a new [`Trigger`].
    ///
    /// ```no_run
    /// # fn make(unit: gitops_sync::SyncUnit) {
    /// let reconciler = gitops_sync::Reconciler::new(unit, std::time::Duration::from_secs(30));
    /// # drop(reconciler);
    /// # }
    /// ```
    pub fn new(unit: SyncUnit, interval: Duration) -> Self {
        Self {
            unit,
            interval: interval.max(Duration::from_millis(100)),
            jitter: 0.0,
            backoff: Backoff::default(),
            trigger: Trigger::new(),
        }
    }

    /// Adds up to `fraction` of the interval (0 to 1), at random, to each wait for the
    /// interval.
    ///
    /// ```no_run
    /// # fn make(r: gitops_sync::Reconciler) -> gitops_sync::Reconciler {
    /// r.jitter(0.1)
    /// # }
    /// ```
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The backoff after transient failures.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # fn make(r: gitops_sync::Reconciler) -> gitops_sync::Reconciler {
    /// r.backoff(gitops_sync::Backoff::new(Duration::from_secs(1), Duration::from_secs(60)))
    /// # }
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Listens to `trigger` (instead of the one it made).
    ///
    /// ```no_run
    /// # fn make(r: gitops_sync::Reconciler) -> gitops_sync::Reconciler {
    /// r.with_trigger(gitops_sync::Trigger::new())
    /// # }
    /// ```
    pub fn with_trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// A handle that asks for a sync now.
    ///
    /// ```no_run
    /// # fn make(r: &gitops_sync::Reconciler) {
    /// r.trigger().sync_now();
    /// # }
    /// ```
    #[must_use]
    pub fn trigger(&self) -> Trigger {
        self.trigger.clone()
    }

    /// The unit.
    ///
    /// ```no_run
    /// # fn show(r: &gitops_sync::Reconciler) {
    /// println!("{}", r.unit().name());
    /// # }
    /// ```
    #[must_use]
    pub fn unit(&self) -> &SyncUnit {
        &self.unit
    }

    /// The wait for the interval, with jitter.
    fn interval_with_jitter(&self) -> Duration {
        // A random number from the standard library's randomly keyed hasher.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        jittered(self.interval, self.jitter, random)
    }

    /// Runs cycles until `cancel` is cancelled, calling `on_cycle` after each finished cycle
    /// (a cycle interrupted by cancellation is not reported). Returns the unit, which keeps its
    /// last good set.
    ///
    /// ```no_run
    /// # async fn run(r: gitops_sync::Reconciler) {
    /// let cancel = tokio_util::sync::CancellationToken::new();
    /// let unit = r.run(&cancel, |event| tracing::info!("{}", event.status_line())).await;
    /// # drop(unit);
    /// # }
    /// ```
    pub async fn run(
        mut self,
        cancel: &CancellationToken,
        mut on_cycle: impl FnMut(&CycleEvent<'_>) + Send,
    ) -> SyncUnit {
        let mut cycle = 0_u64;
        let mut failures = 0_u32;
        let mut triggered = false;
        while !cancel.is_cancelled() {
            cycle += 1;
            // An ask made before this sync starts is served by it.
            let _ = self.trigger.take_request();
            let started = Instant::now();
            let result = self.unit.sync(cancel).await;
            let class = result.as_ref().err().map(SyncError::class);
            if class == Some(ErrorClass::Cancelled) || cancel.is_cancelled() {
                break;
            }
            let next_in = match class {
                Some(ErrorClass::Transient) => {
                    failures = failures.saturating_add(1);
                    self.backoff.delay(failures)
                }
                _ => {
                    failures = 0;
                    self.interval_with_jitter()
                }
            };
            on_cycle(&CycleEvent {
                cycle,
                result: &result,
                class,
                failures,
                next_in,
                duration: started.elapsed(),
                triggered,
            });
            drop(result);
            triggered = tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(next_in) => false,
                () = self.trigger.asked() => true,
            };
        }
        tracing::info!(unit = %gitops_core::escape::Escaped(self.unit.name()), cycles = cycle, "reconciler stopped");
        self.unit
    }
}

/// `interval` plus `fraction` of it scaled by `random` taken as a number in [0, 1).
fn jittered(interval: Duration, fraction: f64, random: u64) -> Duration {
    if fraction <= 0.0 {
        return interval;
    }
    #[allow(clippy::cast_precision_loss)]
    let unit = (random >> 11) as f64 / (1_u64 << 53) as f64;
    interval + interval.mul_f64(fraction * unit)
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
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let interval = Duration::from_secs(10);
        assert_eq!(jittered(interval, 0.0, u64::MAX), interval);
        assert_eq!(jittered(interval, 0.5, 0), interval);
        let most = jittered(interval, 0.5, u64::MAX);
        assert!(most > Duration::from_millis(14_999) && most <= Duration::from_secs(15));
        assert_eq!(
            jittered(interval, 0.5, 1 << 63),
            Duration::from_millis(12_500)
        );
    }

    #[test]
    fn asks_coalesce() {
        let trigger = Trigger::new();
        for _ in 0..5 {
            trigger.clone().sync_now();
        }
        assert!(trigger.take_request());
        assert!(!trigger.take_request(), "five asks make one sync");
    }
}
