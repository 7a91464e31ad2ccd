//! Receiving a pack: the stream a fetch downloads, stored with its index, in bounded memory.
//!
//! [`store_pack`] reads the pack stream once, from its first byte to its trailer. Every byte it
//! consumes is appended to a temporary file in the pack directory and fed to the pack's SHA-1 and
//! to the current entry's CRC-32. Each entry's zlib stream is inflated in chunks of [`CHUNK`]
//! bytes: a whole object (commit, tree, blob, tag) is hashed while it is inflated and never held
//! whole; a delta's output is thrown away, only its offset, size, CRC and base are recorded. The
//! deltas are then resolved from the temporary file (ordinary seeks and reads, no memory map):
//! starting from each object that is the base of a delta, the base is inflated whole, each of its
//! children applied to it and hashed, and the walk continues with the children's own children.
//! The walk keeps an explicit stack (a chain 10,000 deep does not touch the call stack) and drops
//! a base as soon as its last child is applied; a child without children of its own is hashed as
//! its delta is applied and never held whole.
//!
//! What is held in memory, and why:
//! - per entry, a few dozen bytes (offset, size, CRC, base, and then its id and kind), because
//!   the index lists every object and the deltas need their bases found;
//! - a few buffers of [`CHUNK`] bytes for reading, inflating and writing;
//! - while deltas are resolved, the objects on the current delta chain that still have children
//!   to apply, plus the one being produced when it has children of its own. For a straight chain
//!   that is two objects at a time; a blob stored whole that no delta uses is never held at all,
//!   so a 200 MB blob costs a few buffers, not 200 MB. The server chooses these objects (a few
//!   bytes of delta can make gigabytes), so their total is capped by the caller's
//!   `max_delta_memory`: past it the store fails with [`PackError::DeltaMemory`]. (Measured in release under `/usr/bin/time
//!   -v`: a 200 MB pack of one incompressible blob peaks at 5.3 MB resident, a 200 MB pack of
//!   20,480 blobs of 10 KiB at 7.1 MB; `git index-pack` on the same packs: 209 MB and 5.5 MB.)
//!
//! A delta result that is held whole grows as its instructions really produce it, up to the
//! size the delta declares; a few bytes of copy instructions can declare and produce a large
//! object, as in Git, so such an object costs its size, like any blob of that size would.
//!
//! A thin pack (deltas against objects the receiving repository already has) is completed as
//! `git index-pack --fix-thin` does: each missing base, taken from the repository through the
//! caller's `base_of`, is appended to the pack as a whole object, the object count in the header
//! is rewritten and the trailer recomputed by streaming the file. The index is version 2 and
//! byte-identical to the one `git index-pack` writes for the same pack. The pack is renamed into
//! place before its index, so that a reader never finds an index without its pack; on any error
//! or interruption the temporary files are removed and the pack directory is left as it was.
//!
//! The server controls every byte: declared sizes and counts are never used to allocate up
//! front (buffers grow as data really arrives, capped by what was declared), delta instructions
//! are checked against their base and their declared result, arithmetic overflows are errors, and
//! the `interrupt` flag is checked between entries, inside long inflates and on every delta copy.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use flate2::{Compression, Crc, Decompress, FlushDecompress, Status};
use gitops_core::escape::EscapedPath;
use gix::ObjectId;
use gix::hash::Hasher;
use gix::object::Kind;
use gix::odb::pack::data::entry::Header;
use tempfile::NamedTempFile;

/// The size of the read, inflate and write buffers.
const CHUNK: usize = 64 * 1024;

/// The length of a SHA-1 in bytes: object ids, the pack trailer and the index checksum.
const HASH_LEN: usize = 20;

/// The size of the pack header: `PACK`, the version and the object count.
const PACK_HEADER_LEN: u64 = 12;

/// Entries reserved up front at most, whatever count the pack header declares.
const MAX_RESERVED_ENTRIES: usize = 4096;

/// How the temporary files of a pack being received are named in the pack directory: a file
/// with this prefix is unfinished (its process died before renaming it into place).
pub(super) const TEMPORARY_PREFIX: &str = ".tmp-pack-";

/// A new temporary file in `pack_dir`, named with [`TEMPORARY_PREFIX`].
fn temporary_file(pack_dir: &Path) -> io::Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(TEMPORARY_PREFIX)
        .tempfile_in(pack_dir)
}

/// A received pack, stored in the pack directory with its index.
#[derive(Debug)]
pub(super) struct StoredPack {
    /// The pack file, `pack-<checksum>.pack`.
    pub(super) pack: PathBuf,
    /// Its index, `pack-<checksum>.idx`.
    pub(super) index: PathBuf,
    /// How many objects the stored pack holds (thin bases included).
    pub(super) objects: u32,
}

/// Why a pack could not be received and stored.
#[derive(Debug, thiserror::Error)]
pub(super) enum PackError {
    /// The stream could not be read.
    #[error("cannot read the pack stream at offset {offset}")]
    Read {
        /// How many bytes of the pack had been read.
        offset: u64,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The stream ended before the pack did.
    #[error("the pack stream ends early, at offset {offset}, in {what}")]
    Truncated {
        /// How many bytes of the pack had been read.
        offset: u64,
        /// The part of the pack that was being read.
        what: &'static str,
    },
    /// The 12-byte header is not that of a pack this reader understands.
    #[error("not a Git pack: {reason}")]
    Header {
        /// What is wrong.
        reason: String,
    },
    /// An entry is malformed: its header, its zlib stream, its size or its delta.
    #[error("the pack entry at offset {offset} is corrupt: {reason}")]
    Corrupt {
        /// Where the entry starts in the pack.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An offset delta names a base that is not the start of an earlier entry.
    #[error(
        "the delta at offset {offset} names its base {distance} bytes back, which is not the start of an earlier entry of the pack"
    )]
    OfsBase {
        /// Where the delta starts in the pack.
        offset: u64,
        /// The distance back to the base it names.
        distance: u64,
    },
    /// The trailer is not the SHA-1 of the pack.
    #[error("the pack's trailer {found} is not its checksum {computed}")]
    Checksum {
        /// The trailer that was received.
        found: ObjectId,
        /// The SHA-1 of the bytes received before it.
        computed: ObjectId,
    },
    /// A reference delta's base is neither in the pack nor in the repository.
    #[error(
        "the delta at offset {offset} needs base object {base}, which is neither in the pack nor in the repository"
    )]
    MissingBase {
        /// The base the delta names.
        base: ObjectId,
        /// Where the delta starts in the pack.
        offset: u64,
    },
    /// A delta could not be resolved although its bases were looked up.
    #[error(
        "the delta at offset {offset} cannot be resolved: its chain of bases never reaches an object"
    )]
    Unresolved {
        /// Where the delta starts in the pack.
        offset: u64,
    },
    /// Resolving a delta would hold more bytes of objects in memory than allowed.
    #[error(
        "resolving the entry at offset {offset} would hold {needed} bytes of objects in memory, over the limit of {limit}"
    )]
    DeltaMemory {
        /// Where the entry starts in the pack.
        offset: u64,
        /// The bytes that would be held: its own size and the bases held above it.
        needed: u64,
        /// The limit the caller set.
        limit: u64,
    },
    /// An object the repository handed over as a thin base does not hash to its id.
    #[error("the repository's object {id} hashes to {actual}")]
    BaseMismatch {
        /// The id that was asked for.
        id: ObjectId,
        /// The id of what was handed over.
        actual: ObjectId,
    },
    /// Completing the thin pack would hold more objects than a pack can count.
    #[error("the pack would hold more than {} objects", u32::MAX)]
    TooManyObjects,
    /// Hashing an object or the pack detected a SHA-1 collision attack.
    #[error("hashing {what} at offset {offset} failed: {reason}")]
    Hash {
        /// What was hashed: an object or the pack.
        what: &'static str,
        /// Where it starts in the pack.
        offset: u64,
        /// The hasher's complaint.
        reason: String,
    },
    /// The temporary pack or index file could not be written or read.
    #[error("cannot write or read the temporary file {}", EscapedPath(path))]
    Temporary {
        /// The temporary file, or the directory it was to be made in.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The finished pack or index could not be moved into place.
    #[error("cannot store {}", EscapedPath(path))]
    Store {
        /// The pack or index path.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The `interrupt` flag was raised.
    #[error("storing the pack was interrupted")]
    Interrupted,
}

/// Reads a pack stream to its end (trailer included), stores it as `pack-<checksum>.pack` +
/// `.idx` (index v2, byte-identical to what `git index-pack` writes for the same pack) in
/// `pack_dir`, and returns them.
///
/// `base_of` hands over the kind and data of a reference-delta base that is not in the pack (a
/// thin pack) from the repository the pack is fetched into; `None` means it is not there either,
/// an error. `on_progress` is called as data arrives and objects are indexed, with the bytes of
/// pack read so far and the objects indexed so far. Raising `interrupt` stops the store with
/// [`PackError::Interrupted`]. `max_delta_memory` bounds the bytes of objects held at once while
/// deltas are resolved (a base, the bases above it on its chain, the result being made): a few
/// bytes of delta can declare and really produce gigabytes, so past it the store fails with
/// [`PackError::DeltaMemory`]. On any error nothing is left in `pack_dir`.
pub(super) fn store_pack(
    input: &mut dyn BufRead,
    pack_dir: &Path,
    max_delta_memory: u64,
    base_of: &mut dyn FnMut(&gix::oid, &mut Vec<u8>) -> Option<gix::object::Kind>,
    on_progress: &mut dyn FnMut(u64, u64),
    interrupt: &AtomicBool,
) -> Result<StoredPack, PackError> {
    let mut temp = temporary_file(pack_dir).map_err(|source| PackError::Temporary {
        path: pack_dir.to_owned(),
        source,
    })?;
    let temp_path = temp.path().to_owned();
    let temporary = |source| PackError::Temporary {
        path: temp_path.clone(),
        source,
    };
    let received = receive(
        input,
        temp.as_file_mut(),
        &temp_path,
        on_progress,
        interrupt,
    )?;
    let reader = temp.reopen().map_err(temporary)?;
    let mut resolver = Resolver::new(received, reader, &temp_path, on_progress, interrupt);
    resolver.max_held = max_delta_memory;
    resolver.resolve_in_pack()?;
    resolver.resolve_thin(temp.as_file_mut(), base_of)?;
    let (entries, trailer, pack_len) = resolver.finish()?;
    let checksum = match trailer {
        Some(trailer) => trailer,
        None => complete_thin(temp.as_file_mut(), pack_len, entries.len()).map_err(temporary)?,
    };

    let objects = u32::try_from(entries.len()).map_err(|_| PackError::TooManyObjects)?;
    let mut index = temporary_file(pack_dir).map_err(|source| PackError::Temporary {
        path: pack_dir.to_owned(),
        source,
    })?;
    let index_path = index.path().to_owned();
    write_index(index.as_file_mut(), entries, &checksum).map_err(|source| {
        PackError::Temporary {
            path: index_path.clone(),
            source,
        }
    })?;

    let name = format!("pack-{}", checksum.to_hex());
    let pack = pack_dir.join(format!("{name}.pack"));
    let index_dest = pack_dir.join(format!("{name}.idx"));
    let placed = persist(temp, &pack)?;
    if let Err(err) = persist(index, &index_dest) {
        if placed {
            // Not a pack without its index: take back the one just placed.
            let _ = std::fs::remove_file(&pack);
        }
        return Err(err);
    }
    Ok(StoredPack {
        pack,
        index: index_dest,
        objects,
    })
}

/// Move a finished temporary file to `dest`, keeping a file already there (same name, same
/// content: the name is the pack's checksum). Whether it was moved (not already there).
fn persist(temp: NamedTempFile, dest: &Path) -> Result<bool, PackError> {
    match temp.persist_noclobber(dest) {
        Ok(_) => Ok(true),
        Err(err) if err.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(PackError::Store {
            path: dest.to_owned(),
            source: err.error,
        }),
    }
}

/// Where bytes come from for inflating: the pack stream (through the tee), or any buffered
/// reader (the temporary file, a pack file of the cache).
pub(super) trait Input {
    /// The bytes available now; empty at the end of the input.
    fn fill(&mut self) -> io::Result<&[u8]>;
    /// Mark `n` bytes of those returned by [`Input::fill`] as used.
    fn advance(&mut self, n: usize) -> io::Result<()>;
    /// How many bytes of the pack stream have been consumed (0 where it does not matter).
    fn position(&self) -> u64;
}

/// The pack stream, read once: what is consumed goes to the temporary file, the pack's SHA-1 and
/// the current entry's CRC-32.
struct Tee<'a> {
    input: &'a mut dyn BufRead,
    out: BufWriter<&'a mut File>,
    pack_hash: Hasher,
    crc: Crc,
    /// Bytes consumed so far: the offset in the pack of the next byte.
    offset: u64,
    /// Whether consumed bytes go into the pack's SHA-1 (not the trailer's).
    hashing: bool,
    /// A failure to write the temporary file, kept for the error (an `io::Error` from `consume`
    /// would otherwise look like a failure of the stream).
    write_error: Option<io::Error>,
}

