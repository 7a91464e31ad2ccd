//! Keeping the content of Secrets out of everything printed.
//!
//! A Secret's values live in `data` and `stringData`, and a Secret last written by a client-side
//! `kubectl apply` carries a second, plaintext copy of itself in the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation. [`is_secret_kind`] says which
//! objects are Secrets; [`masked_secret`] and [`mask_secrets`] give a copy fit for printing, with
//! every value replaced by [`SECRET_MASK`] (the keys stay, so that a reader sees which values
//! there are) and the last-applied annotation masked; [`mask_quoted_values`] masks the values an
//! apiserver message quotes (`Invalid value: "..."`).
//!
//! ```
//! use gitops_core::secret::{SECRET_MASK, masked_secret};
//! let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
//!     "metadata": {"name": "db"}, "stringData": {"password": "hunter2"}});
//! let shown = masked_secret(&secret);
//! assert_eq!(shown["stringData"]["password"], SECRET_MASK);
//! assert!(!shown.to_string().contains("hunter2"));
//! ```

use serde_json::Value;

/// The annotation `kubectl apply` (client side) records the applied configuration in; on a
/// Secret it holds the Secret's values in plain text.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What is shown instead of a Secret's value.
pub const SECRET_MASK: &str = "***";

/// The fields of a Secret that hold its values.
pub const SECRET_VALUE_FIELDS: [&str; 2] = ["data", "stringData"];

/// Whether objects of this API group and kind are Secrets, whose values are never printed: the
/// core group's `Secret`. The kind is compared ignoring ASCII case: the apiserver accepts only
/// `Secret`, but an object spelled otherwise still holds what its author meant as secret, and
/// masking it costs nothing.
///
/// ```
/// use gitops_core::secret::is_secret_kind;
/// assert!(is_secret_kind("", "Secret"));
/// assert!(is_secret_kind("", "secret"));
/// assert!(!is_secret_kind("", "ConfigMap"));
/// assert!(!is_secret_kind("bitnami.com", "SealedSecret"));
/// ```
#[must_use]
pub fn is_secret_kind(group: &str, kind: &str) -> bool {
    (group.is_empty() || group.eq_ignore_ascii_case("core")) && kind.eq_ignore_ascii_case("Secret")
}

/// Whether a JSON object is a Secret (by its `apiVersion` and `kind`).
///
/// ```
/// let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret"});
/// assert!(gitops_core::secret::is_secret_object(&secret));
/// ```
#[must_use]
pub fn is_secret_object(object: &Value) -> bool {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    is_secret_kind(crate::split_api_version(api_version).0, kind)
}

/// Every value of a map replaced by [`SECRET_MASK`], keys kept; anything else is replaced
/// whole.
///
/// ```
/// use gitops_core::secret::mask_values;
/// let data = serde_json::json!({"a": "eA==", "b": "eQ=="});
/// assert_eq!(mask_values(&data), serde_json::json!({"a": "***", "b": "***"}));
/// assert_eq!(mask_values(&serde_json::json!(42)), serde_json::json!("***"));
/// ```
#[must_use]
pub fn mask_values(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.keys()
                .map(|k| (k.clone(), Value::String(SECRET_MASK.to_owned())))
                .collect(),
        ),
        _ => Value::String(SECRET_MASK.to_owned()),
    }
}

/// Masks, in place, the values of a Secret: `data`, `stringData` and the last-applied
/// annotation. Other fields (type, labels, other annotations) are kept.
///
/// ```
/// let mut secret = serde_json::json!({"kind": "Secret", "data": {"a": "eA=="},
///     "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}}});
/// gitops_core::secret::mask_secret_in_place(&mut secret);
/// assert_eq!(secret["data"]["a"], "***");
/// assert_eq!(secret["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"], "***");
/// ```
pub fn mask_secret_in_place(object: &mut Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    for field in SECRET_VALUE_FIELDS {
        if let Some(value) = map.get_mut(field)
            && !value.is_null()
        {
            *value = mask_values(value);
        }
    }
    if let Some(metadata) = map.get_mut("metadata") {
        mask_last_applied_in_metadata(metadata);
    }
}

/// Masks the last-applied annotation in a `metadata` mapping, in place.
///
/// ```
/// let mut metadata = serde_json::json!({"annotations": {
///     "kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{}}", "note": "kept"}});
/// gitops_core::secret::mask_last_applied_in_metadata(&mut metadata);
/// assert_eq!(metadata["annotations"]["note"], "kept");
/// assert_eq!(metadata["annotations"]["kubectl.kubernetes.io/last-applied-configuration"], "***");
/// ```
pub fn mask_last_applied_in_metadata(metadata: &mut Value) {
    if let Some(annotations) = metadata.get_mut("annotations") {
        mask_last_applied_in_annotations(annotations);
    }
}

/// Masks the last-applied annotation in an `annotations` mapping, in place.
///
/// ```
/// let mut annotations = serde_json::json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
/// gitops_core::secret::mask_last_applied_in_annotations(&mut annotations);
/// assert_eq!(annotations["kubectl.kubernetes.io/last-applied-configuration"], "***");
/// ```
pub fn mask_last_applied_in_annotations(annotations: &mut Value) {
    if let Some(value) = annotations
        .as_object_mut()
        .and_then(|a| a.get_mut(LAST_APPLIED_ANNOTATION))
    {
        *value = Value::String(SECRET_MASK.to_owned());
    }
}

