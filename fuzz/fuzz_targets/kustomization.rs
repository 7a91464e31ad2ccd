//! One kustomization file read the way kustomize reads it: on any text the reference walk's
//! per-file step returns the references or an error, never panics; and it never accepts a
//! kustomization with a key that kustomize's decoder (Go's encoding/json, which matches field
//! names case-insensitively with Unicode simple folding) would read as a field that names a path or
//! a URL under another spelling.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Fields of a kustomization that name files, directories or URLs.
const REFERENCE_FIELDS: &[&str] = &[
    "resources",
    "bases",
    "components",
    "crds",
    "configurations",
    "generators",
    "transformers",
    "validators",
    "patchesStrategicMerge",
    "patches",
    "patchesJson6902",
    "replacements",
    "openapi",
    "configMapGenerator",
    "secretGenerator",
    "helmCharts",
    "helmChartInflationGenerator",
    "helmGlobals",
];

/// Go's encoding/json key folding: ASCII upper-cased, other runes through ToUpper(ToLower(r)).
fn go_fold(key: &str) -> String {
    key.chars()
        .map(|c| {
            // Go maps rune to rune; U+0130 is the one letter whose full lowercase is two
            // characters, and its simple lowercase is `i`.
            let lower = if c == '\u{130}' {
                'i'
            } else {
                let mut lower = c.to_lowercase();
                match (lower.next(), lower.next()) {
                    (Some(single), None) => single,
                    _ => c,
                }
            };
            let mut upper = lower.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(single), None) => single,
                _ => lower,
            }
        })
        .collect()
}

fuzz_target!(|text: &str| {
    // What a sparse fetch materialises for the file names everything it may read.
    let materialised = gitops_render::referenced_paths("kustomization.yaml", text.as_bytes());
    let result = gitops_render::kustomization_references(text, Path::new("kustomization.yaml"));
    let Ok(references) = result else {
        return;
    };
    for reference in &references {
        assert!(
            materialised.contains(&reference.reference),
            "{reference} is followed but not materialised ({materialised:?})"
        );
    }
    // Accepted: no top-level key may be another spelling of a reference field.
    let Ok(documents) = gitops_core::parse_yaml_documents(text, "kustomization.yaml") else {
        return;
    };
    let Some(Value::Object(map)) = documents.into_iter().next().map(|d| d.value) else {
        return;
    };
    for key in map.keys() {
        for field in REFERENCE_FIELDS {
            if key != field && go_fold(key) == go_fold(field) {
                panic!("the key {key:?} (read by kustomize as {field:?}) was accepted");
            }
        }
    }
});