impl Input for Tee<'_> {
    fn fill(&mut self) -> io::Result<&[u8]> {
        self.input.fill_buf()
    }

    fn advance(&mut self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let buf = self.input.fill_buf()?;
        let bytes = buf.get(..n).ok_or_else(|| {
            io::Error::other("the pack stream consumed more than it had buffered")
        })?;
        if let Err(err) = self.out.write_all(bytes) {
            let message = err.to_string();
            self.write_error = Some(err);
            return Err(io::Error::other(message));
        }
        if self.hashing {
            self.pack_hash.update(bytes);
        }
        self.crc.update(bytes);
        self.input.consume(n);
        self.offset += n as u64;
        Ok(())
    }

    fn position(&self) -> u64 {
        self.offset
    }
}

impl Tee<'_> {
    /// Read exactly `buf.len()` bytes through the tee.
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let available = self.fill()?;
            if available.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let n = available.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&available[..n]);
            self.advance(n)?;
            done += n;
        }
        Ok(())
    }

    fn read_byte(&mut self) -> io::Result<u8> {
        let mut byte = [0u8; 1];
        self.read_exact(&mut byte)?;
        Ok(byte[0])
    }
}

impl<R: BufRead> Input for R {
    fn fill(&mut self) -> io::Result<&[u8]> {
        self.fill_buf()
    }

    fn advance(&mut self, n: usize) -> io::Result<()> {
        BufRead::consume(self, n);
        Ok(())
    }

    fn position(&self) -> u64 {
        0
    }
}

/// An entry's zlib stream, inflated from an [`Input`] that is left just after it; fails when the
/// stream inflates to more or fewer bytes than `declared`, or `interrupt` is raised.
pub(super) struct Inflate<'a> {
    input: &'a mut dyn Input,
    z: &'a mut Decompress,
    declared: u64,
    remaining: u64,
    done: bool,
    interrupt: &'a AtomicBool,
}

impl<'a> Inflate<'a> {
    pub(super) fn new(
        input: &'a mut dyn Input,
        z: &'a mut Decompress,
        declared: u64,
        interrupt: &'a AtomicBool,
    ) -> Self {
        z.reset(true);
        Inflate {
            input,
            z,
            declared,
            remaining: declared,
            done: false,
            interrupt,
        }
    }
}

impl Read for Inflate<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.done || out.is_empty() {
            return Ok(0);
        }
        if self.interrupt.load(Ordering::Relaxed) {
            return Err(io::Error::other("interrupted"));
        }
        // One byte more than is left, so that data beyond the declared size is seen.
        let limit = usize::try_from(self.remaining.saturating_add(1))
            .map_or(out.len(), |left| left.min(out.len()));
        loop {
            let input = self.input.fill()?;
            let at_end = input.is_empty();
            let (in_before, out_before) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress(input, &mut out[..limit], FlushDecompress::None)
                .map_err(|err| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the zlib stream is invalid ({err})"),
                    )
                })?;
            let consumed = usize::try_from(self.z.total_in() - in_before).unwrap_or(usize::MAX);
            let produced = self.z.total_out() - out_before;
            self.input.advance(consumed)?;
            if produced > self.remaining {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("inflates to more than its declared {} bytes", self.declared),
                ));
            }
            self.remaining -= produced;
            if status == Status::StreamEnd {
                self.done = true;
                if self.remaining != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "inflates to {} bytes, not its declared {}",
                            self.declared - self.remaining,
                            self.declared
                        ),
                    ));
                }
            }
            if produced > 0 || self.done {
                // `produced` is at most `limit`, a `usize`.
                return Ok(produced as usize);
            }
            if at_end {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the zlib stream ends early",
                ));
            }
            if consumed == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the zlib stream makes no progress",
                ));
            }
        }
    }
}

/// What an entry is: a whole object, or a delta against a base.
#[derive(Clone, Copy, Debug)]
enum Base {
    /// A whole object of this kind.
    Whole(Kind),
    /// An offset delta; the base is the entry at this index.
    Ofs(u32),
    /// A reference delta; the base's id is at this index of the reference bases.
    Ref(u32),
}

/// One entry of the pack, as recorded while receiving it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Where the entry starts (its header).
    offset: u64,
    /// Where its zlib stream starts.
    data_offset: u64,
    /// The declared size of its inflated data (the object, or the delta).
    size: u64,
    /// The CRC-32 of the entry's bytes, header and zlib stream.
    crc: u32,
    base: Base,
}

/// The first pass's findings.
struct Received {
    entries: Vec<Entry>,
    /// The ids of whole objects, by entry index (`None` for deltas until resolved).
    ids: Vec<Option<(ObjectId, Kind)>>,
    ref_bases: Vec<ObjectId>,
    trailer: ObjectId,
    /// The length of the pack without its trailer.
    pack_len: u64,
    /// Objects hashed so far.
    indexed: u64,
}

/// Pass one: read the stream to its trailer into `file`, hashing whole objects.
fn receive(
    input: &mut dyn BufRead,
    file: &mut File,
    temp_path: &Path,
    on_progress: &mut dyn FnMut(u64, u64),
    interrupt: &AtomicBool,
) -> Result<Received, PackError> {
    let mut stream = Receiving {
        tee: Tee {
            input,
            out: BufWriter::with_capacity(CHUNK, file),
            pack_hash: gix::hash::hasher(gix::hash::Kind::Sha1),
            crc: Crc::new(),
            offset: 0,
            hashing: true,
            write_error: None,
        },
        temp_path,
        interrupt,
        z: Decompress::new(true),
        chunk: vec![0u8; CHUNK],
    };
    let count = stream.header()?;
    let reserve =
        usize::try_from(count).map_or(MAX_RESERVED_ENTRIES, |n| n.min(MAX_RESERVED_ENTRIES));
    let mut entries: Vec<Entry> = Vec::with_capacity(reserve);
    let mut ids: Vec<Option<(ObjectId, Kind)>> = Vec::with_capacity(reserve);
    let mut ref_bases = Vec::new();
    let mut indexed = 0u64;
    for _ in 0..count {
        if interrupt.load(Ordering::Relaxed) {
            return Err(PackError::Interrupted);
        }
        let offset = stream.tee.offset;
        stream.tee.crc.reset();
        let (type_id, size) = read_entry_header(&mut stream.tee)
            .map_err(|err| stream.fail(err, offset, "an entry header"))?;
        let base = stream.base(type_id, offset, &entries, &mut ref_bases)?;
        let data_offset = stream.tee.offset;
        let id = match base {
            Base::Whole(kind) => {
                let id = stream.hash_whole(kind, size, offset, &mut |position| {
                    on_progress(position, indexed);
                })?;
                indexed += 1;
                Some((id, kind))
            }
            Base::Ofs(_) | Base::Ref(_) => {
                stream.skip_delta(size, offset)?;
                None
            }
        };
        entries.push(Entry {
            offset,
            data_offset,
            size,
            crc: stream.tee.crc.sum(),
            base,
        });
        ids.push(id);
        on_progress(stream.tee.offset, indexed);
    }
    let (trailer, pack_len) = stream.trailer()?;
    Ok(Received {
        entries,
        ids,
        ref_bases,
        trailer,
        pack_len,
        indexed,
    })
}

/// The pack stream while pass one reads it, with what its steps share.
struct Receiving<'a, 'p> {
    tee: Tee<'a>,
    temp_path: &'p Path,
    interrupt: &'p AtomicBool,
    z: Decompress,
    chunk: Vec<u8>,
}

