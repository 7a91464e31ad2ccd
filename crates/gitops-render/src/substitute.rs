//! [`Substitution`]: `${VAR}` variables with shell-style operators, applied to rendered documents
//! before they are validated as Kubernetes objects.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use gitops_core::escape::Escaped;
use gitops_core::{Document, Manifest, ObjectId, Origin, split_api_version};
use granit_parser::{Event, Parser, ScalarStyle};
use serde_json::{Map, Value};

use crate::{PostRenderer, RenderError, RenderRequest};

/// Annotations that turn substitution off for one object when set to `disabled`: ours and Flux's.
pub const DISABLE_ANNOTATIONS: [&str; 2] = [
    "render.gitops-rs.io/substitute",
    "kustomize.toolkit.fluxcd.io/substitute",
];

/// The errors of substitution. Those about an object name it (kind, namespace/name as written,
/// before substitution, and its origin: file and line) and the place in it (a JSON pointer of the
/// keys as written).
///
/// No error, in its message, its [`Debug`](std::fmt::Debug) form or its fields, holds a
/// variable's value, the text a substitution produced, or the text of the scalar it happened in
/// (which may be a Secret's): they name the variables instead. Names that come from the source
/// are printed with control characters escaped.
///
/// ```
/// use gitops_render::{SubstituteError, Substitution};
/// let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  url: ${DB_PASSWORD}\n";
/// let mut documents = gitops_core::parse_yaml_documents(text, "db.yaml")?;
/// let err = Substitution::new()
///     .with_variable("DB_PASSWORD", "hunter2: x")
///     .substitute_yaml(text, &mut documents)
///     .unwrap_err();
/// assert!(matches!(err, SubstituteError::Structure { .. }));
/// assert!(err.to_string().contains("DB_PASSWORD"));
/// assert!(!err.to_string().contains("hunter2"));
/// assert!(!format!("{err:?}").contains("hunter2"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    #[error("{object}: at {pointer}: {message}", pointer = Escaped(pointer))]
    Syntax {
        /// The object.
        object: String,
        /// The JSON pointer of the value or key.
        pointer: String,
        /// What is wrong (it names variables, never the text around them).
        message: String,
    },
    /// The result in an unquoted (plain) YAML scalar would not read back as that one scalar: it
    /// would add keys, items or documents, or lose text to YAML syntax. Refused, so that a value
    /// can never change an object's structure.
    #[error(
        "{object}: at {pointer}: the value substituted from {variables} would not stay one unquoted YAML scalar ({reason}; the value is not shown); quote the expression, such as \"${{VAR}}\", to substitute it as text",
        pointer = Escaped(pointer),
        variables = names_or_none(variables)
    )]
    Structure {
        /// The object.
        object: String,
        /// The JSON pointer of the value.
        pointer: String,
        /// The variables the scalar refers to, sorted (their values are not kept).
        variables: Vec<String>,
        /// How YAML would read it.
        reason: String,
    },
    /// Expressions nest deeper than [`MAX_NESTING`] (such as `${A:-${A:-${A:-...}}}`): refused
    /// before the stack runs out.
    #[error(
        "{object}: at {pointer}: expressions nest deeper than {limit} levels (at the variable {variable}; the text is not shown)",
        pointer = Escaped(pointer),
        variable = Escaped(variable)
    )]
    TooDeep {
        /// The object.
        object: String,
        /// The JSON pointer of the value or key.
        pointer: String,
        /// The variable whose operator went one level too deep.
        variable: String,
        /// The limit, [`MAX_NESTING`].
        limit: usize,
    },
    /// A result is larger than [`Substitution::with_max_scalar_bytes`] allows for one scalar,
    /// or the results in one object together larger than
    /// [`Substitution::with_max_object_bytes`] allows. Checked before the text is made.
    #[error(
        "{object}: at {pointer}: substituting {variables} would make more than {limit} bytes ({what}; the value is not shown)",
        pointer = Escaped(pointer),
        variables = names_or_none(variables)
    )]
    TooLarge {
        /// The object.
        object: String,
        /// The JSON pointer of the value or key.
        pointer: String,
        /// The variables the scalar refers to, sorted.
        variables: Vec<String>,
        /// What the limit is for: `one scalar` or `one object`.
        what: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A substituted mapping key collides with another key of the same mapping.
    #[error(
        "{object}: at {pointer}: the key {key:?}, substituted from {variables}, collides with another key of the mapping (the result is not shown)",
        pointer = Escaped(pointer),
        variables = names_or_none(variables)
    )]
    DuplicateKey {
        /// The object.
        object: String,
        /// The JSON pointer of the mapping.
        pointer: String,
        /// The key as written, before substitution.
        key: String,
        /// The variables the key refers to, sorted.
        variables: Vec<String>,
    },
}

/// Replaces `${VAR}` expressions in rendered documents, the way Flux's post-build substitution
/// does, with these operators (`word` may itself hold `${...}`):
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
/// Patterns are literal text, not globs.
///
/// # When and where
///
/// Substitution runs on every rendered document (a plain file's documents, or each object of
/// `kustomize build` or `helm template` output) *before* it is validated as a Kubernetes object,
/// so `metadata.namespace: ${NS}` and `name: app-${ENV}` work; validation (apiVersion, kind,
/// name, namespace) happens afterwards, with errors naming the file and line. Give it to a render
/// with [`RenderRequest::with_substitution`], or to every render of a renderer with
/// [`Renderer::then`](crate::Renderer::then) (as a [`PostRenderer`] it hands itself to the
/// renderer through the request, and does nothing afterwards); every renderer of this crate
/// applies it. When both give one, their variables are merged, the request's winning, and strict
/// mode holds if either asks for it.
///
/// # Types and structure
///
/// Values are substituted scalar by scalar, never as raw text, so a value cannot change the
/// structure of an object:
/// - in a quoted or block scalar (`"${VAR}"`, `'${VAR}'`, `|`), the result is text, whatever it
///   holds (newlines, `: `, `---` included);
/// - in an unquoted (plain) scalar, the result is typed the way YAML types an unquoted scalar,
///   as Flux does: `replicas: ${REPLICAS}` with `REPLICAS=3` gives the number 3, `true` a
///   boolean, an empty value null. A result that would not read back as that one scalar (such
///   as `a: b`, `- x`, `x # y`, or text with a line break) is refused with
///   [`SubstituteError::Structure`];
/// - where Kubernetes allows only strings, a typed result stays text (as YAML reads it): label
///   and annotation values (of the object and of templates inside it) and the `data`,
///   `binaryData` and `stringData` values of ConfigMaps and Secrets, so `version: ${V}` with
///   `V=1.0` is the label `"1.0"`, not a number the API server would refuse;
/// - mapping keys may hold expressions too (their result is text); a key that collides with
///   another is refused.
///
/// JSON files have only quoted strings: their results are always text. Kustomize and Helm
/// re-write the YAML they read, so the quoting seen is that of their output, in which a string
/// that looks like a number stays quoted.
///
/// Objects annotated with one of [`DISABLE_ANNOTATIONS`] set to `disabled` are left alone.
///
/// ```
/// use gitops_render::Substitution;
/// let s = Substitution::new().with_variable("ENV", "prod").with_variable("IMAGE", "web:1.2");
/// assert_eq!(s.expand("${ENV}-${REGION:=eu}").unwrap(), "prod-eu");
/// assert_eq!(s.expand("${IMAGE/:/@}").unwrap(), "web@1.2");
/// assert_eq!(s.expand("$${ENV}").unwrap(), "${ENV}");
/// assert!(Substitution::new().strict(true).expand("${NOPE}").is_err());
///
/// let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-${ENV}\nspec:\n  replicas: ${N}\n  minReadySeconds: \"${N}\"\n";
/// let mut documents = gitops_core::parse_yaml_documents(text, "app.yaml")?;
/// s.clone().with_variable("N", "3").substitute_yaml(text, &mut documents)?;
/// assert_eq!(documents[0].value["metadata"]["name"], "app-prod");
/// assert_eq!(documents[0].value["spec"]["replicas"], 3);
/// assert_eq!(documents[0].value["spec"]["minReadySeconds"], "3");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Secrets
///
/// Values are never printed: not by errors (see [`SubstituteError`]), and not by this type's
/// [`Debug`](std::fmt::Debug), which shows the variables' names only.
///
/// ```
/// use gitops_render::Substitution;
/// let s = Substitution::new().with_variable("DB_PASSWORD", "hunter2");
/// assert_eq!(format!("{s:?}"), r#"Substitution { variables: ["DB_PASSWORD"], values: "<not shown>", strict: false }"#);
/// ```
#[derive(Clone, Default)]
pub struct Substitution {
    variables: std::collections::BTreeMap<String, String>,
    strict: bool,
    /// Set by [`Substitution::with_max_scalar_bytes`]; `None` for the default.
    max_scalar_bytes: Option<usize>,
    /// Set by [`Substitution::with_max_object_bytes`]; `None` for the default.
    max_object_bytes: Option<usize>,
}

