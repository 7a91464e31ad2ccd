//! [`Substitution`]: `${VAR}` variables with shell-style operators, as a post-render step.

use std::collections::{BTreeMap, BTreeSet};

use gitops_core::{InvalidManifest, Manifest};
use serde_json::Value;

use crate::{PostRenderer, RenderError, RenderRequest};

/// Annotations that turn substitution off for one object when set to `disabled`: ours and Flux's.
pub const DISABLE_ANNOTATIONS: [&str; 2] = [
    "render.gitops-rs.io/substitute",
    "kustomize.toolkit.fluxcd.io/substitute",
];

/// The errors of substitution. Each names the object (kind, namespace/name and origin).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstituteError {
    /// A variable name given to [`Substitution::with_variable`] is not `[A-Za-z_][A-Za-z0-9_]*`.
    #[error(
        "invalid variable name {name:?}: use letters, digits and '_', not starting with a digit"
    )]
    InvalidVariableName {
        /// The name.
        name: String,
    },
    /// Strict mode: variables used without a value or a default.
    #[error("{object}: variables not set (strict mode): {}", names.join(", "))]
    Unset {
        /// The object.
        object: String,
        /// The variables, sorted.
        names: Vec<String>,
    },
    /// A `${...}` expression that cannot be parsed.
    #[error("{object}: at {pointer}: {message}")]
    Syntax {
        /// The object.
        object: String,
        /// The JSON pointer of the string value.
        pointer: String,
        /// What is wrong.
        message: String,
    },
    /// After substitution the object is no longer valid (say, an empty name).
    #[error("{object}: after substitution: {source}")]
    Invalid {
        /// The object, as it was before.
        object: String,
        /// What is wrong now.
        #[source]
        source: InvalidManifest,
    },
}

/// Replaces `${VAR}` expressions in the string values of rendered objects, the way Flux's
/// post-build substitution does, with these operators (`word` may itself hold `${...}`):
///
/// | expression | value |
/// |---|---|
/// | `${VAR}` | the value (empty when unset, an error in strict mode) |
/// | `${VAR:-word}`, `${VAR:=word}` | `word` when unset or empty |
/// | `${VAR-word}`, `${VAR=word}` | `word` when unset |
/// | `${VAR:+word}`, `${VAR+word}` | `word` when set (and not empty, with `:`), else empty |
/// | `${VAR/from/to}`, `${VAR//from/to}` | first / every `from` replaced by `to` |
/// | `${VAR/#from/to}`, `${VAR/%from/to}` | `from` replaced at the start / end |
/// | `${VAR#p}`, `${VAR%p}` (also `##`, `%%`) | prefix / suffix `p` removed |
/// | `${VAR^}`, `${VAR^^}`, `${VAR,}`, `${VAR,,}` | first / all upper or lower case |
/// | `${VAR:offset}`, `${VAR:offset:length}` | a substring (in characters) |
/// | `${#VAR}` | the length (in characters) |
/// | `$${VAR}` | the literal text `${VAR}` |
///
/// Patterns are literal text, not globs. Only string values are changed, never keys, so a
/// value cannot change the object's structure: `replicas: ${N}` stays a string. Objects
/// annotated with one of [`DISABLE_ANNOTATIONS`] set to `disabled` are left alone. Every object
/// is validated again afterwards.
///
/// As a post-render step it sees objects that were already validated, so a variable cannot stand
/// where validation needs a well-formed value before substitution (such as
/// `metadata.namespace: ${NS}`, which is not a DNS label); names and all other strings may use
/// variables.
///
/// ```
/// use gitops_render::Substitution;
/// let s = Substitution::new().with_variable("ENV", "prod").with_variable("IMAGE", "web:1.2");
/// assert_eq!(s.expand("${ENV}-${REGION:=eu}").unwrap(), "prod-eu");
/// assert_eq!(s.expand("${IMAGE/:/@}").unwrap(), "web@1.2");
/// assert_eq!(s.expand("$${ENV}").unwrap(), "${ENV}");
/// assert!(Substitution::new().strict(true).expand("${NOPE}").is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Substitution {
    variables: BTreeMap<String, String>,
    strict: bool,
}

impl Substitution {
    /// No variables, not strict.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a variable.
    #[must_use]
    pub fn with_variable(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.variables.insert(name.into(), value.into());
        self
    }

