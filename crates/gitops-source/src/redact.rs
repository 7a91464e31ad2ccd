//! Printable locations: a repository URL with its secrets removed, for every message, error and
//! log field, whether or not the URL parses.
//!
//! A URL can carry credentials in two places: its user info (`https://user:token@host/...`, and
//! hosting services accept a token as the user name alone) and its query (`?access_token=...`).
//! [`redact_url`] removes the user info (an ssh user name without a password is kept, as it names
//! the account and is no secret) and replaces every query value and any fragment with
//! `<redacted>`. It works on the text, so a URL that fails to parse (a bad port, a bad
//! `%`-escape) is redacted too, and control characters are escaped so that a location cannot
//! forge a log line.
//!
//! ```
//! use gitops_source::redact_url;
//!
//! assert_eq!(
//!     redact_url("https://alice:hunter2@git.example.com:99999/r.git?access_token=abc&x"),
//!     "https://git.example.com:99999/r.git?access_token=<redacted>&<redacted>"
//! );
//! assert_eq!(redact_url("ssh://git@host/r.git"), "ssh://git@host/r.git");
//! assert_eq!(redact_url("git@host:org/r.git"), "git@host:org/r.git");
//! ```

use std::error::Error;
use std::fmt;

use gitops_core::escape::Escaped;

/// What replaces a secret.
///
/// ```
/// use gitops_source::{REDACTED, redact_url};
///
/// assert_eq!(redact_url("https://h/r?token=t"), format!("https://h/r?token={REDACTED}"));
/// ```
pub const REDACTED: &str = "<redacted>";

/// Turn `url` (parsable or not) into a printable location: user info removed (an ssh user name
/// without password kept), query values and fragments replaced by `<redacted>`, control
/// characters escaped.
///
/// ```
/// use gitops_source::redact_url;
///
/// assert_eq!(redact_url("https://tok%zz@h/r?t=1#frag"), "https://h/r?t=<redacted>#<redacted>");
/// assert_eq!(redact_url("/srv/git/config\n"), "/srv/git/config\\n");
/// ```
#[must_use]
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(index) => (Some(&url[..index]), &url[index + 3..]),
        None => (None, url),
    };
    let ssh_like = scheme.is_none_or(|scheme| {
        let scheme = scheme.to_ascii_lowercase();
        scheme == "ssh" || scheme == "git+ssh" || scheme == "ssh+git"
    });
    let query_start = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, tail) = rest.split_at(query_start);
    let authority_end = before_query.find('/').unwrap_or(before_query.len());
    let authority = &before_query[..authority_end];
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    if let Some(at) = authority.rfind('@') {
        let user_info = &authority[..at];
        if ssh_like && !user_info.contains(':') {
            out.push_str(before_query);
        } else {
            out.push_str(&before_query[at + 1..]);
        }
    } else if authority.contains(':') && before_query[authority_end..].contains('@') {
        // A password holding a `/` (not escaped): everything before the last `@` may be secret.
        let at = before_query.rfind('@').unwrap_or_default();
        out.push_str(REDACTED);
        out.push_str(&before_query[at..]);
    } else {
        out.push_str(before_query);
    }
    let (query, fragment) = match tail.find('#') {
        Some(index) => (&tail[..index], Some(&tail[index + 1..])),
        None => (tail, None),
    };
    if let Some(query) = query.strip_prefix('?') {
        out.push('?');
        let parts: Vec<String> = query
            .split('&')
            .map(|part| match part.split_once('=') {
                Some((key, _)) => format!("{key}={REDACTED}"),
                None if part.is_empty() => String::new(),
                None => REDACTED.to_owned(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        if !fragment.is_empty() {
            out.push_str(REDACTED);
        }
    }
    Escaped(&out).to_string()
}

/// Removes the secrets of one URL from any text, and from error chains: the URL itself becomes
/// its [`redact_url`] location, and each secret part (user info, user, password, query values,
/// fragment, raw and `%`-decoded) becomes `<redacted>` wherever it appears.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    url: String,
    location: String,
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// Secrets shorter than this are not searched for: they would redact ordinary words.
const MIN_SECRET_LEN: usize = 3;

impl Redactor {
    pub(crate) fn new(url: &str) -> Self {
        let mut secrets = Vec::new();
        let rest = url.find("://").map_or(url, |index| &url[index + 3..]);
        let query_start = rest.find(['?', '#']).unwrap_or(rest.len());
        let (before_query, tail) = rest.split_at(query_start);
        if let Some(at) = before_query.rfind('@') {
            let user_info = &before_query[..at];
            // The whole user info and each of its parts (including everything after the scheme
            // when a password holds a `/`).
            secrets.push(user_info.to_owned());
            if let Some((user, password)) = user_info.split_once(':') {
                secrets.push(password.to_owned());
                if url.starts_with("http") {
                    secrets.push(user.to_owned());
                }
            } else if url.starts_with("http") {
                secrets.push(user_info.to_owned());
            }
        }
        for part in tail.split(['?', '&', '#']) {
            let value = part.split_once('=').map_or(part, |(_, value)| value);
            secrets.push(value.to_owned());
        }
        let mut all = Vec::new();
        for secret in secrets {
            if let Some(decoded) = percent_decode(&secret)
                && decoded != secret
            {
                all.push(decoded);
            }
            all.push(secret);
        }
        all.retain(|secret| secret.len() >= MIN_SECRET_LEN);
        // Longest first, so that a secret holding another is replaced whole.
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        Self {
            url: url.to_owned(),
            location: redact_url(url),
            secrets: all,
        }
    }

    /// Also remove these secrets (credentials given apart from the URL).
    pub(crate) fn with_secrets<'a>(mut self, secrets: impl IntoIterator<Item = &'a str>) -> Self {
        self.secrets.extend(
            secrets
                .into_iter()
                .filter(|secret| secret.len() >= MIN_SECRET_LEN)
                .map(str::to_owned),
        );
        self.secrets
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.secrets.dedup();
        self
    }

    /// The printable location of the URL.
    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    /// `text` with the URL and its secrets replaced.
    pub(crate) fn text(&self, text: &str) -> String {
        let mut out = if self.url.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.url, &self.location)
        };
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    /// A copy of `error` and its whole `source()` chain holding only redacted messages.
    pub(crate) fn error(&self, error: &(dyn Error + 'static)) -> crate::source::BoxError {
        let mut messages = Vec::new();
        let mut next = Some(error);
        while let Some(current) = next {
            messages.push(self.text(&current.to_string()));
            next = current.source();
        }
        let mut chain: Option<Box<RedactedError>> = None;
        for message in messages.into_iter().rev() {
            chain = Some(Box::new(RedactedError {
                message,
                source: chain,
            }));
        }
        chain.expect("an error has at least one message")
    }
}

/// An error whose message and sources were redacted ([`Redactor::error`]).
#[derive(Debug)]
pub(crate) struct RedactedError {
    message: String,
    source: Option<Box<RedactedError>>,
}

impl fmt::Display for RedactedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for RedactedError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn Error + 'static))
    }
}