/// How deep `${...}` expressions may nest inside each other's operators (`${A:-${B:-x}}` is 2):
/// deeper is [`SubstituteError::TooDeep`]. Real sources nest two or three levels.
pub const MAX_NESTING: usize = 32;

/// The default of [`Substitution::with_max_scalar_bytes`]: 3 MiB, the most the API server
/// accepts in one request body, so no larger value could ever be applied.
pub const DEFAULT_MAX_SCALAR_BYTES: usize = 3 * 1024 * 1024;

/// The default of [`Substitution::with_max_object_bytes`]: 3 MiB, for the same reason.
pub const DEFAULT_MAX_OBJECT_BYTES: usize = 3 * 1024 * 1024;

impl fmt::Debug for Substitution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .variables
            .keys()
            .map(|name| Escaped(name).to_string())
            .collect();
        f.debug_struct("Substitution")
            .field("variables", &names)
            .field("values", &"<not shown>")
            .field("strict", &self.strict)
            .finish()
    }
}

/// Per document, the JSON pointers of the unquoted scalars that hold a `$` (those whose result
/// is typed as YAML types an unquoted scalar).
#[derive(Debug, Clone, Default)]
pub(crate) struct PlainScalars(HashSet<String>);

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

    /// The most bytes one substituted scalar may have ([`DEFAULT_MAX_SCALAR_BYTES`] unless
    /// set); a larger result is [`SubstituteError::TooLarge`], found before it is made.
    ///
    /// ```
    /// use gitops_render::{SubstituteError, Substitution};
    /// let s = Substitution::new().with_variable("A", "0123456789").with_max_scalar_bytes(25);
    /// assert_eq!(s.expand("${A}${A}").unwrap().len(), 20);
    /// assert!(matches!(s.expand("${A}${A}${A}"), Err(SubstituteError::TooLarge { .. })));
    /// ```
    #[must_use]
    pub fn with_max_scalar_bytes(mut self, max: usize) -> Self {
        self.max_scalar_bytes = Some(max);
        self
    }

    /// The most bytes the substituted scalars of one object may have together
    /// ([`DEFAULT_MAX_OBJECT_BYTES`] unless set); more is [`SubstituteError::TooLarge`].
    ///
    /// ```
    /// use gitops_render::{SubstituteError, Substitution};
    /// let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: ${A}\n  y: ${A}\n";
    /// let mut documents = gitops_core::parse_yaml_documents(text, "a.yaml")?;
    /// let err = Substitution::new()
    ///     .with_variable("A", "0123456789")
    ///     .with_max_object_bytes(15)
    ///     .substitute_yaml(text, &mut documents)
    ///     .unwrap_err();
    /// assert!(matches!(err, SubstituteError::TooLarge { what: "one object", .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_max_object_bytes(mut self, max: usize) -> Self {
        self.max_object_bytes = Some(max);
        self
    }

    /// Expands one string (as in a quoted scalar: the result is text).
    pub fn expand(&self, text: &str) -> Result<String, SubstituteError> {
        self.check_names()?;
        let mut unset = BTreeSet::new();
        let out = self
            .expand_into(text, &mut unset, 0)
            .map_err(|failure| failure.at(String::new(), text).into_error("text".into()))?;
        if self.strict && !unset.is_empty() {
            return Err(SubstituteError::Unset {
                object: "text".into(),
                names: unset.into_iter().collect(),
            });
        }
        Ok(out)
    }

    fn scalar_limit(&self) -> usize {
        self.max_scalar_bytes.unwrap_or(DEFAULT_MAX_SCALAR_BYTES)
    }

    fn object_limit(&self) -> usize {
        self.max_object_bytes.unwrap_or(DEFAULT_MAX_OBJECT_BYTES)
    }

    /// These variables with `over`'s on top; strict if either is.
    fn layered(&self, over: &Substitution) -> Substitution {
        let mut variables = self.variables.clone();
        variables.extend(over.variables.clone());
        Substitution {
            variables,
            strict: self.strict || over.strict,
            // The request's limits win where it sets them, as its variables do.
            max_scalar_bytes: over.max_scalar_bytes.or(self.max_scalar_bytes),
            max_object_bytes: over.max_object_bytes.or(self.max_object_bytes),
        }
    }

    fn check_names(&self) -> Result<(), SubstituteError> {
        match self.variables.keys().find(|name| !is_name(name)) {
            Some(name) => Err(SubstituteError::InvalidVariableName { name: name.clone() }),
            None => Ok(()),
        }
    }

    /// Substitutes in the documents parsed from the YAML `text` (by
    /// [`gitops_core::parse_yaml_documents`], with their origins' lines as parsed). Unquoted
    /// scalars are typed; see [`Substitution`].
    pub fn substitute_yaml(
        &self,
        text: &str,
        documents: &mut [Document],
    ) -> Result<(), SubstituteError> {
        self.check_names()?;
        if !text.contains('$') {
            return Ok(());
        }
        let plain = plain_scalars(text, documents);
        self.substitute_documents(documents, &plain)
    }

    /// Substitutes in documents parsed from JSON: every string is quoted, so every result is
    /// text.
    pub fn substitute_json(&self, documents: &mut [Document]) -> Result<(), SubstituteError> {
        self.check_names()?;
        self.substitute_documents(documents, &[])
    }

    /// Substitutes in `documents`; `plain[i]` (when present) lists the unquoted scalars of
    /// document `i`.
    pub(crate) fn substitute_documents(
        &self,
        documents: &mut [Document],
        plain: &[PlainScalars],
    ) -> Result<(), SubstituteError> {
        self.check_names()?;
        let none = PlainScalars::default();
        for (index, document) in documents.iter_mut().enumerate() {
            let plain = plain.get(index).unwrap_or(&none);
            if is_list(&document.value) {
                let Some(Value::Array(items)) = document.value.get_mut("items") else {
                    unreachable!("is_list checked for items")
                };
                for (item_index, item) in items.iter_mut().enumerate() {
                    let mut pointer = format!("/items/{item_index}");
                    self.substitute_object(item, &document.origin, &mut pointer, plain)?;
                }
            } else {
                let mut pointer = String::new();
                self.substitute_object(&mut document.value, &document.origin, &mut pointer, plain)?;
            }
        }
        Ok(())
    }

    fn substitute_object(
        &self,
        object: &mut Value,
        origin: &Origin,
        pointer: &mut String,
        plain: &PlainScalars,
    ) -> Result<(), SubstituteError> {
        if DISABLE_ANNOTATIONS.iter().any(|key| {
            object
                .get("metadata")
                .and_then(|m| m.get("annotations"))
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
                == Some("disabled")
        }) {
            return Ok(());
        }
        let mut unset = BTreeSet::new();
        let mut refused = None;
        let string_data = object.get("apiVersion").and_then(Value::as_str) == Some("v1")
            && matches!(
                object.get("kind").and_then(Value::as_str),
                Some("ConfigMap" | "Secret")
            );
        let mut context = WalkContext {
            plain,
            unset: &mut unset,
            refused: &mut refused,
            object_start: pointer.len(),
            string_data,
            remaining_bytes: self.object_limit(),
        };
        // The object is named as written: its name after substitution may hold a value.
        let written = describe(object, origin);
        if let Err(failure) = self.walk(object, pointer, &mut context) {
            return Err(failure.into_error(written));
        }
        // Unset variables explain a refused value best (an empty part of it, say).
        if self.strict && !unset.is_empty() {
            return Err(SubstituteError::Unset {
                object: written,
                names: unset.into_iter().collect(),
            });
        }
        match refused {
            Some(failure) => Err(failure.into_error(written)),
            None => Ok(()),
        }
    }

    fn walk(
        &self,
        value: &mut Value,
        pointer: &mut String,
        context: &mut WalkContext<'_>,
    ) -> Result<(), WalkFailure> {
        match value {
            Value::String(text) if text.contains('$') => {
                let expanded = self
                    .expand_into(text, context.unset, 0)
                    .map_err(|failure| failure.at(pointer.clone(), text))?;
                context.spend(self.object_limit(), expanded.len(), pointer, text)?;
                if context.plain.0.contains(pointer.as_str()) {
                    match type_plain_scalar(&expanded) {
                        Ok(Value::String(typed)) => *text = typed,
                        // What YAML reads, as text.
                        Ok(_) if context.is_string_only(pointer) => {
                            *text = expanded.trim_matches([' ', '\t']).to_owned();
                        }
                        Ok(typed) => *value = typed,
                        Err(reason) => {
                            context.refused.get_or_insert(WalkFailure::Structure {
                                pointer: pointer.clone(),
                                variables: referenced_names(text),
                                reason,
                            });
                        }
                    }
                } else {
                    *text = expanded;
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&index.to_string());
                    self.walk(item, pointer, context)?;
                    pointer.truncate(len);
                }
            }
            Value::Object(map) => {
                let keys_change = map.keys().any(|k| k.contains('$'));
                let mut renamed = Map::new();
                for (key, item) in map.iter_mut() {
                    let len = pointer.len();
                    push_pointer(pointer, key);
                    self.walk(item, pointer, context)?;
                    pointer.truncate(len);
                }
                if keys_change {
                    // Each key after substitution, and as written.
                    let mut written_keys: HashMap<String, String> = HashMap::new();
                    for (written, item) in std::mem::take(map) {
                        let key = if written.contains('$') {
                            let len = pointer.len();
                            push_pointer(pointer, &written);
                            let expanded = self
                                .expand_into(&written, context.unset, 0)
                                .map_err(|failure| failure.at(pointer.clone(), &written))?;
                            context.spend(
                                self.object_limit(),
                                expanded.len(),
                                pointer,
                                &written,
                            )?;
                            pointer.truncate(len);
                            expanded
                        } else {
                            written.clone()
                        };
                        if let Some(other) = written_keys.get(&key) {
                            // Name the key that was substituted (the other may be literal).
                            let written = if written.contains('$') {
                                written
                            } else {
                                other.clone()
                            };
                            return Err(WalkFailure::DuplicateKey {
                                pointer: if pointer.is_empty() {
                                    "/".to_owned()
                                } else {
                                    pointer.clone()
                                },
                                variables: referenced_names(&written),
                                key: written,
                            });
                        }
                        written_keys.insert(key.clone(), written);
                        renamed.insert(key, item);
                    }
                    *map = renamed;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Expands `text`, which sits `depth` operators deep in an expression (0 for a scalar).
    fn expand_into(
        &self,
        text: &str,
        unset: &mut BTreeSet<String>,
        depth: usize,
    ) -> Result<String, Failure> {
        let mut out = String::with_capacity(text.len().min(self.scalar_limit()));
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            self.check_size(out.len(), at)?;
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(literal) = after.strip_prefix("${") {
                // `$${...}`: the literal text `${...}`.
                self.check_size(out.len(), 2)?;
                out.push_str("${");
                rest = literal;
            } else if let Some(body_start) = after.strip_prefix('{') {
                let end = matching_brace(body_start)
                    .ok_or_else(|| Failure::Syntax("unterminated ${: no closing }".to_owned()))?;
                let body = &body_start[..end];
                let value = self.evaluate(body, unset, depth)?;
                self.check_size(out.len(), value.len())?;
                out.push_str(&value);
                rest = &body_start[end + 1..];
            } else {
                self.check_size(out.len(), 1)?;
                out.push('$');
                rest = after;
            }
        }
        self.check_size(out.len(), rest.len())?;
        out.push_str(rest);
        Ok(out)
    }

    /// Refuses to grow a result of `len` bytes by `more` past the limit for one scalar.
    fn check_size(&self, len: usize, more: usize) -> Result<(), Failure> {
        match len.checked_add(more) {
            Some(total) if total <= self.scalar_limit() => Ok(()),
            _ => Err(Failure::TooLarge {
                what: "one scalar",
                limit: self.scalar_limit(),
            }),
        }
    }

    /// Expands the `word` of `name`'s operator, one level deeper.
    fn expand_nested(
        &self,
        name: &str,
        word: &str,
        unset: &mut BTreeSet<String>,
        depth: usize,
    ) -> Result<String, Failure> {
        if depth >= MAX_NESTING {
            return Err(Failure::TooDeep {
                variable: name.to_owned(),
            });
        }
        self.expand_into(word, unset, depth + 1)
    }

    /// The value of one expression, `body` being what stands between `${` and `}`.
    fn evaluate(
        &self,
        body: &str,
        unset: &mut BTreeSet<String>,
        depth: usize,
    ) -> Result<String, Failure> {
        if let Some(name) = body.strip_prefix('#') {
            if !is_name(name) {
                return Err(Failure::Syntax(
                    "invalid length expression: expected ${#NAME}".to_owned(),
                ));
            }
            return Ok(self.lookup(name, unset).chars().count().to_string());
        }
        let (name, op) = split_name(body)?;
        if let Some(result) = self.default_or_alternative(name, op, unset, depth) {
            return result;
        }
        let value = self.lookup(name, unset);
        if op.is_empty() {
            return Ok(value);
        }
        if let Some(replace) = op.strip_prefix('/') {
            return self.replace(name, value, replace, unset, depth);
        }
        if let Some(pattern) = op.strip_prefix('#') {
            let pattern = pattern.strip_prefix('#').unwrap_or(pattern);
            let pattern = self.expand_nested(name, pattern, unset, depth)?;
            return Ok(value.strip_prefix(&pattern).unwrap_or(&value).to_owned());
        }
        if let Some(pattern) = op.strip_prefix('%') {
            let pattern = pattern.strip_prefix('%').unwrap_or(pattern);
            let pattern = self.expand_nested(name, pattern, unset, depth)?;
            return Ok(value.strip_suffix(&pattern).unwrap_or(&value).to_owned());
        }
        if let Some(changed) = change_case(&value, op) {
            return Ok(changed);
        }
        if let Some(range) = op.strip_prefix(':') {
            return substring(name, &value, range);
        }
        Err(Failure::Syntax(format!(
            "invalid expression with {name}: unknown operator (the expression is not shown)"
        )))
    }

    /// `${NAME:-word}`, `${NAME:=word}`, `${NAME-word}` and `${NAME=word}` (a value for an
    /// unset, or also empty, variable), `${NAME:+word}` and `${NAME+word}` (the word for a set
    /// one); `None` for another operator.
    fn default_or_alternative(
        &self,
        name: &str,
        op: &str,
        unset: &mut BTreeSet<String>,
        depth: usize,
    ) -> Option<Result<String, Failure>> {
        let value = self.variables.get(name);
        for (prefix, when_empty_too) in [(":-", true), (":=", true), ("-", false), ("=", false)] {
            if let Some(word) = op.strip_prefix(prefix) {
                return Some(match value {
                    Some(v) if !(when_empty_too && v.is_empty()) => Ok(v.clone()),
                    _ => self.expand_nested(name, word, unset, depth),
                });
            }
        }
        for (prefix, when_empty_too) in [(":+", true), ("+", false)] {
            if let Some(word) = op.strip_prefix(prefix) {
                return Some(match value {
                    Some(v) if !(when_empty_too && v.is_empty()) => {
                        self.expand_nested(name, word, unset, depth)
                    }
                    _ => Ok(String::new()),
                });
            }
        }
        None
    }

    /// `${name/from/to}` and its forms: `//` replaces every match, `/#` a prefix, `/%` a
    /// suffix, `/` the first match; the size of the result is checked before it is made.
    fn replace(
        &self,
        name: &str,
        value: String,
        replace: &str,
        unset: &mut BTreeSet<String>,
        depth: usize,
    ) -> Result<String, Failure> {
        let (mode, replace) = match replace.chars().next() {
            Some('/') => ('a', &replace[1..]),
            Some('#') => ('s', &replace[1..]),
            Some('%') => ('e', &replace[1..]),
            _ => ('f', replace),
        };
        let (from, to) = replace.split_once('/').unwrap_or((replace, ""));
        let from = self.expand_nested(name, from, unset, depth)?;
        let to = self.expand_nested(name, to, unset, depth)?;
        if from.is_empty() {
            return Ok(value);
        }
        // The size of the result, before it is made: each match of `from` becomes `to`.
        let matches = match mode {
            'a' => value.matches(from.as_str()).count(),
            's' => usize::from(value.starts_with(from.as_str())),
            'e' => usize::from(value.ends_with(from.as_str())),
            _ => usize::from(value.contains(from.as_str())),
        };
        let size = matches
            .checked_mul(to.len())
            .and_then(|added| added.checked_add(value.len() - matches * from.len()));
        match size {
            Some(size) if size <= self.scalar_limit() => {}
            _ => {
                return Err(Failure::TooLarge {
                    what: "one scalar",
                    limit: self.scalar_limit(),
                });
            }
        }
        Ok(match mode {
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
        })
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

/// An expression's variable name and the operator after it.
fn split_name(body: &str) -> Result<(&str, &str), Failure> {
    let name_len = body
        .char_indices()
        .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(body.len(), |(i, _)| i);
    let (name, op) = body.split_at(name_len);
    if name.is_empty() {
        return Err(Failure::Syntax(
            "invalid expression: expected a variable name after ${".to_owned(),
        ));
    }
    Ok((name, op))
}

/// `${NAME^^}`, `${NAME,,}`, `${NAME^}` and `${NAME,}`: the value in upper or lower case, whole
/// or its first character; `None` for another operator.
fn change_case(value: &str, op: &str) -> Option<String> {
    match op {
        "^^" => Some(value.to_uppercase()),
        ",," => Some(value.to_lowercase()),
        "^" | "," => {
            let mut chars = value.chars();
            Some(match chars.next() {
                Some(first) if op == "^" => first.to_uppercase().chain(chars).collect(),
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::new(),
            })
        }
        _ => None,
    }
}

/// `${NAME:offset}` and `${NAME:offset:length}`, in characters.
fn substring(name: &str, value: &str, range: &str) -> Result<String, Failure> {
    let (offset, length) = match range.split_once(':') {
        Some((o, l)) => (o, Some(l)),
        None => (range, None),
    };
    let parse = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| Failure::Syntax(format!("invalid substring of {name}: expected numbers")))
    };
    let offset = parse(offset)?;
    let chars = value.chars().skip(offset);
    Ok(match length {
        Some(l) => chars.take(parse(l)?).collect(),
        None => chars.collect(),
    })
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

/// What a walk through one object carries along.
struct WalkContext<'a> {
    plain: &'a PlainScalars,
    unset: &'a mut BTreeSet<String>,
    /// The first value refused (the walk goes on, to find every unset variable).
    refused: &'a mut Option<WalkFailure>,
    /// Where the object starts in the pointer (after `/items/N` for an item of a List).
    object_start: usize,
    /// The object is a ConfigMap or Secret, whose `data`, `binaryData` and `stringData` hold
    /// strings only.
    string_data: bool,
    /// What the substituted scalars of the object may still add up to, in bytes.
    remaining_bytes: usize,
}

impl WalkContext<'_> {
    /// Counts `bytes` of substituted text (from `written`, at `pointer`) against the object's
    /// limit, `limit`.
    fn spend(
        &mut self,
        limit: usize,
        bytes: usize,
        pointer: &str,
        written: &str,
    ) -> Result<(), WalkFailure> {
        match self.remaining_bytes.checked_sub(bytes) {
            Some(remaining) => {
                self.remaining_bytes = remaining;
                Ok(())
            }
            None => Err(WalkFailure::TooLarge {
                pointer: pointer.to_owned(),
                variables: referenced_names(written),
                what: "one object",
                limit,
            }),
        }
    }

    /// Whether the value at `pointer` is one that Kubernetes only allows as a string: a label or
    /// annotation value (of the object or of any template inside it), or a ConfigMap or Secret
    /// data value.
    fn is_string_only(&self, pointer: &str) -> bool {
        let relative = &pointer[self.object_start..];
        let segments: Vec<&str> = relative.split('/').skip(1).collect();
        match segments.as_slice() {
            [.., "metadata", "labels" | "annotations", _] => true,
            [field, _] => {
                self.string_data && matches!(*field, "data" | "binaryData" | "stringData")
            }
            _ => false,
        }
    }
}

