//! Errors loading and compiling a policy set.

use crate::model::Location;

/// Why a policy set could not be loaded or compiled. Each names the source and
/// document (`file X, document N: …`) and the object concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The YAML could not be parsed, or an object does not have the expected shape.
    #[error("{at}: {message}")]
    Yaml {
        /// Where.
        at: Box<Location>,
        /// What the parser said.
        message: String,
    },
    /// An object is invalid on its own (unsupported kind, missing namespace, several
    /// subject kinds on one binding...).
    #[error("{at}: {object}: {message}")]
    Invalid {
        /// Where.
        at: Box<Location>,
        /// The object, e.g. `ClusterRoleTemplateBinding c-prod/crtb-1`.
        object: String,
        /// What is wrong.
        message: String,
    },
    /// An object refers to a role, template or project that does not exist.
    #[error("{at}: {object}: {what} {name:?} does not exist")]
    UnknownReference {
        /// Where.
        at: Box<Location>,
        /// The referring object.
        object: String,
        /// The kind of the missing object (`ClusterRole`, `RoleTemplate`, `Project`...).
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// Role templates inherit from each other in a cycle.
    #[error("{at}: RoleTemplate {name:?}: inheritance cycle {}", cycle.join(" -> "))]
    TemplateCycle {
        /// Where the first template of the cycle is defined.
        at: Box<Location>,
        /// That template.
        name: String,
        /// The cycle, first template repeated at the end.
        cycle: Vec<String>,
    },
    /// A binding uses a locked role template (no new bindings allowed).
    #[error("{at}: {object}: RoleTemplate {template:?} is locked: no new bindings may use it")]
    LockedTemplate {
        /// Where.
        at: Box<Location>,
        /// The binding.
        object: String,
        /// The locked template.
        template: String,
    },
    /// A binding uses a role template of the wrong context (a project template in a
    /// ClusterRoleTemplateBinding, or the reverse).
    #[error("{at}: {object}: RoleTemplate {template:?} has context {actual:?}, {expected:?} is required")]
    WrongContext {
        /// Where.
        at: Box<Location>,
        /// The binding.
        object: String,
        /// The template.
        template: String,
        /// The context the binding needs.
        expected: &'static str,
        /// The template's context.
        actual: String,
    },
    /// Two objects of the same kind have the same name (and namespace).
    #[error("{at}: {object} is defined twice (first at {first})")]
    Duplicate {
        /// Where the second definition is.
        at: Box<Location>,
        /// The object.
        object: String,
        /// Where the first definition is.
        first: Box<Location>,
    },
}
