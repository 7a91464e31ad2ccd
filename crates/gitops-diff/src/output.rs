//! Outputs: RFC 6902 patches, unified YAML diffs (coloured for terminals, Secret values masked),
//! summaries over a set, JSON for machines.

use std::fmt;
use std::io::IsTerminal as _;

use serde::Serialize;
use serde_json::Value;

use crate::diff::{
    DiffStatus, LAST_APPLIED_ANNOTATION, ObjectDiff, SECRET_MASK, mask_secret_at, mask_values,
};

/// An error while rendering an output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The patch does not apply to the live object given (not the one that was diffed).
    #[error("the patch of {id} does not apply to the live object given")]
    Patch {
        /// The object.
        id: String,
        /// The patch error.
        #[source]
        source: json_patch::PatchError,
    },
    /// YAML serialisation failed.
    #[error("rendering {id} as YAML")]
    Yaml {
        /// The object.
        id: String,
        /// The serialiser's error.
        #[source]
        source: serde_saphyr::ser::Error,
    },
    /// JSON serialisation failed.
    #[error("rendering the diff as JSON")]
    Json(#[source] serde_json::Error),
}

/// Whether to colour terminal output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Colour {
    /// Colour when standard output is a terminal.
    #[default]
    Auto,
    /// Always colour (ANSI escapes).
    Always,
    /// Never colour.
    Never,
}

impl Colour {
    fn enabled(self) -> bool {
        match self {
            Colour::Auto => std::io::stdout().is_terminal(),
            Colour::Always => true,
            Colour::Never => false,
        }
    }
}

const RED: &str = "\u{1b}[31m";
const GREEN: &str = "\u{1b}[32m";
const CYAN: &str = "\u{1b}[36m";
const BOLD: &str = "\u{1b}[1m";
const RESET: &str = "\u{1b}[0m";

impl ObjectDiff {
    /// The RFC 6902 patch that turns the live object into the predicted state after applying
    /// desired. For a create it adds the whole object at the root; for a delete it removes the
    /// root. The patch holds real values (it is meant to be applied): Secret values are *not*
    /// masked in it; print [`ObjectDiff::patch_for_display`] instead.
    #[must_use]
    pub fn patch(&self) -> json_patch::Patch {
        json_patch::Patch(self.operations.clone())
    }

    /// The live object as it will be after applying desired (`None` after a delete), with real
    /// values; print [`ObjectDiff::predicted_for_display`] instead.
    ///
    /// # Errors
    /// When `live` is not the object that was diffed and the patch does not apply.
    pub fn predicted(&self, live: Option<&Value>) -> Result<Option<Value>, OutputError> {
        match self.status {
            DiffStatus::Delete => Ok(None),
            DiffStatus::Create => Ok(self.operations.first().and_then(|op| match op {
                json_patch::PatchOperation::Add(add) => Some(add.value.clone()),
                _ => None,
            })),
            DiffStatus::InSync | DiffStatus::Update => {
                let mut predicted = live.cloned().unwrap_or(Value::Null);
                json_patch::patch(&mut predicted, &self.operations).map_err(|source| {
                    OutputError::Patch {
                        id: self.id.display_name(),
                        source,
                    }
                })?;
                Ok(Some(predicted))
            }
        }
    }

