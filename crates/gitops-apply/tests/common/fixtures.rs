//! The YAML of objects several tests apply.

/// A Deployment `web` in `namespace` of `replicas` nginx pods labelled `app: web`.
pub(crate) fn web_deployment(namespace: &str, replicas: u32) -> String {
    format!(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: nginx:1.27}}]
"
    )
}

/// A Service `web` in `namespace`: port 80 to port 8080 of the pods labelled `app: web`.
pub(crate) fn web_service(namespace: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"
    )
}

/// The YAML documents `documents`, one stream.
pub(crate) fn stream<I>(documents: I) -> String
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    documents
        .into_iter()
        .map(|d| d.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A ConfigMap `namespace/name` of `data` (a YAML flow mapping without its braces).
pub(crate) fn config_map_yaml(namespace: &str, name: &str, data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\ndata: {{{data}}}\n"
    )
}
