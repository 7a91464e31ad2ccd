//! Blobs streamed from their pack file into the artifact, in bounded memory.
//!
//! Reading a blob through the object database puts the whole object in one buffer, and the pages
//! of the memory-mapped pack it touches stay resident in the process: a 200 MB blob cost about
//! 400 MB, and writing a 200 MB tree of small files left the whole pack resident (RSS the size of
//! the repository). A blob stored whole in a pack (not as a delta) is instead found through the
//! pack indexes (opened once per tree, [`PackedBlobs`]), and its zlib stream is read from the pack
//! file with ordinary buffered reads and inflated chunk by chunk straight into the writer: memory
//! stays at a few buffers whatever the blob's or the repository's size. Anything else (a delta, a
//! loose object) is read through the object database as before.

use std::cell::RefCell;
use std::io::{self, BufRead, Read as _, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use flate2::Decompress;
use gix::ObjectId;
use gix::odb::pack;

use super::pack::Inflate;

/// The size of the read buffer over the pack file and of each inflated chunk.
const CHUNK: usize = 64 * 1024;

/// Why a blob could not be streamed from its pack.
#[derive(Debug, thiserror::Error)]
pub(super) enum BlobError {
    /// A pack file or index could not be opened or read.
    #[error(
        "cannot read blob {id} from pack {}",
        gitops_core::escape::EscapedPath(pack)
    )]
    Read {
        /// The blob.
        id: ObjectId,
        /// The pack file.
        pack: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The entry in the pack is not what its index and header promise.
    #[error(
        "blob {id} at offset {offset} of pack {} is corrupt: {reason}",
        gitops_core::escape::EscapedPath(pack)
    )]
    Corrupt {
        /// The blob.
        id: ObjectId,
        /// The pack file.
        pack: PathBuf,
        /// The entry's offset in the pack.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Writing the inflated content failed (the destination, not the cache, is at fault).
    #[error("cannot write blob {id}")]
    Write {
        /// The blob.
        id: ObjectId,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

/// The read buffer over a pack file: small enough that reading a small blob reads little more
/// than the blob, large enough that a large one takes few reads.
const READ_BUFFER: usize = 32 * 1024;

/// One pack of the repository: its index (memory-mapped by gitoxide: a few dozen bytes per
/// object) and, once a blob was read from it, a buffered reader over the pack file.
struct Pack {
    index: pack::index::File,
    path: PathBuf,
    reader: RefCell<Option<io::BufReader<std::fs::File>>>,
}

/// The packs of a repository, for streaming the blobs they hold whole.
pub(super) struct PackedBlobs {
    packs: Vec<Pack>,
}

impl PackedBlobs {
    /// The packs below `objects/pack` of the repository whose object directory is
    /// `objects_dir` (none when it cannot be listed: every blob then goes through the object
    /// database).
    pub(super) fn open(objects_dir: &Path) -> Self {
        let mut packs = Vec::new();
        let Ok(entries) = std::fs::read_dir(objects_dir.join("pack")) else {
            return Self { packs };
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|ext| ext != "idx") {
                continue;
            }
            if let Ok(index) = pack::index::File::at(&path, gix::hash::Kind::Sha1) {
                packs.push(Pack {
                    index,
                    path: path.with_extension("pack"),
                    reader: RefCell::new(None),
                });
            }
        }
        Self { packs }
    }

    /// Stream blob `id` into `out` when a pack holds it whole. `Ok(false)` when none does (then
    /// nothing was written and the caller reads it another way).
    pub(super) fn stream(&self, id: &ObjectId, out: &mut dyn Write) -> Result<bool, BlobError> {
        let Some((pack, offset)) = self.packs.iter().find_map(|pack| {
            pack.index
                .lookup(id)
                .map(|found| (pack, pack.index.pack_offset_at_index(found)))
        }) else {
            return Ok(false);
        };
        let read_error = |source| BlobError::Read {
            id: *id,
            pack: pack.path.clone(),
            source,
        };
        let corrupt = |reason: String| BlobError::Corrupt {
            id: *id,
            pack: pack.path.clone(),
            offset,
            reason,
        };
        let mut reader = pack.reader.borrow_mut();
        let reader = match &mut *reader {
            Some(reader) => reader,
            empty => empty.insert(io::BufReader::with_capacity(
                READ_BUFFER,
                std::fs::File::open(&pack.path).map_err(read_error)?,
            )),
        };
        reader.seek(SeekFrom::Start(offset)).map_err(read_error)?;
        let entry = pack::data::Entry::from_read(reader, offset, id.kind().len_in_bytes())
            .map_err(|error| corrupt(format!("its entry header cannot be read ({error})")))?;
        if !matches!(entry.header, pack::data::entry::Header::Blob) {
            // Stored another way in this pack (a delta, say): read through the object database.
            return Ok(false);
        }
        inflate_into(reader, entry.decompressed_size, out, &corrupt, &|source| {
            BlobError::Write { id: *id, source }
        })?;
        Ok(true)
    }
}

/// Inflate one zlib stream from `reader` into `out`, which must yield exactly `size` bytes
/// (the pack receiver's [`Inflate`], chunk by chunk).
fn inflate_into(
    reader: &mut impl BufRead,
    size: u64,
    out: &mut dyn Write,
    corrupt: &dyn Fn(String) -> BlobError,
    write_error: &dyn Fn(io::Error) -> BlobError,
) -> Result<(), BlobError> {
    let mut state = Decompress::new(true);
    let never = AtomicBool::new(false);
    let mut inflate = Inflate::new(reader, &mut state, size, &never);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let produced = inflate
            .read(&mut chunk)
            .map_err(|error| corrupt(error.to_string()))?;
        if produced == 0 {
            return Ok(());
        }
        out.write_all(&chunk[..produced]).map_err(write_error)?;
    }
}

