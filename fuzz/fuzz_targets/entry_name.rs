//! The check every source runs on each name in a tree before it joins it to a directory: a name
//! it accepts is one plain component that cannot leave the directory, cannot reach Git's own
//! metadata in any spelling, and holds no separator or NUL; a path it accepts is made only of
//! such names.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|name: &[u8]| {
    if let Ok(accepted) = gitops_source::path::check_entry_name(name) {
        assert_eq!(accepted.as_bytes(), name);
        assert!(!accepted.is_empty());
        assert!(!accepted.contains(['/', '\\', '\0']), "{accepted:?}");
        assert!(accepted != "." && accepted != "..", "{accepted:?}");
        assert!(!accepted.eq_ignore_ascii_case(".git"), "{accepted:?}");
        let mut components = Path::new(accepted).components();
        assert!(
            matches!(components.next(), Some(Component::Normal(_))) && components.next().is_none(),
            "{accepted:?} is not one plain component"
        );
        let root = Path::new("/artifact");
        assert_eq!(root.join(accepted).parent(), Some(root));
    }
    if let Ok(text) = std::str::from_utf8(name)
        && gitops_source::path::check_relative_path(text).is_ok()
    {
        for part in text.split('/') {
            assert!(
                gitops_source::path::check_entry_name(part.as_bytes()).is_ok(),
                "{text:?} accepted with the refused part {part:?}"
            );
        }
        let root = Path::new("/artifact");
        assert!(root.join(text).starts_with(root));
        assert!(
            Path::new(text)
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "{text:?}"
        );
    }
});
