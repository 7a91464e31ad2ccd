//! Object identity: [`ObjectId`] and [`GroupKind`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The text is not of the form `namespace_name_group_kind`.
    #[error("object id {text:?} is not of the form <namespace>_<name>_<group>_<kind>")]
    Malformed {
        /// The text that was given.
        text: String,
    },
    /// The kind part is empty.
    #[error("object id {text:?} has an empty kind")]
    EmptyKind {
        /// The text that was given.
        text: String,
    },
    /// The name part is empty.
    #[error("object id {text:?} has an empty name")]
    EmptyName {
        /// The text that was given.
        text: String,
    },
}

/// An API group and a kind, without the version: the part of a type that identity depends on.
///
/// ```
/// use gitops_core::GroupKind;
/// let gk = GroupKind::from_api_version("apps/v1", "Deployment");
/// assert_eq!(gk.group, "apps");
/// assert_eq!(gk.to_string(), "Deployment.apps");
/// assert_eq!(GroupKind::from_api_version("v1", "Pod").to_string(), "Pod");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKind {
    /// The API group; empty for the core group.
    pub group: String,
    /// The kind, such as `Deployment`.
    pub kind: String,
}

impl GroupKind {
    /// A group and kind from their parts.
    #[must_use]
    pub fn new(group: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            kind: kind.into(),
        }
    }

    /// The group and kind of an object with this `apiVersion` (`v1`, or `group/version`).
    #[must_use]
    pub fn from_api_version(api_version: &str, kind: &str) -> Self {
        Self::new(split_api_version(api_version).0, kind)
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

/// Splits an `apiVersion` into its group (empty for the core group) and version.
///
/// ```
/// assert_eq!(gitops_core::split_api_version("apps/v1"), ("apps", "v1"));
/// assert_eq!(gitops_core::split_api_version("v1"), ("", "v1"));
/// ```
#[must_use]
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// The identity of a Kubernetes object: group, kind, namespace and name.
///
/// The version is not part of the identity: `apps/v1` and `apps/v1beta2` Deployments with the same
/// name are the same object. The string form is the one `kubectl apply --prune` inventories and
/// Flux use (`<namespace>_<name>_<group>_<kind>`, with the namespace empty for cluster-scoped
/// objects and `:` in names written as `__`), so inventories stay readable by those tools.
///
/// ```
/// use gitops_core::ObjectId;
/// let id = ObjectId::new("apps", "Deployment", Some("shop"), "web");
/// assert_eq!(id.to_string(), "shop_web_apps_Deployment");
/// assert_eq!("shop_web_apps_Deployment".parse::<ObjectId>().unwrap(), id);
///
/// let role = ObjectId::new("rbac.authorization.k8s.io", "ClusterRole", None::<&str>, "system:view");
/// assert_eq!(role.to_string(), "_system__view_rbac.authorization.k8s.io_ClusterRole");
/// assert_eq!(role.to_string().parse::<ObjectId>().unwrap(), role);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectId {
    /// The API group; empty for the core group.
    pub group: String,
    /// The kind, such as `Deployment`.
    pub kind: String,
    /// The namespace; `None` for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl ObjectId {
    /// An id from its parts. An empty namespace is taken as none.
    #[must_use]
    pub fn new(
        group: impl Into<String>,
        kind: impl Into<String>,
        namespace: Option<impl Into<String>>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            group: group.into(),
            kind: kind.into(),
            namespace: namespace
                .map(Into::into)
                .filter(|ns: &String| !ns.is_empty()),
            name: name.into(),
        }
    }

    /// The group and kind of this object.
    #[must_use]
    pub fn group_kind(&self) -> GroupKind {
        GroupKind::new(self.group.clone(), self.kind.clone())
    }

    /// A short form for messages: `Deployment.apps shop/web`, or `Namespace shop`. Control
    /// characters in any part are escaped ([`crate::escape::Escaped`]): a name from a
    /// repository cannot start a forged line.
    ///
    /// ```
    /// let id = gitops_core::ObjectId::new("apps", "Deployment", Some("shop"), "web");
    /// assert_eq!(id.display_name(), "Deployment.apps shop/web");
    /// let forged = gitops_core::ObjectId::new("example.com", "Widget", None::<&str>, "a\nERROR b");
    /// assert_eq!(forged.display_name(), "Widget.example.com a\\nERROR b");
    /// ```
    #[must_use]
    pub fn display_name(&self) -> String {
        use crate::escape::Escaped;
        let gk = self.group_kind().to_string();
        match &self.namespace {
            Some(ns) => format!("{} {}/{}", Escaped(&gk), Escaped(ns), Escaped(&self.name)),
            None => format!("{} {}", Escaped(&gk), Escaped(&self.name)),
        }
    }

    /// Whether the object is a Secret, whose values no output may show
    /// ([`crate::secret::is_secret_kind`]).
    ///
    /// ```
    /// assert!(gitops_core::ObjectId::new("", "Secret", Some("shop"), "db").is_secret());
    /// ```
    #[must_use]
    pub fn is_secret(&self) -> bool {
        crate::secret::is_secret_kind(&self.group, &self.kind)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}_{}_{}",
            self.namespace.as_deref().unwrap_or(""),
            self.name.replace(':', "__"),
            self.group,
            self.kind
        )
    }
}

impl FromStr for ObjectId {
    type Err = IdError;

    /// Parses the inventory form. Names may contain `__` (an escaped `:`), so the namespace is
    /// taken from the front and the group and kind from the back.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || IdError::Malformed {
            text: text.to_owned(),
        };
        let (namespace, rest) = text.split_once('_').ok_or_else(malformed)?;
        let (rest, kind) = rest.rsplit_once('_').ok_or_else(malformed)?;
        let (name, group) = rest.rsplit_once('_').ok_or_else(malformed)?;
        if kind.is_empty() {
            return Err(IdError::EmptyKind {
                text: text.to_owned(),
            });
        }
        if name.is_empty() {
            return Err(IdError::EmptyName {
                text: text.to_owned(),
            });
        }
        Ok(Self::new(
            group,
            kind,
            Some(namespace),
            name.replace("__", ":"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_cluster_scoped_core_objects() {
        let id = ObjectId::new("", "Namespace", None::<String>, "shop");
        assert_eq!(id.to_string(), "_shop__Namespace");
        assert_eq!(id.to_string().parse::<ObjectId>().unwrap(), id);
    }

    #[test]
    fn refuses_malformed_text() {
        assert!(matches!(
            "no-underscores".parse::<ObjectId>(),
            Err(IdError::Malformed { .. })
        ));
        assert!(matches!(
            "ns_name_group_".parse::<ObjectId>(),
            Err(IdError::EmptyKind { .. })
        ));
        assert!(matches!(
            "ns__group_Kind".parse::<ObjectId>(),
            Err(IdError::EmptyName { .. })
        ));
    }

    #[test]
    fn orders_by_group_kind_namespace_name() {
        let mut ids = [
            ObjectId::new("", "Service", Some("b"), "x"),
            ObjectId::new("", "Service", Some("a"), "y"),
            ObjectId::new("apps", "Deployment", Some("a"), "x"),
        ];
        ids.sort();
        assert_eq!(ids[0].group, "");
        assert_eq!(ids[0].namespace.as_deref(), Some("a"));
        assert_eq!(ids[2].group, "apps");
    }
}
