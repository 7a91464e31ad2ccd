//! The CustomResourceDefinitions of the tests: a namespaced kind `Gadget` in a group of the
//! test's own (so that tests never share one), and its installation outside any run. The
//! catalog's unit tests (`src/catalog.rs`) include this file too.

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;

/// The spec of a Gadget with one property: `size`, an integer.
pub(crate) const SIZE: &str = "size: {type: integer}";

/// The spec of a Gadget with `size`, an integer, and `tags`, a list of strings.
pub(crate) const SIZE_AND_TAGS: &str =
    "size: {type: integer}, tags: {type: array, items: {type: string}}";

/// The spec of a Gadget whose `parts` is a list-map keyed by `name` (each a name and a size).
pub(crate) const PARTS: &str = concat!(
    "parts: {type: array, x-kubernetes-list-type: map, x-kubernetes-list-map-keys: [name], ",
    "items: {type: object, required: [name], ",
    "properties: {name: {type: string}, size: {type: integer}}}}"
);

/// The CRD `gadgets.{group}` of kind `Gadget` (`{group}/v1`) whose spec is `spec`, as [`SIZE`].
pub(crate) fn gadget_crd(group: &str, spec: &str) -> String {
    format!(
        "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: gadgets.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{kind: Gadget, plural: gadgets, singular: gadget, listKind: GadgetList}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, properties: {{{spec}}}}}
"
    )
}

/// The cluster's CustomResourceDefinitions, as dynamic objects.
pub(crate) fn crds(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &ApiResource::erase::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(&()),
    )
}

/// Installs the CRD `crd` (YAML) as `manager` outside any run; waits until served and published.
pub(crate) async fn install_crd(
    client: &kube::Client,
    crd: &str,
    manager: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let crd = gitops_core::parse_manifests(crd, "crd.yaml")?.remove(0);
    let group = crd.object()["spec"]["group"]
        .as_str()
        .ok_or("a CRD without spec.group")?
        .to_owned();
    crds(client)
        .patch(
            crd.name(),
            &PatchParams::apply(manager).force(),
            &Patch::Apply(crd.object()),
        )
        .await?;
    let published = format!("/paths/apis~1{group}~1v1");
    for _ in 0..100 {
        let discovery = kube::discovery::Discovery::new(client.clone())
            .run_aggregated()
            .await?;
        let request = http::Request::get("/openapi/v3").body(Vec::new())?;
        let index: serde_json::Value = serde_json::from_str(&client.request_text(request).await?)?;
        if discovery.groups().any(|g| g.name() == group) && index.pointer(&published).is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("the CRD of {group} was never served").into())
}

/// How many of the request paths `paths` read the cluster's OpenAPI documents.
pub(crate) fn openapi_reads<'a>(paths: impl IntoIterator<Item = &'a str>) -> usize {
    paths
        .into_iter()
        .filter(|path| path.starts_with("/openapi"))
        .count()
}
