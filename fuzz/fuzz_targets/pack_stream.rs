//! Storing the pack a server sends: on any byte stream, the pack receiver stores a pack and its
//! index or returns an error; it never panics, never allocates what the stream only declares,
//! and leaves the pack directory empty when it fails (the pack and its index when it succeeds).
//! The corpus holds real packs made by `git pack-objects` (ofs- and ref-deltas, a thin pack).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|stream: &[u8]| {
    let pack_dir = tempfile::tempdir().expect("a temporary directory");
    let stored = gitops_source::fuzzing::store_pack_stream(stream, pack_dir.path());
    let left = std::fs::read_dir(pack_dir.path())
        .expect("listing the pack directory")
        .count();
    match stored {
        Ok(_) => assert_eq!(left, 2, "a stored pack is its pack file and its index"),
        Err(_) => assert_eq!(left, 0, "a failed store leaves nothing behind"),
    }
});
