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

use std::collections::BTreeMap;
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

/// The index of a cluster's OpenAPI v3 documents (`GET /openapi/v3`): for each group-version
/// path (`api/v1`, `apis/apps/v1`), the URL to fetch its document and the hash of that
/// document, which changes whenever the document does (so a cache keyed by it is never stale).
///
/// ```
/// let index = gitops_diff::OpenApiIndex::from_discovery(&serde_json::json!({"paths": {
///     "apis/example.com/v1": {"serverRelativeURL": "/openapi/v3/apis/example.com/v1?hash=AB12"},
///     "version": {"serverRelativeURL": "/openapi/v3/version?hash=1"}}}))?;
/// assert_eq!(gitops_diff::OpenApiIndex::path_of("example.com", "v1"), "apis/example.com/v1");
/// assert_eq!(index.hash("apis/example.com/v1"), Some("AB12"));
/// assert_eq!(index.len(), 1);
/// # Ok::<(), gitops_diff::ClusterSchemaError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenApiIndex {
    /// Path to (URL, hash).
    entries: BTreeMap<String, (String, String)>,
}

/// One OpenAPI v3 document of a cluster, as [`fetch_openapi_documents`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenApiDocument {
    /// The group-version path: `apis/example.com/v1`.
    pub path: String,
    /// The document's hash in the index (empty when the server gives none).
    pub hash: String,
    /// The document.
    pub document: Value,
}

impl OpenApiIndex {
    /// Reads the answer to `GET /openapi/v3`; only group-version paths (`api/...`,
    /// `apis/...`) are kept.
    ///
    /// # Errors
    /// [`ClusterSchemaError::NoPaths`] when the document has no `paths` object.
    pub fn from_discovery(discovery: &Value) -> Result<Self, ClusterSchemaError> {
        let paths = discovery
            .get("paths")
            .and_then(Value::as_object)
            .ok_or(ClusterSchemaError::NoPaths)?;
        let entries = paths
            .iter()
            .filter(|(path, _)| path.starts_with("api/") || path.starts_with("apis/"))
            .map(|(path, entry)| {
                let url = entry
                    .get("serverRelativeURL")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("/openapi/v3/{path}"), str::to_owned);
                let hash = url
                    .split_once('?')
                    .and_then(|(_, query)| {
                        query.split('&').find_map(|pair| pair.strip_prefix("hash="))
                    })
                    .unwrap_or("")
                    .to_owned();
                (path.clone(), (url, hash))
            })
            .collect();
        Ok(Self { entries })
    }

    /// The index path of a group-version: `api/v1` for the core group, else
    /// `apis/<group>/<version>`.
    #[must_use]
    pub fn path_of(group: &str, version: &str) -> String {
        if group.is_empty() {
            format!("api/{version}")
        } else {
            format!("apis/{group}/{version}")
        }
    }

    /// The hash of a path's document, if the path is listed.
    #[must_use]
    pub fn hash(&self, path: &str) -> Option<&str> {
        self.entries.get(path).map(|(_, hash)| hash.as_str())
    }

    /// The URL of a path's document, if the path is listed.
    #[must_use]
    pub fn url(&self, path: &str) -> Option<&str> {
        self.entries.get(path).map(|(url, _)| url.as_str())
    }

    /// The listed paths, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// How many group-versions are listed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no group-version is listed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Reads the index of a cluster's OpenAPI v3 documents (`GET /openapi/v3`): one request.
///
/// # Errors
/// When the request fails, the answer is not JSON or lists no paths, or `cancel` fires.
pub async fn fetch_openapi_index<F, Fut, E>(
    mut get: F,
    cancel: &CancellationToken,
) -> Result<OpenApiIndex, ClusterSchemaError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<String, E>>,
    E: Into<BoxError>,
{
    let discovery = get_json(&mut get, "/openapi/v3", cancel).await?;
    OpenApiIndex::from_discovery(&discovery)
}

/// Reads the documents of just these group-version paths (`apis/example.com/v1`, see
/// [`OpenApiIndex::path_of`]), one request each, at the URLs (with hashes) of `index`. Paths the
/// index does not list are skipped: the cluster does not serve them. Each document comes with
/// its hash, for a cache; add them to a schema with [`Schema::add_openapi_v3_document`].
///
/// # Errors
/// When a request fails, a document is not JSON, or `cancel` fires.
pub async fn fetch_openapi_documents<F, Fut, E>(
    mut get: F,
    index: &OpenApiIndex,
    paths: &[String],
    cancel: &CancellationToken,
) -> Result<Vec<OpenApiDocument>, ClusterSchemaError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<String, E>>,
    E: Into<BoxError>,
{
    let mut documents = Vec::with_capacity(paths.len());
    for path in paths {
        let Some((url, hash)) = index.entries.get(path) else {
            continue;
        };
        let document = get_json(&mut get, url, cancel).await?;
        documents.push(OpenApiDocument {
            path: path.clone(),
            hash: hash.clone(),
            document,
        });
    }
    Ok(documents)
}

/// Like [`fetch_cluster_schema`], but reads only the documents of the given group-version
/// paths (such as the custom resources a set uses, which the embedded table lacks) into a copy
/// of the embedded schema: one request for the index and one per listed path. Returns the
/// schema and, per path read, the hash of its document (to tell later whether it changed).
///
/// ```no_run
/// # async fn demo(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let cancel = tokio_util::sync::CancellationToken::new();
/// let paths = [gitops_diff::OpenApiIndex::path_of("example.com", "v1")];
/// let (schema, hashes) = gitops_diff::fetch_cluster_schema_of(
///     |path| {
///         let client = client.clone();
///         async move {
///             let request = http::Request::get(path).body(Vec::new())?;
///             Ok::<_, Box<dyn std::error::Error + Send + Sync>>(client.request_text(request).await?)
///         }
///     },
///     &paths,
///     &cancel,
/// )
/// .await?;
/// assert!(schema.kind("example.com/v1", "Widget").is_some() || hashes.is_empty());
/// # Ok(()) }
/// ```
///
/// # Errors
/// When a request fails, a document is not a valid OpenAPI v3 document, or `cancel` fires.
pub async fn fetch_cluster_schema_of<F, Fut, E>(
    mut get: F,
    paths: &[String],
    cancel: &CancellationToken,
) -> Result<(Schema, BTreeMap<String, String>), ClusterSchemaError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<String, E>>,
    E: Into<BoxError>,
{
    let index = fetch_openapi_index(&mut get, cancel).await?;
    let documents = fetch_openapi_documents(&mut get, &index, paths, cancel).await?;
    let mut schema = (*Schema::embedded()).clone();
    let mut hashes = BTreeMap::new();
    for document in documents {
        schema
            .add_openapi_v3_document(&document.document)
            .map_err(|source| ClusterSchemaError::Schema {
                path: document.path.clone(),
                source,
            })?;
        hashes.insert(document.path, document.hash);
    }
    Ok((schema, hashes))
}
