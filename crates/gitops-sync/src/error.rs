//! [`SyncError`]: why a sync failed, and [`ErrorClass`]: what to do about it.

use gitops_apply::{ApplyError, ObjectError, WaitError};
use gitops_core::escape::Escaped;
use gitops_render::{ProcessError, RenderError};
use gitops_source::{Revision, SourceError};

use crate::store::StoreError;
use crate::unit::SyncReport;

/// What a failure means for the next attempt.
///
/// ```
/// use gitops_sync::ErrorClass;
/// assert_ne!(ErrorClass::Transient, ErrorClass::Stalled);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Retrying may help (an unreachable host, a timeout, a 5xx, a conflict, an object not yet
    /// healthy): retry with backoff.
    Transient,
    /// Bad input (a render error, an invalid object, an unknown kind, a refused configuration):
    /// the same revision fails the same way, so wait for a new revision (or the interval).
    Stalled,
    /// The sync was cancelled: nothing to retry.
    Cancelled,
}

/// Why a sync failed. A failed fetch or render never prunes: when an earlier revision rendered
/// well, its set was applied again without pruning, and [`SyncError::served`] has that report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Fetching the source failed.
    #[error("fetching the source failed{}", served_note(.served))]
    Fetch {
        /// The store's error (the source's inside).
        #[source]
        source: StoreError,
        /// The last good set applied again without pruning, if there was one.
        served: Option<Box<SyncReport>>,
    },
    /// Rendering a revision failed.
    #[error("rendering {} failed{}", Escaped(.revision.as_str()), served_note(.served))]
    Render {
        /// The revision.
        revision: Revision,
        /// The renderer's error.
        #[source]
        source: Box<RenderError>,
        /// The last good set applied again without pruning, if there was one.
        served: Option<Box<SyncReport>>,
    },
    /// Applying (planning, writing or pruning) failed; in a dry run, planning failed (the
    /// message says `planning (dry run)` then, not `applying`).
    #[error("{} {} failed", if *.dry_run { "planning (dry run)" } else { "applying" }, Escaped(.revision.as_str()))]
    Apply {
        /// The revision.
        revision: Revision,
        /// Whether the apply was a dry run (nothing was written).
        dry_run: bool,
        /// Whether the set was the last good one served again.
        served_last_good: bool,
        /// The applier's error (its change set says what was done).
        #[source]
        source: Box<ApplyError>,
    },
    /// Everything was applied, but the objects did not become Current in time.
    #[error("{} was applied but is not healthy", Escaped(.report.revision.as_str()))]
    Wait {
        /// What was done.
        report: Box<SyncReport>,
        /// Why waiting stopped.
        #[source]
        source: Box<WaitError>,
    },
    /// The unit's artifact store could not be made.
    #[error("setting up the sync unit")]
    Setup(#[source] StoreError),
    /// The sync was cancelled; what was written stays written.
    #[error("cancelled while {step}")]
    Cancelled {
        /// The step: `fetching`, `rendering`, `applying` or `waiting`.
        step: &'static str,
    },
}

fn served_note(served: &Option<Box<SyncReport>>) -> String {
    match served {
        Some(report) => format!(
            " (served the last good revision {} again, without pruning)",
            Escaped(report.revision.as_str())
        ),
        None => String::new(),
    }
}