/// A copy of a Secret with its values masked ([`mask_secret_in_place`]).
///
/// ```
/// let secret = serde_json::json!({"kind": "Secret", "data": {"a": "eA=="}});
/// assert_eq!(gitops_core::secret::masked_secret(&secret)["data"]["a"], "***");
/// ```
#[must_use]
pub fn masked_secret(object: &Value) -> Value {
    let mut copy = object.clone();
    mask_secret_in_place(&mut copy);
    copy
}

/// A copy of any JSON with every Secret in it masked: the value itself when it is a Secret, and
/// Secrets nested anywhere (the items of a `List`, a Secret embedded in another object).
///
/// ```
/// let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
///     {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}, "data": {"k": "c2VjcmV0"}},
///     {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"k": "shown"}}]});
/// let shown = gitops_core::secret::mask_secrets(&list);
/// assert_eq!(shown["items"][0]["data"]["k"], "***");
/// assert_eq!(shown["items"][1]["data"]["k"], "shown");
/// ```
#[must_use]
pub fn mask_secrets(value: &Value) -> Value {
    let mut copy = value.clone();
    mask_secrets_in_place(&mut copy);
    copy
}

fn mask_secrets_in_place(value: &mut Value) {
    if is_secret_object(value) {
        mask_secret_in_place(value);
    }
    match value {
        Value::Object(map) => map.values_mut().for_each(mask_secrets_in_place),
        Value::Array(items) => items.iter_mut().for_each(mask_secrets_in_place),
        _ => {}
    }
}

/// Masks, in a message from the apiserver about a Secret, every value it quotes after
/// `Invalid value: ` (a quoted string or a bare word up to the next `:` or `,`), so that a
/// rejected Secret's value is not printed.
///
/// ```
/// use gitops_core::secret::mask_quoted_values;
/// let message = r#"Secret "db" is invalid: data[x]: Invalid value: "hunter2": bad, type: Invalid value: 12: no"#;
/// assert_eq!(
///     mask_quoted_values(message),
///     r#"Secret "db" is invalid: data[x]: Invalid value: "***": bad, type: Invalid value: ***: no"#
/// );
/// ```
#[must_use]
pub fn mask_quoted_values(message: &str) -> String {
    const MARK: &str = "Invalid value: ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        let (head, tail) = rest.split_at(at + MARK.len());
        out.push_str(head);
        rest = if let Some(quoted) = tail.strip_prefix('"') {
            out.push('"');
            out.push_str(SECRET_MASK);
            out.push('"');
            skip_go_quoted(quoted)
        } else {
            out.push_str(SECRET_MASK);
            let end = tail.find([':', ',', '\n']).unwrap_or(tail.len());
            &tail[end..]
        };
    }
    out.push_str(rest);
    out
}

/// What follows a Go-quoted string whose opening quote is already consumed. Backslash escapes
/// are skipped; an unterminated string takes everything.
fn skip_go_quoted(text: &str) -> &str {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return &text[i + 1..],
            _ => {}
        }
    }
    ""
}

/// The Debug form of a JSON value with Secrets masked ([`mask_secrets`]).
pub(crate) struct MaskedDebug<'a>(pub(crate) &'a Value);

impl std::fmt::Debug for MaskedDebug<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if contains_secret(self.0) {
            std::fmt::Debug::fmt(&mask_secrets(self.0), f)
        } else {
            std::fmt::Debug::fmt(self.0, f)
        }
    }
}

fn contains_secret(value: &Value) -> bool {
    match value {
        Value::Object(map) => is_secret_object(value) || map.values().any(contains_secret),
        Value::Array(items) => items.iter().any(contains_secret),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn last_applied_secret() -> Value {
        let applied = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "annotations": {}}, "stringData": {"password": "hunter2"}});
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "annotations": {LAST_APPLIED_ANNOTATION: applied.to_string()}},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": "aHVudGVyMg=="}})
    }

    #[test]
    fn masks_data_string_data_and_the_last_applied_annotation() {
        let shown = masked_secret(&last_applied_secret()).to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("aHVudGVyMg=="), "{shown}");
        assert!(shown.contains(".dockerconfigjson"), "{shown}");
        assert!(shown.contains("kubernetes.io/dockerconfigjson"), "{shown}");
    }

    #[test]
    fn masks_secrets_nested_in_lists_and_in_debug() {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [last_applied_secret()]});
        let shown = format!("{:?}", MaskedDebug(&list));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("aHVudGVyMg=="), "{shown}");
        let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "shown"}});
        assert!(format!("{:?}", MaskedDebug(&config_map)).contains("shown"));
    }

    #[test]
    fn masks_quoted_values_with_escaped_quotes() {
        assert_eq!(
            mask_quoted_values(r#"x: Invalid value: "a\"b": rest"#),
            r#"x: Invalid value: "***": rest"#
        );
        assert_eq!(
            mask_quoted_values("Invalid value: \"unterminated"),
            "Invalid value: \"***\""
        );
        assert_eq!(mask_quoted_values("nothing quoted"), "nothing quoted");
    }
}
