//! Ignore rules as users write them, possibly in a repository: Flux drift ignore rules and Argo
//! CD `ignoreDifferences` read from YAML and converted, label selectors and path patterns parsed.
//! Nothing may panic; a parsed label selector prints as text that parses back to the same
//! selector; a converted rule's selector can be matched against an object.
#![no_main]

use gitops_diff::{
    ArgoIgnoreDifference, FluxDriftIgnoreRule, IgnoreRule, LabelSelector, PathPattern,
};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(selector) = text.parse::<LabelSelector>() {
        let printed = selector.to_string();
        let again: LabelSelector = printed
            .parse()
            .unwrap_or_else(|e| panic!("{printed:?} does not parse back: {e}"));
        assert_eq!(again, selector, "{printed:?}");
    }
    let _ = PathPattern::parse(text);
    let _ = PathPattern::pointer(text);
    let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
            "annotations": {"team": "shop"}}});
    if let Ok(rules) = serde_saphyr::from_str::<Vec<FluxDriftIgnoreRule>>(text) {
        for rule in rules {
            if let Ok(rule) = IgnoreRule::try_from(rule) {
                let _ = rule.selector().matches(&object);
            }
        }
    }
    if let Ok(entries) = serde_saphyr::from_str::<Vec<ArgoIgnoreDifference>>(text) {
        for entry in entries {
            if let Ok(rule) = IgnoreRule::try_from(entry) {
                let _ = rule.selector().matches(&object);
            }
        }
    }
});
