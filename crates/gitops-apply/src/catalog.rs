//! What the cluster serves, cached across runs: the kinds (discovery) and the merge schema
//! (the embedded table, the CRDs of the set, and the cluster's `/openapi/v3` documents of the
//! group-versions the set uses that the embedded table lacks).
//!
//! A [`Catalog`] is shared by the clones of an [`Applier`](crate::Applier). Discovery is
//! refreshed when it is older than the TTL ([`DEFAULT_DISCOVERY_TTL`] by default), when a
//! manifest's kind is not among the kinds it found (a CRD installed since, or one of the set
//! that is now established), or after [`Catalog::invalidate`]. The `/openapi/v3` index is read
//! at most once per discovery, and each document only when its hash changed, so a run of a set
//! of built-in kinds reads no OpenAPI document at all, and a second run of a set of custom
//! resources none either.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use gitops_core::escape::Escaped;
use gitops_core::{Manifest, Origin};
use gitops_diff::{
    ClusterSchemaError, OpenApiIndex, Schema, SchemaError, fetch_openapi_documents,
    fetch_openapi_index,
};
use kube::discovery::Discovery;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::kube_error::KubeError;
use crate::plan::KindTable;

/// How long discovery (and with it the cluster's OpenAPI index) is reused by default: 5
/// minutes.
pub const DEFAULT_DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// Why the kinds or the schema could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// Discovery failed.
    #[error("discovering the kinds the cluster serves")]
    Discovery(#[source] KubeError),
    /// A CRD of the set has a schema gitops-diff cannot read.
    #[error("reading the schema of CRD from {origin}")]
    Crd {
        /// The CRD's origin.
        origin: Origin,
        /// The failure.
        #[source]
        source: SchemaError,
    },
    /// Reading the cluster's OpenAPI v3 documents failed.
    #[error("reading the cluster's OpenAPI v3 schema of {}", .paths.join(", "))]
    ClusterSchema {
        /// The group-version paths asked for (`apis/example.com/v1`).
        paths: Vec<String>,
        /// The failure.
        #[source]
        source: ClusterSchemaError,
    },
    /// A document of the cluster could not be read as a schema.
    #[error("reading the cluster's OpenAPI v3 document {path}")]
    Document {
        /// The group-version path.
        path: String,
        /// The failure.
        #[source]
        source: SchemaError,
    },
}

/// The `(apiVersion, kind)` pairs of the embedded schema.
static EMBEDDED_KINDS: LazyLock<HashSet<(String, String)>> = LazyLock::new(|| {
    Schema::embedded()
        .kinds()
        .map(|(api_version, kind)| (api_version.to_owned(), kind.to_owned()))
        .collect()
});

/// The cached kinds and schema; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    ttl: Duration,
    cluster_schema: bool,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// The last discovery: when, and what it found (without the CRDs of any set).
    discovery: Option<(Instant, KindTable)>,
    /// Counts discoveries, so that the OpenAPI index is read once per discovery.
    generation: u64,
    /// The OpenAPI index and the discovery it was read with.
    index: Option<(u64, OpenApiIndex)>,
    /// OpenAPI documents by group-version path: their hash and content.
    documents: HashMap<String, (String, Arc<Value>)>,
    /// The embedded schema with the cluster documents added, and the (path, hash) pairs it was
    /// made of.
    cluster: Option<(DocumentKey, Arc<Schema>)>,
}

/// The (path, hash) pairs of the documents a schema was made of.
type DocumentKey = Vec<(String, String)>;

impl Default for Catalog {
    fn default() -> Self {
        Self::new(DEFAULT_DISCOVERY_TTL, true)
    }
}

impl Catalog {
    /// A catalog that reuses discovery for `ttl`, and reads the cluster's `/openapi/v3` for
    /// the group-versions the embedded table lacks when `cluster_schema` is set.
    pub(crate) fn new(ttl: Duration, cluster_schema: bool) -> Self {
        Self {
            ttl,
            cluster_schema,
            state: Arc::default(),
        }
    }

