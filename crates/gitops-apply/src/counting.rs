//! Counting the requests a [`kube::Client`] sends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response};
use kube::client::Body;

/// A counter of API requests, shared by the clients [`counting_client`] makes.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<AtomicU64>);

impl RequestCounter {
    /// The number of requests sent so far.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
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
        self.counter.0.fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.clone();
        Box::pin(async move { inner.send(request).await })
    }
}
