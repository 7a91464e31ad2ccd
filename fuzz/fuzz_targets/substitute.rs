//! `${VAR}` substitution: on any text and any variables, `Substitution::expand` and the YAML path
//! (`substitute_yaml` over parsed documents) return a result or an error, never panic, overflow the
//! stack or allocate without bound; and a text without `$` comes back unchanged.
#![no_main]

use arbitrary::Arbitrary;
use gitops_render::Substitution;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    text: &'a str,
    variables: Vec<(Name, &'a str)>,
    strict: bool,
}

/// Variable names from a small set, so that references in the text find their variables.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Name {
    A,
    B,
    Long,
    Under,
}

impl Name {
    fn as_str(self) -> &'static str {
        match self {
            Name::A => "A",
            Name::B => "B",
            Name::Long => "CLUSTER_NAME",
            Name::Under => "_x1",
        }
    }
}

fuzz_target!(|input: Input<'_>| {
    let substitution = Substitution::new()
        .with_variables(
            input
                .variables
                .iter()
                .map(|(name, value)| (name.as_str(), *value)),
        )
        .strict(input.strict);
    if let Ok(expanded) = substitution.expand(input.text)
        && !input.text.contains('$')
    {
        assert_eq!(expanded, input.text);
    }
    if let Ok(mut documents) = gitops_core::parse_yaml_documents(input.text, "fuzz.yaml") {
        let _ = substitution.substitute_yaml(input.text, &mut documents);
    }
});
