//! Counting the requests a [`kube::Client`] sends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::Method;
use std::task::{Context, Poll};

use http::{Request, Response};
use kube::client::Body;

/// A counter of API requests, shared by the clients [`counting_client`] makes.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    total: AtomicU64,
    lists: AtomicU64,
    reads: AtomicU64,
    dry_runs: AtomicU64,
    writes: AtomicU64,
}

/// The requests a [`RequestCounter`] counted, by what they do.
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

impl RequestCounter {
    /// The number of requests sent so far.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.total.load(Ordering::Relaxed)
    }

    /// The requests sent so far, by what they do.
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

    fn count(&self, method: &Method, path: &str, query: Option<&str>) {
        let counts = &self.0;
        counts.total.fetch_add(1, Ordering::Relaxed);
        let dry_run = query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("dryRun=")));
        let slot = if dry_run {
            &counts.dry_runs
        } else if method != Method::GET {
            &counts.writes
        } else if is_collection(path) {
            &counts.lists
        } else {
            &counts.reads
        };
        slot.fetch_add(1, Ordering::Relaxed);
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
        self.counter.count(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        let inner = self.inner.clone();
        Box::pin(async move { inner.send(request).await })
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
}
