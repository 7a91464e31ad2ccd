//! The schema a cluster serves: its `/openapi/v3` documents, as `kubectl` reads them, on top of
//! the embedded table (so that CRDs and newer API versions are described exactly).
//!
//! The crate does not pick a Kubernetes client: [`fetch_cluster_schema`] takes a function that
//! GETs a path from the apiserver. With kube-rs:
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let schema = gitops_diff::fetch_cluster_schema(
//!     |path| {
//!         let client = client.clone();
//!         async move {
//!             let request = http::Request::get(path).body(Vec::new())?;
//!             Ok::<_, Box<dyn std::error::Error + Send + Sync>>(client.request_text(request).await?)
//!         }
//!     },
//!     &cancel,
//!     |done, total| eprintln!("{done}/{total} OpenAPI documents"),
//! )
//! .await?;
//! # Ok(()) }
//! ```

use std::future::Future;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::schema::{Schema, SchemaError};

/// The error type of the GET function given to [`fetch_cluster_schema`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error while reading a cluster's OpenAPI documents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterSchemaError {
    /// A request failed.
    #[error("GET {path}")]
    Request {
        /// The path requested.
        path: String,
        /// The client's error.
        #[source]
        source: BoxError,
    },
    /// A response is not JSON.
    #[error("GET {path}: the response is not JSON")]
    Json {
        /// The path requested.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The discovery document lists no paths.
    #[error("/openapi/v3 lists no paths")]
    NoPaths,
    /// A document could not be read as a schema.
    #[error("OpenAPI v3 document {path}")]
    Schema {
        /// The document's path.
        path: String,
        /// The schema error.
        #[source]
        source: SchemaError,
    },
    /// The work was cancelled.
    #[error("reading the cluster schema was cancelled")]
    Cancelled,
}

async fn get_json<F, Fut, E>(
    get: &mut F,
    path: &str,
    cancel: &CancellationToken,
) -> Result<Value, ClusterSchemaError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<String, E>>,
    E: Into<BoxError>,
{
    let text = tokio::select! {
        () = cancel.cancelled() => return Err(ClusterSchemaError::Cancelled),
        text = get(path.to_owned()) => text.map_err(|e| ClusterSchemaError::Request {
            path: path.to_owned(),
            source: e.into(),
        })?,
    };
    serde_json::from_str(&text).map_err(|source| ClusterSchemaError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Reads every group-version document of the cluster's `/openapi/v3` into a copy of the embedded
/// schema. `get` fetches a server-relative path (such as `/openapi/v3/apis/apps/v1?hash=...`) and
/// returns the body; `progress` is called with (documents read, documents listed).
///
/// # Errors
/// When a request fails, a document is not a valid OpenAPI v3 document, or `cancel` fires.
pub async fn fetch_cluster_schema<F, Fut, E>(
    mut get: F,
    cancel: &CancellationToken,
    mut progress: impl FnMut(usize, usize),
) -> Result<Schema, ClusterSchemaError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<String, E>>,
    E: Into<BoxError>,
{
    let discovery = get_json(&mut get, "/openapi/v3", cancel).await?;
    let paths = discovery
        .get("paths")
        .and_then(Value::as_object)
        .ok_or(ClusterSchemaError::NoPaths)?;
    let mut urls: Vec<(String, String)> = paths
        .iter()
        .filter(|(path, _)| path.starts_with("api/") || path.starts_with("apis/"))
        .map(|(path, entry)| {
            let url = entry
                .get("serverRelativeURL")
                .and_then(Value::as_str)
                .map_or_else(|| format!("/openapi/v3/{path}"), str::to_owned);
            (path.clone(), url)
        })
        .collect();
    urls.sort();
    let mut schema = (*Schema::embedded()).clone();
    let total = urls.len();
    for (done, (path, url)) in urls.into_iter().enumerate() {
        let document = get_json(&mut get, &url, cancel).await?;
        schema
            .add_openapi_v3_document(&document)
            .map_err(|source| ClusterSchemaError::Schema {
                path: path.clone(),
                source,
            })?;
        progress(done + 1, total);
    }
    Ok(schema)
}
