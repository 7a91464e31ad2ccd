//! An error and its sources on one line, for logs, statuses and command-line output.

/// The error and each of its sources, joined with `: `. A source whose message the text so far
/// already ends with (as `#[error(transparent)]` wrappers repeat their source's) is written
/// once.
///
/// What the messages say is the errors' own: the crates of this workspace escape the names and
/// paths they put in them and never put a secret there.
///
/// ```
/// #[derive(Debug, thiserror::Error)]
/// #[error("reading the manifest")]
/// struct Read(#[source] std::io::Error);
///
/// let error = Read(std::io::Error::other("disk full"));
/// assert_eq!(gitops_core::error_chain(&error), "reading the manifest: disk full");
/// ```
#[must_use]
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    struct Transparent(#[from] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("syncing")]
    struct Outer(#[source] Transparent);

    #[test]
    fn a_transparent_layer_is_written_once() {
        let error = Outer(Transparent(std::io::Error::other("refused")));
        assert_eq!(error_chain(&error), "syncing: refused");
    }
}