    /// The same cache with another TTL.
    #[must_use]
    pub(crate) fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The same cache, reading the cluster schema or not.
    #[must_use]
    pub(crate) fn with_cluster_schema(mut self, cluster_schema: bool) -> Self {
        self.cluster_schema = cluster_schema;
        self
    }

    /// Forgets discovery (and with it the OpenAPI index): the next run discovers again. Call it
    /// after writing or deleting a CRD.
    pub(crate) async fn invalidate(&self) {
        self.state.lock().await.discovery = None;
    }

    /// The kinds the cluster serves, plus those the CRDs among `manifests` define (as not
    /// served yet). Discovery runs when the cached one is older than the TTL or lacks the kind
    /// of one of `manifests` (served at that version).
    ///
    /// # Errors
    /// [`CatalogError::Discovery`] when discovery fails.
    pub(crate) async fn kinds(
        &self,
        client: &kube::Client,
        manifests: &[Manifest],
    ) -> Result<KindTable, CatalogError> {
        let mut state = self.state.lock().await;
        let fresh = state
            .discovery
            .as_ref()
            .is_some_and(|(at, table)| at.elapsed() < self.ttl && knows_all(table, manifests));
        if !fresh {
            let discovery = Discovery::new(client.clone())
                .run_aggregated()
                .await
                .map_err(|e| CatalogError::Discovery(e.into()))?;
            state.discovery = Some((Instant::now(), KindTable::from_discovery(&discovery)));
            state.generation += 1;
        }
        let mut kinds = state
            .discovery
            .as_ref()
            .map(|(_, table)| table.clone())
            .unwrap_or_default();
        kinds.add_crds(manifests);
        Ok(kinds)
    }

