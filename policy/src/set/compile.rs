//! Compiling parsed objects into the indexed policy: role resolution (aggregation,
//! template inheritance, external templates, promoted project rules), validation of
//! references, and grants indexed by subject and scope.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::index::{CompiledRole, Grant, Scope, ScopedGrants, Source};
use crate::error::PolicyError;
use crate::hash::FastMap;
use crate::model::k8s::{Binding, ClusterRole, Role};
use crate::model::rancher::{GlobalRole, RoleTemplate, RtbSubject};
use crate::model::Location;
use crate::parse::{Object, Parsed};
use crate::rule::PolicyRule;

/// Namespace annotation tying a namespace to a Rancher project: `<cluster>:<project>`.
pub const PROJECT_ANNOTATION: &str = "field.cattle.io/projectId";
/// Annotation restricting a native RoleBinding or ClusterRoleBinding to one cluster.
pub const CLUSTER_ANNOTATION: &str = "paddock.io/cluster";

/// Cluster-scoped resources whose rules in project templates Rancher "promotes" to a
/// cluster-wide binding (`promotedRulesForProjects`), with the group they must name.
const PROMOTED: [(&str, &str); 7] = [
    ("navlinks", "ui.cattle.io"),
    ("nodes", ""),
    ("persistentvolumes", ""),
    ("storageclasses", "storage.k8s.io"),
    ("apiservices", "apiregistration.k8s.io"),
    ("clusterrepos", "catalog.cattle.io"),
    ("clusters", "management.cattle.io"),
];

/// The compiled policy.
#[derive(Debug, Default)]
pub(crate) struct Compiled {
    pub(crate) roles: Vec<CompiledRole>,
    pub(crate) sources: Vec<Source>,
    pub(crate) users: FastMap<Box<str>, ScopedGrants>,
    pub(crate) groups: FastMap<Box<str>, ScopedGrants>,
    pub(crate) bindings: usize,
    /// Every role template's context and resolved rules (inheritance and
    /// external ClusterRoles followed), by name.
    pub(crate) templates: BTreeMap<String, (String, Vec<PolicyRule>)>,
}

enum Key {
    User(String),
    Group(String),
}

fn object_name(kind: &str, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {namespace}/{name}")
    }
}

fn dedup(rules: impl IntoIterator<Item = PolicyRule>) -> Vec<PolicyRule> {
    let rules: Vec<PolicyRule> = rules.into_iter().collect();
    dedup_slice(&rules)
}

fn dedup_slice(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut seen = HashSet::with_capacity(rules.len());
    rules.iter().filter(|r| seen.insert(*r)).cloned().collect()
}

struct Templates<'a> {
    defs: BTreeMap<&'a str, (&'a RoleTemplate, &'a Location)>,
    cluster_roles: &'a BTreeMap<&'a str, Vec<PolicyRule>>,
    memo: HashMap<&'a str, Vec<PolicyRule>>,
    stack: Vec<&'a str>,
}

impl<'a> Templates<'a> {
    /// The template's rules with inherited templates (and external ClusterRoles)
    /// resolved; cycles are errors.
    fn resolve(
        &mut self,
        name: &'a str,
        referrer: (&Location, &str),
    ) -> Result<Vec<PolicyRule>, PolicyError> {
        if let Some(rules) = self.memo.get(name) {
            return Ok(rules.clone());
        }
        let Some(&(rt, at)) = self.defs.get(name) else {
            return Err(PolicyError::UnknownReference {
                at: Box::new(referrer.0.clone()),
                object: referrer.1.to_owned(),
                what: "RoleTemplate",
                name: name.to_owned(),
            });
        };
        if let Some(pos) = self.stack.iter().position(|n| *n == name) {
            let mut cycle: Vec<String> =
                self.stack[pos..].iter().map(|s| (*s).to_owned()).collect();
            cycle.push(name.to_owned());
            let first = self.defs[self.stack[pos]].1.clone();
            return Err(PolicyError::TemplateCycle {
                at: Box::new(first),
                name: self.stack[pos].to_owned(),
                cycle,
            });
        }
        let me = object_name("RoleTemplate", "", name);
        let mut rules = if rt.external {
            match self.cluster_roles.get(name) {
                Some(r) => r.clone(),
                None => {
                    return Err(PolicyError::UnknownReference {
                        at: Box::new(at.clone()),
                        object: format!("external {me}"),
                        what: "ClusterRole",
                        name: name.to_owned(),
                    })
                }
            }
        } else {
            rt.rules.clone()
        };
        self.stack.push(name);
        for child in &rt.role_template_names {
            rules.extend(self.resolve(child, (at, &me))?);
        }
        self.stack.pop();
        let rules = dedup(rules);
        self.memo.insert(name, rules.clone());
        Ok(rules)
    }
}

