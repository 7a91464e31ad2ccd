//! YAML and JSON text into manifests: `gitops_core::parse_manifests` and the JSON parser must
//! return an error, never panic, abort or run away, on any text; every manifest they return
//! holds its invariants (a mapping with apiVersion, kind and metadata.name, an id).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(manifests) = gitops_core::parse_manifests(text, "fuzz.yaml") {
        for manifest in &manifests {
            check(manifest);
        }
    }
    if let Ok(documents) = gitops_core::parse_json_documents(text, "fuzz.json")
        && let Ok(manifests) = gitops_core::documents_to_manifests(documents)
    {
        for manifest in &manifests {
            check(manifest);
        }
    }
});

fn check(manifest: &gitops_core::Manifest) {
    let id = manifest.id();
    assert!(!id.kind.is_empty(), "a manifest without a kind: {id:?}");
    assert!(!id.name.is_empty(), "a manifest without a name: {id:?}");
    assert!(
        manifest
            .object()
            .get("metadata")
            .is_some_and(|m| m.is_object())
    );
    // The inventory string form reads back as the same id.
    let text = id.to_string();
    let parsed: gitops_core::ObjectId = text.parse().expect("an id's string form parses");
    assert_eq!(parsed, id);
    let _ = manifest.origin().to_string();
}
