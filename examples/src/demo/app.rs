//! The demo app: the files under `examples/demo/`, embedded in the program so that the demo runs
//! from any directory, and the revisions the demo commits.

/// The namespace the demo app's files name; [`DemoFile::contents_for`] replaces it.
pub const DEFAULT_NAMESPACE: &str = "gitops-demo";

/// The directory of the demo repository that holds the app, and that the reconciler renders.
pub const APP_PATH: &str = "app";

/// One file of the demo repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoFile {
    /// Its path in the demo repository, such as `app/configmap.yaml`.
    pub path: &'static str,
    /// Its contents, naming the namespace [`DEFAULT_NAMESPACE`].
    pub contents: &'static str,
}

impl DemoFile {
    /// The contents with the namespace renamed to `namespace`: every occurrence of
    /// [`DEFAULT_NAMESPACE`] is replaced (the demo files use the word for nothing else).
    ///
    /// ```
    /// use gitops_examples::demo::REVISION_1;
    /// let namespace = REVISION_1.iter().find(|f| f.path == "app/namespace.yaml").unwrap();
    /// assert!(namespace.contents_for("demo-7").contains("name: demo-7"));
    /// ```
    #[must_use]
    pub fn contents_for(&self, namespace: &str) -> String {
        self.contents.replace(DEFAULT_NAMESPACE, namespace)
    }
}

macro_rules! demo_file {
    ($path:literal, $source:literal) => {
        DemoFile {
            path: $path,
            contents: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/demo/", $source)),
        }
    };
}

/// Revision 1, the first commit: a Namespace, a ConfigMap, a Deployment, a Service, a CRD and a
/// custom resource of it (`examples/demo/app/`).
pub const REVISION_1: &[DemoFile] = &[
    demo_file!("app/namespace.yaml", "app/namespace.yaml"),
    demo_file!("app/configmap.yaml", "app/configmap.yaml"),
    demo_file!("app/deployment.yaml", "app/deployment.yaml"),
    demo_file!("app/service.yaml", "app/service.yaml"),
    demo_file!("app/greeting-crd.yaml", "app/greeting-crd.yaml"),
    demo_file!("app/greeting.yaml", "app/greeting.yaml"),
];

/// Revision 2: the files of `examples/demo/revision-2/` replace their namesakes (a new greeting
/// in the ConfigMap, a newer image, a new message in the custom resource).
pub const REVISION_2: &[DemoFile] = &[
    demo_file!("app/configmap.yaml", "revision-2/configmap.yaml"),
    demo_file!("app/deployment.yaml", "revision-2/deployment.yaml"),
    demo_file!("app/greeting.yaml", "revision-2/greeting.yaml"),
];

/// Revision 3 deletes these files: the Service leaves Git, and the reconciler prunes it.
pub const REVISION_3_REMOVED: &[&str] = &["app/service.yaml"];

/// The API group of the demo's custom resources in `namespace`: the namespace's name is also
/// the group's first label, so that demos in different namespaces (tests sharing a control
/// plane) each define a CRD of their own.
///
/// ```
/// assert_eq!(gitops_examples::demo::greeting_group("gitops-demo"), "gitops-demo.gitops.rs");
/// ```
#[must_use]
pub fn greeting_group(namespace: &str) -> String {
    format!("{namespace}.gitops.rs")
}

/// The objects of the demo app, by name, as the scenario checks them.
pub mod names {
    /// The ConfigMap.
    pub const CONFIG_MAP: &str = "web-content";
    /// The ConfigMap's key that revision 2 changes and the drift step edits.
    pub const GREETING_KEY: &str = "greeting";
    /// The Deployment (and the Service, which revision 3 removes).
    pub const WEB: &str = "web";
    /// The custom resources' kind.
    pub const GREETING_KIND: &str = "Greeting";
    /// The custom resource.
    pub const GREETING: &str = "hello";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(file: &DemoFile, namespace: &str) -> Vec<gitops_core::Manifest> {
        gitops_core::parse_manifests(&file.contents_for(namespace), file.path)
            .unwrap_or_else(|e| panic!("{}: {e}", file.path))
    }

    #[test]
    fn revision_1_is_the_six_objects_of_the_app() {
        let kinds: Vec<String> = REVISION_1
            .iter()
            .flat_map(|f| parse(f, DEFAULT_NAMESPACE))
            .map(|m| format!("{}/{}", m.kind(), m.name()))
            .collect();
        assert_eq!(
            kinds,
            [
                "Namespace/gitops-demo",
                "ConfigMap/web-content",
                "Deployment/web",
                "Service/web",
                "CustomResourceDefinition/greetings.gitops-demo.gitops.rs",
                "Greeting/hello",
            ]
        );
    }

    #[test]
    fn the_crd_defines_the_group_of_its_namespace() {
        let crd = REVISION_1
            .iter()
            .find(|f| f.path == "app/greeting-crd.yaml")
            .unwrap();
        let crd = &parse(crd, "ns-1")[0];
        assert_eq!(crd.object()["spec"]["group"], greeting_group("ns-1"));
        assert_eq!(crd.name(), format!("greetings.{}", greeting_group("ns-1")));
    }

    #[test]
    fn renaming_the_namespace_reaches_every_namespaced_object() {
        for file in REVISION_1.iter().chain(REVISION_2) {
            for manifest in parse(file, "other-ns") {
                assert!(
                    !serde_json::to_string(manifest.object())
                        .unwrap()
                        .contains(DEFAULT_NAMESPACE),
                    "{}",
                    file.path
                );
                if manifest.kind() != "Namespace" && manifest.kind() != "CustomResourceDefinition" {
                    assert_eq!(manifest.namespace(), Some("other-ns"), "{}", file.path);
                }
            }
        }
    }

    #[test]
    fn revision_2_changes_files_of_revision_1_and_revision_3_removes_one() {
        for file in REVISION_2 {
            let old = REVISION_1.iter().find(|f| f.path == file.path);
            let old = old.unwrap_or_else(|| panic!("{} is not in revision 1", file.path));
            assert_ne!(old.contents, file.contents, "{}", file.path);
            assert_eq!(
                parse(old, DEFAULT_NAMESPACE)[0].name(),
                parse(file, DEFAULT_NAMESPACE)[0].name()
            );
        }
        for path in REVISION_3_REMOVED {
            assert!(REVISION_1.iter().any(|f| f.path == *path), "{path}");
            assert!(!REVISION_2.iter().any(|f| f.path == *path), "{path}");
        }
    }
}
