//! Counting the requests a [`kube::Client`] sends: how many of each kind, the most writes in
//! flight at once, and (opt-in) the ordered log of the requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use kube::client::Body;

/// A counter of API requests, shared by the clients [`counting_client`] makes.
///
/// It counts every request by what it does ([`RequestCounter::counts`]) and tracks the most
/// writes that were in flight at once ([`RequestCounter::max_writes_in_flight`]). A counter
/// made with [`RequestCounter::with_log`] also keeps the ordered log of the requests
/// ([`RequestCounter::log`], [`RequestCounter::requests`]); the default one does not, so that a
/// long-running process that counts every sync does not grow.
///
/// ```
/// use gitops_apply::RequestCounter;
///
/// let counter = RequestCounter::default();
/// assert_eq!(counter.get(), 0);
/// assert_eq!(counter.max_writes_in_flight(), 0);
/// assert!(counter.log().is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    total: AtomicU64,
    lists: AtomicU64,
    reads: AtomicU64,
    dry_runs: AtomicU64,
    writes: AtomicU64,
    writes_in_flight: AtomicU64,
    max_writes_in_flight: AtomicU64,
    /// The requests in the order they were sent, when the counter keeps a log.
    log: Option<Mutex<Vec<LoggedRequest>>>,
}

/// The requests a [`RequestCounter`] counted, by what they do.
///
/// ```
/// use gitops_apply::{RequestCounter, RequestCounts};
///
/// let counts: RequestCounts = RequestCounter::default().counts();
/// assert_eq!(counts, RequestCounts::default());
/// assert_eq!(
///     counts.to_string(),
///     "0 request(s): 0 list(s), 0 other read(s), 0 dry run(s), 0 write(s)"
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Every request.
    pub total: u64,
    /// Lists: `GET` of a collection (`/api/v1/namespaces/ns/configmaps`).
    pub lists: u64,
    /// Other reads: `GET` of one object, of discovery documents, watches.
    pub reads: u64,
    /// Server-side dry runs (any request with a `dryRun` parameter).
    pub dry_runs: u64,
    /// Writes: `POST`, `PUT`, `PATCH`, `DELETE` without `dryRun`.
    pub writes: u64,
}

impl std::fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} request(s): {} list(s), {} other read(s), {} dry run(s), {} write(s)",
            self.total, self.lists, self.reads, self.dry_runs, self.writes
        )
    }
}

/// What a request does, as a [`RequestCounter`] tells them apart (the fields of
/// [`RequestCounts`]).
///
/// ```
/// use gitops_apply::RequestKind;
///
/// assert_eq!(RequestKind::DryRun.to_string(), "dry run");
/// assert!(RequestKind::Write.is_write());
/// assert!(!RequestKind::DryRun.is_write());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RequestKind {
    /// A `GET` of a collection (`/api/v1/namespaces/ns/configmaps`).
    List,
    /// Another `GET`: one object, a discovery document, a watch.
    Read,
    /// A request with a `dryRun` parameter: the server writes nothing.
    DryRun,
    /// A `POST`, `PUT`, `PATCH` or `DELETE` without `dryRun`: the server writes.
    Write,
}

impl RequestKind {
    /// Whether the server writes on this kind of request (a [`RequestKind::Write`]).
    ///
    /// ```
    /// use gitops_apply::RequestKind;
    ///
    /// assert!(!RequestKind::List.is_write());
    /// ```
    #[must_use]
    pub fn is_write(self) -> bool {
        self == Self::Write
    }

    /// What `method` on `path` with `query` (the part of the URI after `?`) does.
    fn of(method: &Method, path: &str, query: Option<&str>) -> Self {
        let dry_run = query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("dryRun=")));
        if dry_run {
            Self::DryRun
        } else if method != Method::GET {
            Self::Write
        } else if is_collection(path) {
            Self::List
        } else {
            Self::Read
        }
    }
}

impl std::fmt::Display for RequestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::List => "list",
            Self::Read => "read",
            Self::DryRun => "dry run",
            Self::Write => "write",
        })
    }
}