impl SyncError {
    /// Whether retrying may help: [`ErrorClass::Transient`] (retry with backoff),
    /// [`ErrorClass::Stalled`] (wait for a new revision) or [`ErrorClass::Cancelled`].
    ///
    /// ```
    /// use gitops_source::SourceError;
    /// use gitops_sync::{ErrorClass, StoreError, SyncError};
    /// let unreachable = SyncError::Fetch {
    ///     source: StoreError::Fetch {
    ///         location: "https://git.example/repo".into(),
    ///         source: Box::new(SourceError::Timeout {
    ///             operation: "listing refs",
    ///             location: "https://git.example/repo".into(),
    ///             after: std::time::Duration::from_secs(60),
    ///         }),
    ///     },
    ///     served: None,
    /// };
    /// assert_eq!(unreachable.class(), ErrorClass::Transient);
    /// ```
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Cancelled { .. } => ErrorClass::Cancelled,
            Self::Fetch { source, .. } | Self::Setup(source) => match source {
                StoreError::Fetch { source, .. } => source_class(source),
                StoreError::Io { .. } => ErrorClass::Transient,
                StoreError::UnexpectedUnchanged { .. } => ErrorClass::Stalled,
            },
            Self::Render { source, .. } => render_class(source),
            Self::Apply { source, .. } => apply_class(source),
            Self::Wait { source, .. } => match **source {
                WaitError::Cancelled => ErrorClass::Cancelled,
                _ => ErrorClass::Transient,
            },
        }
    }

    /// Whether the sync was cancelled.
    ///
    /// ```
    /// assert!(gitops_sync::SyncError::Cancelled { step: "fetching" }.is_cancelled());
    /// ```
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.class() == ErrorClass::Cancelled
    }

    /// The report of the last good set applied again without pruning after this failed fetch
    /// or render, or of the apply whose wait failed.
    ///
    /// ```
    /// assert!(gitops_sync::SyncError::Cancelled { step: "fetching" }.served().is_none());
    /// ```
    #[must_use]
    pub fn served(&self) -> Option<&SyncReport> {
        match self {
            Self::Fetch { served, .. } | Self::Render { served, .. } => served.as_deref(),
            Self::Wait { report, .. } => Some(report),
            _ => None,
        }
    }

    /// The error and its sources on one line, `: `-separated (what the sources say is escaped
    /// by the crates that make them).
    ///
    /// ```
    /// let error = gitops_sync::SyncError::Cancelled { step: "waiting" };
    /// assert_eq!(error.chain(), "cancelled while waiting");
    /// ```
    #[must_use]
    pub fn chain(&self) -> String {
        gitops_core::error_chain(self)
    }
}

/// Configuration and references are bad input; the network, the server and the cache are not.
fn source_class(error: &SourceError) -> ErrorClass {
    match error {
        SourceError::Cancelled { .. } => ErrorClass::Cancelled,
        SourceError::InvalidConfiguration { .. }
        | SourceError::InsecureCredentials { .. }
        | SourceError::CrossOriginRedirect { .. }
        | SourceError::HostKeyRejected { .. }
        | SourceError::AuthenticationRefused { .. }
        | SourceError::UnknownReference { .. }
        | SourceError::NoMatchingTag { .. }
        | SourceError::Select(_) => ErrorClass::Stalled,
        _ => ErrorClass::Transient,
    }
}

/// What the source holds is bad input; a tool that ran out of time or could not write its
/// temporary files is not.
fn render_class(error: &RenderError) -> ErrorClass {
    if matches!(error, RenderError::Cancelled) {
        return ErrorClass::Cancelled;
    }
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        match current.downcast_ref::<ProcessError>() {
            Some(ProcessError::Cancelled { .. }) => return ErrorClass::Cancelled,
            Some(
                ProcessError::TimedOut { .. }
                | ProcessError::TempHome { .. }
                | ProcessError::Io { .. },
            ) => return ErrorClass::Transient,
            _ => {}
        }
        next = current.source();
    }
    ErrorClass::Stalled
}

/// The set or its objects are bad input; the cluster being busy, away or in a conflict is not.
fn apply_class(error: &ApplyError) -> ErrorClass {
    match error {
        ApplyError::Cancelled { .. } => ErrorClass::Cancelled,
        ApplyError::Plan(_)
        | ApplyError::Schema { .. }
        | ApplyError::Hooks { .. }
        | ApplyError::EmptySet { .. }
        | ApplyError::CascadingPrune { .. } => ErrorClass::Stalled,
        ApplyError::Invalid { change_set } | ApplyError::Incomplete { change_set } => {
            let bad_input = change_set
                .failed()
                .filter_map(|change| change.error.as_ref())
                .any(object_is_bad_input);
            if bad_input {
                ErrorClass::Stalled
            } else {
                ErrorClass::Transient
            }
        }
        ApplyError::Unhealthy {
            source: WaitError::Cancelled,
            ..
        } => ErrorClass::Cancelled,
        _ => ErrorClass::Transient,
    }
}