    /// [`ObjectDiff::patch`] fit for printing: for a Secret, every value that holds its data
    /// (under `data` and `stringData`, the last-applied annotation, the whole object of a
    /// create) is masked. Not meant to be applied.
    ///
    /// ```
    /// let differ = gitops_diff::Differ::builder("gitops-rs").build();
    /// let desired = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
    ///     "metadata": {"name": "db"}, "stringData": {"password": "hunter2"}});
    /// let diff = differ.diff(Some(&desired), None)?;
    /// let shown = serde_json::to_string(&diff.patch_for_display())?;
    /// assert!(!shown.contains("hunter2") && !shown.contains("aHVudGVyMg=="), "{shown}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn patch_for_display(&self) -> json_patch::Patch {
        if !self.secret {
            return self.patch();
        }
        let operations = self
            .operations
            .iter()
            .map(|op| {
                let mut op = op.clone();
                match &mut op {
                    json_patch::PatchOperation::Add(json_patch::AddOperation { path, value })
                    | json_patch::PatchOperation::Replace(json_patch::ReplaceOperation {
                        path,
                        value,
                    })
                    | json_patch::PatchOperation::Test(json_patch::TestOperation { path, value }) =>
                    {
                        *value = mask_secret_at(path.as_str(), value, None);
                    }
                    _ => {}
                }
                op
            })
            .collect();
        json_patch::Patch(operations)
    }

    /// [`ObjectDiff::predicted`] fit for printing: without server bookkeeping and the
    /// last-applied annotation, and for a Secret with its values masked.
    ///
    /// # Errors
    /// As [`ObjectDiff::predicted`].
    pub fn predicted_for_display(
        &self,
        live: Option<&Value>,
    ) -> Result<Option<Value>, OutputError> {
        Ok(self.predicted(live)?.map(|predicted| {
            let mut shown = display_copy(&predicted);
            if self.secret {
                gitops_core::secret::mask_secret_in_place(&mut shown);
            }
            shown
        }))
    }

    /// A unified diff of the live object and its predicted state, as YAML, without server
    /// bookkeeping (managedFields, status, resourceVersion, ...). Secret values are masked:
    /// `***`, or `*** (before)` and `*** (after)` when a value changes. Empty when in sync.
    ///
    /// ```
    /// use gitops_diff::{Colour, Differ};
    /// use serde_json::json;
    ///
    /// let differ = Differ::builder("gitops-rs").build();
    /// let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
    ///     "stringData": {"password": "new"}});
    /// let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
    ///     "data": {"password": "b2xk"}});
    /// let diff = differ.diff(Some(&desired), Some(&live))?;
    /// let text = diff.unified_yaml(Some(&live), Colour::Never)?;
    /// assert!(text.contains(r#"-  password: "*** (before)""#), "{text}");
    /// assert!(text.contains(r#"+  password: "*** (after)""#), "{text}");
    /// assert!(!text.contains("b2xk"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// When the patch does not apply to `live`, or YAML rendering fails.
    pub fn unified_yaml(
        &self,
        live: Option<&Value>,
        colour: Colour,
    ) -> Result<String, OutputError> {
        if self.status == DiffStatus::InSync {
            return Ok(String::new());
        }
        let before = match self.status {
            DiffStatus::Create => None,
            _ => live.map(display_copy),
        };
        let after = self.predicted(live)?.as_ref().map(display_copy);
        let (before, after) = if self.secret {
            mask_secret_pair(before, after)
        } else {
            (before, after)
        };
        let to_yaml = |value: Option<&Value>| -> Result<String, OutputError> {
            match value {
                None => Ok(String::new()),
                Some(value) => serde_saphyr::to_string(value).map_err(|source| OutputError::Yaml {
                    id: self.id.display_name(),
                    source,
                }),
            }
        };
        let before_text = to_yaml(before.as_ref())?;
        let after_text = to_yaml(after.as_ref())?;
        let before_text = escape_unsafe(&before_text);
        let after_text = escape_unsafe(&after_text);
        let name = self.id.display_name();
        let diff = similar::TextDiff::from_lines(&before_text, &after_text);
        let text = diff
            .unified_diff()
            .context_radius(3)
            .header(&format!("live/{name}"), &format!("desired/{name}"))
            .to_string();
        if !colour.enabled() {
            return Ok(text);
        }
        let mut coloured = String::with_capacity(text.len() + 64);
        for line in text.split_inclusive('\n') {
            let style = if line.starts_with("---") || line.starts_with("+++") {
                BOLD
            } else if line.starts_with('-') {
                RED
            } else if line.starts_with('+') {
                GREEN
            } else if line.starts_with("@@") {
                CYAN
            } else {
                coloured.push_str(line);
                continue;
            };
            let body = line.strip_suffix('\n').unwrap_or(line);
            coloured.push_str(style);
            coloured.push_str(body);
            coloured.push_str(RESET);
            if line.ends_with('\n') {
                coloured.push('\n');
            }
        }
        Ok(coloured)
    }

    /// The diff as JSON (id, status, changes; Secret values masked).
    ///
    /// # Errors
    /// Never in practice; serialisation errors are reported.
    pub fn to_json(&self) -> Result<String, OutputError> {
        serde_json::to_string_pretty(self).map_err(OutputError::Json)
    }
}