/// One request in the log of a [`RequestCounter::with_log`]: its method, its path, its query
/// and what it does. Prints as `PATCH /api/v1/namespaces/ns/configmaps/a` (without the query).
///
/// ```no_run
/// use gitops_apply::{RequestCounter, counting_client};
///
/// # async fn example(client: kube::Client) {
/// let counter = RequestCounter::with_log();
/// let client = counting_client(&client, &counter);
/// // ... apply through `client` ...
/// for request in counter.log() {
///     println!("{request}"); // e.g. "DELETE /api/v1/namespaces/ns/configmaps/a"
///     assert!(request.kind.is_write());
///     assert!(!request.path.contains('?'));
///     // The query apart, e.g. "fieldManager=gitops-rs" or "labelSelector=...&limit=500".
///     let _query: Option<&str> = request.query.as_deref();
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoggedRequest {
    /// The HTTP method: `GET`, `PATCH`, `DELETE`...
    pub method: Method,
    /// The path, without the query: `/apis/apps/v1/namespaces/ns/deployments/web`.
    pub path: String,
    /// The query, the part of the URI after `?` as sent (percent-encoded), when there is one:
    /// `labelSelector=...&limit=500` of a selected list.
    pub query: Option<String>,
    /// What the request does.
    pub kind: RequestKind,
}

impl std::fmt::Display for LoggedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The path comes from object names of a repository or a cluster: escaped.
        write!(
            f,
            "{} {}",
            self.method,
            gitops_core::escape::Escaped(&self.path)
        )
    }
}

impl RequestCounter {
    /// A counter that also keeps the ordered log of the requests it counts
    /// ([`RequestCounter::log`], [`RequestCounter::requests`]). The log grows with every
    /// request: use it for one run or a test, not for a counter that lives as long as a
    /// process.
    ///
    /// ```
    /// use gitops_apply::RequestCounter;
    ///
    /// let counter = RequestCounter::with_log();
    /// assert!(counter.requests().is_empty());
    /// ```
    #[must_use]
    pub fn with_log() -> Self {
        Self(Arc::new(Counts {
            log: Some(Mutex::new(Vec::new())),
            ..Counts::default()
        }))
    }

    /// The number of requests sent so far.
    ///
    /// ```
    /// use gitops_apply::RequestCounter;
    ///
    /// assert_eq!(RequestCounter::default().get(), 0);
    /// ```
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.total.load(Ordering::Relaxed)
    }

    /// The requests sent so far, by what they do.
    ///
    /// ```
    /// use gitops_apply::RequestCounter;
    ///
    /// assert_eq!(RequestCounter::default().counts().writes, 0);
    /// ```
    #[must_use]
    pub fn counts(&self) -> RequestCounts {
        RequestCounts {
            total: self.0.total.load(Ordering::Relaxed),
            lists: self.0.lists.load(Ordering::Relaxed),
            reads: self.0.reads.load(Ordering::Relaxed),
            dry_runs: self.0.dry_runs.load(Ordering::Relaxed),
            writes: self.0.writes.load(Ordering::Relaxed),
        }
    }

    /// The most writes ([`RequestKind::Write`]: `POST`, `PUT`, `PATCH`, `DELETE` without
    /// `dryRun`) that were in flight at once so far: sent and not yet answered. Dry runs and
    /// reads do not count. An applier built with
    /// [`ApplierBuilder::concurrency`](crate::ApplierBuilder::concurrency)`(n)` never has more
    /// than `n` writes in flight.
    ///
    /// ```no_run
    /// use gitops_apply::{Applier, ConfigMapInventory, RequestCounter, counting_client};
    ///
    /// # async fn example(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let counter = RequestCounter::default();
    /// let inventory = ConfigMapInventory::new("flux-system", "apps")?;
    /// let applier = Applier::builder(counting_client(&client, &counter), inventory)
    ///     .concurrency(3)
    ///     .build();
    /// // ... apply a set with `applier` ...
    /// assert!(counter.max_writes_in_flight() <= 3);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn max_writes_in_flight(&self) -> u64 {
        self.0.max_writes_in_flight.load(Ordering::Relaxed)
    }

    /// The writes and deletes sent so far ([`RequestKind::Write`]), in the order they were
    /// sent; empty unless the counter was made with [`RequestCounter::with_log`].
    ///
    /// ```
    /// use gitops_apply::RequestCounter;
    ///
    /// assert!(RequestCounter::with_log().log().is_empty());
    /// ```
    #[must_use]
    pub fn log(&self) -> Vec<LoggedRequest> {
        self.logged(|request| request.kind.is_write())
    }

    /// Every request sent so far, in the order it was sent; empty unless the counter was made
    /// with [`RequestCounter::with_log`].
    ///
    /// ```
    /// use gitops_apply::{RequestCounter, RequestKind};
    ///
    /// let counter = RequestCounter::with_log();
    /// let lists = counter
    ///     .requests()
    ///     .into_iter()
    ///     .filter(|request| request.kind == RequestKind::List)
    ///     .count();
    /// assert_eq!(lists, 0);
    /// ```
    #[must_use]
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.logged(|_| true)
    }

    fn logged(&self, keep: impl Fn(&LoggedRequest) -> bool) -> Vec<LoggedRequest> {
        self.0.log.as_ref().map_or_else(Vec::new, |log| {
            let log = log.lock().unwrap_or_else(PoisonError::into_inner);
            log.iter()
                .filter(|request| keep(request))
                .cloned()
                .collect()
        })
    }

    /// Counts a request about to be sent; for a write, the returned guard keeps it in flight
    /// until it is dropped (when the answer came, or the request was abandoned).
    fn count(&self, method: &Method, path: &str, query: Option<&str>) -> Option<InFlight> {
        let counts = &self.0;
        let kind = RequestKind::of(method, path, query);
        counts.total.fetch_add(1, Ordering::Relaxed);
        let slot = match kind {
            RequestKind::List => &counts.lists,
            RequestKind::Read => &counts.reads,
            RequestKind::DryRun => &counts.dry_runs,
            RequestKind::Write => &counts.writes,
        };
        slot.fetch_add(1, Ordering::Relaxed);
        if let Some(log) = &counts.log {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(LoggedRequest {
                    method: method.clone(),
                    path: path.to_owned(),
                    query: query.map(str::to_owned),
                    kind,
                });
        }
        kind.is_write().then(|| {
            let now = counts.writes_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            counts.max_writes_in_flight.fetch_max(now, Ordering::SeqCst);
            InFlight(Arc::clone(&self.0))
        })
    }
}