impl Receiving<'_, '_> {
    /// The error for a failure to read `what` of the entry at `entry`: an interruption, the
    /// temporary file, a truncated stream, corrupt data or a failing stream.
    fn fail(&mut self, err: io::Error, entry: u64, what: &'static str) -> PackError {
        if self.interrupt.load(Ordering::Relaxed) {
            return PackError::Interrupted;
        }
        if let Some(source) = self.tee.write_error.take() {
            return PackError::Temporary {
                path: self.temp_path.to_owned(),
                source,
            };
        }
        match err.kind() {
            io::ErrorKind::UnexpectedEof => PackError::Truncated {
                offset: self.tee.offset,
                what,
            },
            io::ErrorKind::InvalidData => PackError::Corrupt {
                offset: entry,
                reason: err.to_string(),
            },
            _ => PackError::Read {
                offset: self.tee.offset,
                source: err,
            },
        }
    }

    /// The pack header: its signature and version checked, the object count it declares.
    fn header(&mut self) -> Result<u32, PackError> {
        let mut header = [0u8; PACK_HEADER_LEN as usize];
        self.tee
            .read_exact(&mut header)
            .map_err(|err| self.fail(err, 0, "the pack header"))?;
        if &header[..4] != b"PACK" {
            return Err(PackError::Header {
                reason: format!(
                    "it starts with {:?}, not \"PACK\"",
                    header[..4].escape_ascii().to_string()
                ),
            });
        }
        let version = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if version != 2 && version != 3 {
            return Err(PackError::Header {
                reason: format!("version {version} (only 2 and 3 are known)"),
            });
        }
        Ok(u32::from_be_bytes([
            header[8], header[9], header[10], header[11],
        ]))
    }

    /// What the entry at `offset` of type `type_id` is: a whole object, or a delta whose base is
    /// read from the stream (an earlier entry, or an id recorded in `ref_bases`).
    fn base(
        &mut self,
        type_id: u8,
        offset: u64,
        entries: &[Entry],
        ref_bases: &mut Vec<ObjectId>,
    ) -> Result<Base, PackError> {
        Ok(match type_id {
            1 => Base::Whole(Kind::Commit),
            2 => Base::Whole(Kind::Tree),
            3 => Base::Whole(Kind::Blob),
            4 => Base::Whole(Kind::Tag),
            6 => {
                let distance = read_ofs_distance(&mut self.tee)
                    .map_err(|err| self.fail(err, offset, "an offset delta's base"))?;
                let base_offset = offset
                    .checked_sub(distance)
                    .filter(|_| distance > 0)
                    .ok_or(PackError::OfsBase { offset, distance })?;
                let index = entries
                    .binary_search_by_key(&base_offset, |entry| entry.offset)
                    .map_err(|_| PackError::OfsBase { offset, distance })?;
                // At most `count` entries, a `u32`.
                Base::Ofs(index as u32)
            }
            7 => {
                let mut id = [0u8; HASH_LEN];
                self.tee
                    .read_exact(&mut id)
                    .map_err(|err| self.fail(err, offset, "a reference delta's base"))?;
                ref_bases.push(ObjectId::from(id));
                Base::Ref((ref_bases.len() - 1) as u32)
            }
            other => {
                return Err(PackError::Corrupt {
                    offset,
                    reason: format!("unknown object type {other}"),
                });
            }
        })
    }

    /// Inflate the whole object of `kind` and `size` that starts at `offset`, hashing it chunk by
    /// chunk (`progress` is told the stream's position after each): its id.
    fn hash_whole(
        &mut self,
        kind: Kind,
        size: u64,
        offset: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<ObjectId, PackError> {
        let mut hasher = object_hasher(kind, size);
        let mut inflate = Inflate::new(&mut self.tee, &mut self.z, size, self.interrupt);
        loop {
            let n = match inflate.read(&mut self.chunk) {
                Ok(n) => n,
                Err(err) => return Err(self.fail(err, offset, "an entry's zlib stream")),
            };
            if n == 0 {
                break;
            }
            hasher.update(&self.chunk[..n]);
            progress(inflate.input.position());
        }
        hasher.try_finalize().map_err(|err| PackError::Hash {
            what: "an object",
            offset,
            reason: err.to_string(),
        })
    }

    /// Read past the delta of `size` bytes that starts at `offset` (it is resolved later).
    fn skip_delta(&mut self, size: u64, offset: u64) -> Result<(), PackError> {
        let mut inflate = Inflate::new(&mut self.tee, &mut self.z, size, self.interrupt);
        match io::copy(&mut inflate, &mut io::sink()) {
            Ok(_) => Ok(()),
            Err(err) => Err(self.fail(err, offset, "an entry's zlib stream")),
        }
    }

    /// The trailer, checked against the SHA-1 of everything before it, and the pack's length
    /// without it; the temporary file flushed.
    fn trailer(&mut self) -> Result<(ObjectId, u64), PackError> {
        let pack_len = self.tee.offset;
        let computed = std::mem::replace(
            &mut self.tee.pack_hash,
            gix::hash::hasher(gix::hash::Kind::Sha1),
        )
        .try_finalize()
        .map_err(|err| PackError::Hash {
            what: "the pack",
            offset: 0,
            reason: err.to_string(),
        })?;
        self.tee.hashing = false;
        let mut trailer = [0u8; HASH_LEN];
        self.tee
            .read_exact(&mut trailer)
            .map_err(|err| self.fail(err, pack_len, "the trailer"))?;
        let found = ObjectId::from(trailer);
        if found != computed {
            return Err(PackError::Checksum { found, computed });
        }
        self.tee
            .out
            .flush()
            .map_err(|source| PackError::Temporary {
                path: self.temp_path.to_owned(),
                source,
            })?;
        Ok((found, pack_len))
    }
}

/// The hasher of an object id, fed its header `<kind> <size>\0`.
fn object_hasher(kind: Kind, size: u64) -> Hasher {
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(kind.as_bytes());
    hasher.update(b" ");
    hasher.update(size.to_string().as_bytes());
    hasher.update(b"\0");
    hasher
}

/// An entry header's type and size: the type in bits 4-6 of the first byte, the size in base 128
/// little-endian (4 bits in the first byte).
fn read_entry_header(tee: &mut Tee<'_>) -> io::Result<(u8, u64)> {
    let mut byte = tee.read_byte()?;
    let type_id = (byte >> 4) & 0b111;
    let mut size = u64::from(byte & 0b1111);
    let mut shift = 4u32;
    while byte & 0x80 != 0 {
        byte = tee.read_byte()?;
        let part = u64::from(byte & 0x7f);
        if shift > 63 || (part << shift) >> shift != part {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the entry's size overflows 64 bits",
            ));
        }
        size |= part << shift;
        shift += 7;
    }
    Ok((type_id, size))
}

/// An offset delta's distance back to its base (big-endian base 128, each continuation adding
/// one, as Git writes it).
fn read_ofs_distance(tee: &mut Tee<'_>) -> io::Result<u64> {
    let overflow = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the base distance overflows 64 bits",
        )
    };
    let mut byte = tee.read_byte()?;
    let mut distance = u64::from(byte & 0x7f);
    while byte & 0x80 != 0 {
        byte = tee.read_byte()?;
        distance = distance
            .checked_add(1)
            .filter(|d| d.leading_zeros() >= 7)
            .ok_or_else(overflow)?;
        distance = (distance << 7) | u64::from(byte & 0x7f);
    }
    Ok(distance)
}

/// A base whose children are being applied: its data, its kind and the children left.
struct Frame {
    data: Vec<u8>,
    kind: Kind,
    children: Vec<u32>,
    next: usize,
}

/// Pass two: resolve the deltas from the temporary file.
struct Resolver<'a> {
    received: Received,
    /// Offset-delta children by base entry: `ofs_children[ofs_starts[i]..ofs_starts[i + 1]]`.
    ofs_starts: Vec<u32>,
    ofs_children: Vec<u32>,
    /// Reference-delta children by base id, removed as the base is resolved.
    ref_children: HashMap<ObjectId, Vec<u32>>,
    /// The temporary file, read back at entry offsets.
    input: BufReader<File>,
    temp_path: &'a Path,
    z: Decompress,
    on_progress: &'a mut dyn FnMut(u64, u64),
    interrupt: &'a AtomicBool,
    /// Where thin bases are appended, once the first one is: the end of the pack.
    append_at: Option<u64>,
    /// The most bytes of objects held at once while deltas are resolved.
    max_held: u64,
    /// The bytes of objects held now (the bases on the walk's stack).
    held: u64,
}

impl<'a> Resolver<'a> {
    fn new(
        received: Received,
        file: File,
        temp_path: &'a Path,
        on_progress: &'a mut dyn FnMut(u64, u64),
        interrupt: &'a AtomicBool,
    ) -> Self {
        let n = received.entries.len();
        let mut ofs_starts = vec![0u32; n + 1];
        let mut ref_children: HashMap<ObjectId, Vec<u32>> = HashMap::new();
        for (index, entry) in received.entries.iter().enumerate() {
            match entry.base {
                Base::Ofs(base) => ofs_starts[base as usize + 1] += 1,
                Base::Ref(base) => ref_children
                    .entry(received.ref_bases[base as usize])
                    .or_default()
                    .push(index as u32),
                Base::Whole(_) => {}
            }
        }
        for i in 0..n {
            ofs_starts[i + 1] += ofs_starts[i];
        }
        let mut fill = ofs_starts.clone();
        let mut ofs_children = vec![0u32; ofs_starts[n] as usize];
        for (index, entry) in received.entries.iter().enumerate() {
            if let Base::Ofs(base) = entry.base {
                let slot = &mut fill[base as usize];
                ofs_children[*slot as usize] = index as u32;
                *slot += 1;
            }
        }
        Resolver {
            received,
            ofs_starts,
            ofs_children,
            ref_children,
            input: BufReader::with_capacity(CHUNK, file),
            temp_path,
            max_held: u64::MAX,
            held: 0,
            z: Decompress::new(true),
            on_progress,
            interrupt,
            append_at: None,
        }
    }

    fn has_ofs_children(&self, index: usize) -> bool {
        self.ofs_starts[index] != self.ofs_starts[index + 1]
    }

