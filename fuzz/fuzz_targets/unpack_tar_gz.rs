//! Unpacking an artifact archive: on any tar stream, `unpack_tar_gz` returns a digest or an error,
//! never panics, and never writes outside its target directory (no file beside it, no link in it).
//! The fuzzer mutates the tar bytes; they are gzip-compressed here so that it need not learn the
//! gzip format first.
#![no_main]

use std::io::Write as _;
use std::path::Path;

use gitops_source::{UnpackLimits, unpack_tar_gz};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|tar: &[u8]| {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(tar).expect("compressing in memory");
    let archive = encoder.finish().expect("compressing in memory");

    // The target's parent holds only the target and a sentinel: anything else was written
    // outside the target.
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let outer = scratch.path().join("outer");
    let target = outer.join("target");
    std::fs::create_dir_all(&outer).expect("creating the outer directory");
    std::fs::write(outer.join("sentinel"), b"untouched").expect("writing the sentinel");

    let limits = UnpackLimits::default().with_max_total_bytes(1 << 20);
    let _ = unpack_tar_gz(archive.as_slice(), &target, limits);

    let mut beside: Vec<String> = std::fs::read_dir(&outer)
        .expect("listing the outer directory")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    beside.sort();
    assert!(
        beside == ["sentinel"] || beside == ["sentinel", "target"],
        "written beside the target: {beside:?}"
    );
    assert_eq!(
        std::fs::read(outer.join("sentinel")).expect("the sentinel"),
        b"untouched"
    );
    let top: Vec<_> = std::fs::read_dir(scratch.path())
        .expect("listing")
        .collect();
    assert_eq!(top.len(), 1, "written beside the outer directory");
    if target.exists() {
        check_no_links(&target);
    }
});

fn check_no_links(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("listing the target") {
        let entry = entry.expect("an entry");
        let kind = entry.file_type().expect("a file type");
        assert!(!kind.is_symlink(), "a link was written: {:?}", entry.path());
        if kind.is_dir() {
            check_no_links(&entry.path());
        }
    }
}