/// A write in flight: counted in [`Counts::writes_in_flight`] until dropped.
struct InFlight(Arc<Counts>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.writes_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether `path` names a collection of a resource: `/api/v1/<plural>`,
/// `/apis/<group>/<version>/<plural>`, either with `namespaces/<ns>/` before the plural.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut plural = match segments.first() {
        Some(&"api") => 2,
        Some(&"apis") => 3,
        _ => return false,
    };
    if segments.len() > plural + 2 && segments[plural] == "namespaces" {
        plural += 2;
    }
    segments.len() == plural + 1
}

/// A client that sends through `client` and counts every request in `counter`. Must be called
/// inside a tokio runtime.
///
/// ```no_run
/// use gitops_apply::{RequestCounter, counting_client};
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::api::{Api, ListParams};
///
/// # async fn example(client: kube::Client) -> Result<(), kube::Error> {
/// let counter = RequestCounter::default();
/// let counted = counting_client(&client, &counter);
/// Api::<ConfigMap>::namespaced(counted, "default")
///     .list(&ListParams::default())
///     .await?;
/// assert_eq!(counter.counts().lists, 1);
/// # Ok(())
/// # }
/// ```
#[must_use]
pub fn counting_client(client: &kube::Client, counter: &RequestCounter) -> kube::Client {
    let service = CountingService {
        inner: client.clone(),
        counter: counter.clone(),
    };
    kube::Client::new(service, client.default_namespace())
}

