//! Printing names that come from a repository or a cluster without letting them forge output.
//!
//! A file name, a Git ref or an object name is chosen by whoever wrote the repository. Printed as
//! it is, a name holding a line feed starts a new, forged line in a log; an ANSI escape sequence
//! recolours or hides the text around it; a Unicode bidirectional override reorders what a reader
//! sees. [`Escaped`] and [`EscapedPath`] print such names with every control character written as
//! an escape (`\n`, `\t`, `\u{1b}`, ...) and a backslash doubled, so that what is printed is
//! always one line and reads back unambiguously. Ordinary text, non-ASCII letters included, is
//! printed unchanged.
//!
//! ```
//! use gitops_core::escape::{Escaped, EscapedPath};
//! assert_eq!(Escaped("web.yaml").to_string(), "web.yaml");
//! assert_eq!(
//!     Escaped("a.yaml\nERROR forged line").to_string(),
//!     "a.yaml\\nERROR forged line"
//! );
//! assert_eq!(EscapedPath(std::path::Path::new("x/\u{1b}[2Jy")).to_string(), "x/\\u{1b}[2Jy");
//! ```

use std::fmt::{self, Write as _};
use std::path::Path;

/// Displays a string with control characters, bidirectional overrides and backslashes escaped.
///
/// ```
/// use gitops_core::escape::Escaped;
/// assert_eq!(format!("{}", Escaped("tab\there")), "tab\\there");
/// assert_eq!(format!("{}", Escaped("größe")), "größe");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        // Fast path: most names need no escape at all.
        if !text.chars().any(needs_escape) {
            return f.write_str(text);
        }
        for c in text.chars() {
            write_char_escaped(f, c)?;
        }
        Ok(())
    }
}

/// Displays a path like [`Escaped`]; bytes that are not UTF-8 are printed as `\xNN`.
///
/// ```
/// use gitops_core::escape::EscapedPath;
/// let path = std::path::Path::new("apps/web\r.yaml");
/// assert_eq!(EscapedPath(path).to_string(), "apps/web\\r.yaml");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscapedPath<'a>(pub &'a Path);

impl fmt::Display for EscapedPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0.as_os_str().as_encoded_bytes();
        for chunk in bytes.utf8_chunks() {
            Escaped(chunk.valid()).fmt(f)?;
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

/// Whether [`Escaped`] would change `text`: it holds a control character, a bidirectional
/// override or a backslash.
///
/// ```
/// assert!(gitops_core::escape::needs_escaping("a\nb"));
/// assert!(!gitops_core::escape::needs_escaping("apps/web.yaml"));
/// ```
#[must_use]
pub fn needs_escaping(text: &str) -> bool {
    text.chars().any(needs_escape)
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || is_bidi_control(c) || is_line_separator(c)
}

/// The characters that reorder text on screen (the "Trojan Source" set).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// Unicode line and paragraph separators, which some terminals and log viewers break lines at.
fn is_line_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}')
}

fn write_char_escaped(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    match c {
        '\\' => f.write_str("\\\\"),
        '\n' => f.write_str("\\n"),
        '\r' => f.write_str("\\r"),
        '\t' => f.write_str("\\t"),
        '\0' => f.write_str("\\0"),
        c if needs_escape(c) => write!(f, "\\u{{{:x}}}", u32::from(c)),
        c => f.write_char(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_character_is_escaped_and_output_is_one_line() {
        for code in (0u32..0x20).chain(0x7f..0xa0) {
            let c = char::from_u32(code).unwrap();
            let printed = Escaped(&format!("a{c}b")).to_string();
            assert!(
                printed.chars().all(|p| !p.is_control()),
                "U+{code:04x} printed as {printed:?}"
            );
            assert!(printed.starts_with('a') && printed.ends_with('b'));
        }
    }

    #[test]
    fn bidi_overrides_and_separators_are_escaped() {
        assert_eq!(Escaped("a\u{202e}b").to_string(), "a\\u{202e}b");
        assert_eq!(Escaped("a\u{2028}b").to_string(), "a\\u{2028}b");
        assert_eq!(Escaped("a\u{1b}[31mred").to_string(), "a\\u{1b}[31mred");
    }

    #[test]
    fn backslash_is_doubled_so_escapes_cannot_be_forged() {
        // A name that already contains the text `\n` must print differently from one holding a
        // line feed.
        assert_eq!(Escaped("a\\nb").to_string(), "a\\\\nb");
        assert_ne!(Escaped("a\\nb").to_string(), Escaped("a\nb").to_string());
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        for text in [
            "",
            "web.yaml",
            "apps/prod/kustomization.yaml",
            "größe-日本",
            "a b",
        ] {
            assert_eq!(Escaped(text).to_string(), text);
            assert!(!needs_escaping(text));
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_path_bytes_are_hex() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(OsStr::from_bytes(b"a\xffb\n"));
        assert_eq!(EscapedPath(path).to_string(), "a\\xffb\\n");
    }
}
