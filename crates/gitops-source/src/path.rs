//! The one check every path of an artifact goes through, whichever source produced it: a Git tree
//! entry, a directory entry on disk, a tar archive entry, or a path the artifact writer is about
//! to create.
//!
//! A Git tree is data chosen by whoever controls the remote: with `git hash-object --literally`
//! any byte string can be an entry name, `..`, `a/../../x` and `/etc/x` included. Such a name,
//! joined to the artifact's directory, would write outside it. A name that git itself treats as
//! its own metadata directory (`.git` in any case, its Windows/NTFS aliases `.git.`, `.git ` and
//! `git~1`, and the macOS/HFS+ spellings with ignorable code points) would, once written, turn the
//! artifact into a repository whose configuration a later `git` or tool may obey.
//!
//! [`check_entry_name`] checks one name of a directory listing; [`check_relative_path`] checks a
//! whole `/`-separated relative path, component by component, with the same rules.
//!
//! ```
//! use gitops_source::path::{PathError, check_entry_name, check_relative_path};
//!
//! assert_eq!(check_entry_name(b"deploy.yaml").unwrap(), "deploy.yaml");
//! assert!(matches!(check_entry_name(b".."), Err(PathError::DotName { .. })));
//! assert!(matches!(check_entry_name(b".GIT"), Err(PathError::GitDirectory { .. })));
//! assert!(check_relative_path("apps/prod/deploy.yaml").is_ok());
//! assert!(check_relative_path("apps/../../etc/passwd").is_err());
//! ```

use gitops_core::escape::Escaped;

/// The longest entry name accepted, in bytes (the `NAME_MAX` of Linux and most file systems).
///
/// ```
/// use gitops_source::path::{MAX_NAME_BYTES, check_entry_name};
///
/// assert!(check_entry_name("x".repeat(MAX_NAME_BYTES + 1).as_bytes()).is_err());
/// ```
pub const MAX_NAME_BYTES: usize = 255;

/// The longest relative path accepted, in bytes (the `PATH_MAX` of Linux).
///
/// ```
/// assert_eq!(gitops_source::path::MAX_PATH_BYTES, 4096);
/// ```
pub const MAX_PATH_BYTES: usize = 4096;

/// The most directory levels a path may have: a tree nested deeper is refused while it is read,
/// before its depth can exhaust anything.
///
/// ```
/// use gitops_source::path::{MAX_DEPTH, PathError, check_relative_path};
///
/// let deep = format!("{}x.yaml", "d/".repeat(MAX_DEPTH));
/// assert!(matches!(check_relative_path(&deep), Err(PathError::TooDeep { .. })));
/// ```
pub const MAX_DEPTH: usize = 128;