    /// The children of entry `index` (if in the pack) with id `id`: its offset deltas, and the
    /// reference deltas naming it, taken out of the map.
    fn take_children(&mut self, index: Option<usize>, id: &ObjectId) -> Vec<u32> {
        let mut children = match index {
            Some(i) => self.ofs_children
                [self.ofs_starts[i] as usize..self.ofs_starts[i + 1] as usize]
                .to_vec(),
            None => Vec::new(),
        };
        if !self.ref_children.is_empty()
            && let Some(more) = self.ref_children.remove(id)
        {
            children.extend(more);
        }
        children
    }

    fn check_interrupt(&self) -> Result<(), PackError> {
        if self.interrupt.load(Ordering::Relaxed) {
            Err(PackError::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Map a failure reading entry `offset` back from the temporary file.
    fn fail(&self, err: io::Error, offset: u64) -> PackError {
        if self.interrupt.load(Ordering::Relaxed) {
            return PackError::Interrupted;
        }
        match err.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => PackError::Corrupt {
                offset,
                reason: err.to_string(),
            },
            _ => PackError::Temporary {
                path: self.temp_path.to_owned(),
                source: err,
            },
        }
    }

    /// Resolve every delta reachable from the whole objects of the pack.
    fn resolve_in_pack(&mut self) -> Result<(), PackError> {
        for index in 0..self.received.entries.len() {
            let entry = self.received.entries[index];
            let Base::Whole(kind) = entry.base else {
                continue;
            };
            let Some((id, _)) = self.received.ids[index] else {
                continue;
            };
            if !self.has_ofs_children(index) && !self.ref_children.contains_key(&id) {
                continue;
            }
            self.check_interrupt()?;
            self.check_held(entry.offset, entry.size)?;
            let data = self.inflate_whole(&entry)?;
            let children = self.take_children(Some(index), &id);
            self.walk(data, kind, children)?;
        }
        Ok(())
    }

    /// Resolve the deltas whose bases are not in the pack, appending each base to the pack.
    fn resolve_thin(
        &mut self,
        file: &mut File,
        base_of: &mut dyn FnMut(&gix::oid, &mut Vec<u8>) -> Option<Kind>,
    ) -> Result<(), PackError> {
        // The base needed by the earliest delta first, as `git index-pack` does. Resolving a
        // base only removes bases from the map, never adds one.
        let mut order: Vec<(u32, ObjectId)> = self
            .ref_children
            .iter()
            .map(|(base, children)| (children.iter().copied().min().unwrap_or(0), *base))
            .collect();
        order.sort_unstable();
        for (first, base) in order {
            if !self.ref_children.contains_key(&base) {
                continue;
            }
            self.check_interrupt()?;
            let delta_offset = self.received.entries[first as usize].offset;
            let mut data = Vec::new();
            let kind = base_of(&base, &mut data).ok_or(PackError::MissingBase {
                base,
                offset: delta_offset,
            })?;
            let mut hasher = object_hasher(kind, data.len() as u64);
            hasher.update(&data);
            let actual = hasher.try_finalize().map_err(|err| PackError::Hash {
                what: "a thin base",
                offset: delta_offset,
                reason: err.to_string(),
            })?;
            if actual != base {
                return Err(PackError::BaseMismatch { id: base, actual });
            }
            let entry = self
                .append(file, kind, &data)
                .map_err(|source| PackError::Temporary {
                    path: self.temp_path.to_owned(),
                    source,
                })?;
            if self.received.entries.len() >= u32::MAX as usize {
                return Err(PackError::TooManyObjects);
            }
            self.received.entries.push(entry);
            self.received.ids.push(Some((base, kind)));
            self.received.indexed += 1;
            let children = self.take_children(None, &base);
            self.walk(data, kind, children)?;
        }
        Ok(())
    }

    /// Append `data` to the pack as a whole object, as `git index-pack --fix-thin` does.
    fn append(&mut self, file: &mut File, kind: Kind, data: &[u8]) -> io::Result<Entry> {
        let offset = match self.append_at {
            Some(at) => at,
            None => {
                // The trailer goes; it is written again once the pack is complete.
                file.set_len(self.received.pack_len)?;
                self.received.pack_len
            }
        };
        file.seek(SeekFrom::Start(offset))?;
        let header = match kind {
            Kind::Commit => Header::Commit,
            Kind::Tree => Header::Tree,
            Kind::Blob => Header::Blob,
            Kind::Tag => Header::Tag,
        };
        let mut out = CrcWriter {
            inner: BufWriter::with_capacity(CHUNK, &mut *file),
            crc: Crc::new(),
            written: 0,
        };
        let header_len = header.write_to(data.len() as u64, &mut out)?;
        let mut encoder = flate2::write::ZlibEncoder::new(out, Compression::default());
        encoder.write_all(data)?;
        let mut out = encoder.finish()?;
        out.inner.flush()?;
        self.append_at = Some(offset + out.written);
        Ok(Entry {
            offset,
            data_offset: offset + header_len as u64,
            size: data.len() as u64,
            crc: out.crc.sum(),
            base: Base::Whole(kind),
        })
    }

    /// Inflate a whole entry from the temporary file into memory, growing the buffer as data
    /// arrives (never beyond the declared size, which the inflate checks).
    fn inflate_whole(&mut self, entry: &Entry) -> Result<Vec<u8>, PackError> {
        let mut data = Vec::new();
        self.input
            .seek(SeekFrom::Start(entry.data_offset))
            .map_err(|err| self.fail(err, entry.offset))?;
        let mut inflate = Inflate::new(&mut self.input, &mut self.z, entry.size, self.interrupt);
        let mut chunk = [0u8; 8192];
        let result = loop {
            match inflate.read(&mut chunk) {
                Ok(0) => break Ok(()),
                Ok(n) => grow(&mut data, &chunk[..n], entry.size),
                Err(err) => break Err(err),
            }
        };
        result.map_err(|err| self.fail(err, entry.offset))?;
        Ok(data)
    }

    /// Apply the deltas below a resolved base, depth first with an explicit stack.
    fn walk(&mut self, data: Vec<u8>, kind: Kind, children: Vec<u32>) -> Result<(), PackError> {
        if children.is_empty() {
            return Ok(());
        }
        self.check_held(0, data.len() as u64)?;
        self.held = data.len() as u64;
        let mut stack = vec![Frame {
            data,
            kind,
            children,
            next: 0,
        }];
        while let Some(top) = stack.last_mut() {
            if top.next == top.children.len() {
                if let Some(done) = stack.pop() {
                    self.held -= done.data.len() as u64;
                }
                continue;
            }
            self.check_interrupt()?;
            let child = top.children[top.next] as usize;
            top.next += 1;
            let last = top.next == top.children.len();
            let kind = top.kind;
            // A child is kept whole only when it may be a base itself.
            let keep = self.has_ofs_children(child) || !self.ref_children.is_empty();
            let (id, data) = self.apply(child, &top.data, kind, keep)?;
            if last {
                // The base is no longer needed: drop it before going down.
                if let Some(done) = stack.pop() {
                    self.held -= done.data.len() as u64;
                }
            }
            self.received.ids[child] = Some((id, kind));
            self.received.indexed += 1;
            (self.on_progress)(self.received.pack_len, self.received.indexed);
            if let Some(data) = data {
                let children = self.take_children(Some(child), &id);
                if !children.is_empty() {
                    self.held += data.len() as u64;
                    stack.push(Frame {
                        data,
                        kind,
                        children,
                        next: 0,
                    });
                }
            }
        }
        self.held = 0;
        Ok(())
    }

    /// Fail when holding `size` more bytes (the entry at `offset`) would pass the limit.
    fn check_held(&self, offset: u64, size: u64) -> Result<(), PackError> {
        let needed = self.held.saturating_add(size);
        if needed > self.max_held {
            return Err(PackError::DeltaMemory {
                offset,
                needed,
                limit: self.max_held,
            });
        }
        Ok(())
    }

    /// Apply the delta of entry `index` to `base`: the result's id, and the result itself when
    /// `keep`.
    fn apply(
        &mut self,
        index: usize,
        base: &[u8],
        kind: Kind,
        keep: bool,
    ) -> Result<(ObjectId, Option<Vec<u8>>), PackError> {
        let entry = self.received.entries[index];
        self.input
            .seek(SeekFrom::Start(entry.data_offset))
            .map_err(|err| self.fail(err, entry.offset))?;
        let inflate = Inflate::new(&mut self.input, &mut self.z, entry.size, self.interrupt);
        let mut delta = BufReader::with_capacity(8192, inflate);
        let mut kept = keep.then(Vec::new);
        let budget = self.max_held.saturating_sub(self.held);
        let result = apply_delta(
            base,
            &mut delta,
            kind,
            kept.as_mut(),
            budget,
            self.interrupt,
        );
        drop(delta);
        let id = match result {
            Ok(id) => id,
            Err(DeltaFault::Read(err)) => return Err(self.fail(err, entry.offset)),
            Err(DeltaFault::Invalid(reason)) => {
                return Err(PackError::Corrupt {
                    offset: entry.offset,
                    reason,
                });
            }
            Err(DeltaFault::Hash(reason)) => {
                return Err(PackError::Hash {
                    what: "an object",
                    offset: entry.offset,
                    reason,
                });
            }
            Err(DeltaFault::OverBudget(size)) => {
                return Err(PackError::DeltaMemory {
                    offset: entry.offset,
                    needed: self.held.saturating_add(size),
                    limit: self.max_held,
                });
            }
        };
        Ok((id, kept))
    }

    /// Check that every entry has its id, and hand back what the index needs.
    fn finish(self) -> Result<(Vec<IndexEntry>, Option<ObjectId>, u64), PackError> {
        let mut out = Vec::with_capacity(self.received.entries.len());
        for (entry, id) in self.received.entries.iter().zip(&self.received.ids) {
            let Some((id, _)) = id else {
                return Err(PackError::Unresolved {
                    offset: entry.offset,
                });
            };
            out.push(IndexEntry {
                id: *id,
                crc: entry.crc,
                offset: entry.offset,
            });
        }
        let trailer = self.append_at.is_none().then_some(self.received.trailer);
        let pack_len = self.append_at.unwrap_or(self.received.pack_len);
        Ok((out, trailer, pack_len))
    }
}

/// A writer that counts and CRCs what goes through it.
struct CrcWriter<W: Write> {
    inner: W,
    crc: Crc,
    written: u64,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Append `bytes` to `data`, growing its capacity at most to `declared` (already checked not to
/// be exceeded): at most doubling, so that a lying declared size never allocates up front.
fn grow(data: &mut Vec<u8>, bytes: &[u8], declared: u64) {
    let needed = data.len() + bytes.len();
    if needed > data.capacity() {
        let doubled = (data.capacity().max(CHUNK)).saturating_mul(2);
        let target = usize::try_from(declared)
            .map_or(doubled, |declared| doubled.min(declared))
            .max(needed);
        data.reserve_exact(target - data.len());
    }
    data.extend_from_slice(bytes);
}

/// Why a delta could not be applied.
enum DeltaFault {
    /// Its zlib stream could not be read (or is corrupt).
    Read(io::Error),
    /// Its instructions are invalid.
    Invalid(String),
    /// Hashing the result failed.
    Hash(String),
    /// The result, of the declared size, would be kept in memory beyond the budget.
    OverBudget(u64),
}

/// Apply a delta read from `delta` to `base`, hashing the result as an object of `kind` (and
/// keeping it in `keep` when given, if its declared size fits in `budget` bytes). Every
/// instruction is checked against the base and the result size the delta declares.
fn apply_delta(
    base: &[u8],
    delta: &mut dyn BufRead,
    kind: Kind,
    mut keep: Option<&mut Vec<u8>>,
    budget: u64,
    interrupt: &AtomicBool,
) -> Result<ObjectId, DeltaFault> {
    let base_size = read_delta_size(delta)?;
    if base_size != base.len() as u64 {
        return Err(DeltaFault::Invalid(format!(
            "the delta is for a base of {base_size} bytes, its base has {}",
            base.len()
        )));
    }
    let result_size = read_delta_size(delta)?;
    if keep.is_some() && result_size > budget {
        return Err(DeltaFault::OverBudget(result_size));
    }
    let mut hasher = object_hasher(kind, result_size);
    let mut written = 0u64;
    let mut emit = |bytes: &[u8], keep: &mut Option<&mut Vec<u8>>| -> Result<(), DeltaFault> {
        written += bytes.len() as u64;
        if written > result_size {
            return Err(DeltaFault::Invalid(format!(
                "the delta produces more than its declared {result_size} bytes"
            )));
        }
        hasher.update(bytes);
        if let Some(out) = keep.as_deref_mut() {
            grow(out, bytes, result_size);
        }
        Ok(())
    };
    let mut insert = [0u8; 127];
    loop {
        let at_end = delta.fill_buf().map_err(DeltaFault::Read)?.is_empty();
        if at_end {
            break;
        }
        let op = read_u8(delta)?;
        if op & 0x80 != 0 {
            // A few bytes of delta can copy megabytes: look at the flag on every copy.
            if interrupt.load(Ordering::Relaxed) {
                return Err(DeltaFault::Read(io::Error::other("interrupted")));
            }
            let (offset, size) = read_copy(op, delta)?;
            let end = offset + size;
            if end > base.len() as u64 {
                return Err(DeltaFault::Invalid(format!(
                    "the delta copies bytes {offset}..{end} of a base of {} bytes",
                    base.len()
                )));
            }
            // Both below `base.len()`.
            emit(&base[offset as usize..end as usize], &mut keep)?;
        } else if op != 0 {
            let n = usize::from(op);
            delta
                .read_exact(&mut insert[..n])
                .map_err(DeltaFault::Read)?;
            emit(&insert[..n], &mut keep)?;
        } else {
            return Err(DeltaFault::Invalid(
                "the delta has the reserved instruction 0".into(),
            ));
        }
    }
    if written != result_size {
        return Err(DeltaFault::Invalid(format!(
            "the delta produces {written} bytes, not its declared {result_size}"
        )));
    }
    hasher
        .try_finalize()
        .map_err(|err| DeltaFault::Hash(err.to_string()))
}

/// The base range a copy instruction `op` names: the offset and size bytes its flags announce
/// (a size of 0 means 64 KiB).
fn read_copy(op: u8, delta: &mut dyn BufRead) -> Result<(u64, u64), DeltaFault> {
    let mut offset = 0u64;
    for (bit, shift) in [(0x01, 0), (0x02, 8), (0x04, 16), (0x08, 24)] {
        if op & bit != 0 {
            offset |= u64::from(read_u8(delta)?) << shift;
        }
    }
    let mut size = 0u64;
    for (bit, shift) in [(0x10, 0), (0x20, 8), (0x40, 16)] {
        if op & bit != 0 {
            size |= u64::from(read_u8(delta)?) << shift;
        }
    }
    if size == 0 {
        size = 0x10000;
    }
    Ok((offset, size))
}

fn read_u8(delta: &mut dyn BufRead) -> Result<u8, DeltaFault> {
    let mut byte = [0u8; 1];
    delta.read_exact(&mut byte).map_err(DeltaFault::Read)?;
    Ok(byte[0])
}

/// A size in a delta's header: base 128, little-endian.
fn read_delta_size(delta: &mut dyn BufRead) -> Result<u64, DeltaFault> {
    let mut size = 0u64;
    let mut shift = 0u32;
    loop {
        let byte = read_u8(delta)?;
        let part = u64::from(byte & 0x7f);
        if shift > 63 || (part << shift) >> shift != part {
            return Err(DeltaFault::Invalid("a delta size overflows 64 bits".into()));
        }
        size |= part << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(size);
        }
    }
}

/// What the index records of one object.
#[derive(Clone, Copy, Debug)]
struct IndexEntry {
    id: ObjectId,
    crc: u32,
    offset: u64,
}

/// Finish a thin pack that had bases appended: rewrite the object count and write the trailer
/// computed by streaming the file. Returns the new checksum.
fn complete_thin(file: &mut File, pack_len: u64, objects: usize) -> io::Result<ObjectId> {
    let count = u32::try_from(objects).map_err(|_| io::Error::other("too many objects"))?;
    file.seek(SeekFrom::Start(8))?;
    file.write_all(&count.to_be_bytes())?;
    file.seek(SeekFrom::Start(0))?;
    let mut hashing = gix::hash::io::Write::new(io::sink(), gix::hash::Kind::Sha1);
    io::copy(
        &mut BufReader::with_capacity(CHUNK, (&mut *file).take(pack_len)),
        &mut hashing,
    )?;
    let checksum = hashing
        .hash
        .try_finalize()
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
    file.seek(SeekFrom::Start(pack_len))?;
    file.write_all(checksum.as_slice())?;
    file.flush()?;
    Ok(checksum)
}

/// Write a version 2 index of `entries` for the pack with checksum `pack_checksum`, as `git
/// index-pack` does: the fan-out, the sorted ids, their CRC-32s, their offsets (those of 2^31
/// and beyond in a table of 8-byte offsets), the pack's checksum and the index's own.
fn write_index(
    file: &mut File,
    mut entries: Vec<IndexEntry>,
    pack_checksum: &ObjectId,
) -> io::Result<()> {
    entries.sort_by(|a, b| a.id.cmp(&b.id).then(a.offset.cmp(&b.offset)));
    let mut out = gix::hash::io::Write::new(
        BufWriter::with_capacity(CHUNK, &mut *file),
        gix::hash::Kind::Sha1,
    );
    out.write_all(b"\xfftOc")?;
    out.write_all(&2u32.to_be_bytes())?;
    let mut fan_out = [0u32; 256];
    for entry in &entries {
        fan_out[usize::from(entry.id.as_slice()[0])] += 1;
    }
    let mut total = 0u32;
    for count in fan_out {
        total += count;
        out.write_all(&total.to_be_bytes())?;
    }
    for entry in &entries {
        out.write_all(entry.id.as_slice())?;
    }
    for entry in &entries {
        out.write_all(&entry.crc.to_be_bytes())?;
    }
    let mut large = Vec::new();
    for entry in &entries {
        let small = if entry.offset < 1 << 31 {
            entry.offset as u32
        } else {
            let index = u32::try_from(large.len())
                .ok()
                .filter(|index| *index < 1 << 31)
                .ok_or_else(|| io::Error::other("too many large offsets"))?;
            large.push(entry.offset);
            index | 1 << 31
        };
        out.write_all(&small.to_be_bytes())?;
    }
    for offset in large {
        out.write_all(&offset.to_be_bytes())?;
    }
    out.write_all(pack_checksum.as_slice())?;
    let checksum = std::mem::replace(&mut out.hash, gix::hash::hasher(gix::hash::Kind::Sha1))
        .try_finalize()
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
    out.inner.write_all(checksum.as_slice())?;
    out.inner.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    /// Run `git` in `dir` with `stdin`, check it succeeded and return its output.
    fn git_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let mut child = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("git runs");
        let mut input = child.stdin.take().expect("stdin");
        let stdin = stdin.to_vec();
        let writer = std::thread::spawn(move || input.write_all(&stdin));
        let output = child.wait_with_output().expect("git finishes");
        writer.join().expect("writer").expect("stdin written");
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
        git_in(dir, args, b"")
    }

    /// Deterministic pseudo-random bytes (xorshift), incompressible enough for zlib.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    /// A `git fast-import` stream of commits on `main`, each writing the given files.
    #[derive(Default)]
    struct History {
        stream: Vec<u8>,
        commits: usize,
    }

    impl History {
        fn commit(&mut self, files: &[(&str, &[u8])]) {
            self.commits += 1;
            let n = self.commits;
            let message = format!("commit {n}\n");
            self.stream.extend_from_slice(
                format!(
                    "commit refs/heads/main\nmark :{n}\ncommitter T <t@example.com> {} +0000\ndata {}\n{message}",
                    1_700_000_000 + n,
                    message.len()
                )
                .as_bytes(),
            );
            if n > 1 {
                self.stream
                    .extend_from_slice(format!("from :{}\n", n - 1).as_bytes());
            }
            for (path, data) in files {
                self.stream.extend_from_slice(
                    format!("M 100644 inline {path}\ndata {}\n", data.len()).as_bytes(),
                );
                self.stream.extend_from_slice(data);
                self.stream.push(b'\n');
            }
        }

        fn import(&self, dir: &Path) {
            git(dir, &["init", "-q", "-b", "main"]);
            git_in(dir, &["fast-import", "--quiet"], &self.stream);
        }
    }

    /// A text file of `lines` lines of hexadecimal noise.
    fn text(seed: u64, lines: usize) -> Vec<Vec<u8>> {
        noise(seed, lines * 16)
            .chunks(16)
            .map(|chunk| {
                let mut line: Vec<u8> = chunk
                    .iter()
                    .flat_map(|b| format!("{b:02x}").into_bytes())
                    .collect();
                line.push(b'\n');
                line
            })
            .collect()
    }

    /// A repository of `commits` commits editing a few text files, so that packs have deltas.
    fn edited_repo(dir: &Path, commits: usize) {
        let mut files: Vec<Vec<Vec<u8>>> = (0..4).map(|i| text(i, 120)).collect();
        let mut history = History::default();
        for c in 0..commits {
            let file = c % files.len();
            let line = (c * 37) % 120;
            files[file][line] = text(1000 + c as u64, 1).remove(0);
            if c % 3 == 0 {
                files[file].push(text(5000 + c as u64, 1).remove(0));
            }
            let contents: Vec<(String, Vec<u8>)> = files
                .iter()
                .enumerate()
                .map(|(i, lines)| (format!("dir{}/file{i}.txt", i % 2), lines.concat()))
                .collect();
            let refs: Vec<(&str, &[u8])> = contents
                .iter()
                .map(|(path, data)| (path.as_str(), data.as_slice()))
                .collect();
            history.commit(&refs);
        }
        history.import(dir);
    }

    /// `git pack-objects --stdout --revs` of the revisions in `revs`, with `flags`.
    fn pack_of(repo: &Path, revs: &str, flags: &[&str]) -> Vec<u8> {
        let mut args = vec!["pack-objects", "--stdout", "--revs", "-q"];
        args.extend_from_slice(flags);
        git_in(repo, &args, revs.as_bytes())
    }

    fn no_base(_: &gix::oid, _: &mut Vec<u8>) -> Option<Kind> {
        None
    }

    fn store(pack: &[u8], dir: &Path) -> Result<StoredPack, PackError> {
        store_within(pack, dir, u64::MAX)
    }

    fn store_within(
        pack: &[u8],
        dir: &Path,
        max_delta_memory: u64,
    ) -> Result<StoredPack, PackError> {
        store_pack(
            &mut io::BufReader::with_capacity(1000, pack),
            dir,
            max_delta_memory,
            &mut no_base,
            &mut |_, _| {},
            &AtomicBool::new(false),
        )
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("readable")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// Store `pack` and compare with `git index-pack` on the same bytes: same name, same index,
    /// same pack bytes; `git verify-pack` accepts ours. Returns the longest delta chain.
    fn check_against_git(repo: &Path, pack: &[u8]) -> u64 {
        let ours = tempfile::tempdir().expect("tempdir");
        let stored = store(pack, ours.path()).expect("stored");
        let theirs = tempfile::tempdir().expect("tempdir");
        let their_pack = theirs.path().join("p.pack");
        std::fs::write(&their_pack, pack).expect("written");
        let hex = String::from_utf8(git(
            repo,
            &["index-pack", their_pack.to_str().expect("utf-8")],
        ))
        .expect("utf-8");
        let hex = hex.trim().trim_start_matches("pack\t");
        assert_eq!(
            stored.pack.file_name().expect("name").to_string_lossy(),
            format!("pack-{hex}.pack")
        );
        assert_eq!(std::fs::read(&stored.pack).expect("pack"), pack);
        assert_eq!(
            std::fs::read(&stored.index).expect("our index"),
            std::fs::read(theirs.path().join("p.idx")).expect("git's index"),
            "the index differs from git's"
        );
        assert_eq!(listing(ours.path()).len(), 2, "only the pack and its index");
        let objects = u32::from_be_bytes(pack[8..12].try_into().expect("4 bytes"));
        assert_eq!(stored.objects, objects);
        let verify = String::from_utf8(git(
            repo,
            &["verify-pack", "-v", stored.index.to_str().expect("utf-8")],
        ))
        .expect("utf-8");
        verify
            .lines()
            .filter_map(|line| line.strip_prefix("chain length = "))
            .filter_map(|rest| rest.split(':').next()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn ofs_and_ref_delta_packs_index_as_git_does() {
        let repo = tempfile::tempdir().expect("tempdir");
        edited_repo(repo.path(), 60);
        let ofs = pack_of(
            repo.path(),
            "main\n",
            &["--delta-base-offset", "--no-reuse-delta"],
        );
        assert!(
            check_against_git(repo.path(), &ofs) >= 2,
            "the pack has delta chains"
        );
        let refs = pack_of(repo.path(), "main\n", &["--no-reuse-delta"]);
        assert_ne!(ofs, refs);
        assert!(
            check_against_git(repo.path(), &refs) >= 2,
            "the pack has delta chains"
        );
    }

    #[test]
    fn a_large_incompressible_blob_and_an_empty_tree_index_as_git_does() {
        let repo = tempfile::tempdir().expect("tempdir");
        let mut history = History::default();
        history.commit(&[]);
        history.commit(&[("big.bin", &noise(7, 2 << 20))]);
        history.import(repo.path());
        let pack = pack_of(repo.path(), "main\n", &["--delta-base-offset"]);
        check_against_git(repo.path(), &pack);
        let empty = pack_of(repo.path(), "main~1\n", &["--delta-base-offset"]);
        check_against_git(repo.path(), &empty);
        let nothing = pack_of(repo.path(), "", &[]);
        check_against_git(repo.path(), &nothing);
    }

    #[test]
    fn a_delta_chain_over_a_thousand_deep_resolves() {
        let repo = tempfile::tempdir().expect("tempdir");
        let mut lines = text(1, 100);
        let mut history = History::default();
        for c in 0..2000 {
            lines[(c * 37) % 100] = text(10_000 + c as u64, 1).remove(0);
            history.commit(&[("f", &lines.concat())]);
        }
        history.import(repo.path());
        let pack = pack_of(
            repo.path(),
            "main\n",
            &[
                "--delta-base-offset",
                "--no-reuse-delta",
                "--depth=4095",
                "--window=10",
            ],
        );
        let depth = check_against_git(repo.path(), &pack);
        assert!(depth >= 1000, "the longest chain is {depth} deep");
    }

    /// A repository with `old` (tag) and `main`, and a bare repository holding only `old`.
    struct Thin {
        repo: tempfile::TempDir,
        old: tempfile::TempDir,
        pack: Vec<u8>,
    }

    fn thin_setup() -> Thin {
        let repo = tempfile::tempdir().expect("tempdir");
        edited_repo(repo.path(), 40);
        git(repo.path(), &["tag", "old", "main~10"]);
        let old = tempfile::tempdir().expect("tempdir");
        git(old.path(), &["init", "-q", "--bare"]);
        git(
            repo.path(),
            &[
                "push",
                "-q",
                old.path().to_str().expect("utf-8"),
                "old:refs/heads/main",
            ],
        );
        let pack = pack_of(
            repo.path(),
            "main\n^old\n",
            &["--thin", "--delta-base-offset", "--no-reuse-delta"],
        );
        Thin { repo, old, pack }
    }

    fn base_from(repo: &gix::Repository) -> impl FnMut(&gix::oid, &mut Vec<u8>) -> Option<Kind> {
        move |id, buf| {
            let object = repo.find_object(id).ok()?;
            buf.clear();
            buf.extend_from_slice(&object.data);
            Some(object.kind)
        }
    }

    #[test]
    fn a_thin_pack_is_completed_with_bases_from_the_repository() {
        let thin = thin_setup();
        let old = gix::open(thin.old.path()).expect("old opens");
        let dir = tempfile::tempdir().expect("tempdir");
        let stored = store_pack(
            &mut &thin.pack[..],
            dir.path(),
            u64::MAX,
            &mut base_from(&old),
            &mut |_, _| {},
            &AtomicBool::new(false),
        )
        .expect("stored");
        let declared = u32::from_be_bytes(thin.pack[8..12].try_into().expect("4 bytes"));
        assert!(stored.objects > declared, "thin bases were appended");
        let pack = std::fs::read(&stored.pack).expect("pack");
        assert_eq!(
            u32::from_be_bytes(pack[8..12].try_into().expect("4 bytes")),
            stored.objects
        );

        // Self-contained: git verifies it and indexes it exactly as we did.
        git(
            thin.repo.path(),
            &["verify-pack", stored.index.to_str().expect("utf-8")],
        );
        let theirs = tempfile::tempdir().expect("tempdir");
        std::fs::write(theirs.path().join("p.pack"), &pack).expect("written");
        let hex = String::from_utf8(git(
            thin.repo.path(),
            &[
                "index-pack",
                theirs.path().join("p.pack").to_str().expect("utf-8"),
            ],
        ))
        .expect("utf-8");
        assert_eq!(
            stored.pack.file_name().expect("name").to_string_lossy(),
            format!("pack-{}.pack", hex.trim())
        );
        assert_eq!(
            std::fs::read(&stored.index).expect("ours"),
            std::fs::read(theirs.path().join("p.idx")).expect("git's")
        );

        // A bare repository with only our pack and old's objects has every object of main.
        let check = tempfile::tempdir().expect("tempdir");
        git(check.path(), &["init", "-q", "--bare"]);
        let pack_dir = check.path().join("objects/pack");
        std::fs::copy(
            &stored.pack,
            pack_dir.join(stored.pack.file_name().expect("name")),
        )
        .expect("copied");
        std::fs::copy(
            &stored.index,
            pack_dir.join(stored.index.file_name().expect("name")),
        )
        .expect("copied");
        std::fs::write(
            check.path().join("objects/info/alternates"),
            format!("{}\n", thin.old.path().join("objects").display()),
        )
        .expect("alternates");
        let main = String::from_utf8(git(thin.repo.path(), &["rev-parse", "main"])).expect("utf-8");
        git(
            check.path(),
            &["update-ref", "refs/heads/main", main.trim()],
        );
        let listed = String::from_utf8(git(check.path(), &["rev-list", "--objects", "main"]))
            .expect("utf-8");
        let ids: Vec<&str> = listed
            .lines()
            .filter_map(|line| line.split(' ').next())
            .collect();
        assert!(ids.len() > 40);
        let batch = git_in(
            check.path(),
            &["cat-file", "--batch-check"],
            format!("{}\n", ids.join("\n")).as_bytes(),
        );
        assert!(!String::from_utf8_lossy(&batch).contains("missing"));
        let repo = gix::open(check.path()).expect("check opens");
        for id in ids {
            let id = ObjectId::from_hex(id.as_bytes()).expect("hex");
            let object = repo.find_object(id).expect("gix reads it");
            let content = git(
                check.path(),
                &[
                    "cat-file",
                    object.kind.to_string().as_str(),
                    &id.to_hex().to_string(),
                ],
            );
            assert_eq!(object.data, content, "{id}");
        }
    }

    #[test]
    fn a_missing_thin_base_is_named_and_nothing_is_left() {
        let thin = thin_setup();
        let dir = tempfile::tempdir().expect("tempdir");
        let err = store(&thin.pack, dir.path()).expect_err("no bases");
        let PackError::MissingBase { base, offset } = &err else {
            panic!("{err}");
        };
        assert!(*offset >= PACK_HEADER_LEN);
        git(
            thin.old.path(),
            &["cat-file", "-e", &base.to_hex().to_string()],
        );
        let message = err.to_string();
        assert!(
            message.contains(&base.to_hex().to_string()) && message.contains(&offset.to_string()),
            "{message}"
        );
        assert!(listing(dir.path()).is_empty());

        // Bases that do not hash to the id asked for are refused.
        let err = store_pack(
            &mut &thin.pack[..],
            dir.path(),
            u64::MAX,
            &mut |_, buf| {
                buf.clear();
                buf.extend_from_slice(b"not the base");
                Some(Kind::Blob)
            },
            &mut |_, _| {},
            &AtomicBool::new(false),
        )
        .expect_err("wrong base");
        assert!(matches!(err, PackError::BaseMismatch { .. }), "{err}");
        assert!(listing(dir.path()).is_empty());
    }

    /// A small pack with deltas, and the repository it came from.
    fn small_pack() -> (tempfile::TempDir, Vec<u8>) {
        let repo = tempfile::tempdir().expect("tempdir");
        edited_repo(repo.path(), 12);
        let pack = pack_of(
            repo.path(),
            "main\n",
            &["--delta-base-offset", "--no-reuse-delta"],
        );
        (repo, pack)
    }

    fn fix_trailer(pack: &mut [u8]) {
        let len = pack.len() - HASH_LEN;
        let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
        hasher.update(&pack[..len]);
        let sum = hasher.try_finalize().expect("hash");
        pack[len..].copy_from_slice(sum.as_slice());
    }

    /// Store `pack`, which must fail, and check nothing is left behind.
    fn refused(pack: &[u8]) -> PackError {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = store(pack, dir.path()).expect_err("refused");
        assert!(listing(dir.path()).is_empty(), "{err}: files left behind");
        err
    }

    #[test]
    fn a_truncated_pack_is_refused_wherever_it_stops() {
        let (_repo, pack) = small_pack();
        let len = pack.len();
        for cut in [0, 3, 11, 12, 13, 40, len / 2, len - 21, len - 20, len - 1] {
            let err = refused(&pack[..cut]);
            assert!(
                matches!(err, PackError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn corrupt_packs_are_refused_with_where() {
        let (_repo, pack) = small_pack();

        let mut flipped = pack.clone();
        let header_len = flipped[12..]
            .iter()
            .position(|b| b & 0x80 == 0)
            .expect("header")
            + 1;
        flipped[12 + header_len + 8] ^= 0x55;
        fix_trailer(&mut flipped);
        let err = refused(&flipped);
        assert!(
            matches!(err, PackError::Corrupt { offset: 12, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("offset 12"), "{err}");

        let mut trailer = pack.clone();
        *trailer.last_mut().expect("bytes") ^= 1;
        assert!(matches!(refused(&trailer), PackError::Checksum { .. }));

        let mut more = pack.clone();
        more[11] += 1;
        fix_trailer(&mut more);
        let err = refused(&more);
        assert!(
            matches!(
                err,
                PackError::Truncated { .. } | PackError::Corrupt { .. } | PackError::OfsBase { .. }
            ),
            "{err}"
        );

        let mut bad = pack.clone();
        bad[..4].copy_from_slice(b"KCAP");
        assert!(matches!(refused(&bad), PackError::Header { .. }));
        let mut version = pack.clone();
        version[7] = 4;
        assert!(matches!(refused(&version), PackError::Header { .. }));
    }

    /// An entry: its header (type, declared size, base) and its zlib-compressed data.
    fn entry(type_id: u8, size: u64, base: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut byte = (type_id << 4) | (size & 0xf) as u8;
        let mut rest = size >> 4;
        while rest != 0 {
            out.push(byte | 0x80);
            byte = (rest & 0x7f) as u8;
            rest >>= 7;
        }
        out.push(byte);
        out.extend_from_slice(base);
        let mut encoder = flate2::write::ZlibEncoder::new(out, Compression::default());
        encoder.write_all(data).expect("compressed");
        encoder.finish().expect("compressed")
    }

    /// A pack of `entries`, with its header and a correct trailer.
    fn pack(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"PACK\0\0\0\x02".to_vec();
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for entry in entries {
            out.extend_from_slice(entry);
        }
        out.extend_from_slice(&[0; HASH_LEN]);
        fix_trailer(&mut out);
        out
    }

    #[test]
    fn hand_made_packs_round_trip_through_git() {
        let repo = tempfile::tempdir().expect("tempdir");
        git(repo.path(), &["init", "-q"]);
        let base = b"hello, world of packs\n";
        // Copy 0..7, insert "there", copy 6..22.
        let mut delta = vec![base.len() as u8, 28, 0x90, 7, 5];
        delta.extend_from_slice(b"there");
        delta.extend_from_slice(&[0x91, 6, 16]);
        let first = entry(3, base.len() as u64, &[], base);
        let distance = first.len() as u8;
        let built = pack(&[first, entry(6, delta.len() as u64, &[distance], &delta)]);
        check_against_git(repo.path(), &built);
        let dir = tempfile::tempdir().expect("tempdir");
        let stored = store(&built, dir.path()).expect("stored");
        let hex = String::from_utf8(git(
            repo.path(),
            &["verify-pack", "-v", stored.index.to_str().expect("utf-8")],
        ))
        .expect("utf-8");
        let expected = git_in(
            repo.path(),
            &["hash-object", "--stdin"],
            b"hello, there world of packs\n",
        );
        assert!(
            hex.contains(String::from_utf8_lossy(&expected).trim()),
            "{hex}"
        );

        // A reference delta before its base, in a version 3 pack.
        let base_id = git_in(repo.path(), &["hash-object", "--stdin"], base);
        let base_id =
            ObjectId::from_hex(String::from_utf8_lossy(&base_id).trim().as_bytes()).expect("hex");
        let mut built = pack(&[
            entry(7, delta.len() as u64, base_id.as_slice(), &delta),
            entry(3, base.len() as u64, &[], base),
        ]);
        built[7] = 3;
        fix_trailer(&mut built);
        check_against_git(repo.path(), &built);
    }

    #[test]
    fn a_chain_of_ten_thousand_offset_deltas_does_not_touch_the_call_stack() {
        let repo = tempfile::tempdir().expect("tempdir");
        git(repo.path(), &["init", "-q"]);
        // Each delta drops the first two bytes of its base and appends a counter: 64 bytes each,
        // all different.
        let mut entries = vec![entry(3, 64, &[], &[b'x'; 64])];
        let mut previous = entries[0].len() as u64;
        for i in 0..10_000u16 {
            let [high, low] = i.to_be_bytes();
            let delta = [64, 64, 0x91, 2, 62, 2, high, low];
            let delta_entry = entry(6, delta.len() as u64, &ofs_distance(previous), &delta);
            previous = delta_entry.len() as u64;
            entries.push(delta_entry);
        }
        let built = pack(&entries);
        let depth = check_against_git(repo.path(), &built);
        assert_eq!(depth, 10_000);
    }

    /// The distance of an offset delta to its base, encoded as Git writes it.
    fn ofs_distance(distance: u64) -> Vec<u8> {
        let mut n = distance;
        let mut bytes = vec![(n & 0x7f) as u8];
        n >>= 7;
        while n != 0 {
            n -= 1;
            bytes.push(0x80 | (n & 0x7f) as u8);
            n >>= 7;
        }
        bytes.reverse();
        bytes
    }

    /// A size in a delta's header: little-endian groups of seven bits.
    fn delta_size(mut size: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (size & 0x7f) as u8;
            size >>= 7;
            if size == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    #[test]
    fn a_small_delta_that_makes_a_large_base_stays_within_the_memory_limit() {
        // A 64-byte blob; a delta of 40 KB that copies it 20,000 times (1.28 MB), itself the
        // base of a delta that keeps its first 64 bytes: the large result must be held whole.
        const COPIES: u64 = 20_000;
        let large = 64 * COPIES;
        let blob = entry(3, 64, &[], &[b'x'; 64]);
        let mut inflating = delta_size(64);
        inflating.extend(delta_size(large));
        for _ in 0..COPIES {
            inflating.extend_from_slice(&[0x90, 64]);
        }
        let first = entry(
            6,
            inflating.len() as u64,
            &ofs_distance(blob.len() as u64),
            &inflating,
        );
        let mut small = delta_size(large);
        small.extend(delta_size(64));
        small.extend_from_slice(&[0x90, 64]);
        let second = entry(
            6,
            small.len() as u64,
            &ofs_distance(first.len() as u64),
            &small,
        );
        let built = pack(&[blob, first, second]);

        let dir = tempfile::tempdir().expect("tempdir");
        let err = store_within(&built, dir.path(), 1024 * 1024).expect_err("over the limit");
        match &err {
            PackError::DeltaMemory { needed, limit, .. } => {
                assert_eq!(*limit, 1024 * 1024);
                assert!(*needed > large, "{err}");
            }
            other => panic!("expected DeltaMemory, got {other:?}"),
        }
        assert!(
            err.to_string().contains("over the limit of 1048576"),
            "{err}"
        );
        assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));

        let stored = store_within(&built, dir.path(), 4 * 1024 * 1024).expect("within the limit");
        assert_eq!(stored.objects, 3);
        // A base stored whole is limited the same way when it has deltas to resolve.
        let err = store_within(&built, tempfile::tempdir().expect("tempdir").path(), 32)
            .expect_err("the blob is over the limit");
        assert!(
            matches!(err, PackError::DeltaMemory { needed: 64, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn hostile_entries_are_refused_without_huge_allocations() {
        let base = b"hello, world\n";
        let blob = entry(3, base.len() as u64, &[], base);
        let after_blob = (12 + blob.len()) as u8;

        // An offset delta reaching before the pack, and one into the middle of an entry.
        let delta = [13, 13, 0x90, 13];
        let err = refused(&pack(&[
            blob.clone(),
            entry(6, 4, &[after_blob + 5], &delta),
        ]));
        assert!(matches!(err, PackError::OfsBase { .. }), "{err}");
        let err = refused(&pack(&[
            blob.clone(),
            entry(6, 4, &[after_blob - 13], &delta),
        ]));
        assert!(matches!(err, PackError::OfsBase { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("offset {}", 12 + blob.len())),
            "{err}"
        );

        // A copy beyond the base.
        let beyond = [13, 100, 0x90, 100];
        let err = refused(&pack(&[
            blob.clone(),
            entry(6, 4, &[after_blob - 12], &beyond),
        ]));
        assert!(
            matches!(&err, PackError::Corrupt { reason, .. } if reason.contains("copies")),
            "{err}"
        );

        // A delta for a base of another size, and the reserved instruction 0.
        let err = refused(&pack(&[
            blob.clone(),
            entry(6, 4, &[after_blob - 12], &[12, 13, 0x90, 13]),
        ]));
        assert!(matches!(err, PackError::Corrupt { .. }), "{err}");
        let err = refused(&pack(&[
            blob.clone(),
            entry(6, 3, &[after_blob - 12], &[13, 1, 0]),
        ]));
        assert!(matches!(err, PackError::Corrupt { .. }), "{err}");

        // Declared sizes far beyond the data: a whole object, and a delta result with a child
        // (so that it is kept whole).
        let err = refused(&pack(&[entry(3, 1 << 60, &[], b"tiny")]));
        assert!(
            matches!(err, PackError::Corrupt { offset: 12, .. }),
            "{err}"
        );
        let huge_result = [
            13, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x90, 13,
        ];
        let first_delta = entry(
            6,
            huge_result.len() as u64,
            &[after_blob - 12],
            &huge_result,
        );
        let child_distance = first_delta.len() as u8;
        let err = refused(&pack(&[
            blob.clone(),
            first_delta,
            entry(6, 4, &[child_distance], &delta),
        ]));
        assert!(matches!(err, PackError::Corrupt { .. }), "{err}");

        // A count far beyond the entries reserves nothing for it.
        let mut counted = b"PACK\0\0\0\x02\xff\xff\xff\xff".to_vec();
        counted.extend_from_slice(&blob);
        let err = refused(&counted);
        assert!(matches!(err, PackError::Truncated { .. }), "{err}");

        // An entry size that overflows 64 bits, and an unknown type.
        let overflow = [
            0xb0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        let err = refused(&pack(&[overflow.to_vec()]));
        assert!(matches!(err, PackError::Corrupt { .. }), "{err}");
        let err = refused(&pack(&[entry(5, 4, &[], b"five")]));
        assert!(matches!(err, PackError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn reference_deltas_to_unknown_bases_are_refused() {
        // Two reference deltas whose bases are nowhere: the first is named.
        let a = ObjectId::from_hex(b"1111111111111111111111111111111111111111").expect("hex");
        let b = ObjectId::from_hex(b"2222222222222222222222222222222222222222").expect("hex");
        let delta = [1, 1, 1, b'x'];
        let built = pack(&[
            entry(7, 4, a.as_slice(), &delta),
            entry(7, 4, b.as_slice(), &delta),
        ]);
        let err = refused(&built);
        assert!(
            matches!(err, PackError::MissingBase { offset: 12, .. }),
            "{err}"
        );
    }

    #[test]
    fn an_interrupted_store_leaves_nothing() {
        let (_repo, pack) = small_pack();
        let dir = tempfile::tempdir().expect("tempdir");
        let raised = AtomicBool::new(true);
        let err = store_pack(
            &mut &pack[..],
            dir.path(),
            u64::MAX,
            &mut no_base,
            &mut |_, _| {},
            &raised,
        )
        .expect_err("interrupted");
        assert!(matches!(err, PackError::Interrupted), "{err}");
        assert!(listing(dir.path()).is_empty());

        let mut calls = 0u64;
        let mut last = (0, 0);
        store_pack(
            &mut &pack[..],
            dir.path(),
            u64::MAX,
            &mut no_base,
            &mut |bytes, objects| {
                calls += 1;
                assert!(bytes >= last.0 || objects > last.1);
                last = (bytes, objects);
            },
            &AtomicBool::new(false),
        )
        .expect("stored");
        let objects = u64::from(u32::from_be_bytes(pack[8..12].try_into().expect("4 bytes")));
        assert_eq!(last, (pack.len() as u64 - HASH_LEN as u64, objects));
        let clean = tempfile::tempdir().expect("tempdir");
        for stop in [1, calls / 3, calls * 2 / 3, calls - 2] {
            let interrupt = AtomicBool::new(false);
            let mut seen = 0;
            let err = store_pack(
                &mut &pack[..],
                clean.path(),
                u64::MAX,
                &mut no_base,
                &mut |_, _| {
                    seen += 1;
                    if seen == stop {
                        interrupt.store(true, Ordering::Relaxed);
                    }
                },
                &interrupt,
            )
            .expect_err("interrupted");
            assert!(matches!(err, PackError::Interrupted), "stop {stop}: {err}");
            assert!(listing(clean.path()).is_empty());
        }
    }

    #[test]
    fn storing_a_pack_twice_keeps_the_first() {
        let (_repo, pack) = small_pack();
        let dir = tempfile::tempdir().expect("tempdir");
        let first = store(&pack, dir.path()).expect("stored");
        let second = store(&pack, dir.path()).expect("stored again");
        assert_eq!(first.pack, second.pack);
        assert_eq!(listing(dir.path()).len(), 2);
    }

    #[test]
    fn delta_instructions_follow_git() {
        let base: Vec<u8> = (0..=255u8).cycle().take(0x10000 + 10).collect();
        // A copy of size 0 means 0x10000 bytes.
        let delta = [0x8a, 0x80, 0x04, 0x81, 0x80, 0x04, 0x80, 1, b'!'];
        let mut kept = Vec::new();
        let id = apply_delta(
            &base,
            &mut &delta[..],
            Kind::Blob,
            Some(&mut kept),
            u64::MAX,
            &AtomicBool::new(false),
        )
        .unwrap_or_else(|_| panic!("applies"));
        assert_eq!(kept.len(), 0x10001);
        assert_eq!(&kept[..0x10000], &base[..0x10000]);
        let mut hasher = object_hasher(Kind::Blob, kept.len() as u64);
        hasher.update(&kept);
        assert_eq!(id, hasher.try_finalize().expect("hash"));
        // Producing more than declared is refused as soon as it happens.
        let over = [0x8a, 0x80, 0x04, 0x02, 0x91, 0, 0x10];
        assert!(matches!(
            apply_delta(
                &base,
                &mut &over[..],
                Kind::Blob,
                None,
                u64::MAX,
                &AtomicBool::new(false)
            ),
            Err(DeltaFault::Invalid(_))
        ));
    }

    #[test]
    fn offsets_from_two_gib_on_go_to_the_large_offset_table() {
        let offsets = [12u64, (1 << 31) - 1, 1 << 31, 5 << 32, 3 << 31, 1 << 40];
        let entries: Vec<IndexEntry> = offsets
            .iter()
            .enumerate()
            .map(|(i, offset)| {
                let mut hasher = object_hasher(Kind::Blob, 1);
                hasher.update(&[i as u8]);
                IndexEntry {
                    id: hasher.try_finalize().expect("hash"),
                    crc: 0xdead_0000 + i as u32,
                    offset: *offset,
                }
            })
            .collect();
        let pack_checksum =
            ObjectId::from_hex(b"0123456789abcdef0123456789abcdef01234567").expect("hex");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.idx");
        let mut file = File::create_new(&path).expect("created");
        write_index(&mut file, entries.clone(), &pack_checksum).expect("written");
        drop(file);

        let bytes = std::fs::read(&path).expect("read");
        let large = offsets.iter().filter(|offset| **offset >= 1 << 31).count();
        assert_eq!(large, 4);
        assert_eq!(
            bytes.len(),
            8 + 256 * 4 + offsets.len() * 28 + large * 8 + 2 * HASH_LEN
        );
        let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
        hasher.update(&bytes[..bytes.len() - HASH_LEN]);
        assert_eq!(
            hasher.try_finalize().expect("hash").as_slice(),
            &bytes[bytes.len() - HASH_LEN..]
        );

        // gitoxide reads every offset and CRC back.
        let index =
            gix::odb::pack::index::File::at(&path, gix::hash::Kind::Sha1).expect("an index");
        assert_eq!(index.num_objects(), offsets.len() as u32);
        assert_eq!(index.pack_checksum(), pack_checksum);
        for entry in &entries {
            let at = index.lookup(entry.id).expect("found");
            assert_eq!(index.pack_offset_at_index(at), entry.offset);
            assert_eq!(index.crc32_at_index(at), Some(entry.crc));
        }
    }

    /// Not a test: stores the pack named by `GITOPS_PACK_MEASURE` (read from the file, stored
    /// next to it) for a peak-memory measurement under `/usr/bin/time -v`, in release.
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn measure_store_pack() {
        let Some(path) = std::env::var_os("GITOPS_PACK_MEASURE") else {
            return;
        };
        let path = PathBuf::from(path);
        let dir = tempfile::tempdir_in(path.parent().expect("a parent")).expect("tempdir");
        let mut input = io::BufReader::with_capacity(CHUNK, File::open(&path).expect("pack"));
        let stored = store_pack(
            &mut input,
            dir.path(),
            u64::MAX,
            &mut no_base,
            &mut |_, _| {},
            &AtomicBool::new(false),
        )
        .expect("stored");
        eprintln!(
            "stored {} objects in {}",
            stored.objects,
            stored.pack.display()
        );
    }
}
