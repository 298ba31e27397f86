//! Multi-document YAML → typed policy objects.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_norway::Value;

use crate::error::PolicyError;
use crate::model::k8s::{Binding, ClusterRole, Namespace, Role};
use crate::model::rancher::{
    ClusterRoleTemplateBinding, GlobalRole, GlobalRoleBinding, Project, ProjectRoleTemplateBinding,
    RoleTemplate,
};
use crate::model::Location;

const RBAC_V1: &str = "rbac.authorization.k8s.io/v1";
const RANCHER_V3: &str = "management.cattle.io/v3";

/// One policy object.
#[derive(Debug, Clone)]
pub(crate) enum Object {
    ClusterRole(ClusterRole),
    Role(Role),
    ClusterRoleBinding(Binding),
    RoleBinding(Binding),
    Namespace(Namespace),
    GlobalRole(GlobalRole),
    GlobalRoleBinding(GlobalRoleBinding),
    RoleTemplate(RoleTemplate),
    ClusterRoleTemplateBinding(ClusterRoleTemplateBinding),
    ProjectRoleTemplateBinding(ProjectRoleTemplateBinding),
    Project(Project),
}

/// An object and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) at: Location,
    pub(crate) builtin: bool,
    pub(crate) object: Object,
}

/// Parses every document of `text`; empty documents are skipped (but counted).
pub(crate) fn parse_documents(
    origin: &str,
    text: &str,
    builtin: bool,
) -> Result<Vec<Parsed>, PolicyError> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let at = Location {
            origin: origin.to_owned(),
            document: i + 1,
            item: None,
        };
        let value = Value::deserialize(doc).map_err(|e| PolicyError::Yaml {
            at: Box::new(at.clone()),
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        if kind_of(&value).0 == "List" {
            let items = value
                .get("items")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default();
            for (j, item) in items.into_iter().enumerate() {
                let at = Location {
                    item: Some(j + 1),
                    ..at.clone()
                };
                out.push(parse_object(at, item, builtin)?);
            }
        } else {
            out.push(parse_object(at, value, builtin)?);
        }
    }
    Ok(out)
}

fn kind_of(value: &Value) -> (&str, &str) {
    let s = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or("");
    (s("kind"), s("apiVersion"))
}

fn parse_object(at: Location, value: Value, builtin: bool) -> Result<Parsed, PolicyError> {
    let (kind, api_version) = kind_of(&value);
    let (kind, api_version) = (kind.to_owned(), api_version.to_owned());
    fn typed<T: DeserializeOwned>(
        at: &Location,
        kind: &str,
        value: Value,
    ) -> Result<T, PolicyError> {
        serde_norway::from_value(value).map_err(|e| PolicyError::Yaml {
            at: Box::new(at.clone()),
            message: format!("{kind}: {e}"),
        })
    }
    let object = match (api_version.as_str(), kind.as_str()) {
        (RBAC_V1, "ClusterRole") => Object::ClusterRole(typed(&at, &kind, value)?),
        (RBAC_V1, "Role") => Object::Role(typed(&at, &kind, value)?),
        (RBAC_V1, "ClusterRoleBinding") => Object::ClusterRoleBinding(typed(&at, &kind, value)?),
        (RBAC_V1, "RoleBinding") => Object::RoleBinding(typed(&at, &kind, value)?),
        ("v1", "Namespace") => Object::Namespace(typed(&at, &kind, value)?),
        (RANCHER_V3, "GlobalRole") => Object::GlobalRole(typed(&at, &kind, value)?),
        (RANCHER_V3, "GlobalRoleBinding") => Object::GlobalRoleBinding(typed(&at, &kind, value)?),
        (RANCHER_V3, "RoleTemplate") => Object::RoleTemplate(typed(&at, &kind, value)?),
        (RANCHER_V3, "ClusterRoleTemplateBinding") => {
            Object::ClusterRoleTemplateBinding(typed(&at, &kind, value)?)
        }
        (RANCHER_V3, "ProjectRoleTemplateBinding") => {
            Object::ProjectRoleTemplateBinding(typed(&at, &kind, value)?)
        }
        (RANCHER_V3, "Project") => Object::Project(typed(&at, &kind, value)?),
        _ => {
            return Err(PolicyError::Yaml {
                at: Box::new(at),
                message: format!(
                    "unsupported object apiVersion {api_version:?} kind {kind:?} (expected RBAC \
                     {RBAC_V1}, Rancher {RANCHER_V3}, or v1 Namespace)"
                ),
            })
        }
    };
    Ok(Parsed {
        at,
        builtin,
        object,
    })
}