fn promoted_rules(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    for rule in rules {
        for resource in &rule.resources {
            if let Some((_, group)) = PROMOTED.iter().find(|(r, _)| r == resource) {
                if rule.api_groups.iter().any(|g| g == group) {
                    out.push(PolicyRule {
                        verbs: rule.verbs.clone(),
                        api_groups: vec![(*group).to_owned()],
                        resources: vec![resource.clone()],
                        resource_names: rule.resource_names.clone(),
                        non_resource_urls: Vec::new(),
                    });
                }
            }
        }
    }
    dedup(out)
}

/// Resolves `aggregationRule`s the way the clusterrole-aggregation controller does:
/// an aggregated role's rules are the union of the rules of every other ClusterRole
/// a selector matches, repeated until nothing changes (nested aggregation).
fn resolve_cluster_roles<'a>(
    defs: &BTreeMap<&'a str, (&'a ClusterRole, &'a Location)>,
) -> Result<BTreeMap<&'a str, Vec<PolicyRule>>, PolicyError> {
    let mut resolved: BTreeMap<&str, Vec<PolicyRule>> = BTreeMap::new();
    for (name, (cr, at)) in defs {
        if let Some(agg) = &cr.aggregation_rule {
            if let Some(op) = agg
                .cluster_role_selectors
                .iter()
                .find_map(|s| s.invalid_operator())
            {
                return Err(PolicyError::Invalid {
                    at: Box::new((*at).clone()),
                    object: object_name("ClusterRole", "", name),
                    message: format!(
                        "label selector operator {op:?} is not In, NotIn, Exists or DoesNotExist"
                    ),
                });
            }
            resolved.insert(name, Vec::new());
        } else {
            resolved.insert(name, dedup(cr.rules.iter().cloned()));
        }
    }
    let aggregated: Vec<&str> = defs
        .iter()
        .filter(|(_, (cr, _))| cr.aggregation_rule.is_some())
        .map(|(n, _)| *n)
        .collect();
    for _ in 0..=aggregated.len() {
        let mut changed = false;
        for &name in &aggregated {
            let selectors = &defs[name]
                .0
                .aggregation_rule
                .as_ref()
                .map(|a| &a.cluster_role_selectors);
            let Some(selectors) = selectors else { continue };
            let union = dedup(
                defs.iter()
                    .filter(|(other, (cr, _))| {
                        **other != name && selectors.iter().any(|s| s.matches(&cr.metadata.labels))
                    })
                    .flat_map(|(other, _)| resolved[other].clone()),
            );
            if resolved[name] != union {
                resolved.insert(name, union);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    Ok(resolved)
}

struct Builder {
    out: Compiled,
    /// Role ids by what they were built from (`rt/<name>`, `cr/<name>`...), so a
    /// role used by many bindings is resolved and hashed once.
    named: HashMap<String, Option<u32>>,
}

impl Builder {
    /// The role built from `rules()` under `key`, or `None` when it has no rules and
    /// `skip_empty` is set.
    fn named_role(
        &mut self,
        key: String,
        skip_empty: bool,
        rules: impl FnOnce() -> Vec<PolicyRule>,
    ) -> Option<u32> {
        if let Some(id) = self.named.get(&key) {
            return *id;
        }
        let rules = rules();
        let id = (!(skip_empty && rules.is_empty())).then(|| self.role(rules));
        self.named.insert(key, id);
        id
    }

    fn role(&mut self, rules: Vec<PolicyRule>) -> u32 {
        let id = u32::try_from(self.out.roles.len()).expect("fewer than 2^32 roles");
        self.out.roles.push(CompiledRole::new(rules));
        id
    }

    fn source(&mut self, description: String, order: (u8, String, String, String)) -> u32 {
        let id = u32::try_from(self.out.sources.len()).expect("fewer than 2^32 sources");
        self.out.sources.push(Source { description, order });
        id
    }

    fn grant(&mut self, keys: &[Key], scope: &Scope, role: u32, source: u32) {
        let grant = Grant { role, source };
        for key in keys {
            let entry = match key {
                Key::User(u) => self.out.users.entry(u.as_str().into()).or_default(),
                Key::Group(g) => self.out.groups.entry(g.as_str().into()).or_default(),
            };
            entry.add(scope, grant);
        }
    }

    fn finish(mut self) -> Compiled {
        let sources = &self.out.sources;
        let sort = |list: &mut Vec<Grant>| {
            list.sort_by(|a, b| {
                sources[a.source as usize]
                    .order
                    .cmp(&sources[b.source as usize].order)
                    .then(a.role.cmp(&b.role))
            });
        };
        for grants in self
            .out
            .users
            .values_mut()
            .chain(self.out.groups.values_mut())
        {
            grants.for_each_list(sort);
        }
        self.out
    }
}

fn rtb_keys(
    subject: &RtbSubject,
    allow_sa: bool,
    at: &Location,
    object: &str,
) -> Result<Vec<Key>, PolicyError> {
    let invalid = |message: String| PolicyError::Invalid {
        at: Box::new(at.clone()),
        object: object.to_owned(),
        message,
    };
    let mut keys = Vec::new();
    let mut kinds = 0;
    let users: Vec<&String> = [&subject.user_name, &subject.user_principal_name]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if !users.is_empty() {
        kinds += 1;
        keys.extend(users.into_iter().map(|u| Key::User(u.clone())));
    }
    let groups: Vec<&String> = [&subject.group_name, &subject.group_principal_name]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if !groups.is_empty() {
        kinds += 1;
        keys.extend(groups.into_iter().map(|g| Key::Group(g.clone())));
    }
    if !subject.service_account.is_empty() {
        if !allow_sa {
            return Err(invalid(
                "serviceAccount subjects are only valid on ProjectRoleTemplateBindings".into(),
            ));
        }
        let Some((ns, name)) = subject
            .service_account
            .split_once(':')
            .filter(|(n, s)| !n.is_empty() && !s.is_empty() && !s.contains(':'))
        else {
            return Err(invalid(format!(
                "serviceAccount {:?} is not <namespace>:<name>",
                subject.service_account
            )));
        };
        kinds += 1;
        keys.push(Key::User(format!("system:serviceaccount:{ns}:{name}")));
    }
    if kinds != 1 {
        return Err(invalid(format!(
            "exactly one subject kind (user, group{}) is required, found {kinds}",
            if allow_sa { " or serviceAccount" } else { "" }
        )));
    }
    Ok(keys)
}

fn native_keys(binding: &Binding, default_ns: &str) -> Vec<Key> {
    binding
        .subjects
        .iter()
        .filter_map(|s| match s.kind.as_str() {
            "User" => Some(Key::User(s.name.clone())),
            "Group" => Some(Key::Group(s.name.clone())),
            "ServiceAccount" => {
                let ns = if s.namespace.is_empty() {
                    default_ns
                } else {
                    &s.namespace
                };
                // a ServiceAccount without namespace in a ClusterRoleBinding matches nothing
                (!ns.is_empty())
                    .then(|| Key::User(format!("system:serviceaccount:{ns}:{}", s.name)))
            }
            // unknown kinds never match
            _ => None,
        })
        .collect()
}

fn cluster_annotation(binding: &Binding) -> Option<String> {
    binding
        .metadata
        .annotations
        .get(CLUSTER_ANNOTATION)
        .cloned()
}

struct Registry<'a> {
    cluster_roles: BTreeMap<&'a str, (&'a ClusterRole, &'a Location)>,
    builtin_cluster_roles: HashSet<&'a str>,
    roles: BTreeMap<(&'a str, &'a str), (&'a Role, &'a Location)>,
    global_roles: BTreeMap<&'a str, (&'a GlobalRole, &'a Location)>,
    templates: BTreeMap<&'a str, (&'a RoleTemplate, &'a Location)>,
    projects: BTreeMap<(String, String), (Vec<String>, &'a Location)>,
    bindings: HashMap<(&'static str, &'a str, &'a str), &'a Location>,
}

fn duplicate(at: &Location, object: String, first: &Location) -> PolicyError {
    PolicyError::Duplicate {
        at: Box::new(at.clone()),
        object,
        first: Box::new(first.clone()),
    }
}

fn register(objects: &[Parsed]) -> Result<Registry<'_>, PolicyError> {
    let mut reg = Registry {
        cluster_roles: BTreeMap::new(),
        builtin_cluster_roles: HashSet::new(),
        roles: BTreeMap::new(),
        global_roles: BTreeMap::new(),
        templates: BTreeMap::new(),
        projects: BTreeMap::new(),
        bindings: HashMap::new(),
    };
    for p in objects {
        let at = &p.at;
        match &p.object {
            Object::ClusterRole(cr) => {
                let name = cr.metadata.name.as_str();
                match reg.cluster_roles.get(name) {
                    // Kubernetes' own roles may be replaced (a dump of a real cluster has them)
                    Some(_) if !p.builtin && reg.builtin_cluster_roles.remove(name) => {}
                    Some((_, first)) => {
                        return Err(duplicate(at, object_name("ClusterRole", "", name), first))
                    }
                    None if p.builtin => {
                        reg.builtin_cluster_roles.insert(name);
                    }
                    None => {}
                }
                reg.cluster_roles.insert(name, (cr, at));
            }
            Object::Role(role) => {
                let key = (
                    role.metadata.namespace.as_str(),
                    role.metadata.name.as_str(),
                );
                let object = object_name("Role", key.0, key.1);
                if key.0.is_empty() {
                    return Err(PolicyError::Invalid {
                        at: Box::new(at.clone()),
                        object,
                        message: "a Role needs metadata.namespace".into(),
                    });
                }
                if let Some((_, first)) = reg.roles.insert(key, (role, at)) {
                    return Err(duplicate(at, object, first));
                }
            }
            Object::GlobalRole(gr) => {
                let name = gr.metadata.name.as_str();
                if let Some((_, first)) = reg.global_roles.insert(name, (gr, at)) {
                    return Err(duplicate(at, object_name("GlobalRole", "", name), first));
                }
            }
            Object::RoleTemplate(rt) => {
                let name = rt.metadata.name.as_str();
                let object = object_name("RoleTemplate", "", name);
                if !matches!(rt.context.as_str(), "cluster" | "project" | "") {
                    return Err(PolicyError::Invalid {
                        at: Box::new(at.clone()),
                        object,
                        message: format!(
                            "context {:?} is not cluster, project or empty",
                            rt.context
                        ),
                    });
                }
                if let Some((_, first)) = reg.templates.insert(name, (rt, at)) {
                    return Err(duplicate(at, object, first));
                }
            }
            Object::Project(project) => {
                let id = project.metadata.name.clone();
                let ns_cluster = project.metadata.namespace.as_str();
                let spec_cluster = project.spec.cluster_name.as_str();
                let object = object_name("Project", ns_cluster, &id);
                let cluster = match (ns_cluster, spec_cluster) {
                    ("", "") => {
                        return Err(PolicyError::Invalid {
                            at: Box::new(at.clone()),
                            object,
                            message: "a Project needs spec.clusterName (or metadata.namespace)"
                                .into(),
                        })
                    }
                    (c, "") | ("", c) => c.to_owned(),
                    (a, b) if a == b => a.to_owned(),
                    (a, b) => {
                        return Err(PolicyError::Invalid {
                            at: Box::new(at.clone()),
                            object,
                            message: format!(
                                "metadata.namespace {a:?} differs from spec.clusterName {b:?}"
                            ),
                        })
                    }
                };
                if let Some((_, first)) = reg
                    .projects
                    .insert((cluster, id), (project.spec.namespaces.clone(), at))
                {
                    return Err(duplicate(at, object, first));
                }
            }
            Object::ClusterRoleBinding(b) => {
                check_binding_name(
                    &mut reg.bindings,
                    "ClusterRoleBinding",
                    "",
                    &b.metadata.name,
                    at,
                )?;
            }
            Object::RoleBinding(b) => {
                check_binding_name(
                    &mut reg.bindings,
                    "RoleBinding",
                    &b.metadata.namespace,
                    &b.metadata.name,
                    at,
                )?;
            }
            Object::GlobalRoleBinding(b) => {
                check_binding_name(
                    &mut reg.bindings,
                    "GlobalRoleBinding",
                    "",
                    &b.metadata.name,
                    at,
                )?;
            }
            Object::ClusterRoleTemplateBinding(b) => check_binding_name(
                &mut reg.bindings,
                "ClusterRoleTemplateBinding",
                &b.metadata.namespace,
                &b.metadata.name,
                at,
            )?,
            Object::ProjectRoleTemplateBinding(b) => check_binding_name(
                &mut reg.bindings,
                "ProjectRoleTemplateBinding",
                &b.metadata.namespace,
                &b.metadata.name,
                at,
            )?,
            Object::Namespace(_) => {}
        }
    }
    // namespaces annotated with a project join it
    for p in objects {
        let Object::Namespace(ns) = &p.object else {
            continue;
        };
        let Some(project) = ns.metadata.annotations.get(PROJECT_ANNOTATION) else {
            continue;
        };
        let object = object_name("Namespace", "", &ns.metadata.name);
        let Some((cluster, id)) = project.split_once(':') else {
            return Err(PolicyError::Invalid {
                at: Box::new(p.at.clone()),
                object,
                message: format!(
                    "annotation {PROJECT_ANNOTATION} {project:?} is not <cluster>:<project>"
                ),
            });
        };
        match reg.projects.get_mut(&(cluster.to_owned(), id.to_owned())) {
            Some((namespaces, _)) => namespaces.push(ns.metadata.name.clone()),
            None => {
                return Err(PolicyError::UnknownReference {
                    at: Box::new(p.at.clone()),
                    object,
                    what: "Project",
                    name: project.clone(),
                })
            }
        }
    }
    Ok(reg)
}

fn check_binding_name<'a>(
    seen: &mut HashMap<(&'static str, &'a str, &'a str), &'a Location>,
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
    at: &'a Location,
) -> Result<(), PolicyError> {
    match seen.insert((kind, namespace, name), at) {
        Some(first) => Err(duplicate(at, object_name(kind, namespace, name), first)),
        None => Ok(()),
    }
}

/// The (deduplicated) role for `rules`, built once per key.
fn named(b: &mut Builder, key: String, rules: &[PolicyRule]) -> u32 {
    b.named_role(key, false, || dedup_slice(rules))
        .expect("named_role without skip_empty always builds a role")
}

fn full_access() -> Vec<PolicyRule> {
    vec![
        PolicyRule::new(&["*"], &["*"], &["*"]),
        PolicyRule::urls(&["*"], &["*"]),
    ]
}

/// Compiles parsed objects. `management` is the id of the management cluster, where
/// GlobalRole rules apply (and where `inheritedClusterRoles` do not).
pub(crate) fn compile(
    objects: &[Parsed],
    management: Option<&str>,
) -> Result<Compiled, PolicyError> {
    let reg = register(objects)?;
    let cluster_rules = resolve_cluster_roles(&reg.cluster_roles)?;
    let mut templates = Templates {
        defs: reg.templates.clone(),
        cluster_roles: &cluster_rules,
        memo: HashMap::new(),
        stack: Vec::new(),
    };
    // resolve every template once, so cycles are reported even when unused
    for (name, (_, at)) in &reg.templates {
        templates.resolve(name, (at, &object_name("RoleTemplate", "", name)))?;
    }
    let mut b = Builder {
        out: Compiled::default(),
        named: HashMap::new(),
    };
    let templates = &templates;
    b.out.templates = reg
        .templates
        .iter()
        .map(|(name, (rt, _))| {
            let rules = templates.memo[*name].clone();
            ((*name).to_owned(), (rt.context.clone(), rules))
        })
        .collect();

    // Checks a binding's template: it exists, has the right context, is not locked.
    let template_for = |name: &str,
                        expected: &'static str,
                        at: &Location,
                        object: &str|
     -> Result<&[PolicyRule], PolicyError> {
        let Some((rt, _)) = reg.templates.get(name) else {
            return Err(PolicyError::UnknownReference {
                at: Box::new(at.clone()),
                object: object.to_owned(),
                what: "RoleTemplate",
                name: name.to_owned(),
            });
        };
        if rt.context != expected {
            return Err(PolicyError::WrongContext {
                at: Box::new(at.clone()),
                object: object.to_owned(),
                template: name.to_owned(),
                expected,
                actual: rt.context.clone(),
            });
        }
        if rt.locked {
            return Err(PolicyError::LockedTemplate {
                at: Box::new(at.clone()),
                object: object.to_owned(),
                template: name.to_owned(),
            });
        }
        Ok(&templates.memo[rt.metadata.name.as_str()])
    };

    for p in objects {
        let at = &p.at;
        match &p.object {
            Object::ClusterRoleBinding(crb) => {
                b.out.bindings += 1;
                let name = &crb.metadata.name;
                let object = object_name("ClusterRoleBinding", "", name);
                if crb.role_ref.kind != "ClusterRole" {
                    return Err(PolicyError::Invalid {
                        at: Box::new(at.clone()),
                        object,
                        message: format!(
                            "roleRef kind {:?} must be ClusterRole",
                            crb.role_ref.kind
                        ),
                    });
                }
                let Some(rules) = cluster_rules.get(crb.role_ref.name.as_str()) else {
                    return Err(PolicyError::UnknownReference {
                        at: Box::new(at.clone()),
                        object,
                        what: "ClusterRole",
                        name: crb.role_ref.name.clone(),
                    });
                };
                let role = named(&mut b, format!("cr/{}", crb.role_ref.name), rules);
                let source = b.source(
                    format!("{object} (role ClusterRole {})", crb.role_ref.name),
                    (0, String::new(), name.clone(), String::new()),
                );
                let scope = cluster_annotation(crb).map_or(Scope::Everywhere, Scope::Cluster);
                b.grant(&native_keys(crb, ""), &scope, role, source);
            }
            Object::RoleBinding(rb) => {
                b.out.bindings += 1;
                let (ns, name) = (&rb.metadata.namespace, &rb.metadata.name);
                let object = object_name("RoleBinding", ns, name);
                if ns.is_empty() {
                    return Err(PolicyError::Invalid {
                        at: Box::new(at.clone()),
                        object,
                        message: "a RoleBinding needs metadata.namespace".into(),
                    });
                }
                let rules = match rb.role_ref.kind.as_str() {
                    "ClusterRole" => cluster_rules
                        .get(rb.role_ref.name.as_str())
                        .map(|r| (format!("cr/{}", rb.role_ref.name), &r[..])),
                    "Role" => reg
                        .roles
                        .get(&(ns.as_str(), rb.role_ref.name.as_str()))
                        .map(|(r, _)| (format!("role/{ns}/{}", rb.role_ref.name), &r.rules[..])),
                    other => {
                        return Err(PolicyError::Invalid {
                            at: Box::new(at.clone()),
                            object,
                            message: format!("roleRef kind {other:?} must be Role or ClusterRole"),
                        })
                    }
                };
                let Some((key, rules)) = rules else {
                    return Err(PolicyError::UnknownReference {
                        at: Box::new(at.clone()),
                        object,
                        what: if rb.role_ref.kind == "Role" {
                            "Role"
                        } else {
                            "ClusterRole"
                        },
                        name: rb.role_ref.name.clone(),
                    });
                };
                let role = named(&mut b, key, rules);
                let source = b.source(
                    format!("{object} (role {} {})", rb.role_ref.kind, rb.role_ref.name),
                    (1, ns.clone(), name.clone(), String::new()),
                );
                let scope = Scope::Namespace(cluster_annotation(rb), ns.clone());
                b.grant(&native_keys(rb, ns), &scope, role, source);
            }
            Object::GlobalRoleBinding(grb) => {
                b.out.bindings += 1;
                let name = &grb.metadata.name;
                let object = object_name("GlobalRoleBinding", "", name);
                let subjects: Vec<Key> = [
                    Key::User(grb.user_name.clone()),
                    Key::User(grb.user_principal_name.clone()),
                    Key::Group(grb.group_principal_name.clone()),
                ]
                .into_iter()
                .filter(|k| match k {
                    Key::User(s) | Key::Group(s) => !s.is_empty(),
                })
                .collect();
                if subjects.len() != 1 {
                    return Err(PolicyError::Invalid {
                        at: Box::new(at.clone()),
                        object,
                        message: format!(
                            "exactly one of userName, userPrincipalName, groupPrincipalName is required, found {}",
                            subjects.len()
                        ),
                    });
                }
                let gr_name = grb.global_role_name.as_str();
                let Some((gr, _)) = reg.global_roles.get(gr_name) else {
                    return Err(PolicyError::UnknownReference {
                        at: Box::new(at.clone()),
                        object,
                        what: "GlobalRole",
                        name: gr_name.to_owned(),
                    });
                };
                let order = |detail: &str| (2, String::new(), name.clone(), detail.to_owned());
                if gr.rules.iter().any(PolicyRule::is_full_wildcard) {
                    // Rancher binds global administrators to cluster-admin in every
                    // downstream cluster (CRB `globaladmin-<user>`).
                    let role = named(&mut b, "full".to_owned(), &full_access());
                    let source = b.source(
                        format!("{object} (global role {gr_name}: cluster-admin in every cluster)"),
                        order("0"),
                    );
                    b.grant(&subjects, &Scope::Everywhere, role, source);
                }
                if let Some(mgmt) = management {
                    if !gr.rules.is_empty() {
                        let role = named(&mut b, format!("gr/{gr_name}"), &gr.rules);
                        let source =
                            b.source(format!("{object} (global role {gr_name})"), order("1"));
                        b.grant(&subjects, &Scope::Cluster(mgmt.to_owned()), role, source);
                    }
                    for (ns, rules) in &gr.namespaced_rules {
                        let role = named(&mut b, format!("grns/{gr_name}/{ns}"), rules);
                        let source = b.source(
                            format!("{object} (global role {gr_name}, rules for namespace {ns})"),
                            order(&format!("2/{ns}")),
                        );
                        let scope = Scope::Namespace(Some(mgmt.to_owned()), ns.clone());
                        b.grant(&subjects, &scope, role, source);
                    }
                }
                for rt in &gr.inherited_cluster_roles {
                    let gr_object = object_name("GlobalRole", "", gr_name);
                    let rules =
                        template_for(rt, "cluster", reg.global_roles[gr_name].1, &gr_object)?;
                    let role = named(&mut b, format!("rt/{rt}"), rules);
                    let source = b.source(
                        format!("{object} (global role {gr_name}, inherited cluster role {rt})"),
                        order(&format!("3/{rt}")),
                    );
                    b.grant(&subjects, &Scope::Downstream, role, source);
                }
            }
            Object::ClusterRoleTemplateBinding(crtb) => {
                b.out.bindings += 1;
                let (ns, name) = (&crtb.metadata.namespace, &crtb.metadata.name);
                let object = object_name("ClusterRoleTemplateBinding", ns, name);
                let cluster = match (ns.as_str(), crtb.cluster_name.as_str()) {
                    ("", "") => {
                        return Err(PolicyError::Invalid {
                            at: Box::new(at.clone()),
                            object,
                            message: "clusterName is required".into(),
                        })
                    }
                    (c, "") | ("", c) => c.to_owned(),
                    (a, c) if a == c => c.to_owned(),
                    (a, c) => {
                        return Err(PolicyError::Invalid {
                            at: Box::new(at.clone()),
                            object,
                            message: format!(
                                "clusterName {c:?} must equal metadata.namespace {a:?}"
                            ),
                        })
                    }
                };
                let keys = rtb_keys(&crtb.subject, false, at, &object)?;
                let rt = &crtb.role_template_name;
                let rules = template_for(rt, "cluster", at, &object)?;
                let role = named(&mut b, format!("rt/{rt}"), rules);
                let source = b.source(
                    format!("{object} (role {rt})"),
                    (3, ns.clone(), name.clone(), String::new()),
                );
                b.grant(&keys, &Scope::Cluster(cluster), role, source);
            }
            Object::ProjectRoleTemplateBinding(prtb) => {
                b.out.bindings += 1;
                let (ns, name) = (&prtb.metadata.namespace, &prtb.metadata.name);
                let object = object_name("ProjectRoleTemplateBinding", ns, name);
                let Some((cluster, project)) = prtb.project_name.split_once(':') else {
                    return Err(PolicyError::Invalid {
                        at: Box::new(at.clone()),
                        object,
                        message: format!(
                            "projectName {:?} is not <cluster>:<project>",
                            prtb.project_name
                        ),
                    });
                };
                let Some((namespaces, _)) =
                    reg.projects.get(&(cluster.to_owned(), project.to_owned()))
                else {
                    return Err(PolicyError::UnknownReference {
                        at: Box::new(at.clone()),
                        object,
                        what: "Project",
                        name: prtb.project_name.clone(),
                    });
                };
                let keys = rtb_keys(&prtb.subject, true, at, &object)?;
                let rt = &prtb.role_template_name;
                let rules = template_for(rt, "project", at, &object)?;
                let role = named(&mut b, format!("rt/{rt}"), rules);
                let source = b.source(
                    format!("{object} (role {rt})"),
                    (4, ns.clone(), name.clone(), String::new()),
                );
                for namespace in namespaces {
                    let scope = Scope::Namespace(Some(cluster.to_owned()), namespace.clone());
                    b.grant(&keys, &scope, role, source);
                }
                if let Some(role) =
                    b.named_role(format!("promoted/{rt}"), true, || promoted_rules(rules))
                {
                    let source = b.source(
                        format!("{object} (role {rt}, rules Rancher promotes to the cluster)"),
                        (4, ns.clone(), name.clone(), "promoted".into()),
                    );
                    b.grant(&keys, &Scope::Cluster(cluster.to_owned()), role, source);
                }
            }
            Object::ClusterRole(_)
            | Object::Role(_)
            | Object::Namespace(_)
            | Object::GlobalRole(_)
            | Object::RoleTemplate(_)
            | Object::Project(_) => {}
        }
    }
    // GlobalRoles' inherited templates must be valid even when nothing binds them.
    for (name, (gr, at)) in &reg.global_roles {
        for rt in &gr.inherited_cluster_roles {
            template_for(rt, "cluster", at, &object_name("GlobalRole", "", name))?;
        }
    }
    Ok(b.finish())
}