/// A failure while expanding one text, before where it happened is added.
enum Failure {
    /// What is wrong (it names variables, never the text around them).
    Syntax(String),
    TooDeep {
        variable: String,
    },
    TooLarge {
        what: &'static str,
        limit: usize,
    },
}

impl Failure {
    /// The failure at `pointer`, in the text `written` (of which only variable names are kept).
    fn at(self, pointer: String, written: &str) -> WalkFailure {
        match self {
            Self::Syntax(message) => WalkFailure::Syntax { pointer, message },
            Self::TooDeep { variable } => WalkFailure::TooDeep { pointer, variable },
            Self::TooLarge { what, limit } => WalkFailure::TooLarge {
                pointer,
                variables: referenced_names(written),
                what,
                limit,
            },
        }
    }
}

/// A failure inside one object, before the object's description is added.
enum WalkFailure {
    Syntax {
        pointer: String,
        message: String,
    },
    TooDeep {
        pointer: String,
        variable: String,
    },
    TooLarge {
        pointer: String,
        variables: Vec<String>,
        what: &'static str,
        limit: usize,
    },
    Structure {
        pointer: String,
        variables: Vec<String>,
        reason: String,
    },
    DuplicateKey {
        pointer: String,
        key: String,
        variables: Vec<String>,
    },
}