/// Inflate `compressed` (followed by unrelated bytes, as in a pack) through a small buffer.
#[cfg(test)]
fn inflate_to_vec(compressed: &[u8], size: u64) -> Result<Vec<u8>, BlobError> {
    use std::io::Read as _;
    let mut out = Vec::new();
    let id = ObjectId::null(gix::hash::Kind::Sha1);
    let corrupt = |reason| BlobError::Corrupt {
        id,
        pack: PathBuf::from("test.pack"),
        offset: 0,
        reason,
    };
    inflate_into(
        &mut io::BufReader::with_capacity(7, compressed.chain(&b"trailing"[..])),
        size,
        &mut out,
        &corrupt,
        &|source| BlobError::Write { id, source },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn inflates_in_chunks_exactly_and_stops_at_the_stream_end() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let compressed = deflate(&data);
        assert_eq!(
            inflate_to_vec(&compressed, data.len() as u64).unwrap(),
            data
        );
        assert_eq!(inflate_to_vec(&deflate(b""), 0).unwrap(), b"");
    }

    #[test]
    fn corrupt_streams_are_errors_not_panics() {
        let data = vec![b'x'; 200_000];
        let compressed = deflate(&data);
        // Truncated: the stream ends before its end marker (the trailing bytes are garbage).
        let error = inflate_to_vec(&compressed[..compressed.len() / 2], 200_000).unwrap_err();
        assert!(matches!(error, BlobError::Corrupt { .. }), "{error:?}");
        // Garbage.
        let error = inflate_to_vec(b"not zlib at all", 3).unwrap_err();
        assert!(
            error.to_string().contains("zlib stream is invalid"),
            "{error}"
        );
        // Sizes that disagree with the header, both ways.
        let error = inflate_to_vec(&compressed, 199_999).unwrap_err();
        assert!(error.to_string().contains("more than"), "{error}");
        let error = inflate_to_vec(&compressed, 200_001).unwrap_err();
        assert!(error.to_string().contains("200000 bytes"), "{error}");
    }

    #[test]
    fn a_failing_writer_is_a_write_error() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let id = ObjectId::null(gix::hash::Kind::Sha1);
        let compressed = deflate(b"content");
        let error = inflate_into(
            &mut compressed.as_slice(),
            7,
            &mut Full,
            &|reason| BlobError::Corrupt {
                id,
                pack: PathBuf::new(),
                offset: 0,
                reason,
            },
            &|source| BlobError::Write { id, source },
        )
        .unwrap_err();
        assert!(matches!(error, BlobError::Write { .. }), "{error:?}");
    }

    #[test]
    fn a_blob_not_in_any_pack_is_left_to_the_object_database() {
        let dir = tempfile::tempdir().unwrap();
        let id = ObjectId::null(gix::hash::Kind::Sha1);
        let packs = PackedBlobs::open(dir.path());
        assert!(!packs.stream(&id, &mut Vec::new()).unwrap());
    }
}