/// `%XX`-decode `text` when every escape is valid and the result is UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_query_and_fragment_are_removed() {
        for (url, expected) in [
            ("https://host/r.git", "https://host/r.git"),
            ("https://alice:pw@host/r", "https://host/r"),
            ("https://ghp_token@host/r", "https://host/r"),
            ("https://alice:pw@host:99999/r", "https://host:99999/r"),
            ("https://alice:p%zzw@host/r", "https://host/r"),
            ("https://alice:pa/ss@host/r", "https://<redacted>@host/r"),
            (
                "https://host/r?access_token=abc&ref=main",
                "https://host/r?access_token=<redacted>&ref=<redacted>",
            ),
            ("https://host/r?abc", "https://host/r?<redacted>"),
            ("https://host/r#frag", "https://host/r#<redacted>"),
            ("ssh://git@host:22/r", "ssh://git@host:22/r"),
            ("ssh://git:pw@host/r", "ssh://host/r"),
            ("git@host:org/r", "git@host:org/r"),
            ("git:pw@host:org/r", "host:org/r"),
            ("file:///srv/r", "file:///srv/r"),
            ("not a url at all", "not a url at all"),
            ("https://h/r\nERROR forged", "https://h/r\\nERROR forged"),
        ] {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer failure for {0}")]
    struct Outer(String, #[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner: password s3cret-pw (decoded: tok en)")]
    struct Inner;

    #[test]
    fn error_chains_are_redacted_at_every_level() {
        let url = "https://alice:s3cret-pw@host/r?access_token=tok%20en";
        let redactor = Redactor::new(url).with_secrets(["decoded"]);
        let error = Outer(url.to_owned(), Inner);
        let redacted = redactor.error(&error);
        let mut printed = format!("{redacted:?}");
        let mut next: Option<&(dyn Error + 'static)> = Some(redacted.as_ref());
        while let Some(current) = next {
            printed.push_str(&current.to_string());
            next = current.source();
        }
        for secret in ["s3cret-pw", "tok%20en", "tok en", "alice"] {
            assert!(!printed.contains(secret), "{secret}: {printed}");
        }
        assert!(printed.contains("outer failure for https://host/r?access_token=<redacted>"));
        assert!(
            printed.contains("inner: password <redacted> (<redacted>: <redacted>)"),
            "{printed}"
        );
        assert!(!format!("{redactor:?}").contains("s3cret"));
    }
}