impl WalkFailure {
    fn into_error(self, object: String) -> SubstituteError {
        match self {
            Self::Syntax { pointer, message } => SubstituteError::Syntax {
                object,
                pointer,
                message,
            },
            Self::TooDeep { pointer, variable } => SubstituteError::TooDeep {
                object,
                pointer,
                variable,
                limit: MAX_NESTING,
            },
            Self::TooLarge {
                pointer,
                variables,
                what,
                limit,
            } => SubstituteError::TooLarge {
                object,
                pointer,
                variables,
                what,
                limit,
            },
            Self::Structure {
                pointer,
                variables,
                reason,
            } => SubstituteError::Structure {
                object,
                pointer,
                variables,
                reason,
            },
            Self::DuplicateKey {
                pointer,
                key,
                variables,
            } => SubstituteError::DuplicateKey {
                object,
                pointer,
                key,
                variables,
            },
        }
    }
}

/// Appends `/key` to a JSON pointer, escaped as RFC 6901 says.
fn push_pointer(pointer: &mut String, key: &str) {
    pointer.push('/');
    if key.contains(['~', '/']) {
        pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
    } else {
        pointer.push_str(key);
    }
}

/// `ConfigMap ns/name from file:line` when kind and name are strings, else `the object at
/// file:line`.
fn describe(object: &Value, origin: &Origin) -> String {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
    match (text("/kind"), text("/metadata/name")) {
        (Some(kind), Some(name)) => {
            let group = text("/apiVersion").map_or("", |v| split_api_version(v).0);
            let namespace = text("/metadata/namespace").filter(|ns| !ns.is_empty());
            let id = ObjectId::new(group, kind, namespace, name);
            format!("{} from {origin}", Escaped(&id.display_name()))
        }
        _ => format!("the object at {origin}"),
    }
}