    /// Sets several variables.
    #[must_use]
    pub fn with_variables<K: Into<String>, V: Into<String>>(
        mut self,
        variables: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.variables
            .extend(variables.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// In strict mode a variable used without a value or a default is an error (default off:
    /// it becomes empty).
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Expands one string. Errors name no object; [`PostRenderer::post_render`] adds it.
    pub fn expand(&self, text: &str) -> Result<String, SubstituteError> {
        self.check_names()?;
        let mut unset = BTreeSet::new();
        let out =
            self.expand_into(text, &mut unset)
                .map_err(|message| SubstituteError::Syntax {
                    object: "text".into(),
                    pointer: String::new(),
                    message,
                })?;
        if self.strict && !unset.is_empty() {
            return Err(SubstituteError::Unset {
                object: "text".into(),
                names: unset.into_iter().collect(),
            });
        }
        Ok(out)
    }

    fn check_names(&self) -> Result<(), SubstituteError> {
        match self.variables.keys().find(|name| !is_name(name)) {
            Some(name) => Err(SubstituteError::InvalidVariableName { name: name.clone() }),
            None => Ok(()),
        }
    }

    /// Substitutes in one manifest.
    pub fn apply(&self, manifest: &mut Manifest) -> Result<(), SubstituteError> {
        self.check_names()?;
        if DISABLE_ANNOTATIONS
            .iter()
            .any(|key| manifest.annotation(key) == Some("disabled"))
        {
            return Ok(());
        }
        let object = manifest.to_string();
        let mut unset = BTreeSet::new();
        let mut pointer = String::new();
        let mut changed = false;
        self.walk(
            manifest.object_mut(),
            &mut pointer,
            &mut unset,
            &mut changed,
        )
        .map_err(|(pointer, message)| SubstituteError::Syntax {
            object: object.clone(),
            pointer,
            message,
        })?;
        if self.strict && !unset.is_empty() {
            return Err(SubstituteError::Unset {
                object,
                names: unset.into_iter().collect(),
            });
        }
        if changed {
            manifest
                .revalidate()
                .map_err(|source| SubstituteError::Invalid { object, source })?;
        }
        Ok(())
    }

    fn walk(
        &self,
        value: &mut Value,
        pointer: &mut String,
        unset: &mut BTreeSet<String>,
        changed: &mut bool,
    ) -> Result<(), (String, String)> {
        match value {
            Value::String(text) if text.contains('$') => {
                let expanded = self
                    .expand_into(text, unset)
                    .map_err(|message| (pointer.clone(), message))?;
                if expanded != *text {
                    *text = expanded;
                    *changed = true;
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&index.to_string());
                    self.walk(item, pointer, unset, changed)?;
                    pointer.truncate(len);
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    self.walk(item, pointer, unset, changed)?;
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn expand_into(&self, text: &str, unset: &mut BTreeSet<String>) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(literal) = after.strip_prefix("${") {
                // `$${...}`: the literal text `${...}`.
                out.push_str("${");
                rest = literal;
            } else if let Some(body_start) = after.strip_prefix('{') {
                let end = matching_brace(body_start)
                    .ok_or_else(|| format!("unterminated ${{ in {text:?}"))?;
                let body = &body_start[..end];
                out.push_str(&self.evaluate(body, unset)?);
                rest = &body_start[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn evaluate(&self, body: &str, unset: &mut BTreeSet<String>) -> Result<String, String> {
        if let Some(name) = body.strip_prefix('#') {
            if !is_name(name) {
                return Err(format!("invalid expression ${{{body}}}"));
            }
            return Ok(self.lookup(name, unset).chars().count().to_string());
        }
        let name_len = body
            .char_indices()
            .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
            .map_or(body.len(), |(i, _)| i);
        let (name, op) = body.split_at(name_len);
        if name.is_empty() {
            return Err(format!(
                "invalid expression ${{{body}}}: expected a variable name"
            ));
        }
        let value = self.variables.get(name);
        // Operators that give a value to an unset variable.
        for (prefix, when_empty_too) in [(":-", true), (":=", true), ("-", false), ("=", false)] {
            if let Some(word) = op.strip_prefix(prefix) {
                return match value {
                    Some(v) if !(when_empty_too && v.is_empty()) => Ok(v.clone()),
                    _ => self.expand_into(word, unset),
                };
            }
        }
        for (prefix, when_empty_too) in [(":+", true), ("+", false)] {
            if let Some(word) = op.strip_prefix(prefix) {
                return match value {
                    Some(v) if !(when_empty_too && v.is_empty()) => self.expand_into(word, unset),
                    _ => Ok(String::new()),
                };
            }
        }
        let value = self.lookup(name, unset);
        if op.is_empty() {
            return Ok(value);
        }
        if let Some(replace) = op.strip_prefix('/') {
            let (mode, replace) = match replace.chars().next() {
                Some('/') => ('a', &replace[1..]),
                Some('#') => ('s', &replace[1..]),
                Some('%') => ('e', &replace[1..]),
                _ => ('f', replace),
            };
            let (from, to) = replace.split_once('/').unwrap_or((replace, ""));
            let from = self.expand_into(from, unset)?;
            let to = self.expand_into(to, unset)?;
            if from.is_empty() {
                return Ok(value);
            }
            return Ok(match mode {
                'a' => value.replace(&from, &to),
                's' => match value.strip_prefix(&from) {
                    Some(rest) => format!("{to}{rest}"),
                    None => value,
                },
                'e' => match value.strip_suffix(&from) {
                    Some(rest) => format!("{rest}{to}"),
                    None => value,
                },
                _ => value.replacen(&from, &to, 1),
            });
        }
        if let Some(pattern) = op.strip_prefix('#') {
            let pattern = self.expand_into(pattern.strip_prefix('#').unwrap_or(pattern), unset)?;
            return Ok(value.strip_prefix(&pattern).unwrap_or(&value).to_owned());
        }
        if let Some(pattern) = op.strip_prefix('%') {
            let pattern = self.expand_into(pattern.strip_prefix('%').unwrap_or(pattern), unset)?;
            return Ok(value.strip_suffix(&pattern).unwrap_or(&value).to_owned());
        }
        match op {
            "^^" => return Ok(value.to_uppercase()),
            ",," => return Ok(value.to_lowercase()),
            "^" | "," => {
                let mut chars = value.chars();
                return Ok(match chars.next() {
                    Some(first) if op == "^" => first.to_uppercase().chain(chars).collect(),
                    Some(first) => first.to_lowercase().chain(chars).collect(),
                    None => String::new(),
                });
            }
            _ => {}
        }
        if let Some(range) = op.strip_prefix(':') {
            let (offset, length) = match range.split_once(':') {
                Some((o, l)) => (o, Some(l)),
                None => (range, None),
            };
            let parse = |s: &str| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("invalid substring ${{{body}}}: expected numbers"))
            };
            let offset = parse(offset)?;
            let chars = value.chars().skip(offset);
            return Ok(match length {
                Some(l) => chars.take(parse(l)?).collect(),
                None => chars.collect(),
            });
        }
        Err(format!(
            "invalid expression ${{{body}}}: unknown operator {op:?}"
        ))
    }

    fn lookup(&self, name: &str, unset: &mut BTreeSet<String>) -> String {
        match self.variables.get(name) {
            Some(value) => value.clone(),
            None => {
                unset.insert(name.to_owned());
                String::new()
            }
        }
    }
}

/// The index of the `}` that closes an expression whose `${` has just been read.
fn matching_brace(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[async_trait::async_trait]
impl PostRenderer for Substitution {
    async fn post_render(
        &self,
        request: &RenderRequest,
        mut manifests: Vec<Manifest>,
    ) -> Result<Vec<Manifest>, RenderError> {
        for manifest in &mut manifests {
            if request.cancellation().is_cancelled() {
                return Err(RenderError::Cancelled);
            }
            self.apply(manifest)?;
        }
        Ok(manifests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitops_core::Origin;
    use serde_json::json;

    fn vars() -> Substitution {
        Substitution::new()
            .with_variable("APP", "web")
            .with_variable("EMPTY", "")
            .with_variable("IMAGE", "registry/web:1.2.3")
            .with_variable("MIXED", "Hello World")
    }

    #[test]
    fn operators() {
        let s = vars();
        let cases = [
            ("${APP}", "web"),
            ("pre-${APP}-post", "pre-web-post"),
            ("${UNSET}", ""),
            ("${UNSET:=eu}", "eu"),
            ("${UNSET:-eu}", "eu"),
            ("${EMPTY:-eu}", "eu"),
            ("${EMPTY:=eu}", "eu"),
            ("${EMPTY-eu}", ""),
            ("${UNSET-eu}", "eu"),
            ("${APP:-eu}", "web"),
            ("${UNSET:-${APP}-x}", "web-x"),
            ("${APP:+set}", "set"),
            ("${EMPTY:+set}", ""),
            ("${EMPTY+set}", "set"),
            ("${IMAGE/:/@}", "registry/web@1.2.3"),
            ("${IMAGE/./-}", "registry/web:1-2.3"),
            ("${IMAGE//./-}", "registry/web:1-2-3"),
            ("${IMAGE/#registry/mirror}", "mirror/web:1.2.3"),
            ("${IMAGE/%3/4}", "registry/web:1.2.4"),
            ("${IMAGE/registry}", "/web:1.2.3"),
            ("${IMAGE#registry/}", "web:1.2.3"),
            ("${IMAGE%:1.2.3}", "registry/web"),
            ("${MIXED^^}", "HELLO WORLD"),
            ("${MIXED,,}", "hello world"),
            ("${APP^}", "Web"),
            ("${MIXED,}", "hello World"),
            ("${APP:1}", "eb"),
            ("${APP:0:2}", "we"),
            ("${#APP}", "3"),
            ("$${APP}", "${APP}"),
            ("cost: $5 and $APP", "cost: $5 and $APP"),
            ("a$", "a$"),
        ];
        for (text, expected) in cases {
            assert_eq!(s.expand(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn syntax_errors_and_names() {
        let s = vars();
        assert!(
            s.expand("${APP")
                .unwrap_err()
                .to_string()
                .contains("unterminated")
        );
        assert!(s.expand("${}").is_err());
        assert!(
            s.expand("${APP?x}")
                .unwrap_err()
                .to_string()
                .contains("unknown operator")
        );
        assert!(s.expand("${APP:x}").is_err());
        let bad = Substitution::new().with_variable("1X", "a");
        assert_eq!(
            bad.expand("x").unwrap_err(),
            SubstituteError::InvalidVariableName { name: "1X".into() }
        );
    }

    fn manifest(object: Value) -> Manifest {
        Manifest::new(object, Origin::new("apps/web.yaml").with_line(3)).unwrap()
    }

    #[test]
    fn substitutes_only_string_values_and_keeps_structure() {
        let s = vars().with_variable("EVIL", "x\nkind: Secret\n---\nfoo: bar");
        let mut m = manifest(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "${APP}-config", "labels": {"${APP}": "${APP}"}},
            "data": {"a": "${EVIL}", "n": 3, "list": ["${APP:0:1}", true]}
        }));
        s.apply(&mut m).unwrap();
        assert_eq!(
            m.object(),
            &json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "web-config", "labels": {"${APP}": "web"}},
                "data": {"a": "x\nkind: Secret\n---\nfoo: bar", "n": 3, "list": ["w", true]}
            })
        );
        assert_eq!(m.kind(), "ConfigMap");
    }

    #[test]
    fn strict_mode_names_variables_and_object() {
        let s = vars().strict(true);
        let mut m = manifest(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "ns"},
            "data": {"a": "${ZED} ${ALPHA} ${ZED} ${DEFAULTED:=ok}"}
        }));
        let err = s.apply(&mut m).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap ns/a from apps/web.yaml:3: variables not set (strict mode): ALPHA, ZED"
        );
        let mut syntax = manifest(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"},
            "data": {"a/b": "${BROKEN"}
        }));
        let err = s.apply(&mut syntax).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ConfigMap a from apps/web.yaml:3: at /data/a~1b: unterminated"),
            "{err}"
        );
    }

    #[test]
    fn opt_out_annotations() {
        for key in DISABLE_ANNOTATIONS {
            let object = json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "a", "annotations": {key: "disabled"}},
                "data": {"script": "echo ${HOME}"}
            });
            let mut m = manifest(object.clone());
            vars().strict(true).apply(&mut m).unwrap();
            assert_eq!(m.object(), &object);
        }
    }

    #[test]
    fn revalidates_after_substitution() {
        let mut m = manifest(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "${NAME}"}
        }));
        let err = Substitution::new().apply(&mut m).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap ${NAME} from apps/web.yaml:3: after substitution: missing metadata.name"
        );
    }
}