/// Why a name or path is refused. The names it holds are escaped for printing (control
/// characters, bidirectional overrides and backslashes written as escapes; bytes that are not
/// UTF-8 as `\xNN`), so that printing the error cannot forge a log line.
///
/// ```
/// use gitops_source::path::{PathError, check_entry_name};
///
/// let error = check_entry_name(b"deploy.yaml\nERROR forged").unwrap_err();
/// assert!(matches!(error, PathError::ControlCharacter { .. }));
/// assert_eq!(
///     error.to_string(),
///     "entry \"deploy.yaml\\nERROR forged\" holds a control character"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The name is empty (or a path has an empty component, as in `a//b`).
    #[error("an entry has an empty name")]
    Empty,
    /// The name is `.` or `..`.
    #[error("entry \"{name}\" is `.` or `..`, which would leave its directory")]
    DotName {
        /// The name, escaped for printing.
        name: String,
    },
    /// The name holds a `/` or `\`, or starts like an absolute path.
    #[error("entry \"{name}\" holds a path separator or is absolute")]
    Separator {
        /// The name, escaped for printing.
        name: String,
    },
    /// The path is absolute (starts with `/`).
    #[error("path \"{name}\" is absolute")]
    Absolute {
        /// The path, escaped for printing.
        name: String,
    },
    /// The name holds a NUL or another control character.
    #[error("entry \"{name}\" holds a control character")]
    ControlCharacter {
        /// The name, escaped for printing.
        name: String,
    },
    /// The name is not valid UTF-8.
    #[error("entry \"{name}\" is not valid UTF-8")]
    NotUtf8 {
        /// The name, invalid bytes written as `\xNN`.
        name: String,
    },
    /// The name is longer than [`MAX_NAME_BYTES`], or the path longer than [`MAX_PATH_BYTES`].
    #[error("entry \"{name}…\" is {length} bytes long, more than the {max} allowed")]
    TooLong {
        /// The first 64 characters of the name, escaped for printing.
        name: String,
        /// The length in bytes.
        length: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The name is git's metadata directory, or a spelling some file system reads as it
    /// (`.GIT`, `.git.`, `.git `, `git~1`, `.git` with ignorable Unicode code points).
    #[error("entry \"{name}\" names git's metadata directory (.git), which is never written")]
    GitDirectory {
        /// The name, escaped for printing.
        name: String,
    },
    /// A tree is nested more than [`MAX_DEPTH`] levels deep.
    #[error("the tree is nested {depth} levels deep, more than the {max} allowed")]
    TooDeep {
        /// The depth reached.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// A directory lists the same name twice.
    #[error("entry \"{name}\" appears twice in one directory")]
    Duplicate {
        /// The name, escaped for printing.
        name: String,
    },
    /// A component of a relative path is refused.
    #[error("path \"{path}\" is refused")]
    Component {
        /// The whole path, escaped for printing.
        path: String,
        /// Why its component is refused.
        #[source]
        source: Box<PathError>,
    },
}

/// Escape a name for printing: control characters and friends as escapes ([`Escaped`]), invisible
/// code points (zero-width joiners, byte order marks) as `\u{..}`, invalid UTF-8 as `\xNN`.
pub(crate) fn printable(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_hfs_ignorable(c) {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            } else {
                let mut buffer = [0; 4];
                out.push_str(&Escaped(c.encode_utf8(&mut buffer)).to_string());
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// Code points that HFS+ ignores when it compares names, so that `.g\u{200c}it` opens `.git`.
fn is_hfs_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}'
    )
}

/// Whether some file system (case-insensitive, NTFS, HFS+) opens `name` as `.git`.
fn is_git_directory_alias(name: &str) -> bool {
    // HFS+: ignorable code points vanish.
    let folded: String = name.chars().filter(|c| !is_hfs_ignorable(*c)).collect();
    // NTFS: an alternate data stream (`.git::$INDEX_ALLOCATION`) opens the file itself, and
    // trailing dots and spaces are dropped.
    let base = folded.split(':').next().unwrap_or_default();
    let base = base.trim_end_matches(['.', ' ']);
    if base.eq_ignore_ascii_case(".git") {
        return true;
    }
    // NTFS 8.3 short names: `GIT~1` and its siblings.
    base.get(..4)
        .is_some_and(|head| head.eq_ignore_ascii_case("git~"))
        && base.len() > 4
        && base[4..].bytes().all(|b| b.is_ascii_digit())
}

/// Check one entry name of a directory (a Git tree entry, a directory entry on disk) and return it
/// as a `&str`.
///
/// Refused: empty names, names longer than [`MAX_NAME_BYTES`], names that are not UTF-8, `.` and
/// `..`, names holding `/`, `\`, NUL or any other control character, and every spelling of `.git`
/// that git refuses on checkout (any case, NTFS trailing dots and spaces, alternate data streams
/// and `git~1` short names, HFS+ ignorable code points).
///
/// ```
/// use gitops_source::path::check_entry_name;
///
/// assert_eq!(check_entry_name("größe.yaml".as_bytes()).unwrap(), "größe.yaml");
/// for hostile in [&b""[..], b".", b"..", b"a/../../x", b"/etc", b"a\\b", b"a\0b", b"a\nb",
///                 b".git", b".Git", b".git.", b".git ", b"GIT~1", b".g\xe2\x80\x8cit", b"\xff"] {
///     assert!(check_entry_name(hostile).is_err(), "{hostile:?}");
/// }
/// ```
pub fn check_entry_name(name: &[u8]) -> Result<&str, PathError> {
    if name.is_empty() {
        return Err(PathError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        let shown: String = String::from_utf8_lossy(name).chars().take(64).collect();
        return Err(PathError::TooLong {
            name: printable(shown.as_bytes()),
            length: name.len(),
            max: MAX_NAME_BYTES,
        });
    }
    let Ok(text) = std::str::from_utf8(name) else {
        return Err(PathError::NotUtf8 {
            name: printable(name),
        });
    };
    if text == "." || text == ".." {
        return Err(PathError::DotName {
            name: text.to_owned(),
        });
    }
    if text.contains(['/', '\\']) {
        return Err(PathError::Separator {
            name: printable(name),
        });
    }
    if text.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter {
            name: printable(name),
        });
    }
    if is_git_directory_alias(text) {
        return Err(PathError::GitDirectory {
            name: printable(name),
        });
    }
    Ok(text)
}