/// The names of the variables that `text` refers to (`${NAME...}` and `${#NAME}`, nested ones
/// included, `$${...}` left out), sorted and unique: what errors name instead of values.
fn referenced_names(text: &str) -> Vec<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        if let Some(literal) = after.strip_prefix("${") {
            rest = literal;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            rest = after;
            continue;
        };
        let body = body.strip_prefix('#').unwrap_or(body);
        let len = body
            .char_indices()
            .find(|&(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
            .map_or(body.len(), |(i, _)| i);
        if len > 0 {
            names.insert(body[..len].to_owned());
        }
        rest = body;
    }
    names.into_iter().collect()
}

/// `A, B` for error messages; `no variable` when there is none.
fn names_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "no variable".to_owned()
    } else {
        names.join(", ")
    }
}

/// Whether `value` is a `kind: List` whose items are objects of their own.
fn is_list(value: &Value) -> bool {
    gitops_core::is_list(value)
}

/// Types the result of substitution in an unquoted scalar the way YAML types an unquoted scalar
/// (with the same parser as the rest of the file), refusing a result that would not read back as
/// exactly that one scalar. The error says how YAML would read it.
fn type_plain_scalar(text: &str) -> Result<Value, String> {
    let refuse = |_: &str, reason: &str| Err(reason.to_owned());
    if text.contains(['\n', '\r']) {
        return refuse(text, "it has a line break");
    }
    // YAML drops the blanks around an unquoted scalar; `key:` with nothing after it is null.
    let trimmed = text.trim_matches([' ', '\t']);
    if trimmed.is_empty() {
        return Ok(Value::Null);
    }
    if trimmed.starts_with('#') || trimmed.contains(" #") || trimmed.contains("\t#") {
        return refuse(text, "YAML reads a comment");
    }
    match serde_saphyr::from_str::<Value>(trimmed) {
        Ok(Value::String(read)) if read == trimmed => Ok(Value::String(read)),
        Ok(Value::String(_)) => refuse(text, "YAML reads other text: quotes, a tag or an anchor"),
        Ok(Value::Null) if matches!(trimmed, "~" | "null" | "Null" | "NULL") => Ok(Value::Null),
        Ok(Value::Null) => refuse(text, "YAML reads nothing"),
        // An integer beyond 64 bits would become an imprecise float.
        Ok(Value::Number(n)) if n.is_f64() && gitops_core::is_integer_out_of_range(trimmed) => {
            refuse(text, "YAML reads an integer beyond 64 bits")
        }
        Ok(value @ (Value::Bool(_) | Value::Number(_))) => Ok(value),
        Ok(Value::Array(_)) => refuse(text, "YAML reads a sequence"),
        Ok(Value::Object(_)) => refuse(text, "YAML reads a mapping"),
        // The parser's message may quote the value: it is not kept.
        Err(_) => refuse(text, "YAML cannot read it as a scalar"),
    }
}

/// Finds, for each document, the unquoted (plain), untagged scalars that hold a `$`, by their
/// JSON pointers, with the YAML event parser (the value parser does not keep scalar styles).
/// Documents are matched by the line they start on, as [`gitops_core::parse_yaml_documents`]
/// gives it. A document not found (which only a parser disagreement could cause) gets no plain
/// scalars: its results stay text.
pub(crate) fn plain_scalars(text: &str, documents: &[Document]) -> Vec<PlainScalars> {
    let mut by_line: HashMap<u64, PlainScalars> = HashMap::new();
    let mut events = Parser::new_from_str(text).map_while(Result::ok);
    while let Some((event, _)) = events.next() {
        if !matches!(event, Event::DocumentStart(..)) {
            continue;
        }
        let Some((root, span)) = next_node(&mut events) else {
            break;
        };
        let mut found = HashSet::new();
        let mut pointer = String::new();
        if scan_node(&mut events, root, &mut pointer, true, &mut found, 0).is_none() {
            break;
        }
        by_line.insert(span.start.line() as u64, PlainScalars(found));
    }
    documents
        .iter()
        .map(|document| by_line.remove(&document.origin.line).unwrap_or_default())
        .collect()
}