#[derive(Clone)]
struct CountingService {
    inner: kube::Client,
    counter: RequestCounter,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, kube::Error>> + Send>>;

impl tower_service::Service<Request<Body>> for CountingService {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let in_flight = self.counter.count(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        let inner = self.inner.clone();
        Box::pin(async move {
            let response = inner.send(request).await;
            drop(in_flight);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_lists_from_reads_dry_runs_and_writes() {
        let counter = RequestCounter::default();
        counter.count(&Method::GET, "/api/v1/namespaces/ns/configmaps", None);
        counter.count(
            &Method::GET,
            "/apis/apps/v1/namespaces/ns/deployments",
            None,
        );
        counter.count(&Method::GET, "/api/v1/namespaces", None);
        counter.count(
            &Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            None,
        );
        counter.count(&Method::GET, "/api/v1/namespaces/ns", None);
        counter.count(&Method::GET, "/api/v1/namespaces/ns/configmaps/a", None);
        counter.count(&Method::GET, "/apis", None);
        counter.count(
            &Method::PATCH,
            "/api/v1/namespaces/ns/configmaps/a",
            Some("fieldManager=x&dryRun=All"),
        );
        counter.count(
            &Method::PATCH,
            "/api/v1/namespaces/ns/configmaps/a",
            Some("fieldManager=x"),
        );
        counter.count(&Method::DELETE, "/api/v1/namespaces/ns/configmaps/a", None);
        assert_eq!(
            counter.counts(),
            RequestCounts {
                total: 10,
                lists: 4,
                reads: 3,
                dry_runs: 1,
                writes: 2
            }
        );
        assert_eq!(counter.get(), 10);
        assert_eq!(
            counter.counts().to_string(),
            "10 request(s): 4 list(s), 3 other read(s), 1 dry run(s), 2 write(s)"
        );
    }

    #[test]
    fn tracks_the_most_writes_in_flight_at_once() {
        let counter = RequestCounter::default();
        let path = "/api/v1/namespaces/ns/configmaps/a";
        let first = counter.count(&Method::PATCH, path, Some("fieldManager=x"));
        assert!(first.is_some());
        // Reads and dry runs are not writes: nothing in flight for them.
        assert!(counter.count(&Method::GET, path, None).is_none());
        assert!(
            counter
                .count(&Method::PATCH, path, Some("dryRun=All&fieldManager=x"))
                .is_none()
        );
        assert_eq!(counter.max_writes_in_flight(), 1);
        let second = counter.count(&Method::DELETE, path, None);
        assert_eq!(counter.max_writes_in_flight(), 2);
        drop(first);
        drop(second);
        // Answered writes leave the flight: the next one alone does not raise the maximum.
        let third = counter.count(&Method::POST, "/api/v1/namespaces/ns/configmaps", None);
        assert_eq!(counter.max_writes_in_flight(), 2);
        let fourth = counter.count(&Method::PUT, path, None);
        let fifth = counter.count(&Method::PATCH, path, None);
        assert_eq!(counter.max_writes_in_flight(), 3);
        drop((third, fourth, fifth));
        assert_eq!(counter.0.writes_in_flight.load(Ordering::SeqCst), 0);
        assert_eq!(counter.max_writes_in_flight(), 3);
    }

    #[test]
    fn logs_requests_in_order_only_when_asked() {
        let sent = [
            (Method::GET, "/apis", None),
            (
                Method::GET,
                "/api/v1/namespaces/ns/configmaps",
                Some("limit=500"),
            ),
            (
                Method::PATCH,
                "/api/v1/namespaces/ns/configmaps/b",
                Some("dryRun=All&fieldManager=x"),
            ),
            (
                Method::PATCH,
                "/api/v1/namespaces/ns/configmaps/b",
                Some("fieldManager=x&force=true"),
            ),
            (Method::DELETE, "/api/v1/namespaces/ns/configmaps/a", None),
            (Method::POST, "/api/v1/namespaces", None),
        ];
        let logging = RequestCounter::with_log();
        let counting = RequestCounter::default();
        for counter in [&logging, &counting] {
            for (method, path, query) in &sent {
                drop(counter.count(method, path, *query));
            }
        }
        let log: Vec<String> = logging.log().iter().map(ToString::to_string).collect();
        assert_eq!(
            log,
            [
                "PATCH /api/v1/namespaces/ns/configmaps/b",
                "DELETE /api/v1/namespaces/ns/configmaps/a",
                "POST /api/v1/namespaces",
            ]
        );
        let kinds: Vec<RequestKind> = logging.requests().iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                RequestKind::Read,
                RequestKind::List,
                RequestKind::DryRun,
                RequestKind::Write,
                RequestKind::Write,
                RequestKind::Write,
            ]
        );
        assert_eq!(
            logging.requests()[1].path,
            "/api/v1/namespaces/ns/configmaps"
        );
        assert_eq!(logging.requests()[1].query.as_deref(), Some("limit=500"));
        assert_eq!(logging.requests()[0].query, None);
        assert_eq!(logging.requests()[4].method, Method::DELETE);
        // Both count the same; only the one made with a log keeps it.
        assert_eq!(logging.counts(), counting.counts());
        assert!(counting.log().is_empty());
        assert!(counting.requests().is_empty());
    }

    #[test]
    fn a_logged_path_prints_escaped() {
        let counter = RequestCounter::with_log();
        let path = "/api/v1/namespaces/ns/configmaps/a\nERROR forged";
        drop(counter.count(&Method::DELETE, path, None));
        assert_eq!(
            counter.log()[0].to_string(),
            "DELETE /api/v1/namespaces/ns/configmaps/a\\nERROR forged"
        );
    }
}