/// YAML text with what the serialiser leaves raw and a terminal would act on (control
/// characters other than the line feeds between lines, bidirectional overrides, Unicode line
/// separators) written as `\u{..}`, so that a key or value cannot recolour, reorder or forge
/// lines. Backslashes are left alone: they are YAML's own escapes.
fn escape_unsafe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c != '\n' && c != '\\' && gitops_core::escape::needs_escaping(c.encode_utf8(&mut [0; 4]))
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A copy for display: no server bookkeeping, no status, no last-applied annotation.
fn display_copy(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "managedFields",
            "resourceVersion",
            "uid",
            "generation",
            "creationTimestamp",
            "selfLink",
        ] {
            meta.remove(field);
        }
        let annotations_empty = match meta.get_mut("annotations").and_then(Value::as_object_mut) {
            Some(annotations) => {
                annotations.remove(LAST_APPLIED_ANNOTATION);
                annotations.is_empty()
            }
            None => false,
        };
        if annotations_empty {
            meta.remove("annotations");
        }
    }
    copy
}

/// Masks the values of `data` and `stringData` of a Secret, marking changed values.
fn mask_secret_pair(before: Option<Value>, after: Option<Value>) -> (Option<Value>, Option<Value>) {
    let mut before = before;
    let mut after = after;
    for field in ["data", "stringData"] {
        let before_map = before.as_ref().and_then(|b| b.get(field)).cloned();
        let after_map = after.as_ref().and_then(|a| a.get(field)).cloned();
        let mask_side =
            |side: &mut Option<Value>, own: &Option<Value>, other: &Option<Value>, mark: &str| {
                let Some(Value::Object(own)) = own else {
                    if let Some(value) = side.as_mut().and_then(|s| s.get_mut(field)) {
                        *value = mask_values(value);
                    }
                    return;
                };
                let masked: serde_json::Map<String, Value> = own
                    .iter()
                    .map(|(key, value)| {
                        let other_value = other.as_ref().and_then(|o| o.get(key));
                        let text = match other_value {
                            Some(o) if o != value => format!("{SECRET_MASK} ({mark})"),
                            _ => SECRET_MASK.to_owned(),
                        };
                        (key.clone(), Value::String(text))
                    })
                    .collect();
                if let Some(target) = side.as_mut().and_then(|s| s.get_mut(field)) {
                    *target = Value::Object(masked);
                }
            };
        mask_side(&mut before, &before_map, &after_map, "before");
        mask_side(&mut after, &after_map, &before_map, "after");
    }
    (before, after)
}

/// Counts over a set of diffs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Objects in sync.
    pub in_sync: usize,
    /// Objects to create.
    pub create: usize,
    /// Objects to update.
    pub update: usize,
    /// Objects to delete.
    pub delete: usize,
    /// Field-level changes over all updates.
    pub changes: usize,
}

impl Summary {
    /// Whether anything differs.
    #[must_use]
    pub fn has_drift(&self) -> bool {
        self.create + self.update + self.delete > 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in sync, {} to create, {} to update ({} field changes), {} to delete",
            self.in_sync, self.create, self.update, self.changes, self.delete
        )
    }
}

/// The diffs of a set of objects with their summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffReport {
    /// Counts.
    pub summary: Summary,
    /// One diff per object, in the order given.
    pub objects: Vec<ObjectDiff>,
}

impl DiffReport {
    /// A report over these diffs.
    #[must_use]
    pub fn new(objects: Vec<ObjectDiff>) -> Self {
        let mut summary = Summary::default();
        for object in &objects {
            match object.status {
                DiffStatus::InSync => summary.in_sync += 1,
                DiffStatus::Create => summary.create += 1,
                DiffStatus::Update => summary.update += 1,
                DiffStatus::Delete => summary.delete += 1,
            }
            summary.changes += object.changes.len();
        }
        Self { summary, objects }
    }

    /// The objects that are not in sync.
    pub fn drifted(&self) -> impl Iterator<Item = &ObjectDiff> {
        self.objects.iter().filter(|o| !o.is_in_sync())
    }

    /// The report as JSON.
    ///
    /// # Errors
    /// Never in practice; serialisation errors are reported.
    pub fn to_json(&self) -> Result<String, OutputError> {
        serde_json::to_string_pretty(self).map_err(OutputError::Json)
    }
}