/// The next event that is a node or the end of a collection, skipping presentation events.
pub(crate) fn next_node<'a>(
    events: &mut impl Iterator<Item = (Event<'a>, granit_parser::Span)>,
) -> Option<(Event<'a>, granit_parser::Span)> {
    events.find(|(event, _)| {
        matches!(
            event,
            Event::Scalar(..)
                | Event::Alias(..)
                | Event::SequenceStart(..)
                | Event::SequenceEnd
                | Event::MappingStart(..)
                | Event::MappingEnd
                | Event::DocumentEnd
                | Event::StreamEnd
        )
    })
}

/// Deepest nesting scanned; serde-saphyr's own budget refuses deeper documents before this runs.
const MAX_SCAN_DEPTH: usize = 1024;

/// Scans one node whose first event is `event`; `None` when the stream ends unexpectedly.
pub(crate) fn scan_node<'a>(
    events: &mut impl Iterator<Item = (Event<'a>, granit_parser::Span)>,
    event: Event<'a>,
    pointer: &mut String,
    record: bool,
    found: &mut HashSet<String>,
    depth: usize,
) -> Option<()> {
    if depth > MAX_SCAN_DEPTH {
        return None;
    }
    match event {
        Event::Scalar(value, style, _, tag)
            if record && style == ScalarStyle::Plain && tag.is_none() && value.contains('$') =>
        {
            found.insert(pointer.clone());
        }
        Event::SequenceStart(..) => {
            let mut index = 0usize;
            loop {
                let (item, _) = next_node(events)?;
                match item {
                    Event::SequenceEnd => break,
                    Event::DocumentEnd | Event::StreamEnd | Event::MappingEnd => return None,
                    item => {
                        let len = pointer.len();
                        pointer.push('/');
                        pointer.push_str(&index.to_string());
                        scan_node(events, item, pointer, record, found, depth + 1)?;
                        pointer.truncate(len);
                        index += 1;
                    }
                }
            }
        }
        Event::MappingStart(..) => loop {
            let (key, _) = next_node(events)?;
            let key = match key {
                Event::MappingEnd => break,
                Event::DocumentEnd | Event::StreamEnd | Event::SequenceEnd => return None,
                Event::Scalar(text, ..) => Some(text.into_owned()),
                other => {
                    // A complex key: scanned only to get past it.
                    scan_node(events, other, pointer, false, found, depth + 1)?;
                    None
                }
            };
            let (value, _) = next_node(events)?;
            let len = pointer.len();
            match &key {
                Some(key) => push_pointer(pointer, key),
                None => pointer.push_str("/\u{0}"),
            }
            scan_node(
                events,
                value,
                pointer,
                record && key.is_some(),
                found,
                depth + 1,
            )?;
            pointer.truncate(len);
        },
        _ => {}
    }
    Some(())
}

/// As a step after a renderer: substitutes in each document before validation, through the
/// request (see [`Substitution`]).
///
/// ```
/// use gitops_render::{PlainRenderer, RenderRequest, Renderer, SourceRoot, Substitution};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// std::fs::write(
///     dir.path().join("ns.yaml"),
///     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${TEAM}\n",
/// )?;
/// let renderer = PlainRenderer::new().then(Substitution::new().with_variable("TEAM", "shop"));
/// let objects = renderer.render(&RenderRequest::new(SourceRoot::new(dir.path())?, ".")).await?;
/// assert_eq!(objects[0].name(), "shop");
/// # Ok(())
/// # }
/// ```
#[async_trait::async_trait]
impl PostRenderer for Substitution {
    fn prepare(&self, request: &RenderRequest) -> Option<RenderRequest> {
        let substitution = match request.substitution() {
            Some(own) => self.layered(own),
            None => self.clone(),
        };
        Some(request.clone().with_substitution(substitution))
    }