/// An object the server refused for what it is (not for being busy or in a conflict).
fn object_is_bad_input(error: &ObjectError) -> bool {
    match error {
        ObjectError::Immutable { .. } => true,
        ObjectError::Rejected { code, .. } => !matches!(code, 409 | 429 | 500..),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitops_apply::ChangeSet;

    fn fetch_error(source: SourceError) -> SyncError {
        SyncError::Fetch {
            source: StoreError::Fetch {
                location: "git://127.0.0.1/repo".into(),
                source: Box::new(source),
            },
            served: None,
        }
    }

    #[test]
    fn revisions_are_escaped_in_messages() {
        let error = SyncError::Apply {
            revision: Revision::from_string("main\nERROR forged line\u{202e}@sha1:0"),
            dry_run: false,
            served_last_good: false,
            source: Box::new(ApplyError::EmptySet { previous: 1 }),
        };
        let text = error.chain();
        assert!(!text.contains('\n') && !text.contains('\u{202e}'), "{text}");
        assert!(text.contains("forged line"), "{text}");
        assert!(text.starts_with("applying "), "{text}");
        let planned = SyncError::Apply {
            revision: Revision::from_string("sha256:1"),
            dry_run: true,
            served_last_good: false,
            source: Box::new(ApplyError::EmptySet { previous: 1 }),
        };
        assert!(
            planned
                .to_string()
                .starts_with("planning (dry run) sha256:1 failed"),
            "{planned}"
        );
    }

    #[test]
    fn fetch_failures_are_transient_unless_the_configuration_is_wrong() {
        let unreachable = fetch_error(SourceError::UnreachableHost {
            location: "git://127.0.0.1/repo".into(),
            source: "connection refused".into(),
        });
        assert_eq!(unreachable.class(), ErrorClass::Transient);
        let unknown = fetch_error(SourceError::UnknownReference {
            reference: "main".into(),
            location: "git://127.0.0.1/repo".into(),
        });
        assert_eq!(unknown.class(), ErrorClass::Stalled);
        let cancelled = fetch_error(SourceError::Cancelled {
            location: "x".into(),
        });
        assert!(cancelled.is_cancelled());
    }

    #[test]
    fn render_errors_stall_and_invalid_objects_stall_but_conflicts_do_not() {
        let render = SyncError::Render {
            revision: Revision::from_string("sha256:1"),
            source: Box::new(RenderError::Other {
                renderer: "test".into(),
                source: "bad".into(),
            }),
            served: None,
        };
        assert_eq!(render.class(), ErrorClass::Stalled);
        let timed_out = SyncError::Render {
            revision: Revision::from_string("sha256:1"),
            source: Box::new(RenderError::Other {
                renderer: "kustomize".into(),
                source: Box::new(ProcessError::TimedOut {
                    program: "/usr/bin/kustomize".into(),
                    timeout: std::time::Duration::from_secs(60),
                }),
            }),
            served: None,
        };
        assert_eq!(timed_out.class(), ErrorClass::Transient);

        let with_failure = |error: ObjectError| {
            let mut change_set = ChangeSet::default();
            change_set.changes.push(gitops_apply::ObjectChange {
                id: gitops_core::ObjectId::new("", "ConfigMap", Some("a"), "b"),
                origin: None,
                resource: kube::core::ApiResource {
                    group: String::new(),
                    version: "v1".into(),
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    plural: "configmaps".into(),
                },
                action: gitops_apply::ObjectAction::Failed,
                reason: gitops_apply::Reason::ValidationFailed,
                error: Some(error),
                diff: None,
                health: None,
            });
            SyncError::Apply {
                revision: Revision::from_string("sha256:1"),
                dry_run: false,
                served_last_good: false,
                source: Box::new(ApplyError::Invalid {
                    change_set: Box::new(change_set),
                }),
            }
        };
        let invalid = with_failure(ObjectError::Rejected {
            code: 422,
            message: "spec.x: Invalid value".into(),
        });
        assert_eq!(invalid.class(), ErrorClass::Stalled);
        let conflict = with_failure(ObjectError::Conflict {
            conflicts: Vec::new(),
        });
        assert_eq!(conflict.class(), ErrorClass::Transient);
        let busy = with_failure(ObjectError::Rejected {
            code: 503,
            message: "unavailable".into(),
        });
        assert_eq!(busy.class(), ErrorClass::Transient);
    }
}