/// Check a whole relative path, `/`-separated, as a source produces it for a file of an artifact:
/// not empty, not absolute, no longer than [`MAX_PATH_BYTES`], and every component accepted by
/// [`check_entry_name`] (so no `.`, `..` or empty component).
///
/// ```
/// use gitops_source::path::{PathError, check_relative_path};
///
/// assert!(check_relative_path("apps/web/deploy.yaml").is_ok());
/// assert!(matches!(check_relative_path("/etc/passwd"), Err(PathError::Absolute { .. })));
/// let error = check_relative_path("apps/.git/config").unwrap_err();
/// assert_eq!(error.to_string(), "path \"apps/.git/config\" is refused");
/// ```
pub fn check_relative_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute {
            name: printable(path.as_bytes()),
        });
    }
    if path.len() > MAX_PATH_BYTES {
        let shown: String = path.chars().take(64).collect();
        return Err(PathError::TooLong {
            name: printable(shown.as_bytes()),
            length: path.len(),
            max: MAX_PATH_BYTES,
        });
    }
    let depth = path.bytes().filter(|byte| *byte == b'/').count();
    if depth >= MAX_DEPTH {
        return Err(PathError::TooDeep {
            depth,
            max: MAX_DEPTH,
        });
    }
    for component in path.split('/') {
        check_entry_name(component.as_bytes()).map_err(|source| PathError::Component {
            path: printable(path.as_bytes()),
            source: Box::new(source),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "deploy.yaml",
            ".sourceignore",
            ".gitignore",
            ".github",
            ".gitx",
            "git",
            "git~",
            "git~a",
            "a b.yaml",
            "größe-日本.yaml",
            "..yaml",
            "...",
            "x".repeat(MAX_NAME_BYTES).as_str(),
        ] {
            assert_eq!(check_entry_name(name.as_bytes()), Ok(name), "{name:?}");
        }
    }

    #[test]
    fn traversal_separators_and_controls_are_refused() {
        assert_eq!(check_entry_name(b""), Err(PathError::Empty));
        for name in [&b"."[..], b".."] {
            assert!(matches!(
                check_entry_name(name),
                Err(PathError::DotName { .. })
            ));
        }
        for name in [
            &b"a/../../x"[..],
            b"/etc/passwd",
            b"/",
            b"a\\..\\b",
            b"C:\\x",
        ] {
            assert!(
                matches!(check_entry_name(name), Err(PathError::Separator { .. })),
                "{name:?}"
            );
        }
        for name in [
            &b"a\0b"[..],
            b"a\nb",
            b"\r",
            b"x\x1b[2J",
            b"\x7f",
            "a\u{85}".as_bytes(),
        ] {
            assert!(
                matches!(
                    check_entry_name(name),
                    Err(PathError::ControlCharacter { .. })
                ),
                "{name:?}"
            );
        }
        assert!(matches!(
            check_entry_name(b"a\xffb"),
            Err(PathError::NotUtf8 { ref name }) if name == "a\\xffb"
        ));
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert!(matches!(
            check_entry_name(long.as_bytes()),
            Err(PathError::TooLong { length: 256, .. })
        ));
    }

    #[test]
    fn every_spelling_of_dot_git_is_refused() {
        for name in [
            ".git",
            ".GIT",
            ".gIt",
            ".git.",
            ".git ",
            ".git. . ",
            ".git::$INDEX_ALLOCATION",
            "git~1",
            "GIT~1",
            "Git~2",
            ".g\u{200c}it",
            "\u{feff}.git",
            ".GI\u{206f}T",
            ".git\u{200d}",
        ] {
            assert!(
                matches!(
                    check_entry_name(name.as_bytes()),
                    Err(PathError::GitDirectory { .. })
                ),
                "{name:?}"
            );
        }
    }

    #[test]
    fn errors_print_names_escaped() {
        let error = check_entry_name(b"evil\nERROR forged").unwrap_err();
        let printed = error.to_string();
        assert!(!printed.contains('\n'), "{printed}");
        assert!(printed.contains("evil\\nERROR forged"), "{printed}");
        let error = check_relative_path("a/\u{202e}b/\nc").unwrap_err();
        assert!(!format!("{error} {error:?}").contains('\n'));
        assert!(!error.to_string().contains('\u{202e}'));
    }

    /// Arbitrary byte strings built from the characters that matter: whatever is accepted can be
    /// joined to a directory without leaving it or naming `.git`.
    #[test]
    fn accepted_names_are_always_safe() {
        let alphabet: &[&[u8]] = &[
            b"a",
            b".",
            b"/",
            b"\\",
            b"\0",
            b"\n",
            b"g",
            b"i",
            b"t",
            b"G",
            b"T",
            b"~",
            b"1",
            b" ",
            b":",
            "\u{200c}".as_bytes(),
            b"\xff",
            b"\xe2",
            "é".as_bytes(),
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Counted, so that a check refusing everything cannot pass this test vacuously.
        let (mut accepted_names, mut accepted_paths) = (0_u32, 0_u32);
        for _ in 0..200_000 {
            let length = (next() % 8) as usize;
            let mut name = Vec::new();
            for _ in 0..length {
                name.extend_from_slice(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            if let Ok(accepted) = check_entry_name(&name) {
                accepted_names += 1;
                assert!(!accepted.is_empty() && accepted != "." && accepted != "..");
                assert!(
                    !accepted.contains(['/', '\\', '\0'])
                        && !accepted.chars().any(char::is_control)
                );
                let folded: String = accepted.chars().filter(|c| !is_hfs_ignorable(*c)).collect();
                let base = folded
                    .split(':')
                    .next()
                    .unwrap()
                    .trim_end_matches(['.', ' ']);
                assert!(!base.eq_ignore_ascii_case(".git"), "{accepted:?}");
                let path = std::path::Path::new("/root").join(accepted);
                assert_eq!(
                    path.parent(),
                    Some(std::path::Path::new("/root")),
                    "{accepted:?}"
                );
            }
            if let Ok(text) = std::str::from_utf8(&name)
                && check_relative_path(text).is_ok()
            {
                accepted_paths += 1;
                let joined = std::path::Path::new("/root").join(text);
                assert!(
                    joined.components().all(|c| matches!(
                        c,
                        std::path::Component::RootDir | std::path::Component::Normal(_)
                    )),
                    "{text:?}"
                );
                assert!(joined.starts_with("/root"));
            }
        }
        // Measured: about 49,000 names and 53,000 paths of the 200,000 are accepted.
        assert!(
            accepted_names > 10_000 && accepted_paths > 10_000,
            "too few inputs accepted to check anything: {accepted_names} names, {accepted_paths} paths"
        );
    }

    #[test]
    fn relative_paths_are_checked_component_by_component() {
        for path in ["a.yaml", "apps/prod/a.yaml", ".sourceignore", "a/.github/x"] {
            assert_eq!(check_relative_path(path), Ok(()), "{path}");
        }
        assert_eq!(check_relative_path(""), Err(PathError::Empty));
        assert!(matches!(
            check_relative_path("/etc/passwd"),
            Err(PathError::Absolute { .. })
        ));
        for (path, inner) in [
            ("a//b", PathError::Empty),
            ("a/", PathError::Empty),
            ("./a", PathError::DotName { name: ".".into() }),
            ("a/../../x", PathError::DotName { name: "..".into() }),
            (
                "x/.Git/config",
                PathError::GitDirectory {
                    name: ".Git".into(),
                },
            ),
        ] {
            match check_relative_path(path) {
                Err(PathError::Component { source, .. }) => assert_eq!(*source, inner, "{path}"),
                other => panic!("{path}: {other:?}"),
            }
        }
        let long = "a/".repeat(MAX_PATH_BYTES / 2 + 1);
        assert!(matches!(
            check_relative_path(&long),
            Err(PathError::TooLong { .. })
        ));
    }
}