    async fn post_render(
        &self,
        _request: &RenderRequest,
        manifests: Vec<Manifest>,
    ) -> Result<Vec<Manifest>, RenderError> {
        Ok(manifests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            ("${UNSET+set}", ""),
            ("${IMAGE/:/@}", "registry/web@1.2.3"),
            ("${IMAGE/./-}", "registry/web:1-2.3"),
            ("${IMAGE//./-}", "registry/web:1-2-3"),
            ("${IMAGE/#registry/mirror}", "mirror/web:1.2.3"),
            ("${IMAGE/%3/4}", "registry/web:1.2.4"),
            ("${IMAGE/registry}", "/web:1.2.3"),
            ("${IMAGE#registry/}", "web:1.2.3"),
            ("${IMAGE##registry/}", "web:1.2.3"),
            ("${IMAGE%:1.2.3}", "registry/web"),
            ("${IMAGE%%:1.2.3}", "registry/web"),
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

    fn substitute(s: &Substitution, text: &str) -> Result<Vec<Value>, SubstituteError> {
        let mut documents = gitops_core::parse_yaml_documents(text, "apps/web.yaml").unwrap();
        s.substitute_yaml(text, &mut documents)?;
        Ok(documents.into_iter().map(|d| d.value).collect())
    }

    #[test]
    fn types_unquoted_scalars_like_yaml_and_keeps_quoted_ones_text() {
        let s = vars()
            .with_variable("N", "3")
            .with_variable("F", "0.5")
            .with_variable("B", "true")
            .with_variable("NULL", "null");
        let text = "a: ${N}\nb: \"${N}\"\nc: '${N}'\nd: ${F}\ne: ${B}\nf: ${NULL}\ng: ${EMPTY}\nh: x${N}\ni: !!str ${N}\nj: |\n  ${N}\nk:\n- ${N}\n- \"${N}\"\n- l: ${B}\nm: ${N}${N}\nn: $${N}\no: ${N} ${EMPTY}\n";
        let values = substitute(&s, text).unwrap();
        assert_eq!(
            values[0],
            json!({
                "a": 3, "b": "3", "c": "3", "d": 0.5, "e": true, "f": null, "g": null,
                "h": "x3", "i": "3", "j": "3\n", "k": [3, "3", {"l": true}], "m": 33,
                "n": "${N}", "o": 3
            })
        );
    }

    #[test]
    fn types_as_the_parser_types_the_same_scalar_in_a_file() {
        for value in [
            "3", "-7", "0.5", "1e3", "0x1F", "0o17", "012", "true", "False", "yes", "on", "~",
            "null", "1_000", "+12", "v1", "1.2.3", "web:1.2", "http://x", "- x", "a: b",
        ] {
            let s = Substitution::new().with_variable("V", value);
            let typed = substitute(&s, "k: ${V}\n");
            let direct = serde_saphyr::from_str::<Value>(&format!("k: {value}\n"));
            match (typed, direct) {
                (Ok(typed), Ok(direct)) => assert_eq!(typed[0]["k"], direct["k"], "{value}"),
                // Refused here, and not a scalar (or not YAML) there.
                (Err(SubstituteError::Structure { .. }), Err(_)) => {}
                (typed, direct) => panic!("{value}: {typed:?} vs {direct:?}"),
            }
        }
    }

    #[test]
    fn keeps_text_where_kubernetes_allows_only_strings() {
        let s = vars().with_variable("N", "3").with_variable("B", "true");
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels:\n    n: ${N}\n  annotations:\n    b: ${B}\n    e: ${EMPTY}\ndata:\n  n: ${N}\nspec:\n  n: ${N}\n  template:\n    metadata:\n      labels:\n        x: ${N}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\ndata:\n  n: ${N}\n";
        let values = substitute(&s, text).unwrap();
        assert_eq!(values[0]["metadata"]["labels"]["n"], "3");
        assert_eq!(
            values[0]["metadata"]["annotations"],
            json!({"b": "true", "e": ""})
        );
        assert_eq!(values[0]["data"]["n"], "3");
        assert_eq!(values[0]["spec"]["n"], 3);
        assert_eq!(
            values[0]["spec"]["template"]["metadata"]["labels"]["x"],
            "3"
        );
        // Only a ConfigMap's or Secret's data is text by kind.
        assert_eq!(values[1]["data"]["n"], 3);
    }

    #[test]
    fn finds_documents_after_comments_and_separators() {
        let s = vars().with_variable("N", "7");
        let text =
            "# head\n---\n# c\n\na: ${N}\n---\n---\n- ${N}\n- x: ${N}\n...\n---\n\"b\": ${N}\n";
        let values = substitute(&s, text).unwrap();
        assert_eq!(
            values,
            [json!({"a": 7}), json!([7, {"x": 7}]), json!({"b": 7})]
        );
    }

    #[test]
    fn refuses_values_that_would_change_structure_in_unquoted_scalars() {
        for (value, reason) in [
            ("x\n  evil: key", "line break"),
            ("a: b", "mapping"),
            ("- a", "sequence"),
            ("[a, b]", "sequence"),
            ("{a: 1}", "mapping"),
            ("x\n---\nkind: Secret", "line break"),
            ("x # hidden", "comment"),
            ("#", "comment"),
            ("'quoted'", "other text"),
            ("!!str 3", "other text"),
            ("*alias", "cannot read"),
        ] {
            let s = vars().with_variable("V", value);
            let err = substitute(
                &s,
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: ${V}\n",
            )
            .unwrap_err();
            assert!(
                matches!(err, SubstituteError::Structure { .. }),
                "{value:?}: {err}"
            );
            let text = err.to_string();
            assert!(
                text.starts_with(
                    "ConfigMap a from apps/web.yaml:1: at /data/k: the value substituted from V would not stay"
                ),
                "{text}"
            );
            assert!(text.contains(reason), "{value:?}: {text}");
            // Quoted, the same value is text, whatever it holds.
            let values = substitute(&s, "k: \"${V}\"\nl: |\n  ${V}\n").unwrap();
            assert_eq!(values[0]["k"], value);
            assert_eq!(values[0]["l"], format!("{value}\n"));
        }
    }

    #[test]
    fn substitutes_keys_and_refuses_collisions() {
        let s = vars();
        let values = substitute(&s, "labels:\n  ${APP}/tier: \"${APP}\"\n  x: 1\n").unwrap();
        assert_eq!(values[0], json!({"labels": {"web/tier": "web", "x": 1}}));
        let err = substitute(&s, "labels:\n  ${APP}: a\n  web: b\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the object at apps/web.yaml:1: at /labels: the key \"${APP}\", substituted from APP, collides with another key of the mapping (the result is not shown)"
        );
    }

    #[test]
    fn strict_mode_names_variables_and_object() {
        let s = vars().strict(true);
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: ns\ndata:\n  a: ${ZED} ${ALPHA} ${ZED} ${DEFAULTED:=ok}\n";
        let err = substitute(&s, text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap ns/a from apps/web.yaml:1: variables not set (strict mode): ALPHA, ZED"
        );
        let text =
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  a/b: ${BROKEN\n";
        let err = substitute(&s, text).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ConfigMap a from apps/web.yaml:1: at /data/a~1b: unterminated"),
            "{err}"
        );
    }

    #[test]
    fn opt_out_annotations_per_object_and_list_item() {
        for key in DISABLE_ANNOTATIONS {
            let text = format!(
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: a\n    annotations:\n      {key}: disabled\n  data:\n    script: echo ${{HOME}}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: b\n  data:\n    n: ${{APP}}\n"
            );
            let values = substitute(&vars().strict(true), &text).unwrap();
            assert_eq!(values[0]["items"][0]["data"]["script"], "echo ${HOME}");
            assert_eq!(values[0]["items"][1]["data"]["n"], "web");
        }
    }

    /// Every text an error offers: Display, each source's Display, and Debug.
    fn printed(err: &SubstituteError) -> String {
        let mut text = format!("{err}\n{err:?}");
        let mut source = std::error::Error::source(err);
        while let Some(inner) = source {
            text.push_str(&format!("\n{inner}\n{inner:?}"));
            source = inner.source();
        }
        text
    }

    #[test]
    fn errors_never_show_values_or_substituted_text() {
        const SECRET: &str = "s3cr3t-Pa55";
        let secret_vars = || {
            Substitution::new()
                .with_variable("DB_PASSWORD", format!("{SECRET}: x"))
                .with_variable("PLAIN", SECRET)
                .with_variable("LINE", format!("{SECRET}\nevil: 1"))
                .with_variable("FLOW", format!("[{SECRET}"))
        };
        let object = |data: &str| {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-${{PLAIN}}\nstringData:\n{data}"
            )
        };
        let cases = [
            // Structure: the value would add a key, or a line.
            object("  url: ${DB_PASSWORD}\n"),
            object("  url: x-${LINE}\n"),
            object("  url: ${FLOW}\n"),
            // A substituted key colliding with another.
            object(&format!("  ${{PLAIN}}: a\n  {SECRET}: b\n")),
            // Syntax errors inside a Secret's value and with a value around.
            object(&format!("  url: \"{SECRET} ${{PLAIN\"\n")),
            object(&format!("  url: \"{SECRET} ${{PLAIN?x}}\"\n")),
            object(&format!("  url: \"{SECRET} ${{PLAIN:a}}\"\n")),
            object(&format!("  url: \"{SECRET} ${{#{SECRET}-}}\"\n")),
            object(&format!("  url: \"{SECRET} ${{}}\"\n")),
        ];
        for text in &cases {
            let err = substitute(&secret_vars(), text).expect_err(text);
            let shown = printed(&err);
            assert!(!shown.contains(SECRET), "{text}: {shown}");
            assert!(shown.contains("Secret db-${PLAIN}"), "{text}: {shown}");
        }
        // Strict mode names the unset variables only.
        let err = substitute(
            &secret_vars().strict(true),
            &object("  url: \"${PLAIN}${MISSING}\"\n"),
        )
        .unwrap_err();
        assert!(!printed(&err).contains(SECRET), "{err}");
        // The variables' Debug and a request's Debug hide the values.
        let request =
            crate::RenderRequest::new(crate::SourceRoot::new(std::env::temp_dir()).unwrap(), ".")
                .with_substitution(secret_vars());
        let debug = format!("{:?} {request:?}", secret_vars());
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains("DB_PASSWORD"), "{debug}");
        // The same holds for expand.
        for text in ["${PLAIN", "${PLAIN?x}", "${PLAIN:x}"] {
            let err = secret_vars().expand(text).unwrap_err();
            assert!(!printed(&err).contains(SECRET), "{err}");
        }
    }

