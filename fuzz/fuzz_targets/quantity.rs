//! Kubernetes quantities (`500m`, `1Gi`, `1e3`): `Quantity::parse` returns an error, never panics
//! or overflows, on any text; a parsed quantity prints in a form that parses back to the same
//! value, and the JSON reader agrees with the text reader.
#![no_main]

use gitops_diff::Quantity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(quantity) = Quantity::parse(text) else {
        return;
    };
    let printed = quantity.to_string();
    let again = Quantity::parse(&printed).unwrap_or_else(|error| {
        panic!("{text:?} printed as {printed:?}, which does not parse: {error}")
    });
    assert_eq!(
        quantity.nanos(),
        again.nanos(),
        "{text:?} printed as {printed:?}"
    );
    let from_json = Quantity::from_json(&serde_json::Value::String(text.to_owned()))
        .expect("the JSON reader takes what the text reader takes");
    assert_eq!(from_json.nanos(), quantity.nanos());
});
