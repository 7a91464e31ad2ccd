//! Errors of the Kubernetes API as readable text.

use std::fmt;

use gitops_core::escape::Escaped;

/// A failed Kubernetes API call, shown as readable text: for an error the server answered, its
/// message, reason and code (`kube::Error` shows the server's status as Rust `Debug`, which it
/// then is no longer part of the chain); any other error as `kube` shows it, with its causes.
///
/// ```
/// use gitops_apply::KubeError;
/// let status = kube::core::Status::failure("namespaces \"shop\" not found", "NotFound")
///     .with_code(404);
/// let error = KubeError::from(kube::Error::Api(Box::new(status)));
/// assert_eq!(error.to_string(), "namespaces \"shop\" not found (NotFound, 404)");
/// assert!(std::error::Error::source(&error).is_none());
/// assert_eq!(error.code(), Some(404));
/// ```
#[derive(Debug)]
pub struct KubeError(kube::Error);

impl KubeError {
    /// The error as `kube` returned it.
    #[must_use]
    pub fn kube(&self) -> &kube::Error {
        &self.0
    }

    /// The error as `kube` returned it.
    #[must_use]
    pub fn into_kube(self) -> kube::Error {
        self.0
    }

    /// The HTTP status code of an error the server answered.
    #[must_use]
    pub fn code(&self) -> Option<u16> {
        match &self.0 {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        }
    }
}

impl From<kube::Error> for KubeError {
    fn from(error: kube::Error) -> Self {
        Self(error)
    }
}

impl fmt::Display for KubeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            kube::Error::Api(status) => {
                let message = if status.message.is_empty() {
                    "the server refused the request"
                } else {
                    status.message.as_str()
                };
                write!(f, "{}", Escaped(message))?;
                match (status.reason.is_empty(), status.code) {
                    (true, 0) => Ok(()),
                    (true, code) => write!(f, " ({code})"),
                    (false, 0) => write!(f, " ({})", Escaped(&status.reason)),
                    (false, code) => write!(f, " ({}, {code})", Escaped(&status.reason)),
                }
            }
            other => write!(f, "{}", Escaped(&other.to_string())),
        }
    }
}

impl std::error::Error for KubeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            kube::Error::Api(_) => None,
            other => other.source(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole chain of an error the server answered reads as text, never as Rust `Debug`.
    #[test]
    fn an_api_error_reads_as_text_in_a_chain() {
        let status =
            kube::core::Status::failure("configmaps \"a\x1b[31m\" is forbidden: nope", "Forbidden")
                .with_code(403);
        let error = crate::ApplyError::Read {
            id: gitops_core::ObjectId::new("", "Namespace", None::<&str>, "shop"),
            source: kube::Error::Api(Box::new(status)).into(),
        };
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert!(!text.contains("Status {"), "{text}");
        assert!(!text.contains('\x1b'), "{text}");
        assert!(
            text.ends_with("is forbidden: nope (Forbidden, 403)"),
            "{text}"
        );
    }

    #[test]
    fn other_errors_keep_their_text() {
        let error = KubeError::from(kube::Error::LinesCodecMaxLineLengthExceeded);
        assert_eq!(error.code(), None);
        assert_eq!(
            error.to_string(),
            kube::Error::LinesCodecMaxLineLengthExceeded.to_string()
        );
    }
}