    #[test]
    fn names_the_variables_a_scalar_refers_to() {
        assert_eq!(
            referenced_names("a ${B} $${C} ${#D} ${E:-${F}} ${G/x/${H}} $I"),
            ["B", "D", "E", "F", "G", "H"]
        );
        assert!(referenced_names("${ x}").is_empty());
    }

    #[test]
    fn json_strings_stay_text() {
        let text = r#"{"a": "${N}", "b": ["${N}"]}"#;
        let mut documents = gitops_core::parse_json_documents(text, "x.json").unwrap();
        Substitution::new()
            .with_variable("N", "3")
            .substitute_json(&mut documents)
            .unwrap();
        assert_eq!(documents[0].value, json!({"a": "3", "b": ["3"]}));
    }

    /// Issue #12 item 3: nested defaults overflowed the stack (an abort, not an error). The
    /// seed of the `substitute` fuzz target.
    #[test]
    fn nesting_deeper_than_the_limit_is_an_error_not_an_abort() {
        let nested = |levels: usize| {
            format!(
                "x: ${{A:-{}z{}}}\n",
                "${A:-".repeat(levels - 1),
                "}".repeat(levels - 1)
            )
        };
        // At the limit it works...
        let values = substitute(&Substitution::new(), &nested(MAX_NESTING)).unwrap();
        assert_eq!(values[0]["x"], "z");
        // ...one more level does not, nor 3,000 (the fuzz seed), on the YAML path or in expand.
        let seed = include_str!("../../../fuzz/corpus/substitute/deep-default-nesting");
        let secret = Substitution::new().with_variable("B", "hunter2");
        for text in [nested(MAX_NESTING + 1), nested(3_000), seed.to_owned()] {
            let err = substitute(&secret, &text).unwrap_err();
            assert!(
                matches!(&err, SubstituteError::TooDeep { variable, limit: MAX_NESTING, .. } if variable == "A"),
                "{err:?}"
            );
            assert_eq!(
                err.to_string(),
                "the object at apps/web.yaml:1: at /x: expressions nest deeper than 32 levels (at the variable A; the text is not shown)"
            );
            let text = text.strip_prefix("x: ").unwrap().trim_end();
            assert!(matches!(
                secret.expand(text),
                Err(SubstituteError::TooDeep { .. })
            ));
        }
        // Nesting through every operator that expands its word counts.
        for op in [
            "-", "=", ":=", ":+", "+", "/x/", "//x/", "#", "%", "##", "%%",
        ] {
            let s = Substitution::new().with_variable("A", "ax");
            // Defaults are expanded only for an unset variable, the others for a set one.
            let name = if matches!(op, "-" | "=" | ":=") {
                "U"
            } else {
                "A"
            };
            let deep = format!("{}{}", format!("${{{name}{op}").repeat(40), "}".repeat(40));
            assert!(
                matches!(s.expand(&deep), Err(SubstituteError::TooDeep { .. })),
                "{op}"
            );
        }
    }

    /// Issue #12 item 3: a large value expanded many times allocated without bound (4 GiB and
    /// an allocation failure); the size is now checked before the text is made.
    #[test]
    fn results_larger_than_the_limits_are_refused_before_they_are_made() {
        let big = "x".repeat(1024 * 1024);
        let s = Substitution::new().with_variable("BIG", big.as_str());
        // Three copies fit in one scalar (3 MiB), four do not.
        assert_eq!(
            s.expand("${BIG}${BIG}${BIG}").unwrap().len(),
            3 * 1024 * 1024
        );
        let err = s.expand("${BIG}${BIG}${BIG}${BIG}").unwrap_err();
        assert!(
            matches!(&err, SubstituteError::TooLarge { what: "one scalar", limit: DEFAULT_MAX_SCALAR_BYTES, variables, .. } if variables == &["BIG"]),
            "{err:?}"
        );
        assert!(!err.to_string().contains("xxxx"), "{err}");
        // The expansion that used to reach 4 GiB: a replacement of every character by the value.
        let err = s.expand("${BIG//x/${BIG}}").unwrap_err();
        assert!(matches!(err, SubstituteError::TooLarge { .. }), "{err:?}");
        let err = s.expand(&"${BIG}".repeat(4096)).unwrap_err();
        assert!(matches!(err, SubstituteError::TooLarge { .. }), "{err:?}");
        // In one object, the scalars together.
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  a: ${BIG}${BIG}\n  b: ${BIG}${BIG}\n";
        let err = substitute(&s, text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap a from apps/web.yaml:1: at /data/b: substituting BIG would make more than 3145728 bytes (one object; the value is not shown)"
        );
        // Configurable.
        let small = s.clone().with_max_scalar_bytes(10);
        assert!(matches!(
            small.expand("${BIG:0:11}"),
            Err(SubstituteError::TooLarge { limit: 10, .. })
        ));
        assert_eq!(small.expand("${BIG:0:10}").unwrap(), "xxxxxxxxxx");
        let roomy = s.with_max_object_bytes(5 * 1024 * 1024);
        assert_eq!(
            substitute(&roomy, text).unwrap()[0]["data"]["b"]
                .as_str()
                .unwrap()
                .len(),
            2 * 1024 * 1024
        );
    }

    /// Issue #12 item 7, through substitution: an integer beyond 64 bits became a float.
    #[test]
    fn an_integer_beyond_64_bits_is_refused_in_a_plain_scalar() {
        let s = Substitution::new().with_variable("N", "99999999999999999999999999999");
        let err = substitute(&s, "replicas: ${N}\n").unwrap_err();
        assert!(
            matches!(&err, SubstituteError::Structure { reason, .. } if reason == "YAML reads an integer beyond 64 bits"),
            "{err:?}"
        );
        let values = substitute(&s, "replicas: \"${N}\"\n").unwrap();
        assert_eq!(values[0]["replicas"], "99999999999999999999999999999");
        let values = substitute(
            &s.with_variable("N", "18446744073709551615"),
            "replicas: ${N}\n",
        )
        .unwrap();
        assert_eq!(values[0]["replicas"], u64::MAX);
    }

    #[test]
    fn the_requests_limits_win_where_it_sets_them() {
        let step = Substitution::new()
            .with_variable("A", "0123456789")
            .with_max_scalar_bytes(15);
        let layered = step.layered(&Substitution::new());
        assert!(matches!(
            layered.expand("${A}${A}"),
            Err(SubstituteError::TooLarge { limit: 15, .. })
        ));
        let layered = step.layered(&Substitution::new().with_max_scalar_bytes(20));
        assert_eq!(layered.expand("${A}${A}").unwrap().len(), 20);
        assert_eq!(layered.object_limit(), DEFAULT_MAX_OBJECT_BYTES);
    }
}