    /// The merge schema for `manifests`: the embedded table, plus the cluster's OpenAPI v3
    /// documents of the group-versions the set uses that the table lacks and no CRD of the set
    /// defines (custom resources of CRDs installed before the run, aggregated APIs), plus the
    /// CRDs of the set. Call it after [`Catalog::kinds`] (which refreshes discovery): the
    /// OpenAPI index is read once per discovery, a document only when its hash changed.
    ///
    /// A cluster document that cannot be read (the index, a group-version's document, or its
    /// content) is no error: the objects of its group-versions are compared untyped (lists
    /// atomic), and a warning names the group-version and the error.
    ///
    /// # Errors
    /// When a CRD of the set cannot be read, or the run is cancelled while reading the cluster's
    /// documents.
    pub(crate) async fn schema(
        &self,
        client: &kube::Client,
        manifests: &[Manifest],
        cancel: &CancellationToken,
    ) -> Result<Arc<Schema>, CatalogError> {
        let crds: Vec<&Manifest> = manifests.iter().filter(|m| is_crd(m)).collect();
        let defined: HashSet<(String, String)> = crds
            .iter()
            .flat_map(|crd| {
                let spec = &crd.object()["spec"];
                let group = spec["group"].as_str().unwrap_or_default().to_owned();
                let kind = spec
                    .pointer("/names/kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                spec["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v["name"].as_str())
                    .map(move |version| (format!("{group}/{version}"), kind.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let missing: BTreeSet<String> = manifests
            .iter()
            .filter(|m| {
                let key = (m.api_version().to_owned(), m.kind().to_owned());
                !EMBEDDED_KINDS.contains(&key) && !defined.contains(&key)
            })
            .map(|m| OpenApiIndex::path_of(m.group(), m.version()))
            .collect();
        let base = if self.cluster_schema && !missing.is_empty() {
            let missing: Vec<String> = missing.into_iter().collect();
            self.cluster_part(client, &missing, cancel).await?
        } else {
            Schema::embedded()
        };
        if crds.is_empty() {
            return Ok(base);
        }
        let mut schema = (*base).clone();
        for crd in crds {
            schema
                .add_crd(crd.object())
                .map_err(|source| CatalogError::Crd {
                    origin: crd.origin().clone(),
                    source,
                })?;
        }
        Ok(Arc::new(schema))
    }

    /// The embedded schema with the cluster's documents of `paths` added, from the cache when
    /// their hashes did not change.
    async fn cluster_part(
        &self,
        client: &kube::Client,
        paths: &[String],
        cancel: &CancellationToken,
    ) -> Result<Arc<Schema>, CatalogError> {
        let get = |path: String| {
            let client = client.clone();
            async move {
                let request = http::Request::get(path).body(Vec::new())?;
                Ok::<_, gitops_diff::BoxError>(client.request_text(request).await?)
            }
        };
        let failed = |source| CatalogError::ClusterSchema {
            paths: paths.to_vec(),
            source,
        };
        let mut state = self.state.lock().await;
        let generation = state.generation;
        // Read with this discovery, and listing every path (a CRD's document is published a
        // moment after the CRD is established).
        let index = match &state.index {
            Some((read_with, index))
                if *read_with == generation
                    && paths.iter().all(|path| index.hash(path).is_some()) =>
            {
                index.clone()
            }
            _ => match fetch_openapi_index(get, cancel).await {
                Ok(index) => {
                    state.index = Some((generation, index.clone()));
                    index
                }
                Err(ClusterSchemaError::Cancelled) => {
                    return Err(failed(ClusterSchemaError::Cancelled));
                }
                Err(error) => {
                    for path in paths {
                        untyped(path, &error);
                    }
                    return Ok(Schema::embedded());
                }
            },
        };
        let stale: Vec<String> = paths
            .iter()
            .filter(|path| {
                index.hash(path).is_some_and(|hash| {
                    state
                        .documents
                        .get(*path)
                        .is_none_or(|(cached, _)| cached != hash || hash.is_empty())
                })
            })
            .cloned()
            .collect();
        // One document at a time: one that cannot be read leaves its group-version untyped.
        for path in &stale {
            match fetch_openapi_documents(get, &index, std::slice::from_ref(path), cancel).await {
                Ok(documents) => {
                    for document in documents {
                        state
                            .documents
                            .insert(document.path, (document.hash, Arc::new(document.document)));
                    }
                }
                Err(ClusterSchemaError::Cancelled) => {
                    return Err(failed(ClusterSchemaError::Cancelled));
                }
                Err(error) => {
                    untyped(path, &error);
                    // The index may name a document the server has since replaced: the next
                    // run reads it again.
                    state.index = None;
                }
            }
        }
        Ok(state.schema_of(&index, paths))
    }
}

impl State {
    /// The embedded schema with the cached documents of `paths` the index lists added (a
    /// document that cannot be read as a schema leaves its group-version untyped), from the
    /// cache when made of the same documents.
    fn schema_of(&mut self, index: &OpenApiIndex, paths: &[String]) -> Arc<Schema> {
        let key: DocumentKey = paths
            .iter()
            .filter_map(|path| {
                self.documents
                    .get(path)
                    .filter(|_| index.hash(path).is_some())
                    .map(|(hash, _)| (path.clone(), hash.clone()))
            })
            .collect();
        if key.is_empty() {
            return Schema::embedded();
        }
        if let Some((cached, schema)) = &self.cluster
            && *cached == key
            && !key.iter().any(|(_, hash)| hash.is_empty())
        {
            return schema.clone();
        }
        let mut schema = (*Schema::embedded()).clone();
        for (path, _) in &key {
            if let Some((_, document)) = self.documents.get(path)
                && let Err(source) = schema.add_openapi_v3_document(document)
            {
                untyped(
                    path,
                    &CatalogError::Document {
                        path: path.clone(),
                        source,
                    },
                );
            }
        }
        let schema = Arc::new(schema);
        self.cluster = Some((key, schema.clone()));
        schema
    }
}

/// Warns that the objects of the group-version of `path` (`apis/example.com/v1`) are compared
/// untyped (lists atomic): its schema could not be read, for `error` (with its causes).
fn untyped(path: &str, error: &dyn std::error::Error) {
    tracing::warn!("{}", untyped_warning(path, error));
}

/// The warning of [`untyped`]: the group-version and the error with its causes, escaped.
fn untyped_warning(path: &str, error: &dyn std::error::Error) -> String {
    let group_version = path
        .strip_prefix("apis/")
        .or_else(|| path.strip_prefix("api/"))
        .unwrap_or(path);
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        message.push_str(": ");
        message.push_str(&current.to_string());
        cause = current.source();
    }
    format!(
        "the cluster's OpenAPI v3 schema of {} cannot be read, its objects are compared untyped \
         (lists atomic): {}",
        Escaped(group_version),
        Escaped(&message)
    )
}

fn is_crd(manifest: &Manifest) -> bool {
    manifest.group() == "apiextensions.k8s.io" && manifest.kind() == "CustomResourceDefinition"
}

/// Whether discovery found the kind of every manifest at its version.
fn knows_all(table: &KindTable, manifests: &[Manifest]) -> bool {
    manifests
        .iter()
        .all(|m| table.resolve(m.group(), m.version(), m.kind()).is_some())
}

/// The CRDs of the tests, shared with the integration tests.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tests/common/crd.rs"]
mod test_crd;

#[cfg(test)]
mod tests {
    //! Against a real control plane: what the catalog asks the apiserver, counted.

    use super::*;

    #[test]
    fn the_untyped_warning_names_the_group_version_and_the_error_with_its_causes() {
        let error = CatalogError::Document {
            path: "apis/example.com/v1".to_owned(),
            source: SchemaError::NoComponents,
        };
        assert_eq!(
            untyped_warning("apis/example.com/v1", &error),
            "the cluster's OpenAPI v3 schema of example.com/v1 cannot be read, its objects are \
             compared untyped (lists atomic): reading the cluster's OpenAPI v3 document \
             apis/example.com/v1: OpenAPI v3 document has no components.schemas object"
        );
        // A group-version from the cluster is escaped: it cannot forge a log line.
        let forged = untyped_warning("apis/evil\nINFO ok/v1", &error);
        assert!(
            forged.contains("evil\\nINFO ok/v1") && !forged.contains('\n'),
            "{forged}"
        );
    }
    use crate::{RequestCounter, counting_client};

    type Error = Box<dyn std::error::Error + Send + Sync>;

    /// How many requests of `counter` read the cluster's OpenAPI documents.
    fn openapi_requests(counter: &RequestCounter) -> usize {
        openapi_reads(counter.requests().iter().map(|r| r.path.as_str()))
    }

    fn discovery_requests(counter: &RequestCounter) -> usize {
        counter
            .requests()
            .iter()
            .filter(|r| r.path == "/api" || r.path == "/apis")
            .count()
    }

    fn manifests(text: &str) -> Vec<Manifest> {
        gitops_core::parse_manifests(text, "set.yaml").expect("test manifests parse")
    }

    use super::test_crd::{PARTS, gadget_crd, install_crd, openapi_reads};

    /// The group of the CRD these tests install.
    const GROUP: &str = "catalog.gitops-rs.test";

    #[tokio::test]
    async fn discovery_and_the_cluster_schema_are_read_once() -> Result<(), Error> {
        let control_plane = gitops_envtest::shared().await?;
        let client = control_plane.client().await?;
        let cancel = CancellationToken::new();
        let catalog = Catalog::default();
        let built_in = manifests(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n",
        );

        // A set of built-in kinds: one discovery, then none; never an OpenAPI request.
        for run in 0..2 {
            let counter = RequestCounter::with_log();
            let counted = counting_client(&client, &counter);
            let kinds = catalog.kinds(&counted, &built_in).await?;
            assert!(kinds.resolve("apps", "v1", "Deployment").is_some());
            let schema = catalog.schema(&counted, &built_in, &cancel).await?;
            assert!(Arc::ptr_eq(&schema, &Schema::embedded()));
            assert_eq!(openapi_requests(&counter), 0, "run {run}");
            assert_eq!(
                discovery_requests(&counter) > 0,
                run == 0,
                "run {run}: {:?}",
                counter.requests()
            );
        }

        // A custom resource of a CRD installed before the run (not in the set): discovery
        // again (its kind is new), the index and its document once; the second run reads
        // nothing.
        install_crd(&client, &gadget_crd(GROUP, PARTS), "catalog-test").await?;
        let custom =
            manifests("apiVersion: catalog.gitops-rs.test/v1\nkind: Gadget\nmetadata: {name: g}\n");
        let mut first = None;
        for run in 0..2 {
            let counter = RequestCounter::with_log();
            let counted = counting_client(&client, &counter);
            let kinds = catalog.kinds(&counted, &custom).await?;
            assert!(
                kinds
                    .resolve("catalog.gitops-rs.test", "v1", "Gadget")
                    .is_some_and(|k| k.served)
            );
            let schema = catalog.schema(&counted, &custom, &cancel).await?;
            let root = schema
                .kind("catalog.gitops-rs.test/v1", "Gadget")
                .ok_or("no Gadget schema")?;
            assert!(
                matches!(
                    schema.path(root, &["spec", "parts"]),
                    gitops_diff::FieldSchema::List {
                        list_type: gitops_diff::ListType::Map,
                        ..
                    }
                ),
                "{root:?}"
            );
            let expected = if run == 0 { 2 } else { 0 };
            assert_eq!(
                openapi_requests(&counter),
                expected,
                "run {run}: {:?}",
                counter.requests()
            );
            assert_eq!(discovery_requests(&counter) > 0, run == 0, "run {run}");
            match &first {
                None => first = Some(schema),
                Some(first) => assert!(Arc::ptr_eq(first, &schema)),
            }
        }

        // After the TTL: discovery and the index again, but the document (same hash) is not
        // read again.
        let expired = catalog.clone().with_ttl(Duration::ZERO);
        let counter = RequestCounter::with_log();
        let counted = counting_client(&client, &counter);
        expired.kinds(&counted, &custom).await?;
        expired.schema(&counted, &custom, &cancel).await?;
        assert!(discovery_requests(&counter) > 0);
        let openapi: Vec<String> = counter
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/openapi"))
            .map(|r| r.path.clone())
            .collect();
        assert_eq!(openapi, ["/openapi/v3"]);

        // Without the cluster schema: no OpenAPI request, the custom resource is deduced.
        let offline = Catalog::new(DEFAULT_DISCOVERY_TTL, false);
        let counter = RequestCounter::with_log();
        let counted = counting_client(&client, &counter);
        offline.kinds(&counted, &custom).await?;
        let schema = offline.schema(&counted, &custom, &cancel).await?;
        assert!(schema.kind("catalog.gitops-rs.test/v1", "Gadget").is_none());
        assert_eq!(openapi_requests(&counter), 0);
        Ok(())
    }

    #[tokio::test]
    async fn the_crds_of_the_set_are_in_the_schema_and_bad_ones_are_named() -> Result<(), Error> {
        let control_plane = gitops_envtest::shared().await?;
        let client = control_plane.client().await?;
        let cancel = CancellationToken::new();
        let catalog = Catalog::default();
        let set = manifests(&format!(
            "{}---\napiVersion: catalog.gitops-rs.test/v1\nkind: Gadget\nmetadata: {{name: g}}\n",
            gadget_crd(GROUP, PARTS)
        ));
        let counter = RequestCounter::with_log();
        let counted = counting_client(&client, &counter);
        let kinds = catalog.kinds(&counted, &set).await?;
        assert!(
            kinds
                .resolve("catalog.gitops-rs.test", "v1", "Gadget")
                .is_some()
        );
        let schema = catalog.schema(&counted, &set, &cancel).await?;
        assert!(schema.kind("catalog.gitops-rs.test/v1", "Gadget").is_some());
        // Defined by the set: the cluster's document is not needed.
        assert_eq!(openapi_requests(&counter), 0);

        let bad = manifests(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
             metadata: {name: broken.example.com}\nspec: {names: {kind: Broken}}\n",
        );
        let err = catalog.schema(&counted, &bad, &cancel).await.unwrap_err();
        assert!(matches!(err, CatalogError::Crd { .. }), "{err}");
        assert!(err.to_string().contains("set.yaml"), "{err}");
        Ok(())
    }
}
